//! The two locks every repair takes: a local `flock` in the state dir (one repair per host,
//! CLI or daemon) and the cluster-wide lease lock in etcd (one membership change at a time
//! across masters, so two learners never race etcd's one-learner limit).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hostfix_adapters::etcd::{Endpoint, LockAttempt};

use crate::Reporter;

/// The key of the cluster-wide lock that serialises repairs across masters.
pub const LOCK_KEY: &str = "/etcd-hostfix/lock/membership";
pub const LOCK_TTL: i64 = 30;

/// The cluster-wide lock, waited for while another master holds it. `Err(why)` inside
/// when it stays held past `timeout`: a refusal, nothing changed.
pub async fn cluster_lock(
    peer: &mut Endpoint,
    holder: &str,
    timeout: Duration,
    rep: &dyn Reporter,
) -> Result<Result<(i64, tokio::task::JoinHandle<()>), String>> {
    let deadline = Instant::now() + timeout;
    let mut said = false;
    loop {
        let attempt = match peer.try_lock(LOCK_KEY, holder, LOCK_TTL).await {
            // A busy or electing cluster times the lease grant out now and then (seen in the
            // soak under load): retried within the same bound as a held lock. A lease that
            // was granted all the same expires by itself.
            Err(e) if Instant::now() < deadline && crate::is_transient(&e.to_string()) => {
                tracing::info!(error = %e, "taking the repair lock failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            r => r?,
        };
        match attempt {
            LockAttempt::Acquired(lease) => {
                let keeper = peer.keep_alive(lease, Duration::from_secs(LOCK_TTL as u64 / 3)).await?;
                return Ok(Ok((lease, keeper)));
            }
            LockAttempt::HeldBy(other) => {
                if Instant::now() > deadline {
                    return Ok(Err(format!("member {other} holds the repair lock {LOCK_KEY} (waited {timeout:?})")));
                }
                if !said {
                    rep.note(&format!("waiting for member {other} to finish its repair (lock {LOCK_KEY})"));
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Who holds the cluster-wide lock now, if anyone: read without taking it.
pub async fn cluster_lock_holder(peer: &mut Endpoint) -> Result<Option<String>> {
    Ok(peer.get_value(LOCK_KEY).await?)
}

pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

/// A local `flock`: one repair per host at a time, even before the cluster lock can be had.
pub struct FileLock {
    file: std::fs::File,
    path: PathBuf,
    /// What taking the lock created, so a refusal after it can leave the host as it was.
    created_file: bool,
    created_dir: Option<PathBuf>,
}

impl FileLock {
    pub fn take(state_dir: &Path) -> Result<Option<FileLock>> {
        use std::os::unix::io::AsRawFd;
        let created_dir = (!state_dir.exists()).then(|| state_dir.to_path_buf());
        crate::secure_state_dir(state_dir).with_context(|| state_dir.display().to_string())?;
        let path = lock_path(state_dir);
        let created_file = !path.exists();
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).mode(hostfix_adapters::private::FILE_MODE).open(&path)?
        };
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Ok(None);
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(Some(FileLock { file, path, created_file, created_dir }))
    }

    /// Remove what `take` created: only our own lock file, and the state dir only if this
    /// run created it and nothing else is in it.
    pub fn undo(&self) {
        if self.created_file {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(d) = &self.created_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Who holds the file lock, without creating anything.
pub fn file_lock_holder(state_dir: &Path) -> Option<String> {
    use std::os::unix::io::AsRawFd;
    let p = lock_path(state_dir);
    let f = std::fs::File::open(&p).ok()?;
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    Some(std::fs::read_to_string(&p).unwrap_or_default().trim().to_string())
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}
