//! `etcd-hostfix daemon`: watch the local member and heal it by itself.
//!
//! A loop over watchers (the manifests directory, the kubelet's CRI log directory, Docker
//! events) and a probe every `probe_interval` (of the local member alone while it is
//! healthy, and of its peers too every `peer_probe_interval` or when anything changes).
//! Each turn makes one [`Observation`], hands it with the clock to the core's pure policy,
//! and carries out the decision: nothing, wait, alert, or run the rejoin playbook in-process, through the same journal and locks as the
//! CLI. The repair runs as its own task, so the loop keeps observing, reporting and
//! feeding the systemd watchdog while it runs. Like mini-redis's `run(listener, shutdown)`,
//! [`run`] takes its shutdown signal from the caller.

pub mod agents;
pub mod files;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod report;
pub mod snapshots;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hostfix_core::config::DaemonConfig;
use hostfix_core::diagnose::Class;
use hostfix_core::policy::{decide, Decision, PolicyState};
use hostfix_playbooks::local::Local;
use hostfix_playbooks::rejoin::{self, Outcome, Prepared, RejoinOptions};
use hostfix_playbooks::{Reporter, Settings};
use tracing::{error, info, info_span, warn, Instrument};

use crate::files::{DaemonStatus, LastRepair};
use crate::metrics::{ClassLabel, DecisionLabel, Metrics, RepairLabel};
use crate::notify::Notifier;
use crate::observe::{Seen, World};
use crate::report::{DaemonReporter, Incident, IncidentFile, Observed};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Metrics { addr: String, source: std::io::Error },
    #[error(transparent)]
    Files(#[from] files::FilesError),
}

/// The wall clock as the policy sees it: time since the Unix epoch. Wall time, not
/// monotonic, because the budget and the circuit breaker are persisted across restarts.
fn now() -> Duration {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

struct Repair {
    task: tokio::task::JoinHandle<RepairEnd>,
    progress: Arc<std::sync::Mutex<report::Progress>>,
}

struct RepairEnd {
    /// What the policy learns from it.
    end: hostfix_core::policy::RepairEnd,
    result: &'static str,
    incident: Option<PathBuf>,
}

/// Errors that say this host's layout or sandbox stopped the repair, not the cluster: a
/// path the unit may not write (EROFS, EACCES, EPERM) or a rename across mounts (EXDEV).
/// Retrying cannot change them; the policy alerts with the remedy instead.
fn host_cause(e: &anyhow::Error) -> Option<String> {
    let io = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>())?;
    let remedy = match io.raw_os_error()? {
        libc::EROFS | libc::EACCES | libc::EPERM => {
            "the unit may not write there: check ReadWritePaths= in the unit (systemctl cat etcd-hostfix) and the path's mount and permissions"
        }
        libc::EXDEV => "a rename crossed mounts: check the unit's ReadWritePaths= and --state-dir against the data dir's mounts",
        _ => return None,
    };
    Some(format!("{e:#}; {remedy}"))
}

pub async fn run(settings: Settings, config: DaemonConfig, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let state_dir = settings.state_dir();
    hostfix_playbooks::secure_state_dir(&state_dir).map_err(|source| DaemonError::Files(files::FilesError::Io { path: state_dir.clone(), source }))?;
    if let Some(w) = config.metrics_exposure() {
        tracing::warn!(metrics = %config.metrics_listen, "{w}");
    }
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind(&config.metrics_listen)
        .await
        .map_err(|source| DaemonError::Metrics { addr: config.metrics_listen.clone(), source })?;
    let server = metrics::serve(listener, metrics.clone());
    let notifier = Notifier::from_env();
    let policy_cfg = config.policy();
    let mut pstate: PolicyState = files::read_json(&files::policy_path(&state_dir)).ok().flatten().unwrap_or_default();
    let mut world = World::new(settings.clone());
    let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<&'static str>(16);
    let _watchers = watch::start(&settings, wake_tx);
    let mut snaps = snapshots::Scheduler::new(&config, &state_dir);
    // The agent's record in etcd, for `status`'s fleet view on every master.
    let publisher = agents::Publisher::start(settings.clone(), config.probe_interval, metrics.clone());
    info!(mode = ?config.mode, host_root = %settings.host_root.display(), state_dir = %state_dir.display(), metrics = %config.metrics_listen, "etcd-hostfix daemon started");

    tokio::pin!(shutdown);
    let mut ready = false;
    let mut repair: Option<Repair> = None;
    let mut last_said = String::new();
    let mut last_repair: Option<LastRepair> = files::read_json::<DaemonStatus>(&files::status_path(&state_dir))
        .ok()
        .flatten()
        .and_then(|s| s.last_repair);
    let mut next_tick = Instant::now();
    let mut last_status = (String::new(), Instant::now());
    let mut signature: Option<(Class, Option<Duration>)> = None;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let woke_by = tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(wait) => "probe",
            w = wake.recv() => w.unwrap_or("probe"),
        };
        if woke_by == "probe" {
            next_tick = Instant::now() + config.probe_interval;
        } else {
            // Debounce: a rename or an editor's save is several events; look once, after them.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while wake.try_recv().is_ok() {}
        }
        notifier.watchdog();

        // A repair in flight: report its progress; decide nothing until it ends.
        if let Some(r) = &repair {
            if !r.task.is_finished() {
                let line = r.progress.lock().unwrap().current.clone().unwrap_or_else(|| "healing".into());
                notifier.status(&line);
                if let Ok(Some(mut st)) = files::read_json::<DaemonStatus>(&files::status_path(&state_dir)) {
                    st.repairing = Some(line);
                    st.decision = "heal".into();
                    st.updated_at = files::now_rfc3339();
                    let _ = files::write_json(&files::status_path(&state_dir), &st);
                }
                continue;
            }
            let r = repair.take().unwrap();
            world.forget();
            let end = r.task.await.unwrap_or(RepairEnd { end: hostfix_core::policy::RepairEnd::Failed, result: "failed", incident: None });
            metrics.repairing.set(0);
            pstate.repair_ended(now(), end.end.clone());
            let _ = files::write_json(&files::policy_path(&state_dir), &pstate);
            if let Some(inc) = end.incident {
                last_repair = Some(LastRepair {
                    playbook: "rejoin".into(),
                    result: end.result.into(),
                    ended_at: files::now_rfc3339(),
                    incident: inc.display().to_string(),
                });
            }
        }
        if files::resume_path(&state_dir).exists() {
            world.forget();
            pstate.reset();
            let _ = std::fs::remove_file(files::resume_path(&state_dir));
            let _ = files::write_json(&files::policy_path(&state_dir), &pstate);
            info!("resumed: circuit closed, failures forgotten");
        }

        let seen = match world.observe(woke_by != "probe", config.peer_probe_interval).await {
            Ok(s) => s,
            Err(e) => {
                let line = format!("cannot observe the local member: {e:#}");
                if line != last_said {
                    error!("{line}");
                    last_said = line.clone();
                }
                notifier.status(&line);
                // `etcd-hostfix status` must not keep showing the last good look as if it
                // were current: the condition is unknown, and nothing is done about it.
                let path = files::status_path(&state_dir);
                let mut st = files::read_json::<DaemonStatus>(&path).ok().flatten().unwrap_or_default();
                st.pid = std::process::id();
                st.class = "unknown".into();
                st.evidence = vec![format!("{e:#}")];
                st.decision = "nothing".into();
                st.why = format!("no action: {line}");
                st.updated_at = files::now_rfc3339();
                let _ = files::write_json_if_changed(&path, &st);
                continue;
            }
        };
        let t = now();
        // When the condition's signature was first logged, taken at the daemon's first sight
        // of the class (later runs of a crashloop log it again, later).
        if seen.obs.class == Class::Healthy {
            signature = None;
        } else if signature.as_ref().map(|(c, _)| *c) != Some(seen.obs.class) {
            let at = seen.finding.signature_at.as_deref().and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok());
            signature = Some((seen.obs.class, at.map(|a| Duration::from_secs_f64((a.unix_timestamp_nanos() as f64 / 1e9).max(0.0)))));
        }
        let decision = decide(&policy_cfg, &mut pstate, &seen.obs, t);
        let _ = files::write_json_if_changed(&files::policy_path(&state_dir), &pstate);
        report_decision(&metrics, &seen, &decision, &pstate, &policy_cfg, t, &mut last_said);
        let summary = decision.summary();
        let status_line = status_line(&seen, &decision, last_repair.as_ref());
        if !ready {
            notifier.ready(&status_line);
            ready = true;
        } else {
            notifier.status(&status_line);
        }
        let mut st = DaemonStatus {
            pid: std::process::id(),
            mode: format!("{:?}", config.mode).to_lowercase(),
            paused: files::read_json(&files::pause_path(&state_dir)).ok().flatten(),
            member: seen.obs.member.clone(),
            class: seen.obs.class.as_str().into(),
            evidence: seen.finding.evidence.clone(),
            decision: decision.kind().into(),
            why: summary.clone(),
            repairing: None,
            last_repair: last_repair.clone(),
            budget_left: pstate.budget_left(&policy_cfg, t),
            circuit_open: pstate.circuit_open,
            updated_at: files::now_rfc3339(),
        };

        if let Decision::Heal { resume, reason, .. } = &decision {
            let own = pstate.class_since.as_ref().map(|(_, since)| t.saturating_sub(*since));
            let logged = signature.as_ref().filter(|(c, _)| *c == seen.obs.class).and_then(|(_, at)| *at);
            let detection = logged.map(|at| t.saturating_sub(at)).or(own);
            pstate.repair_started(t);
            st.budget_left = pstate.budget_left(&policy_cfg, t);
            let _ = files::write_json(&files::policy_path(&state_dir), &pstate);
            metrics.repairing.set(1);
            if let Some(d) = detection {
                metrics.detection_latency.set(d.as_secs_f64());
            }
            if let Some(d) = own {
                metrics.detection_daemon.set(d.as_secs_f64());
            }
            let file = IncidentFile::open(&state_dir, "rejoin", *resume, || Incident {
                playbook: "rejoin".into(),
                member: seen.obs.member.clone(),
                started_at: files::now_rfc3339(),
                observed: Observed {
                    class: seen.finding.class.as_str().into(),
                    from_previous_run: seen.finding.from_previous_run,
                    evidence: seen.finding.evidence.clone(),
                    notes: seen.finding.notes.clone(),
                    log_source: seen.log_source.clone(),
                },
                why: reason.clone(),
                detection_latency_ms: detection.map(|d| d.as_millis() as u64),
                daemon_latency_ms: own.map(|d| d.as_millis() as u64),
                ..Default::default()
            });
            let rep = DaemonReporter::new(&seen.obs.member, "rejoin", metrics.clone(), notifier.clone(), file);
            let progress = rep.progress.clone();
            let span = info_span!("repair", member = %seen.obs.member, playbook = "rejoin", resume = *resume);
            let task = tokio::spawn(run_rejoin(settings.clone(), rep, metrics.clone(), config.backup_max_age(), config.archive_keep as usize).instrument(span));
            st.repairing = Some(format!("healing {}: starting", seen.obs.member));
            repair = Some(Repair { task, progress });
        } else if seen.obs.class == Class::Healthy && seen.obs.paused.is_none() {
            snaps.tick(&world, &metrics).await;
        }
        let since = st.paused.as_ref().and_then(|p| time::OffsetDateTime::parse(&p.since, &time::format_description::well_known::Rfc3339).ok());
        metrics.paused_since.set(since.map(|t| t.unix_timestamp()).unwrap_or(0));
        publisher.set(agent_record(&st, &state_dir));
        // Rewritten when it says something new, and every 10 s so that `updated_at` shows
        // the daemon is alive; not every probe.
        let body = serde_json::to_string(&DaemonStatus { updated_at: String::new(), ..st.clone() }).unwrap_or_default();
        if body != last_status.0 || last_status.1.elapsed() >= Duration::from_secs(10) {
            let _ = files::write_json(&files::status_path(&state_dir), &st);
            last_status = (body, Instant::now());
        }
    }

    notifier.stopping();
    if let Some(r) = repair {
        // A repair is never cut short on purpose: its journal could resume it, but a
        // finished repair is better than a resumed one.
        info!("stopping: waiting for the running repair to end");
        let _ = r.task.await;
    }
    server.abort();
    info!("etcd-hostfix daemon stopped");
    Ok(())
}

/// What this agent publishes in etcd: the status, without what only this host needs.
fn agent_record(st: &DaemonStatus, state_dir: &std::path::Path) -> hostfix_core::agent::AgentRecord {
    use hostfix_core::agent::{AgentPause, AgentRecord, AgentRepair};
    let t = now();
    AgentRecord {
        member: st.member.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        mode: st.mode.clone(),
        paused: st.paused.as_ref().map(|p| AgentPause { reason: p.reason.clone(), since: p.since.clone() }),
        circuit_open: st.circuit_open,
        budget_left: st.budget_left,
        class: st.class.clone(),
        decision: st.decision.clone(),
        why: st.why.clone(),
        last_repair: st.last_repair.as_ref().map(|l| AgentRepair { playbook: l.playbook.clone(), result: l.result.clone(), ended_at: l.ended_at.clone() }),
        newest_snapshot_unix: snapshots::list(&state_dir.join("snapshots")).last().map(|k| k.unix),
        updated_unix: t.as_secs(),
        updated_at: files::now_rfc3339(),
    }
}

/// One journald entry per change of decision (not per probe), and the metrics every turn.
fn report_decision(
    m: &Metrics,
    seen: &Seen,
    d: &Decision,
    st: &PolicyState,
    cfg: &hostfix_core::policy::PolicyConfig,
    t: Duration,
    last_said: &mut String,
) {
    let o = &seen.obs;
    m.member_healthy.set(i64::from(o.class == Class::Healthy));
    m.set_class(o.class.as_str());
    m.budget_left.set(i64::from(st.budget_left(cfg, t)));
    m.circuit_open.set(i64::from(st.circuit_open));
    m.paused.set(i64::from(o.paused.is_some()));
    let summary = d.summary();
    // Deadlines move every second; the decision is the same while its words are.
    let key = format!("{}|{}|{}", o.class.as_str(), d.kind(), summary);
    if key == *last_said {
        return;
    }
    *last_said = key;
    m.decisions.get_or_create(&DecisionLabel { decision: d.kind().into() }).inc();
    let evidence = seen.finding.evidence.join(" | ");
    match d {
        Decision::Alert { class, .. } => {
            m.alerts.get_or_create(&ClassLabel { class: class.as_str().into() }).inc();
            error!(member = %o.member, class = o.class.as_str(), decision = d.kind(), evidence = %evidence, "{summary}");
        }
        Decision::Heal { playbook, .. } => {
            warn!(member = %o.member, class = o.class.as_str(), decision = d.kind(), playbook = playbook.as_str(), evidence = %evidence, "{summary}")
        }
        _ => info!(member = %o.member, class = o.class.as_str(), decision = d.kind(), "{summary}"),
    }
}

/// `m3 healthy · last repair 2 h ago`, or what it waits for, or why it does not act.
fn status_line(seen: &Seen, d: &Decision, last: Option<&LastRepair>) -> String {
    let mut s = format!("{} {}", seen.obs.member, seen.obs.class.as_str());
    match d {
        Decision::Nothing { .. } if seen.obs.class == Class::Healthy => {}
        d => s.push_str(&format!(" · {}", d.summary())),
    }
    if let Some(l) = last {
        s.push_str(&format!(" · last repair {} at {}", l.result, l.ended_at));
    }
    s
}

/// The rejoin playbook, as the CLI runs it with `--yes`, reported to the daemon's sinks.
async fn run_rejoin(settings: Settings, rep: DaemonReporter, metrics: Arc<Metrics>, backup_max_age: Duration, archive_keep: usize) -> RepairEnd {
    let started = Instant::now();
    let opts = RejoinOptions {
        force: false,
        lock_timeout: Duration::from_secs(60),
        wait: Duration::from_secs(300),
        backup: hostfix_core::backup::BackupMode::Auto,
        backup_max_age,
        // Never --force, so never after a step back in time: nothing to bounce.
        no_apiserver_restart: false,
        keep_archives: archive_keep,
    };
    let r: anyhow::Result<Option<(String, bool)>> = async {
        let local = Local::discover(&settings).await?;
        let conn = local.connector(&settings)?;
        let (plan, resumed) = match rejoin::prepare(&settings, &local, &conn, &opts, &rep).await? {
            Prepared::Refused(why) => return Ok(Some((why, false))),
            Prepared::Plan { plan, resumed } => (plan, resumed),
        };
        let (header, steps) = rejoin::describe(&settings, &local, &plan);
        rep.plan("rejoin", &header, &steps);
        match rejoin::execute(&settings, &local, &conn, &plan, resumed, &opts, &rep).await? {
            Outcome::Refused(why) => Ok(Some((why, false))),
            Outcome::HostRefused(why) => Ok(Some((why, true))),
            Outcome::Done { history } => {
                rep.note(&format!("rejoin complete: {} is a healthy voter again (journal kept at {})", plan.name, history.display()));
                Ok(None)
            }
        }
    }
    .await;
    use hostfix_core::policy::RepairEnd as End;
    let (end, result, err) = match r {
        Ok(None) => (End::Healed, "healed", None),
        Ok(Some((why, host))) => {
            let e = format!("refused: {why}; nothing was changed");
            (if host { End::HostBlocked(why) } else { End::Failed }, "refused", Some(e))
        }
        Err(e) => (host_cause(&e).map(End::HostBlocked).unwrap_or(End::Failed), "failed", Some(format!("{e:#}"))),
    };
    metrics.repairs.get_or_create(&RepairLabel { playbook: "rejoin".into(), result: result.into() }).inc();
    metrics.repair_duration.observe(started.elapsed().as_secs_f64());
    match &err {
        None => info!(member = %rep.member, playbook = "rejoin", result, elapsed_ms = started.elapsed().as_millis() as u64, "repair ended"),
        Some(e) => error!(member = %rep.member, playbook = "rejoin", result, error = %e, "repair ended"),
    }
    // A refusal changed nothing: there is no repair to keep a record of, only the log.
    let fresh = {
        let p = rep.progress.lock().unwrap();
        p.file.incident.steps.is_empty() && p.file.incident.resumed == 0
    };
    let incident = if result == "refused" && fresh {
        // Only this run's own, still empty record: nothing happened to keep a record of.
        let p = rep.progress.lock().unwrap().file.path.clone();
        let _ = std::fs::remove_file(&p);
        None
    } else {
        let path = rep.finish(result, err).0;
        files::prune_incidents(&settings.state_dir(), files::INCIDENTS_KEPT);
        Some(path)
    };
    RepairEnd { end, result, incident }
}
