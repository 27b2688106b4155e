//! The daemon under a real systemd, as PID 1 of booted Debian bookworm machines
//! (`systemd-nspawn --boot`, the root cached by `scripts/dev` in HOSTFIX_MACHINE_ROOT;
//! [`hostfix_lab::machine`]). The package is the one `scripts/package` builds, installed
//! as the README says (`apt install ./etcd-hostfix_*.deb`, `systemctl enable --now
//! etcd-hostfix`), so `systemd/etcd-hostfix.service` runs as shipped, with its sandbox
//! (ProtectSystem=strict, ReadWritePaths=, the StateDirectory=, the syscall filter).
//!
//! - `the_unit_runs_under_systemd_as_shipped`: a machine with no member. The unit starts and
//!   tells systemd it is ready, `systemctl status` shows its STATUS= line, journald gets its
//!   structured fields, `systemd-analyze security` scores it, the README's operator commands
//!   work, and a daemon stopped with SIGSTOP is killed and restarted by the watchdog.
//! - `machine_masters_heal_under_the_unit`: a 3-member kubeadm lab whose m2 and m3 are
//!   machines, each running the lab kubelet as `kubelet.service` and etcd under it; m3's
//!   `/var/lib/etcd` is a filesystem of its own. The unit heals a wipe and a bbolt
//!   corruption on each, converges after SIGKILL in the middle of a repair and after
//!   `systemctl stop` in the middle of another, and its journal shows no sandbox refusal.
//!
//! Which .deb: `HOSTFIX_PACKAGE_STATUS` names the file in which `.ci/run`'s background
//! `scripts/package` says `ok` or `failed`; the tests wait for it (the package is built
//! beside the tests). Without it they run `scripts/package` themselves, once.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use hostfix_lab::breaks::Break;
use hostfix_lab::machine::{self, Machine};
use hostfix_lab::{EtcdVersion, Lab, LabRuntime, LabSpec};

/// The two tests boot machines and run the same package; one at a time keeps each one's
/// timing what it would be alone (every wait below is bounded, none is a fixed sleep).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn tree() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The .deb `scripts/package` built (see the module doc for where it comes from).
fn deb() -> PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = tree().join("target/package");
        match std::env::var_os("HOSTFIX_PACKAGE_STATUS") {
            Some(status) => {
                // Bounded by CI's own limit: the package build is niced under the tests.
                let deadline = Instant::now() + Duration::from_secs(50 * 60);
                let said = loop {
                    if let Ok(s) = std::fs::read_to_string(&status) {
                        break s;
                    }
                    assert!(Instant::now() < deadline, "no word from scripts/package in {status:?} after 50 min");
                    std::thread::sleep(Duration::from_secs(2));
                };
                assert_eq!(said.trim(), "ok", "scripts/package failed (target/ci-package.log); the machine tests install its .deb");
            }
            None => {
                let st = std::process::Command::new(tree().join("scripts/package"))
                    .env("CARGO_TARGET_DIR", tree().join("target/pkg"))
                    .status()
                    .expect("run scripts/package");
                assert!(st.success(), "scripts/package: {st}");
            }
        }
        let debs: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap_or_else(|e| panic!("{}: {e}", out.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        assert_eq!(debs.len(), 1, "one .deb in {}: {debs:?}", out.display());
        debs[0].clone()
    })
    .clone()
}

fn ok(m: &Machine, argv: &[&str]) -> String {
    m.ok(argv).unwrap_or_else(|e| panic!("{e}"))
}

/// Wait, bounded, until `f` holds; on a timeout, the unit's newest journal lines.
fn until(m: &Machine, what: &str, secs: u64, mut f: impl FnMut(&Machine) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f(m) {
        if Instant::now() > deadline {
            let log = m.run(&["journalctl", "-u", "etcd-hostfix", "--no-pager", "-n", "40"]).0;
            panic!("timed out after {secs}s waiting for {what} on {}\n{log}", m.name);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Install the package as the README says, inside the machine: the .deb copied in, then
/// `apt install` (with `-y`: no one is at a terminal). It enables the unit and starts
/// nothing. `config` lines replace the example config's lines of the same keys (an
/// operator's edit), before `systemctl enable --now`.
fn install(m: &Machine, config: &[(&str, &str)]) {
    let deb = deb();
    let name = deb.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::copy(&deb, m.root.join("root").join(&name)).unwrap();
    ok(m, &["sh", "-c", "cd /root && DEBIAN_FRONTEND=noninteractive apt install -y ./etcd-hostfix_*.deb"]);
    assert_eq!(m.run(&["systemctl", "is-enabled", "etcd-hostfix"]).0.trim(), "enabled", "the package enables the unit");
    assert_eq!(m.run(&["systemctl", "is-active", "etcd-hostfix"]).0.trim(), "inactive", "and starts nothing");
    for (k, v) in config {
        ok(m, &["sed", "-i", &format!("s|^{k}: .*|{k}: {v}|"), "/etc/etcd-hostfix/config.yaml"]);
        assert!(ok(m, &["cat", "/etc/etcd-hostfix/config.yaml"]).contains(&format!("\n{k}: {v}\n")), "{k} set");
    }
    ok(m, &["systemctl", "enable", "--now", "etcd-hostfix"]);
    // Type=notify: `enable --now` returns once the daemon said READY=1.
    assert_eq!(m.run(&["systemctl", "is-active", "etcd-hostfix"]).0.trim(), "active");
}

fn journal_json(m: &Machine) -> Vec<serde_json::Value> {
    m.run(&["journalctl", "-u", "etcd-hostfix", "-o", "json", "--no-pager"])
        .0
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Nothing the sandbox forbids was tried: no EACCES, EROFS, EPERM or EXDEV in the unit's
/// journal.
fn assert_no_sandbox_refusal(m: &Machine) {
    let log = ok(m, &["journalctl", "-u", "etcd-hostfix", "--no-pager"]);
    for bad in ["Read-only file system", "Permission denied", "Operation not permitted", "cross-device", "os error 13", "os error 30", "os error 1)", "os error 18"] {
        assert!(!log.contains(bad), "{bad} in the journal of {}:\n{log}", m.name);
    }
}

#[test]
fn the_unit_runs_under_systemd_as_shipped() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    machine::copy_root(&root).unwrap();
    let m = Machine::boot(&root, "hostfix-unit", &[]).unwrap();
    install(&m, &[]);

    until(&m, "a STATUS= line", 30, |m| !m.show("etcd-hostfix", "StatusText").is_empty());
    let status = ok(&m, &["systemctl", "status", "--no-pager", "etcd-hostfix"]);
    assert!(status.contains("Status: \""), "{status}");

    // Structured fields in the journal, named as the README says.
    until(&m, "a decision in the journal", 30, |m| journal_json(m).iter().any(|e| e.get("DECISION").is_some()));
    let entry = journal_json(&m).into_iter().find(|e| e.get("DECISION").is_some()).unwrap();
    for f in ["MEMBER", "CLASS", "DECISION"] {
        assert!(entry.get(f).is_some(), "{f} missing: {entry:#}");
    }
    let filtered = ok(&m, &["journalctl", "-u", "etcd-hostfix", "--no-pager", "DECISION=nothing"]);
    assert!(filtered.contains("no action"), "journalctl's own field filter works: {filtered}");
    assert_no_sandbox_refusal(&m);

    // The README's operator commands, as written, on the machine. (`status` needs a member
    // to report on; this machine has none: the other test runs it.)
    ok(&m, &["etcd-hostfix", "pause", "--reason", "maintenance"]);
    let scrape = |m: &Machine| m.run(&["curl", "-s", "127.0.0.1:9379/metrics"]).0;
    until(&m, "the daemon's metrics to say paused", 30, |m| scrape(m).lines().any(|l| l.starts_with("etcd_hostfix_paused") && l.ends_with(" 1")));
    ok(&m, &["etcd-hostfix", "resume"]);
    until(&m, "the daemon's metrics to say resumed", 30, |m| scrape(m).lines().any(|l| l.starts_with("etcd_hostfix_paused") && l.ends_with(" 0")));

    // The exposure score systemd gives the unit (recorded in docs/packaging.md).
    let sec = ok(&m, &["systemd-analyze", "security", "--no-pager", "etcd-hostfix"]);
    let score = sec.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default().to_string();
    eprintln!("{score}");
    assert!(score.contains("OK") || score.contains("SAFE"), "{score}");

    // The watchdog: a daemon that stops answering (SIGSTOP) is killed and restarted by
    // systemd within WatchdogSec (30 s), and comes back ready.
    let pid = m.show("etcd-hostfix", "MainPID");
    ok(&m, &["systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", "etcd-hostfix"]);
    until(&m, "systemd to restart the stopped daemon", 90, |m| {
        let now = m.show("etcd-hostfix", "MainPID");
        now != pid && now != "0" && m.run(&["systemctl", "is-active", "etcd-hostfix"]).0.trim() == "active"
    });
    assert!(m.show("etcd-hostfix", "NRestarts").parse::<u32>().unwrap() >= 1);
    let log = ok(&m, &["journalctl", "-u", "etcd-hostfix", "--no-pager"]);
    assert!(log.contains("Watchdog timeout"), "{log}");
}

/// The unit's incident records, read from the machine's state dir (the unit's
/// StateDirectory=, /var/lib/etcd-hostfix), oldest first.
fn incidents(m: &Machine) -> Vec<serde_json::Value> {
    hostfix_daemon::files::incident_files(&m.root.join("var/lib/etcd-hostfix"))
        .iter()
        .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
        .collect()
}

/// Wait, bounded, for the repair after `before` records to end; its record.
fn wait_repair_end(m: &Machine, before: usize, secs: u64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    until(m, "a repair to end", secs, |m| {
        let inc = incidents(m);
        match inc.get(before) {
            Some(r) if r["outcome"]["result"].is_string() => {
                last = r.clone();
                true
            }
            _ => false,
        }
    });
    last
}

/// After a heal: the whole cluster healthy, every key on the healed member.
async fn healed(lab: &Lab, t: usize, rec: &serde_json::Value) {
    let m = lab.machine(t).unwrap();
    assert_eq!(rec["outcome"]["result"], "healed", "{rec:#}\n{}", m.run(&["journalctl", "-u", "etcd-hostfix", "--no-pager", "-n", "60"]).0);
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(120)).await.unwrap_or_else(|e| panic!("{e}\n{}", explain(lab, t)));
    assert_all_keys(lab, t);
}

/// Break member `t` and let its unit heal it, with nothing typed.
async fn break_and_heal(lab: &Lab, t: usize, b: Break) -> serde_json::Value {
    let m = lab.machine(t).unwrap();
    let before = incidents(m).len();
    b.apply(lab, t).await.unwrap();
    let rec = wait_repair_end(m, before, 240);
    assert_eq!(rec["observed"]["class"], b.class(), "{rec:#}");
    healed(lab, t, &rec).await;
    rec
}

/// Where the test hook's flag lives inside a machine (readable under the unit's sandbox).
const PAUSE_FLAG: &str = "/etc/etcd-hostfix-test/pause-before-start";

/// The one thing the tests add to the unit as shipped: a drop-in with the test hook
/// `HOSTFIX_PAUSE_AT=start:<flag>` (SIGSTOP before the `start` step while the flag file
/// exists). A repair on a small lab takes a few hundred milliseconds, too fast to land a
/// kill "in the middle" by timing; the hook makes the middle a place.
fn add_pause_hook(m: &Machine) {
    let dir = m.root.join("etc/systemd/system/etcd-hostfix.service.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("test-hook.conf"), format!("[Service]\nEnvironment=HOSTFIX_PAUSE_AT=start:{PAUSE_FLAG}\n")).unwrap();
    ok(m, &["systemctl", "daemon-reload"]);
}

/// Break member `t`, and once its repair stopped itself before the `start` step (the
/// learner added, its new data dir configured, the manifest still parked), do `act` to the
/// unit. The flag is gone before `act`, so whatever runs next goes through.
async fn break_then_mid_repair(lab: &Lab, t: usize, b: Break, act: impl FnOnce(&Machine)) -> usize {
    let m = lab.machine(t).unwrap();
    let before = incidents(m).len();
    let flag = m.root.join(PAUSE_FLAG.trim_start_matches('/'));
    std::fs::create_dir_all(flag.parent().unwrap()).unwrap();
    std::fs::write(&flag, b"").unwrap();
    let said = |m: &Machine| m.run(&["journalctl", "-u", "etcd-hostfix", "-o", "cat", "--no-pager"]).0.matches("HOSTFIX_PAUSE_AT=start").count();
    let paused_before = said(m);
    b.apply(lab, t).await.unwrap();
    until(m, "the repair to stop itself before its start step", 240, |m| said(m) > paused_before);
    std::fs::remove_file(&flag).unwrap();
    // The record to follow is the one the paused repair has open, which need not be the
    // first since the break: an earlier attempt may have ended on its own (then waiting on
    // that one returns at once, before systemd has restarted anything; a suspect for run L's
    // failure, docs/test-runs.md). The paused daemon wrote its record before its first step.
    let open = incidents(m).iter().rposition(|r| !r["outcome"]["result"].is_string()).unwrap_or(before);
    act(m);
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard only keeps the other machine test (a plain thread) out; nothing else awaits it.
#[allow(clippy::await_holding_lock)]
async fn machine_masters_heal_under_the_unit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new(d.path(), 3, EtcdVersion::V3_6, LabRuntime::StaticPod, subnet());
    spec.backoff_base_ms = 300;
    // m2 and m3 are machines; m3's /var/lib/etcd is a filesystem of its own. m1 is a
    // process master (no daemon): a healthy peer.
    spec.machines = vec![1, 2];
    spec.etcd_disks = vec![2];
    let (plain, own_disk) = (1, 2);
    let mut lab = Lab::up(spec, Path::new(BIN), false).await.expect("lab up");
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(120)).await.unwrap_or_else(|e| panic!("{e}\n{}", explain(&lab, 2)));
    write_keys(&lab, 0);
    for t in [plain, own_disk] {
        let m = lab.machine(t).unwrap();
        // etcd runs under the machine's kubelet.service, not under the lab's process.
        assert_eq!(m.run(&["systemctl", "is-active", "kubelet"]).0.trim(), "active");
        let ip = lab.node(t).ip.to_string();
        // The budget: this test repairs each master four times within the hour.
        install(m, &[("metrics_listen", &format!("{ip}:9379")), ("max_repairs", "10")]);
        add_pause_hook(m);
        ok(m, &["systemctl", "restart", "etcd-hostfix"]);
    }
    let disk = lab.machine(own_disk).unwrap();
    let fs = ok(disk, &["findmnt", "-n", "-o", "FSTYPE", "/var/lib/etcd"]);
    assert_eq!(fs.trim(), "tmpfs", "m3's /var/lib/etcd is its own filesystem");

    // A wipe (seed 000) and a bbolt corruption (seed 004), on each master.
    for t in [own_disk, plain] {
        for b in [Break::AlreadyBootstrapped, Break::DbCorrupt] {
            break_and_heal(&lab, t, b).await;
        }
    }
    // On the etcd disk, the archives stayed on it, beside the data: never copied off.
    let beside = lab.node(own_disk).data_dir().join(hostfix_adapters::relocate::BESIDE);
    let runs = std::fs::read_dir(&beside).map(|r| r.count()).unwrap_or(0);
    assert_eq!(runs, 2, "both of m3's archives are on its etcd disk, in {}", beside.display());

    // SIGKILL in the middle of a repair: systemd restarts the daemon (Restart=always), the
    // journal resumes, the repair converges, in the same incident record.
    let t = plain;
    let restarts = lab.machine(t).unwrap().show("etcd-hostfix", "NRestarts").parse::<u32>().unwrap();
    let before = break_then_mid_repair(&lab, t, Break::AlreadyBootstrapped, |m| {
        ok(m, &["systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", "etcd-hostfix"]);
    })
    .await;
    let m = lab.machine(t).unwrap();
    let rec = wait_repair_end(m, before, 300);
    // Ended by the restarted daemon: the killed one was stopped before its start step.
    // Run L (docs/test-runs.md) failed here once, cause not yet known: say everything.
    assert!(
        m.show("etcd-hostfix", "NRestarts").parse::<u32>().unwrap() > restarts,
        "systemd restarted it (NRestarts was {restarts}; now {}):\nrecord: {rec:#}\nall records: {:#?}\n{}",
        m.run(&["systemctl", "show", "etcd-hostfix", "-p", "NRestarts,MainPID,ExecMainStartTimestamp,Result"]).0,
        incidents(m).iter().map(|r| (r["observed"]["class"].clone(), r["outcome"]["result"].clone(), r["resumed"].clone())).collect::<Vec<_>>(),
        m.run(&["journalctl", "-u", "etcd-hostfix", "-o", "short-precise", "--no-pager", "-n", "80"]).0
    );
    assert!(rec["resumed"].as_u64().unwrap_or(0) >= 1, "the journal was resumed, in the same record: {rec:#}");
    healed(&lab, t, &rec).await;

    // `systemctl stop` in the middle of a repair: the daemon finishes it within
    // TimeoutStopSec (SIGTERM never cuts a repair short; a kill would leave it resumable,
    // as above), exits cleanly, and started again finds the member healthy.
    let t = own_disk;
    let before = break_then_mid_repair(&lab, t, Break::AlreadyBootstrapped, |m| {
        let (out, err, code) = m.run_for(Duration::from_secs(400), &["systemctl", "stop", "etcd-hostfix"]);
        assert_eq!(code, 0, "systemctl stop: {out}{err}");
    })
    .await;
    let m = lab.machine(t).unwrap();
    assert_eq!(m.show("etcd-hostfix", "Result"), "success", "stopped within TimeoutStopSec, not killed");
    // systemd sends SIGCONT with the SIGTERM, and SIGTERM lets a running repair finish.
    let finished = incidents(m).get(before).is_some_and(|r| r["outcome"]["result"] == "healed");
    assert!(finished, "the repair finished before the daemon exited: {:#?}", incidents(m).get(before));
    ok(m, &["systemctl", "start", "etcd-hostfix"]);
    let rec = wait_repair_end(m, before, 300);
    healed(&lab, t, &rec).await;

    // What the journal says, with the fields the README names.
    for t in [plain, own_disk] {
        let m = lab.machine(t).unwrap();
        let entries = journal_json(m);
        for f in ["MEMBER", "CLASS", "DECISION", "PLAYBOOK", "STEP"] {
            assert!(entries.iter().any(|e| e.get(f).is_some()), "no journal entry of {} has {f}", m.name);
        }
        let heals = ok(m, &["journalctl", "-u", "etcd-hostfix", "--no-pager", "-o", "cat", "DECISION=heal"]);
        assert!(!heals.trim().is_empty(), "`journalctl -u etcd-hostfix DECISION=heal` lists the repairs");
        assert_no_sandbox_refusal(m);
        // The README's `status`, as written, on the master.
        let st = ok(m, &["etcd-hostfix", "status"]);
        assert!(st.contains("daemon"), "{st}");
        let scrape = ok(m, &["curl", "-s", &format!("{}:9379/metrics", lab.node(t).ip)]);
        // (Its counters started again with the restarts above; the member is what it reports.)
        assert!(scrape.lines().any(|l| l == "etcd_hostfix_member_healthy 1"), "{scrape}");
    }
    lab.down().await.unwrap();
}
