//! The playbook runner, one for a person at a terminal and for the daemon at 3 a.m.
//!
//! It finds the local member ([`local`]), gathers the cluster's facts ([`probe`],
//! [`diagnose`]), and runs the core's plans step by step through the journal and the locks
//! ([`rejoin`], [`lock`]). It prints nothing: progress goes to a [`Reporter`], which the CLI
//! renders on a terminal and the daemon to journald, metrics, incident records and
//! sd_notify `STATUS=`. Its input is a plain [`Settings`] value; clap stops at the CLI.

pub mod actions;
pub mod archives;
pub mod defrag;
pub mod diagnose;
pub mod fleet;
pub mod keys;
pub mod local;
pub mod perf;
pub mod lock;
pub mod probe;
pub mod recover;
pub mod rejoin;
pub mod snapshot;
pub mod space;

use std::path::PathBuf;
use std::time::Duration;

use hostfix_adapters::HostRoot;

/// Which runtime runs the local etcd member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// A static-pod manifest if there is one, else the Docker container.
    Auto,
    StaticPod,
    Docker,
}

/// Where the local member and etcd-hostfix's own state are, and how to reach etcd.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Root of the master's filesystem; every host path resolves under it.
    pub host_root: PathBuf,
    pub runtime: RuntimeChoice,
    /// The static-pod manifest; `None` is `<host-root>/etc/kubernetes/manifests/etcd.yaml`.
    pub manifest: Option<PathBuf>,
    /// The Docker container running etcd (RKE names it `etcd`).
    pub container: String,
    pub docker_host: Option<String>,
    /// `None` is `<host-root>/var/lib/etcd-hostfix`.
    pub state_dir: Option<PathBuf>,
    /// Client URLs to use instead of those from the local configuration.
    pub endpoints: Vec<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Per-endpoint timeout.
    pub timeout: Duration,
}

impl Settings {
    pub fn root(&self) -> HostRoot {
        HostRoot::new(&self.host_root)
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.manifest.clone().unwrap_or_else(|| self.root().default_manifest())
    }
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| self.root().default_state_dir())
    }
}

/// Create the state dir `0700`, or tighten it, and say so when it was open to other local
/// accounts: it holds snapshots, journals, parked manifests and archived data dirs, which is
/// every Secret of the cluster. Called by whatever writes there (the local lock, the daemon,
/// a snapshot saved into it), never by a command that only reads.
pub fn secure_state_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if let Some(was) = hostfix_adapters::private::state_dir(dir)? {
        tracing::warn!(
            state_dir = %dir.display(),
            "the state dir was {was:04o}, so other local accounts could read its snapshots and archives; tightened to 0700"
        );
    }
    Ok(())
}

/// Where a playbook's progress goes. Every method has a quiet default, so a driver renders
/// only what it cares about.
pub trait Reporter: Send + Sync {
    /// The plan, as numbered human-readable lines, before anything is done.
    fn plan(&self, _playbook: &str, _header: &str, _steps: &[(String, String)]) {}
    /// Step `n` of `total` (1-based) begins.
    fn step_started(&self, _n: usize, _total: usize, _step: &str) {}
    /// Step `n` of `total` is done and journaled.
    fn step_done(&self, _n: usize, _total: usize, _step: &str, _elapsed: Duration) {}
    /// Something worth saying that is neither a step nor an error.
    fn note(&self, _msg: &str) {}
    /// Whether `progress` is rendered at all. Playbooks ask before they spend a call on a
    /// figure nobody sees (the learner's index, say).
    fn wants_progress(&self) -> bool {
        false
    }
    /// How far a long wait has got (`task` names it: "snapshot", "restore", "learner").
    /// A terminal draws a bar; journald and pipes get nothing, the steps say enough there.
    fn progress(&self, _task: &str, _p: Progress) {}
    /// The wait named `task` is over: `completed`, or cut short by an error.
    fn progress_end(&self, _task: &str, _completed: bool) {}
}

/// A long wait's figure, for [`Reporter::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bytes streamed or written, of a total when one is known.
    Bytes { done: u64, total: Option<u64> },
    /// A learner's applied raft index against the leader's.
    Index { applied: u64, target: u64 },
}

/// A reporter that says nothing (tests, and callers that only want the outcome).
pub struct Quiet;
impl Reporter for Quiet {}

/// Seconds since the Unix epoch (snapshot records, ages, run IDs).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// A run's ID: the Unix second and the pid, unique per host.
pub fn run_id() -> String {
    format!("{}-{}", unix_now(), std::process::id())
}

pub(crate) use hostfix_core::retry::is_transient;

/// Test hook: `HOSTFIX_PAUSE_AT=<step>[,<step>…]` stops the process (SIGSTOP) just before
/// that step starts, so a test can inject a fault (a partition, a leader stopped, a kill)
/// at exactly that point and let the run go on with SIGCONT. It says so on stderr first.
/// `<step>:<file>` stops there only while `<file>` exists: for a daemon under systemd, whose
/// environment outlives the restart the test causes.
pub fn pause_point(step: &str) {
    let hit = |p: &str| match p.split_once(':') {
        Some((at, file)) => at == step && std::path::Path::new(file).exists(),
        None => p == step,
    };
    if std::env::var("HOSTFIX_PAUSE_AT").map(|s| s.split(',').any(hit)).unwrap_or(false) {
        eprintln!("HOSTFIX_PAUSE_AT={step}: stopping myself before {step}");
        unsafe {
            libc::kill(libc::getpid(), libc::SIGSTOP);
        }
    }
}

/// Test hook: `HOSTFIX_FAIL_AT=<step>:<file>` fails that step before it starts, for as long
/// as `<file>` exists: a repair that keeps failing at a step (a cause outside the tool),
/// which a test can then take away while the daemon runs.
pub fn fail_point(step: &str) -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var("HOSTFIX_FAIL_AT") {
        if let Some((at, file)) = spec.split_once(':') {
            if at == step && std::path::Path::new(file).exists() {
                anyhow::bail!("HOSTFIX_FAIL_AT={spec}: failing {step} while {file} exists");
            }
        }
    }
    Ok(())
}

/// Test hook: `HOSTFIX_CRASH_AT=<step>` kills the process with SIGKILL right after that
/// step's work is done and before the journal records it, the worst moment to die.
pub fn crash_point(step: &str) {
    if std::env::var("HOSTFIX_CRASH_AT").map(|s| s == step).unwrap_or(false) {
        eprintln!("HOSTFIX_CRASH_AT={step}: killing myself");
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
