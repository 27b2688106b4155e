//! Not a test of the tool: captures etcd's own logs for every failure class, from every
//! version, into fixtures for the classifier's unit tests. Run explicitly:
//! `HOSTFIX_CAPTURE=crates/hostfix-core/testdata/logs scripts/dev test --test capture_logs -- --ignored`

mod common;
mod failures;

use std::time::Duration;

use common::*;
use hostfix_lab::{EtcdVersion, LabRuntime};

fn newest_log(root: &std::path::Path) -> Option<std::path::PathBuf> {
    let pods = root.join("var/log/pods");
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = vec![];
    for pod in std::fs::read_dir(pods).ok()?.flatten() {
        for f in std::fs::read_dir(pod.path().join("etcd")).ok()?.flatten() {
            files.push((f.metadata().ok()?.modified().ok()?, f.path()));
        }
    }
    files.sort();
    files.pop().map(|x| x.1)
}

/// Whether `HOSTFIX_CAPTURE_ONLY` / `HOSTFIX_CAPTURE_VERSIONS` (comma-separated, in `var`)
/// selects `name`; unset selects everything.
fn selected(var: &str, name: &str) -> bool {
    std::env::var(var).map_or(true, |only| only.split(',').any(|o| o == name))
}

/// Break a lab running `v` as `class` says, and store the broken member's log as a fixture
/// of `stored_as`: the same version, except for the refusals of data another version wrote,
/// which the member's new version logs.
async fn capture(v: EtcdVersion, stored_as: EtcdVersion, class: &str) {
    let out = std::path::PathBuf::from(std::env::var("HOSTFIX_CAPTURE").expect("set HOSTFIX_CAPTURE"));
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    lab.etcdctl(0, &["put", "/a", "b"]).unwrap();
    let i = match class {
        "v2store-content" => failures::v2_content(&lab, failures::TARGET, stored_as, true).await,
        "v2-wal" => failures::v2_content(&lab, failures::TARGET, stored_as, false).await,
        "schema-newer" => failures::schema_newer(&lab, failures::TARGET, stored_as).await,
        "already-bootstrapped" => failures::already_bootstrapped(&lab, failures::TARGET).await,
        "data-lost" => failures::data_lost(&lab, failures::TARGET).await,
        "member-removed" => failures::member_removed(&lab, failures::TARGET).await,
        "db-corrupt" => failures::db_corrupt(&lab, failures::TARGET).await,
        "wal-corrupt" => failures::wal_corrupt(&lab, failures::TARGET).await,
        "wal-no-member-id" => failures::wal_no_member_id(&lab, failures::TARGET).await,
        "nospace" => failures::nospace(&lab, failures::TARGET).await,
        "quorum-lost" => failures::quorum_lost(&lab, failures::TARGET).await,
        "membership-mismatch" => failures::membership_mismatch(&lab, failures::TARGET).await,
        "cluster-id-mismatch" => failures::cluster_id_mismatch(&lab, failures::TARGET).await,
        "unknown" => failures::unknown(&lab, failures::TARGET).await,
        "cluster-info-unreachable" => failures::cluster_info_unreachable(&lab, failures::TARGET).await,
        _ => unreachable!(),
    };
    // 8 s after the break: a few crashloop restarts.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let log = newest_log(&lab.node(i).host_root).unwrap();
    let dest = out.join(stored_as.tag()).join(format!("{class}.log"));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(&log, &dest).unwrap();
    lab.down().await.unwrap();
}

/// etcd 3.6's refusals of data it will not start on, from real upgrades and downgrades:
/// `v2store-content` and `v2-wal` (a 3.5 cluster that used the v2 API, one member moved to
/// 3.6: the v2 write in its last snapshot, or only in its WAL) and `schema-newer` (a 3.7
/// cluster, one member set back to 3.6 without etcd's downgrade procedure). All are
/// captured from the 3.6 member, into the 3.6 fixtures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn capture_version_refusals() {
    for (from, class) in [(EtcdVersion::V3_5, "v2store-content"), (EtcdVersion::V3_5, "v2-wal"), (EtcdVersion::V3_7, "schema-newer")] {
        if selected("HOSTFIX_CAPTURE_ONLY", class) {
            eprintln!("capturing {class}: etcd {} data started by {}", from.tag(), EtcdVersion::V3_6.tag());
            capture(from, EtcdVersion::V3_6, class).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn capture_all() {
    for v in EtcdVersion::all() {
        // HOSTFIX_CAPTURE_VERSIONS=3.6.16[,3.7.3] captures just those versions.
        if !selected("HOSTFIX_CAPTURE_VERSIONS", v.tag()) {
            continue;
        }
        for c in [
            "already-bootstrapped", "data-lost", "member-removed", "db-corrupt", "wal-corrupt", "wal-no-member-id",
            "nospace", "quorum-lost", "membership-mismatch", "cluster-id-mismatch", "unknown", "cluster-info-unreachable",
        ] {
            // HOSTFIX_CAPTURE_ONLY=class[,class] re-captures just those.
            if !selected("HOSTFIX_CAPTURE_ONLY", c) {
                continue;
            }
            eprintln!("capturing {c} from etcd {}", v.tag());
            capture(v, v, c).await;
        }
    }
}
