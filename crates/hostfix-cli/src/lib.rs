//! The `etcd-hostfix` command line. `main` only calls [`main`]; each command lives in its
//! own module and returns the process exit code (see `hostfix_core::exit`).

mod daemoncmd;
mod docs;
pub(crate) mod diagnose;
mod dockerrun;
mod recover;
pub(crate) mod rejoin;
mod status;
mod labcmd;
mod soak;
mod toolbox;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use hostfix_adapters::HostRoot;
use hostfix_core::exit;
use hostfix_playbooks::{RuntimeChoice, Settings};

/// Repairs the local etcd member of a Kubernetes master, without the Kubernetes API.
///
/// Exit codes: 0 ok, 1 error, 2 usage, 3 refused by a safety check (nothing changed),
/// 4 unhealthy or problem found.
#[derive(Debug, Parser)]
#[command(name = "etcd-hostfix", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Root of the master's filesystem; every path from a manifest or default location
    /// resolves under it. Docker bind-mount sources are real host paths and stay as they are.
    #[arg(long, global = true, default_value = "/", env = "HOSTFIX_HOST_ROOT")]
    pub host_root: PathBuf,
    /// Which runtime runs the local etcd member.
    #[arg(long, global = true, value_enum, default_value_t = RuntimeArg::Auto)]
    pub runtime: RuntimeArg,
    /// The static-pod manifest [default: <host-root>/etc/kubernetes/manifests/etcd.yaml].
    #[arg(long, global = true)]
    pub manifest: Option<PathBuf>,
    /// The Docker container running etcd (Rancher RKE names it `etcd`).
    #[arg(long, global = true, default_value = "etcd")]
    pub container: String,
    /// Docker engine URL [default: DOCKER_HOST, else the local socket].
    #[arg(long, global = true)]
    pub docker_host: Option<String>,
    /// Where etcd-hostfix keeps its journal, parked manifests and archives
    /// [default: <host-root>/var/lib/etcd-hostfix].
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// Comma-separated client URLs to use instead of those from the local configuration.
    #[arg(long, global = true, env = "ETCDCTL_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// CA bundle to verify etcd's server certificates (overrides the member's own).
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (overrides the member's own).
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<PathBuf>,
    /// Client key (overrides the member's own).
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub key: Option<PathBuf>,
    /// Output format. `-w/--write-out` is the same option, spelled as etcdctl spells it.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table, visible_short_alias = 'w', visible_alias = "write-out")]
    pub output: Output,
    /// Per-endpoint timeout: seconds (3) or a duration (500ms, 3s, 1m). etcdctl's
    /// ETCDCTL_DIAL_TIMEOUT sets it too.
    #[arg(long, global = true, default_value = "3", env = "ETCDCTL_DIAL_TIMEOUT", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
    /// No progress bars. They are drawn only on a terminal (stderr) anyway: never into a
    /// pipe, a log file or journald.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// `3` (seconds, as before) or `3s`/`500ms` (etcdctl's form).
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = match s.trim().parse::<u64>() {
        Ok(n) => std::time::Duration::from_secs(n),
        Err(_) => hostfix_core::config::parse_duration(s)?,
    };
    if d.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeArg {
    Auto,
    StaticPod,
    Docker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Global {
    /// The plain settings the playbooks library takes: clap stops here.
    pub fn settings(&self) -> Settings {
        Settings {
            host_root: self.host_root.clone(),
            runtime: match self.runtime {
                RuntimeArg::Auto => RuntimeChoice::Auto,
                RuntimeArg::StaticPod => RuntimeChoice::StaticPod,
                RuntimeArg::Docker => RuntimeChoice::Docker,
            },
            manifest: self.manifest.clone(),
            container: self.container.clone(),
            docker_host: self.docker_host.clone(),
            state_dir: self.state_dir.clone(),
            endpoints: self.endpoints.clone(),
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            timeout: self.timeout,
        }
    }

    pub fn root(&self) -> HostRoot {
        HostRoot::new(&self.host_root)
    }
    pub fn state_dir(&self) -> PathBuf {
        self.settings().state_dir()
    }
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// One view of the cluster: member list, endpoint health and endpoint status merged,
    /// plus the local member's runtime state. Exits 0 when every member is healthy, 4 when
    /// degraded.
    Status,
    /// Classify the local member's condition from etcd's own logs and live probes, and name
    /// the playbook that fixes it, with the exact command. Exits 0 when healthy, 4 otherwise.
    Diagnose(diagnose::DiagnoseOpts),
    /// Replace the local member, whose data is lost or bad, with a fresh learner fed by the
    /// rest of the cluster, then promote it. Prints the plan first; refuses (exit 3, nothing
    /// changed) when acting is unsafe; journals every step so a killed run resumes.
    Rejoin(rejoin::RejoinOpts),
    /// Disaster recovery after quorum loss (seed 002): make this master's member, the chosen
    /// survivor, a one-member cluster with `--force-new-cluster`, then remove the flag and
    /// restart. Refuses (exit 3) while the cluster has quorum, or when a reachable member
    /// has newer data, unless --force. Prints the `rejoin` command for every other master.
    Rebuild(recover::RecoverOpts),
    /// Restore the local member from a snapshot as a new one-member cluster (seed 003):
    /// verify the snapshot, archive the data dir, restore with a new cluster token, start.
    /// Refuses (exit 3) while the cluster has quorum, unless --force.
    Restore(recover::RestoreOpts),
    /// Snapshots of the cluster's data.
    Snapshot {
        #[command(subcommand)]
        cmd: recover::SnapshotCmd,
    },
    /// A key inventory by path segment (seed 003's `get --keys-only | cut | sort | uniq -c`):
    /// keys and value bytes per group, largest first, read page by page at one revision.
    Keys(toolbox::KeysOpts),
    /// The NOSPACE playbook: compact, then defragment every member in turn (the leader
    /// last, each serving quorum reads again before the next), then disarm NOSPACE when
    /// every db is below the quota. Cluster-wide, from any master. Refuses (exit 3) while
    /// any member is down or the cluster has fewer than three voters. Exit 4 when the alarm
    /// has to stay.
    Defrag(toolbox::DefragOpts),
    /// Checks of the cluster's environment.
    Check {
        #[command(subcommand)]
        cmd: toolbox::CheckCmd,
    },
    /// Print the `docker run` command that recreates a container exactly as it is, every
    /// word shell-quoted, with etcd flags optionally edited. Changes nothing.
    DockerRun(dockerrun::DockerRunOpts),
    /// Run in the foreground as the systemd service: watch the local member and heal it by
    /// itself with the same playbooks, within budgets, never touching a member that is
    /// only restarting or being worked on by a person. See `status` for why it is not
    /// acting. Exit codes: 0 stopped by SIGTERM, 1 bad configuration or cannot start.
    Daemon(daemoncmd::DaemonOpts),
    /// Stop the daemon from acting (it keeps observing and reporting). Kept in the state
    /// dir, so it survives a restart.
    Pause(daemoncmd::PauseOpts),
    /// Lift a pause, and close the daemon's circuit breaker.
    Resume,
    /// Print shell completion for SHELL (bash, zsh, fish, elvish, powershell) to stdout,
    /// generated from the same definitions as `--help`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (etcd-hostfix.1 and one per subcommand) into DIR. For packaging.
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// A lab of real etcd clusters laid out like kubeadm or RKE masters.
    Lab {
        #[command(subcommand)]
        cmd: labcmd::LabCmd,
    },
}

/// Commands log warnings to stderr. The daemon logs at info, to journald with structured
/// fields (member, class, decision, playbook, step) when journald is there, else to
/// stderr; `RUST_LOG` overrides either.
fn init_tracing(daemon: bool) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if daemon { "info" } else { "warn" }));
    // No field prefix: the fields are MEMBER, CLASS, DECISION, PLAYBOOK, STEP, so that
    // `journalctl -u etcd-hostfix DECISION=heal` works as an operator would write it
    // (tracing-journald's default would be F_DECISION).
    let journald = if daemon { tracing_journald::layer().ok().map(|l| l.with_field_prefix(None)) } else { None };
    match journald {
        Some(j) => tracing_subscriber::registry().with(filter).with(j).init(),
        None => tracing_subscriber::registry()
            .with(filter)
            // Colour only for a person: a pipe or a log file gets plain text.
            .with(tracing_subscriber::fmt::layer().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_writer(std::io::stderr))
            .init(),
    }
}

/// Parse, run, and map errors to exit codes. Kept here so `main` stays one line.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return code;
        }
    };
    init_tracing(matches!(cli.command, Cmd::Daemon(_)));
    // What etcd-hostfix writes under its state dir (journals, parked manifests, archives,
    // snapshots, incidents) holds cluster data and secrets' whereabouts: 0600 files in 0700
    // dirs. The lab is exempt: its files are read by the processes it starts.
    if !matches!(cli.command, Cmd::Lab { .. } | Cmd::Completions { .. } | Cmd::Man { .. }) {
        unsafe { libc::umask(0o077) };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return exit::ERROR;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Cmd::Status => status::run(&cli.global).await,
            Cmd::Diagnose(o) => diagnose::run(&cli.global, &o).await,
            Cmd::Rejoin(o) => rejoin::run(&cli.global, &o).await,
            Cmd::Rebuild(o) => recover::rebuild(&cli.global, &o).await,
            Cmd::Restore(o) => recover::restore(&cli.global, &o).await,
            Cmd::Snapshot { cmd: recover::SnapshotCmd::Save(o) } => recover::snapshot_save(&cli.global, &o).await,
            Cmd::DockerRun(o) => dockerrun::run(&cli.global, &o).await,
            Cmd::Keys(o) => toolbox::keys(&cli.global, &o).await,
            Cmd::Defrag(o) => toolbox::defrag(&cli.global, &o).await,
            Cmd::Check { cmd } => toolbox::check(&cli.global, &cmd).await,
            Cmd::Lab { cmd } => labcmd::run(&cli.global, cmd).await,
            Cmd::Daemon(o) => daemoncmd::run(&cli.global, &o).await,
            Cmd::Pause(o) => daemoncmd::pause(&cli.global, &o),
            Cmd::Resume => daemoncmd::resume(&cli.global),
            Cmd::Completions { shell } => docs::completions(shell),
            Cmd::Man { dir } => docs::man(&dir),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ERROR
        }
    }
}
