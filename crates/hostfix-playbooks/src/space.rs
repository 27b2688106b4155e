//! Room on disk, checked before a run changes anything: a backup that cannot be written
//! and an archive that cannot be a rename must stop the run before the first membership
//! change, not between two of them.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `path`, or the nearest of its ancestors that exists: where a directory to be created
/// would live.
fn existing(path: &Path) -> &Path {
    path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"))
}

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

/// The snapshot file, its `.part` while streaming, and the records beside it.
pub fn snapshot_bytes_needed(db_size: u64) -> u64 {
    db_size + 64 * 1024
}

#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error(
        "{from} cannot be archived into {to}: they are on different filesystems, and the archive is a rename (nothing is copied or deleted). \
         Put --state-dir on the filesystem of {from}"
    )]
    OtherFilesystem { from: PathBuf, to: PathBuf },
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

/// `from` can be renamed into `to`. Either may not exist yet: a crashlooping member can
/// write its `member` dir between this check and the archive step, so what counts is the
/// filesystem it would be created on.
pub fn check_same_filesystem(from: &Path, to: &Path) -> Result<(), SpaceError> {
    let dev = |p: &Path| std::fs::metadata(existing(p)).map(|m| m.dev()).map_err(|source| SpaceError::Io { path: p.to_path_buf(), source });
    if dev(from)? != dev(to)? {
        return Err(SpaceError::OtherFilesystem { from: from.to_path_buf(), to: to.to_path_buf() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_measured_where_it_would_be_created() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        assert_eq!(free_bytes(&deep).unwrap() / 4096, free_bytes(d.path()).unwrap() / 4096);
        check_same_filesystem(d.path(), &deep).unwrap();
        assert!(matches!(check_room(&deep, u64::MAX / 2, "m1"), Err(SpaceError::NoRoom { .. })));
        check_room(&deep, 1, "m1").unwrap();
    }

    #[test]
    fn other_filesystems_are_told_apart() {
        // /proc is never on the filesystem of a temp dir.
        let d = tempfile::tempdir().unwrap();
        let e = check_same_filesystem(d.path(), Path::new("/proc/self")).unwrap_err();
        assert!(e.to_string().contains("different filesystems"), "{e}");
    }
}
