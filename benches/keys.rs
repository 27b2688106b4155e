//! `etcd-hostfix keys` against seed 003's pipe,
//! `etcdctl get / --prefix --keys-only | sed '/^$/d' | cut -d/ -f3 | sort | uniq -c | sort -rn`,
//! run with the same version's etcdctl on the same lab, alternating, at 100k and 1M keys laid
//! out like a Kubernetes keyspace. Wall time with process start for both, and the tool's peak
//! RSS (wait4). Both answer the same question (keys per resource); the counts are checked
//! to agree. Not a test: run `scripts/dev bench keys`.
//!
//! Environment: HOSTFIX_BENCH_VERSIONS (default "3.6"), HOSTFIX_BENCH_KEYS (default
//! "100000,1000000"), HOSTFIX_BENCH_ROUNDS (default 3), HOSTFIX_BENCH_VALUE_BYTES (default 256).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hostfix_lab::benchutil::{fill_keys, median, tempdir};
use hostfix_lab::{EtcdVersion, Lab, LabRuntime, LabSpec};

const BIN: &str = env!("CARGO_BIN_EXE_etcd-hostfix");

struct Run {
    took: Duration,
    max_rss_kib: i64,
    stdout: String,
}

/// The child's peak RSS is its `VmHWM`, read every 5 ms until it exits: wait4's
/// `ru_maxrss` is no use here, it carries the forking benchmark's own high-water mark.
fn run(cmd: &mut std::process::Command) -> Run {
    use std::io::Read;
    let t = Instant::now();
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::inherit()).spawn().unwrap();
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0i64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = hostfix_lab::benchutil::proc_status_kib(pid, "VmHWM") {
                    peak = peak.max(kib as i64);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    let took = t.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_rss_kib = watcher.join().unwrap();
    assert!(status.success(), "{cmd:?} failed: {stdout}");
    Run { took, max_rss_kib, stdout }
}

fn pipe(lab: &Lab, v: EtcdVersion) -> Run {
    let (ca, cert, key) = lab.client_tls_files(0);
    let etcdctl = v.bin_dir().unwrap().join("etcdctl");
    let script = format!(
        "ETCDCTL_API=3 {} --endpoints={} --cacert={} --cert={} --key={} --command-timeout=600s get / --prefix --keys-only \
         | sed '/^$/d' | cut -d/ -f3 | sort | uniq -c | sort -rn",
        etcdctl.display(),
        lab.node(0).client_url(),
        ca.display(),
        cert.display(),
        key.display()
    );
    run(std::process::Command::new("sh").args(["-c", &script]))
}

fn tool(lab: &Lab, extra: &[&str]) -> Run {
    run(std::process::Command::new(BIN)
        .args(["--host-root", lab.node(0).host_root.to_str().unwrap(), "--timeout", "60s", "-o", "json", "keys"])
        .args(extra))
}

/// resource -> keys, from the pipe's `uniq -c` lines.
fn pipe_counts(out: &str) -> BTreeMap<String, u64> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.nth(1)?.to_string(), l.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// resource -> keys, from the tool's JSON (groups `/registry/<resource>`).
fn tool_counts(out: &str) -> BTreeMap<String, u64> {
    let v: serde_json::Value = serde_json::from_str(out).unwrap();
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| Some((g["group"].as_str()?.strip_prefix("/registry/")?.to_string(), g["keys"].as_u64()?)))
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let versions: Vec<EtcdVersion> = env("HOSTFIX_BENCH_VERSIONS", "3.6").split(',').map(|s| s.trim().parse().unwrap_or_else(|e| panic!("HOSTFIX_BENCH_VERSIONS: {e}"))).collect();
    let counts: Vec<usize> = env("HOSTFIX_BENCH_KEYS", "100000,1000000").split(',').map(|s| s.trim().parse().unwrap()).collect();
    let rounds: usize = env("HOSTFIX_BENCH_ROUNDS", "3").parse().unwrap();
    let value: usize = env("HOSTFIX_BENCH_VALUE_BYTES", "256").parse().unwrap();
    let mut report = String::from(
        "| etcd | keys | seed 003 pipe | keys (values read) | ratio | peak RSS | keys --count-only | ratio | peak RSS |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (k, v) in versions.iter().enumerate() {
        for (s, n) in counts.iter().enumerate() {
            let dir = tempdir();
            let spec = LabSpec::new(&dir, 3, *v, LabRuntime::StaticPod, [182, (k * 10 + s) as u8]);
            let mut lab = Lab::up(spec, Path::new(BIN), false).await.unwrap();
            lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
            let t = Instant::now();
            fill_keys(&lab, *n, value).await;
            eprintln!("etcd {} {n} keys loaded in {:.1}s", v.tag(), t.elapsed().as_secs_f64());
            let (mut p, mut b, mut c) = (vec![], vec![], vec![]);
            let (mut rss_b, mut rss_c) = (0, 0);
            for r in 0..rounds {
                let pr = pipe(&lab, *v);
                let br = tool(&lab, &[]);
                let cr = tool(&lab, &["--count-only"]);
                let want = pipe_counts(&pr.stdout);
                assert_eq!(tool_counts(&br.stdout), want, "keys disagrees with the pipe");
                assert_eq!(tool_counts(&cr.stdout), want, "keys --count-only disagrees with the pipe");
                eprintln!(
                    "etcd {} {n} keys round {}: pipe {:.2}s, keys {:.2}s ({} MiB), keys --count-only {:.3}s ({} MiB)",
                    v.tag(),
                    r + 1,
                    pr.took.as_secs_f64(),
                    br.took.as_secs_f64(),
                    br.max_rss_kib / 1024,
                    cr.took.as_secs_f64(),
                    cr.max_rss_kib / 1024
                );
                rss_b = rss_b.max(br.max_rss_kib);
                rss_c = rss_c.max(cr.max_rss_kib);
                p.push(pr.took);
                b.push(br.took);
                c.push(cr.took);
            }
            let (p, b, c) = (median(p), median(b), median(c));
            report.push_str(&format!(
                "| {} | {n} | {:.2} s | {:.2} s | {:.1}× faster | {} MiB | {:.3} s | {:.0}× faster | {} MiB |\n",
                v.tag(),
                p.as_secs_f64(),
                b.as_secs_f64(),
                p.as_secs_f64() / b.as_secs_f64(),
                rss_b / 1024,
                c.as_secs_f64(),
                p.as_secs_f64() / c.as_secs_f64(),
                rss_c / 1024
            ));
            lab.down().await.unwrap();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-keys.md");
    std::fs::write(&out, &report).unwrap();
    eprintln!("written to {}", out.display());
}
