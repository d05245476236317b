import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Progress of a long copy (initial copy, resync, export, failback) on standard error: a bar
/// redrawn in place when standard error is a terminal, plain lines otherwise (at most one a
/// second, and the last at 100%), so a log or a pipe gets readable lines and no carriage
/// returns. Standard output stays the command's result (`--json` included).
final class ProgressReporter: Sendable {
    enum Style: Sendable { case bar, lines }

    let style: Style
    let width: Int
    private struct State {
        var lastDrawn: Double = 0
        var lastLabel = ""
        var lastPercent = -1
        var barShown = false
        var lastTotal: Int64 = 0
    }
    private let state = Mutex(State())

    /// A bar when standard error is a terminal (`REPLICAFS_PROGRESS=lines` forces lines).
    init(style: Style? = nil) {
        let forced = ProcessInfo.processInfo.environment["REPLICAFS_PROGRESS"]
        self.style = style ?? (forced == "lines" ? .lines : forced == "bar" || isatty(STDERR_FILENO) == 1 ? .bar : .lines)
        var ws = winsize()
        let columns = ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col > 0 ? Int(ws.ws_col) : 80
        width = max(10, min(40, columns - 50))
    }

    /// `done` of `total` bytes of `label` (e.g. "export disk0.img").
    func update(_ label: String, done: Int64, total: Int64) {
        let fraction = total > 0 ? min(1, max(0, Double(done) / Double(total))) : 1
        let percent = Int(fraction * 100)
        let now = Date().timeIntervalSince1970
        let text: String? = state.withLock { s in
            s.lastTotal = total
            let complete = percent == 100
            switch style {
            case .bar:
                // Redrawn at most 10 times a second, and at once when the percent or label changes.
                guard label != s.lastLabel || percent != s.lastPercent || now - s.lastDrawn >= 0.1 else { return nil }
                let filled = Int(fraction * Double(width))
                let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
                // A new label on its own line; the bar of one label rewrites itself.
                let start = s.barShown && label != s.lastLabel ? "\n" : "\r"
                s.barShown = true
                s.lastLabel = label; s.lastPercent = percent; s.lastDrawn = now
                return "\(start)\(label) [\(bar)] \(String(format: "%3d", percent))% \(Self.size(done))/\(Self.size(total))\u{1B}[K"
            case .lines:
                guard label != s.lastLabel || (percent != s.lastPercent && (now - s.lastDrawn >= 1 || complete)) else { return nil }
                s.lastLabel = label; s.lastPercent = percent; s.lastDrawn = now
                return "\(label): \(percent)% (\(done) of \(total) bytes)\n"
            }
        }
        if let text { FileHandle.standardError.write(Data(text.utf8)) }
    }

    /// The copy shown last is done: it shows at 100% (a daemon's copy may end between two looks).
    func complete() {
        let (label, total) = state.withLock { ($0.lastLabel, $0.lastTotal) }
        if !label.isEmpty { update(label, done: total, total: total) }
    }

    /// Ends the bar's line (nothing for lines).
    func finish() {
        let end = state.withLock { s -> Bool in
            defer { s.barShown = false; s.lastLabel = ""; s.lastPercent = -1 }
            return style == .bar && s.barShown
        }
        if end { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func size(_ bytes: Int64) -> String {
        let mib = Double(bytes) / 1048576
        return mib >= 1024 ? String(format: "%.1f GiB", mib / 1024) : String(format: "%.1f MiB", mib)
    }
}
