//! The daemon's time to recovery, measured: a lab with `etcd-hostfix daemon` on every
//! master, a member broken as in seed 000 (data lost, manifest still says `new`), nobody
//! typing. In the same run, on the same lab, the scripted seed 000 procedure is the floor
//! (with the broken master's daemon paused for it). Each daemon round starts with one
//! recent snapshot in the broken master's state dir, as the daemon's schedule leaves it,
//! which its repair reuses as the backup. Then the idle cost of one daemon.
//! Not a test: `scripts/dev bench` (or `cargo bench --bench daemon`).
//!
//! Phases per round:
//! - detection latency: from the first crash that shows a definitive signature (the CRI
//!   timestamp of etcd's "has already been bootstrapped" or "tocommit(N) is out of range"
//!   line) to the start of the playbook's first step;
//! - time to healthy: from the break (the broken manifest is back in place) until every
//!   member is a healthy voter and the repaired one has the leader's revision.
//!
//! Environment: HOSTFIX_BENCH_VERSIONS (default "3.4,3.6"), HOSTFIX_BENCH_SIZES_MB (default
//! "7,200"), HOSTFIX_BENCH_ROUNDS (default 3), HOSTFIX_BENCH_IDLE_SECS (default 600; 0 skips),
//! HOSTFIX_BENCH_MATRIX=0 (the idle cost alone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use hostfix_lab::benchutil::{converged, fill, median, tempdir, Matrix};
use hostfix_lab::{Lab, LabRuntime, LabSpec};

const BIN: &str = env!("CARGO_BIN_EXE_etcd-hostfix");

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn start_daemon(lab: &Lab, i: usize, probe: &str) -> Daemon {
    let n = lab.node(i);
    let cfg = n.host_root.join("etc/etcd-hostfix/config.yaml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, format!("probe_interval: {probe}\nsnapshot_interval: 0\nmax_repairs: 100\nmetrics_listen: {}:9379\n", n.ip)).unwrap();
    let log = std::fs::File::create(n.host_root.join("daemon.log")).unwrap();
    let child = Command::new(BIN)
        .args(["--runtime", "static-pod", "--host-root", n.host_root.to_str().unwrap(), "daemon"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Daemon { child }
}

fn hostfix(lab: &Lab, i: usize, args: &[&str]) {
    let o = Command::new(BIN)
        .args(["--runtime", "static-pod", "--host-root", lab.node(i).host_root.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

async fn break_member(lab: &Lab, i: usize) -> Instant {
    lab.offline(i, |n| {
        Lab::lose_data(n)?;
        Ok(vec![("initial-cluster-state".into(), Some("new".into()))])
    })
    .await
    .unwrap();
    Instant::now()
}

fn incidents(lab: &Lab, i: usize) -> Vec<PathBuf> {
    hostfix_daemon::files::incident_files(&lab.node(i).host_root.join("var/lib/etcd-hostfix"))
}

fn rfc3339(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64))
}

/// The CRI timestamp of the first line, written after `since`, that shows a signature.
fn first_signature(lab: &Lab, i: usize, since: SystemTime) -> Option<SystemTime> {
    let pods = lab.node(i).host_root.join("var/log/pods");
    let mut best: Option<SystemTime> = None;
    for pod in std::fs::read_dir(pods).ok()?.flatten() {
        for f in std::fs::read_dir(pod.path().join("etcd")).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            // The definitive signatures this break shows: `already bootstrapped` with `new`,
            // or (once a manual round has set `existing`) the raft log out of range; or, once
            // an earlier round has re-added m3 under a new ID, the wiped member starting under
            // its original, removed ID with `new` (3.6 and 3.7: "permanently removed from the
            // cluster", which the daemon heals as membership-mismatch with the probe's proof).
            let sig = |l: &&str| {
                ["has already been bootstrapped", "is out of range [lastIndex", "permanently removed from the cluster"].iter().any(|s| l.contains(s))
            };
            for l in text.lines().filter(sig) {
                if let Some(t) = l.split(' ').next().and_then(rfc3339) {
                    if t >= since && best.map(|b| t < b).unwrap_or(true) {
                        best = Some(t);
                    }
                }
            }
        }
    }
    best
}

/// One daemon round: (time to healthy, detection latency).
async fn daemon_round(lab: &Lab, i: usize) -> (Duration, Duration) {
    // The daemon's steady state, untimed: one recent snapshot of its healthy member (what
    // its 30-minute schedule leaves), and nothing else, so every round starts the same.
    let snaps = lab.node(i).host_root.join("var/lib/etcd-hostfix/snapshots");
    let _ = std::fs::remove_dir_all(&snaps);
    hostfix(lab, i, &["snapshot", "save", "--out", snaps.join("scheduled-1.db").to_str().unwrap()]);
    let before = incidents(lab, i).len();
    let wall = SystemTime::now();
    let t = break_member(lab, i).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Read while it lasts: the repair removes the crashlooping pod, and the kubelet its logs.
    let mut crash: Option<SystemTime> = None;
    let record = loop {
        if crash.is_none() {
            crash = first_signature(lab, i, wall);
        }
        let all = incidents(lab, i);
        if all.len() > before {
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(all.last().unwrap()).unwrap_or_default()).unwrap_or_default();
            if !v["outcome"].is_null() {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "the daemon never healed {}", lab.node(i).name);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    converged(lab, i).await;
    let healthy = t.elapsed();
    assert!(record["plan_header"].to_string().contains("scheduled-1.db"), "the recent snapshot was not reused: {record:#}");
    let started = record["steps"][0]["started_at"].as_str().and_then(rfc3339).expect("a first step");
    let Some(crash) = crash else {
        panic!("the crash's log line was not seen; incident: {record:#}\n{}", hostfix_lab::benchutil::log_tails(lab, i, 3, 5));
    };
    (healthy, started.duration_since(crash).unwrap_or_default())
}

/// The floor: seed 000 scripted with zero think time, from the break, the broken master's
/// daemon paused. A person also needs to notice; the floor does not count that.
async fn manual_round(lab: &Lab, i: usize) -> Duration {
    hostfix(lab, i, &["pause", "--reason", "benchmark: manual round"]);
    let t = break_member(lab, i).await;
    // As in the rejoin benchmark: start on a member that is already crashlooping.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t2 = Instant::now();
    hostfix_lab::manual::seed_000_procedure(lab, i).await.unwrap();
    converged(lab, i).await;
    let _ = t;
    let d = t2.elapsed();
    hostfix(lab, i, &["resume"]);
    d
}

/// CPU seconds (user + system) and RSS (KiB) of a process, from /proc.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|x| x.1).unwrap_or("").split_whitespace().collect();
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (fields.get(11).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0)) / tick;
    let rss = hostfix_lab::benchutil::proc_status_kib(pid, "VmRSS").unwrap_or(0);
    (cpu, rss)
}

async fn idle_cost(secs: u64, out: &mut String) {
    let dir = tempdir();
    let spec = LabSpec::new(&dir, 3, hostfix_lab::EtcdVersion::V3_6, LabRuntime::StaticPod, [183, 99]);
    let mut lab = Lab::up(spec, Path::new(BIN), false).await.unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    let d = start_daemon(&lab, 2, "1s");
    // Past start-up (first observation, connections made), then measure.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pid = d.child.id();
    let (cpu0, _) = usage(pid);
    let t0 = Instant::now();
    let mut max_rss = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        max_rss = max_rss.max(usage(pid).1);
    }
    let (cpu1, rss) = usage(pid);
    let share = (cpu1 - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    out.push_str(&format!(
        "\nIdle cost of one daemon at a 1 s probe over {secs} s (etcd {}, 3 healthy members): CPU {share:.2} % of a core, RSS {:.1} MiB at the end, {:.1} MiB at most.\n",
        hostfix_lab::EtcdVersion::V3_6.tag(),
        rss as f64 / 1024.0,
        max_rss as f64 / 1024.0
    ));
    drop(d);
    lab.down().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let m = Matrix::from_env("7,200");
    let mut report = String::from(
        "| etcd | data | db size | floor: seed 000 scripted (median) | daemon: break → healthy (median) | difference | ratio | detection (median, max) | rounds |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    // HOSTFIX_BENCH_MATRIX=0 measures the idle cost alone.
    let matrix = std::env::var("HOSTFIX_BENCH_MATRIX").map(|v| v != "0").unwrap_or(true);
    for (k, v) in m.versions.iter().enumerate().filter(|_| matrix) {
        for (s, mb) in m.sizes_mb.iter().enumerate() {
            let dir = tempdir();
            let spec = LabSpec::new(&dir, 3, *v, LabRuntime::StaticPod, [182, (k * 10 + s) as u8]);
            let mut lab = Lab::up(spec, Path::new(BIN), false).await.unwrap();
            lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
            fill(&lab, *mb).await;
            let db = lab.connector(0).unwrap().connect(&lab.node(0).client_url()).await.unwrap().status().await.unwrap().db_size;
            let daemons: Vec<Daemon> = (0..3).map(|i| start_daemon(&lab, i, "1s")).collect();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (mut floor, mut healed, mut detect) = (vec![], vec![], vec![]);
            for r in 0..m.rounds {
                let f = manual_round(&lab, 2).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                let (h, d) = daemon_round(&lab, 2).await;
                eprintln!("etcd {} {mb} MB round {}: floor {:.2}s, daemon {:.2}s (detection {:.2}s)", v.tag(), r + 1, f.as_secs_f64(), h.as_secs_f64(), d.as_secs_f64());
                floor.push(f);
                healed.push(h);
                detect.push(d);
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            let max_detect = detect.iter().max().copied().unwrap_or_default();
            let (f, h, d) = (median(floor), median(healed), median(detect));
            report.push_str(&format!(
                "| {} | ~{mb} MB | {:.0} MB | {:.2} s | {:.2} s | {:+.2} s | {:.2}× | {:.2} s, {:.2} s | {} |\n",
                v.tag(),
                db as f64 / 1e6,
                f.as_secs_f64(),
                h.as_secs_f64(),
                h.as_secs_f64() - f.as_secs_f64(),
                h.as_secs_f64() / f.as_secs_f64(),
                d.as_secs_f64(),
                max_detect.as_secs_f64(),
                m.rounds
            ));
            drop(daemons);
            lab.down().await.unwrap();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let idle: u64 = std::env::var("HOSTFIX_BENCH_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    if idle > 0 {
        idle_cost(idle, &mut report).await;
    }
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-daemon.md");
    std::fs::write(&out, &report).unwrap();
    eprintln!("written to {}", out.display());
}
