//! `etcd-hostfix rejoin` on kubeadm static-pod masters, on real mTLS clusters with both etcd
//! versions: every failure class that maps to rejoin is healed with every key present; every
//! refusal changes nothing; kill -9 at every step and a rerun converge; seed 001's edge cases.

#[macro_use]
mod common;
mod failures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use hostfix_lab::{EtcdVersion, Lab, LabRuntime};

fn manifest_lines_changed(before: &str, after: &str) -> Vec<String> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    assert_eq!(a.len(), b.len(), "lines added or removed:\n{before}\n---\n{after}");
    a.iter().zip(b.iter()).filter(|(x, y)| x != y).map(|(_, y)| y.trim().to_string()).collect()
}

async fn healed(lab: &Lab, i: usize) {
    lab.wait_healthy(&(0..lab.nodes().len()).collect::<Vec<_>>(), lab.nodes().len(), Duration::from_secs(60)).await.unwrap();
    let s = status(lab, i, &[]);
    assert_eq!(s.code, 0, "{}\n{}", s.stdout, s.stderr);
    assert_all_keys(lab, i);
}

async fn rejoin_heals(lab: &Lab, i: usize) {
    let parked = lab.node(i).host_root.join("var/lib/etcd-hostfix/parked/etcd.yaml");
    let before = std::fs::read_to_string(lab.node(i).manifest()).or_else(|_| std::fs::read_to_string(&parked)).unwrap();
    let o = rejoin(lab, i, &["--yes"], &[]);
    assert_eq!(o.code, 0, "stdout:\n{}\nstderr:\n{}\n{}", o.stdout, o.stderr, explain(lab, i));
    assert!(o.stdout.contains("rejoin complete"), "{}", o.stdout);
    healed(lab, i).await;
    let after = std::fs::read_to_string(lab.node(i).manifest()).unwrap();
    for l in manifest_lines_changed(&before, &after) {
        assert!(l.starts_with("- --initial-cluster=") || l.starts_with("- --initial-cluster-state="), "unexpected change: {l}");
    }
    assert!(after.contains("--initial-cluster-state=existing"));
    assert!(!after.contains("force-new-cluster"));
}

/// Break, confirm the break is what diagnose calls it, heal, check.
async fn break_and_heal(lab: &Lab, i: usize, class: &str) {
    match class {
        "already-bootstrapped" => failures::already_bootstrapped(lab, i).await,
        "data-lost" => failures::data_lost(lab, i).await,
        "member-removed" => failures::member_removed(lab, i).await,
        "db-corrupt" => failures::db_corrupt(lab, i).await,
        "wal-corrupt" => failures::wal_corrupt(lab, i).await,
        "cluster-id-mismatch" => failures::cluster_id_mismatch(lab, i).await,
        "membership-mismatch" => failures::membership_mismatch(lab, i).await,
        _ => unreachable!(),
    };
    let mut last = serde_json::Value::Null;
    for _ in 0..120 {
        let mut args = node_args(lab, i);
        args.extend(["-o".into(), "json".into(), "diagnose".into()]);
        last = hostfix(&args.iter().map(String::as_str).collect::<Vec<_>>()).json();
        if last["class"] == class {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(last["class"], class, "{last:#}");
    rejoin_heals(lab, i).await;
}

async fn every_class(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    for class in [
        "already-bootstrapped", "data-lost", "member-removed", "db-corrupt", "wal-corrupt", "cluster-id-mismatch",
        // Last: it leaves the member under its mistyped name.
        "membership-mismatch",
    ] {
        eprintln!("etcd {}: {class}", v.tag());
        break_and_heal(&lab, failures::TARGET, class).await;
    }
    // Every replaced data dir went to the archive, and the retention (--keep-archives,
    // default 3) kept the newest three runs after each successful rejoin: seven rejoins,
    // three archived data dirs, each whole.
    let archive = lab.node(failures::TARGET).host_root.join("var/lib/etcd-hostfix/archive");
    let kept: Vec<std::path::PathBuf> = std::fs::read_dir(&archive).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("member").exists()).collect();
    assert_eq!(kept.len(), 3, "archived data dirs: {kept:?}");
    lab.down().await.unwrap();
}

/// Five members, two of them broken: each master runs rejoin at the same time, and the
/// cluster lock serialises them.
async fn five_members_two_bad(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 5, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    failures::already_bootstrapped(&lab, 3).await;
    failures::data_lost(&lab, 4).await;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| rejoin(&lab, 3, &["--yes", "--lock-timeout", "150"], &[("RUST_LOG", "info")]));
        let b = s.spawn(|| rejoin(&lab, 4, &["--yes", "--lock-timeout", "150"], &[("RUST_LOG", "info")]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.code == 0 && b.code == 0,
        "m4: {}\n{}\n{}\n---\nm5: {}\n{}\n{}",
        a.code,
        a.stdout,
        a.stderr,
        b.code,
        b.stdout,
        b.stderr
    );
    assert!(
        a.stdout.contains("waiting for member") || b.stdout.contains("waiting for member"),
        "the lock did not serialise them:\n{}\n{}",
        a.stdout,
        b.stdout
    );
    healed(&lab, 3).await;
    healed(&lab, 4).await;
    lab.down().await.unwrap();
}

/// kill -9 right after each step's work and before its journal entry; a rerun converges.
async fn kill_at_every_step(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    let t = failures::TARGET;
    for step in ["snapshot", "stop", "remove", "archive", "add-learner", "configure", "start", "promote", "wait-healthy"] {
        eprintln!("etcd {}: kill -9 after {step}", v.tag());
        failures::already_bootstrapped(&lab, t).await;
        let o = rejoin(&lab, t, &["--yes"], &[("HOSTFIX_CRASH_AT", step)]);
        assert_eq!(o.code, -1, "expected SIGKILL at {step}:\n{}\n{}", o.stdout, o.stderr);
        assert!(o.stderr.contains(&format!("HOSTFIX_CRASH_AT={step}")), "{}", o.stderr);
        let o = rejoin(&lab, t, &["--yes"], &[]);
        if o.code != 0 {
            panic!("rerun after kill at {step}:\n{}\n{}\n{}", o.stdout, o.stderr, explain(&lab, t));
        }
        assert!(o.stdout.contains("resuming rejoin run"), "{}", o.stdout);
        healed(&lab, t).await;
        let m = std::fs::read_to_string(lab.node(t).manifest()).unwrap();
        assert!(m.contains("--initial-cluster-state=existing") && !m.contains("force-new-cluster"));
    }
    lab.down().await.unwrap();
}


both_versions!(every_class, five_members_two_bad, kill_at_every_step);

/// The configuration and state files of a master, which a refusal must leave byte-identical
/// (etcd itself keeps writing its data dir).
fn config_snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = snapshot(&root.join("etc"));
    m.extend(snapshot(&root.join("var/lib/etcd-hostfix")));
    m.insert(root.join("var/lib/etcd-hostfix(exists)"), vec![root.join("var/lib/etcd-hostfix").exists() as u8]);
    m
}

fn refuses(lab: &Lab, i: usize, extra: &[&str], needle: &str) {
    let root = lab.node(i).host_root.clone();
    let before = config_snapshot(&root);
    let o = rejoin(lab, i, extra, &[]);
    assert_eq!(o.code, 3, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", o.stderr);
    assert!(o.stderr.contains("nothing was changed"), "{}", o.stderr);
    assert_same(&before, &config_snapshot(&root));
}

/// Compare two snapshots, naming only the paths that differ.
fn assert_same(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>) {
    let diff: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| k.display().to_string())
        .collect();
    assert!(diff.is_empty(), "files changed: {diff:?}");
}

fn etcdctl_retry(lab: &Lab, args: &[&str]) -> String {
    failures::retry_unhealthy(|| lab.etcdctl(0, args)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    let t = failures::TARGET;

    // Seed 001: "aborts saying it's already healthy".
    refuses(&lab, t, &["--yes"], "already a healthy, caught-up voter");

    failures::already_bootstrapped(&lab, t).await;
    // No terminal and no --yes.
    refuses(&lab, t, &[], "not a terminal and no --yes");
    // --dry-run prints the plan and changes nothing.
    let before = config_snapshot(&lab.node(t).host_root);
    let o = rejoin(&lab, t, &["--dry-run"], &[]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains("member remove") && o.stdout.contains("dry run: nothing was changed"), "{}", o.stdout);
    assert_same(&before, &config_snapshot(&lab.node(t).host_root));

    // Another master holds the cluster-wide repair lock.
    lab.etcdctl(0, &["put", "/etcd-hostfix/lock/membership", "m1"]).unwrap();
    refuses(&lab, t, &["--yes", "--lock-timeout", "1"], "member m1 holds the repair lock");
    lab.etcdctl(0, &["del", "/etcd-hostfix/lock/membership"]).unwrap();

    // Another run on this host holds the local lock.
    let state = lab.node(t).host_root.join("var/lib/etcd-hostfix");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("lock"), "").unwrap();
    let mut holder = std::process::Command::new("flock").arg(state.join("lock")).args(["sleep", "60"]).spawn().unwrap();
    until("flock to be held", 10, || {
        std::process::Command::new("flock").args(["-n"]).arg(state.join("lock")).arg("true").status().map(|s| !s.success()).unwrap_or(false)
    })
    .await;
    refuses(&lab, t, &["--yes"], "another etcd-hostfix run");
    hostfix_lab::lab::terminate_pid(holder.id(), Duration::from_secs(5));
    let _ = holder.wait();
    std::fs::remove_dir_all(&state).unwrap();

    // The others have no quorum without it.
    lab.stop_member(1).await.unwrap();
    refuses(&lab, t, &["--yes"], "the other members have no quorum");
    lab.start_member(1).await.unwrap();
    lab.wait_healthy(&[0, 1], 3, Duration::from_secs(60)).await.unwrap();

    // The peer URL is claimed by a member with another name: the member list shows m3's peer
    // URL under "intruder" while this master's manifest says m3.
    let rejoined = rejoin(&lab, t, &["--yes"], &[]);
    assert_eq!(rejoined.code, 0, "{}", rejoined.stderr);

    // Another learner is listed (a person's `member add --learner` that never started),
    // added while the cluster was whole (etcd refuses any add while a voter is down): etcd
    // refuses a second learner, so the rejoin refuses before it stops or removes anything.
    let ip = lab.node(0).ip.to_string();
    let other = |n: u8| format!("https://{}.{}:2380", ip.rsplit_once('.').unwrap().0, 200 + n);
    let added = etcdctl_retry(&lab, &["member", "add", "stray", "--learner", &format!("--peer-urls={}", other(1))]);
    let id = added.split_whitespace().skip_while(|w| *w != "Member").nth(1).unwrap_or_else(|| panic!("{added}")).to_string();
    let second = lab.etcdctl(0, &["member", "add", "stray2", "--learner", &format!("--peer-urls={}", other(2))]);
    assert!(second.as_ref().is_err_and(|e| e.to_string().contains("too many learner members")), "etcd allows one learner: {second:?}");
    failures::already_bootstrapped(&lab, t).await;
    refuses(&lab, t, &["--yes"], "is a learner already");
    etcdctl_retry(&lab, &["member", "remove", &id]);
    let rejoined = rejoin(&lab, t, &["--yes"], &[]);
    assert_eq!(rejoined.code, 0, "{}", rejoined.stderr);
    lab.offline(t, |_| Ok(vec![("name".into(), Some("intruder".into()))])).await.unwrap();
    until("the member to publish its new name", 30, || {
        lab.etcdctl(0, &["member", "list"]).map(|l| l.contains("intruder")).unwrap_or(false)
    })
    .await;
    let n = lab.node(t);
    let text = std::fs::read_to_string(n.manifest()).unwrap().replace("--name=intruder", "--name=m3");
    let parked = n.host_root.join("var/lib/etcd-hostfix/parked/etcd.yaml");
    std::fs::create_dir_all(parked.parent().unwrap()).unwrap();
    std::fs::write(&parked, text).unwrap();
    std::fs::remove_file(n.manifest()).unwrap();
    refuses(&lab, t, &["--yes"], "belongs to member intruder");
    lab.down().await.unwrap();
}

/// The local data is newer than the cluster's: this master holds a data dir from a
/// cluster with far more history. Rejoin would throw that away, so it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_when_local_data_is_newer() {
    let d = tempfile::tempdir().unwrap();
    let mut other = lab(&d.path().join("other"), 1, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    for k in 0..300 {
        other.etcdctl(0, &["put", &format!("/h/{k}"), "x"]).unwrap();
    }
    other.stop_member(0).await.unwrap();
    let mut lab = lab(&d.path().join("main"), 3, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    let t = failures::TARGET;
    let src = other.node(0).data_dir().join("member");
    lab.offline(t, |n| {
        Lab::lose_data(n)?;
        std::fs::rename(&src, n.data_dir().join("member")).unwrap();
        Ok(vec![])
    })
    .await
    .unwrap();
    refuses(&lab, t, &["--yes"], "the local data is newer than the cluster's");
    lab.down().await.unwrap();
    other.down().await.unwrap();
}

/// Seed 001's edge cases: the pod already gone, the member already removed by hand, and a
/// member running but not in the member list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_edge_cases() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_4, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    let t = failures::TARGET;

    // Pod already gone: the manifest is parked where rejoin parks it.
    failures::already_bootstrapped(&lab, t).await;
    failures::not_running(&lab, t).await;
    rejoin_heals(&lab, t).await;

    // Already removed by hand: no member remove in the plan.
    failures::data_lost(&lab, t).await;
    let id = lab.member_id(0, t).unwrap().unwrap();
    etcdctl_retry(&lab, &["member", "remove", &id]);
    let plan = rejoin(&lab, t, &["--dry-run"], &[]);
    assert!(!plan.stdout.contains("member remove"), "{}", plan.stdout);
    rejoin_heals(&lab, t).await;

    // Running but not in the member list: removed while it ran.
    let id = lab.member_id(0, t).unwrap().unwrap();
    etcdctl_retry(&lab, &["member", "remove", &id]);
    rejoin_heals(&lab, t).await;
    lab.down().await.unwrap();
}

/// A crashlooping pod restarted by the kubelet just as its manifest is parked writes a fresh
/// `member` dir under its old ID after the archive step. Before the learner starts, that
/// straggler's data is archived, so the learner starts empty and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_straggler_restart_does_not_poison_the_learner() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    let t = failures::TARGET;
    failures::already_bootstrapped(&lab, t).await;
    let o = rejoin(&lab, t, &["--yes"], &[("HOSTFIX_CRASH_AT", "configure")]);
    assert_eq!(o.code, -1, "{}\n{}", o.stdout, o.stderr);
    // What the straggler left: a member dir with a WAL of its own.
    let late = lab.node(t).data_dir().join("member/wal");
    std::fs::create_dir_all(&late).unwrap();
    std::fs::write(late.join("0000000000000000-0000000000000000.wal"), b"straggler").unwrap();
    let o = rejoin(&lab, t, &["--yes"], &[]);
    if o.code != 0 {
        panic!("{}\n{}\n{}", o.stdout, o.stderr, explain(&lab, t));
    }
    assert!(o.stdout.contains("a restart raced the stop"), "{}", o.stdout);
    healed(&lab, t).await;
    let archive = lab.node(t).host_root.join("var/lib/etcd-hostfix/archive");
    let run = std::fs::read_dir(&archive).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read(run.join("member.late-0/wal/0000000000000000-0000000000000000.wal")).unwrap(), b"straggler");
    lab.down().await.unwrap();
}

/// The newest `<state>/journal/rejoin-*.done.json`, as JSON.
fn last_history(lab: &Lab, i: usize) -> serde_json::Value {
    let dir = lab.node(i).host_root.join("var/lib/etcd-hostfix/journal");
    let mut done: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".done.json")).collect();
    done.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    serde_json::from_str(&std::fs::read_to_string(done.last().expect("a finished journal")).unwrap()).unwrap()
}

fn fresh_snapshots(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("rejoin-") && e.file_name().to_string_lossy().ends_with(".db")).count()).unwrap_or(0)
}

/// `--backup auto|fresh|none`: a recent verified snapshot of this cluster is reused; one that
/// is corrupt, from another cluster or too old is passed over, with the reason, for a fresh
/// one; `none` is said in the plan and kept in the journal. Dry runs change nothing.
async fn backup_choice(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    let t = failures::TARGET;
    let root = lab.node(t).host_root.clone();
    let snaps = root.join("var/lib/etcd-hostfix/snapshots");
    failures::already_bootstrapped(&lab, t).await;
    let dry = |extra: &[&str]| {
        let before = config_snapshot(&root);
        let mut args = vec!["--dry-run"];
        args.extend_from_slice(extra);
        let o = rejoin(&lab, t, &args, &[]);
        assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
        assert_same(&before, &config_snapshot(&root));
        o.stdout
    };

    let out = dry(&[]);
    assert!(out.contains("backup: a fresh snapshot") && out.contains("to reuse (none in"), "{out}");
    // The plan's backup line itself says why none is reused under --backup auto.
    assert!(out.contains("none is reused: no snapshot of cluster") && !out.contains("--backup fresh always takes one"), "{out}");
    let out = dry(&["--backup", "fresh"]);
    assert!(out.contains("(--backup fresh always takes one)"), "{out}");

    // A snapshot saved on this master (the daemon's schedule writes the same records).
    let mut args = node_args(&lab, t);
    args.extend(["snapshot".into(), "save".into(), "--out".into(), snaps.join("snapshot-1.db").display().to_string()]);
    let o = hostfix(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    let db = snaps.join("snapshot-1.db");
    let json = snaps.join("snapshot-1.db.json");
    let good_db = std::fs::read(&db).unwrap();
    let good_json = std::fs::read_to_string(&json).unwrap();
    let out = dry(&[]);
    assert!(out.contains(&format!("backup: {}, saved ", db.display())) && out.contains("verified now against the SHA-256 of its 1 piece recorded when its trailer was checked"), "{out}");
    assert!(out.contains(&format!("rely on {}", db.display())), "{out}");
    // A record from before the pieces were kept: the trailer, one pass.
    let mut old: serde_json::Value = serde_json::from_str(&good_json).unwrap();
    old.as_object_mut().unwrap().remove("pieces");
    std::fs::write(&json, old.to_string()).unwrap();
    let out = dry(&[]);
    assert!(out.contains("verified now against its SHA-256 trailer"), "{out}");
    std::fs::write(&json, &good_json).unwrap();

    // Corrupt: one byte flipped in the middle.
    let mut bad = good_db.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&db, &bad).unwrap();
    let out = dry(&[]);
    assert!(out.contains("backup: a fresh snapshot") && out.contains("does not match"), "{out}");
    std::fs::write(&db, &good_db).unwrap();

    // Another cluster's.
    let cid = serde_json::from_str::<serde_json::Value>(&good_json).unwrap()["cluster_id"].as_str().unwrap().to_string();
    std::fs::write(&json, good_json.replace(&cid, "deadbeef")).unwrap();
    let out = dry(&[]);
    assert!(out.contains("backup: a fresh snapshot") && out.contains("from another cluster (deadbeef"), "{out}");
    std::fs::write(&json, &good_json).unwrap();

    // Too old: 2 s of age against a 1 s bound, whatever the machine's speed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = dry(&["--backup-max-age", "1s"]);
    assert!(out.contains("backup: a fresh snapshot") && out.contains("too old"), "{out}");
    // Fresh, whatever is there.
    let out = dry(&["--backup", "fresh"]);
    assert!(out.contains("backup: a fresh snapshot") && !out.contains("rely on"), "{out}");
    let out = dry(&["--backup", "none"]);
    assert!(out.contains("backup: NONE (--backup none)") && !out.contains("save a snapshot") && !out.contains("rely on"), "{out}");

    // For real: the recent snapshot is reused, and no fresh one is streamed.
    rejoin_heals(&lab, t).await;
    assert_eq!(fresh_snapshots(&snaps), 0, "a fresh snapshot was taken although a recent one was there");
    let h = last_history(&lab, t);
    assert_eq!(h["plan"]["backup"]["kind"], "reuse", "{h:#}");
    assert_eq!(h["plan"]["backup"]["path"], db.display().to_string());

    // `none`: healed, and the journal keeps that no backup was taken.
    failures::already_bootstrapped(&lab, t).await;
    let o = rejoin(&lab, t, &["--yes", "--backup", "none"], &[]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("backup: NONE"), "{}", o.stdout);
    healed(&lab, t).await;
    assert_eq!(last_history(&lab, t)["plan"]["backup"]["kind"], "none");
    assert_eq!(fresh_snapshots(&snaps), 0);

    // `fresh`: streamed from a voter that is not the leader, with its records for reuse.
    failures::already_bootstrapped(&lab, t).await;
    let o = rejoin(&lab, t, &["--yes", "--backup", "fresh"], &[]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(!o.stdout.contains("(the leader: no other voter is healthy)"), "{}", o.stdout);
    healed(&lab, t).await;
    assert_eq!(fresh_snapshots(&snaps), 1);
    let rec: Vec<_> = std::fs::read_dir(&snaps).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("rejoin-") && e.file_name().to_string_lossy().ends_with(".db.json")).collect();
    assert_eq!(rec.len(), 1, "the fresh snapshot has its .json record");
    lab.down().await.unwrap();
}

mod backup {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn choice_v3_4() {
        backup_choice(EtcdVersion::V3_4).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn choice_v3_6() {
        backup_choice(EtcdVersion::V3_6).await
    }
}
