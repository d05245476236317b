import Foundation
import Yams
import ReplicaStore
import ReplicaSystem

/// A recovery plan: ordered groups of VMs failed over (or back) together, with optional shell
/// commands around each group and a map from source network names to target network names.
/// Parsed from YAML (format and example: docs/recovery-plans.md). Parsing checks everything a
/// run needs before anything starts: unknown or repeated keys, empty groups, a VM named twice,
/// a VM with no target store or no mountpoint, a bad recovery point. Every error is one line
/// that names the file, the line and the problem.
public struct RecoveryPlan: Sendable, Equatable {
    /// One VM of a group, with its settings resolved from the plan's defaults.
    public struct VM: Sendable, Equatable {
        public var name: String
        /// The target store holding its replica.
        public var target: String
        /// The recovery point to fail over to: latest, latest-app, an id, or an ISO-8601 time.
        public var point: String
        /// Where its failed-over disks are mounted.
        public var mount: String
        /// The source disks directory, when the plan names one (planned failover, failback target).
        public var disksDir: String?
        /// A directory on this host for the failover's own files (copy-on-write layers, reverse
        /// logs), needed when the store is not a local directory (`failover --work-dir`).
        public var workDir: String?

        public init(name: String, target: String, point: String, mount: String, disksDir: String? = nil, workDir: String? = nil) {
            self.name = name
            self.target = target
            self.point = point
            self.mount = mount
            self.disksDir = disksDir
            self.workDir = workDir
        }
    }

    public struct Group: Sendable, Equatable {
        public var name: String
        /// Shell command run before the group's VMs start; a failure stops the plan.
        public var pre: String?
        /// Shell command run after all the group's VMs succeeded.
        public var post: String?
        public var vms: [VM]

        public init(name: String, pre: String? = nil, post: String? = nil, vms: [VM]) {
            self.name = name
            self.pre = pre
            self.post = post
            self.vms = vms
        }
    }

    public var name: String
    /// Source network name -> target network name.
    public var networkMapping: [String: String]
    public var groups: [Group]

    public init(name: String, networkMapping: [String: String] = [:], groups: [Group]) {
        self.name = name
        self.networkMapping = networkMapping
        self.groups = groups
    }

    public var allVMs: [VM] { groups.flatMap(\.vms) }

    /// Reads and parses a plan file. Relative paths in it are relative to the file's directory.
    public static func load(_ path: String) throws -> RecoveryPlan {
        guard FileSystem.exists(path) else { throw ReplicaError("plan file \(path) does not exist") }
        let bytes: [UInt8]
        do { bytes = try FileSystem.readFile(path) } catch { throw ReplicaError("cannot read plan file \(path): \(error)") }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw ReplicaError("\(path): not UTF-8 text") }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(text, source: path, baseDirectory: dir)
    }

    /// Parses plan text; `source` names it in errors, `baseDirectory` anchors relative paths.
    public static func parse(_ text: String, source: String = "plan", baseDirectory: String? = nil) throws -> RecoveryPlan {
        var reader = Reader(source: source, base: baseDirectory ?? FileManager.default.currentDirectoryPath)
        return try reader.plan(text)
    }

    /// A point as the plan may name it: latest, latest-app, a point id, or an ISO-8601 time.
    static func validPoint(_ text: String) -> Bool {
        if text == "latest" || text == "latest-app" { return true }
        if let id = Int(text), id > 0 { return true }
        guard let date = ISOTime.parse(text) else { return false }
        return (try? TimeLimits.checkTime(date.timeIntervalSince1970, text: text)) != nil
    }

    /// Walks the YAML node tree so that every error can name its line.
    private struct Reader {
        public let source: String
        let base: String

        func fail(_ node: Node?, _ message: String) -> ReplicaError {
            // A key or value quoted from the file may hold line breaks: the error stays one line.
            let message = message.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
            if let line = node?.mark?.line { return ReplicaError("\(source):\(line): \(message)") }
            return ReplicaError("\(source): \(message)")
        }

        /// The keys of a mapping node, checked against the allowed ones and for repeats.
        public func mapping(_ node: Node, _ what: String, allowed: [String]) throws -> [String: Node] {
            guard case .mapping(let m) = node else { throw fail(node, "\(what) must be a mapping of keys") }
            var out: [String: Node] = [:]
            for (k, v) in m {
                guard case .scalar(let s) = k else { throw fail(k, "\(what) has a key that is not a name") }
                guard allowed.contains(s.string) else {
                    throw fail(k, "unknown key '\(s.string)' in \(what) (known: \(allowed.joined(separator: ", ")))")
                }
                guard out[s.string] == nil else { throw fail(k, "key '\(s.string)' is repeated in \(what)") }
                out[s.string] = v
            }
            return out
        }

        public func string(_ node: Node?, _ key: String, in what: String) throws -> String? {
            guard let node else { return nil }
            guard case .scalar(let s) = node, !(s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)) else {
                throw fail(node, "'\(key)' in \(what) must be a text value")
            }
            let text = s.string.trimmingCharacters(in: .whitespaces)
            guard !text.isEmpty else { throw fail(node, "'\(key)' in \(what) is empty") }
            guard !text.contains(where: { $0.isNewline }) || key == "pre" || key == "post" else {
                throw fail(node, "'\(key)' in \(what) spans several lines")
            }
            return text
        }

        public func path(_ node: Node?, _ key: String, in what: String) throws -> String? {
            guard let text = try string(node, key, in: what) else { return nil }
            return text.hasPrefix("/") ? text : URL(fileURLWithPath: base).appendingPathComponent(text).standardizedFileURL.path
        }

        /// A target store: a URL (`replicafs://`, `s3://`) as written, a directory as `path` reads it.
        public func target(_ node: Node?, in what: String) throws -> String? {
            guard let text = try string(node, "target", in: what) else { return nil }
            return text.contains("://") ? text : try path(node, "target", in: what)
        }

        public func point(_ node: Node?, in what: String) throws -> String? {
            guard let text = try string(node, "point", in: what) else { return nil }
            guard RecoveryPlan.validPoint(text) else {
                throw fail(node, "bad recovery point '\(text)' in \(what): use latest, latest-app, a point id or an ISO-8601 time")
            }
            return text
        }

        public func list(_ node: Node?, _ key: String, in what: String, parent: Node) throws -> [Node] {
            guard let node else { throw fail(parent, "\(what) has no '\(key)'") }
            guard case .sequence(let seq) = node else { throw fail(node, "'\(key)' in \(what) must be a list") }
            guard !seq.isEmpty else { throw fail(node, "'\(key)' in \(what) is empty") }
            return Array(seq)
        }

        public mutating func plan(_ text: String) throws -> RecoveryPlan {
            // Before composing: Yams recurses once per level and would overflow the stack.
            if let line = YAMLDepthLimit.firstTooDeepLine(text) {
                throw ReplicaError("\(source):\(line): nested deeper than \(YAMLDepthLimit.maxDepth) levels: not a recovery plan")
            }
            let root: Node
            do {
                guard let node = try Yams.compose(yaml: text) else { throw fail(nil, "the plan is empty") }
                root = node
            } catch let error as YamlError {
                throw ReplicaError("\(source): not valid YAML: \(Self.oneLine(error))")
            }
            let top = try mapping(root, "the plan", allowed: ["name", "target", "mountRoot", "workRoot", "point", "networkMapping", "groups"])
            guard let name = try string(top["name"], "name", in: "the plan") else { throw fail(root, "the plan has no 'name'") }
            let target = try self.target(top["target"], in: "the plan")
            let mountRoot = try path(top["mountRoot"], "mountRoot", in: "the plan")
            let workRoot = try path(top["workRoot"], "workRoot", in: "the plan")
            let point = try self.point(top["point"], in: "the plan") ?? "latest"
            var networks: [String: String] = [:]
            if let node = top["networkMapping"] {
                guard case .mapping(let m) = node else { throw fail(node, "'networkMapping' must map source network names to target network names") }
                for (k, v) in m {
                    guard case .scalar(let s) = k, !s.string.isEmpty else { throw fail(k, "a network name in 'networkMapping' is not text") }
                    guard networks[s.string] == nil else { throw fail(k, "network '\(s.string)' is mapped twice") }
                    guard let to = try string(v, s.string, in: "networkMapping") else { throw fail(v, "network '\(s.string)' maps to nothing") }
                    networks[s.string] = to
                }
            }
            var groups: [Group] = []
            var seenVMs: Set<String> = []
            var seenMounts: [String: String] = [:]
            for groupNode in try list(top["groups"], "groups", in: "the plan", parent: root) {
                let g = try mapping(groupNode, "a group", allowed: ["name", "pre", "post", "vms"])
                guard let groupName = try string(g["name"], "name", in: "a group") else { throw fail(groupNode, "a group has no 'name'") }
                let what = "group \(groupName)"
                guard !groups.contains(where: { $0.name == groupName }) else { throw fail(g["name"], "group \(groupName) is named twice") }
                var vms: [VM] = []
                for vmNode in try list(g["vms"], "vms", in: what, parent: groupNode) {
                    let v = try mapping(vmNode, "a VM of \(what)", allowed: ["name", "point", "target", "mount", "disksDir", "workDir"])
                    guard let vmName = try string(v["name"], "name", in: "a VM of \(what)") else { throw fail(vmNode, "a VM of \(what) has no 'name'") }
                    guard ProtectedVM.validName(vmName) else { throw fail(v["name"], "bad VM name '\(vmName)': use letters, digits, - _ .") }
                    guard seenVMs.insert(vmName).inserted else { throw fail(v["name"], "VM \(vmName) is named twice in the plan") }
                    let vmWhat = "VM \(vmName)"
                    guard let vmTarget = try self.target(v["target"], in: vmWhat) ?? target else {
                        throw fail(vmNode, "VM \(vmName) has no target store: set 'target' in the plan or on the VM")
                    }
                    guard let mount = try path(v["mount"], "mount", in: vmWhat) ?? mountRoot.map({ $0 + "/" + vmName }) else {
                        throw fail(vmNode, "VM \(vmName) has no mountpoint: set 'mountRoot' in the plan or 'mount' on the VM")
                    }
                    if let other = seenMounts[mount] { throw fail(vmNode, "VMs \(other) and \(vmName) both fail over to \(mount)") }
                    seenMounts[mount] = vmName
                    vms.append(VM(name: vmName, target: vmTarget, point: try self.point(v["point"], in: vmWhat) ?? point,
                                  mount: mount, disksDir: try path(v["disksDir"], "disksDir", in: vmWhat),
                                  workDir: try path(v["workDir"], "workDir", in: vmWhat) ?? workRoot.map { $0 + "/" + vmName }))
                }
                groups.append(Group(name: groupName, pre: try string(g["pre"], "pre", in: what),
                                    post: try string(g["post"], "post", in: what), vms: vms))
            }
            return RecoveryPlan(name: name, networkMapping: networks, groups: groups)
        }

        /// Yams errors quote the offending line over several lines; keep the first.
        static func oneLine(_ error: YamlError) -> String {
            switch error {
            case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
                return "line \(mark.line), column \(mark.column): \(problem)"
            default:
                return String(describing: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            }
        }
    }
}
