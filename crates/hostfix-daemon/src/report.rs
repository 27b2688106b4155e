//! The daemon's renderings of a playbook's progress: journald (through tracing, with
//! fields), metrics, the incident record and sd_notify `STATUS=`. One [`Reporter`] feeds
//! them all, the same interface the CLI renders on a terminal.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostfix_playbooks::Reporter;
use serde::{Deserialize, Serialize};

use crate::files::{self, now_rfc3339};
use crate::metrics::{Metrics, StepLabel};
use crate::notify::Notifier;

/// `<state-dir>/incidents/<time>-<playbook>.json`: one per repair, rewritten as it goes, so
/// that a daemon killed mid-repair leaves a record that its successor finishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub playbook: String,
    pub member: String,
    pub started_at: String,
    /// What was observed: the class, its evidence and notes, and where the logs came from.
    pub observed: Observed,
    /// Why the daemon acted then (the policy's reason).
    pub why: String,
    /// From the first log line that showed the condition's signature (its timestamp, as the
    /// kubelet or etcd wrote it) to the start of the playbook; the daemon's own share when
    /// the log gives no time.
    pub detection_latency_ms: Option<u64>,
    /// The daemon's own share: from its first sight of the condition to the start.
    #[serde(default)]
    pub daemon_latency_ms: Option<u64>,
    /// The plan's header: which member, through which peer, and the backup it relies on.
    #[serde(default)]
    pub plan_header: Vec<String>,
    pub plan: Vec<String>,
    pub steps: Vec<StepRecord>,
    pub notes: Vec<String>,
    /// Set once the repair has ended.
    pub outcome: Option<IncidentOutcome>,
    /// The earlier tries of this same repair, when it was resumed after one failed: one
    /// record per repair, not one per try.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_tries: Vec<IncidentOutcome>,
    /// How many times a daemon took this repair up again after a restart.
    #[serde(default)]
    pub resumed: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub class: String,
    /// The class is what the run before the newest died of.
    #[serde(default)]
    pub from_previous_run: bool,
    pub evidence: Vec<String>,
    pub notes: Vec<String>,
    pub log_source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub n: usize,
    pub step: String,
    pub started_at: String,
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentOutcome {
    /// `healed`, `failed` or `refused`.
    pub result: String,
    pub error: Option<String>,
    pub ended_at: String,
    pub duration_ms: u64,
}

/// An incident and where it is written.
pub struct IncidentFile {
    pub path: PathBuf,
    pub incident: Incident,
}

impl IncidentFile {
    /// A new record, or the unfinished one a killed daemon left (a resumed repair is the
    /// same incident, not a second one). `resume`: this run resumes a repair's journal, so
    /// it adds to that repair's newest record even when an earlier try ended (failed), and
    /// that try's outcome moves to `earlier_tries`.
    pub fn open(state_dir: &Path, playbook: &str, resume: bool, fresh: impl FnOnce() -> Incident) -> IncidentFile {
        if let Some(mut f) = Self::unfinished(state_dir, playbook) {
            f.incident.resumed += 1;
            return f;
        }
        if resume {
            if let Some(mut f) = Self::failed(state_dir, playbook) {
                f.incident.resumed += 1;
                f.incident.earlier_tries.extend(f.incident.outcome.take());
                return f;
            }
        }
        let t = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let dir = files::incidents_dir(state_dir);
        let mut path = dir.join(format!("{stamp}-{playbook}.json"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = dir.join(format!("{stamp}-{playbook}-{n}.json"));
        }
        IncidentFile { path, incident: fresh() }
    }

    fn unfinished(state_dir: &Path, playbook: &str) -> Option<IncidentFile> {
        let path = files::incident_files(state_dir).pop()?;
        let incident: Incident = files::read_json(&path).ok()??;
        (incident.outcome.is_none() && incident.playbook == playbook).then_some(IncidentFile { path, incident })
    }

    fn failed(state_dir: &Path, playbook: &str) -> Option<IncidentFile> {
        let path = files::incident_files(state_dir).pop()?;
        let incident: Incident = files::read_json(&path).ok()??;
        let ended_unhealed = incident.outcome.as_ref().is_some_and(|o| o.result != "healed");
        (ended_unhealed && incident.playbook == playbook).then_some(IncidentFile { path, incident })
    }

    pub fn save(&self) {
        if let Err(e) = files::write_json(&self.path, &self.incident) {
            tracing::error!(error = %e, "cannot write the incident record");
        }
    }
}

/// Progress of the running repair, shared between the repair task and the loop.
pub struct Progress {
    pub file: IncidentFile,
    pub started: Instant,
    pub current: Option<String>,
    step_started: Option<Instant>,
}

pub struct DaemonReporter {
    pub member: String,
    pub playbook: String,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    pub progress: Arc<Mutex<Progress>>,
}

impl DaemonReporter {
    pub fn new(member: &str, playbook: &str, metrics: Arc<Metrics>, notifier: Notifier, file: IncidentFile) -> DaemonReporter {
        file.save();
        DaemonReporter {
            member: member.into(),
            playbook: playbook.into(),
            metrics,
            notifier,
            progress: Arc::new(Mutex::new(Progress { file, started: Instant::now(), current: None, step_started: None })),
        }
    }

    pub fn finish(&self, result: &str, error: Option<String>) -> (PathBuf, Duration) {
        let mut p = self.progress.lock().unwrap();
        let elapsed = p.started.elapsed();
        p.file.incident.outcome = Some(IncidentOutcome {
            result: result.into(),
            error,
            ended_at: now_rfc3339(),
            duration_ms: elapsed.as_millis() as u64,
        });
        p.file.save();
        (p.file.path.clone(), elapsed)
    }
}

impl Reporter for DaemonReporter {
    fn plan(&self, playbook: &str, header: &str, steps: &[(String, String)]) {
        tracing::info!(member = %self.member, playbook, steps = steps.len(), "{header}");
        let mut p = self.progress.lock().unwrap();
        if p.file.incident.plan.is_empty() {
            p.file.incident.plan = steps.iter().map(|(n, w)| format!("{n}: {w}")).collect();
            p.file.incident.plan_header = header.lines().map(str::to_string).collect();
        }
        p.file.save();
    }

    fn step_started(&self, n: usize, total: usize, step: &str) {
        tracing::info!(member = %self.member, playbook = %self.playbook, step, n, total, "step started");
        let status = format!("healing {}: step {n}/{total} {step}", self.member);
        self.notifier.status(&status);
        let mut p = self.progress.lock().unwrap();
        p.current = Some(status);
        p.step_started = Some(Instant::now());
        p.file.incident.steps.push(StepRecord { n, step: step.into(), started_at: now_rfc3339(), duration_ms: None });
        p.file.save();
    }

    fn step_done(&self, n: usize, total: usize, step: &str, elapsed: Duration) {
        tracing::info!(member = %self.member, playbook = %self.playbook, step, n, total, elapsed_ms = elapsed.as_millis() as u64, "step done");
        self.metrics
            .step_duration
            .get_or_create(&StepLabel { playbook: self.playbook.clone(), step: step.into() })
            .set(elapsed.as_secs_f64());
        if step == "promote" {
            self.metrics.learner_catchup.set(elapsed.as_secs_f64());
        }
        let mut p = self.progress.lock().unwrap();
        if let Some(s) = p.file.incident.steps.iter_mut().rev().find(|s| s.n == n && s.step == step) {
            s.duration_ms = Some(elapsed.as_millis() as u64);
        }
        p.file.save();
    }

    fn note(&self, msg: &str) {
        tracing::info!(member = %self.member, playbook = %self.playbook, "{msg}");
        let mut p = self.progress.lock().unwrap();
        p.file.incident.notes.push(msg.to_string());
        p.file.save();
    }
}
