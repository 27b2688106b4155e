//! `check perf`: etcdctl's write-load check against the cluster, plus the check etcd's
//! tuning guide asks for first, the fsync latency of the disk under the data dir (a
//! WAL-like write-and-fdatasync loop, as the guide's fio command does). Both are bounded
//! by time and size, and everything written is removed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hostfix_adapters::etcd::Connector;
use hostfix_core::perf::{Latencies, LoadProfile};
use serde::{Deserialize, Serialize};

/// Where the last disk check's verdict is kept, for `rejoin` to warn from.
pub fn last_path(state_dir: &Path) -> PathBuf {
    state_dir.join("perf/last-disk-check.json")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskCheck {
    pub dir: String,
    pub writes: u64,
    pub bytes: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub pass: bool,
    pub checked_at_unix: u64,
}

/// Write `block`-byte records and fdatasync after each, in a fresh directory inside `beside`
/// (so on the data dir's filesystem), until `max_bytes` or `max_time`; then remove it.
pub fn disk_check(beside: &Path, block: usize, max_bytes: u64, max_time: Duration, p99_limit_ms: f64) -> Result<DiskCheck> {
    let dir = beside.join(format!(".hostfix-check-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let r = fsync_loop(&dir, block, max_bytes, max_time);
    // Ours alone, created above: removing it deletes nothing of anyone else's.
    let _ = std::fs::remove_dir_all(&dir);
    let (lat, bytes) = r?;
    let s = lat.summary();
    Ok(DiskCheck {
        dir: beside.display().to_string(),
        writes: lat.len() as u64,
        bytes,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        max_ms: s.max_ms,
        pass: s.p99_ms < p99_limit_ms,
        checked_at_unix: crate::unix_now(),
    })
}

fn fsync_loop(dir: &Path, block: usize, max_bytes: u64, max_time: Duration) -> Result<(Latencies, u64)> {
    let path = dir.join("wal-probe");
    let mut f = std::fs::OpenOptions::new().create_new(true).write(true).open(&path).with_context(|| path.display().to_string())?;
    let buf = vec![0x5au8; block];
    let mut lat = Latencies::default();
    let mut bytes = 0u64;
    let started = Instant::now();
    while bytes < max_bytes && started.elapsed() < max_time {
        let t = Instant::now();
        f.write_all(&buf).with_context(|| path.display().to_string())?;
        f.sync_data().with_context(|| format!("fdatasync {}", path.display()))?;
        lat.push(t.elapsed());
        bytes += block as u64;
    }
    Ok((lat, bytes))
}

pub fn save_last(state_dir: &Path, c: &DiskCheck) -> Result<()> {
    let p = last_path(state_dir);
    if let Some(d) = p.parent() {
        hostfix_adapters::private::create_dir(d).with_context(|| d.display().to_string())?;
    }
    hostfix_adapters::private::write(&p, serde_json::to_string_pretty(c)? + "\n").with_context(|| p.display().to_string())
}

pub fn load_last(state_dir: &Path) -> Option<DiskCheck> {
    serde_json::from_str(&std::fs::read_to_string(last_path(state_dir)).ok()?).ok()
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadCheck {
    pub endpoint: String,
    pub profile: LoadProfile,
    pub seconds: f64,
    pub writes: u64,
    pub errors: u64,
    pub throughput: f64,
    pub slowest_ms: f64,
    pub stddev_ms: f64,
    pub p99_ms: f64,
    pub removed: u64,
}

/// The prefix the load writes under; deleted at the end, whatever happened.
pub const LOAD_PREFIX: &str = "/etcd-hostfix-check-perf/";

/// etcdctl's check: `profile.clients` writers share a rate of `profile.rate` puts a second
/// for `duration`, each a `profile.value_bytes` value under [`LOAD_PREFIX`].
pub async fn load_check(conn: &Connector, url: &str, profile: LoadProfile, duration: Duration) -> Result<LoadCheck> {
    let ep = conn.connect(url).await?;
    let endpoint = ep.url.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<u64>(profile.clients as usize);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let value = Arc::new(vec![b'x'; profile.value_bytes]);
    let mut workers = vec![];
    for _ in 0..profile.clients {
        let (rx, value) = (rx.clone(), value.clone());
        let mut ep = conn.connect(url).await?;
        workers.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            let mut errors = 0u64;
            loop {
                let Some(n) = rx.lock().await.recv().await else { break };
                let key = format!("{LOAD_PREFIX}{n:012}");
                let t = Instant::now();
                match ep.put_bytes(key.as_bytes(), &value).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    // The pacer: one token per write, at the profile's rate; a writer that cannot keep up
    // shows as throughput below the rate, which is what the check measures.
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / profile.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0u64;
    while started.elapsed() < duration {
        tick.tick().await;
        if tx.send(n).await.is_err() {
            break;
        }
        n += 1;
    }
    drop(tx);
    let mut lat = Latencies::default();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await?;
        lat.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut ep = conn.connect(url).await?;
    let removed = ep.delete_prefix(LOAD_PREFIX.as_bytes()).await?;
    let s = lat.summary();
    Ok(LoadCheck {
        endpoint,
        profile,
        seconds,
        writes: lat.len() as u64,
        errors,
        throughput: lat.len() as f64 / seconds,
        slowest_ms: s.max_ms,
        stddev_ms: s.stddev_ms,
        p99_ms: s.p99_ms,
        removed,
    })
}
