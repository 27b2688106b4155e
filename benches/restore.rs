//! `etcd-hostfix restore` against the manual snapshot restore (`restore_procedure` in
//! `hostfix-lab/src/manual.rs`: park, move the data dir aside, `etcdutl snapshot restore`,
//! unpark), on the same lab in the same run, alternating, with both etcd versions, at ~200 MB.
//! Not a test: run `scripts/dev bench restore`.
//!
//! The lab first loses m2 and m3 and is restored once by hand (untimed), so that every round
//! starts from the same state: m1 is a healthy one-member cluster, and the snapshot was taken
//! of it. The tool therefore runs with `--force` (the cluster it replaces has quorum). Both
//! clocks stop when m1 serves quorum reads as the only member.
//!
//! Environment: HOSTFIX_BENCH_VERSIONS (default "3.4,3.6"), HOSTFIX_BENCH_SIZES_MB (default
//! "200"), HOSTFIX_BENCH_ROUNDS (default 3).

use std::path::Path;
use std::time::{Duration, Instant};

use hostfix_lab::benchutil::{run_logged, run_matrix, steps_line, Matrix};
use hostfix_lab::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_etcd-hostfix");

fn snapshot(lab: &Lab) -> std::path::PathBuf {
    lab.node(0).host_root.join("root/bench.db")
}

/// Once per lab, untimed: m2 and m3 lost, m1 restored by hand from a snapshot of itself.
async fn prepare(lab: &Lab) {
    let snap = snapshot(lab);
    if snap.exists() {
        return;
    }
    std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
    lab.etcdctl(0, &["--command-timeout=600s", "snapshot", "save", snap.to_str().unwrap()]).unwrap();
    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
        Lab::lose_data(lab.node(i)).unwrap();
    }
    hostfix_lab::manual::restore_procedure(lab, 0, &snap).await.unwrap();
}

async fn single(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ok = async {
            let mut ep = lab.connector(0).ok()?.connect(&lab.node(0).client_url()).await.ok()?;
            ep.health().await.ok()?;
            (ep.member_list().await.ok()?.members.len() == 1).then_some(())
        }
        .await;
        if ok.is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "m1 never served alone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn time_manual(lab: &Lab) -> Duration {
    prepare(lab).await;
    let t = Instant::now();
    hostfix_lab::manual::restore_procedure(lab, 0, &snapshot(lab)).await.unwrap();
    single(lab).await;
    let took = t.elapsed();
    // Untimed: the data dirs the procedure moved aside.
    for e in std::fs::read_dir(&lab.node(0).host_root).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("etcd.bak-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    took
}

async fn time_tool(lab: &Lab) -> Duration {
    prepare(lab).await;
    let t = Instant::now();
    let (out, steps) = run_logged(Path::new(BIN), &lab.node(0).host_root, &["restore", "--snapshot", snapshot(lab).to_str().unwrap(), "--yes", "--force"]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ran = t.elapsed();
    single(lab).await;
    let took = t.elapsed();
    eprintln!("{} + served alone {:.2}s", steps_line("restore", ran, &steps), (took - ran).as_secs_f64());
    // The archives are the tool's, not the benchmark's disk budget.
    let _ = std::fs::remove_dir_all(lab.node(0).host_root.join("var/lib/etcd-hostfix/archive"));
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-restore.md");
    run_matrix(&Matrix::from_env("200"), Path::new(BIN), 183, &["manual restore", "etcd-hostfix restore"], &out, |lab| {
        Box::pin(async move { vec![time_manual(lab).await, time_tool(lab).await] })
    })
    .await;
}
