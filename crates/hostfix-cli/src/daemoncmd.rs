//! `etcd-hostfix daemon`, `pause` and `resume`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use hostfix_core::exit;

use crate::Global;

#[derive(Debug, Clone, clap::Args)]
pub struct DaemonOpts {
    /// The configuration file [default: <host-root>/etc/etcd-hostfix/config.yaml]. A missing
    /// file means the defaults (packaging/config.yaml lists them); a bad one is refused with
    /// its line and key, and nothing starts.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics here (overrides the file's `metrics_listen`)
    /// [default: 127.0.0.1:9379].
    #[arg(long)]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PauseOpts {
    /// Why, for `status` and the logs (for example "kubeadm upgrade, ticket 4711").
    #[arg(long, default_value = "paused by an operator")]
    pub reason: String,
}

pub fn load_config(g: &Global, o: &DaemonOpts) -> Result<hostfix_core::config::DaemonConfig> {
    let path = o.config.clone().unwrap_or_else(|| g.root().resolve("/etc/etcd-hostfix/config.yaml"));
    let mut c = match std::fs::read_to_string(&path) {
        Ok(text) => hostfix_core::config::parse(&path.display().to_string(), &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => hostfix_core::config::DaemonConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(l) = &o.metrics_listen {
        l.parse::<std::net::SocketAddr>().with_context(|| format!("--metrics-listen {l}: not an address like 127.0.0.1:9379"))?;
        c.metrics_listen = l.clone();
    }
    Ok(c)
}

pub async fn run(g: &Global, o: &DaemonOpts) -> Result<i32> {
    let config = load_config(g, o)?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    hostfix_daemon::run(g.settings(), config, shutdown).await?;
    Ok(exit::OK)
}

pub fn pause(g: &Global, o: &PauseOpts) -> Result<i32> {
    let p = hostfix_daemon::files::pause(&g.state_dir(), &o.reason)?;
    println!("paused since {}: {}", p.since, p.reason);
    println!("the daemon keeps observing and reporting, and acts on nothing until `etcd-hostfix resume`");
    Ok(exit::OK)
}

pub fn resume(g: &Global) -> Result<i32> {
    match hostfix_daemon::files::resume(&g.state_dir())? {
        Some(p) => println!("resumed (was paused since {}: {})", p.since, p.reason),
        None => println!("not paused"),
    }
    println!("the circuit breaker is closed and past failures are forgotten; the daemon acts again");
    Ok(exit::OK)
}
