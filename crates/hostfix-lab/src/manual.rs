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

/// Seed 002's procedure after 2 of 3 masters are lost, scripted with zero think time:
/// park every manifest (even the survivor's), add `--force-new-cluster` to the survivor's,
/// start it, then for each other master in turn: `member add` (a voter, as the seed does),
/// set `--initial-cluster` to the members so far and `--initial-cluster-state=existing`,
/// start it, and wait until it has joined (the cluster has no quorum until it does).
/// As in the seed, `--force-new-cluster` stays in the survivor's manifest. The other
/// masters' manifests are expected parked (in `root/`) and their data gone.
pub async fn seed_002_procedure(lab: &Lab, survivor: usize) -> Result<(), LabError> {
    let s = lab.node(survivor).clone();
    lab.stop_member(survivor).await?;
    let parked = s.host_root.join("root/etcd.yaml");
    let text = std::fs::read_to_string(&parked).map_err(|e| LabError::io(&parked, e))?;
    let edited = hostfix_core::manifest::edit_manifest_flags(&text, &[("force-new-cluster".into(), Some("true".into()))])
        .map_err(|e| LabError::Runner(e.to_string()))?;
    std::fs::write(&parked, edited).map_err(|e| LabError::io(&parked, e))?;
    lab.start_member(survivor).await?;
    wait_until(|| lab.etcdctl(survivor, &["endpoint", "health"]).is_ok()).await?;
    let mut cluster = vec![format!("{}={}", lab.member_name(survivor), s.peer_url())];
    for i in (0..lab.nodes().len()).filter(|i| *i != survivor) {
        let n = lab.node(i).clone();
        let name = lab.member_name(i);
        retry(|| lab.etcdctl(survivor, &["member", "add", &name, &format!("--peer-urls={}", n.peer_url())])).await?;
        cluster.push(format!("{name}={}", n.peer_url()));
        let data = n.data_dir().join("member");
        if data.exists() {
            let aside = n.host_root.join(format!("member.bak-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()));
            std::fs::rename(&data, &aside).map_err(|e| LabError::io(&data, e))?;
        }
        let parked = n.host_root.join("root/etcd.yaml");
        let text = std::fs::read_to_string(&parked).map_err(|e| LabError::io(&parked, e))?;
        let edited = hostfix_core::manifest::edit_manifest_flags(
            &text,
            &[("initial-cluster".into(), Some(cluster.join(","))), ("initial-cluster-state".into(), Some("existing".into()))],
        )
        .map_err(|e| LabError::Runner(e.to_string()))?;
        std::fs::write(&parked, edited).map_err(|e| LabError::io(&parked, e))?;
        lab.start_member(i).await?;
        // "On m1, run member list to ensure that m2 joined": it has, once the cluster
        // answers a quorum read again.
        wait_until(|| lab.etcdctl(survivor, &["endpoint", "health"]).is_ok() && lab.etcdctl(i, &["endpoint", "health"]).is_ok()).await?;
    }
    Ok(())
}

async fn wait_until(mut f: impl FnMut() -> bool) -> Result<(), LabError> {
    for _ in 0..3000 {
        if f() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(LabError::Timeout("seed 002 procedure: a member never became healthy".into()))
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

/// A snapshot restore on one master as an operator types it (the etcd docs' procedure,
/// kubeadm layout), scripted with zero think time: park the manifest, move the data dir
/// aside, `etcdutl snapshot restore` (3.5; `etcdctl snapshot restore` with 3.4) into the data
/// dir as a one-member cluster, put the manifest back, and wait until it serves quorum reads.
/// Nothing verifies the snapshot first, and the data dir is moved, not copied.
pub async fn restore_procedure(lab: &Lab, i: usize, snapshot: &std::path::Path) -> Result<(), LabError> {
    let n = lab.node(i).clone();
    lab.stop_member(i).await?;
    let data = n.data_dir();
    if data.exists() {
        let aside = n.host_root.join(format!("etcd.bak-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()));
        std::fs::rename(&data, &aside).map_err(|e| LabError::io(&data, e))?;
    }
    let v = lab.state.spec.version;
    let bin = v.bin_dir()?.join(if v == crate::EtcdVersion::V3_4 { "etcdctl" } else { "etcdutl" });
    let name = lab.member_name(i);
    let out = std::process::Command::new(&bin)
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(snapshot)
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--name={name}"))
        .arg(format!("--initial-cluster={name}={}", n.peer_url()))
        .arg(format!("--initial-advertise-peer-urls={}", n.peer_url()))
        .output()
        .map_err(|e| LabError::Runner(format!("{}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(LabError::Runner(format!("{} snapshot restore: {}", bin.display(), String::from_utf8_lossy(&out.stderr))));
    }
    lab.start_member(i).await?;
    wait_until(|| lab.etcdctl(i, &["endpoint", "health"]).is_ok()).await
}
