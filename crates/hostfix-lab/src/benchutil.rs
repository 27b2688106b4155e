//! What the benchmarks share: filling a lab with data, and the finish line both clocks
//! stop at (every member serves a quorum read as a voter, and the repaired member has the
//! leader's revision).

use std::time::{Duration, Instant};

use crate::lab::Lab;

const VALUE: usize = 100 * 1024;

/// Put ~`mb` MB of 100 KiB values through member 0.
pub async fn fill(lab: &Lab, mb: usize) {
    let mut ep = lab.connector(0).unwrap().connect(&lab.node(0).client_url()).await.unwrap();
    let value = vec![b'x'; VALUE];
    for k in 0..(mb * 1024 * 1024 / VALUE) {
        ep.client().put(format!("/bench/{k:06}"), value.clone(), None).await.unwrap();
    }
}

/// Every member answers a quorum read, none is a learner, and member `i` has the leader's
/// revision.
pub async fn converged(lab: &Lab, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut revs = vec![];
        let mut leader_rev = None;
        let mut ok = true;
        for k in 0..lab.nodes().len() {
            let r = async {
                let mut ep = lab.connector(k).ok()?.connect(&lab.node(k).client_url()).await.ok()?;
                let st = ep.status().await.ok()?;
                ep.health().await.ok()?;
                let list = ep.member_list().await.ok()?;
                (!list.members.iter().any(|m| m.is_learner) && list.members.len() == lab.nodes().len()).then_some(st)
            }
            .await;
            match r {
                Some(st) => {
                    if st.leader == st.member_id {
                        leader_rev = Some(st.revision);
                    }
                    revs.push((k, st.revision));
                }
                None => ok = false,
            }
        }
        let mine = revs.iter().find(|(k, _)| *k == i).map(|x| x.1);
        if ok && leader_rev.is_some() && mine == leader_rev {
            return;
        }
        if Instant::now() >= deadline {
            panic!("never converged: revisions {revs:?}, leader's {leader_rev:?}\n{}", log_tails(lab, i, 1, 30));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last `lines` lines of node `i`'s `files` newest etcd logs (static pods), newest
/// first, for a benchmark's failure: a crashloop's cause is often in the run before the
/// newest.
pub fn log_tails(lab: &Lab, i: usize, files: usize, lines: usize) -> String {
    let mut all: Vec<(Option<std::time::SystemTime>, std::path::PathBuf)> =
        etcd_log_files(lab, i).into_iter().map(|p| (p.metadata().and_then(|m| m.modified()).ok(), p)).collect();
    if all.is_empty() {
        return format!("{}: no etcd log", lab.node(i).name);
    }
    all.sort();
    all.iter()
        .rev()
        .take(files)
        .map(|(_, p)| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            format!("== {} (newest line first)\n{}", p.display(), tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file in node `i`'s etcd container log dirs (`var/log/pods/*/etcd/`): the runs'
/// `N.log` and, under the real kubelet, its rotated and gzipped ones; under the stand-in,
/// also the ones its emulated GC took out of `var/log/pods` (kept for a failure's story).
pub fn etcd_log_files(lab: &Lab, i: usize) -> Vec<std::path::PathBuf> {
    let root = &lab.node(i).host_root;
    [root.join("var/log/pods"), crate::kubelet::KubeletConfig::gc_dir(root)]
        .into_iter()
        .flat_map(|pods| std::fs::read_dir(pods).into_iter().flatten().flatten())
        .flat_map(|p| std::fs::read_dir(p.path().join("etcd")).into_iter().flatten().flatten())
        .map(|f| f.path())
        .collect()
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB; `None` once the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hostfix-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Which cells a benchmark runs: `HOSTFIX_BENCH_VERSIONS` (default "3.4,3.6"),
/// `HOSTFIX_BENCH_SIZES_MB` (default per benchmark) and `HOSTFIX_BENCH_ROUNDS` (default 3).
pub struct Matrix {
    pub versions: Vec<crate::EtcdVersion>,
    pub sizes_mb: Vec<usize>,
    pub rounds: usize,
}

impl Matrix {
    pub fn from_env(default_sizes_mb: &str) -> Matrix {
        let list = |var: &str, default: &str| -> Vec<String> {
            std::env::var(var).unwrap_or_else(|_| default.into()).split(',').map(str::to_string).collect()
        };
        Matrix {
            versions: list("HOSTFIX_BENCH_VERSIONS", "3.4,3.6").iter().map(|v| v.parse().unwrap()).collect(),
            sizes_mb: list("HOSTFIX_BENCH_SIZES_MB", default_sizes_mb).iter().map(|s| s.parse().unwrap()).collect(),
            rounds: std::env::var("HOSTFIX_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3),
        }
    }
}

/// One round: the manual procedure's time first, then each of the tool's columns, on the
/// same lab.
pub type Round = for<'a> fn(&'a Lab) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Duration>> + 'a>>;

/// Every cell of the matrix on a fresh 3-member static-pod lab (loopback 127.`subnet`.x.y),
/// filled to size, `rounds` rounds each; medians, and each tool column's ratio to the first
/// (manual) column, as a Markdown table, printed and written to `out`.
pub async fn run_matrix(m: &Matrix, bin: &std::path::Path, subnet: u8, columns: &[&str], out: &std::path::Path, round: Round) {
    let mut report = format!("| etcd | data | db size | {} | rounds |\n|{}\n", {
        let mut h: Vec<String> = vec![format!("{} (median)", columns[0])];
        for c in &columns[1..] {
            h.push(format!("{c} (median)"));
            h.push("ratio".into());
        }
        h.join(" | ")
    }, " --- |".repeat(5 + 2 * (columns.len() - 1)));
    for (k, v) in m.versions.iter().enumerate() {
        for (s, mb) in m.sizes_mb.iter().enumerate() {
            let dir = tempdir();
            let spec = crate::LabSpec::new(&dir, 3, *v, crate::LabRuntime::StaticPod, [subnet, (k * 10 + s) as u8]);
            let mut lab = Lab::up(spec, bin, false).await.unwrap();
            lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
            fill(&lab, *mb).await;
            let db = lab.connector(0).unwrap().connect(&lab.node(0).client_url()).await.unwrap().status().await.unwrap().db_size;
            let mut cols: Vec<Vec<Duration>> = vec![vec![]; columns.len()];
            for r in 0..m.rounds {
                let times = round(&lab).await;
                let said: Vec<String> = columns.iter().zip(&times).map(|(c, t)| format!("{c} {:.2}s", t.as_secs_f64())).collect();
                eprintln!("etcd {} {mb} MB round {}: {}", v.tag(), r + 1, said.join(", "));
                for (c, t) in cols.iter_mut().zip(times) {
                    c.push(t);
                }
            }
            let meds: Vec<Duration> = cols.into_iter().map(median).collect();
            let mut cells = vec![format!("{:.2} s", meds[0].as_secs_f64())];
            for t in &meds[1..] {
                cells.push(format!("{:.2} s", t.as_secs_f64()));
                cells.push(format!("{:.2}×", t.as_secs_f64() / meds[0].as_secs_f64()));
            }
            report.push_str(&format!("| {} | ~{mb} MB | {:.0} MB | {} | {} |\n", v.tag(), db as f64 / 1e6, cells.join(" | "), m.rounds));
            lab.down().await.unwrap();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("{report}");
    std::fs::write(out, &report).unwrap();
    eprintln!("written to {}", out.display());
}

/// Run the tool with its step log on (`RUST_LOG=hostfix_playbooks=info`): the outcome and
/// each step's time as the runner logged it (`step done`, and the overlapped snapshot and
/// stop as `snapshot+stop`), so a benchmark can say where the time went.
pub fn run_logged(bin: &std::path::Path, host_root: &std::path::Path, args: &[&str]) -> (std::process::Output, Vec<(String, u64)>) {
    let out = std::process::Command::new(bin)
        .env("RUST_LOG", "hostfix_playbooks=info")
        .args(["--host-root", host_root.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let steps = parse_step_times(&String::from_utf8_lossy(&out.stderr));
    (out, steps)
}

pub fn parse_step_times(log: &str) -> Vec<(String, u64)> {
    let mut out = vec![];
    for line in log.lines() {
        // Tolerate colour codes, should a log carry them.
        let plain = strip_ansi(line);
        let line = plain.as_str();
        let (name, rest) = if let Some(p) = line.find("snapshot and stop done") {
            (Some("snapshot+stop".to_string()), &line[p..])
        } else if let Some(p) = line.find("step done") {
            (None, &line[p..])
        } else {
            continue;
        };
        let mut step = name;
        let mut ms = None;
        for t in rest.split_whitespace() {
            if let Some(v) = t.strip_prefix("step=") {
                step.get_or_insert_with(|| v.trim_matches('"').to_string());
            } else if let Some(v) = t.strip_prefix("elapsed_ms=") {
                ms = v.parse().ok();
            }
        }
        if let (Some(s), Some(ms)) = (step, ms) {
            out.push((s, ms));
        }
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `label: stop 0.10s, remove 0.02s, …` for the benchmark's log.
pub fn steps_line(label: &str, total: Duration, steps: &[(String, u64)]) -> String {
    let sum: u64 = steps.iter().map(|s| s.1).sum();
    let parts: Vec<String> = steps.iter().map(|(s, ms)| format!("{s} {:.2}s", *ms as f64 / 1000.0)).collect();
    format!(
        "  {label}: {:.2}s = steps {:.2}s ({}) + outside the steps {:.2}s",
        total.as_secs_f64(),
        sum as f64 / 1000.0,
        parts.join(", "),
        total.as_secs_f64() - sum as f64 / 1000.0
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_status_fields() {
        let me = std::process::id();
        assert!(super::proc_status_kib(me, "VmRSS").unwrap() > 0);
        assert!(super::proc_status_kib(me, "VmHWM").unwrap() >= super::proc_status_kib(me, "VmRSS").unwrap() / 2);
        assert_eq!(super::proc_status_kib(me, "Vm"), None, "a field name is matched whole");
    }

    #[test]
    fn step_times_from_the_runner_log() {
        let log = "\
2026-12-02T05:40:00.1Z  INFO rejoin{member=m3}:step{n=1 step=\"snapshot+stop\"}: hostfix_playbooks::rejoin: snapshot and stop done elapsed_ms=812
2026-12-02T05:40:00.2Z  INFO rejoin{member=m3}:step{n=3 step=\"remove\"}: hostfix_playbooks::rejoin: step done step=\"remove\" elapsed_ms=12
2026-12-02T05:40:00.3Z  WARN something else elapsed_ms=5
";
        assert_eq!(super::parse_step_times(log), [("snapshot+stop".to_string(), 812), ("remove".to_string(), 12)]);
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m step done \u{1b}[3mstep\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"start\" \u{1b}[3melapsed_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m40";
        assert_eq!(super::parse_step_times(coloured), [("start".to_string(), 40)]);
    }
}

/// `n` keys laid out like a Kubernetes keyspace (`/registry/<resource>/<namespace>/<name>`,
/// a few resources holding most keys, as events and pods do), `value_bytes` each, through
/// member 0 in transactions of 128 puts from 8 writers.
pub async fn fill_keys(lab: &Lab, n: usize, value_bytes: usize) {
    const RESOURCES: [(&str, usize); 8] =
        [("events", 40), ("pods", 25), ("leases", 10), ("configmaps", 8), ("secrets", 7), ("services/endpoints", 5), ("replicasets", 3), ("deployments", 2)];
    let total: usize = RESOURCES.iter().map(|r| r.1).sum();
    let mut keys = Vec::with_capacity(n);
    for (res, share) in RESOURCES {
        for i in 0..n * share / total {
            keys.push(format!("/registry/{res}/ns-{}/obj-{i:07}", i % 50).into_bytes());
        }
    }
    let value = vec![b'v'; value_bytes];
    let chunks: Vec<Vec<(Vec<u8>, Vec<u8>)>> = keys.chunks(128).map(|c| c.iter().map(|k| (k.clone(), value.clone())).collect()).collect();
    let per = chunks.len().div_ceil(8);
    let mut tasks = vec![];
    let mut it = chunks.into_iter();
    for _ in 0..8 {
        let mine: Vec<_> = it.by_ref().take(per).collect();
        let conn = lab.connector(0).unwrap();
        let url = lab.node(0).client_url();
        tasks.push(tokio::spawn(async move {
            let mut ep = conn.connect(&url).await.unwrap();
            for c in mine {
                ep.put_batch(&c).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
