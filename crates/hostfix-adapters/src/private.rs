//! Files that hold the cluster's secrets. A snapshot, a journal, a parked manifest and an
//! archived data dir each hold every Kubernetes Secret (or the key paths to reach them), so
//! whatever the tool creates is `0600` in `0700` directories, whatever the process's umask.
//! etcd does the same for its own data dir (`fileutil.PrivateDirMode`).

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// `create_dir_all`, with every directory it creates `0700`. Existing ones are left as they
/// are: a snapshot's `--out` may be inside `/var/backups`, which is not ours to change.
pub fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(path)
}

/// Create (or truncate) `path` as `0600`. An existing file with wider modes is tightened:
/// rewriting it with new content must not leave that content readable.
pub fn create(path: impl AsRef<Path>) -> io::Result<File> {
    let path = path.as_ref();
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(f)
}

/// `std::fs::write`, as `0600`.
pub fn write(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(bytes.as_ref())
}

/// Create the state dir `0700`, or tighten an existing one that other local accounts can
/// enter. Returns the mode it had when it was tightened, so the caller says so (once: the
/// next run finds it `0700`).
pub fn state_dir(path: &Path) -> io::Result<Option<u32>> {
    create_dir(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))?;
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let old = unsafe { libc::umask(0o000) };
        let deep = d.path().join("a/b/c");
        create_dir(&deep).unwrap();
        write(&deep.join("f"), b"x").unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(mode(&d.path().join("a")), 0o700);
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&deep.join("f")), 0o600);
    }

    #[test]
    fn an_existing_wide_file_is_tightened_on_rewrite() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&f, b"new").unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
    }

    #[test]
    fn a_wide_state_dir_is_tightened_and_said_once() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("state");
        std::fs::create_dir(&s).unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(state_dir(&s).unwrap(), Some(0o755));
        assert_eq!(mode(&s), 0o700);
        assert_eq!(state_dir(&s).unwrap(), None);
        assert_eq!(state_dir(&d.path().join("new")).unwrap(), None);
        assert_eq!(mode(&d.path().join("new")), 0o700);
    }
}
