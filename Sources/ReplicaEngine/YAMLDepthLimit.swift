import CYaml

/// Refuses YAML nested deeper than a limit before it is composed into a tree. Yams builds the
/// tree by recursion, one stack frame per level, so 200,000 nested `[` overflow the stack and
/// crash the process; libyaml's own event parser keeps its state on the heap and is safe to run
/// first, counting the depth as it goes.
public enum YAMLDepthLimit {
    /// Deeper than any recovery plan needs (a plan is 5 levels deep), far below the stack's reach.
    public static let maxDepth = 64

    /// The line (1-based) where `text` first nests deeper than `limit`, or nil when it does not.
    /// Syntax errors end the count: the composer reports them afterwards.
    public static func firstTooDeepLine(_ text: String, limit: Int = maxDepth) -> Int? {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { buffer -> Int? in
            var parser = yaml_parser_t()
            guard yaml_parser_initialize(&parser) == 1 else { return nil }
            defer { yaml_parser_delete(&parser) }
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var depth = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                switch event.type {
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    depth += 1
                    if depth > limit { return Int(event.start_mark.line) + 1 }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    depth -= 1
                case YAML_STREAM_END_EVENT:
                    return nil
                default:
                    break
                }
            }
        }
    }
}
