//! The daemon's configuration file (`/etc/etcd-hostfix/config.yaml`): every key optional,
//! every default written out in `packaging/config.yaml`. A bad file is one error that names
//! the file, the line and the key; nothing starts.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::policy::{Mode, PolicyConfig};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonConfig {
    pub mode: Mode,
    pub probe_interval: Duration,
    /// While the local member is healthy, the peers (member list, their status, the lock
    /// key) are probed this often; the local member still every `probe_interval`. Any
    /// change, event or failure makes the next probe a full one.
    pub peer_probe_interval: Duration,
    pub grace: Duration,
    pub max_repairs: u32,
    pub repair_window: Duration,
    /// Zero turns scheduled snapshots off.
    pub snapshot_interval: Duration,
    pub snapshot_retention: Retention,
    pub metrics_listen: String,
    /// Archived runs kept after a successful repair (`hostfix_core::archive`).
    pub archive_keep: u32,
}

/// All four limits are enforced; the oldest snapshots go first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retention {
    pub count: u32,
    pub max_age: Duration,
    pub max_bytes: u64,
    /// A snapshot is not taken, and old ones are pruned, while less than this share of the
    /// filesystem would stay free.
    pub min_free_disk: f64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            mode: Mode::Heal,
            probe_interval: Duration::from_secs(1),
            peer_probe_interval: Duration::from_secs(10),
            grace: Duration::from_secs(300),
            max_repairs: 3,
            repair_window: Duration::from_secs(3600),
            snapshot_interval: Duration::from_secs(1800),
            snapshot_retention: Retention {
                count: 48,
                max_age: Duration::from_secs(24 * 3600),
                max_bytes: 10 << 30,
                min_free_disk: 0.10,
            },
            metrics_listen: "127.0.0.1:9379".into(),
            archive_keep: 3,
        }
    }
}

impl DaemonConfig {
    /// Why the metrics address deserves a warning: anything but loopback is reachable by
    /// other hosts. The metrics hold no secret, but member names, addresses and the repair
    /// history are nobody else's business unless the operator chose to expose them.
    pub fn metrics_exposure(&self) -> Option<String> {
        let addr: std::net::SocketAddr = self.metrics_listen.parse().ok()?;
        (!addr.ip().is_loopback()).then(|| {
            format!("metrics listen on {addr}, which is not loopback: other hosts can read them (metrics_listen or --metrics-listen says so)")
        })
    }

    /// How old a snapshot the daemon's repairs reuse as their backup (`--backup auto`): 1 h,
    /// or two snapshot intervals when the schedule is slower, so that the schedule's newest
    /// one always qualifies.
    pub fn backup_max_age(&self) -> Duration {
        Duration::from_secs(3600).max(self.snapshot_interval * 2)
    }

    pub fn policy(&self) -> PolicyConfig {
        PolicyConfig {
            mode: self.mode,
            grace: self.grace,
            max_repairs: self.max_repairs,
            repair_window: self.repair_window,
            ..PolicyConfig::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    /// The key on that line, as written (`-` when the line has none).
    pub key: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mode: Option<Mode>,
    probe_interval: Option<Dur>,
    peer_probe_interval: Option<Dur>,
    grace: Option<Dur>,
    max_repairs: Option<u32>,
    repair_window: Option<Dur>,
    snapshot_interval: Option<Dur>,
    snapshot_retention: Option<RawRetention>,
    metrics_listen: Option<String>,
    archive_keep: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    count: Option<u32>,
    max_age: Option<Dur>,
    max_bytes: Option<Bytes>,
    min_free_disk: Option<Share>,
}

/// `500ms`, `30s`, `5m`, `1h`, `1d`, or `0`.
struct Dur(Duration);
/// `1048576`, `512MiB`, `10GiB`, `1GB`.
struct Bytes(u64);
/// `10%` or `0.1`.
struct Share(f64);

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(u64),
    Float(f64),
    Str(String),
}

fn scalar_text(s: Scalar) -> String {
    match s {
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Str(s) => s,
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(|| format!("{s:?} needs a unit (ms, s, m, h, d)"))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("{s:?} is not a duration like 30s, 5m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)")),
    };
    // Bounded well below where deadlines (`Instant + d`) and doubling would overflow; found
    // by fuzzing: an absurd value used to panic instead of being an error.
    if !(0.0..=MAX_DURATION_SECS).contains(&secs) {
        return Err(format!("{s:?} is longer than 10 years"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// The longest duration any option or key takes: 10 years.
const MAX_DURATION_SECS: f64 = 10.0 * 365.0 * 86400.0;

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a size like 512MiB or 10GiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_share(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a share like 10% or 0.1"))?;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("{s:?} must be at least 0% and below 100%"));
    }
    Ok(v)
}

macro_rules! scalar_type {
    ($t:ident, $parse:ident) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = scalar_text(Scalar::deserialize(d)?);
                $parse(&s).map($t).map_err(serde::de::Error::custom)
            }
        }
    };
}
scalar_type!(Dur, parse_duration);
scalar_type!(Bytes, parse_bytes);
scalar_type!(Share, parse_share);

/// Parse the text of `file`. An empty file is all defaults.
pub fn parse(file: &str, text: &str) -> Result<DaemonConfig, ConfigError> {
    let mut c = DaemonConfig::default();
    if text.trim().is_empty() {
        return Ok(c);
    }
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| located(file, text, &e.to_string()))?;
    let bad = |key: &str, message: String| ConfigError { file: file.into(), line: line_of(text, key), key: key.into(), message };
    if let Some(m) = raw.mode {
        c.mode = m;
    }
    if let Some(Dur(d)) = raw.probe_interval {
        if d < Duration::from_millis(100) {
            return Err(bad("probe_interval", "must be at least 100ms".into()));
        }
        c.probe_interval = d;
    }
    if let Some(Dur(d)) = raw.peer_probe_interval {
        if d < c.probe_interval {
            return Err(bad("peer_probe_interval", format!("must be at least probe_interval ({:?})", c.probe_interval)));
        }
        c.peer_probe_interval = d;
    } else {
        c.peer_probe_interval = c.peer_probe_interval.max(c.probe_interval);
    }
    if let Some(Dur(d)) = raw.grace {
        c.grace = d;
    }
    if let Some(n) = raw.max_repairs {
        c.max_repairs = n;
    }
    if let Some(n) = raw.archive_keep {
        if n == 0 {
            return Err(bad("archive_keep", "must be at least 1: the newest archive is never pruned".into()));
        }
        c.archive_keep = n;
    }
    if let Some(Dur(d)) = raw.repair_window {
        if d.is_zero() {
            return Err(bad("repair_window", "must be longer than 0".into()));
        }
        c.repair_window = d;
    }
    if let Some(Dur(d)) = raw.snapshot_interval {
        if !d.is_zero() && d < Duration::from_secs(60) {
            return Err(bad("snapshot_interval", "must be 0 (off) or at least 1m".into()));
        }
        c.snapshot_interval = d;
    }
    if let Some(r) = raw.snapshot_retention {
        let ret = &mut c.snapshot_retention;
        if let Some(n) = r.count {
            if n == 0 {
                return Err(bad("count", "must keep at least 1 snapshot (set snapshot_interval: 0 to turn them off)".into()));
            }
            ret.count = n;
        }
        if let Some(Dur(d)) = r.max_age {
            ret.max_age = d;
        }
        if let Some(Bytes(b)) = r.max_bytes {
            ret.max_bytes = b;
        }
        if let Some(Share(s)) = r.min_free_disk {
            ret.min_free_disk = s;
        }
    }
    if let Some(l) = raw.metrics_listen {
        if l.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad("metrics_listen", format!("{l:?} is not an address like 127.0.0.1:9379")));
        }
        c.metrics_listen = l;
    }
    Ok(c)
}

/// The line a top-level or nested key is first written on.
fn line_of(text: &str, key: &str) -> usize {
    text.lines().position(|l| l.trim_start().starts_with(&format!("{key}:"))).map(|i| i + 1).unwrap_or(0)
}

/// serde-saphyr says `line N column M: message`; add the key written on that line.
fn located(file: &str, text: &str, err: &str) -> ConfigError {
    let first = err.lines().next().unwrap_or(err).trim_start_matches("error: ");
    let (line, message) = match first.strip_prefix("line ").and_then(|r| r.split_once(' ')) {
        Some((n, rest)) => {
            let msg = rest.split_once(": ").map(|x| x.1).unwrap_or(rest);
            (n.parse::<usize>().unwrap_or(0), msg.to_string())
        }
        None => (0, first.to_string()),
    };
    let key = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.split_once(':').map(|x| x.0.trim().trim_start_matches("- ").to_string()))
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "-".into());
    ConfigError { file: file.into(), line, key, message }
}

#[cfg(test)]
mod tests {
    #[test]
    fn absurd_durations_are_errors_not_panics() {
        assert!(parse_duration("241111114444444444444444444444440444444444411111444444444444h").unwrap_err().contains("longer than 10 years"));
        assert!(parse_duration("11y").is_err());
        assert!(parse_duration("3650d").is_ok());
        assert!(parse_duration("3651d").is_err());
    }

    use super::*;

    const F: &str = "/etc/etcd-hostfix/config.yaml";

    #[test]
    fn empty_is_defaults_and_the_example_file_is_the_defaults() {
        assert_eq!(parse(F, "").unwrap(), DaemonConfig::default());
        assert_eq!(parse(F, "# nothing\n").unwrap(), DaemonConfig::default());
        let example = include_str!("../../../packaging/config.yaml");
        assert_eq!(parse("packaging/config.yaml", example).unwrap(), DaemonConfig::default(), "the example must spell out the defaults");
    }

    #[test]
    fn repairs_reuse_what_the_snapshot_schedule_leaves() {
        let mut c = DaemonConfig::default();
        assert_eq!(c.backup_max_age(), Duration::from_secs(3600), "30 min schedule: 1 h");
        c.snapshot_interval = Duration::from_secs(3 * 3600);
        assert_eq!(c.backup_max_age(), Duration::from_secs(6 * 3600), "a slower schedule: two intervals");
        c.snapshot_interval = Duration::ZERO;
        assert_eq!(c.backup_max_age(), Duration::from_secs(3600), "no schedule: 1 h (an earlier snapshot save)");
    }

    #[test]
    fn every_key() {
        let c = parse(
            F,
            "mode: observe\nprobe_interval: 500ms\npeer_probe_interval: 5s\ngrace: 2m\nmax_repairs: 5\narchive_keep: 7\nrepair_window: 2h\nsnapshot_interval: 0\nsnapshot_retention:\n  count: 3\n  max_age: 1d\n  max_bytes: 512MiB\n  min_free_disk: 20%\nmetrics_listen: 127.0.0.1:19379\n",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Observe);
        assert_eq!(c.probe_interval, Duration::from_millis(500));
        assert_eq!(c.peer_probe_interval, Duration::from_secs(5));
        assert_eq!(c.grace, Duration::from_secs(120));
        assert_eq!(c.max_repairs, 5);
        assert_eq!(c.archive_keep, 7);
        assert_eq!(c.repair_window, Duration::from_secs(7200));
        assert!(c.snapshot_interval.is_zero());
        assert_eq!(c.snapshot_retention.count, 3);
        assert_eq!(c.snapshot_retention.max_age, Duration::from_secs(86400));
        assert_eq!(c.snapshot_retention.max_bytes, 512 << 20);
        assert!((c.snapshot_retention.min_free_disk - 0.2).abs() < 1e-9);
        assert_eq!(c.metrics_listen, "127.0.0.1:19379");
        assert_eq!(c.metrics_exposure(), None);
        assert_eq!(DaemonConfig::default().metrics_exposure(), None, "loopback unless configured otherwise");
        let open = DaemonConfig { metrics_listen: "0.0.0.0:9379".into(), ..DaemonConfig::default() };
        assert!(open.metrics_exposure().unwrap().contains("not loopback"));
        let v6 = DaemonConfig { metrics_listen: "[::1]:9379".into(), ..DaemonConfig::default() };
        assert_eq!(v6.metrics_exposure(), None);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases = [
            ("mode: heal\ngrace: five\n", 2, "grace", "not a duration"),
            ("mode: heal\ngarce: 5s\n", 2, "garce", "unknown field"),
            ("mode: fix\n", 1, "mode", "fix"),
            ("probe_interval: 2s\npeer_probe_interval: 1s\n", 2, "peer_probe_interval", "at least probe_interval"),
            ("snapshot_retention:\n  count: -3\n", 2, "count", "u32"),
            ("snapshot_retention:\n  max_bytes: 10 parsecs\n", 2, "max_bytes", "unknown unit"),
            ("snapshot_retention:\n  min_free_disk: 150%\n", 2, "min_free_disk", "below 100%"),
            ("metrics_listen: everywhere\n", 1, "metrics_listen", "not an address"),
            ("probe_interval: 1ms\n", 1, "probe_interval", "at least 100ms"),
            ("snapshot_retention:\n  count: 0\n", 2, "count", "at least 1"),
        ];
        for (text, line, key, needle) in cases {
            let e = parse(F, text).unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (line, key), "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("{F}:{line}: {key}: ")), "{e}");
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_bytes("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!((parse_share("0.05").unwrap() - 0.05).abs() < 1e-9);
    }
}
