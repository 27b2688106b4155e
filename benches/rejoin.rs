//! Time to recovery: `etcd-hostfix rejoin` against seed 000's manual procedure scripted with
//! zero think time, on the same lab in the same run, alternating, at ~7 MB and ~200 MB (and
//! ~1 GB with HOSTFIX_BENCH_SIZES_MB=7,200,1024), with both etcd versions. Two rejoin columns:
//! with a recent snapshot present (the daemon's steady state: `--backup auto` reuses it) and
//! with `--backup fresh`. Not a test: run `scripts/dev bench rejoin`.
//!
//! Both clocks start when the repair starts on an already crashlooping member and stop when
//! every member is healthy and the repaired member's revision equals the leader's.
//!
//! Environment: HOSTFIX_BENCH_VERSIONS (default "3.4,3.6"), HOSTFIX_BENCH_SIZES_MB
//! (default "7,200"), HOSTFIX_BENCH_ROUNDS (default 3).

use std::path::Path;
use std::time::{Duration, Instant};

use hostfix_lab::benchutil::{converged, run_logged, run_matrix, steps_line, Matrix};
use hostfix_lab::Lab;

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

fn snapshots(lab: &Lab, i: usize) -> std::path::PathBuf {
    lab.node(i).host_root.join("var/lib/etcd-hostfix/snapshots")
}

/// Untimed: the snapshot a daemon's schedule would have taken of its healthy member.
fn recent_snapshot(lab: &Lab, i: usize) {
    let _ = std::fs::remove_dir_all(snapshots(lab, i));
    let out = std::process::Command::new(BIN)
        .args(["--host-root", lab.node(i).host_root.to_str().unwrap(), "snapshot", "save"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn time_rejoin(lab: &Lab, i: usize, backup: &str) -> Duration {
    if backup == "auto" {
        recent_snapshot(lab, i);
    }
    break_member(lab, i).await;
    let t = Instant::now();
    let (out, steps) = run_logged(Path::new(BIN), &lab.node(i).host_root, &["rejoin", "--yes", "--backup", backup]);
    let ran = t.elapsed();
    if backup == "auto" {
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("verified now against the SHA-256 of its"), "the recent snapshot was not reused:\n{said}");
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    converged(lab, i).await;
    let took = t.elapsed();
    // Outside the clock: where the time went (the run, then the wait for convergence).
    eprintln!("{} + converged {:.2}s", steps_line(&format!("rejoin --backup {backup}"), ran, &steps), (took - ran).as_secs_f64());
    let _ = std::fs::remove_dir_all(snapshots(lab, i));
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-rejoin.md");
    run_matrix(&Matrix::from_env("7,200"), Path::new(BIN), 180, &["manual", "rejoin, recent snapshot", "rejoin --backup fresh"], &out, |lab| {
        Box::pin(async move { vec![time_manual(lab, 2).await, time_rejoin(lab, 2, "auto").await, time_rejoin(lab, 2, "fresh").await] })
    })
    .await;
}
