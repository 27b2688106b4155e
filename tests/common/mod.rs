//! Helpers shared by the integration tests: the real binary, unique loopback subnets, and
//! byte-level snapshots of a host root to prove that a command changed nothing.

#![allow(dead_code)]

pub mod conformance;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

use hostfix_lab::{EtcdVersion, Lab, LabRuntime, LabSpec};

/// `both_versions!(f, g)`: for each `async fn f(EtcdVersion)`, a test on etcd 3.6 (what
/// kubeadm installs today) and one on 3.4.23, the legacy floor with its other log format
/// (`etcd_3_6::f`, `etcd_3_4::f`). 3.5 and 3.7 have their smoke in tests/versions.rs.
/// Needs `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! both_versions {
    ($($f:ident),*) => {
        mod etcd_3_4 { use super::*; $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $f() { super::$f(EtcdVersion::V3_4).await }
        )* }
        mod etcd_3_6 { use super::*; $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $f() { super::$f(EtcdVersion::V3_6).await }
        )* }
    };
}

pub const BIN: &str = env!("CARGO_BIN_EXE_etcd-hostfix");

/// A loopback /24 no other test (in this or another test binary) is using:
/// 127.<100 + pid % 100>.<counter>.0/24.
pub fn subnet() -> [u8; 2] {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    [100 + (std::process::id() % 100) as u8, NEXT.fetch_add(1, Ordering::SeqCst)]
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

pub fn hostfix(args: &[&str]) -> Out {
    hostfix_env(args, &[])
}

/// Run the binary with extra environment and no stdin (so it never sees a terminal).
pub fn hostfix_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    run_out(Command::new(BIN).args(args).envs(env.iter().copied()))
}

/// Run the binary on the cut-off side of a partition: it can reach that master and no other.
pub fn hostfix_in(p: &hostfix_lab::fault::Partition, args: &[&str]) -> Out {
    let mut c = Command::new(BIN);
    c.args(args);
    p.enter(&mut c);
    run_out(&mut c)
}

/// Run the binary on a pseudo-terminal (util-linux `script`), as an operator types it. The
/// terminal merges stdout and stderr: both are in `stdout`.
pub fn hostfix_pty(args: &[&str]) -> Out {
    let quoted: Vec<String> = std::iter::once(BIN).chain(args.iter().copied()).map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    run_out(Command::new("script").args(["-qec", &quoted.join(" "), "/dev/null"]))
}

pub fn run_out(c: &mut Command) -> Out {
    let o = c.stdin(std::process::Stdio::null()).output().expect("run etcd-hostfix");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The global options that point the CLI at lab node `i`.
pub fn node_args(lab: &Lab, i: usize) -> Vec<String> {
    let n = lab.node(i);
    match &n.container {
        // The container's bind sources are real paths; the host root holds the state dir.
        Some(c) => vec![
            "--runtime".into(),
            "docker".into(),
            "--container".into(),
            c.clone(),
            "--host-root".into(),
            n.host_root.display().to_string(),
        ],
        None => vec!["--runtime".into(), "static-pod".into(), "--host-root".into(), n.host_root.display().to_string()],
    }
}

pub fn status(lab: &Lab, i: usize, extra: &[&str]) -> Out {
    let mut args = node_args(lab, i);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("status".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    hostfix(&refs)
}

pub async fn lab(dir: &Path, members: usize, v: EtcdVersion, rt: LabRuntime) -> Lab {
    let mut spec = LabSpec::new(dir, members, v, rt, subnet());
    spec.backoff_base_ms = 300;
    let lab = Lab::up(spec, Path::new(BIN), false).await.expect("lab up");
    let all: Vec<usize> = (0..members).collect();
    lab.wait_healthy(&all, members, std::time::Duration::from_secs(60)).await.expect("lab healthy");
    lab
}

/// Every file under `dir` with its bytes, to prove a command changed nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                walk(&p, out);
            } else if ft.is_file() {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

pub async fn until<F: FnMut() -> bool>(what: &str, secs: u64, mut f: F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// What a failed repair on node `i` looked like: the member list (via another node) and the
/// member's newest log lines, newest file first. Static-pod nodes only have log files.
pub fn explain(lab: &Lab, i: usize) -> String {
    let via = if i == 0 { 1 } else { 0 };
    let logs = &lab.node(i).host_root;
    let mut files: Vec<PathBuf> = hostfix_lab::benchutil::etcd_log_files(lab, i);
    files.sort_by_key(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok());
    let tail: Vec<String> = files
        .iter()
        .rev()
        .take(2)
        .map(|f| {
            let t = std::fs::read_to_string(f).unwrap_or_default();
            format!("== {}\n{}", f.display(), t.lines().rev().take(15).collect::<Vec<_>>().join("\n"))
        })
        .collect();
    // Why each earlier run of the member ended: its fatal and panic lines, from every log
    // file (a crashloop's cause is in the runs before the newest, whose tails above are only
    // its shutdown). zap's "fatal"/"panic" levels, capnslog's " C | " and " P | ", Go's panic.
    let deaths: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let t = std::fs::read_to_string(f).unwrap_or_default();
            let name = f.strip_prefix(logs).unwrap_or(f).display().to_string();
            t.lines()
                .filter(|l| ["\"level\":\"fatal\"", "\"level\":\"panic\"", " C | ", " P | ", "F panic: "].iter().any(|p| l.contains(p)))
                .take(3)
                .map(|l| format!("{name}: {}", l.chars().take(400).collect::<String>()))
                .collect::<Vec<_>>()
        })
        .collect();
    let deaths: Vec<String> = deaths.into_iter().rev().take(30).collect();
    // The lab kubelet's own log says which pods it started and stopped, and when.
    let kubelet = std::fs::read_to_string(lab.node(i).host_root.join("kubelet.log")).unwrap_or_default();
    let kubelet: Vec<&str> = kubelet.lines().rev().take(25).collect();
    format!(
        "member list:\n{}\n{} logs (newest first):\n{}\n{} fatal and panic lines, every run (newest first):\n{}\nkubelet (newest first):\n{}",
        lab.etcdctl(via, &["member", "list"]).unwrap_or_else(|e| e.to_string()),
        lab.node(i).name,
        tail.join("\n"),
        lab.node(i).name,
        deaths.join("\n"),
        kubelet.join("\n")
    )
}

/// How many keys `write_keys` writes under `/k/`.
pub const KEYS: usize = 50;

pub fn write_keys(lab: &Lab, via: usize) {
    for k in 0..KEYS {
        lab.etcdctl(via, &["put", &format!("/k/{k:03}"), &format!("v{k}")]).unwrap();
    }
}

/// Every key, read from node `i`'s own copy of the data (serializable read).
pub fn assert_all_keys(lab: &Lab, i: usize) {
    let out = lab.etcdctl(i, &["get", "--prefix", "/k/", "--keys-only", "--consistency=s"]).unwrap();
    let n = out.lines().filter(|l| l.starts_with("/k/")).count();
    assert_eq!(n, KEYS, "node {} serves {n} of {KEYS} keys", lab.node(i).name);
}

pub fn rejoin(lab: &Lab, i: usize, extra: &[&str], env: &[(&str, &str)]) -> Out {
    let mut args = node_args(lab, i);
    args.push("rejoin".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    hostfix_env(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
}

/// The real `docker` CLI, as an operator would type it.
pub fn docker(args: &[&str]) -> Out {
    let o = Command::new("docker").args(args).output().expect("run docker");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert_eq!(o.code, 0, "docker {args:?}: {}", o.stderr);
    o.stdout
}

/// The containers a recreate renamed aside for `name` that are still there.
pub fn asides_left(name: &str) -> String {
    docker_ok(&["ps", "-a", "--filter", &format!("name={name}-hostfix-aside"), "--format", "{{.Names}}"]).trim().to_string()
}

/// An `etcd-hostfix daemon` process for lab master `i`, killed (by its PID) when dropped.
pub struct DaemonProc {
    pub child: std::process::Child,
    pub log: PathBuf,
    pub metrics: String,
    pub state_dir: PathBuf,
}

/// The config file every test daemon starts from: quick probes, no snapshots, metrics on
/// the master's own loopback address.
pub fn daemon_config(lab: &Lab, i: usize, extra: &str) -> String {
    format!("probe_interval: 500ms\nsnapshot_interval: 0\nmetrics_listen: {}:9379\n{extra}", lab.node(i).ip)
}

impl DaemonProc {
    pub fn start(lab: &Lab, i: usize, config: &str, env: &[(&str, &str)]) -> DaemonProc {
        Self::start_in(lab, i, config, env, None)
    }

    /// Started under the mounts `systemd/etcd-hostfix.service` gives it: the host read-only
    /// (`ProtectSystem=strict`; recursively bound, so a dedicated etcd disk mounted below it
    /// stays visible), and each `ReadWritePaths=` entry and the `StateDirectory=`
    /// a writable bind mount of its own, so that a rename between two of them is EXDEV as
    /// it is under systemd. In a private mount namespace (`unshare -m`): nothing outside
    /// it sees these mounts, and they go with the daemon. Mounts made before it starts (a
    /// dedicated etcd disk) are inherited.
    pub fn start_sandboxed(lab: &Lab, i: usize, config: &str) -> DaemonProc {
        let root = lab.node(i).host_root.clone();
        let rw = ["etc/kubernetes/manifests", "var/lib/etcd", "var/lib/etcd-hostfix"];
        let mut script = format!("set -e; mount --rbind {r} {r}; mount -o remount,bind,ro {r}; ", r = shlex::try_quote(root.to_str().unwrap()).unwrap());
        for p in rw {
            let p = root.join(p);
            std::fs::create_dir_all(&p).unwrap();
            // An existing mount (a tmpfs etcd disk) is bound as it is, writable.
            script.push_str(&format!("mount --bind {p} {p}; mount -o remount,bind,rw {p}; ", p = shlex::try_quote(p.to_str().unwrap()).unwrap()));
        }
        script.push_str("exec \"$@\"");
        Self::start_with(lab, i, config, &[], None, Some(&["unshare", "--mount", "--propagation", "private", "sh", "-c", &script, "sh"]))
    }

    /// Started inside a partition's group (before its rules), so that it is cut off with
    /// its master.
    pub fn start_in(lab: &Lab, i: usize, config: &str, env: &[(&str, &str)], cut: Option<&hostfix_lab::fault::Partition>) -> DaemonProc {
        Self::start_with(lab, i, config, env, cut, None)
    }

    fn start_with(
        lab: &Lab,
        i: usize,
        config: &str,
        env: &[(&str, &str)],
        cut: Option<&hostfix_lab::fault::Partition>,
        wrapper: Option<&[&str]>,
    ) -> DaemonProc {
        let n = lab.node(i);
        let cfg = n.host_root.join("etc/etcd-hostfix/config.yaml");
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(&cfg, config).unwrap();
        let log = n.host_root.join(format!("daemon-{}.log", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()));
        let out = std::fs::File::create(&log).unwrap();
        let mut args = node_args(lab, i);
        args.push("daemon".into());
        let mut cmd = match wrapper {
            Some(w) => {
                let mut c = Command::new(w[0]);
                c.args(&w[1..]).arg(BIN);
                c
            }
            // On a real-kubelet master: in its network namespace, as the unit runs there.
            None => lab.command(i, BIN),
        };
        cmd.args(&args)
            .envs(env.iter().copied())
            .env("RUST_LOG", std::env::var("HOSTFIX_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(p) = cut {
            p.enter(&mut cmd);
        }
        let child = cmd.spawn().expect("start the daemon");
        DaemonProc {
            child,
            log,
            metrics: format!("{}:9379", n.ip),
            state_dir: n.host_root.join("var/lib/etcd-hostfix"),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's own status file, as `status` reads it.
    pub fn status(&self) -> serde_json::Value {
        std::fs::read_to_string(self.state_dir.join("daemon/status.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// GET /metrics over plain HTTP/1.1.
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.metrics) else { return String::new() };
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok();
        let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.metrics);
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default()
    }

    /// The incident records written so far.
    pub fn incidents(&self) -> Vec<serde_json::Value> {
        hostfix_daemon::files::incident_files(&self.state_dir).iter().filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()).collect()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for it to exit.
    pub fn stop(&mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Everything under `dir` (and `dir` itself) is private to its owner: no group or other
/// bits on any directory or file. Symlinks are not followed. An archived data dir
/// (`archive/<run>/member…`) is etcd's own, moved as etcd wrote it (3.6 writes its `.snap`
/// files 0644): the dir itself must be private, which makes its content unreachable for
/// other accounts, and its files keep the modes etcd gave them.
pub fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::symlink_metadata(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mode = m.permissions().mode() & 0o7777;
    assert_eq!(mode & 0o077, 0, "{} is {mode:04o}: readable by other local accounts", dir.display());
    let archived_data = dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("member"))
        && dir.parent().and_then(|run| run.parent()).and_then(|a| a.file_name()).is_some_and(|n| n == "archive");
    if m.is_dir() && !archived_data {
        for e in std::fs::read_dir(dir).unwrap() {
            assert_private(&e.unwrap().path());
        }
    }
}

/// The base64 lines of every private key the lab wrote for node `i` (kubeadm's `*.key`,
/// RKE's `*-key.pem`).
pub fn key_lines(lab: &Lab, i: usize) -> Vec<String> {
    let mut out = vec![];
    let h = &lab.node(i).host_root;
    for d in [h.join("etc/kubernetes/pki/etcd"), h.join("etc/kubernetes/ssl")] {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".key") || n.ends_with("-key.pem") {
                let t = std::fs::read_to_string(e.path()).unwrap();
                out.extend(t.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_string));
            }
        }
    }
    assert!(!out.is_empty(), "no private key found for {}", lab.node(i).name);
    out
}

/// No key material of any node, and none of `values`, in what the tool printed.
pub fn assert_no_secrets(lab: &Lab, said: &str, values: &[&str]) {
    for i in 0..lab.nodes().len() {
        for l in key_lines(lab, i) {
            assert!(!said.contains(&l), "key material of {} in the output: {l}", lab.node(i).name);
        }
    }
    for v in values {
        assert!(!said.contains(v), "a value was printed: {v}");
    }
}
