//! `snapshot save`, shared by the CLI and the daemon's schedule: stream a snapshot from a
//! member, verified against its SHA-256 trailer while streaming, written as `.part` and
//! renamed, with `<file>.sha256` and `<file>.json` (who, which cluster, which revision)
//! beside it. Nothing is overwritten.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use hostfix_adapters::etcd::{Connector, Endpoint, Streamed};
use hostfix_core::backup::{Candidate, Pieces};
use hostfix_adapters::etcdtool::{self, EtcdTool};
use hostfix_core::status::MemberStatus;

use crate::local::Local;
use crate::{Progress, Reporter, Settings};

/// Which member to stream from.
pub enum Source {
    /// A healthy member, the local one first; without quorum, any member that answers.
    Best,
    /// The local member only, and only while it serves quorum reads (the schedule).
    LocalHealthy,
}

pub struct Saved {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub member: MemberStatus,
    pub endpoint: String,
    pub status: Result<serde_json::Value, String>,
}

pub fn default_path(g: &Settings, prefix: &str) -> PathBuf {
    let t = crate::unix_now();
    g.state_dir().join("snapshots").join(format!("{prefix}-{t}.db"))
}

/// `with_status` also reads the saved file's revision and key count with etcdutl, which
/// reads it all again; the `.json` record has the member's revision either way.
pub async fn save(g: &Settings, local: &Local, conn: &Connector, out: &Path, source: Source, with_status: bool, rep: &dyn Reporter) -> Result<Saved> {
    let (_, probed) = local
        .cluster_view(g, conn)
        .await
        .ok_or_else(|| anyhow!("no member answers at {}", local.candidate_endpoints(g).join(", ")))?;
    let mine = local.local_client_url();
    let pick = match source {
        Source::Best => probed
            .iter()
            .filter(|m| m.quorum_read)
            .max_by_key(|m| (m.client_urls.first() == mine.as_ref(), m.revision))
            .or_else(|| probed.iter().filter(|m| m.reachable).max_by_key(|m| m.revision))
            .ok_or_else(|| anyhow!("no member answers a status call"))?,
        Source::LocalHealthy => probed
            .iter()
            .find(|m| m.client_urls.first() == mine.as_ref() && m.quorum_read && !m.is_learner)
            .ok_or_else(|| anyhow!("the local member is not a healthy voter now"))?,
    };
    let url = pick.client_urls.first().context("member without client URL")?.clone();
    if out.exists() {
        bail!("{} exists; choose another path (nothing is overwritten)", out.display());
    }
    let state = g.state_dir();
    if out.starts_with(&state) {
        crate::secure_state_dir(&state).with_context(|| state.display().to_string())?;
    }
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        hostfix_adapters::private::create_dir(d).with_context(|| d.display().to_string())?;
    }
    let mut ep = conn.connect(&url).await?;
    let streamed = stream_into(&mut ep, out, rep).await?;
    // etcdutl's status reads the whole db again: only when asked for.
    let status = if with_status {
        EtcdTool::for_reading(etcdtool::parse_version(&local.config.image))
            .map_err(|e| e.to_string())
            .and_then(|t| t.status(out).map_err(|e| e.to_string()))
    } else {
        Err("not read (pass --status)".to_string())
    };
    write_records(out, &streamed, pick, &url, status.as_ref().ok())?;
    let (bytes, sha) = (streamed.bytes, streamed.sha256);
    Ok(Saved { path: out.to_path_buf(), bytes, sha256: sha, member: pick.clone(), endpoint: url, status })
}

/// Stream a snapshot from `ep` into `out`: written as `<out>.part`, its trailer checked while
/// streaming, then renamed into place. A failed stream's part is removed: it is ours and
/// worthless, and a full disk must not stay full.
pub async fn stream_into(ep: &mut Endpoint, out: &Path, rep: &dyn Reporter) -> Result<Streamed> {
    let part = PathBuf::from(format!("{}.part", out.display()));
    let bars = rep.wants_progress();
    let mut seen = (0u64, None::<u64>);
    let mut on = |done, total| {
        seen = (done, total);
        if bars {
            rep.progress("snapshot", Progress::Bytes { done, total });
        }
    };
    let streamed = ep.snapshot_to(&part, &mut on).await;
    if bars {
        rep.progress_end("snapshot", streamed.is_ok());
    }
    match streamed {
        Ok(s) => {
            std::fs::rename(&part, out).with_context(|| format!("{} -> {}", part.display(), out.display()))?;
            Ok(s)
        }
        Err(e) => {
            // Only this run's own partial file goes; nothing else is touched.
            let _ = std::fs::remove_file(&part);
            if e.to_string().contains("No space left") {
                let free = crate::space::free_bytes(out).map(|b| b.to_string()).unwrap_or_else(|_| "?".into());
                let need = seen.1.map(|t| format!("{} bytes", crate::space::snapshot_bytes_needed(t))).unwrap_or_else(|| "more".into());
                return Err(anyhow::anyhow!(
                    "the filesystem of {} filled up after {} bytes of the snapshot: it needs {need}, and {free} are free there now that the partial file is gone ({e})",
                    out.display(),
                    seen.0
                ));
            }
            Err(e.into())
        }
    }
}

/// `<file>.sha256` (as `sha256sum -c` reads it) and `<file>.json` (who, which cluster, which
/// revision, when) beside a saved snapshot. The `.json` is what `rejoin --backup auto` reads
/// to reuse a snapshot, so every snapshot the tool takes gets one.
pub fn write_records(out: &Path, s: &Streamed, from: &MemberStatus, url: &str, status: Option<&serde_json::Value>) -> Result<()> {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    hostfix_adapters::private::write(Path::new(&format!("{}.sha256", out.display())), format!("{}  {name}\n", s.sha256)).with_context(|| format!("{}.sha256", out.display()))?;
    let record = serde_json::json!({
        "file": out.display().to_string(),
        "bytes": s.bytes,
        "sha256": s.sha256,
        "member": from.name,
        "endpoint": url,
        "cluster_id": from.cluster_id,
        "etcd_version": from.version,
        "member_revision": from.revision,
        "member_raft_index": from.raft_index,
        "had_quorum": from.quorum_read,
        "saved_at_unix": crate::unix_now(),
        "status": status,
        "pieces": { "bytes": s.piece_bytes, "sha256": s.pieces },
    });
    hostfix_adapters::private::write(Path::new(&format!("{}.json", out.display())), serde_json::to_string_pretty(&record)? + "\n").with_context(|| format!("{}.json", out.display()))?;
    Ok(())
}

/// The snapshots in `dir` that have a `.json` record, as `rejoin --backup auto` ranks them.
pub fn candidates(dir: &Path) -> Vec<Candidate> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    let mut out = vec![];
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("db") {
            continue;
        }
        let rec: Option<serde_json::Value> =
            std::fs::read_to_string(format!("{}.json", p.display())).ok().and_then(|t| serde_json::from_str(&t).ok());
        out.push(Candidate {
            path: p.display().to_string(),
            cluster_id: rec.as_ref().and_then(|r| r["cluster_id"].as_str().map(String::from)),
            saved_at_unix: rec.as_ref().and_then(|r| r["saved_at_unix"].as_u64()),
            bytes: e.metadata().map(|m| m.len()).unwrap_or(0),
            sha256: rec.as_ref().and_then(|r| r["sha256"].as_str().map(String::from)),
            pieces: rec.as_ref().and_then(|r| {
                let bytes = r["pieces"]["bytes"].as_u64()?;
                let sha256 = r["pieces"]["sha256"].as_array()?.iter().map(|d| d.as_str().map(String::from)).collect::<Option<Vec<_>>>()?;
                Some(Pieces { bytes, sha256 })
            }),
        });
    }
    out
}

/// Check a snapshot `rejoin --backup auto` may rely on, now: against the piece digests its
/// record kept (on every core), else against its SHA-256 trailer (one pass). Returns its
/// size and what it was checked against, for the plan.
pub fn verify(c: &Candidate) -> Result<(u64, String), String> {
    let path = Path::new(&c.path);
    match &c.pieces {
        Some(p) => hostfix_adapters::etcd::verify_snapshot_pieces(path, p.bytes, &p.sha256)
            .map(|n| {
                let (k, s) = (p.sha256.len(), if p.sha256.len() == 1 { "" } else { "s" });
                (n, format!("the SHA-256 of its {k} piece{s} recorded when its trailer was checked"))
            }),
        None => hostfix_adapters::etcd::verify_snapshot(path).map(|n| (n, "its SHA-256 trailer".to_string())),
    }
}
