//! The agent's record in etcd (see `hostfix_core::agent`): a task apart from the decision
//! loop, which only hands it the newest [`AgentRecord`]. Publishing can fail (every member
//! down, the local one parked mid-repair) or be slow; none of that may hold up a decision
//! or feed one. The task writes the record when it changed, keeps its lease alive, and marks
//! the agents it saw go silent.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hostfix_adapters::etcd::Connector;
use hostfix_core::agent::{self, AgentRecord};
use hostfix_playbooks::local::Local;
use hostfix_playbooks::Settings;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;

pub struct Publisher {
    tx: watch::Sender<Option<AgentRecord>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub fn start(settings: Settings, probe_interval: Duration, metrics: std::sync::Arc<Metrics>) -> Publisher {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(run(settings, probe_interval, rx, metrics));
        Publisher { tx, task }
    }

    /// The newest record; published when it differs from the last one written.
    pub fn set(&self, r: AgentRecord) {
        // Only a change worth writing wakes the task: the time alone changes every probe.
        self.tx.send_if_modified(|cur| {
            if agent::worth_writing(cur.as_ref(), &r) {
                *cur = Some(r);
                true
            } else {
                false
            }
        });
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // The lease is left to expire: a stopped daemon is silent, which is what it is.
        self.task.abort();
    }
}

struct Lease {
    id: i64,
    refreshed: Instant,
}

async fn run(settings: Settings, probe_interval: Duration, mut rx: watch::Receiver<Option<AgentRecord>>, metrics: std::sync::Arc<Metrics>) {
    let ttl = agent::lease_ttl(probe_interval);
    // A look at the others' records (two small serializable reads, no write) as often as
    // the lease is refreshed: a dead agent is marked silent within a third of a TTL after
    // its lease expires.
    let fleet_every = ttl / 3;
    let mut lease: Option<Lease> = None;
    let mut written: Option<AgentRecord> = None;
    let mut seen: Vec<String> = vec![];
    let mut fleet_due = Instant::now();
    let mut local: Option<Local> = None;
    // One connector (and so one TLS client per member) for as long as the member's TLS
    // files are the same ones, unchanged: a look every few seconds made a fresh TLS
    // handshake each time. A renewed certificate (kubeadm rewrites the files in place)
    // changes a file's time, and the next look dials with it.
    let mut conn: Option<(TlsFiles, Connector)> = None;
    let mut last_err = String::new();
    loop {
        // Wake on a new record, or in time to keep the lease alive (three refreshes per TTL).
        let _ = tokio::time::timeout(ttl / 3, rx.changed()).await;
        let Some(rec) = rx.borrow().clone() else { continue };
        let r: anyhow::Result<()> = async {
            // The local configuration, as last read: while a repair has the manifest parked
            // it cannot be read, and the peers it names are still the ones to write through.
            if let Ok(l) = Local::discover(&settings).await {
                local = Some(l);
            }
            let l = local.as_ref().ok_or_else(|| anyhow::anyhow!("no local etcd configuration to find the members by"))?;
            let files = tls_files(l, &settings);
            if conn.as_ref().is_none_or(|(f, _)| *f != files) {
                conn = Some((files, l.connector(&settings)?));
            }
            let c = &conn.as_ref().expect("set above").1;
            let mut ep = l.first_answering(&settings, c).await?;
            let alive = match lease.as_mut() {
                Some(le) if le.refreshed.elapsed() < ttl / 3 => true,
                Some(le) => {
                    let alive = ep.lease_refresh(le.id).await?;
                    le.refreshed = Instant::now();
                    alive
                }
                None => false,
            };
            if !alive {
                // First start, or the lease expired (cut off longer than its TTL): a new one,
                // and the record written again under it.
                lease = Some(Lease { id: ep.lease_grant(ttl.as_secs() as i64).await?, refreshed: Instant::now() });
                written = None;
            }
            let id = lease.as_ref().map(|l| l.id).unwrap_or_default();
            if agent::worth_writing(written.as_ref(), &rec) {
                ep.put_leased(&agent::agent_key(&rec.member), &serde_json::to_vec(&rec)?, id).await?;
                metrics.agent_writes.inc();
                tracing::debug!(member = %rec.member, decision = %rec.decision, why = %rec.why, fresh_lease = written.is_none(), "agent record written");
                if written.is_none() {
                    // Back after a silence (or first seen): no longer silent; and known to
                    // have an agent, so that its silence shows the moment its lease expires.
                    ep.delete_key(&agent::silent_key(&rec.member)).await?;
                    metrics.agent_writes.inc();
                    if ep.put_if_absent(&agent::known_key(&rec.member), crate::files::now_rfc3339().as_bytes()).await? {
                        metrics.agent_writes.inc();
                    }
                    info!(member = %rec.member, ttl_s = ttl.as_secs(), "agent record published in etcd");
                }
                written = Some(rec.clone());
            }
            if Instant::now() >= fleet_due {
                fleet_due = Instant::now() + fleet_every;
                let records = ep.get_prefix(agent::AGENTS_PREFIX).await?;
                // Our own record as etcd has it now: gone (deleted by hand) or not what we
                // wrote (a restore from a snapshot brings back older records, under leases
                // that may still be ours) is written again at once.
                let mine = records.iter().find(|(k, _)| *k == agent::agent_key(&rec.member)).map(|(_, v)| v.as_slice());
                if let Some(w) = &written {
                    let body = serde_json::to_vec(w)?;
                    if mine != Some(body.as_slice()) {
                        ep.put_leased(&agent::agent_key(&rec.member), &body, id).await?;
                        metrics.agent_writes.inc();
                        info!(member = %rec.member, "agent record in etcd was missing or not ours; written again");
                    }
                }
                let now: Vec<String> = names(records, agent::AGENTS_PREFIX);
                let marked: Vec<String> = names(ep.get_prefix(agent::SILENT_PREFIX).await?, agent::SILENT_PREFIX);
                let newly = agent::newly_silent(&rec.member, &seen, &now, &marked);
                for m in &newly {
                    let since = crate::files::now_rfc3339();
                    if ep.put_if_absent(&agent::silent_key(m), since.as_bytes()).await? {
                        metrics.agent_writes.inc();
                        warn!(member = %rec.member, silent = %m, "the agent of {m} went silent (its lease expired)");
                    }
                }
                metrics.fleet_silent.clear();
                for m in &now {
                    metrics.fleet_silent.get_or_create(&crate::metrics::MemberLabel { member: m.clone() }).set(0);
                }
                // Silent: marked before (by anyone) and still without a record, or marked now.
                for m in marked.iter().filter(|m| !now.contains(m)).chain(newly.iter().copied()) {
                    metrics.fleet_silent.get_or_create(&crate::metrics::MemberLabel { member: m.clone() }).set(1);
                }
                seen = now;
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => last_err.clear(),
            Err(e) => {
                let line = format!("{e:#}");
                if line != last_err {
                    warn!(error = %line, "cannot publish the agent record; trying again");
                    last_err = line;
                }
            }
        }
    }
}

/// The local member's client TLS files (CA, cert, key), each with what tells a rewrite apart.
type TlsFiles = Vec<(PathBuf, Option<FileStamp>)>;

/// A file's modification time and length. The length is there too because a rewrite within
/// one tick of a coarse filesystem clock keeps the time; a renewed certificate or key of
/// the same length written in that same tick is the one change this misses, until the
/// next rewrite or a daemon restart.
type FileStamp = (std::time::SystemTime, u64);

fn tls_files(l: &Local, settings: &Settings) -> TlsFiles {
    let (ca, cert, key) = l.tls_files(settings);
    stamps([ca, cert, key].into_iter().flatten())
}

/// Each path with its stamp; None for a file that cannot be read (missing: the connector
/// built now fails, and the one built when it appears is built with it).
fn stamps(paths: impl IntoIterator<Item = PathBuf>) -> TlsFiles {
    paths
        .into_iter()
        .map(|p| {
            let t = std::fs::metadata(&p).and_then(|m| Ok((m.modified()?, m.len()))).ok();
            (p, t)
        })
        .collect()
}

fn names(kvs: Vec<(String, Vec<u8>)>, prefix: &str) -> Vec<String> {
    kvs.into_iter().filter_map(|(k, _)| k.strip_prefix(prefix).map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connector is kept while `stamps` of the same files compare equal, so: equal while
    /// nothing is written, different after a rewrite in place (kubeadm's renewal), a
    /// removal, or a different file.
    #[test]
    fn a_rewritten_certificate_changes_the_stamp() {
        let d = tempfile::tempdir().unwrap();
        let (ca, cert) = (d.path().join("ca.crt"), d.path().join("healthcheck-client.crt"));
        std::fs::write(&ca, b"ca").unwrap();
        std::fs::write(&cert, b"old certificate").unwrap();
        let before = stamps([ca.clone(), cert.clone()]);
        assert_eq!(before, stamps([ca.clone(), cert.clone()]), "nothing written: the same connector");
        std::fs::write(&cert, b"renewed certificate, longer").unwrap();
        assert_ne!(before, stamps([ca.clone(), cert.clone()]), "rewritten in place: a new connector");
        let renewed = stamps([ca.clone(), cert.clone()]);
        std::fs::remove_file(&cert).unwrap();
        let gone = stamps([ca.clone(), cert.clone()]);
        assert_ne!(renewed, gone);
        assert_eq!(gone[1], (cert.clone(), None));
        assert_ne!(before, stamps([ca.clone(), d.path().join("other.crt")]), "another file");
    }
}
