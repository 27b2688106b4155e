//! `check perf`: the load profiles, latency summaries and verdicts. The load and the fsync
//! loop run in the playbooks; what counts as a pass is decided here.

use std::time::Duration;

use serde::Serialize;

/// etcdctl `check perf --load`'s profiles: writes a second and concurrent clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoadProfile {
    pub name: &'static str,
    pub rate: u64,
    pub clients: u64,
    pub value_bytes: usize,
}

impl std::str::FromStr for LoadProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rate, clients) = match s {
            "s" => ("s", 150, 50),
            "m" => ("m", 1000, 200),
            "l" => ("l", 8000, 500),
            "xl" => ("xl", 15000, 1000),
            _ => return Err(format!("unknown load {s:?}: one of s, m, l, xl (as etcdctl check perf)")),
        };
        Ok(LoadProfile { name, rate, clients, value_bytes: 1024 })
    }
}

/// What etcdctl passes: at least 90% of the profile's rate, no request slower than 500 ms,
/// a standard deviation under 100 ms.
pub const MIN_RATE_SHARE: f64 = 0.9;
pub const SLOWEST_LIMIT_MS: f64 = 500.0;
pub const STDDEV_LIMIT_MS: f64 = 100.0;
/// etcd's tuning guide: the 99th percentile of WAL fdatasync below 10 ms.
pub const FSYNC_P99_LIMIT_MS: f64 = 10.0;

#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub stddev_ms: f64,
}

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    pub fn extend(&mut self, o: Latencies) {
        self.0.extend(o.0);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nearest-rank percentiles (the p99 of 100 samples is the 99th smallest).
    pub fn summary(&self) -> Summary {
        if self.0.is_empty() {
            return Summary::default();
        }
        let mut ms: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let var = ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / ms.len() as f64;
        Summary { p50_ms: rank(0.5), p99_ms: rank(0.99), max_ms: *ms.last().unwrap(), mean_ms: mean, stddev_ms: var.sqrt() }
    }
}

/// One line of the verdict: passed, and the words.
pub type Verdict = (bool, String);

pub fn load_verdicts(p: &LoadProfile, throughput: f64, slowest_ms: f64, stddev_ms: f64, errors: u64) -> Vec<Verdict> {
    let mut v = vec![];
    let want = p.rate as f64 * MIN_RATE_SHARE;
    v.push(if throughput >= want {
        (true, format!("throughput is {throughput:.0} writes/s (load {}: {} writes/s)", p.name, p.rate))
    } else {
        (false, format!("throughput too low: {throughput:.0} writes/s, below {want:.0} (90% of load {}'s {} writes/s)", p.name, p.rate))
    });
    v.push(if slowest_ms < SLOWEST_LIMIT_MS {
        (true, format!("slowest request took {:.3} s", slowest_ms / 1000.0))
    } else {
        (false, format!("slowest request took too long: {:.3} s (limit {:.1} s)", slowest_ms / 1000.0, SLOWEST_LIMIT_MS / 1000.0))
    });
    v.push(if stddev_ms < STDDEV_LIMIT_MS {
        (true, format!("stddev is {:.3} s", stddev_ms / 1000.0))
    } else {
        (false, format!("stddev too high: {:.3} s (limit {:.1} s)", stddev_ms / 1000.0, STDDEV_LIMIT_MS / 1000.0))
    });
    if errors > 0 {
        v.push((false, format!("{errors} writes failed")));
    }
    v
}

pub fn disk_verdict(dir: &str, p99_ms: f64, writes: u64) -> Verdict {
    if writes == 0 {
        return (false, format!("no write to {dir} completed"));
    }
    if p99_ms < FSYNC_P99_LIMIT_MS {
        (true, format!("fdatasync p99 under {dir} is {p99_ms:.2} ms ({writes} WAL-like writes; limit {FSYNC_P99_LIMIT_MS} ms)"))
    } else {
        (false, format!("fdatasync p99 under {dir} is {p99_ms:.2} ms, above {FSYNC_P99_LIMIT_MS} ms ({writes} WAL-like writes): etcd will miss heartbeats under load"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_etcdctls() {
        let s: LoadProfile = "s".parse().unwrap();
        assert_eq!((s.rate, s.clients), (150, 50));
        let xl: LoadProfile = "xl".parse().unwrap();
        assert_eq!((xl.name, xl.rate, xl.clients), ("xl", 15000, 1000));
        assert!("huge".parse::<LoadProfile>().unwrap_err().contains("one of s, m, l, xl"));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.push(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!((s.p50_ms.round(), s.p99_ms.round(), s.max_ms.round()), (50.0, 99.0, 100.0));
        assert!((s.mean_ms - 50.5).abs() < 1e-6);
        assert_eq!(Latencies::default().summary(), Summary::default());
    }

    #[test]
    fn verdicts() {
        let s: LoadProfile = "s".parse().unwrap();
        assert!(load_verdicts(&s, 149.0, 20.0, 5.0, 0).iter().all(|v| v.0));
        let bad = load_verdicts(&s, 100.0, 600.0, 150.0, 2);
        assert_eq!(bad.iter().filter(|v| !v.0).count(), 4);
        assert!(bad[0].1.contains("throughput too low: 100"));
        assert!(disk_verdict("/var/lib", 2.0, 100).0);
        let slow = disk_verdict("/var/lib", 25.0, 100);
        assert!(!slow.0 && slow.1.contains("25.00 ms, above 10 ms"));
        assert!(!disk_verdict("/var/lib", 0.0, 0).0);
    }
}
