//! Scheduled snapshots: every `snapshot_interval` (with jitter, so the masters do not all
//! stream at once), from the local member while it is a healthy voter, into
//! `<state-dir>/snapshots/scheduled-<unix>.db`. A survivor of a quorum loss then has a
//! recent local snapshot to `restore` from or compare against.
//!
//! Retention prunes only the schedule's own files, oldest first, until all four limits
//! hold: count, age, total bytes, and the share of the filesystem left free. A disk short
//! of that share stops the schedule and alerts; it is never filled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hostfix_core::config::{DaemonConfig, Retention};
use hostfix_playbooks::local::Local;
use hostfix_playbooks::snapshot::{self, Source};

use crate::metrics::Metrics;
use crate::observe::World;

const PREFIX: &str = "scheduled";

pub struct Scheduler {
    interval: Duration,
    retention: Retention,
    dir: PathBuf,
    next_due: Instant,
    full_disk_said: bool,
}

/// A snapshot file of the schedule, with its time and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub path: PathBuf,
    pub unix: u64,
    pub bytes: u64,
}

fn jitter(of: Duration) -> Duration {
    // Up to a tenth of the interval, so that masters started together drift apart.
    of.mul_f64(rand::random::<f64>() * 0.1)
}

impl Scheduler {
    pub fn new(c: &DaemonConfig, state_dir: &Path) -> Scheduler {
        Scheduler {
            interval: c.snapshot_interval,
            retention: c.snapshot_retention.clone(),
            dir: state_dir.join("snapshots"),
            // The first one a little after start: a restart loop must not snapshot in a loop.
            next_due: Instant::now() + Duration::from_secs(10).min(c.snapshot_interval) + jitter(c.snapshot_interval),
            full_disk_said: false,
        }
    }

    pub async fn tick(&mut self, world: &World, m: &Metrics) {
        if self.interval.is_zero() {
            return;
        }
        let kept = list(&self.dir);
        if let Some(newest) = kept.last() {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
            m.snapshot_age.set(now.saturating_sub(newest.unix) as f64);
            m.snapshot_bytes.set(newest.bytes as i64);
        }
        if Instant::now() < self.next_due {
            return;
        }
        self.next_due = Instant::now() + self.interval + jitter(self.interval);
        let expect = kept.last().map(|k| k.bytes).unwrap_or(0);
        if let Err(e) = hostfix_adapters::private::create_dir(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot create the snapshot dir");
            return;
        }
        match free_share_after(&self.dir, expect) {
            Some(share) if share < self.retention.min_free_disk => {
                // Pruning what retention allows may make room; if not, stop and say so.
                prune(&self.dir, &self.retention);
                if free_share_after(&self.dir, expect).map(|s| s < self.retention.min_free_disk).unwrap_or(false) {
                    if !self.full_disk_said {
                        tracing::error!(
                            dir = %self.dir.display(),
                            free = format!("{:.1}%", share * 100.0),
                            min_free_disk = format!("{:.1}%", self.retention.min_free_disk * 100.0),
                            "scheduled snapshot skipped: the disk would have less free space than min_free_disk"
                        );
                        self.full_disk_said = true;
                    }
                    return;
                }
            }
            _ => {}
        }
        self.full_disk_said = false;
        let s = &world.settings;
        let out = snapshot::default_path(s, PREFIX);
        let r = async {
            let local = Local::discover(s).await?;
            let conn = local.connector(s)?;
            snapshot::save(s, &local, &conn, &out, Source::LocalHealthy, false, &hostfix_playbooks::Quiet).await
        }
        .await;
        match r {
            Ok(saved) => {
                tracing::info!(file = %saved.path.display(), bytes = saved.bytes, sha256 = %saved.sha256, "scheduled snapshot saved");
                m.snapshot_age.set(0.0);
                m.snapshot_bytes.set(saved.bytes as i64);
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "scheduled snapshot not taken"),
        }
        for p in prune(&self.dir, &self.retention) {
            tracing::info!(file = %p.display(), "pruned by snapshot_retention");
        }
    }
}

/// The schedule's snapshots, oldest first.
pub fn list(dir: &Path) -> Vec<Kept> {
    let mut out: Vec<Kept> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let unix = name.strip_prefix(&format!("{PREFIX}-"))?.strip_suffix(".db")?.parse().ok()?;
            Some(Kept { path: e.path(), unix, bytes: e.metadata().ok()?.len() })
        })
        .collect();
    out.sort_by_key(|k| k.unix);
    out
}

/// Which of `kept` (oldest first) the limits remove. `free_share` is the share of the disk
/// free now; removing a file frees its bytes out of `disk_bytes`.
pub fn to_prune(kept: &[Kept], r: &Retention, now_unix: u64, free_share: Option<(f64, u64)>) -> Vec<usize> {
    let mut gone = vec![];
    let mut total: u64 = kept.iter().map(|k| k.bytes).sum();
    let mut left = kept.len();
    let mut free = free_share;
    for (i, k) in kept.iter().enumerate() {
        // The newest is kept whatever the limits say: an old backup beats none.
        if left <= 1 {
            break;
        }
        let too_many = left > r.count as usize;
        let too_old = now_unix.saturating_sub(k.unix) > r.max_age.as_secs();
        let too_big = total > r.max_bytes;
        let too_full = free.map(|(s, _)| s < r.min_free_disk).unwrap_or(false);
        if !(too_many || too_old || too_big || too_full) {
            break;
        }
        gone.push(i);
        total -= k.bytes;
        left -= 1;
        if let Some((s, disk)) = free {
            free = Some((s + k.bytes as f64 / disk.max(1) as f64, disk));
        }
    }
    gone
}

fn prune(dir: &Path, r: &Retention) -> Vec<PathBuf> {
    let kept = list(dir);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let free = statvfs(dir).map(|(free, total)| (free as f64 / total.max(1) as f64, total));
    let mut out = vec![];
    for i in to_prune(&kept, r, now, free) {
        let p = &kept[i].path;
        for extra in ["", ".sha256", ".json"] {
            let f = PathBuf::from(format!("{}{extra}", p.display()));
            let _ = std::fs::remove_file(&f);
        }
        out.push(p.clone());
    }
    out
}

/// Free and total bytes of the filesystem holding `dir`.
fn statvfs(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some((s.f_bavail as u64 * s.f_frsize as u64, s.f_blocks as u64 * s.f_frsize as u64))
}

/// The share of the disk that would be free after writing `bytes` more.
fn free_share_after(dir: &Path, bytes: u64) -> Option<f64> {
    let (free, total) = statvfs(dir)?;
    Some(free.saturating_sub(bytes) as f64 / total.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(ages: &[(u64, u64)]) -> Vec<Kept> {
        ages.iter().map(|(unix, bytes)| Kept { path: PathBuf::from(format!("{PREFIX}-{unix}.db")), unix: *unix, bytes: *bytes }).collect()
    }

    fn r(count: u32, max_age_s: u64, max_bytes: u64, min_free: f64) -> Retention {
        Retention { count, max_age: Duration::from_secs(max_age_s), max_bytes, min_free_disk: min_free }
    }

    #[test]
    fn each_limit_prunes_oldest_first_and_the_newest_stays() {
        let k = kept(&[(100, 10), (200, 10), (300, 10), (400, 10)]);
        assert_eq!(to_prune(&k, &r(2, 10_000, 1 << 30, 0.0), 400, None), vec![0, 1], "count");
        assert_eq!(to_prune(&k, &r(10, 150, 1 << 30, 0.0), 400, None), vec![0, 1], "age");
        assert_eq!(to_prune(&k, &r(10, 10_000, 25, 0.0), 400, None), vec![0, 1], "bytes");
        // 1000-byte disk, 3% free: each pruned 10-byte file frees 1%.
        assert_eq!(to_prune(&k, &r(10, 10_000, 1 << 30, 0.05), 400, Some((0.03, 1000))), vec![0, 1], "free disk");
        // Everything too old: the newest is still kept.
        assert_eq!(to_prune(&k, &r(10, 1, 1 << 30, 0.0), 10_000, None), vec![0, 1, 2]);
        assert!(to_prune(&k, &r(10, 10_000, 1 << 30, 0.0), 400, None).is_empty());
    }

    #[test]
    fn lists_only_the_schedules_own_files() {
        let d = tempfile_dir();
        for n in ["scheduled-300.db", "scheduled-100.db", "scheduled-100.db.sha256", "rejoin-1-2.db", "snapshot-5.db"] {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        let l = list(&d);
        assert_eq!(l.iter().map(|k| k.unix).collect::<Vec<_>>(), vec![100, 300]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("hostfix-snap-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
