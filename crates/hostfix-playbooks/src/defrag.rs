//! `defrag`, the NOSPACE playbook: compact, defragment every member in turn (the leader
//! last, each back to serving quorum reads before the next), then disarm NOSPACE only when
//! every db is below the quota. Nothing is moved or deleted; a rerun simply does it again,
//! so there is no journal. The cluster-wide lock serialises it with the repairs.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hostfix_adapters::etcd::{Connector, LockAttempt};
use hostfix_core::defrag::{may_disarm, plan_defrag, quota_from_flag, DefragPlan, DefragStep};
use hostfix_core::status::human_bytes;
use tracing::{info, info_span, Instrument};

use crate::local::Local;
use crate::lock::{cluster_lock_holder, FileLock, LOCK_KEY, LOCK_TTL};
use crate::{Reporter, Settings};

pub struct DefragOptions {
    pub lock_timeout: Duration,
    /// Upper bound for each member's defrag and for its return to quorum reads.
    pub wait: Duration,
}

pub enum Prepared {
    Refused(String),
    Plan(DefragPlan),
}

pub async fn prepare(g: &Settings, local: &Local, conn: &Connector) -> Result<Prepared> {
    let (_, probed) = local
        .cluster_view(g, conn)
        .await
        .ok_or_else(|| anyhow!("no member answers at {}", local.candidate_endpoints(g).join(", ")))?;
    let revision = probed.iter().filter_map(|m| m.revision).max().unwrap_or(0);
    let quota = quota_from_flag(local.config.flags.get("quota-backend-bytes")).map_err(|e| anyhow!("{e}"))?;
    Ok(match plan_defrag(&probed, revision, quota) {
        Ok(p) => Prepared::Plan(p),
        Err(why) => Prepared::Refused(why),
    })
}

pub fn describe(plan: &DefragPlan) -> (String, Vec<(String, String)>) {
    let mut header = format!("defrag plan (quota {}):", human_bytes(plan.quota));
    for (name, db, used) in &plan.before {
        header.push_str(&format!("\n  {name}: db {}, in use {}", human_bytes(*db), human_bytes(*used)));
    }
    let steps = plan
        .steps
        .iter()
        .map(|s| match s {
            DefragStep::Compact { revision } => {
                ("compact".to_string(), format!("compact to revision {revision}, physically (skipped if a newer compaction exists)"))
            }
            DefragStep::Defrag { name, url } => {
                ("defrag".to_string(), format!("defragment {name} ({url}), then wait until it serves quorum reads again"))
            }
            DefragStep::Disarm => ("disarm".to_string(), "disarm NOSPACE, only if every member's db is below the quota".to_string()),
        })
        .collect();
    (header, steps)
}

pub struct Done {
    /// (name, db size, in use) after, in plan order.
    pub after: Vec<(String, i64, i64)>,
    pub compacted: bool,
    /// The alarms disarmed, or why they stay.
    pub disarm: Option<Result<usize, String>>,
}

pub enum Outcome {
    Refused(String),
    Done(Done),
}

pub async fn execute(g: &Settings, local: &Local, conn: &Connector, plan: &DefragPlan, o: &DefragOptions, rep: &dyn Reporter) -> Result<Outcome> {
    let state_dir = g.state_dir();
    let _flock = match FileLock::take(&state_dir)? {
        Some(l) => l,
        None => return Ok(Outcome::Refused(format!("another etcd-hostfix run holds {}", crate::lock::lock_path(&state_dir).display()))),
    };
    let (_, leader_last) = *plan.members().last().ok_or_else(|| anyhow!("no member to defragment"))?;
    let mut peer = conn.connect(leader_last).await?;
    let holder = format!("{}-defrag", local.config.flags.name());
    // NOSPACE refuses every write, the lock's too: then it is enough that nobody holds it,
    // since nobody else can take it either until the alarm is gone.
    let deadline = Instant::now() + o.lock_timeout;
    let lease = loop {
        match peer.try_lock(LOCK_KEY, &holder, LOCK_TTL).await {
            Ok(LockAttempt::Acquired(lease)) => break Some(lease),
            Ok(LockAttempt::HeldBy(other)) if Instant::now() > deadline => {
                _flock.undo();
                return Ok(Outcome::Refused(format!("{other} holds the repair lock {LOCK_KEY} (waited {:?})", o.lock_timeout)));
            }
            Ok(LockAttempt::HeldBy(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) if e.to_string().contains("database space exceeded") => match cluster_lock_holder(&mut peer).await? {
                Some(other) => {
                    _flock.undo();
                    return Ok(Outcome::Refused(format!("{other} holds the repair lock {LOCK_KEY}")));
                }
                None => {
                    rep.note("note: NOSPACE refuses the cluster-wide lock's write; no other run holds it, and none can take it until the alarm is disarmed");
                    break None;
                }
            },
            Err(e) => return Err(e.into()),
        }
    };
    let keeper = match lease {
        Some(l) => Some(peer.keep_alive(l, Duration::from_secs(LOCK_TTL as u64 / 3)).await?),
        None => None,
    };
    let r = run(conn, plan, o, rep).instrument(info_span!("playbook", playbook = "defrag")).await;
    if let Some(k) = keeper {
        k.abort();
    }
    if let Some(l) = lease {
        let _ = peer.unlock(LOCK_KEY, l).await;
    }
    _flock.undo();
    r.map(Outcome::Done)
}

async fn run(conn: &Connector, plan: &DefragPlan, o: &DefragOptions, rep: &dyn Reporter) -> Result<Done> {
    let total = plan.steps.len();
    let mut compacted = false;
    let mut disarm = None;
    let urls = plan.members();
    for (i, step) in plan.steps.iter().enumerate() {
        let name = match step {
            DefragStep::Compact { .. } => "compact",
            DefragStep::Defrag { .. } => "defrag",
            DefragStep::Disarm => "disarm",
        };
        rep.step_started(i + 1, total, name);
        let t = Instant::now();
        let span = info_span!("step", step = name, n = i + 1);
        async {
            match step {
                DefragStep::Compact { revision } => {
                    let mut ep = conn.connect(urls[0].1).await?;
                    compacted = ep.compact(*revision).await?;
                    if !compacted {
                        rep.note(&format!("note: a compaction at or past revision {revision} exists; not compacted again"));
                    }
                }
                DefragStep::Defrag { name, url } => {
                    let mut ep = conn.connect(url).await?;
                    ep.defragment(o.wait).await?;
                    wait_quorum_read(conn, name, url, o.wait).await?;
                    info!(member = %name, "defragmented");
                }
                DefragStep::Disarm => {
                    let sizes = sizes(conn, &urls).await?;
                    let verdict = may_disarm(&sizes.iter().map(|(n, d, _)| (n.clone(), *d)).collect::<Vec<_>>(), plan.quota);
                    disarm = Some(match verdict {
                        Ok(()) => {
                            let mut ep = conn.connect(urls[0].1).await?;
                            let alarms = ep.alarms().await?;
                            let mut n = 0;
                            for a in alarms.iter().filter(|a| a.alarm == "NOSPACE") {
                                ep.disarm(a).await?;
                                n += 1;
                            }
                            Ok(n)
                        }
                        Err(why) => Err(why),
                    });
                }
            }
            Ok::<_, anyhow::Error>(())
        }
        .instrument(span)
        .await?;
        rep.step_done(i + 1, total, name, t.elapsed());
    }
    let after = sizes(conn, &urls).await?;
    Ok(Done { after, compacted, disarm })
}

async fn sizes(conn: &Connector, urls: &[(&str, &str)]) -> Result<Vec<(String, i64, i64)>> {
    let mut out = vec![];
    for (name, url) in urls {
        let mut ep = conn.connect(url).await?;
        let st = ep.status().await?;
        out.push((name.to_string(), st.db_size, st.db_size_in_use));
    }
    Ok(out)
}

/// A defragmented member is back when it answers a quorum read.
async fn wait_quorum_read(conn: &Connector, name: &str, url: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let last = match conn.connect(url).await {
            Ok(mut ep) => match ep.health().await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(anyhow!("{name} ({url}) does not serve quorum reads {within:?} after its defrag: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
