//! The live half of `diagnose`: probe the local member and its peers, read the newest log
//! run, and classify with the core's rules. The daemon keeps its current condition with
//! exactly this, so a person and the daemon always agree on what is wrong.

use anyhow::Result;
use hostfix_adapters::etcd::hex_id;
use hostfix_core::diagnose::{diagnose_log, CommandFor, Finding, PeerFailure, Probes};
use hostfix_core::logs::parse_text;
use hostfix_adapters::etcd::Connector;
use hostfix_core::status::{MemberStatus, RunState};

use crate::local::Local;
use crate::Settings;

/// A finding, where its log lines came from, and the probes behind it.
pub struct Diagnosis {
    pub finding: Finding,
    pub log_source: String,
    pub probes: Probes,
    /// Every listed member as probed, when a member list could be had.
    pub members: Vec<MemberStatus>,
    /// The local member's ID in that list.
    pub local_id: Option<String>,
    /// What the runtime says of the process (a stopped container is `Stopped`).
    pub run_state: RunState,
}

/// When the member's logs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    /// Always (`diagnose`: a person wants the notes, even on a healthy member).
    Always,
    /// Only when the member does not serve a quorum read. A healthy member's class comes
    /// from the probes anyway (they win over the log), and a daemon probing every second
    /// must not parse a 256 KiB tail each time.
    WhenUnhealthy,
}

/// `conn` is kept by the caller, so a daemon probing every second reuses its connections.
pub async fn diagnose_local(g: &Settings, local: &Local, conn: &Connector, cmds: &dyn CommandFor, logs: Logs) -> Result<Diagnosis> {
    let name = local.config.flags.name().to_string();
    let local_url = local.local_client_url();
    let peer_url = local.local_peer_url();
    let mut p = Probes::default();

    // The local member itself, and the cluster as the peers see it, at once: under a
    // partition both wait out the timeout, and one wait is enough.
    let local_probe = async {
        let url = local_url.as_ref()?;
        let up = !hostfix_adapters::process::etcd_pids(url).is_empty();
        let (answers, cluster_id, healthy) = match conn.connect(url).await {
            Ok(mut ep) => match ep.status().await {
                // Without a leader a quorum read can only time out (a lost quorum): no need
                // to spend the timeout learning it.
                Ok(st) => (true, Some(hex_id(st.cluster_id)), st.leader != 0 && ep.health().await.is_ok()),
                Err(_) => (false, None, false),
            },
            Err(_) => (false, None, false),
        };
        Some((up, answers, cluster_id, healthy))
    };
    let (probed_local, view) = tokio::join!(local_probe, local.cluster_view(g, conn));
    if let Some((up, answers, cluster_id, healthy)) = probed_local {
        p.process_up = Some(up);
        p.endpoint_answers = Some(answers);
        p.local_cluster_id = cluster_id;
        p.endpoint_healthy = Some(healthy);
    }
    tracing::debug!(endpoint_answers = ?p.endpoint_answers, "local member probed");
    tracing::debug!(listed = view.is_some(), "cluster view");
    p.member_list = Some(view.is_some());
    if let Some((list, all)) = &view {
        let me = list.members.iter().find(|m| {
            (!m.name.is_empty() && m.name == name) || peer_url.as_ref().map(|u| m.peer_urls.contains(u)).unwrap_or(false)
        });
        p.listed_by_name = Some(list.members.iter().any(|m| m.name == name));
        p.listed_by_peer_url =
            Some(peer_url.as_ref().map(|u| list.members.iter().any(|m| m.peer_urls.contains(u))).unwrap_or(false));
        p.local_is_voter = me.map(|m| !m.is_learner).unwrap_or(false);
        p.listed_id = me.map(|m| hostfix_adapters::etcd::hex_id(m.id));
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
            // Alarms are cluster-wide state: any member that serves quorum reads can list
            // them (the list goes through raft, so one that does not would only time out).
            let answering = local_url.iter().filter(|_| p.endpoint_healthy == Some(true)).cloned().chain(
                probed.iter().filter(|m| m.quorum_read).filter_map(|m| m.client_urls.first().cloned()),
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
        let peers = local.probe_configured_peers(conn).await;
        p.local_is_voter = true;
        p.peer_voters = peers.len();
        p.peer_voters_healthy = peers.iter().filter(|(_, s)| s.quorum_read).count();
        p.peer_voters_failed = peers.iter().filter(|(_, s)| !s.quorum_read).map(|(e, s)| failure(s, &e.name)).collect();
    }

    tracing::debug!(alarms = ?p.alarms, "alarms read");
    let (run_state, source, lines) = if logs == Logs::WhenUnhealthy && p.endpoint_healthy == Some(true) {
        p.crashlooping = Some(false);
        (RunState::Running, "not read: the member serves quorum reads".to_string(), vec![])
    } else {
        let rtv = local.runtime_view(g, p.endpoint_answers == Some(true)).await?;
        p.crashlooping = Some(rtv.state == RunState::Crashlooping);
        let source = match (&rtv.log, &local.config.container) {
            (Some(f), _) => f.display().to_string(),
            (None, Some(c)) => format!("docker logs {c} (last {} lines)", crate::local::DOCKER_LOG_LINES),
            (None, None) => "no log found".into(),
        };
        (rtv.state, source, parse_text(&rtv.log_tail))
    };
    let f = diagnose_log(&name, &lines, &p, cmds);
    let (members, local_id) = match view {
        Some((list, probed)) => {
            let id = list
                .members
                .iter()
                .find(|m| (!m.name.is_empty() && m.name == name) || peer_url.as_ref().map(|u| m.peer_urls.contains(u)).unwrap_or(false))
                .map(|m| hex_id(m.id));
            (probed, id)
        }
        None => (vec![], None),
    };
    Ok(Diagnosis { finding: f, log_source: source, probes: p, members, local_id, run_state })
}

pub fn failure(m: &hostfix_core::status::MemberStatus, name: &str) -> PeerFailure {
    PeerFailure {
        name: if name.is_empty() { m.id.clone() } else { name.to_string() },
        client_url: m.client_urls.first().cloned().unwrap_or_default(),
        peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
        reach: m.reach,
    }
}

