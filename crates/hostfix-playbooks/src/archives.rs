//! The archives on this master: what each repair moved aside, where, and how big; and their
//! retention. A run's archive can sit in two kinds of place (see `hostfix_adapters::relocate`):
//! `<state-dir>/archive/<run>/`, and `etcd-hostfix-archive/<run>/` beside the data on its own
//! mount (the data dir's, and a separate `--wal-dir`'s).

use std::collections::BTreeMap;
use std::path::PathBuf;

use hostfix_adapters::relocate::BESIDE;
use serde::Serialize;

use crate::actions::Actions;
use crate::Reporter;

/// One run's archive, wherever its parts are.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveRun {
    pub run: String,
    pub paths: Vec<PathBuf>,
    pub bytes: u64,
}

impl Actions<'_> {
    /// The directories archives are kept in on this master.
    fn archive_roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.g.state_dir().join("archive")];
        for data in self.data_paths() {
            if let Some(parent) = data.parent() {
                roots.push(parent.join(BESIDE));
            }
            // A data dir that is a mount's root keeps its archive inside it.
            roots.push(data.join(BESIDE));
        }
        roots.sort();
        roots.dedup();
        roots
    }

    /// Every run's archive, oldest first, with its size.
    pub fn archives(&self) -> Vec<ArchiveRun> {
        let mut runs: BTreeMap<String, ArchiveRun> = BTreeMap::new();
        for root in self.archive_roots() {
            for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if hostfix_core::archive::parse_run(&name).is_none() || !e.path().is_dir() {
                    continue;
                }
                let r = runs.entry(name.clone()).or_insert_with(|| ArchiveRun { run: name, paths: vec![], bytes: 0 });
                r.bytes += crate::space::dir_bytes(&e.path());
                r.paths.push(e.path());
            }
        }
        let mut v: Vec<ArchiveRun> = runs.into_values().collect();
        v.sort_by_key(|r| hostfix_core::archive::parse_run(&r.run).map(|x| x.0).unwrap_or(0));
        v
    }

    /// After a successful run `current`: remove all but the newest `keep` runs' archives
    /// (`hostfix_core::archive::to_prune`), each said through the reporter. A part that
    /// cannot be removed is said and left; it never fails the run that just succeeded.
    pub fn prune_archives(&self, keep: usize, current: &str, rep: &dyn Reporter) {
        let all = self.archives();
        let names: Vec<String> = all.iter().map(|r| r.run.clone()).collect();
        for name in hostfix_core::archive::to_prune(&names, keep, current) {
            let Some(run) = all.iter().find(|r| r.run == name) else { continue };
            for p in &run.paths {
                // Deliberately a delete: this is the retention the operator configured
                // (--keep-archives, archive_keep), of data already replaced by a healthy member.
                match std::fs::remove_dir_all(p) {
                    Ok(()) => rep.note(&format!("pruned the archive of run {name}: {} ({} bytes; keeping the newest {keep})", p.display(), run.bytes)),
                    Err(e) => rep.note(&format!("note: cannot prune the archive {}: {e}; left as it is", p.display())),
                }
            }
        }
    }
}
