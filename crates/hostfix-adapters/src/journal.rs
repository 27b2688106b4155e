//! The playbook journal: which steps of a run are done, and what they learned (new member
//! ID, archive path...). Written atomically after every step, so a run killed at any point
//! resumes from the first step not recorded, and every step is idempotent for the case where
//! it finished its work but not its journal entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("journal {path} is unreadable ({reason}); move it aside to start over")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal<P> {
    pub run_id: String,
    pub playbook: String,
    pub plan: P,
    /// Keys of completed steps (`<index>:<name>`).
    pub done: Vec<String>,
    pub data: BTreeMap<String, serde_json::Value>,
    #[serde(skip)]
    path: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.to_path_buf(), source }
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = crate::private::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl<P: Serialize + DeserializeOwned> Journal<P> {
    pub fn path_for(state_dir: &Path, playbook: &str) -> PathBuf {
        state_dir.join("journal").join(format!("{playbook}.json"))
    }

    pub fn load(state_dir: &Path, playbook: &str) -> Result<Option<Self>, JournalError> {
        let path = Self::path_for(state_dir, playbook);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(JournalError::Io { path, source: e }),
        };
        let mut j: Journal<P> =
            serde_json::from_str(&text).map_err(|e| JournalError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        j.path = path;
        Ok(Some(j))
    }

    pub fn create(state_dir: &Path, playbook: &str, run_id: String, plan: P) -> Result<Self, JournalError> {
        let path = Self::path_for(state_dir, playbook);
        crate::private::create_dir(path.parent().unwrap()).map_err(io(&path))?;
        let j = Journal { run_id, playbook: playbook.into(), plan, done: vec![], data: BTreeMap::new(), path };
        j.save()?;
        Ok(j)
    }

    pub fn save(&self) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec_pretty(self).expect("journal serialises");
        write_atomic(&self.path, &bytes).map_err(io(&self.path))
    }

    pub fn is_done(&self, key: &str) -> bool {
        self.done.iter().any(|d| d == key)
    }

    pub fn mark_done(&mut self, key: &str) -> Result<(), JournalError> {
        if !self.is_done(key) {
            self.done.push(key.to_string());
        }
        self.save()
    }

    pub fn set(&mut self, key: &str, v: impl Serialize) -> Result<(), JournalError> {
        self.data.insert(key.into(), serde_json::to_value(v).expect("serialisable"));
        self.save()
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.data.get(key).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The run is over: keep its journal as history, out of the way of the next run.
    pub fn finish(self) -> Result<PathBuf, JournalError> {
        let dest = self.path.with_file_name(format!("{}-{}.done.json", self.playbook, self.run_id));
        std::fs::rename(&self.path, &dest).map_err(io(&self.path))?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reload_and_finishes_into_history() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::create(d.path(), "rejoin", "r1".into(), vec!["a".to_string(), "b".to_string()]).unwrap();
        j.mark_done("0:a").unwrap();
        j.set("new_id", 42u64).unwrap();
        let j2: Journal<Vec<String>> = Journal::load(d.path(), "rejoin").unwrap().unwrap();
        assert!(j2.is_done("0:a") && !j2.is_done("1:b"));
        assert_eq!(j2.get::<u64>("new_id"), Some(42));
        let done = j2.finish().unwrap();
        assert!(done.ends_with("journal/rejoin-r1.done.json"));
        assert!(Journal::<Vec<String>>::load(d.path(), "rejoin").unwrap().is_none());
    }

    #[test]
    fn garbage_journal_is_reported_not_ignored() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("journal")).unwrap();
        std::fs::write(d.path().join("journal/rejoin.json"), "{not json").unwrap();
        assert!(matches!(Journal::<Vec<String>>::load(d.path(), "rejoin"), Err(JournalError::Corrupt { .. })));
    }
}
