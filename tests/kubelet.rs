//! The lab kubelet behaves like the kubelet's file source where etcd-hostfix depends on it.

mod common;

use std::time::Duration;

use common::*;
use hostfix_lab::{EtcdVersion, LabRuntime};

fn pod_dirs(root: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("var/log/pods"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_manifest_restarts_the_pod_as_a_new_pod() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 1, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    let root = lab.node(0).host_root.clone();
    assert_eq!(pod_dirs(&root).len(), 1);
    let m = lab.node(0).manifest();
    let text = std::fs::read_to_string(&m).unwrap();
    // Written in place, the way an editor or the tool's unpark would.
    let edited =
        hostfix_core::manifest::edit_manifest_flags(&text, &[("snapshot-count".into(), Some("10001".into()))]).unwrap();
    std::fs::write(&m, edited).unwrap();
    // A new pod dir; the old one goes, as the kubelet's GC removes a gone pod's logs.
    let old = pod_dirs(&root);
    until("a new pod in place of the old", 30, || {
        let now = pod_dirs(&root);
        now.len() == 1 && now != old
    })
    .await;
    lab.wait_healthy(&[0], 1, Duration::from_secs(30)).await.unwrap();
    for p in pod_dirs(&root) {
        assert!(p.starts_with("kube-system_etcd-m1_"), "{p}");
    }
    // Moving the manifest away stops the pod; bringing it back starts it.
    lab.stop_member(0).await.unwrap();
    lab.start_member(0).await.unwrap();
    lab.wait_healthy(&[0], 1, Duration::from_secs(30)).await.unwrap();
    lab.down().await.unwrap();
}

/// The kubelet scenario shared with the real kubelet (common::conformance; its run there is
/// `calm_on_the_real_kubelet` in tests/real_kubelet.rs), on the stand-in, with a daemon on
/// every master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_behaves_as_the_real_kubelet() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    common::conformance::run_on(&lab, "stand-in").await;
    lab.down().await.unwrap();
}
