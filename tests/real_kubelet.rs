//! The conformance suite on the real kubelet (issue 29): masters made by kubeadm 1.36
//! (`kubeadm init phase certs etcd-*` and `kubeadm init phase etcd local`), their static
//! pods run by the real kubelet and containerd, each master in its own network and mount
//! namespaces (see hostfix_lab::realkube). etcd-hostfix runs as on a master: in that
//! master's network namespace, with `--host-root` at its files.
//!
//! In CI since its flaky wait was found (the calm test waited for two pod log dirs, which
//! the kubelet keeps only for a moment; docs/real-kubelet.md).
//!
//! Small on purpose: real kubelets start slowly and back off for real. The stand-in lab
//! carries the bulk of the tests.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use hostfix_lab::benchutil::etcd_log_files;
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
    assert_only_changed(kubeadms, now, &["--initial-cluster="]);
}

/// The manifest kubeadm wrote and the one a playbook left differ only in these flags' lines
/// (changed, or added: `kubeadm init` writes no `--initial-cluster-state`), and every other
/// line is where it was.
fn assert_only_changed(kubeadms: &str, now: &str, flags: &[&str]) {
    let allowed = |l: &str| flags.iter().any(|f| l.starts_with(&format!("    - {f}")));
    let rest = |t: &str| t.lines().filter(|l| !allowed(l)).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(rest(kubeadms), rest(now), "only {flags:?} may change:\n{now}");
}

fn running_etcd(lab: &Lab, i: usize) -> String {
    lab.crictl(i, &["ps", "--name", "etcd", "--state", "Running", "-q"]).unwrap_or_default().trim().to_string()
}

/// All three members healthy within `secs`, or a panic with master `t`'s newest etcd logs.
async fn healthy(lab: &Lab, t: usize, secs: u64) {
    if let Err(e) = lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(secs)).await {
        panic!("{e}\n{}", hostfix_lab::benchutil::log_tails(lab, t, 3, 15));
    }
}

/// Waits (300 s at most) for daemon `d`'s first incident to end, and asserts it healed a
/// member of `class`.
async fn healed_by_itself(d: &DaemonProc, who: &str, class: &str) {
    let mut inc = serde_json::Value::Null;
    until(&format!("{who}'s daemon to record a healed incident"), 300, || {
        inc = d.incidents().into_iter().next().unwrap_or_default();
        inc["outcome"]["result"].is_string()
    })
    .await;
    assert_eq!(inc["outcome"]["result"], "healed", "{inc:#}\n{}", d.log_text());
    assert_eq!(inc["observed"]["class"], class, "{inc:#}");
}

/// Seed 004 on kubeadm's first master, by hand. m1's manifest is parked and its bbolt db
/// scribbled on; back in `manifests/`, the real kubelet runs a member that panics on its
/// db, and `diagnose` in m1's namespace reads the real CRI log and says db-corrupt. m1's
/// `--initial-cluster` names only itself (as `kubeadm init` writes it) and no daemon has
/// recorded the others, so `rejoin` alone finds no peer to ask: it refuses, says to name
/// one with `--endpoints`, and changes nothing. With `--endpoints` it heals m1 through the
/// real kubelet (park, remove, archive, learner, unpark, promote): every key; the manifest
/// differs from kubeadm's only in the initial-cluster flags, and the kubelet runs it.
///
/// (A lost data dir is no break on this master: restarted empty with `new` and only
/// itself named, it has the same member and cluster IDs as before, and the leader
/// replicates the log back to it. docs/real-kubelet.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_kubeadm_master_is_rejoined_through_a_named_peer() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let d = tempfile::tempdir().unwrap();
    let mut lab = real_lab(d.path(), 3, EtcdVersion::V3_6).await;
    let t = 0;
    write_keys(&lab, 1);
    let kubeadms = std::fs::read_to_string(lab.node(t).manifest()).unwrap();
    assert!(kubeadms.contains("image: registry.k8s.io/etcd:3.6.16-0"), "{kubeadms}");
    assert!(!kubeadms.contains("m2=") && !kubeadms.contains("--initial-cluster-state"), "kubeadm init's manifest:\n{kubeadms}");

    lab.stop_member(t).await.unwrap();
    Lab::scribble(&lab.node(t).data_dir().join("member/snap/db"), 0, 8192).unwrap();
    lab.start_member(t).await.unwrap();
    let mut last = String::new();
    until("diagnose to say db-corrupt from the real kubelet's logs", 120, || {
        let o = on_master(&lab, t, &["diagnose", "-o", "json"]);
        last = o.stdout.clone();
        o.code == 4 && o.json()["class"] == "db-corrupt"
    })
    .await;
    assert!(last.contains("var/log/pods/kube-system_etcd-m1_"), "the evidence is the CRI log: {last}");

    let o = on_master(&lab, t, &["rejoin", "--yes", "--no-progress"]);
    assert_eq!(o.code, 3, "refused: {}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("--endpoints https://<another master>:2379"), "the refusal says what to do: {}", o.stderr);
    assert_eq!(std::fs::read_to_string(lab.node(t).manifest()).unwrap(), kubeadms, "nothing changed");
    let m2 = format!("https://{}:2379", lab.node(1).ip);
    let o = on_master(&lab, t, &["rejoin", "--yes", "--no-progress", "--endpoints", &m2]);
    assert_eq!(o.code, 0, "rejoin: {}\n{}\n{}", o.stdout, o.stderr, explain(&lab, t));
    healthy(&lab, t, 60).await;
    assert_all_keys(&lab, t);
    assert!(!running_etcd(&lab, t).is_empty(), "the kubelet runs the unparked manifest");

    let now = std::fs::read_to_string(lab.node(t).manifest()).unwrap();
    assert_only_changed(&kubeadms, &now, &["--initial-cluster=", "--initial-cluster-state="]);
    let o = on_master(&lab, t, &["diagnose"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    lab.down().await.unwrap();
}

/// Seed 004 under the real kubelet, with a daemon on every master, on the first master:
/// the one `kubeadm init` made, whose `--initial-cluster` names only itself, so that with
/// its member down its daemon finds the peers only where it last saw them
/// (`known-peers.json`). A person parks m1's manifest (as seed 002 does, to
/// `/root/etcd.yaml`) and its bbolt db is scribbled on while it is out: the daemons keep
/// their hands off. Back in `manifests/`, the real kubelet runs a member that panics on its
/// db; m1's daemon heals it by itself, with every key, and the manifest differs from
/// kubeadm's only in the initial-cluster flags (it now joins an existing cluster). Then
/// seed 000 on m3, a joiner: its data dir lost under the running member, the kubelet
/// restarts it empty, and m3's daemon heals it by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_heal_a_corrupt_db_and_a_wipe_under_the_real_kubelet() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let d = tempfile::tempdir().unwrap();
    let mut lab = real_lab(d.path(), 3, EtcdVersion::V3_6).await;
    write_keys(&lab, 0);
    let t = 0;
    let kubeadms = std::fs::read_to_string(lab.node(t).manifest()).unwrap();
    let ds: Vec<DaemonProc> = (0..3).map(|i| DaemonProc::start(&lab, i, &daemon_config(&lab, i, ""), &[])).collect();
    // Every daemon has made a first decision about its member before the break, and m1's
    // has seen where the others are.
    let known = ds[t].state_dir.join("daemon/known-peers.json");
    until("every daemon watching", 60, || ds.iter().all(|d| d.status()["decision"].as_str().is_some()) && known.exists()).await;
    assert!(!kubeadms.contains("m2="), "kubeadm init's --initial-cluster names only m1:\n{kubeadms}");

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
    healed_by_itself(&ds[t], "m1", "db-corrupt").await;
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    assert_all_keys(&lab, t);
    assert!(!running_etcd(&lab, t).is_empty(), "the kubelet runs the healed member");
    let now = std::fs::read_to_string(lab.node(t).manifest()).unwrap();
    assert!(now.contains("--initial-cluster-state=existing"), "{now}");
    assert_only_changed(&kubeadms, &now, &["--initial-cluster=", "--initial-cluster-state="]);
    for (i, d) in ds.iter().enumerate().filter(|(i, _)| *i != t) {
        assert!(d.incidents().is_empty(), "m{}'s daemon acted: {:#?}", i + 1, d.incidents());
    }

    // Seed 000 on a joiner, with nobody at the keyboard: m3's data dir is lost under the
    // running member, the kubelet restarts it empty and it panics; m3's daemon heals it.
    let w = 2;
    let kubeadms = std::fs::read_to_string(lab.node(w).manifest()).unwrap();
    Lab::lose_data(lab.node(w)).unwrap();
    let cid = running_etcd(&lab, w);
    lab.crictl(w, &["stop", &cid]).expect("crictl stop");
    healed_by_itself(&ds[w], "m3", "data-lost").await;
    healthy(&lab, w, 60).await;
    assert_all_keys(&lab, w);
    assert_only_initial_cluster_changed(&kubeadms, &std::fs::read_to_string(lab.node(w).manifest()).unwrap());
    assert_eq!(ds[t].incidents().len(), 1, "m1's daemon acted again: {:#?}", ds[t].incidents());
    assert!(ds[1].incidents().is_empty(), "m2's daemon acted: {:#?}", ds[1].incidents());
    drop(ds);
    lab.down().await.unwrap();
}

/// The shared kubelet scenario (common::conformance, the stand-in runs the same in
/// tests/kubelet.rs), with a daemon on every master: a `kill -9` of etcd, a person's park
/// and unpark of the unchanged manifest (same UID: the kubelet goes on numbering), its
/// container GC, and a manifest edit (a new UID) are each what the product reads them as,
/// and no reason to repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calm_on_the_real_kubelet() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let d = tempfile::tempdir().unwrap();
    let mut lab = real_lab(d.path(), 3, EtcdVersion::V3_6).await;
    common::conformance::run_on(&lab, "real kubelet 1.36.3").await;
    lab.down().await.unwrap();
}

/// The kubelet's etcd containers on master `i` (running and exited): (attempt, running).
fn etcd_attempts(lab: &Lab, i: usize) -> Vec<(u64, bool)> {
    let out = lab.crictl(i, &["ps", "-a", "--name", "etcd", "-o", "json"]).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v["containers"]
        .as_array()
        .map(|cs| cs.iter().map(|c| (c["metadata"]["attempt"].as_u64().unwrap_or(0), c["state"] == "CONTAINER_RUNNING")).collect())
        .unwrap_or_default()
}

/// Seed 000 caught in the kubelet's CrashLoopBackOff, with the logs a master has: m3 has
/// run long enough for the kubelet to rotate and gzip its log, and each of its runs writes a
/// line over 16 KiB, which the runtime splits into `P` chunks (etcd logs its `--cors` list
/// in its start banner). While the kubelet holds the crashing member back, no container
/// runs, and `diagnose` still says data-lost from the real CRI log; `rejoin` heals it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashloop_in_backoff_is_diagnosed_from_rotated_and_split_logs() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let d = tempfile::tempdir().unwrap();
    let mut lab = real_lab(d.path(), 3, EtcdVersion::V3_6).await;
    let t = 2;
    let m = lab.node(t).manifest();
    let kubeadms = std::fs::read_to_string(&m).unwrap();
    // An operator's edit (a new pod): a long --cors list (19 KB: etcd logs it, and its
    // argv, in one line each at every start), and debug logs, a line per request, which
    // fill the log to its rotation size.
    let cors: Vec<String> = (0..600).map(|i| format!("https://origin-{i:04}.invalid:443")).collect();
    let flags = format!("    - --snapshot-count=10000\n    - --cors={}\n    - --log-level=debug\n", cors.join(","));
    let edited = kubeadms.replace("    - --snapshot-count=10000\n", &flags);
    assert_ne!(edited, kubeadms);
    let before = running_etcd(&lab, t);
    std::fs::write(&m, &edited).unwrap();
    until("the kubelet to run the edited manifest", 120, || {
        let now = running_etcd(&lab, t);
        !now.is_empty() && now != before
    })
    .await;
    healthy(&lab, t, 120).await;
    write_keys(&lab, 0);
    // Requests through m3 until the kubelet has rotated its log twice: the older rotated
    // file is then gzipped.
    let mut n = 0;
    until("the kubelet to rotate and gzip m3's log", 180, || {
        n += 1;
        let _ = lab.etcdctl(t, &["put", &format!("/noise/{n}"), "x"]);
        etcd_log_files(&lab, t).iter().any(|p| p.to_string_lossy().ends_with(".gz"))
    })
    .await;

    Lab::lose_data(lab.node(t)).unwrap();
    let cid = running_etcd(&lab, t);
    lab.crictl(t, &["stop", &cid]).expect("crictl stop");
    // Backed off: the kubelet has restarted it three times (waits of 0, 10 and 20 s), and
    // no etcd container runs while it waits out the next 40.
    let mut seen = vec![];
    until("the kubelet to hold m3's crashing member back", 240, || {
        seen = etcd_attempts(&lab, t);
        seen.iter().any(|(a, _)| *a >= 3) && seen.iter().all(|(_, running)| !running)
    })
    .await;
    let o = on_master(&lab, t, &["diagnose", "-o", "json"]);
    assert_eq!((o.code, o.json()["class"].as_str()), (4, Some("data-lost")), "in the backoff ({seen:?}):\n{}\n{}", o.stdout, o.stderr);
    let files = etcd_log_files(&lab, t);
    let newest = files.iter().filter(|p| p.to_string_lossy().ends_with(".log")).max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok()).unwrap();
    // The run's whole log: the kubelet may have rotated it while it ran (its debug lines
    // pass 16 KiB within one 3 s check), leaving the banner in `N.log.<time>`.
    let run: Vec<&std::path::PathBuf> =
        files.iter().filter(|p| p.to_string_lossy().starts_with(&*newest.to_string_lossy()) && !p.to_string_lossy().ends_with(".gz")).collect();
    let text: String = run.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    assert!(text.contains(" stderr P "), "the crashing run's banner was split into P chunks: {run:?}");
    assert!(
        o.stdout.contains(&newest.file_name().unwrap().to_string_lossy().to_string()),
        "the evidence is the newest run's log {}: {}",
        newest.display(),
        o.stdout
    );

    let o = on_master(&lab, t, &["rejoin", "--yes", "--no-progress"]);
    assert_eq!(o.code, 0, "rejoin: {}\n{}\n{}", o.stdout, o.stderr, explain(&lab, t));
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    assert_all_keys(&lab, t);
    assert_only_initial_cluster_changed(&edited, &std::fs::read_to_string(&m).unwrap());
    lab.down().await.unwrap();
}

/// Seed 002 on kubeadm masters: m2 and m3 are gone for good (stopped, their data lost), and
/// m1 alone has no quorum. `rebuild` on m1 (in its namespace) makes it a one-member cluster
/// with every key, through the real kubelet; `rejoin` brings m2 and m3 back as learners and
/// promotes them. No manifest keeps `--force-new-cluster`, and each differs from kubeadm's
/// only in the initial-cluster flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeadm_cluster_that_lost_two_of_three_is_rebuilt() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let d = tempfile::tempdir().unwrap();
    let mut lab = real_lab(d.path(), 3, EtcdVersion::V3_6).await;
    write_keys(&lab, 0);
    let kubeadms: Vec<String> = (0..3).map(|i| std::fs::read_to_string(lab.node(i).manifest()).unwrap()).collect();
    let o = on_master(&lab, 0, &["rebuild", "--yes"]);
    assert_eq!(o.code, 3, "a cluster with quorum is not rebuilt: {}\n{}", o.stdout, o.stderr);
    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
        Lab::lose_data(lab.node(i)).unwrap();
    }
    let o = on_master(&lab, 0, &["rebuild", "--yes", "--no-progress"]);
    assert_eq!(o.code, 0, "rebuild: {}\n{}\n{}", o.stdout, o.stderr, explain(&lab, 0));
    assert!(!running_etcd(&lab, 0).is_empty(), "the kubelet runs the rebuilt member");
    for i in [1, 2] {
        lab.start_member(i).await.unwrap();
        let o = on_master(&lab, i, &["rejoin", "--yes", "--no-progress"]);
        assert_eq!(o.code, 0, "rejoin m{}: {}\n{}\n{}", i + 1, o.stdout, o.stderr, explain(&lab, i));
    }
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    for (i, kubeadms) in kubeadms.iter().enumerate() {
        assert_all_keys(&lab, i);
        let now = std::fs::read_to_string(lab.node(i).manifest()).unwrap();
        assert!(!now.contains("force-new-cluster"), "m{}: {now}", i + 1);
        assert_only_changed(kubeadms, &now, &["--initial-cluster=", "--initial-cluster-state="]);
    }
    lab.down().await.unwrap();
}
