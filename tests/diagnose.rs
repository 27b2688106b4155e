//! `etcd-hostfix diagnose` on real clusters: every class reproduced live, in the static-pod
//! lab with both etcd versions, plus seed 004's RKE case on Docker and the `--log` mode.

mod common;
mod failures;

use std::time::Duration;

use common::*;
use hostfix_lab::{EtcdVersion, Lab, LabRuntime};

fn diagnose(lab: &Lab, i: usize) -> (Out, serde_json::Value) {
    let mut args = node_args(lab, i);
    args.extend(["-o".to_string(), "json".to_string(), "diagnose".to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = hostfix(&refs);
    let j = o.json();
    (o, j)
}

/// Poll until the finding settles on `class` (crashloops take a restart or two to show).
async fn expect(lab: &Lab, i: usize, class: &str, playbook: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (o, j) = diagnose(lab, i);
        if j["class"] == class {
            assert_eq!(j["playbook"], playbook, "{j:#}");
            assert_eq!(o.code, if class == "healthy" { 0 } else { 4 }, "{j:#}");
            // The name the member is configured with (a typo in membership-mismatch).
            if class != "membership-mismatch" {
                assert_eq!(j["member"], lab.member_name(i), "{j:#}");
            }
            if class != "healthy" {
                assert!(!j["evidence"].as_array().unwrap().is_empty(), "{j:#}");
                assert!(j["command"].as_str().unwrap().contains("etcd") , "{j:#}");
            }
            // The table form tells the same story.
            let mut args = node_args(lab, i);
            args.push("diagnose".into());
            let t = hostfix(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(t.stdout.contains(&format!("class:    {class}")), "{}", t.stdout);
            return j;
        }
        if std::time::Instant::now() > deadline {
            panic!("expected {class}, last finding: {j:#}\nstderr: {}", o.stderr);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn live(v: EtcdVersion, class: &str, playbook: &str) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    lab.etcdctl(0, &["put", "/a", "b"]).unwrap();
    let i = match class {
        "healthy" => 0,
        "not-running" => failures::not_running(&lab, failures::TARGET).await,
        "already-bootstrapped" => failures::already_bootstrapped(&lab, failures::TARGET).await,
        "data-lost" => failures::data_lost(&lab, failures::TARGET).await,
        "cluster-id-mismatch" => failures::cluster_id_mismatch(&lab, failures::TARGET).await,
        "member-removed" => failures::member_removed(&lab, failures::TARGET).await,
        "db-corrupt" => failures::db_corrupt(&lab, failures::TARGET).await,
        "wal-corrupt" => failures::wal_corrupt(&lab, failures::TARGET).await,
        "wal-no-member-id" => failures::wal_no_member_id(&lab, failures::TARGET).await,
        "membership-mismatch" => failures::membership_mismatch(&lab, failures::TARGET).await,
        "nospace" => failures::nospace(&lab, failures::TARGET).await,
        "quorum-lost" => failures::quorum_lost(&lab, failures::TARGET).await,
        "unknown" => failures::unknown(&lab, failures::TARGET).await,
        _ => unreachable!(),
    };
    // A failure named apart from its class: the class, and the evidence it must rest on.
    let (class, evidence) = match class {
        "wal-no-member-id" => ("wal-corrupt", Some("cannot use none as id")),
        c => (c, None),
    };
    let j = expect(&lab, i, class, playbook).await;
    if let Some(e) = evidence {
        assert!(j["evidence"].to_string().contains(e), "expected evidence {e:?}: {j:#}");
    }
    if class == "healthy" {
        assert!(j["command"].as_str().unwrap().is_empty());
    }
    if playbook == "rejoin" || playbook == "rebuild" {
        let cmd = j["command"].as_str().unwrap();
        assert!(cmd.ends_with(playbook) && cmd.contains(&lab.node(i).host_root.display().to_string()), "{cmd}");
    }
    lab.down().await.unwrap();
}

macro_rules! live_tests {
    ($($name:ident: $class:literal => $playbook:literal),* $(,)?) => {
        mod etcd_3_4 { use super::*; $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { live(EtcdVersion::V3_4, $class, $playbook).await }
        )* }
        mod etcd_3_6 { use super::*; $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { live(EtcdVersion::V3_6, $class, $playbook).await }
        )* }
    };
}

live_tests! {
    healthy: "healthy" => "none",
    not_running: "not-running" => "manual",
    already_bootstrapped: "already-bootstrapped" => "rejoin",
    data_lost: "data-lost" => "rejoin",
    cluster_id_mismatch: "cluster-id-mismatch" => "rejoin",
    member_removed: "member-removed" => "rejoin",
    db_corrupt: "db-corrupt" => "rejoin",
    wal_corrupt: "wal-corrupt" => "rejoin",
    // Well-formed records that decode to member ID 0: `cannot use none as id`.
    wal_no_member_id: "wal-no-member-id" => "rejoin",
    membership_mismatch: "membership-mismatch" => "rejoin",
    nospace: "nospace" => "defrag",
    quorum_lost: "quorum-lost" => "rebuild",
    unknown: "unknown" => "manual",
}

/// Seed 004: an RKE node whose bbolt file is corrupt, read through the Docker API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rke_docker_db_corrupt() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_6, LabRuntime::Docker).await;
    lab.stop_member(2).await.unwrap();
    Lab::scribble(&lab.node(2).data_dir().join("member/snap/db"), 0, 8192).unwrap();
    lab.start_member(2).await.unwrap();
    let j = expect(&lab, 2, "db-corrupt", "rejoin").await;
    assert!(j["log_source"].as_str().unwrap().starts_with("docker logs"), "{j:#}");
    assert!(j["command"].as_str().unwrap().contains("--runtime docker --container"), "{j:#}");
    lab.down().await.unwrap();
}

#[test]
fn log_file_and_stdin() {
    let fixture = format!("{}/crates/hostfix-core/testdata/logs/3.4.23/data-lost.log", env!("CARGO_MANIFEST_DIR"));
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let o = hostfix(&["--host-root", root, "--docker-host", "unix:///nonexistent", "-o", "json", "diagnose", "--log", &fixture]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    let j = o.json();
    assert_eq!(j["class"], "data-lost");
    assert!(j["probes"].is_null());
    let mut child = std::process::Command::new(BIN)
        .args(["--host-root", root, "--docker-host", "unix:///nonexistent", "diagnose", "--log", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"panic: freepages: failed to get all reachable pages (page 6987: multiple references)\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("class:    db-corrupt"));
    // A missing log file is a plain error naming it.
    let o = hostfix(&["--host-root", root, "diagnose", "--log", "/nonexistent/etcd.log"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("/nonexistent/etcd.log"), "{}", o.stderr);
}
