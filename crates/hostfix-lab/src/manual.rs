//! Seed 000's manual procedure, scripted with zero think time, as an operator types it:
//! the baseline `rejoin` is benchmarked against. It uses the real `etcdctl` and moves the
//! manifest the kubeadm way.

use std::time::Duration;

use crate::lab::Lab;
use crate::LabError;

/// `member list` → park the manifest → `member remove` → move the data aside →
/// `member add` (retried through etcd's "unhealthy cluster" window) → set
/// `--initial-cluster-state=existing` and the printed `--initial-cluster` → unpark.
/// Returns when the manifest is back; the caller waits for health as an operator would.
pub async fn seed_000_procedure(lab: &Lab, i: usize) -> Result<(), LabError> {
    let via = if i == 0 { 1 } else { 0 };
    let name = lab.member_name(i);
    let n = lab.node(i).clone();
    let id = lab.member_id(via, i)?;
    lab.stop_member(i).await?;
    if let Some(id) = id {
        retry(|| lab.etcdctl(via, &["member", "remove", &id])).await?;
    }
    let data = n.data_dir().join("member");
    if data.exists() {
        let aside = n.host_root.join(format!("member.bak-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()));
        std::fs::rename(&data, &aside).map_err(|e| LabError::io(&data, e))?;
    }
    let out = retry(|| lab.etcdctl(via, &["member", "add", &name, &format!("--peer-urls={}", n.peer_url())])).await?;
    let cluster = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .and_then(|l| l.strip_suffix('"'))
        .ok_or_else(|| LabError::Runner(format!("member add printed no ETCD_INITIAL_CLUSTER: {out}")))?
        .to_string();
    let parked = n.host_root.join("root/etcd.yaml");
    let text = std::fs::read_to_string(&parked).map_err(|e| LabError::io(&parked, e))?;
    let edited = hostfix_core::manifest::edit_manifest_flags(
        &text,
        &[("initial-cluster".into(), Some(cluster)), ("initial-cluster-state".into(), Some("existing".into()))],
    )
    .map_err(|e| LabError::Runner(e.to_string()))?;
    std::fs::write(&parked, edited).map_err(|e| LabError::io(&parked, e))?;
    lab.start_member(i).await
}

async fn retry(mut f: impl FnMut() -> Result<String, LabError>) -> Result<String, LabError> {
    let mut last = None;
    for _ in 0..200 {
        match f() {
            Ok(out) => return Ok(out),
            Err(e) if e.to_string().contains("unhealthy cluster") => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap())
}
