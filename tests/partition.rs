//! Split brain, tested with a real partition (cgroup + iptables, see `hostfix_lab::fault`),
//! on 3-member mTLS static-pod labs, both etcd versions.
//!
//! - A master cut off from two healthy peers sees them time out. `diagnose` must not call
//!   that a quorum loss, and `rebuild`/`restore` must refuse, changing nothing; once the
//!   partition heals, the cluster is whole again with no repair.
//! - Two masters that are really down, but time out from the survivor because the survivor
//!   is also cut off: `rebuild` refuses until the operator vouches with `--peers-down`.
//! (Two masters that refuse connections still get `quorum-lost`/`rebuild`: tests/diagnose.rs
//! and tests/recover.rs.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use hostfix_lab::fault::Partition;
use hostfix_lab::{EtcdVersion, Lab, LabRuntime};

fn args(lab: &Lab, i: usize, extra: &[&str]) -> Vec<String> {
    let mut a = node_args(lab, i);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_in(p: &Partition, lab: &Lab, i: usize, extra: &[&str]) -> Out {
    // Loopback answers in microseconds; a short timeout keeps the cut-off side quick.
    let mut a = args(lab, i, &["--timeout", "1"]);
    a.extend(extra.iter().map(|s| s.to_string()));
    hostfix_in(p, &a.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The master's configuration and etcd-hostfix's state: a refusal leaves them
/// byte-identical (etcd itself keeps writing its data dir).
fn config_snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = snapshot(&root.join("etc"));
    m.extend(snapshot(&root.join("root")));
    m.extend(snapshot(&root.join("var/lib/etcd-hostfix")));
    m.insert(root.join("var/lib/etcd-hostfix(exists)"), vec![root.join("var/lib/etcd-hostfix").exists() as u8]);
    m
}

fn refused(o: &Out, what: &str, names: &[&str]) {
    assert_eq!(o.code, 3, "{what}: expected a refusal\nstdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("timed out"), "{what}: the refusal says how the peers failed:\n{}", o.stderr);
    for n in names {
        assert!(o.stderr.contains(n), "{what}: the refusal names {n}:\n{}", o.stderr);
    }
    assert!(o.stderr.contains("--peers-down"), "{what}: the refusal names the override:\n{}", o.stderr);
}

async fn partitioned_minority(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    // A snapshot to try `restore` with, taken while everything is healthy.
    let snap = d.path().join("before.db");
    let o = hostfix(&args(&lab, 0, &["snapshot", "save", "--out", snap.to_str().unwrap()]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.code, 0, "snapshot save: {}", o.stderr);

    let mut cut = Partition::cut(&lab, 2).unwrap();
    // The majority keeps serving writes.
    lab.etcdctl(0, &["put", "/during/partition", "x"]).unwrap();

    // Diagnose on the cut-off master: once its member has lost the leader, what it sees is
    // two peers timing out. That is a partition, never a quorum loss.
    let mut last = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let o = run_in(&cut, &lab, 2, &["diagnose"]);
        last = format!("{}\n{}", o.stdout, o.stderr);
        if o.stdout.contains("class:    partitioned") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(last.contains("class:    partitioned"), "{last}");
    assert!(last.contains("playbook: manual"), "{last}");
    assert!(!last.contains("quorum-lost") && !last.contains("playbook: rebuild"), "{last}");
    let next = last.lines().find(|l| l.starts_with("next:")).unwrap_or_default();
    assert!(!next.contains("rebuild") && !next.contains("restore"), "{next}");
    assert!(last.contains("timed out") && last.contains("m1") && last.contains("m2"), "{last}");
    assert!(last.contains("ping -c 3"), "the checks to run are given:\n{last}");

    // rebuild and restore refuse and change nothing, --force or not.
    let root = lab.node(2).host_root.clone();
    let before = config_snapshot(&root);
    refused(&run_in(&cut, &lab, 2, &["rebuild", "--dry-run"]), "rebuild --dry-run", &["m1", "m2"]);
    refused(&run_in(&cut, &lab, 2, &["rebuild", "--yes"]), "rebuild --yes", &["m1", "m2"]);
    refused(&run_in(&cut, &lab, 2, &["rebuild", "--yes", "--force"]), "rebuild --force", &["m1", "m2"]);
    refused(&run_in(&cut, &lab, 2, &["restore", "--yes", "--snapshot", snap.to_str().unwrap()]), "restore", &["m1", "m2"]);
    assert_eq!(before, config_snapshot(&root), "a refusal changed files on m3");

    // Healed, the cluster is whole again by itself, with every key on m3.
    cut.heal().unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(90)).await.unwrap();
    assert_all_keys(&lab, 2);
    let got = lab.etcdctl(2, &["get", "/during/partition", "--print-value-only", "--consistency=s"]);
    assert_eq!(got.unwrap().trim(), "x", "m3 caught up on what the majority wrote meanwhile");
    assert!(!root.join("var/lib/etcd-hostfix").exists(), "nothing was repaired");
    lab.down().await.unwrap();
}

/// A daemon on every master, and m3 cut off: m3's daemon sees a partition and only
/// alerts; no daemon repairs anything; healed, m3 catches up with no repair at all.
async fn daemons_leave_a_partitioned_master_alone(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    let mut cut = Partition::group(&lab, 2).unwrap();
    let mut ds: Vec<DaemonProc> = (0..3)
        .map(|i| DaemonProc::start_in(&lab, i, &daemon_config(&lab, i, ""), &[], (i == 2).then_some(&cut)))
        .collect();
    until("every daemon watching", 60, || ds.iter().all(|d| d.status()["decision"].as_str().is_some())).await;
    let root = lab.node(2).host_root.clone();
    let before = snapshot(&root.join("etc"));
    cut.cut_off().unwrap();
    lab.etcdctl(0, &["put", "/during/partition", "x"]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while ds[2].status()["class"] != "partitioned" {
        assert!(std::time::Instant::now() < deadline, "m3's daemon never saw the partition: {:#}\n{}", ds[2].status(), ds[2].log_text());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Long enough for a policy that would act to have acted: the confirmation window and
    // more probes. It checks an absence (no action), so a slow machine can only make it
    // pass wrongly, never fail.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let st = ds[2].status();
    assert_eq!(st["class"], "partitioned", "{st:#}");
    assert_eq!(st["decision"], "alert", "{st:#}");
    assert!(st["why"].as_str().unwrap_or_default().contains("No rebuild is offered"), "{st:#}");
    for (i, dp) in ds.iter().enumerate() {
        assert!(dp.incidents().is_empty(), "{}'s daemon opened an incident:\n{}", lab.node(i).name, dp.log_text());
    }
    assert_eq!(before, snapshot(&root.join("etc")), "nothing on m3 was touched");
    cut.heal().unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(90)).await.unwrap();
    assert_all_keys(&lab, 2);
    let got = lab.etcdctl(2, &["get", "/during/partition", "--print-value-only", "--consistency=s"]).unwrap();
    assert_eq!(got.trim(), "x");
    until("m3's daemon sees it healthy again", 60, || ds[2].status()["class"] == "healthy").await;
    for (i, dp) in ds.iter_mut().enumerate() {
        assert!(dp.incidents().is_empty(), "{}: no repair after the heal either", lab.node(i).name);
        dp.stop();
    }
    assert!(!root.join("var/lib/etcd-hostfix/archive").exists(), "nothing was archived");
    lab.down().await.unwrap();
}

async fn vouched_for_peers_that_time_out(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    // m2 and m3 are really down, but the survivor is also cut off, so from there they time
    // out instead of refusing: only a person can know they are off.
    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
    }
    let cut = Partition::cut(&lab, 0).unwrap();
    let root = lab.node(0).host_root.clone();
    let before = config_snapshot(&root);
    refused(&run_in(&cut, &lab, 0, &["rebuild", "--yes"]), "rebuild without --peers-down", &["m2", "m3"]);
    // A vouch must name members that exist.
    let o = run_in(&cut, &lab, 0, &["rebuild", "--yes", "--peers-down", "m2,m9"]);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("m9"), "{}", o.stderr);
    // Vouch for both, as the operator who powered them off would.
    assert_eq!(before, config_snapshot(&root));
    let o = run_in(&cut, &lab, 0, &["rebuild", "--dry-run", "--peers-down", "m2,m3"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("operator vouched that m2, m3 are down"), "{}", o.stdout);
    assert_eq!(before, config_snapshot(&root), "a dry run changed files");
    let o = run_in(&cut, &lab, 0, &["rebuild", "--yes", "--peers-down", "m2,m3"]);
    assert_eq!(o.code, 0, "rebuild with --peers-down\nstdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("operator vouched that m2, m3 are down"), "{}", o.stdout);
    // m1 now serves alone, with every key (asked from its side of the cut).
    let o = run_in(&cut, &lab, 0, &["-o", "json", "status"]);
    let j = o.json();
    assert_eq!(j["members"].as_array().unwrap().len(), 1, "{}", o.stdout);
    assert_eq!(j["members"][0]["quorum_read"], true, "{}", o.stdout);
    drop(cut);
    assert_all_keys(&lab, 0);
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_minority_is_never_rebuilt_v3_4() {
    partitioned_minority(EtcdVersion::V3_4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_minority_is_never_rebuilt_v3_6() {
    partitioned_minority(EtcdVersion::V3_6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_down_vouches_for_peers_that_time_out_v3_4() {
    vouched_for_peers_that_time_out(EtcdVersion::V3_4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_down_vouches_for_peers_that_time_out_v3_6() {
    vouched_for_peers_that_time_out(EtcdVersion::V3_6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_leave_a_partitioned_master_alone_v3_4() {
    daemons_leave_a_partitioned_master_alone(EtcdVersion::V3_4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_leave_a_partitioned_master_alone_v3_6() {
    daemons_leave_a_partitioned_master_alone(EtcdVersion::V3_6).await
}
