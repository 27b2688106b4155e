//! `snapshot save`, shared by the CLI and the daemon's schedule: stream a snapshot from a
//! member, verified against its SHA-256 trailer while streaming, written as `.part` and
//! renamed, with `<file>.sha256` and `<file>.json` (who, which cluster, which revision)
//! beside it. Nothing is overwritten.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use hostfix_adapters::etcd::Connector;
use hostfix_adapters::etcdtool::{self, EtcdTool};
use hostfix_core::status::MemberStatus;

use crate::local::Local;
use crate::Settings;

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
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    g.state_dir().join("snapshots").join(format!("{prefix}-{t}.db"))
}

pub async fn save(g: &Settings, local: &Local, conn: &Connector, out: &Path, source: Source) -> Result<Saved> {
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
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
    }
    let part = PathBuf::from(format!("{}.part", out.display()));
    let mut ep = conn.connect(&url).await?;
    let bytes = match ep.snapshot_to(&part).await {
        Ok(b) => b,
        Err(e) => {
            // A half-written part is ours and worthless; a full disk must not stay full.
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
    };
    std::fs::rename(&part, out)?;
    let sha = etcdtool::file_sha256(out)?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    std::fs::write(format!("{}.sha256", out.display()), format!("{sha}  {name}\n"))?;
    let status = EtcdTool::for_reading(etcdtool::parse_version(&local.config.image))
        .map_err(|e| e.to_string())
        .and_then(|t| t.status(out).map_err(|e| e.to_string()));
    let record = serde_json::json!({
        "file": out.display().to_string(),
        "bytes": bytes,
        "sha256": sha,
        "member": pick.name,
        "endpoint": url,
        "cluster_id": pick.cluster_id,
        "etcd_version": pick.version,
        "member_revision": pick.revision,
        "member_raft_index": pick.raft_index,
        "had_quorum": pick.quorum_read,
        "saved_at_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs(),
        "status": status.as_ref().ok(),
        "status_error": status.as_ref().err(),
    });
    std::fs::write(format!("{}.json", out.display()), serde_json::to_string_pretty(&record)? + "\n")?;
    Ok(Saved { path: out.to_path_buf(), bytes, sha256: sha, member: pick.clone(), endpoint: url, status })
}
