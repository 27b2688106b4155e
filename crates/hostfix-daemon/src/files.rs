//! What the daemon keeps in `<state-dir>/daemon/`, and what `etcd-hostfix status`, `pause`
//! and `resume` read and write there. Every write is atomic (a `.part` file, then rename),
//! so a reader never sees half a file and a crash never leaves one.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid JSON: {reason}")]
    Json { path: PathBuf, reason: String },
}

pub fn daemon_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("daemon")
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), FilesError> {
    let io = |source| FilesError::Io { path: path.to_path_buf(), source };
    if let Some(d) = path.parent() {
        hostfix_adapters::private::create_dir(d).map_err(io)?;
    }
    let part = path.with_extension("json.part");
    let text = serde_json::to_string_pretty(v).map_err(|e| FilesError::Json { path: path.to_path_buf(), reason: e.to_string() })?;
    hostfix_adapters::private::write(&part, text + "\n").map_err(io)?;
    std::fs::rename(&part, path).map_err(io)
}

/// Write only when the content differs from what the file holds: a daemon probing every
/// second must not rewrite its files every second.
pub fn write_json_if_changed<T: Serialize>(path: &Path, v: &T) -> Result<(), FilesError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| FilesError::Json { path: path.to_path_buf(), reason: e.to_string() })? + "\n";
    if std::fs::read_to_string(path).map(|t| t == text).unwrap_or(false) {
        return Ok(());
    }
    write_json(path, v)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FilesError> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).map(Some).map_err(|e| FilesError::Json { path: path.to_path_buf(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FilesError::Io { path: path.to_path_buf(), source }),
    }
}

/// The pause switch: present means paused, and survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub since: String,
}

pub fn pause_path(state_dir: &Path) -> PathBuf {
    daemon_dir(state_dir).join("paused.json")
}

/// `resume` leaves this for the running daemon: close the circuit, forget the failures.
pub fn resume_path(state_dir: &Path) -> PathBuf {
    daemon_dir(state_dir).join("resume-requested")
}

pub fn status_path(state_dir: &Path) -> PathBuf {
    daemon_dir(state_dir).join("status.json")
}

pub fn policy_path(state_dir: &Path) -> PathBuf {
    daemon_dir(state_dir).join("policy.json")
}

pub fn incidents_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("incidents")
}

/// The incident records, oldest first: their names begin with the time they were opened.
pub fn incident_files(state_dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(incidents_dir(state_dir))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().map(|x| x == "json").unwrap_or(false))
        .collect();
    all.sort();
    all
}

/// How many incident records the state dir keeps: a member that cannot be healed must not
/// fill it (each is a few KiB).
pub const INCIDENTS_KEPT: usize = 100;

/// Remove all but the newest `keep` incident records (by name, which starts with the UTC
/// time). Records are the daemon's own log of what it did, not data: old ones go.
pub fn prune_incidents(state_dir: &Path, keep: usize) {
    let all = incident_files(state_dir);
    for old in all.iter().take(all.len().saturating_sub(keep)) {
        if let Err(e) = std::fs::remove_file(old) {
            tracing::warn!(path = %old.display(), error = %e, "cannot remove an old incident record");
        }
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub fn pause(state_dir: &Path, reason: &str) -> Result<Pause, FilesError> {
    let p = Pause { reason: reason.to_string(), since: now_rfc3339() };
    write_json(&pause_path(state_dir), &p)?;
    Ok(p)
}

/// Lift the pause and ask the daemon to close its circuit breaker. What was paused is
/// returned, for the message.
pub fn resume(state_dir: &Path) -> Result<Option<Pause>, FilesError> {
    let was: Option<Pause> = read_json(&pause_path(state_dir))?;
    if was.is_some() {
        let p = pause_path(state_dir);
        std::fs::remove_file(&p).map_err(|source| FilesError::Io { path: p, source })?;
    }
    let r = resume_path(state_dir);
    hostfix_adapters::private::create_dir(daemon_dir(state_dir)).map_err(|source| FilesError::Io { path: daemon_dir(state_dir), source })?;
    hostfix_adapters::private::write(&r, now_rfc3339()).map_err(|source| FilesError::Io { path: r, source })?;
    Ok(was)
}

/// What the daemon last said about itself: `etcd-hostfix status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub mode: String,
    pub paused: Option<Pause>,
    pub member: String,
    /// The current condition, as `diagnose` would classify it.
    pub class: String,
    pub evidence: Vec<String>,
    /// The last decision: its kind and, in words, why (above all, why it is *not* acting).
    pub decision: String,
    pub why: String,
    /// `heal`: a repair is running, and its progress.
    pub repairing: Option<String>,
    pub last_repair: Option<LastRepair>,
    pub budget_left: u32,
    pub circuit_open: bool,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRepair {
    pub playbook: String,
    pub result: String,
    pub ended_at: String,
    pub incident: String,
}
