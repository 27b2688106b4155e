//! `etcd-hostfix diagnose`: classify the local member's condition from its own logs and from
//! live probes, and name the playbook that fixes it.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use hostfix_adapters::etcd::hex_id;
use hostfix_core::diagnose::{diagnose_log, Class, CommandFor, Finding, PeerFailure, Playbook, Probes};
use hostfix_core::logs::parse_text;
use hostfix_core::status::RunState;
use hostfix_core::exit;
use serde::Serialize;
use tracing::Instrument;

use crate::local::{Local, LOG_TAIL_BYTES};
use crate::{Global, Output, RuntimeArg};

#[derive(Debug, Clone, clap::Args)]
pub struct DiagnoseOpts {
    /// Classify this log file instead of the member's own logs (`-` for stdin). Probes are
    /// skipped: the verdict rests on the log alone.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    /// Where the log lines came from.
    log_source: String,
    probes: Option<&'a Probes>,
}

pub async fn run(g: &Global, o: &DiagnoseOpts) -> Result<i32> {
    let (finding, source, probes) =
        gather(g, o).instrument(tracing::info_span!("diagnose", host_root = %g.host_root.display())).await?;
    match g.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&Report { finding: &finding, log_source: source, probes: probes.as_ref() })?
        ),
        Output::Table => print!("{}", render(&finding, &source)),
    }
    Ok(if finding.class == Class::Healthy { exit::OK } else { exit::UNHEALTHY })
}

fn render(f: &Finding, source: &str) -> String {
    let mut s = format!("member:   {}\nclass:    {}\nplaybook: {}\n", f.member, f.class.as_str(), f.playbook.as_str());
    if !f.command.is_empty() {
        s.push_str(&format!("next:     {}\n", f.command));
    }
    s.push_str(&format!("log:      {source}\n"));
    if !f.evidence.is_empty() {
        s.push_str("evidence:\n");
        for e in &f.evidence {
            s.push_str(&format!("  {e}\n"));
        }
    }
    for n in &f.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

/// The exact next command, spelled with the options this run was given, so that it can be
/// pasted as is.
struct Commands {
    prefix: String,
    etcdctl: String,
}

impl CommandFor for Commands {
    fn command(&self, p: Playbook, class: Class) -> String {
        match p {
            Playbook::None => String::new(),
            Playbook::Rejoin | Playbook::Rebuild => format!("{} {}", self.prefix, p.as_str()),
            Playbook::Defrag => format!(
                "{e} defrag && {e} alarm disarm   # after deleting or compacting what filled the quota",
                e = self.etcdctl
            ),
            Playbook::Manual if class == Class::Partitioned => format!(
                "{} status   # and the same from another master: if the others are healthy there, this host is cut off (see the checks below)",
                self.prefix
            ),
            Playbook::Manual if class == Class::NotRunning => {
                format!("{} status   # start the member (restore its manifest or container), then check", self.prefix)
            }
            Playbook::Manual => format!("{} status   # no automatic playbook applies; read the evidence", self.prefix),
        }
    }
}

fn shell_word(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.:=,@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn commands(g: &Global, local: Option<&Local>) -> Commands {
    let mut p = vec!["sudo etcd-hostfix".to_string()];
    if g.host_root != PathBuf::from("/") {
        p.push(format!("--host-root {}", shell_word(&g.host_root.display().to_string())));
    }
    match g.runtime {
        RuntimeArg::Auto => {}
        RuntimeArg::StaticPod => p.push("--runtime static-pod".into()),
        RuntimeArg::Docker => p.push("--runtime docker".into()),
    }
    if g.container != "etcd" {
        p.push(format!("--container {}", shell_word(&g.container)));
    }
    if let Some(m) = &g.manifest {
        p.push(format!("--manifest {}", shell_word(&m.display().to_string())));
    }
    if let Some(d) = &g.docker_host {
        p.push(format!("--docker-host {}", shell_word(d)));
    }
    let mut e = vec!["ETCDCTL_API=3 etcdctl".to_string()];
    if let Some(l) = local {
        if let Some(u) = l.local_client_url() {
            e.push(format!("--endpoints={}", shell_word(&u)));
        }
        let (ca, cert, key) = l.tls_files(g);
        for (flag, v) in [("cacert", ca), ("cert", cert), ("key", key)] {
            if let Some(v) = v {
                e.push(format!("--{flag}={}", shell_word(&v.display().to_string())));
            }
        }
    }
    Commands { prefix: p.join(" "), etcdctl: e.join(" ") }
}

fn failure(m: &hostfix_core::status::MemberStatus, name: &str) -> PeerFailure {
    PeerFailure {
        name: if name.is_empty() { m.id.clone() } else { name.to_string() },
        client_url: m.client_urls.first().cloned().unwrap_or_default(),
        peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
        reach: m.reach,
    }
}

fn read_log_file(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        // stdin cannot seek: read it all, keep the tail.
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading the log from stdin")?;
        let start = buf.len().saturating_sub(LOG_TAIL_BYTES as usize);
        return Ok(String::from_utf8_lossy(&buf[start..]).into_owned());
    }
    hostfix_adapters::runtime::read_tail(path, LOG_TAIL_BYTES).with_context(|| format!("cannot read {}", path.display()))
}

async fn gather(g: &Global, o: &DiagnoseOpts) -> Result<(Finding, String, Option<Probes>)> {
    if let Some(path) = &o.log {
        let text = read_log_file(path)?;
        let lines = parse_text(&text);
        // The member may be anything; do not touch the host to find its name.
        let local = Local::discover(g).await.ok();
        let name = local.as_ref().map(|l| l.config.flags.name().to_string()).unwrap_or_else(|| "-".into());
        let f = diagnose_log(&name, &lines, &Probes::default(), &commands(g, local.as_ref()));
        return Ok((f, path.display().to_string(), None));
    }
    let local = Local::discover(g).await?;
    let conn = local.connector(g)?;
    let name = local.config.flags.name().to_string();
    let local_url = local.local_client_url();
    let peer_url = local.local_peer_url();
    let mut p = Probes::default();

    // The local member itself.
    if let Some(url) = &local_url {
        p.process_up = Some(!hostfix_adapters::process::etcd_pids(url).is_empty());
        match conn.connect(url).await {
            Ok(mut ep) => {
                if let Ok(st) = ep.status().await {
                    p.endpoint_answers = Some(true);
                    p.local_cluster_id = Some(hex_id(st.cluster_id));
                    p.endpoint_healthy = Some(ep.health().await.is_ok());
                } else {
                    p.endpoint_answers = Some(false);
                    p.endpoint_healthy = Some(false);
                }
            }
            Err(_) => {
                p.endpoint_answers = Some(false);
                p.endpoint_healthy = Some(false);
            }
        }
    }

    let view = local.cluster_view(g, &conn).await;
    p.member_list = Some(view.is_some());
    if let Some((list, all)) = &view {
        let me = list.members.iter().find(|m| {
            (!m.name.is_empty() && m.name == name) || peer_url.as_ref().map(|u| m.peer_urls.contains(u)).unwrap_or(false)
        });
        p.listed_by_name = Some(list.members.iter().any(|m| m.name == name));
        p.listed_by_peer_url =
            Some(peer_url.as_ref().map(|u| list.members.iter().any(|m| m.peer_urls.contains(u))).unwrap_or(false));
        p.local_is_voter = me.map(|m| !m.is_learner).unwrap_or(false);
        let probed: Vec<&hostfix_core::status::MemberStatus> = list
            .members
            .iter()
            .zip(all.iter())
            .filter(|(m, _)| Some(m.id) != me.map(|x| x.id) && !m.is_learner)
            .map(|(_, s)| s)
            .collect();
        p.peer_voters = probed.len();
        p.peer_voters_healthy = probed.iter().filter(|m| m.quorum_read).count();
        p.peer_voters_failed = probed.iter().filter(|m| !m.quorum_read).map(|m| failure(m, &m.name)).collect();
        p.peer_cluster_ids = probed.iter().filter_map(|m| m.cluster_id.clone()).collect();
        if let Some(me) = me {
            // Alarms are cluster-wide state: any member that answers can list them.
            let answering = local_url.iter().filter(|_| p.endpoint_answers == Some(true)).cloned().chain(
                probed.iter().filter(|m| m.reachable).filter_map(|m| m.client_urls.first().cloned()),
            );
            for url in answering {
                if let Ok(mut ep) = conn.connect(&url).await {
                    if let Ok(alarms) = ep.alarms().await {
                        p.alarms = alarms.into_iter().filter(|a| a.member_id == me.id).map(|a| a.alarm).collect();
                        break;
                    }
                }
            }
        }
    }

    if view.is_none() {
        // Nobody lists the members: what is known of the peers is the configuration, and
        // how each of them fails to answer is what tells a quorum loss from a partition.
        let peers = local.probe_configured_peers(&conn).await;
        p.local_is_voter = true;
        p.peer_voters = peers.len();
        p.peer_voters_healthy = peers.iter().filter(|(_, s)| s.quorum_read).count();
        p.peer_voters_failed = peers.iter().filter(|(_, s)| !s.quorum_read).map(|(e, s)| failure(s, &e.name)).collect();
    }

    let view = local.runtime_view(g, p.endpoint_answers == Some(true)).await?;
    p.crashlooping = Some(view.state == RunState::Crashlooping);
    let source = match (&view.log, &local.config.container) {
        (Some(f), _) => f.display().to_string(),
        (None, Some(c)) => format!("docker logs {c} (last {} lines)", crate::local::DOCKER_LOG_LINES),
        (None, None) => "no log found".into(),
    };
    let lines = parse_text(&view.log_tail);
    let f = diagnose_log(&name, &lines, &p, &commands(g, Some(&local)));
    Ok((f, source, Some(p)))
}
