//! Failure injection for the live diagnose tests: each function breaks a healthy 3-member
//! static-pod lab the way a real master breaks, and returns the index of the node to ask.

#![allow(dead_code)]

use std::time::Duration;

use hostfix_lab::lab::Node;
use hostfix_lab::{Lab, LabError};

pub const TARGET: usize = 2;

use hostfix_lab::breaks::{edit, Break};

pub async fn already_bootstrapped(lab: &Lab, t: usize) -> usize {
    Break::AlreadyBootstrapped.apply(lab, t).await.unwrap();
    t
}

pub async fn data_lost(lab: &Lab, t: usize) -> usize {
    Break::DataLost.apply(lab, t).await.unwrap();
    t
}

pub async fn member_removed(lab: &Lab, t: usize) -> usize {
    lab.offline(t, |_| {
        let id = lab.member_id(0, t)?.expect("listed");
        retry_unhealthy(|| lab.etcdctl(0, &["member", "remove", &id]))?;
        Ok(vec![])
    })
    .await
    .unwrap();
    t
}

pub async fn db_corrupt(lab: &Lab, t: usize) -> usize {
    Break::DbCorrupt.apply(lab, t).await.unwrap();
    t
}

pub async fn wal_corrupt(lab: &Lab, t: usize) -> usize {
    lab.offline(t, |n: &Node| {
        // Damage the payload of the WAL's first record: not its length field (a wild length
        // reads past the end, which etcd repairs as a torn write), and far from the tail
        // (a damaged last record is repaired the same way). The CRC check or the protobuf
        // decode then fails on every start.
        let wal = Lab::newest_wal(n)?;
        let b = std::fs::read(&wal).map_err(|e| LabError::io(&wal, e))?;
        // WAL frames: an 8-byte little-endian length (low 56 bits; the top byte flags
        // padding), then the record. Pick the largest record that is not the last one.
        let mut frames = vec![];
        let mut off = 0usize;
        while off + 8 <= b.len() {
            let word = u64::from_le_bytes(b[off..off + 8].try_into().unwrap());
            let len = (word & 0x00ff_ffff_ffff_ffff) as usize;
            let pad = if word >> 63 == 1 { ((word >> 56) & 0x7) as usize } else { 0 };
            if len == 0 {
                break;
            }
            frames.push((off + 8, len));
            off += 8 + len + pad;
        }
        frames.pop();
        let (start, len) = frames.into_iter().max_by_key(|f| f.1).expect("a WAL with records");
        Lab::scribble(&wal, (start + len / 2) as u64, 4).map(|_| vec![])
    })
    .await
    .unwrap();
    t
}

pub async fn nospace(lab: &Lab, t: usize) -> usize {
    lab.offline(t, |_| Ok(vec![edit("quota-backend-bytes", "1048576")])).await.unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    let big = "x".repeat(64 * 1024);
    for k in 0..64 {
        if let Err(e) = lab.etcdctl(0, &["put", &format!("/fill/{k}"), &big]) {
            assert!(e.to_string().contains("database space exceeded"), "{e}");
            return t;
        }
    }
    panic!("quota never exceeded");
}

pub async fn quorum_lost(lab: &Lab, t: usize) -> usize {
    let _ = t;
    lab.stop_member(1).await.unwrap();
    lab.stop_member(2).await.unwrap();
    // Clients keep reading from the survivor, as the API server does: ReadIndex times out.
    for _ in 0..3 {
        let _ = lab.etcdctl(0, &["get", "/a", "--command-timeout=2s"]);
    }
    0
}

/// A member with no data joins with `existing` while every peer is down: no peer answers
/// its request for the cluster's membership.
pub async fn cluster_info_unreachable(lab: &Lab, t: usize) -> usize {
    for i in (0..lab.nodes().len()).filter(|i| *i != t) {
        lab.stop_member(i).await.unwrap();
    }
    lab.offline(t, |n| Lab::lose_data(n).map(|_| vec![edit("initial-cluster-state", "existing")])).await.unwrap();
    t
}

pub async fn membership_mismatch(lab: &Lab, t: usize) -> usize {
    lab.offline(t, |n| {
        let id = lab.member_id(0, t)?.expect("listed");
        retry_unhealthy(|| lab.etcdctl(0, &["member", "remove", &id]))?;
        let added = retry_member_add(lab, &lab.member_name(t), &n.peer_url())?;
        Lab::lose_data(n)?;
        // The operator typed the name wrong when re-adding it.
        Ok(vec![edit("initial-cluster-state", "existing"), edit("initial-cluster", &added), edit("name", &format!("{}-typo", lab.member_name(t)))])
    })
    .await
    .unwrap();
    t
}

pub async fn cluster_id_mismatch(lab: &Lab, t: usize) -> usize {
    Break::ClusterIdMismatch.apply(lab, t).await.unwrap();
    t
}

pub async fn not_running(lab: &Lab, t: usize) -> usize {
    // Parked by etcd-hostfix itself: the kubelet stopped the pod.
    let n = lab.node(t);
    let parked = n.host_root.join("var/lib/etcd-hostfix/parked/etcd.yaml");
    std::fs::create_dir_all(parked.parent().unwrap()).unwrap();
    std::fs::rename(n.manifest(), &parked).unwrap();
    wait_closed(n).await;
    t
}

pub async fn unknown(lab: &Lab, t: usize) -> usize {
    lab.offline(t, |_| Ok(vec![edit("snapshot-count", "lots")])).await.unwrap();
    t
}

async fn wait_closed(n: &Node) {
    let addr = std::net::SocketAddr::new(n.ip, 2379);
    for _ in 0..100 {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr} still answers");
}

/// `member add`, retried: etcd refuses membership changes for ~5 s after a peer reconnects.
/// Returns the ETCD_INITIAL_CLUSTER it prints.
pub fn retry_member_add(lab: &Lab, name: &str, peer: &str) -> Result<String, LabError> {
    let mut last = None;
    for _ in 0..40 {
        match lab.etcdctl(0, &["member", "add", name, &format!("--peer-urls={peer}")]) {
            Ok(out) => {
                return out
                    .lines()
                    .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
                    .and_then(|l| l.strip_suffix('"'))
                    .map(str::to_string)
                    .ok_or_else(|| LabError::Runner(format!("member add printed: {out}")))
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(last.unwrap())
}

/// Retry through etcd's "unhealthy cluster" guard, which refuses membership changes for ~5 s
/// after a member (re)connects.
pub fn retry_unhealthy<T>(mut f: impl FnMut() -> Result<T, LabError>) -> Result<T, LabError> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if tries < 40 && e.to_string().contains("unhealthy cluster") => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            r => return r,
        }
    }
}
