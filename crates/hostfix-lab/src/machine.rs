//! Test masters that are real machines: a Debian bookworm root (debootstrapped once by
//! `scripts/dev` into `.cache/machine/bookworm`, named by `HOSTFIX_MACHINE_ROOT`) booted with
//! systemd as PID 1 by `systemd-nspawn --register=no --keep-unit --boot`.
//!
//! The machine shares the host's network namespace, so each master keeps its own
//! 127.x address and the host's tests reach it as they reach any lab member. Its PID
//! namespace is its own, but the host still sees (and can stop) every process in it. Its root
//! is a plain directory on the host, so the lab writes and breaks a machine master's files
//! through host paths, as it does for a process master.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;

/// The cached bookworm root (`HOSTFIX_MACHINE_ROOT`, set by `scripts/dev`).
pub fn cached_root() -> Result<PathBuf, LabError> {
    let p = std::env::var_os("HOSTFIX_MACHINE_ROOT")
        .map(PathBuf::from)
        .ok_or_else(|| LabError::Runner("HOSTFIX_MACHINE_ROOT is not set: run through scripts/dev, which debootstraps the machine root".into()))?;
    if p.join("usr/lib/systemd/systemd").exists() {
        Ok(p)
    } else {
        Err(LabError::Runner(format!("{} holds no systemd: not a machine root (scripts/dev makes it)", p.display())))
    }
}

/// Copy the cached root to `root` (which must not exist yet): each machine boots its own
/// copy, so nothing one test does inside a machine reaches another.
pub fn copy_root(root: &Path) -> Result<(), LabError> {
    let cached = cached_root()?;
    if root.exists() {
        return Err(LabError::Runner(format!("{} exists already; a machine root is made once", root.display())));
    }
    let st = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&cached)
        .arg(root)
        .status()
        .map_err(|e| LabError::Runner(format!("spawn cp: {e}")))?;
    if !st.success() {
        return Err(LabError::Runner(format!("cp -a {} {}: {st}", cached.display(), root.display())));
    }
    Ok(())
}

/// A booted machine: the `systemd-nspawn` process we started, and its PID 1. Powered off
/// (SIGTERM to nspawn, which asks the machine's systemd to shut down) by [`Machine::poweroff`]
/// or when dropped.
pub struct Machine {
    nspawn: Child,
    pub pid1: u32,
    pub root: PathBuf,
    pub name: String,
}

impl Machine {
    /// Boot `root` (a prepared copy of the cached root). `extra` are more nspawn options
    /// (`--bind=...`). Returns once the machine's systemd says the boot is done.
    pub fn boot(root: &Path, name: &str, extra: &[String]) -> Result<Machine, LabError> {
        let log = root.with_extension("nspawn.log");
        let out = std::fs::File::create(&log).map_err(|e| LabError::io(&log, e))?;
        let nspawn = Command::new("systemd-nspawn")
            .args(["--register=no", "--keep-unit", "--boot", "--console=passive", "--machine", name])
            .args(extra)
            .arg("-D")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| LabError::io(&log, e))?)
            .stderr(out)
            .spawn()
            .map_err(|e| LabError::Runner(format!("spawn systemd-nspawn: {e}")))?;
        let mut m = Machine { nspawn, pid1: 0, root: root.to_path_buf(), name: name.to_string() };
        // Its PID 1 is nspawn's child; waited for, bounded.
        let deadline = Instant::now() + Duration::from_secs(30);
        m.pid1 = loop {
            let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", m.nspawn.id())).unwrap_or_default();
            if let Some(p) = kids.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()) {
                if std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "systemd") {
                    break p;
                }
            }
            if Instant::now() > deadline || m.nspawn.try_wait().ok().flatten().is_some() {
                return Err(LabError::Runner(format!(
                    "no systemd under systemd-nspawn {}: {}",
                    m.nspawn.id(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // Until its bus is up, systemctl cannot even ask; then `--wait` waits for the boot.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (out, err, _) = m.run(&["systemctl", "is-system-running", "--wait"]);
            if matches!(out.trim(), "running" | "degraded") {
                return Ok(m);
            }
            if Instant::now() > deadline {
                return Err(LabError::Timeout(format!("machine {name} did not boot: {out} {err}")));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The nspawn process: the lab's handle on the whole machine.
    pub fn nspawn_pid(&self) -> u32 {
        self.nspawn.id()
    }

    /// Run a command inside the machine (every namespace of its PID 1), bounded at 60 s:
    /// stdout, stderr and the exit code (-1 when killed).
    pub fn run(&self, argv: &[&str]) -> (String, String, i32) {
        self.run_for(Duration::from_secs(60), argv)
    }

    pub fn run_for(&self, limit: Duration, argv: &[&str]) -> (String, String, i32) {
        let o = Command::new("timeout")
            .arg(limit.as_secs().max(1).to_string())
            .args(["nsenter", "-t", &self.pid1.to_string(), "-a"])
            .args(argv)
            .stdin(Stdio::null())
            .output();
        match o {
            Ok(o) => (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
                o.status.code().unwrap_or(-1),
            ),
            Err(e) => (String::new(), format!("spawn nsenter: {e}"), -1),
        }
    }

    /// Like [`Machine::run`], but an exit code other than 0 is an error with the output.
    pub fn ok(&self, argv: &[&str]) -> Result<String, LabError> {
        let (out, err, code) = self.run(argv);
        if code == 0 {
            Ok(out)
        } else {
            Err(LabError::Runner(format!("{argv:?} in machine {} exited {code}: {out}\n{err}", self.name)))
        }
    }

    /// A unit's property (`systemctl show -P`).
    pub fn show(&self, unit: &str, prop: &str) -> String {
        self.run(&["systemctl", "show", "-P", prop, unit]).0.trim().to_string()
    }

    /// Power the machine off: SIGTERM to nspawn, which shuts its systemd down (every unit
    /// stopped in order); SIGKILL after `grace`.
    pub fn poweroff(&mut self, grace: Duration) {
        if self.nspawn.try_wait().ok().flatten().is_some() {
            return;
        }
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while self.nspawn.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.poweroff(Duration::from_secs(60));
    }
}

/// A systemd unit that runs the lab's stand-in kubelet inside a machine, on the machine's
/// own root (`--host-root /`): the static pods under it are the machine's, as a real
/// master's are its kubelet's. Its output goes to `/kubelet.log`, where the lab keeps every
/// master's kubelet log.
pub fn kubelet_unit(exe_in_machine: &str, node: &str, images: &[(String, String)], backoff_base_ms: u64) -> String {
    let mut exec = format!("{exe_in_machine} lab kubelet --host-root / --node {node} --backoff-base-ms {backoff_base_ms}");
    for (image, dir) in images {
        exec.push_str(&format!(" --image {image}={dir}"));
    }
    format!(
        "# Written by the etcd-hostfix lab: its stand-in kubelet, running this machine's static pods.\n\
         [Unit]\nDescription=lab kubelet (static pods from /etc/kubernetes/manifests)\n\n\
         [Service]\nExecStart={exec}\nEnvironment=RUST_LOG=info\nRestart=always\nRestartSec=1s\n\
         StandardOutput=append:/kubelet.log\nStandardError=append:/kubelet.log\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}
