//! The fault matrix of issue #15 on real 3-member mTLS labs: faults injected at an exact
//! step of a running `rejoin` (it stops itself there: `HOSTFIX_PAUSE_AT`), a peer that
//! answers slowly, a full or foreign filesystem under the state dir, and client
//! certificates that are out of date or from another CA.
//!
//! Every case asserts the same three things: the cluster ends healthy, or the run ends with
//! a clear error and a journal the rerun resumes; no acknowledged key is lost; no data dir
//! goes without an archived copy.
//! (A partition of a whole master, and the split-brain refusals, are in tests/partition.rs;
//! kill -9 at every step in tests/rejoin.rs.)

#[macro_use]
mod common;
mod failures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hostfix_lab::fault::Partition;
use hostfix_lab::{EtcdVersion, Lab, LabRuntime};

const T: usize = failures::TARGET;

/// A `rejoin --yes` on master `i` that stops itself (SIGSTOP) before `pause_at`.
struct Paused {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

fn spawn_rejoin(lab: &Lab, i: usize, extra: &[&str], pause_at: &str, cut: Option<&Partition>) -> Paused {
    let d = lab.node(i).host_root.parent().unwrap().to_path_buf();
    let n = std::fs::read_dir(&d).unwrap().count();
    let (out, err) = (d.join(format!("rejoin-{n}.out")), d.join(format!("rejoin-{n}.err")));
    let mut c = Command::new(BIN);
    c.args(node_args(lab, i)).arg("rejoin").arg("--yes").args(extra);
    c.env("HOSTFIX_PAUSE_AT", pause_at);
    c.stdin(Stdio::null()).stdout(std::fs::File::create(&out).unwrap()).stderr(std::fs::File::create(&err).unwrap());
    if let Some(p) = cut {
        p.enter(&mut c);
    }
    Paused { child: c.spawn().expect("start rejoin"), out, err }
}

impl Paused {
    fn said(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", std::fs::read_to_string(&self.out).unwrap_or_default(), std::fs::read_to_string(&self.err).unwrap_or_default())
    }

    /// Until the run has stopped itself at its pause point.
    async fn stopped(&mut self, step: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("rejoin ended ({st}) before pausing at {step}:\n{}", self.said());
            }
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next().map(String::from));
            if state.as_deref() == Some("T") {
                assert!(self.said().contains(&format!("HOSTFIX_PAUSE_AT={step}")), "{}", self.said());
                return;
            }
            assert!(Instant::now() < deadline, "rejoin never reached {step}:\n{}", self.said());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn resume(&self) {
        // SAFETY: a signal to the child this test started, by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    /// The run's end within `secs`: its exit code and output.
    async fn finish(mut self, secs: u64) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code().unwrap_or(-1), self.said());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("rejoin did not end within {secs} s:\n{}", self.said());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Break master `i` for good: seed 000's lost data on a static pod, a corrupt db on RKE.
async fn break_member(lab: &Lab, i: usize) {
    if lab.node(i).container.is_none() {
        failures::already_bootstrapped(lab, i).await;
        return;
    }
    lab.stop_member(i).await.unwrap();
    hostfix_lab::Lab::scribble(&lab.node(i).data_dir().join("member/snap/db"), 0, 8192).unwrap();
    lab.start_member(i).await.unwrap();
}

async fn healed(lab: &Lab) {
    let all: Vec<usize> = (0..lab.nodes().len()).collect();
    lab.wait_healthy(&all, all.len(), Duration::from_secs(90)).await.unwrap();
    for i in all {
        assert_all_keys(lab, i);
    }
}

/// The member dirs this master's runs archived: none may be missing once its data dir is.
fn archived_members(lab: &Lab, i: usize) -> usize {
    let a = lab.node(i).host_root.join("var/lib/etcd-hostfix/archive");
    std::fs::read_dir(a).map(|rd| rd.flatten().filter(|e| e.path().join("member").exists()).count()).unwrap_or(0)
}

/// Whether node `i` has a member dir now, and how many its runs have archived.
fn data_count(lab: &Lab, i: usize) -> (bool, usize) {
    (lab.node(i).data_dir().join("member").exists(), archived_members(lab, i))
}

/// A member dir there `before` is still in place, or one more is archived.
fn data_kept(lab: &Lab, i: usize, before: (bool, usize), what: &str) {
    let (here, archived) = data_count(lab, i);
    assert!(!before.0 || here || archived > before.1, "{what}: {}'s member dir is neither in place nor archived", lab.node(i).name);
}

/// Which lab node leads, asked of the given nodes.
async fn leader(lab: &Lab, among: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for &i in among {
            let Ok(c) = lab.connector(i) else { continue };
            let Ok(mut ep) = c.connect(&lab.node(i).client_url()).await else { continue };
            if let Ok(st) = ep.status().await {
                if st.leader != 0 && st.leader == st.member_id {
                    return i;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no leader among {among:?}");
}

/// 2. A partition of the repaired master at a membership step: the run waits within its
///    bound, stops with a journal, and the rerun after the heal converges.
async fn partition_at_membership_steps(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    for step in ["add-learner", "promote"] {
        eprintln!("etcd {}: partition before {step}", v.tag());
        failures::already_bootstrapped(&lab, T).await;
        // The run starts inside the master's group, so its connections are cut with it.
        let data = data_count(&lab, T);
        let mut cut = Partition::group(&lab, T).unwrap();
        let mut run = spawn_rejoin(&lab, T, &["--timeout", "1", "--wait-timeout", "15"], step, Some(&cut));
        run.stopped(step).await;
        cut.cut_off().unwrap();
        let started = Instant::now();
        run.resume();
        let (code, said) = run.finish(120).await;
        eprintln!("cut off before {step}, after {:?}:\n{said}", started.elapsed());
        assert_eq!(code, 1, "a cut-off run fails, it does not hang or claim success:\n{said}");
        assert!(started.elapsed() < Duration::from_secs(90), "bounded by --wait-timeout: {:?}\n{said}", started.elapsed());
        assert!(said.contains(&format!("({step})")), "the error names the step:\n{said}");
        assert!(said.contains("run `etcd-hostfix rejoin` again to resume"), "{said}");
        data_kept(&lab, T, data, step);
        // The majority kept every key and still serves writes.
        assert_all_keys(&lab, 0);
        lab.etcdctl(0, &["put", &format!("/during/{step}"), "x"]).unwrap();
        cut.heal().unwrap();
        let o = rejoin(&lab, T, &["--yes"], &[]);
        assert_eq!(o.code, 0, "the rerun after the heal converges:\n{}\n{}\n{}", o.stdout, o.stderr, explain(&lab, T));
        assert!(o.stdout.contains("resuming rejoin run"), "{}", o.stdout);
        healed(&lab).await;
        let got = lab.etcdctl(T, &["get", &format!("/during/{step}"), "--print-value-only", "--consistency=s"]).unwrap();
        assert_eq!(got.trim(), "x");
    }
    lab.down().await.unwrap();
}

/// 3. The leader's etcd stopped just as a membership step starts, and started again 3 s
///    later: the step retries through the election and the run completes.
async fn leader_lost_at_membership_steps(v: EtcdVersion, rt: LabRuntime) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, rt).await;
    write_keys(&lab, 0);
    for step in ["remove", "add-learner", "promote"] {
        eprintln!("etcd {} {rt:?}: leader stopped before {step}", v.tag());
        break_member(&lab, T).await;
        let mut run = spawn_rejoin(&lab, T, &["--wait-timeout", "120"], step, None);
        run.stopped(step).await;
        let l = leader(&lab, &[0, 1]).await;
        lab.stop_member(l).await.unwrap();
        run.resume();
        // The fault's length, not a wait for anything: the leader stays down 3 s while the
        // run goes on; finish() then waits (bounded) for the run itself.
        tokio::time::sleep(Duration::from_secs(3)).await;
        lab.start_member(l).await.unwrap();
        let (code, said) = run.finish(240).await;
        if code != 0 {
            panic!("leader {} stopped before {step}: {said}\n{}", lab.node(l).name, explain(&lab, T));
        }
        assert!(said.contains("rejoin complete"), "{said}");
        healed(&lab).await;
    }
    lab.down().await.unwrap();
}

/// 6. A peer that accepts connections and never answers (its etcd stopped with SIGSTOP):
///    every wait is bounded by --timeout, and what is said names that peer.
async fn slow_peer(v: EtcdVersion, rt: LabRuntime) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, rt).await;
    write_keys(&lab, 0);
    break_member(&lab, T).await;
    let slow = 1;
    let pids = hostfix_adapters::process::etcd_pids(&lab.node(slow).client_url());
    assert!(!pids.is_empty());
    // SAFETY: signals to the etcd this lab started, by PID.
    let signal = |sig| pids.iter().for_each(|p| unsafe { libc::kill(*p as i32, sig); });
    signal(libc::SIGSTOP);
    let name = lab.node(slow).name.clone();
    let bounded = |what: &str, started: Instant, o: &Out| {
        assert!(started.elapsed() < Duration::from_secs(20), "{what} took {:?}\n{}\n{}", started.elapsed(), o.stdout, o.stderr);
        let said = format!("{}\n{}", o.stdout, o.stderr);
        let line = said.lines().find(|l| l.contains(&name) && l.contains("timed out"));
        assert!(line.is_some(), "{what} names {name} as timed out:\n{said}");
    };
    let t0 = Instant::now();
    let o = status(&lab, 0, &["--timeout", "2"]);
    bounded("status", t0, &o);
    assert_eq!(o.code, 4, "a member that does not answer is unhealthy:\n{}", o.stdout);
    // With m2 silent and m3 broken, one voter of three answers: no membership change can
    // be made, and the refusal says which peer did not answer.
    let mut a = node_args(&lab, T);
    a.extend(["--timeout", "2", "rejoin", "--dry-run"].map(String::from));
    let t0 = Instant::now();
    let o = hostfix(&a.iter().map(String::as_str).collect::<Vec<_>>());
    bounded("rejoin --dry-run", t0, &o);
    assert_eq!(o.code, 3, "{}\n{}", o.stdout, o.stderr);
    signal(libc::SIGCONT);
    lab.wait_healthy(&[0, 1], 3, Duration::from_secs(60)).await.unwrap();
    let o = rejoin(&lab, T, &["--yes"], &[]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    healed(&lab).await;
    lab.down().await.unwrap();
}

/// The master's configuration, etcd-hostfix's state and the data dir: a refusal leaves
/// them byte-identical.
fn config_snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = snapshot(&root.join("etc"));
    m.extend(snapshot(&root.join("var/lib/etcd-hostfix")));
    m
}

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(at).output().unwrap();
        assert!(o.status.success(), "mount tmpfs at {}: {}", at.display(), String::from_utf8_lossy(&o.stderr));
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// 4. A full filesystem under the state dir, and an archive that cannot be a rename: the
///    run refuses before any change, naming the path and the bytes; once there is room,
///    the rerun converges.
async fn full_disk(v: EtcdVersion, rt: LabRuntime) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, rt).await;
    write_keys(&lab, 0);
    // Some data, so the snapshot is well over the tmpfs below.
    let blob = "x".repeat(64 * 1024);
    for k in 0..40 {
        lab.etcdctl(0, &["put", &format!("/blob/{k}"), &blob]).unwrap();
    }
    break_member(&lab, T).await;
    let root = lab.node(T).host_root.clone();
    let state = root.join("var/lib/etcd-hostfix");
    let ids = |lab: &Lab| lab.etcdctl(0, &["member", "list"]).unwrap();
    let members = ids(&lab);
    let data = data_count(&lab, T);

    // The snapshot: 512 KiB of room for a db of several MiB.
    {
        let _m = Mount::tmpfs(&state.join("snapshots"), "512k");
        let before = config_snapshot(&root);
        for dry in [true, false] {
            let o = rejoin(&lab, T, &["--backup", "fresh", if dry { "--dry-run" } else { "--yes" }], &[]);
            assert_eq!(o.code, 3, "dry run {dry}: {}\n{}", o.stdout, o.stderr);
            assert!(o.stderr.contains("not enough space for the backup"), "{}", o.stderr);
            assert!(o.stderr.contains(&state.join("snapshots").display().to_string()), "names the path:\n{}", o.stderr);
            assert!(o.stderr.contains("(the db of ") && o.stderr.contains("bytes and") && o.stderr.contains("are free there"), "names the bytes:\n{}", o.stderr);
        }
        assert_eq!(before, config_snapshot(&root), "a refusal changed files");
        assert_eq!(members, ids(&lab), "a refusal changed the membership");
        // (The crashlooping member may write a fresh member dir meanwhile: etcd 3.4 does.)
        let now = data_count(&lab, T);
        assert!(now.1 == data.1 && (!data.0 || now.0), "a refusal moved data: {data:?} -> {now:?}");
    }

    // The archive dir on another filesystem than the data dir: a rename cannot reach it and
    // data is never copied, so the plan archives the data beside itself, on its own
    // filesystem, and says where and why (the full run on such a layout is
    // tests/daemon.rs' heals_on_its_own_etcd_disk_inside_the_units_sandbox).
    {
        let _m = Mount::tmpfs(&state.join("archive"), "64m");
        let before = config_snapshot(&root);
        let o = rejoin(&lab, T, &["--dry-run"], &[]);
        assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
        let beside = lab.node(T).data_dir().join("etcd-hostfix-archive");
        assert!(o.stdout.contains(&beside.display().to_string()) && o.stdout.contains("different filesystems"), "{}", o.stdout);
        assert_eq!(before, config_snapshot(&root), "a dry run changed files");
        assert_eq!(members, ids(&lab), "a dry run changed the membership");
    }

    // Room at the start, none halfway: the stream fails with the path and the bytes, before
    // any membership change, and the journal is there for the rerun.
    {
        let dir = state.join("snapshots");
        let _m = Mount::tmpfs(&dir, "16m");
        let mut run = spawn_rejoin(&lab, T, &["--backup", "fresh"], "snapshot", None);
        run.stopped("snapshot").await;
        let filler = dir.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![0u8; 64 * 1024];
            while f.write_all(&chunk).is_ok() {}
            let len = f.metadata().unwrap().len();
            f.set_len(len.saturating_sub(256 * 1024)).unwrap();
        }
        run.resume();
        let (code, said) = run.finish(120).await;
        assert_eq!(code, 1, "{said}");
        assert!(said.contains(&format!("the filesystem of {}", dir.display())) && said.contains("filled up after"), "{said}");
        assert!(said.contains("it needs") && said.contains("bytes"), "{said}");
        assert!(said.contains("run `etcd-hostfix rejoin` again to resume"), "{said}");
        assert_eq!(members, ids(&lab), "no membership change before the backup");
        std::fs::remove_file(&filler).unwrap();
        assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "only the run's own partial file went, and it did");
    }

    // Room again: the same command converges.
    let o = rejoin(&lab, T, &["--yes", "--backup", "fresh"], &[]);
    assert_eq!(o.code, 0, "{}\n{}\n{}", o.stdout, o.stderr, explain(&lab, T));
    healed(&lab).await;
    // The broken member dir, when there was one, went to the archive, not away.
    assert!(!data.0 || archived_members(&lab, T) > data.1, "the broken member dir was archived");

    // Disaster recovery on m1, with m2 and m3 down: rebuild copies the member dir into the
    // archive, which needs room there; restore moves it, by rename. Each is checked before
    // anything is stopped.
    let snap = d.path().join("dr.db");
    let mut a = node_args(&lab, 0);
    a.extend(["snapshot", "save", "--out", snap.to_str().unwrap()].map(String::from));
    assert_eq!(hostfix(&a.iter().map(String::as_str).collect::<Vec<_>>()).code, 0);
    for i in [1, 2] {
        lab.stop_member(i).await.unwrap();
    }
    let root0 = lab.node(0).host_root.clone();
    let archive0 = root0.join("var/lib/etcd-hostfix/archive");
    let dr = |extra: &[&str]| {
        let mut a = node_args(&lab, 0);
        a.extend(extra.iter().map(|s| s.to_string()));
        hostfix(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    {
        let _m = Mount::tmpfs(&archive0, "256k");
        let before = config_snapshot(&root0);
        let o = dr(&["rebuild", "--yes"]);
        assert_eq!(o.code, 3, "{}
{}", o.stdout, o.stderr);
        assert!(o.stderr.contains("not enough space for the copy of") && o.stderr.contains(&archive0.display().to_string()), "{}", o.stderr);
        // restore moves the data aside by rename: beside itself when the archive dir is on
        // another filesystem, as the plan says.
        let o = dr(&["restore", "--dry-run", "--snapshot", snap.to_str().unwrap()]);
        assert_eq!(o.code, 0, "{}
{}", o.stdout, o.stderr);
        assert!(o.stdout.contains("etcd-hostfix-archive") && o.stdout.contains("different filesystems"), "{}", o.stdout);
        assert_eq!(before, config_snapshot(&root0), "a refusal changed files");
        assert!(lab.node(0).data_dir().join("member").exists());
    }
    for i in [1, 2] {
        lab.start_member(i).await.unwrap();
    }
    healed(&lab).await;
    lab.down().await.unwrap();
}

/// 5. Client certificates out of date, or from another CA, and a CA that did not sign the
///    server: one error names the file (and the dates), and nothing is changed.
async fn bad_certs(v: EtcdVersion, rt: LabRuntime) {
    use time::{Duration as D, OffsetDateTime};
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, rt).await;
    write_keys(&lab, 0);
    break_member(&lab, T).await;
    let root = lab.node(T).host_root.clone();
    // The lab CA: kubeadm keeps its key beside it; for RKE nodes the lab keeps it in its dir.
    let ca_crt = lab.client_tls_files(T).0;
    let ca_key = match rt {
        LabRuntime::StaticPod => root.join("etc/kubernetes/pki/etcd/ca.key"),
        LabRuntime::Docker => d.path().join("ca.key"),
    };
    let now = OffsetDateTime::now_utc();
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let write = |name: &str, p: &hostfix_lab::certs::Pair| {
        let (c, k) = (certs.join(format!("{name}.crt")), certs.join(format!("{name}.key")));
        std::fs::write(&c, &p.cert_pem).unwrap();
        std::fs::write(&k, &p.key_pem).unwrap();
        (c.display().to_string(), k.display().to_string())
    };
    let from_lab_ca = |a, b| hostfix_lab::certs::issue_client_from(&ca_crt, &ca_key, "healthcheck-client", a, b).unwrap();
    let expired = write("expired", &from_lab_ca(now - D::days(30), now - D::days(1)));
    let early = write("early", &from_lab_ca(now + D::days(1), now + D::days(30)));
    let other = hostfix_lab::certs::Ca::new("some-other-ca").unwrap();
    let foreign = write("foreign", &other.issue("healthcheck-client", &[], false, true).unwrap());
    let other_ca = certs.join("other-ca.crt");
    std::fs::write(&other_ca, other.cert_pem()).unwrap();

    let before = config_snapshot(&root);
    let members = lab.etcdctl(0, &["member", "list"]).unwrap();
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        ("expired", vec!["--cert".into(), expired.0.clone(), "--key".into(), expired.1.clone()], vec![&expired.0, "has expired", "valid from"]),
        ("not yet valid", vec!["--cert".into(), early.0.clone(), "--key".into(), early.1.clone()], vec![&early.0, "is not valid yet", "valid from"]),
        ("another CA's client cert", vec!["--cert".into(), foreign.0.clone(), "--key".into(), foreign.1.clone()], vec![&foreign.0, "rejected the client certificate"]),
    ];
    let other_ca_s = other_ca.display().to_string();
    let mut cases = cases;
    cases.push(("a CA that did not sign the server", vec!["--cacert".into(), other_ca_s.clone()], vec![&other_ca_s, "not signed by CA"]));
    for (what, flags, needles) in &cases {
        for cmd in [&["status"][..], &["rejoin", "--yes"][..]] {
            let mut a = node_args(&lab, T);
            a.extend(flags.iter().cloned());
            a.extend(cmd.iter().map(|s| s.to_string()));
            let o = hostfix(&a.iter().map(String::as_str).collect::<Vec<_>>());
            let said = format!("{}\n{}", o.stdout, o.stderr);
            assert_ne!(o.code, 0, "{what} {cmd:?}: {said}");
            for n in needles {
                assert!(said.contains(n), "{what} {cmd:?}: says {n:?}:\n{said}");
            }
        }
    }
    assert_eq!(before, config_snapshot(&root), "a certificate error changed files");
    assert_eq!(members, lab.etcdctl(0, &["member", "list"]).unwrap());
    let o = rejoin(&lab, T, &["--yes"], &[]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    healed(&lab).await;
    lab.down().await.unwrap();
}


// The partition needs a static-pod master: its processes, and the etcd its kubelet starts
// later, stay in the cgroup. An RKE recreate starts a new container in Docker's own cgroup,
// outside the cut.
both_versions!(partition_at_membership_steps);

/// `matrix!(f, …)`: each `async fn f(EtcdVersion, LabRuntime)` on static pods with both etcd
/// versions, and on RKE containers with 3.5.
macro_rules! matrix {
    ($($f:ident),*) => { $( mod $f { use super::*;
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn static_pod_3_4() { super::$f(EtcdVersion::V3_4, LabRuntime::StaticPod).await }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn static_pod_3_6() { super::$f(EtcdVersion::V3_6, LabRuntime::StaticPod).await }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn docker_3_6() { super::$f(EtcdVersion::V3_6, LabRuntime::Docker).await }
    } )* };
}

matrix!(leader_lost_at_membership_steps, slow_peer, full_disk, bad_certs);
