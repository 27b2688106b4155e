//! Disaster recovery on real mTLS clusters, both etcd versions: `rebuild` after 2 of 3
//! members are lost and `rejoin` on the others; `restore` from a snapshot taken before a
//! destructive change; the progenitor check; kill -9 at every rebuild step; and
//! `--force-new-cluster` never left behind, on static pods and on RKE containers.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use hostfix_lab::{EtcdVersion, Lab, LabRuntime};

const KEYS: usize = 40;
/// A value no output may ever print.
const SECRET_VALUE: &str = "s3cret-value-never-printed-4f1d";

fn write_keys(lab: &Lab, via: usize, prefix: &str) {
    for k in 0..KEYS {
        lab.etcdctl(via, &["put", &format!("{prefix}{k:03}"), &format!("v{k}")]).unwrap();
    }
}

/// The user keys node `i` serves from its own data (serializable read).
fn keys(lab: &Lab, i: usize) -> BTreeSet<String> {
    let out = lab.etcdctl(i, &["get", "--prefix", "/", "--keys-only", "--consistency=s"]).unwrap();
    out.lines().filter(|l| l.starts_with('/')).map(str::to_string).collect()
}

fn cmd(lab: &Lab, i: usize, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut a = node_args(lab, i);
    a.extend(args.iter().map(|s| s.to_string()));
    hostfix_env(&a.iter().map(String::as_str).collect::<Vec<_>>(), env)
}

fn ok(o: &Out, what: &str) {
    assert_eq!(o.code, 0, "{what}\nstdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
}

/// Neither the manifest (or its parked copy) nor the container carries the flag.
fn no_force_flag(lab: &Lab, i: usize) {
    let n = lab.node(i);
    match &n.container {
        None => {
            for p in [n.manifest(), n.host_root.join("var/lib/etcd-hostfix/parked/etcd.yaml")] {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    assert!(!t.contains("force-new-cluster"), "{} still says --force-new-cluster", p.display());
                }
            }
        }
        Some(c) => {
            let args = docker_ok(&["inspect", "--format", "{{json .Args}}", c]);
            assert!(!args.contains("force-new-cluster"), "{c}: {args}");
        }
    }
}

/// Seed 002: two masters are gone for good (stopped, data lost).
async fn lose_two(lab: &Lab) {
    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
        Lab::lose_data(lab.node(i)).unwrap();
    }
}

async fn rebuild_and_rejoin(v: EtcdVersion, rt: LabRuntime) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, rt).await;
    write_keys(&lab, 0, "/k/");
    let before = keys(&lab, 0);
    // A cluster with quorum is not rebuilt, and nothing changes.
    let o = cmd(&lab, 0, &["rebuild", "--yes"], &[]);
    assert_eq!(o.code, 3, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("still has quorum"), "{}", o.stderr);
    assert!(!lab.node(0).host_root.join("var/lib/etcd-hostfix").exists());
    lose_two(&lab).await;
    // The plan is shown and nothing happens without --yes (no terminal here).
    let o = cmd(&lab, 0, &["rebuild"], &[]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    let o = cmd(&lab, 0, &["rebuild", "--yes"], &[]);
    ok(&o, "rebuild");
    assert!(o.stdout.contains("m2") && o.stdout.contains("rejoin --yes"), "the next commands are printed:\n{}", o.stdout);
    no_force_flag(&lab, 0);
    // The others come back as learners through their own --initial-cluster peer URLs.
    for i in [1, 2] {
        lab.start_member(i).await.unwrap();
        let o = cmd(&lab, i, &["rejoin", "--yes"], &[]);
        if o.code != 0 {
            panic!("rejoin {}:\n{}\n{}\n{}", lab.node(i).name, o.stdout, o.stderr, explain(&lab, i));
        }
    }
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    for i in 0..3 {
        assert_eq!(keys(&lab, i), before, "{} lacks keys", lab.node(i).name);
        no_force_flag(&lab, i);
    }
    // The rebuilt member's data was archived as a copy first.
    let archive = lab.node(0).host_root.join("var/lib/etcd-hostfix/archive");
    let run = std::fs::read_dir(&archive).unwrap().next().unwrap().unwrap().path();
    assert!(run.join("member/snap/db").exists(), "{}", run.display());
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_after_losing_two_of_three_v3_4() {
    rebuild_and_rejoin(EtcdVersion::V3_4, LabRuntime::StaticPod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_after_losing_two_of_three_v3_6() {
    rebuild_and_rejoin(EtcdVersion::V3_6, LabRuntime::StaticPod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_after_losing_two_of_three_rke() {
    rebuild_and_rejoin(EtcdVersion::V3_6, LabRuntime::Docker).await;
}

/// `hide_tools`: no etcdutl or etcdctl on the host, so an RKE restore runs the tool from
/// the member's own image.
async fn restore_round_trip(v: EtcdVersion, rt: LabRuntime, hide_tools: bool) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, rt).await;
    let no_tools: &[(&str, &str)] =
        if hide_tools { &[("PATH", "/nonexistent"), ("HOSTFIX_ETCD34_DIR", "/nonexistent"), ("HOSTFIX_ETCD35_DIR", "/nonexistent"), ("HOSTFIX_ETCD36_DIR", "/nonexistent"), ("HOSTFIX_ETCD37_DIR", "/nonexistent")] } else { &[] };
    write_keys(&lab, 0, "/k/");
    lab.etcdctl(0, &["put", "/secret/token", SECRET_VALUE]).unwrap();
    // What the tool printed, all of it, for the grep for key material and values.
    let mut said = String::new();
    let mut cmd = |lab: &Lab, i: usize, args: &[&str], env: &[(&str, &str)]| {
        let o = cmd(lab, i, args, env);
        said.push_str(&o.stdout);
        said.push_str(&o.stderr);
        o
    };
    // A state dir left open by hand (or by an older version): the first run that writes
    // there tightens it, and says so.
    let open_state = lab.node(1).host_root.join("var/lib/etcd-hostfix");
    std::fs::create_dir_all(&open_state).unwrap();
    std::fs::set_permissions(&open_state, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let snap = d.path().join("before.db");
    ok(&cmd(&lab, 0, &["snapshot", "save", "--status", "--out", snap.to_str().unwrap()], &[]), "snapshot save");
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.path().join("before.db.json")).unwrap()).unwrap();
    assert!(record["sha256"].as_str().unwrap().len() == 64 && record["status"]["revision"].as_i64().is_some(), "{record:#}");
    // The whole-file digest, computed while streaming, is what sha256sum says of the file.
    let sum = std::process::Command::new("sha256sum").arg(&snap).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap().to_string();
    assert_eq!(record["sha256"].as_str().unwrap(), sum);
    assert!(std::fs::read_to_string(d.path().join("before.db.sha256")).unwrap().starts_with(&sum));
    for f in ["before.db", "before.db.json", "before.db.sha256"] {
        assert_private(&d.path().join(f));
    }
    let expected = keys(&lab, 0);
    // The destructive change the snapshot must undo.
    lab.etcdctl(0, &["del", "--prefix", "/k/01"]).unwrap();
    write_keys(&lab, 0, "/after/");

    // With quorum, restore refuses and changes nothing.
    let conf = lab.node(0).host_root.join("etc");
    let before = snapshot(&conf);
    let o = cmd(&lab, 0, &["restore", "--snapshot", snap.to_str().unwrap(), "--yes"], no_tools);
    assert_eq!(o.code, 3, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("still has quorum"), "{}", o.stderr);
    assert_eq!(before, snapshot(&conf));
    assert!(!lab.node(0).host_root.join("var/lib/etcd-hostfix").exists());
    if rt == LabRuntime::StaticPod {
        // A static-pod master without etcd's tools: a clear error before anything changes.
        let hidden = [("PATH", "/nonexistent"), ("HOSTFIX_ETCD34_DIR", "/nonexistent"), ("HOSTFIX_ETCD35_DIR", "/nonexistent"), ("HOSTFIX_ETCD36_DIR", "/nonexistent"), ("HOSTFIX_ETCD37_DIR", "/nonexistent")];
        let o = cmd(&lab, 0, &["restore", "--snapshot", snap.to_str().unwrap(), "--yes", "--force"], &hidden);
        assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
        assert!(o.stderr.contains(&format!("no etcdutl or etcdctl {} found on this host", v.tag().rsplit_once('.').unwrap().0)), "{}", o.stderr);
        assert_eq!(before, snapshot(&conf));
        assert!(!lab.node(0).host_root.join("var/lib/etcd-hostfix").exists());
    }

    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
    }
    // Killed after the archive; a leftover target (a failed restore's) is then in the way.
    let crash: Vec<(&str, &str)> = no_tools.iter().copied().chain([("HOSTFIX_CRASH_AT", "archive")]).collect();
    let o = cmd(&lab, 0, &["restore", "--snapshot", snap.to_str().unwrap(), "--yes"], &crash);
    assert_eq!(o.code, -1, "{}\n{}", o.stdout, o.stderr);
    let journal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.node(0).host_root.join("var/lib/etcd-hostfix/journal/recover.json")).unwrap()).unwrap();
    let run = journal["run_id"].as_str().unwrap();
    let leftover = lab.node(0).data_dir().join(format!(".hostfix-restore-{run}/member"));
    // 0700, as etcd's restore creates its target.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(&leftover).unwrap();
    std::fs::write(leftover.join("half-written"), b"x").unwrap();
    std::fs::set_permissions(leftover.join("half-written"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = cmd(&lab, 0, &["restore", "--snapshot", snap.to_str().unwrap(), "--yes"], no_tools);
    ok(&o, "restore (resumed)");
    if hide_tools {
        assert!(o.stdout.contains("in image"), "{}", o.stdout);
    }
    // Every etcdutl from 3.5.10 bumps the revision, the one in an RKE image too; 3.4 cannot.
    let bumps = v != EtcdVersion::V3_4;
    assert_eq!(o.stdout.contains("the restore bumped the revision past theirs"), bumps, "{}", o.stdout);
    no_force_flag(&lab, 0);
    let archived = lab.node(0).host_root.join(format!("var/lib/etcd-hostfix/archive/{run}"));
    assert!(archived.join("failed-restore-0/member/half-written").exists(), "the leftover is archived, not deleted");
    assert!(archived.join("member/snap/db").exists(), "the old data is archived");
    assert_eq!(keys(&lab, 0), expected, "the restored member serves exactly the snapshot's keys");

    // The others' data is from before the restore and newer than the snapshot: plain rejoin
    // refuses, --force archives it and rejoins.
    for i in [1, 2] {
        lab.start_member(i).await.unwrap();
    }
    for i in [1, 2] {
        let o = cmd(&lab, i, &["rejoin", "--yes", "--force"], &[]);
        if o.code != 0 {
            panic!("rejoin --force {}:\n{}\n{}\n{}", lab.node(i).name, o.stdout, o.stderr, explain(&lab, i));
        }
        let tightened = o.stderr.matches("tightened to 0700").count();
        assert_eq!(tightened, usize::from(i == 1), "{}", o.stderr);
    }
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    for i in 0..3 {
        assert_eq!(keys(&lab, i), expected, "{} serves other keys than the snapshot's", lab.node(i).name);
        // Snapshots, journals, parked manifests, archives: 0600 in 0700, after the restore
        // on m1 and the rejoins on the others.
        assert_private(&lab.node(i).host_root.join("var/lib/etcd-hostfix"));
    }
    assert_no_secrets(&lab, &said, &[SECRET_VALUE]);
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_back_exactly_the_snapshot_v3_4() {
    restore_round_trip(EtcdVersion::V3_4, LabRuntime::StaticPod, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_back_exactly_the_snapshot_v3_6() {
    restore_round_trip(EtcdVersion::V3_6, LabRuntime::StaticPod, false).await;
}

// The smoke of the other versions kubeadm and RKE masters run (3.6 and 3.4 have the whole
// matrix): rebuild + rejoin, and restore, on the newest 3.5 and on 3.7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_back_exactly_the_snapshot_v3_5() {
    restore_round_trip(EtcdVersion::V3_5, LabRuntime::StaticPod, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_back_exactly_the_snapshot_v3_7() {
    restore_round_trip(EtcdVersion::V3_7, LabRuntime::StaticPod, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_after_losing_two_of_three_v3_5() {
    rebuild_and_rejoin(EtcdVersion::V3_5, LabRuntime::StaticPod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_after_losing_two_of_three_v3_7() {
    rebuild_and_rejoin(EtcdVersion::V3_7, LabRuntime::StaticPod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_on_rke_with_the_tool_from_the_image() {
    restore_round_trip(EtcdVersion::V3_6, LabRuntime::Docker, true).await;
}

/// m1 misses writes while m2 and m3 carry on; then m3 goes too. m2 alone is ahead, so a
/// rebuild on m1 is refused and names m2; nothing on m1 changes.
async fn progenitor_check(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0, "/k/");
    lab.stop_member(0).await.unwrap();
    write_keys(&lab, 1, "/newer/");
    lab.stop_member(2).await.unwrap();
    let root = lab.node(0).host_root.clone();
    let before = (snapshot(&root.join("etc")), snapshot(&root.join("root")), snapshot(&lab.node(0).data_dir()));
    // Seed 002 parks every manifest in /root first; the operator points at it.
    let parked = root.join("root/etcd.yaml");
    let o = cmd(&lab, 0, &["--manifest", parked.to_str().unwrap(), "rebuild", "--yes"], &[]);
    assert_eq!(o.code, 3, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("member m2") && o.stderr.contains("is ahead") && o.stderr.contains("rebuild"), "{}", o.stderr);
    assert_eq!(before, (snapshot(&root.join("etc")), snapshot(&root.join("root")), snapshot(&lab.node(0).data_dir())));
    assert!(!root.join("var/lib/etcd-hostfix").exists());
    // The member that is ahead may rebuild.
    ok(&cmd(&lab, 1, &["rebuild", "--yes"], &[]), "rebuild on m2");
    no_force_flag(&lab, 1);
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progenitor_check_refuses_a_survivor_that_is_behind_v3_4() {
    progenitor_check(EtcdVersion::V3_4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progenitor_check_refuses_a_survivor_that_is_behind_v3_6() {
    progenitor_check(EtcdVersion::V3_6).await;
}

/// kill -9 after every rebuild step (and inside the Docker recreates), then a rerun:
/// it converges to a serving one-member cluster without `--force-new-cluster` anywhere.
async fn kill_at_every_step(v: EtcdVersion, rt: LabRuntime, points: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, rt).await;
    write_keys(&lab, 0, "/k/");
    let expected = keys(&lab, 0);
    lose_two(&lab).await;
    for at in points {
        // After the first run the cluster is one healthy member: --force rebuilds it anyway.
        let o = cmd(&lab, 0, &["rebuild", "--yes", "--force"], &[("HOSTFIX_CRASH_AT", at)]);
        assert_eq!(o.code, -1, "{at}: expected SIGKILL\n{}\n{}", o.stdout, o.stderr);
        let o = cmd(&lab, 0, &["rebuild", "--yes"], &[]);
        ok(&o, &format!("{at}: rerun"));
        assert!(o.stdout.contains("resuming recover run"), "{}", o.stdout);
        no_force_flag(&lab, 0);
        assert_eq!(keys(&lab, 0), expected, "{at}");
        if let Some(c) = &lab.node(0).container {
            assert!(asides_left(c).is_empty(), "{at}: old containers left");
        }
    }
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_killed_at_every_step_converges() {
    kill_at_every_step(EtcdVersion::V3_6, LabRuntime::StaticPod, &["stop", "archive-copy", "start-forced", "wait-single-1", "unforce", "wait-single-2"]).await;
}

/// The riskiest moments with etcd 3.4: started with the flag, and just after removing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_killed_with_the_flag_in_place_converges_v3_4() {
    kill_at_every_step(EtcdVersion::V3_4, LabRuntime::StaticPod, &["start-forced", "wait-single-1", "unforce"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_killed_mid_recreate_converges_rke() {
    kill_at_every_step(EtcdVersion::V3_6, LabRuntime::Docker, &["recreate-renamed", "recreate-created", "start-forced", "unforce", "wait-single-2"]).await;
}

/// Progress bars on a terminal only: `snapshot save` shows bytes and rate, a rejoin's
/// learner its applied index, `restore` the restored db growing. Piped, not a byte more
/// than before; `--no-progress` silences them on a terminal too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bars_only_on_a_terminal() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    write_keys(&lab, 0, "/k/");
    let pty = |i: usize, extra: &[&str]| {
        let mut a = node_args(&lab, i);
        a.extend(extra.iter().map(|s| s.to_string()));
        hostfix_pty(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let snap = |n: &str| d.path().join(n).display().to_string();

    let o = cmd(&lab, 0, &["snapshot", "save", "--out", &snap("piped.db")], &[]);
    ok(&o, "snapshot save, piped");
    assert!(o.stderr.is_empty(), "a pipe gets no progress: {:?}", o.stderr);
    let o = pty(0, &["snapshot", "save", "--out", &snap("tty.db")]);
    ok(&o, "snapshot save on a terminal");
    assert!(o.stdout.contains("snapshot") && o.stdout.contains("B/s"), "no bytes-and-rate bar:\n{}", o.stdout);
    let o = pty(0, &["--no-progress", "snapshot", "save", "--out", &snap("quiet.db")]);
    ok(&o, "snapshot save --no-progress");
    assert!(!o.stdout.contains("B/s"), "--no-progress drew a bar:\n{}", o.stdout);

    let t = 2;
    lab.offline(t, |n| Lab::lose_data(n).map(|_| vec![])).await.unwrap();
    let o = pty(t, &["rejoin", "--yes"]);
    if o.code != 0 {
        panic!("rejoin on a terminal:\n{}\n{}", o.stdout, explain(&lab, t));
    }
    // No timing here: with 0 keys the learner may be promoted before any figure is taken,
    // and the bar is still drawn, because the rejoin reports the promoted member's final
    // applied index before it ends the bar (rejoin.rs, Runner::show_final_learner). It waits for
    // nothing but the rejoin's own exit.
    assert!(o.stdout.contains("learner") && o.stdout.contains("applied index"), "no learner bar:\n{}", o.stdout);
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();

    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
    }
    let o = pty(0, &["restore", "--snapshot", &snap("piped.db"), "--yes"]);
    ok(&o, "restore on a terminal");
    assert!(o.stdout.lines().any(|l| l.contains("restore") && l.contains("B/s")), "no restore bar:\n{}", o.stdout);
    lab.down().await.unwrap();
}

/// The local stand-in kube-apiserver's PID on lab master `i`, once exactly one runs.
async fn apiserver_pid(lab: &Lab, i: usize) -> u32 {
    let arg = format!("--etcd-servers=https://{}:2379", lab.node(i).ip);
    let mut pids = vec![];
    for _ in 0..200 {
        pids = hostfix_adapters::process::apiserver_pids(&arg);
        if pids.len() == 1 {
            return pids[0];
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{}: kube-apiserver processes {pids:?}", lab.node(i).name);
}

/// A static-pod lab with a stand-in kube-apiserver per master: `/k/` keys, a snapshot of
/// them (`before.db` in `dir`), then `/after/` keys, so that the other masters' data is
/// newer than the snapshot's; then m2 and m3 stop. Returns the lab, the kube-apiservers'
/// PIDs, the snapshot and the revision the cluster had reached.
async fn snapshot_then_lose_two(dir: &std::path::Path, v: EtcdVersion) -> (Lab, Vec<u32>, std::path::PathBuf, u64) {
    let mut spec = hostfix_lab::LabSpec::new(dir, 3, v, LabRuntime::StaticPod, subnet());
    spec.backoff_base_ms = 300;
    spec.apiserver = true;
    let lab = Lab::up(spec, std::path::Path::new(BIN), false).await.unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    let before: Vec<u32> = apiserver_pids_all(&lab).await;
    write_keys(&lab, 0, "/k/");
    let snap = dir.join("before.db");
    ok(&cmd(&lab, 0, &["snapshot", "save", "--out", snap.to_str().unwrap()], &[]), "snapshot save");
    write_keys(&lab, 0, "/after/");
    let seen = revision(&lab, 0);
    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
    }
    (lab, before, snap, seen)
}

/// An `etcdctl watch` on lab master `i` from revision `rev`: what a kube-apiserver's watch
/// cache does when its watch breaks (a restart, a lost leader), resuming right after the
/// last revision it saw.
fn spawn_watch(lab: &Lab, i: usize, prefix: &str, rev: u64) -> std::process::Child {
    let (ca, cert, key) = lab.client_tls_files(i);
    std::process::Command::new(lab.state.spec.version.bin_dir().unwrap().join("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", lab.node(i).client_url()))
        .arg(format!("--cacert={}", ca.display()))
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()))
        .args(["watch", "--prefix", prefix, &format!("--rev={rev}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The revision the cluster is at, as master `i` answers.
fn revision(lab: &Lab, i: usize) -> u64 {
    let out = lab.etcdctl(i, &["get", "/", "-w", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["header"]["revision"].as_u64().unwrap()
}

/// etcd 3.5.10 and later (3.6 here) restore with `--bump-revision 1000000000
/// --mark-compacted`: the revision jumps past anything a watcher saw, and every older
/// revision reads as compacted. So a watcher from before the restore gets a compaction
/// error and re-lists (as kube-apiserver does) instead of serving stale data, and no
/// kube-apiserver is restarted. The other masters then rejoin without --force: the
/// cluster's revision is newer than their data.
async fn restore_bumps_the_revision(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let (mut lab, before, snap, seen) = snapshot_then_lose_two(d.path(), v).await;
    let o = cmd(&lab, 0, &["restore", "--yes", "--snapshot", snap.to_str().unwrap()], &[]);
    ok(&o, "restore");
    assert!(!o.stdout.contains("bounce-apiserver"), "no restart is planned when the revision is bumped:\n{}", o.stdout);
    assert!(o.stdout.contains("sudo etcd-hostfix rejoin --yes\n") && !o.stdout.contains("rejoin --yes --force"), "plain rejoin is next:\n{}", o.stdout);
    let now = revision(&lab, 0);
    // The snapshot's revision plus 10^9: past every revision written after the snapshot.
    assert!(now > seen && now > 1_000_000_000, "the revision was bumped past {seen}: {now}");
    // The watcher from before the restore resumes after the last revision it saw: a
    // compaction error, so it re-lists, rather than the snapshot's older data under
    // revisions it has already seen. (A watch held open across the restore is cancelled
    // earlier still, with "no leader", once m2 and m3 stop.) Bounded: it answers at once.
    let mut watcher = spawn_watch(&lab, 0, "/after/", seen + 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while watcher.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = watcher.kill();
    let out = watcher.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("compacted"), "the watcher from before the restore: {said:?}");
    let old = lab.etcdctl(0, &["get", "--prefix", "/k/", &format!("--rev={seen}")]);
    assert!(old.as_ref().is_err_and(|e| e.to_string().contains("compacted")), "{old:?}");
    assert_eq!(apiserver_pid(&lab, 0).await, before[0], "m1's kube-apiserver was left running");
    for i in [1, 2] {
        lab.start_member(i).await.unwrap();
        let o = cmd(&lab, i, &["rejoin", "--yes"], &[]);
        ok(&o, "rejoin without --force");
        assert!(!o.stdout.contains("bounce-apiserver"), "{}", o.stdout);
    }
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    let k = keys(&lab, 2);
    assert_eq!(k.iter().filter(|k| k.starts_with("/k/")).count(), KEYS);
    assert!(!k.iter().any(|k| k.starts_with("/after/")), "the cluster is the snapshot's");
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_bumps_the_revision_3_6() {
    restore_bumps_the_revision(EtcdVersion::V3_6).await;
}

/// etcd 3.4 cannot bump the revision on restore (nor 3.5 before 3.5.10), so an API server would keep
/// serving its watch cache from before the restore (kubernetes#107457). The restore
/// restarts the local kube-apiserver once etcd is up; `rejoin --force` on the other masters
/// restarts theirs; `--no-apiserver-restart` leaves one alone, and says so.
async fn restore_restarts_the_apiservers(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let (mut lab, before, snap, _) = snapshot_then_lose_two(d.path(), v).await;

    // Killed mid-bounce, with kube-apiserver's manifest parked: its pod is down, and the
    // manifest is moved aside, not lost. The rerun resumes there and puts it back.
    let o = cmd(&lab, 0, &["restore", "--yes", "--snapshot", snap.to_str().unwrap()], &[("HOSTFIX_CRASH_AT", "bounce-apiserver-parked")]);
    assert_eq!(o.code, -1, "{}\n{}", o.stdout, o.stderr);
    let manifest = lab.node(0).apiserver_manifest();
    assert!(!manifest.exists(), "parked when the run died");
    assert!(lab.node(0).host_root.join("var/lib/etcd-hostfix/parked/kube-apiserver.yaml").exists(), "moved aside, not deleted");
    let o = cmd(&lab, 0, &["restore", "--yes", "--snapshot", snap.to_str().unwrap()], &[]);
    ok(&o, "restore (resumed)");
    let plan: Vec<&str> = o.stdout.lines().filter_map(|l| l.trim_start().split_once(". ").map(|(_, r)| r.split_whitespace().next().unwrap_or(""))).collect();
    let (wait, bounce) = (plan.iter().rposition(|s| *s == "wait-single"), plan.iter().position(|s| *s == "bounce-apiserver"));
    assert!(wait.is_some() && bounce > wait, "the bounce comes after etcd is up: {plan:?}\n{}", o.stdout);
    assert!(o.stdout.contains("kube-apiserver restarted from"), "{}", o.stdout);
    assert!(o.stdout.contains("rejoin --force then restarts that master's kube-apiserver too"), "{}", o.stdout);
    let after0 = apiserver_pid(&lab, 0).await;
    assert_ne!(before[0], after0, "m1's kube-apiserver was restarted");
    let m = std::fs::read_to_string(lab.node(0).apiserver_manifest()).unwrap();
    assert!(m.contains("--etcd-servers="), "its manifest is back in place, unchanged");

    // m2: rejoin --force restarts its kube-apiserver too; m3 opts out.
    for (i, extra) in [(1usize, None), (2, Some("--no-apiserver-restart"))] {
        lab.start_member(i).await.unwrap();
        let mut args = vec!["rejoin", "--yes", "--force"];
        args.extend(extra);
        let o = cmd(&lab, i, &args, &[]);
        ok(&o, "rejoin --force");
        let now = apiserver_pid(&lab, i).await;
        if extra.is_none() {
            assert!(o.stdout.contains("bounce-apiserver") && o.stdout.contains("kube-apiserver restarted from"), "{}", o.stdout);
            assert_ne!(before[i], now);
        } else {
            assert!(!o.stdout.contains("bounce-apiserver"), "{}", o.stdout);
            assert!(o.stdout.contains("not restarted here: --no-apiserver-restart was given"), "{}", o.stdout);
            assert_eq!(before[i], now, "left alone");
        }
    }
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    let k = keys(&lab, 2);
    assert_eq!(k.iter().filter(|k| k.starts_with("/k/")).count(), KEYS);
    assert!(!k.iter().any(|k| k.starts_with("/after/")), "the cluster is the snapshot's");
    lab.down().await.unwrap();
    for i in 0..3 {
        assert!(hostfix_adapters::process::apiserver_pids(&format!("--etcd-servers=https://{}:2379", lab.node(i).ip)).is_empty(), "lab down stops the stand-ins");
    }
}

async fn apiserver_pids_all(lab: &Lab) -> Vec<u32> {
    let mut v = vec![];
    for i in 0..3 {
        v.push(apiserver_pid(lab, i).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_restarts_the_apiservers_3_4() {
    restore_restarts_the_apiservers(EtcdVersion::V3_4).await
}


