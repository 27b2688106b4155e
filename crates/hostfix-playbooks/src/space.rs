//! Room on disk, checked before a run changes anything: a backup that cannot be written,
//! or a learner that would fill the etcd disk, must stop the run before the first
//! membership change, not between two of them. (Where an archive can be a rename is
//! `hostfix_adapters::relocate`'s to decide: it always finds a place.)

use std::io;
use std::path::{Path, PathBuf};

use hostfix_adapters::relocate::existing;

/// Bytes a process may still write to the filesystem holding `path` (statvfs `f_bavail`).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(existing(path).as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// What a learner writes receiving a db of `db` bytes: the leader's snapshot, received as
/// `member/snap/<index>.snap.db` and renamed into place as the db (one copy), and the first
/// WAL segment, which etcd preallocates at 64 MiB.
pub fn learner_bytes_needed(db: u64) -> u64 {
    db + 64 * 1024 * 1024
}

/// The snapshot file, its `.part` while streaming, and the records beside it.
pub fn snapshot_bytes_needed(db_size: u64) -> u64 {
    db_size + 64 * 1024
}

#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("not enough space for {what} in {dir}: it needs {need} bytes and {free} are free there. Free space there first{hint}")]
    NoRoom { what: String, dir: PathBuf, need: u64, free: u64, hint: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Room for a snapshot of `db` bytes (from `source_name`) in `dir`.
pub fn check_room(dir: &Path, db: u64, source_name: &str) -> Result<(), SpaceError> {
    let what = format!("the backup (the db of {source_name} is {db} bytes)");
    room(dir, snapshot_bytes_needed(db), what, ", or point --state-dir at a larger filesystem")
}

/// Room for `need` bytes of `what` in `dir`.
pub fn check_room_for(dir: &Path, need: u64, what: &str) -> Result<(), SpaceError> {
    room(dir, need, what.to_string(), "")
}

fn room(dir: &Path, need: u64, what: String, hint: &str) -> Result<(), SpaceError> {
    let free = free_bytes(dir).map_err(|source| SpaceError::Io { path: dir.to_path_buf(), source })?;
    if free < need {
        return Err(SpaceError::NoRoom { what, dir: dir.to_path_buf(), need, free, hint: hint.to_string() });
    }
    Ok(())
}

/// The bytes of the regular files under `dir` (0 when it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_measured_where_it_would_be_created() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        assert_eq!(free_bytes(&deep).unwrap() / 4096, free_bytes(d.path()).unwrap() / 4096);
        assert!(matches!(check_room(&deep, u64::MAX / 2, "m1"), Err(SpaceError::NoRoom { .. })));
        check_room(&deep, 1, "m1").unwrap();
    }
}
