//! The conformance suite on the real kubelet (issue 29): masters made by kubeadm 1.36
//! (`kubeadm init phase certs etcd-*` and `kubeadm init phase etcd local`), their static
//! pods run by the real kubelet and containerd, each master in its own network and mount
//! namespaces (see hostfix_lab::realkube). etcd-hostfix runs as on a master: in that
//! master's network namespace, with `--host-root` at its files.
//!
//! Not in CI yet (`#[ignore]`): in four runs of this binary one test failed once and its
//! message was not kept; `scripts/dev test --test real_kubelet -- --ignored` runs them.
//!
//! Small on purpose: real kubelets start slowly and back off for real. The stand-in lab
//! carries the bulk of the tests.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use hostfix_lab::{EtcdVersion, KubeletKind, Lab, LabRuntime, LabSpec};

/// One real-kubelet lab at a time: each is nine real daemons (containerd, kubelet, etcd per
/// master) on a 2-core machine, and a test's bounds are for one of them, not three.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn real_lab(dir: &Path, members: usize, v: EtcdVersion) -> Lab {
    let mut spec = LabSpec::new(dir, members, v, LabRuntime::StaticPod, subnet());
    spec.kubelet = KubeletKind::Real;
    Lab::up(spec, Path::new(BIN), false).await.expect("real-kubelet lab up")
}

/// etcd-hostfix on master `i`, in its network namespace.
fn on_master(lab: &Lab, i: usize, args: &[&str]) -> Out {
    run_out(lab.command(i, BIN).args(node_args(lab, i)).args(args))
}

/// The manifest kubeadm wrote and the one a repair left differ only in `--initial-cluster`.
fn assert_only_initial_cluster_changed(kubeadms: &str, now: &str) {
    assert_eq!(kubeadms.lines().count(), now.lines().count(), "same lines:\n{now}");
    let changed: Vec<(&str, &str)> = kubeadms.lines().zip(now.lines()).filter(|(a, b)| a != b).collect();
    assert!(changed.iter().all(|(a, _)| a.starts_with("    - --initial-cluster=")), "only --initial-cluster may change: {changed:?}");
}

fn running_etcd(lab: &Lab, i: usize) -> String {
    lab.crictl(i, &["ps", "--name", "etcd", "--state", "Running", "-q"]).unwrap_or_default().trim().to_string()
}

/// Seed 000 on a kubeadm master: m3's data dir is lost under the running member and the
/// kubelet restarts it empty (etcd panics: "tocommit(N) is out of range"). `diagnose`
/// reads the real kubelet's CRI logs and says data-lost; `rejoin` heals it through the real
/// kubelet (park, remove, archive, learner, unpark, promote); the manifest differs from
/// kubeadm's only in the flags that had to change, and the kubelet runs it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not in CI yet: one failure in four runs of this binary, its message not kept (issue 29); run with --ignored"]
async fn a_kubeadm_master_that_lost_its_data_is_rejoined() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let d = tempfile::tempdir().unwrap();
    let lab = real_lab(d.path(), 3, EtcdVersion::V3_6).await;
    write_keys(&lab, 0);
    let kubeadms = std::fs::read_to_string(lab.node(2).manifest()).unwrap();
    assert!(kubeadms.contains("image: registry.k8s.io/etcd:3.6.16-0"), "{kubeadms}");
    assert!(kubeadms.contains("--initial-cluster-state=existing"), "kubeadm join's manifest:\n{kubeadms}");

    Lab::lose_data(lab.node(2)).unwrap();
    let cid = running_etcd(&lab, 2);
    lab.crictl(2, &["stop", &cid]).expect("crictl stop");
    // What the kubelet restarts panics at once; wait for the diagnosis rather than a time.
    let mut last = String::new();
    until("diagnose to say data-lost from the real kubelet's logs", 120, || {
        let o = on_master(&lab, 2, &["diagnose", "-o", "json"]);
        last = o.stdout.clone();
        o.code == 4 && o.json()["class"] == "data-lost"
    })
    .await;
    assert!(last.contains("var/log/pods/kube-system_etcd-m3_"), "the evidence is the CRI log: {last}");

    let o = on_master(&lab, 2, &["rejoin", "--yes", "--no-progress"]);
    assert_eq!(o.code, 0, "rejoin: {}\n{}\n{}", o.stdout, o.stderr, explain(&lab, 2));
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    assert_all_keys(&lab, 2);
    assert!(!running_etcd(&lab, 2).is_empty(), "the kubelet runs the unparked manifest");

    assert_only_initial_cluster_changed(&kubeadms, &std::fs::read_to_string(lab.node(2).manifest()).unwrap());
    let o = on_master(&lab, 2, &["diagnose"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
}

/// Seed 004 under the real kubelet, with a daemon on every master. A person parks m3's
/// manifest (as seed 002 does, to `/root/etcd.yaml`) and its bbolt db is scribbled on while
/// it is out: the daemons keep their hands off. Back in `manifests/`, the real kubelet
/// runs a member that panics on its db; m3's daemon heals it by itself, with every key, and
/// the manifest differs from kubeadm's only in `--initial-cluster`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not in CI yet: one failure in four runs of this binary, its message not kept (issue 29); run with --ignored"]
async fn the_daemon_heals_a_corrupt_db_under_the_real_kubelet() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let d = tempfile::tempdir().unwrap();
    let mut lab = real_lab(d.path(), 3, EtcdVersion::V3_6).await;
    write_keys(&lab, 0);
    let t = 2;
    let kubeadms = std::fs::read_to_string(lab.node(t).manifest()).unwrap();
    let ds: Vec<DaemonProc> = (0..3).map(|i| DaemonProc::start(&lab, i, &daemon_config(&lab, i, ""), &[])).collect();
    // Every daemon has made a first decision about its member before the break.
    until("every daemon watching", 60, || ds.iter().all(|d| d.status()["decision"].as_str().is_some())).await;

    lab.stop_member(t).await.unwrap();
    Lab::scribble(&lab.node(t).data_dir().join("member/snap/db"), 0, 8192).unwrap();
    // Hands off while a person has the manifest out: no incident within six probe rounds'
    // worth of seconds, and the daemon says why it does not act.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(ds[t].incidents().is_empty(), "{:#?}", ds[t].incidents());
    assert!(
        ds[t].status()["why"].as_str().unwrap_or_default().contains("taken out of service"),
        "{:#}",
        ds[t].status()
    );

    lab.start_member(t).await.unwrap();
    let mut inc = serde_json::Value::Null;
    until("m3's daemon to record a healed incident", 300, || {
        inc = ds[t].incidents().into_iter().next().unwrap_or_default();
        inc["outcome"]["result"].is_string()
    })
    .await;
    assert_eq!(inc["outcome"]["result"], "healed", "{inc:#}\n{}", ds[t].log_text());
    assert_eq!(inc["observed"]["class"], "db-corrupt", "{inc:#}");
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    assert_all_keys(&lab, t);
    assert!(!running_etcd(&lab, t).is_empty(), "the kubelet runs the healed member");
    assert_only_initial_cluster_changed(&kubeadms, &std::fs::read_to_string(lab.node(t).manifest()).unwrap());
    for (i, d) in ds.iter().enumerate().filter(|(i, _)| *i != t) {
        assert!(d.incidents().is_empty(), "m{}'s daemon acted: {:#?}", i + 1, d.incidents());
    }
    drop(ds);
    lab.down().await.unwrap();
}

/// Calm on the real kubelet, with a daemon on every master: an edit of the manifest that
/// restarts etcd as a new pod (new UID), and a person parking and unparking the same
/// manifest (same UID: the real kubelet goes on at `1.log`, keeping `0.log`, where the
/// stand-in starts again at `0.log`), are no reason to repair. Each is waited out until the
/// member is healthy again and then for a further 20 s of probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not in CI yet: one failure in four runs of this binary, its message not kept (issue 29); run with --ignored"]
async fn calm_on_the_real_kubelet() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let d = tempfile::tempdir().unwrap();
    let mut lab = real_lab(d.path(), 3, EtcdVersion::V3_6).await;
    let t = 2;
    let ds: Vec<DaemonProc> = (0..3).map(|i| DaemonProc::start(&lab, i, &daemon_config(&lab, i, ""), &[])).collect();
    until("every daemon watching", 60, || ds.iter().all(|d| d.status()["decision"].as_str().is_some())).await;
    let quiet = |what: &'static str| {
        let ds = &ds;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                for (i, d) in ds.iter().enumerate() {
                    assert!(d.incidents().is_empty(), "{what}: m{}'s daemon acted: {:#?}\n{}", i + 1, d.incidents(), d.log_text());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };

    // An edit that restarts etcd: a new pod, whose container the kubelet starts fresh.
    let m = lab.node(t).manifest();
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(text.contains("--snapshot-count=10000"), "{text}");
    std::fs::write(&m, text.replace("--snapshot-count=10000", "--snapshot-count=10001")).unwrap();
    let logs = lab.node(t).host_root.join("var/log/pods");
    until("the kubelet to run the edited manifest as a new pod", 120, || {
        std::fs::read_dir(&logs).map(|r| r.count() >= 2).unwrap_or(false) && !running_etcd(&lab, t).is_empty()
    })
    .await;
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(120)).await.unwrap();
    quiet("a manifest edit").await;

    // Parked and unparked as it was: the same pod UID, attempt 1.
    lab.stop_member(t).await.unwrap();
    lab.start_member(t).await.unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(120)).await.unwrap();
    let newest = std::fs::read_dir(&logs)
        .unwrap()
        .filter_map(|e| e.ok())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .unwrap()
        .path()
        .join("etcd");
    let mut kept: Vec<String> = std::fs::read_dir(&newest).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    kept.sort();
    assert_eq!(kept, ["0.log", "1.log"], "the real kubelet's numbering after an unpark of the same manifest");
    quiet("a person's park and unpark").await;
    drop(ds);
    lab.down().await.unwrap();
}
