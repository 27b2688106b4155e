//! The one way etcd-hostfix moves things aside: parking a manifest, archiving a data dir
//! (and a `--wal-dir`), a late straggler's dir, restore's set-aside, and moving a manifest
//! back.
//!
//! Why one primitive: every one of these is a `rename(2)`, and a rename only works within
//! one *mount*, not merely one filesystem. Real masters break that in two ways:
//! - `/var/lib/etcd` (and a `--wal-dir`) on a dedicated disk, as etcd's hardware guidance
//!   asks: another filesystem from the state dir;
//! - the unit's sandbox (`ProtectSystem=strict`): every `ReadWritePaths=` entry and the
//!   `StateDirectory=` are bind mounts of their own, so a rename between them fails with
//!   EXDEV even on one filesystem, where `st_dev` is equal and cannot tell.
//!
//! So the question "can this be renamed there?" is asked of the mount ID (`statx`
//! `STX_MNT_ID`), and each kind of thing has its rule:
//! - **data is never copied**: [`archive_place`] picks a place on the data's own mount,
//!   the preferred archive dir when a rename reaches it, else an `etcd-hostfix-archive`
//!   dir beside the data (etcd only warns about an extra entry in its data dir);
//! - **a manifest** is small and may be copied when no rename reaches: [`move_file`]
//!   writes it beside the destination under a dotfile name (the kubelet ignores dotfiles),
//!   fsyncs it, renames it into place, fsyncs the directory, and only then removes the
//!   source. Until the source is removed it is the authoritative copy and the move is
//!   simply redone, so a kill at any instant leaves exactly one authoritative manifest,
//!   and never two etcd manifests in the manifests dir.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The name of the archive dir kept beside data that cannot be renamed into the state dir.
pub const BESIDE: &str = "etcd-hostfix-archive";

/// How a rename from one place can reach another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One mount: a rename works.
    SameMount,
    /// One filesystem seen through two mounts (a bind mount, systemd's sandbox): EXDEV.
    OtherMount,
    /// Two filesystems: EXDEV.
    OtherFilesystem,
}

impl Reach {
    pub fn describe(self) -> &'static str {
        match self {
            Reach::SameMount => "on one mount",
            Reach::OtherMount => "on one filesystem but different mounts (a bind mount, such as systemd's ReadWritePaths=)",
            Reach::OtherFilesystem => "on different filesystems",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("cannot stat {path} (statx): {source}")]
    Stat { path: PathBuf, source: io::Error },
    #[error("cannot rename {from} to {to}: {source}")]
    Rename { from: PathBuf, to: PathBuf, source: io::Error },
    #[error("cannot create the directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot copy {from} to {to}: {source}")]
    Copy { from: PathBuf, to: PathBuf, source: io::Error },
    #[error("cannot fsync {path}: {source}")]
    Sync { path: PathBuf, source: io::Error },
    #[error("cannot remove {path} (after it was copied to {to}): {source}")]
    Remove { path: PathBuf, to: PathBuf, source: io::Error },
    #[error("cannot read the directory {path}: {source}")]
    ReadDir { path: PathBuf, source: io::Error },
}

/// `path`, or the nearest of its ancestors that exists: where something not created yet
/// would live (its mount, its filesystem's free space).
pub fn existing(path: &Path) -> &Path {
    path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"))
}

/// The mount ID and device of `path` (or of where it would be created).
fn mount_of(path: &Path) -> Result<(u64, u64), MoveError> {
    let p = existing(path);
    let err = |source| MoveError::Stat { path: p.to_path_buf(), source };
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // The raw syscall, not libc's wrapper: the static musl build links a libc that may
    // predate statx. Linux >= 5.8 fills STATX_MNT_ID; every supported master has it.
    // SAFETY: `c` is NUL-terminated and `st` a valid out-pointer of the kernel's layout.
    let rc = unsafe { libc::syscall(libc::SYS_statx, libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_MNT_ID, &mut st as *mut libc::statx) };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    if st.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(err(io::Error::new(io::ErrorKind::Unsupported, "the kernel gave no mount ID (Linux 5.8 or later is needed)")));
    }
    let dev = std::fs::metadata(p).map_err(err)?.dev();
    Ok((st.stx_mnt_id, dev))
}

/// Whether a rename from `from` can land in the directory `to`. Either may not exist yet:
/// what counts is where it would be created.
pub fn reach(from: &Path, to: &Path) -> Result<Reach, MoveError> {
    let (fm, fd) = mount_of(from)?;
    let (tm, td) = mount_of(to)?;
    Ok(if fm == tm {
        Reach::SameMount
    } else if fd == td {
        Reach::OtherMount
    } else {
        Reach::OtherFilesystem
    })
}

/// Where data at `data` (a `member` dir, a WAL dir) is archived for run `run`: under
/// `preferred` (the state dir's archive) when a rename reaches it, else in
/// `<parent>/etcd-hostfix-archive/<run>/` beside it, on its own mount. Returns the directory
/// and, when it is not the preferred one, why (for the plan).
pub fn archive_place(data: &Path, preferred: &Path, run: &str) -> Result<(PathBuf, Option<String>), MoveError> {
    match reach(data, preferred)? {
        Reach::SameMount => Ok((preferred.to_path_buf(), None)),
        r => {
            let parent = data.parent().unwrap_or(Path::new("/"));
            // A data dir that is itself a mount's root (`--wal-dir` pointing at a disk) has no
            // beside on its mount: its entries are archived inside it (see `archive_dir`).
            let base = if reach(data, parent)? == Reach::SameMount { parent } else { data };
            let beside = base.join(BESIDE).join(run);
            let why = format!(
                "{} and {} are {}: a rename cannot reach, and data is never copied, so it is archived on its own mount",
                data.display(),
                preferred.display(),
                r.describe()
            );
            Ok((beside, Some(why)))
        }
    }
}

/// Rename the directory (or file) `from` to `to`, creating `to`'s parent. Never a copy:
/// an EXDEV here is an error that says which case it is.
pub fn rename(from: &Path, to: &Path) -> Result<(), MoveError> {
    if let Some(dir) = to.parent() {
        crate::private::create_dir(dir).map_err(|source| MoveError::CreateDir { path: dir.to_path_buf(), source })?;
    }
    std::fs::rename(from, to).map_err(|source| {
        let source = match (source.raw_os_error(), reach(from, to.parent().unwrap_or(to))) {
            (Some(libc::EXDEV), Ok(r)) => io::Error::new(source.kind(), format!("{source}: they are {}", r.describe())),
            _ => source,
        };
        MoveError::Rename { from: from.to_path_buf(), to: to.to_path_buf(), source }
    })
}

/// Move the small file `from` (a manifest) to `to`: a rename where one reaches, else a
/// durable copy (see the module's comment). Idempotent when rerun after a kill: a source
/// that still exists is moved again, over whatever copy reached `to`.
pub fn move_file(from: &Path, to: &Path) -> Result<(), MoveError> {
    let dir = to.parent().unwrap_or(Path::new("/"));
    crate::private::create_dir(dir).map_err(|source| MoveError::CreateDir { path: dir.to_path_buf(), source })?;
    match std::fs::rename(from, to) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        Err(source) => return Err(MoveError::Rename { from: from.to_path_buf(), to: to.to_path_buf(), source }),
    }
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A dotfile: the kubelet runs every file in the manifests dir but those.
    let tmp = dir.join(format!(".{name}.hostfix-part"));
    let copy_err = |source| MoveError::Copy { from: from.to_path_buf(), to: tmp.clone(), source };
    let bytes = std::fs::read(from).map_err(copy_err)?;
    let mode = std::fs::metadata(from).map_err(copy_err)?.mode() & 0o7777;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(copy_err)?;
        f.write_all(&bytes).map_err(copy_err)?;
        f.sync_all().map_err(|source| MoveError::Sync { path: tmp.clone(), source })?;
    }
    std::fs::rename(&tmp, to).map_err(|source| MoveError::Rename { from: tmp.clone(), to: to.to_path_buf(), source })?;
    sync_dir(dir)?;
    std::fs::remove_file(from).map_err(|source| MoveError::Remove { path: from.to_path_buf(), to: to.to_path_buf(), source })?;
    if let Some(src_dir) = from.parent() {
        sync_dir(src_dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), MoveError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| MoveError::Sync { path: dir.to_path_buf(), source })
}

/// `dir/<prefix>N` for the first N from 0 that is not taken: archives never overwrite.
pub fn free_name(dir: &Path, prefix: &str) -> PathBuf {
    (0..).map(|n| dir.join(format!("{prefix}{n}"))).find(|p| !p.exists()).expect("unbounded")
}

/// Archive the directory `data` into `dest` as `dest/<name>` (or `<name>.N` when that is
/// taken by an earlier archive of this run): a rename, never a copy. Done already (no
/// `data`) is fine. Returns where it went.
pub fn archive_dir(data: &Path, dest: &Path) -> Result<Option<PathBuf>, MoveError> {
    if !data.exists() {
        return Ok(None);
    }
    let name = data.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let to = if dest.join(&name).exists() { free_name(dest, &format!("{name}.")) } else { dest.join(&name) };
    if dest.starts_with(data) {
        // `data` is a mount's root: its entries move into `to`, inside it, and it stays, empty
        // of all but the archive (etcd ignores what is not its own there, with a warning).
        let rd = std::fs::read_dir(data).map_err(|source| MoveError::ReadDir { path: data.to_path_buf(), source })?;
        let mut any = false;
        for e in rd {
            let e = e.map_err(|source| MoveError::ReadDir { path: data.to_path_buf(), source })?;
            if e.file_name() == BESIDE {
                continue;
            }
            rename(&e.path(), &to.join(e.file_name()))?;
            any = true;
        }
        return Ok(any.then_some(to));
    }
    rename(data, &to)?;
    Ok(Some(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mount_renames_and_other_filesystems_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(reach(&d.path().join("a/b"), d.path()).unwrap(), Reach::SameMount);
        // /proc is never the temp dir's filesystem.
        assert_eq!(reach(d.path(), Path::new("/proc/self")).unwrap(), Reach::OtherFilesystem);
        let (place, why) = archive_place(&d.path().join("data/member"), &d.path().join("state/archive/r1"), "r1").unwrap();
        assert_eq!(place, d.path().join("state/archive/r1"));
        assert!(why.is_none());
    }

    #[test]
    fn a_file_is_moved_and_a_missing_dir_is_already_archived() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("manifests/etcd.yaml");
        std::fs::create_dir_all(from.parent().unwrap()).unwrap();
        std::fs::write(&from, "x").unwrap();
        let to = d.path().join("state/parked/etcd.yaml");
        move_file(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "x");
        assert_eq!(archive_dir(&d.path().join("nothing"), d.path()).unwrap(), None);
        let m = d.path().join("data/member");
        std::fs::create_dir_all(&m).unwrap();
        let got = archive_dir(&m, &d.path().join("arch")).unwrap().unwrap();
        assert_eq!(got, d.path().join("arch/member"));
        std::fs::create_dir_all(&m).unwrap();
        assert_eq!(archive_dir(&m, &d.path().join("arch")).unwrap().unwrap(), d.path().join("arch/member.0"));
    }
}
