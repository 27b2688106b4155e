//! One observation of the world, for the policy: `diagnose`'s classification of the local
//! member (the same code a person runs), plus what the policy needs beyond it: where the
//! manifest is, whether the peers agree on a leader, who holds the locks, whether a repair
//! is unfinished, whether the daemon is paused.

use std::path::PathBuf;

use anyhow::Result;
use hostfix_adapters::etcd::Connector;
use hostfix_adapters::journal::Journal;
use hostfix_adapters::runtime::RuntimeError;
use hostfix_core::diagnose::{Class, CommandFor, Finding, Playbook};
use hostfix_core::policy::{Observation, Placement};
use hostfix_core::rejoin::RejoinPlan;
use hostfix_adapters::runtime::RuntimeKind;
use hostfix_core::status::{ManifestState, RunState};
use hostfix_playbooks::diagnose::{diagnose_local, Diagnosis, Logs};
use hostfix_playbooks::local::Local;
use hostfix_playbooks::{lock, Settings};

use crate::files;

/// The commands the daemon names in its alerts: the ones a person types on that master.
struct Commands;
impl CommandFor for Commands {
    fn command(&self, p: Playbook, _: hostfix_core::diagnose::Class) -> String {
        match p {
            Playbook::None => String::new(),
            Playbook::Manual => "sudo etcd-hostfix diagnose".into(),
            p => format!("sudo etcd-hostfix {}", p.as_str()),
        }
    }
}

/// What the daemon keeps between observations: the connector (so connections are reused,
/// not reopened every second) and the last configuration that could be read.
pub struct World {
    pub settings: Settings,
    conn: Option<(PathBuf, Connector)>,
    /// The member's name from the last configuration read, for when it cannot be read now.
    pub last_name: Option<String>,
    /// The last full observation, while it found the member healthy and in place, with when
    /// it was made and the local client URL: what a light probe confirms and reuses.
    healthy: Option<(std::time::Instant, Seen, String)>,
    /// The local client URL found by the current full observation.
    local_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub obs: Observation,
    pub finding: Finding,
    pub log_source: String,
}

impl World {
    pub fn new(settings: Settings) -> World {
        World { settings, conn: None, last_name: None, healthy: None, local_url: None }
    }

    /// Make the next observation a full one.
    pub fn forget(&mut self) {
        self.healthy = None;
    }

    /// One observation. While the last full one found the member healthy, in place and
    /// nothing else going on, and it is younger than `full_every`, only the local member is
    /// asked (status and a quorum read: two calls on a kept connection) and the rest is
    /// reused: the peers are another daemon's business, and nothing they show could make
    /// this one act on a healthy member. A watcher's wake (`full`), a local answer that is
    /// not healthy, or any change in the state dir makes it a full observation at once.
    pub async fn observe(&mut self, full: bool, full_every: std::time::Duration) -> Result<Seen> {
        if !full {
            if let Some(seen) = self.light(full_every).await {
                return Ok(seen);
            }
        }
        let seen = self.observe_full().await?;
        self.healthy = match (seen.obs.calm(), self.local_url.clone()) {
            (true, Some(url)) => Some((std::time::Instant::now(), seen.clone(), url)),
            _ => None,
        };
        Ok(seen)
    }

    async fn light(&mut self, full_every: std::time::Duration) -> Option<Seen> {
        let (at, last, url) = self.healthy.as_ref()?;
        if at.elapsed() >= full_every {
            return None;
        }
        let state = self.settings.state_dir();
        // Cheap local facts first: a pause, a lock or a journal means a full look.
        if files::pause_path(&state).exists()
            || lock::file_lock_holder(&state).is_some_and(|pid| pid != std::process::id().to_string())
            || Journal::<RejoinPlan>::path_for(&state, "rejoin").exists()
        {
            return None;
        }
        let conn = self.conn.as_ref()?.1.clone();
        let url = url.clone();
        let serving = bounded("probe the local member", self.budget(), async move {
            let mut ep = conn.connect(&url).await.ok()?;
            let st = ep.status().await.ok()?;
            (st.leader != 0 && st.errors.is_empty()).then_some(())?;
            ep.health().await.ok()
        })
        .await
        .ok()
        .flatten()
        .is_some();
        serving.then(|| last.clone())
    }

    /// How long one part of an observation may take: a few endpoint timeouts (the member
    /// list is asked of the peers one after another).
    fn budget(&self) -> std::time::Duration {
        self.settings.timeout * 4
    }

    fn connector(&mut self, local: &Local) -> Result<Connector> {
        // Rebuilt only when the member's configuration names other certificates.
        let key = local.tls_files(&self.settings).0.unwrap_or_default();
        if let Some((k, c)) = &self.conn {
            if *k == key {
                return Ok(c.clone());
            }
        }
        let c = local.connector(&self.settings)?;
        self.conn = Some((key, c.clone()));
        Ok(c)
    }

    async fn observe_full(&mut self) -> Result<Seen> {
        self.local_url = None;
        let s = self.settings.clone();
        let state = s.state_dir();
        let paused = files::read_json::<files::Pause>(&files::pause_path(&state)).ok().flatten().map(|p| p.reason);
        let local_lock_holder = lock::file_lock_holder(&state).filter(|pid| *pid != std::process::id().to_string());
        let unfinished_journal = Journal::<RejoinPlan>::load(&state, "rejoin").ok().flatten().is_some();
        let local = match Local::discover(&s).await {
            Ok(l) => l,
            // The manifest (or container) is gone, and not parked by us: a person took it.
            Err(e @ (RuntimeError::NoManifest { .. } | RuntimeError::NoContainer { .. } | RuntimeError::NothingFound { .. })) => {
                let member = self.last_name.clone().unwrap_or_else(|| "-".into());
                let obs = Observation {
                    member: member.clone(),
                    class: Class::NotRunning,
                    etcd_running: false,
                    placement: Placement::MovedOut,
                    peers_quorum: false,
                    peers_leader: None,
                    peers_see_local_down: true,
                    removed_by_hostfix: false,
                    cluster_lock_holder: None,
                    local_lock_holder,
                    unfinished_journal,
                    paused,
                    progenitor: None,
                    previous_run_only: false,
                };
                let finding = Finding {
                    class: Class::NotRunning,
                    member,
                    playbook: Playbook::Manual,
                    command: String::new(),
                    evidence: vec![e.to_string()],
                    notes: vec![],
                    log_class: None,
                    from_previous_run: false,
                    signature_at: None,
                };
                return Ok(Seen { obs, finding, log_source: "-".into() });
            }
            Err(e) => return Err(e.into()),
        };
        let name = local.config.flags.name().to_string();
        self.last_name = Some(name.clone());
        self.local_url = local.local_client_url();
        let conn = self.connector(&local)?;
        let Diagnosis { finding, log_source, probes, members, local_id, run_state } =
            bounded("diagnose", self.budget(), diagnose_local(&s, &local, &conn, &Commands, Logs::WhenUnhealthy)).await??;

        let placement = match (local.config.manifest_state, local.config.runtime) {
            (Some(ManifestState::Parked), _) => Placement::ParkedByUs,
            (Some(ManifestState::Missing), _) => Placement::MovedOut,
            // RKE runs etcd with `--restart always`: a container that is stopped and stays
            // stopped was stopped by someone (`docker stop`), which is a person's hand.
            (_, RuntimeKind::Docker) if run_state == RunState::Stopped => Placement::MovedOut,
            _ => Placement::InPlace,
        };
        // Where the members are, for when this master's own configuration cannot say (see
        // `known_peers_path`). A failed write only loses a hint.
        if let Some(known) = hostfix_core::peers::known_peers(&members, local_id.as_deref()) {
            if let Err(e) = files::write_json_if_changed(&hostfix_playbooks::local::known_peers_path(&state), &known) {
                tracing::warn!(error = %e, "cannot keep the known peers");
            }
        }
        let peers: Vec<_> = members.iter().filter(|m| Some(&m.id) != local_id.as_ref()).collect();
        // The leader the answering peers agree on: exactly one member says it leads.
        let leaders: Vec<&String> = members.iter().filter(|m| m.is_leader).map(|m| &m.id).collect();
        let peers_leader = (leaders.len() == 1 && Some(leaders[0]) != local_id.as_ref()).then(|| leaders[0].clone());
        let peers_quorum = probes.rest_has_quorum() == Some(true);
        // Ask one healthy peer about the cluster-wide lock and a removal record.
        let mut cluster_lock_holder = None;
        let mut removed_by_hostfix = false;
        if let Some(url) = peers.iter().find(|m| m.quorum_read).and_then(|m| m.client_urls.first()) {
            if let Ok(Ok(mut ep)) = bounded("connect to a peer", self.budget(), conn.connect(url)).await {
                cluster_lock_holder = bounded("read the repair lock", self.budget(), lock::cluster_lock_holder(&mut ep))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .flatten()
                    .filter(|h| *h != name);
                if finding.class == Class::MemberRemoved {
                    removed_by_hostfix = bounded("read the removal record", self.budget(), ep.get_value(&hostfix_playbooks::rejoin::removed_key(&name)))
                        .await
                        .ok()
                        .and_then(|r| r.ok())
                        .flatten()
                        .is_some();
                }
            }
        }
        // For quorum loss, the member that answers with the newest data is the progenitor.
        let progenitor = (finding.class == Class::QuorumLost)
            .then(|| members.iter().filter(|m| m.reachable).max_by_key(|m| m.raft_index.unwrap_or(0)))
            .flatten()
            .map(|m| (m.name.clone(), format!("sudo etcd-hostfix rebuild   # on {}'s master ({})", m.name, m.client_urls.join(","))));
        let obs = Observation {
            member: name,
            class: finding.class,
            etcd_running: probes.process_up == Some(true),
            placement,
            peers_quorum,
            peers_leader,
            peers_see_local_down: probes.endpoint_healthy != Some(true),
            removed_by_hostfix,
            cluster_lock_holder,
            local_lock_holder,
            unfinished_journal,
            paused,
            progenitor,
            previous_run_only: finding.from_previous_run,
        };
        Ok(Seen { obs, finding, log_source })
    }
}

/// Every await of an observation is bounded: a call that never returns must not stop the
/// loop that feeds the watchdog and reports why it is not acting.
async fn bounded<T>(what: &'static str, limit: std::time::Duration, f: impl std::future::Future<Output = T>) -> Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => Ok(v),
        Err(_) => {
            tracing::warn!(what, limit_ms = limit.as_millis() as u64, "observation step timed out");
            Err(anyhow::anyhow!("{what} took longer than {limit:?}"))
        }
    }
}
