//! Probing the cluster: the member list, one probe per member (how it answered, or how it
//! failed to), and the merged status report behind `etcd-hostfix status`.

use anyhow::{bail, Result};
use hostfix_adapters::etcd::{hex_id, Connector, EtcdError, MemberList};
use hostfix_core::status::{LocalStatus, MemberStatus, Reach, RunState, StatusReport};

use crate::local::Local;
use crate::Settings;

/// The member list from the first endpoint, in the given order of preference, that
/// answers. All are asked at once, so endpoints that time out (a partition, hosts that are
/// off) cost one timeout together rather than one each; an answer is taken as soon as every
/// endpoint preferred to it has failed.
pub async fn member_list(conn: &Connector, endpoints: &[String]) -> Result<(String, MemberList), Vec<EtcdError>> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut pending: FuturesUnordered<_> = endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| async move {
            let r = match conn.connect(ep).await {
                Ok(mut c) => c.member_list().await,
                Err(e) => Err(e),
            };
            (i, r)
        })
        .collect();
    let mut done: Vec<Option<Result<MemberList, EtcdError>>> = endpoints.iter().map(|_| None).collect();
    while let Some((i, r)) = pending.next().await {
        done[i] = Some(r);
        // The most preferred endpoint that has not failed: if it has answered, that is the
        // answer; if it is still pending, wait for it.
        if let Some(j) = done.iter().position(|d| !matches!(d, Some(Err(_)))) {
            if matches!(done[j], Some(Ok(_))) {
                let Some(Some(Ok(l))) = done.get_mut(j).map(Option::take) else { unreachable!("checked above") };
                return Ok((endpoints[j].clone(), l));
            }
        }
    }
    Err(done.into_iter().flatten().filter_map(Result::err).collect())
}

pub async fn probe_member(conn: &Connector, m: &hostfix_adapters::etcd::Member) -> MemberStatus {
    let mut s = MemberStatus {
        id: hex_id(m.id),
        name: m.name.clone(),
        peer_urls: m.peer_urls.clone(),
        client_urls: m.client_urls.clone(),
        is_learner: m.is_learner,
        ..Default::default()
    };
    let Some(url) = m.client_urls.first() else {
        s.error = Some("not started: no client URL".into());
        s.reach = hostfix_core::status::Reach::NotStarted;
        return s;
    };
    let mut ep = match conn.connect(url).await {
        Ok(ep) => ep,
        Err(e) => {
            s.error = Some(e.to_string());
            s.reach = e.reach();
            return s;
        }
    };
    match ep.status().await {
        Ok(st) => {
            s.reachable = true;
            s.version = Some(st.version);
            s.db_size = Some(st.db_size);
            s.db_size_in_use = Some(st.db_size_in_use);
            s.raft_term = Some(st.raft_term);
            s.raft_index = Some(st.raft_index);
            s.raft_applied_index = Some(st.raft_applied_index);
            s.revision = Some(st.revision);
            s.cluster_id = Some(hex_id(st.cluster_id));
            s.is_leader = st.leader != 0 && st.leader == st.member_id;
            s.has_leader = st.leader != 0;
            if !st.errors.is_empty() {
                s.error = Some(st.errors.join("; "));
            }
        }
        Err(e) => {
            s.error = Some(e.to_string());
            s.reach = e.reach();
            return s;
        }
    }
    s.reach = if s.has_leader { Reach::Answers } else { Reach::NoLeader };
    // Without a leader a quorum read (and the alarm list, which goes through raft) can
    // only time out: say so at once, so a cluster that lost quorum is probed in one round
    // trip, not one timeout per call.
    if !s.has_leader {
        s.error.get_or_insert_with(|| "no leader: this member cannot reach a quorum".into());
        return s;
    }
    // A learner cannot serve a quorum read; it is healthy if it answers status.
    let health = if m.is_learner { Ok(()) } else { ep.health().await };
    match health {
        Ok(()) => {
            s.quorum_read = true;
            s.healthy = s.error.is_none();
        }
        Err(e) => s.error = Some(e.to_string()),
    }
    // The alarm list goes through raft: a member that just failed a quorum read would only
    // time out again.
    if !s.quorum_read {
        return s;
    }
    if let Ok(alarms) = ep.alarms().await {
        s.alarms = alarms.into_iter().filter(|a| a.member_id == m.id).map(|a| a.alarm).collect();
        if !s.alarms.is_empty() {
            s.healthy = false;
        }
    }
    s
}

pub async fn gather(g: &Settings) -> Result<StatusReport> {
    let local = Local::discover(g).await?;
    let conn = local.connector(g)?;
    let endpoints = local.candidate_endpoints(g);
    if endpoints.is_empty() {
        bail!("the local member's configuration names no client URL and no peers; pass --endpoints");
    }
    let (source, list) = match member_list(&conn, &endpoints).await {
        Ok(x) => x,
        Err(errs) => {
            let detail: Vec<String> = errs.iter().map(|e| format!("  - {e}")).collect();
            bail!("no etcd endpoint answered a member list:\n{}", detail.join("\n"));
        }
    };
    // Concurrent probes keep `status` at one timeout even when several members are down.
    let members: Vec<MemberStatus> =
        futures_util::future::join_all(list.members.iter().map(|m| probe_member(&conn, m))).await;
    let leader = members.iter().find(|m| m.is_leader).map(|m| m.id.clone());

    let name = local.config.flags.name().to_string();
    let peer = local.local_peer_url();
    let local_member = list
        .members
        .iter()
        .find(|m| (!m.name.is_empty() && m.name == name) || peer.as_ref().map(|p| m.peer_urls.contains(p)).unwrap_or(false));
    let local_reachable = local_member
        .and_then(|lm| members.iter().find(|m| m.id == hex_id(lm.id)))
        .map(|m| m.reachable)
        .unwrap_or(false);

    let data_dir = local.data_dir();
    let mut ls = LocalStatus {
        runtime: local.config.runtime.as_str().into(),
        name,
        client_url: local.local_client_url(),
        peer_url: peer,
        data_dir: Some(data_dir.display().to_string()),
        manifest: local.config.manifest.as_ref().map(|p| p.display().to_string()),
        manifest_state: local.config.manifest_state,
        container: local.config.container.clone(),
        container_state: None,
        state: RunState::Unknown,
        restarts: 0,
        log: None,
        last_log_line: None,
        member_id: local_member.map(|m| hex_id(m.id)),
    };
    let view = local.runtime_view(g, local_reachable).await?;
    ls.state = view.state;
    ls.restarts = view.restarts;
    ls.container_state = view.container_state;
    ls.log = view.log.map(|p| p.display().to_string());
    // Old crash lines are noise once the member serves again.
    ls.last_log_line = if view.state == RunState::Running { None } else { view.last_log_line };
    Ok(StatusReport {
        cluster_id: Some(hex_id(list.cluster_id)),
        leader,
        healthy: false,
        members,
        local: ls,
        source_endpoint: Some(source),
        problems: vec![],
    }
    .assess())
}
