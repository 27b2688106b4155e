//! etcd's log lines in every form they reach us: CRI-wrapped (kubelet), Docker's plain
//! stream, etcd 3.4 capnslog text (`2026-... C | etcdmain: ...`, `raft2026/...`), etcd 3.5
//! zap JSON, and bare Go panics with no etcd line at all.

/// One log line, normalised for matching while keeping the original for evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The line as etcd wrote it (the CRI prefix removed), for evidence.
    pub raw: String,
    /// What to match on: for zap JSON, `msg` plus `error` plus the other string fields;
    /// otherwise the line itself. Lower-cased.
    pub text: String,
    pub level: Option<String>,
    /// When it was written, as the line says (RFC 3339): the kubelet's CRI timestamp, else
    /// zap's `ts`. Detection latency is measured from the first line of a signature.
    pub ts: Option<String>,
}

/// Strip the CRI prefix `<RFC3339 ts> <stdout|stderr> <P|F> `.
pub fn strip_cri(line: &str) -> &str {
    let mut parts = line.splitn(4, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(ts), Some("stdout" | "stderr"), Some("P" | "F"), Some(msg)) if ts.contains('T') => msg,
        (Some(ts), Some("stdout" | "stderr"), Some("P" | "F"), None) if ts.contains('T') => "",
        _ => line,
    }
}

/// Lines that are mostly not text (a torn write, a binary file given by mistake) carry no
/// evidence and are dropped rather than matched.
fn is_garbage(s: &str) -> bool {
    let total = s.chars().count();
    if total == 0 {
        return false;
    }
    let bad = s.chars().filter(|c| *c == '\u{fffd}' || (c.is_control() && *c != '\t')).count();
    bad * 4 > total
}

/// The CRI prefix's timestamp, if the line has one.
fn cri_ts(line: &str) -> Option<String> {
    let (ts, rest) = line.split_once(' ')?;
    (ts.contains('T') && (rest.starts_with("stdout ") || rest.starts_with("stderr "))).then(|| ts.to_string())
}

pub fn parse_line(line: &str) -> Option<LogLine> {
    let cri = cri_ts(line);
    let raw = strip_cri(line.trim_end_matches(['\r', '\n'])).to_string();
    if raw.trim().is_empty() || is_garbage(&raw) {
        return None;
    }
    if raw.starts_with('{') {
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(&raw) {
            let mut text = String::new();
            for key in ["msg", "error"] {
                if let Some(v) = o.get(key).and_then(|v| v.as_str()) {
                    text.push_str(v);
                    text.push_str(" | ");
                }
            }
            for (k, v) in &o {
                if matches!(k.as_str(), "msg" | "error" | "level" | "ts" | "caller" | "stacktrace" | "logger") {
                    continue;
                }
                if let Some(s) = v.as_str() {
                    text.push_str(&format!("{k}={s} "));
                } else if v.is_number() || v.is_boolean() {
                    // `"commit-index":0` says as much as any message.
                    text.push_str(&format!("{k}={v} "));
                }
            }
            return Some(LogLine {
                ts: cri.or_else(|| o.get("ts").and_then(|v| v.as_str()).filter(|t| t.contains('T')).map(str::to_string)),
                level: o.get("level").and_then(|v| v.as_str()).map(str::to_string),
                text: text.to_lowercase(),
                raw,
            });
        }
    }
    // capnslog: "2026-11-21 06:17:20.618929 C | etcdmain: ..."
    let level = raw.split(" | ").next().and_then(|head| head.rsplit(' ').next()).and_then(|l| match l {
        "C" => Some("fatal"),
        "E" => Some("error"),
        "W" => Some("warn"),
        "N" | "I" => Some("info"),
        "D" => Some("debug"),
        _ => None,
    });
    let level = level.map(str::to_string).or_else(|| {
        (raw.starts_with("panic:") || raw.starts_with("fatal error:") || raw.starts_with("unexpected fault address"))
            .then(|| "panic".to_string())
    });
    Some(LogLine { text: raw.to_lowercase(), raw, level, ts: cri })
}

/// Whether a line marks the start of an etcd process: everything after the last such line
/// belongs to the newest run.
fn is_start_marker(l: &LogLine) -> bool {
    l.text.contains("etcdmain: etcd version:")
        || l.text.starts_with("running:  | ")
        || (l.level.is_some() && l.text.starts_with("running: "))
        || l.raw.contains("\"msg\":\"Running: \"")
}

/// The runs in a log, oldest first, split at etcd's start banners.
pub fn runs(lines: &[LogLine]) -> Vec<&[LogLine]> {
    let mut starts: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| is_start_marker(l)).map(|(i, _)| i).collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let mut out = vec![];
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(lines.len());
        if e > s {
            out.push(&lines[s..e]);
        }
    }
    out
}

/// Parse text (possibly a tail that starts mid-line) into lines.
pub fn parse_text(text: &str) -> Vec<LogLine> {
    text.lines().filter_map(parse_line).collect()
}

/// The lines of the newest run: after the last start marker, or all when there is none
/// (a run that died before logging its banner, such as a flag parse error).
pub fn newest_run(lines: &[LogLine]) -> &[LogLine] {
    match lines.iter().rposition(is_start_marker) {
        Some(i) => &lines[i..],
        None => lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zap_error_field_is_matched() {
        let l = parse_line(r#"{"level":"fatal","ts":"x","msg":"discovery failed","error":"member c8 has already been bootstrapped","stacktrace":"..."}"#).unwrap();
        assert_eq!(l.level.as_deref(), Some("fatal"));
        assert!(l.text.contains("discovery failed | member c8 has already been bootstrapped"));
    }

    #[test]
    fn cri_and_capnslog() {
        let l = parse_line("2026-11-21T06:17:20.1Z stderr F 2026-11-21 06:17:20.618929 C | etcdmain: member d5 has already been bootstrapped").unwrap();
        assert_eq!(l.level.as_deref(), Some("fatal"));
        assert!(l.raw.starts_with("2026-11-21 06:17:20"));
        let p = parse_line("panic: tocommit(9) is out of range [lastIndex(0)]").unwrap();
        assert_eq!(p.level.as_deref(), Some("panic"));
    }

    #[test]
    fn garbage_and_blank_lines_are_dropped() {
        assert!(parse_line("\u{0}\u{1}\u{2}\u{3}ab").is_none());
        assert!(parse_line("2026-11-21T06:17:20.1Z stderr F ").is_none());
        assert!(parse_line("   ").is_none());
    }

    #[test]
    fn newest_run_starts_at_last_banner() {
        let text = "2026-01-01 00:00:00.0 I | etcdmain: etcd Version: 3.4.23\n2026-01-01 00:00:01.0 C | etcdmain: old failure\n2026-01-01 00:01:00.0 I | etcdmain: etcd Version: 3.4.23\n2026-01-01 00:01:01.0 C | etcdmain: new failure\n";
        let lines = parse_text(text);
        let run = newest_run(&lines);
        assert_eq!(run.len(), 2);
        assert!(run[1].raw.contains("new failure"));
        let zap = r#"{"level":"info","ts":"x","caller":"etcdmain/etcd.go:73","msg":"Running: ","args":["etcd"]}"#;
        let lines = parse_text(&format!("{zap}\nold\n{zap}\nnew\n"));
        assert_eq!(newest_run(&lines).len(), 2);
    }
}
