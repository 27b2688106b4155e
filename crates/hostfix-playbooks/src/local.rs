//! Everything about the local member, derived from its own configuration: which runtime
//! runs it, its flags, how container paths map to host paths, which certificates a client
//! should present, and which endpoints to ask.

use std::path::PathBuf;

use anyhow::{Context, Result};
use hostfix_adapters::etcd::{ClientTls, Connector, Member, MemberList};
use hostfix_core::flags::PeerEntry;
use hostfix_core::status::MemberStatus;
use hostfix_adapters::runtime::{DockerRuntime, LocalConfig, RuntimeError, StaticPod};
use hostfix_adapters::HostRoot;
use hostfix_core::status::{ManifestState, RunState};

use crate::{RuntimeChoice, Settings};

pub struct Local {
    pub config: LocalConfig,
    pub root: HostRoot,
    pub static_pod: Option<StaticPod>,
    pub docker: Option<DockerRuntime>,
}

impl Local {
    pub async fn discover(g: &Settings) -> Result<Local, RuntimeError> {
        let root = g.root();
        let sp = StaticPod { root: root.clone(), manifest: g.manifest_path(), state_dir: g.state_dir() };
        let docker_local = |docker: DockerRuntime| async {
            let config = match docker.load(&g.container).await {
                // A repair killed mid-recreate left the container under its aside name.
                Err(RuntimeError::NoContainer { .. }) if !docker.asides(&g.container).await?.is_empty() => {
                    let aside = docker.asides(&g.container).await?.remove(0);
                    LocalConfig { container: Some(g.container.clone()), ..docker.load(&aside).await? }
                }
                other => other?,
            };
            Ok::<_, RuntimeError>(Local { config, root: root.clone(), static_pod: None, docker: Some(docker) })
        };
        match g.runtime {
            RuntimeChoice::StaticPod => {
                Ok(Local { config: sp.load()?, root: root.clone(), static_pod: Some(sp), docker: None })
            }
            RuntimeChoice::Docker => docker_local(DockerRuntime::connect(g.docker_host.as_deref()).await?).await,
            RuntimeChoice::Auto => match sp.load() {
                Ok(config) => Ok(Local { config, root: root.clone(), static_pod: Some(sp), docker: None }),
                // A manifest that exists but is broken is the answer, not a reason to look
                // elsewhere: the operator must see what is wrong with it.
                Err(e @ (RuntimeError::Manifest { .. } | RuntimeError::Read { .. })) => Err(e),
                Err(static_err) => {
                    let docker = match DockerRuntime::connect(g.docker_host.as_deref()).await {
                        Ok(d) => d,
                        Err(e) => {
                            return Err(RuntimeError::NothingFound {
                                static_pod: static_err.to_string(),
                                docker: e.to_string(),
                            })
                        }
                    };
                    match docker_local(docker).await {
                        Ok(l) => Ok(l),
                        Err(e) => {
                            Err(RuntimeError::NothingFound { static_pod: static_err.to_string(), docker: e.to_string() })
                        }
                    }
                }
            },
        }
    }

    /// The client TLS files: explicit overrides first, else the member's own. kubeadm
    /// keeps a client-only `healthcheck-client` pair beside the CA, which is what a health
    /// checker should present; without one (RKE), the server pair is used, as the seeds do.
    pub fn tls_files(&self, g: &Settings) -> (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
        let f = self.config.flags.server_tls();
        let host = |p: &Option<String>| p.as_ref().map(|p| self.config.host_path(&self.root, p));
        let ca = g.cacert.clone().or_else(|| host(&f.ca));
        let mut cert = host(&f.cert);
        let mut key = host(&f.key);
        if let Some(dir) = host(&f.ca).as_ref().and_then(|c| c.parent().map(PathBuf::from)) {
            let (hc, hk) = (dir.join("healthcheck-client.crt"), dir.join("healthcheck-client.key"));
            if hc.exists() && hk.exists() {
                cert = Some(hc);
                key = Some(hk);
            }
        }
        (ca, g.cert.clone().or(cert), g.key.clone().or(key))
    }

    pub fn connector(&self, g: &Settings) -> Result<Connector> {
        let (ca, cert, key) = self.tls_files(g);
        let uses_tls = self.local_client_url().map(|u| u.starts_with("https")).unwrap_or(true)
            || g.endpoints.iter().any(|e| e.starts_with("https"));
        let tls = match ca {
            Some(ca) if uses_tls => Some(
                ClientTls::load(&ca, cert.as_deref(), key.as_deref())
                    .with_context(|| "loading the client certificates of the local member")?,
            ),
            _ => None,
        };
        Ok(Connector::new(tls, g.timeout))
    }

    /// The member's data dir (`--data-dir`) as a host path.
    pub fn data_dir(&self) -> PathBuf {
        self.config.host_path(&self.root, &self.config.flags.data_dir())
    }

    pub fn local_client_url(&self) -> Option<String> {
        let f = &self.config.flags;
        f.advertise_client_urls().into_iter().next().or_else(|| f.list("listen-client-urls").into_iter().next())
    }

    pub fn local_peer_url(&self) -> Option<String> {
        self.config.flags.initial_advertise_peer_urls().into_iter().next()
    }

    /// Endpoints to try for the member list: the local member first, then the peers named in
    /// `--initial-cluster`, whose client URL is assumed to be the peer host on port 2379 with
    /// the local member's scheme (kubeadm's and RKE's layout), for when the local member is down.
    /// The member list and a probe of every member, asked of the peers first and of the
    /// local member last: a member with a foreign or rolled-back data dir lists its own idea
    /// of the cluster. `None` when nobody answers.
    pub async fn cluster_view(&self, g: &Settings, conn: &Connector) -> Option<(MemberList, Vec<MemberStatus>)> {
        self.cluster_view_or_why(g, conn).await.ok()
    }

    /// [`Local::cluster_view`], or how each endpoint failed when none answered.
    pub async fn cluster_view_or_why(&self, g: &Settings, conn: &Connector) -> Result<(MemberList, Vec<MemberStatus>), Vec<hostfix_adapters::etcd::EtcdError>> {
        let mut endpoints = self.candidate_endpoints(g);
        if let Some(u) = self.local_client_url() {
            endpoints.retain(|e| *e != u);
            endpoints.push(u);
        }
        let (_, list) = crate::probe::member_list(conn, &endpoints).await?;
        tracing::debug!(members = list.members.len(), "member list");
        let probed = futures_util::future::join_all(list.members.iter().map(|m| crate::probe::probe_member(conn, m))).await;
        Ok((list, probed))
    }

    /// The first member that answers a status call, the local one first (`keys`, `check perf`).
    pub async fn first_answering(&self, g: &Settings, conn: &Connector) -> anyhow::Result<hostfix_adapters::etcd::Endpoint> {
        let mut last = String::new();
        for url in self.candidate_endpoints(g) {
            match conn.connect(&url).await {
                Ok(mut ep) => match ep.status().await {
                    Ok(_) => return Ok(ep),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
        }
        Err(anyhow::anyhow!("no member answers ({last})"))
    }

    /// The other members as `--initial-cluster` names them, each probed at the client URL
    /// its peer URL implies: what is known of the peers when no member list can be had,
    /// or when the member list itself is in question (disaster recovery).
    pub async fn probe_configured_peers(&self, conn: &Connector) -> Vec<(PeerEntry, MemberStatus)> {
        let name = self.config.flags.name().to_string();
        let peer_url = self.local_peer_url();
        let others: Vec<PeerEntry> = self
            .config
            .flags
            .initial_cluster()
            .into_iter()
            .filter(|e| Some(&e.peer_url) != peer_url.as_ref() && e.name != name)
            .collect();
        futures_util::future::join_all(others.into_iter().map(|e| async move {
            let url = self.client_url_for_peer(&e.peer_url).unwrap_or_default();
            let m = configured(&e.name, &e.peer_url, &url);
            let s = crate::probe::probe_member(conn, &m).await;
            (e, s)
        }))
        .await
    }

    /// Where to ask for the member list: `--endpoints` if given; else the local member, the
    /// peers `--initial-cluster` names, then the members the daemon last saw
    /// ([`known_peers_path`]).
    pub fn candidate_endpoints(&self, g: &Settings) -> Vec<String> {
        if !g.endpoints.is_empty() {
            return g.endpoints.clone();
        }
        let mut out: Vec<String> = self.local_client_url().into_iter().collect();
        let configured = self.config.flags.initial_cluster().into_iter().filter_map(|p| self.client_url_for_peer(&p.peer_url));
        let known = read_known_peers(&g.state_dir()).into_iter().flat_map(|p| p.client_urls);
        for url in configured.chain(known) {
            if !out.contains(&url) {
                out.push(url);
            }
        }
        out
    }

    /// A peer's client URL, assumed to be its peer host on port 2379 with the local
    /// member's scheme (kubeadm's and RKE's layout).
    pub fn client_url_for_peer(&self, peer_url: &str) -> Option<String> {
        let scheme = self.local_client_url().and_then(|u| u.split_once("://").map(|x| x.0.to_string())).unwrap_or("https".into());
        let hostport = peer_url.split_once("://").map(|x| x.1)?;
        let host = hostport.rsplit_once(':').map(|x| x.0).unwrap_or(hostport);
        Some(format!("{scheme}://{host}:2379"))
    }
}

/// The members the daemon last saw in a cluster that served quorum reads, written by it on
/// change, read by every command: `<state>/daemon/known-peers.json`. kubeadm writes
/// `--initial-cluster` as the cluster was when the member joined (the first master's names
/// only itself, a joiner's only the members before it), so on those masters, with the local
/// member down, the configuration alone names no peer to ask. These are only places to
/// ask, after the configured ones: the member list itself always comes from a member that
/// presents a certificate of this member's CA, so a stale entry costs one timeout (an
/// address reused by another cluster fails the TLS check: kubeadm makes a CA per cluster).
pub fn known_peers_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("daemon").join("known-peers.json")
}

pub use hostfix_core::peers::KnownPeer;

/// [`known_peers_path`]'s members; none when the file is missing or unreadable (it is a
/// hint, and a command must not fail on it).
pub fn read_known_peers(state_dir: &std::path::Path) -> Vec<KnownPeer> {
    std::fs::read_to_string(known_peers_path(state_dir)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// A member as the local configuration names it, in the form the status probe takes.
pub fn configured(name: &str, peer_url: &str, client_url: &str) -> Member {
    Member { id: 0, name: name.into(), peer_urls: vec![peer_url.into()], client_urls: vec![client_url.into()], is_learner: false }
}

/// What the runtime shows about the local member's process.
#[derive(Debug, Clone)]
pub struct RuntimeView {
    pub state: RunState,
    pub restarts: u32,
    pub container_state: Option<String>,
    pub log: Option<PathBuf>,
    pub last_log_line: Option<String>,
    /// The newest run's log text (a bounded tail), for diagnose.
    pub log_tail: String,
}

/// Bound on what diagnose reads of a log: etcd's last words are at the end.
pub const LOG_TAIL_BYTES: u64 = 256 * 1024;
pub const DOCKER_LOG_LINES: usize = 2000;

impl Local {
    /// Running, crashlooping or stopped, from the runtime plus whether the member's own
    /// endpoint answers. For a static pod the kubelet is not asked (it may be down with the
    /// API): its CRI log files tell the restart count.
    pub async fn runtime_view(&self, g: &Settings, endpoint_answers: bool) -> Result<RuntimeView, RuntimeError> {
        match (&self.static_pod, &self.docker) {
            (Some(sp), _) => {
                let logs = sp.pod_logs(LOG_TAIL_BYTES);
                let restarts = logs.as_ref().map(|l| l.restarts).unwrap_or(0);
                let state = match (self.config.manifest_state, endpoint_answers) {
                    (Some(ManifestState::Present), true) => RunState::Running,
                    (Some(ManifestState::Present), false) if restarts > 0 => RunState::Crashlooping,
                    (Some(ManifestState::Present), false) => RunState::Unknown,
                    _ => RunState::Stopped,
                };
                Ok(RuntimeView {
                    state,
                    restarts,
                    container_state: None,
                    log: logs.as_ref().map(|l| l.file.clone()),
                    last_log_line: logs.as_ref().and_then(|l| l.last_line.clone()),
                    log_tail: logs.map(|l| l.tail).unwrap_or_default(),
                })
            }
            (None, Some(d)) => {
                let st = d.state(&g.container).await?;
                let state = match (st.status.as_str(), endpoint_answers) {
                    ("running", true) => RunState::Running,
                    ("restarting", _) => RunState::Crashlooping,
                    ("running", false) if st.restart_count > 0 => RunState::Crashlooping,
                    ("exited" | "created" | "dead", _) => RunState::Stopped,
                    _ => RunState::Unknown,
                };
                let tail = d.logs_tail(&g.container, DOCKER_LOG_LINES).await?;
                Ok(RuntimeView {
                    state,
                    restarts: st.restart_count.max(0) as u32,
                    last_log_line: tail.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string),
                    container_state: Some(st.status),
                    log: None,
                    log_tail: tail,
                })
            }
            (None, None) => unreachable!("discover always sets a runtime"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_peers_file_is_a_hint() {
        let known = vec![KnownPeer { name: "m2".into(), client_urls: vec!["https://10.0.0.2:2379".into()] }];
        let d = tempfile::tempdir().unwrap();
        assert!(read_known_peers(d.path()).is_empty());
        std::fs::create_dir_all(d.path().join("daemon")).unwrap();
        std::fs::write(known_peers_path(d.path()), serde_json::to_string(&known).unwrap()).unwrap();
        assert_eq!(read_known_peers(d.path()), known);
        std::fs::write(known_peers_path(d.path()), "{torn").unwrap();
        assert!(read_known_peers(d.path()).is_empty(), "a hint that cannot be read is no hint");
    }
}
