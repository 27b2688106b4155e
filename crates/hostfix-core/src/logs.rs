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

/// Parse text (possibly a tail that starts mid-line) into lines, the kubelet's split lines
/// joined again first (see [`join_cri_partials`]).
pub fn parse_text(text: &str) -> Vec<LogLine> {
    join_cri_partials(text).iter().filter_map(|l| parse_line(l)).collect()
}

/// How many times the kubelet restarted the etcd container since its manifest was last put
/// in place, from the pod's log files: `newest` is the running (or last) attempt's number, and
/// `runs` every `N.log` of that pod with its last write. The kubelet names a file by attempt
/// and goes on counting under the same pod UID, so a person's park and unpark of an
/// unchanged manifest starts at `1.log`: counted from zero, a member that has not answered
/// yet would read as crashlooping. Attempts whose files were last written before the
/// manifest was placed (its ctime: a rename, or the durable copy across mounts, sets it)
/// belong to the pod's earlier life and are not counted. When the kubelet's container GC has
/// removed those files no base is known and the kubelet's own count stands: an overcount
/// then lasts until the member answers, and says only "crashlooping", which acts on nothing.
pub fn restarts_since_placed(newest: u32, runs: &[(u32, std::time::SystemTime)], placed: Option<std::time::SystemTime>) -> u32 {
    let Some(placed) = placed else { return newest };
    let base = runs.iter().filter(|(_, written)| *written < placed).map(|(n, _)| n + 1).max().unwrap_or(0);
    newest.saturating_sub(base)
}

/// Whether a run file last written at `written` can speak for the pod as its manifest is
/// now: not when it was last written before the manifest was put in place (`placed`, its
/// ctime). Those files are the pod's earlier life under the same UID (a park and unpark of
/// an unchanged manifest keeps the UID and its dir). Until the kubelet's new run writes,
/// they are the newest files there, and their words (a learner's panic from the repair
/// before, say) would be read as the member's now: a daemon test once classed a fresh
/// db-corrupt break as data-lost that way, from the previous repair's learner (cause (6)
/// in docs/test-runs.md). No placement known (parked, not a static pod): every file counts.
pub fn written_since_placed(written: std::time::SystemTime, placed: Option<std::time::SystemTime>) -> bool {
    placed.is_none_or(|p| written >= p)
}

/// The kubelet's runtime writes a line longer than 16 KiB as `P` (partial) chunks ended by
/// an `F` chunk, each with its own `<ts> <stream> ` prefix; stdout's and stderr's chunks
/// may interleave. etcd's zap lines are JSON, and a JSON line read chunk by chunk parses as
/// none, loses its level, and a signature spanning a cut is missed. So the chunks of each
/// stream are joined into one `F` line, with the first chunk's timestamp, at the place of
/// its `F` chunk. Chunks left open at the end of the text (a run killed mid-line) are kept
/// as one line; a tail that begins mid-line begins with an `F` chunk alone, which is just a
/// line. Anything that is not CRI-wrapped passes as it is.
pub fn join_cri_partials(text: &str) -> Vec<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    // One pending line per stream: (prefix "<ts> <stream> ", message so far).
    let mut open: [Option<(String, String)>; 2] = [None, None];
    let mut out: Vec<Cow<'_, str>> = vec![];
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (ts, stream, tag, msg) = (parts.next(), parts.next(), parts.next(), parts.next().unwrap_or(""));
        let slot = match (ts, stream, tag) {
            (Some(t), Some("stdout"), Some("P" | "F")) if t.contains('T') => 0,
            (Some(t), Some("stderr"), Some("P" | "F")) if t.contains('T') => 1,
            _ => {
                out.push(Cow::Borrowed(line));
                continue;
            }
        };
        let (ts, stream) = (ts.unwrap_or_default(), stream.unwrap_or_default());
        match (tag, open[slot].take()) {
            (Some("P"), None) => open[slot] = Some((format!("{ts} {stream} "), msg.to_string())),
            (Some("P"), Some((head, mut so_far))) => {
                so_far.push_str(msg);
                open[slot] = Some((head, so_far));
            }
            (_, Some((head, so_far))) => out.push(Cow::Owned(format!("{head}F {so_far}{msg}"))),
            (_, None) => out.push(Cow::Borrowed(line)),
        }
    }
    for (head, so_far) in open.into_iter().flatten() {
        out.push(Cow::Owned(format!("{head}F {so_far}")));
    }
    out
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
    fn cri_partials_are_joined_per_stream() {
        // A zap line cut into three chunks, with a stdout line between them.
        let json =
            r#"{"level":"panic","ts":"x","msg":"tocommit(9) is out of range [lastIndex(0)]. Was the raft log corrupted, truncated, or lost?"}"#;
        let (a, rest) = json.split_at(30);
        let (b, c) = rest.split_at(40);
        let text = format!(
            "2026-01-01T00:00:00.1Z stderr P {a}\n2026-01-01T00:00:00.2Z stdout F unrelated\n2026-01-01T00:00:00.3Z stderr P {b}\n2026-01-01T00:00:00.4Z stderr F {c}\n"
        );
        let joined = join_cri_partials(&text);
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0], "2026-01-01T00:00:00.2Z stdout F unrelated");
        assert_eq!(joined[1], format!("2026-01-01T00:00:00.1Z stderr F {json}"));
        let lines = parse_text(&text);
        assert_eq!(lines[1].level.as_deref(), Some("panic"), "the joined line parses as zap JSON");
        assert!(lines[1].text.contains("tocommit(9) is out of range"));
        assert_eq!(lines[1].ts.as_deref(), Some("2026-01-01T00:00:00.1Z"), "the first chunk's time");
    }

    #[test]
    fn open_and_headless_partials_are_kept() {
        // A tail that starts inside a split line: its F chunk is a line of its own. A run
        // killed mid-line leaves P chunks with no F: they are still evidence.
        let text = "2026-01-01T00:00:00.1Z stderr F end of a long line\nplain\n2026-01-01T00:00:00.2Z stderr P half \n2026-01-01T00:00:00.3Z stderr P a line";
        let joined = join_cri_partials(text);
        assert_eq!(joined, ["2026-01-01T00:00:00.1Z stderr F end of a long line", "plain", "2026-01-01T00:00:00.2Z stderr F half a line"]);
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

    #[test]
    fn restarts_count_from_the_manifest_being_put_in_place() {
        use std::time::{Duration, SystemTime};
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        // Parked after run 0, put back at 100: run 1 is the first since, not a restart.
        assert_eq!(restarts_since_placed(1, &[(0, t(90)), (1, t(105))], Some(t(100))), 0);
        // It crashed, and the kubelet started attempt 2.
        assert_eq!(restarts_since_placed(2, &[(0, t(90)), (1, t(106)), (2, t(120))], Some(t(100))), 1);
        // A pod that has run since its manifest came: the kubelet's count.
        assert_eq!(restarts_since_placed(3, &[(2, t(130)), (3, t(140))], Some(t(100))), 3);
        // No manifest to ask (parked, or not a static pod): the kubelet's count.
        assert_eq!(restarts_since_placed(3, &[(0, t(90))], None), 3);
        // Older files GC'd by the kubelet: nothing to subtract.
        assert_eq!(restarts_since_placed(1, &[(1, t(105))], Some(t(100))), 1);
    }

    #[test]
    fn cri_prefix_is_stripped() {
        assert_eq!(strip_cri("2026-11-21T06:03:56.1Z stderr F panic: boom"), "panic: boom");
        assert_eq!(strip_cri("plain line"), "plain line");
        // An empty line etcd wrote is empty, not its CRI prefix.
        assert_eq!(strip_cri("2026-11-21T06:03:56.1Z stdout F"), "");
    }

    #[test]
    fn files_from_before_the_manifest_came_back_do_not_speak_for_it() {
        use std::time::{Duration, SystemTime};
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert!(!written_since_placed(t(90), Some(t(100))));
        assert!(written_since_placed(t(100), Some(t(100))));
        assert!(written_since_placed(t(90), None));
    }
}
