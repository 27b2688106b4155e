//! Time to recovery after quorum loss: `etcd-hostfix rebuild` on the survivor plus `rejoin`
//! on each other master, against seed 002's steps scripted with zero think time, on the
//! same lab in the same run, alternating, with both etcd versions. Not a test: run
//! `scripts/dev bench` (or `cargo bench --bench rebuild`).
//!
//! Both start from the same state: m1 is up without quorum; m2 and m3 are gone for good
//! (stopped, manifests parked, data lost). Both put those manifests back as part of the
//! procedure. Both clocks stop when all three members are healthy voters at the leader's
//! revision.
//!
//! Environment: HOSTFIX_BENCH_VERSIONS (default "3.4,3.6"), HOSTFIX_BENCH_SIZES_MB
//! (default "7"), HOSTFIX_BENCH_ROUNDS (default 3).

use std::path::Path;
use std::time::{Duration, Instant};

use hostfix_lab::benchutil::{converged, run_logged, run_matrix, steps_line, Matrix};
use hostfix_lab::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_etcd-hostfix");

/// Seed 002's starting point: m2 and m3 lost (manifests parked in /root, data moved away).
async fn lose_two(lab: &Lab) {
    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
        Lab::lose_data(lab.node(i)).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn time_manual(lab: &Lab) -> Duration {
    lose_two(lab).await;
    let t = Instant::now();
    hostfix_lab::manual::seed_002_procedure(lab, 0).await.unwrap();
    converged(lab, 2).await;
    let took = t.elapsed();
    // The seed leaves --force-new-cluster in m1's manifest; take it out (untimed) so the
    // next round starts from a sane cluster.
    lab.stop_member(0).await.unwrap();
    let parked = lab.node(0).host_root.join("root/etcd.yaml");
    let text = std::fs::read_to_string(&parked).unwrap();
    let fixed = hostfix_core::manifest::edit_manifest_flags(&text, &[("force-new-cluster".into(), None)]).unwrap();
    std::fs::write(&parked, fixed).unwrap();
    lab.start_member(0).await.unwrap();
    converged(lab, 0).await;
    took
}

/// Runs the tool with its step log on; its steps' times.
fn run(lab: &Lab, i: usize, args: &[&str]) -> Vec<(String, u64)> {
    let (out, steps) = run_logged(Path::new(BIN), &lab.node(i).host_root, args);
    assert!(out.status.success(), "{args:?}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    steps
}

async fn time_tool(lab: &Lab) -> Duration {
    lose_two(lab).await;
    let t = Instant::now();
    let s = Instant::now();
    let steps = run(lab, 0, &["rebuild", "--yes"]);
    let mut lines = vec![steps_line("rebuild on m1", s.elapsed(), &steps)];
    // The replaced masters get their manifests back (as the manual procedure does) and are
    // rejoined. Started before the rebuild, members that still hold `existing` in their
    // manifests would rejoin the old cluster by themselves (seed 003 saw exactly that).
    for i in [1, 2] {
        let s = Instant::now();
        lab.start_member(i).await.unwrap();
        let steps = run(lab, i, &["rejoin", "--yes"]);
        lines.push(steps_line(&format!("start + rejoin on m{}", i + 1), s.elapsed(), &steps));
    }
    converged(lab, 2).await;
    let took = t.elapsed();
    // Outside the clock: where the time went.
    for l in lines {
        eprintln!("{l}");
    }
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-rebuild.md");
    run_matrix(&Matrix::from_env("7"), Path::new(BIN), 181, &["seed 002", "rebuild + 2 rejoins"], &out, |lab| {
        Box::pin(async move { vec![time_manual(lab).await, time_tool(lab).await] })
    })
    .await;
}
