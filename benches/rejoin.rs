//! Time to recovery: `etcd-hostfix rejoin` against seed 000's manual procedure scripted with
//! zero think time, on the same lab in the same run, alternating, at ~7 MB and ~200 MB, with
//! both etcd versions. Not a test: run `scripts/dev bench` (or `cargo bench --bench rejoin`).
//!
//! Both clocks start when the repair starts on an already crashlooping member and stop when
//! every member is healthy and the repaired member's revision equals the leader's.
//!
//! Environment: HOSTFIX_BENCH_VERSIONS (default "3.4,3.5"), HOSTFIX_BENCH_SIZES_MB
//! (default "7,200"), HOSTFIX_BENCH_ROUNDS (default 3).

use std::path::Path;
use std::time::{Duration, Instant};

use hostfix_lab::benchutil::{converged, fill, median, tempdir};
use hostfix_lab::{EtcdVersion, Lab, LabRuntime, LabSpec};

const BIN: &str = env!("CARGO_BIN_EXE_etcd-hostfix");
/// The member crashloops as in seed 000: data lost, manifest still says `new`.
async fn break_member(lab: &Lab, i: usize) {
    lab.offline(i, |n| {
        Lab::lose_data(n)?;
        Ok(vec![("initial-cluster-state".into(), Some("new".into()))])
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
}

async fn time_manual(lab: &Lab, i: usize) -> Duration {
    break_member(lab, i).await;
    let t = Instant::now();
    hostfix_lab::manual::seed_000_procedure(lab, i).await.unwrap();
    converged(lab, i).await;
    t.elapsed()
}

async fn time_rejoin(lab: &Lab, i: usize) -> Duration {
    break_member(lab, i).await;
    let t = Instant::now();
    let out = std::process::Command::new(BIN)
        .args(["--host-root", lab.node(i).host_root.to_str().unwrap(), "rejoin", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    converged(lab, i).await;
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; nothing else is expected.
    let versions: Vec<EtcdVersion> = std::env::var("HOSTFIX_BENCH_VERSIONS")
        .unwrap_or_else(|_| "3.4,3.5".into())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let sizes: Vec<usize> = std::env::var("HOSTFIX_BENCH_SIZES_MB")
        .unwrap_or_else(|_| "7,200".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let rounds: usize = std::env::var("HOSTFIX_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut report = String::from("| etcd | data | db size | manual (median) | rejoin (median) | ratio | rounds |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for (k, v) in versions.iter().enumerate() {
        for (s, mb) in sizes.iter().enumerate() {
            let dir = tempdir();
            let spec = LabSpec::new(&dir, 3, *v, LabRuntime::StaticPod, [180, (k * 10 + s) as u8]);
            let mut lab = Lab::up(spec, Path::new(BIN), false).await.unwrap();
            lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
            fill(&lab, *mb).await;
            let db = lab.connector(0).unwrap().connect(&lab.node(0).client_url()).await.unwrap().status().await.unwrap().db_size;
            let (mut manual, mut tool) = (vec![], vec![]);
            for r in 0..rounds {
                let m = time_manual(&lab, 2).await;
                let t = time_rejoin(&lab, 2).await;
                eprintln!("etcd {} {mb} MB round {}: manual {:.2}s rejoin {:.2}s", v.tag(), r + 1, m.as_secs_f64(), t.as_secs_f64());
                manual.push(m);
                tool.push(t);
            }
            let (m, t) = (median(manual), median(tool));
            report.push_str(&format!(
                "| {} | ~{mb} MB | {:.0} MB | {:.2} s | {:.2} s | {:.2}× | {rounds} |\n",
                v.tag(),
                db as f64 / 1e6,
                m.as_secs_f64(),
                t.as_secs_f64(),
                t.as_secs_f64() / m.as_secs_f64()
            ));
            lab.down().await.unwrap();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-rejoin.md");
    std::fs::write(&out, &report).unwrap();
    eprintln!("written to {}", out.display());
}
