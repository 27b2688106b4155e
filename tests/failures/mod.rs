//! Failure injection for the live diagnose tests: each function breaks a healthy 3-member
//! static-pod lab the way a real master breaks, and returns the index of the node to ask.

#![allow(dead_code)]

use std::time::Duration;

use hostfix_lab::lab::Node;
use hostfix_lab::{EtcdVersion, Lab, LabError};

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
        // Pick the largest record that is not the last one.
        let mut frames = wal_frames(&b);
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

/// The upgrade traps etcd 3.6 refuses: a 3.5 cluster with the v2 API on gets a key through
/// it, then the target member's manifest is moved to `to` as `kubeadm upgrade apply` does.
/// - `in_snapshot`: the member takes a snapshot after the v2 write (`--snapshot-count=10`,
///   then writes until a new `.snap` appears), where 3.6 finds the v2 store at start:
///   `illegal v2store content`.
/// - otherwise the v2 write is only in the WAL after the last snapshot: 3.6 panics when it
///   replays it, `detected disallowed v2 WAL for stage --v2-deprecation=write-only`.
///
/// The lab must run 3.5.
pub async fn v2_content(lab: &Lab, t: usize, to: EtcdVersion, in_snapshot: bool) -> usize {
    let from = lab.version();
    assert_eq!(from, EtcdVersion::V3_5, "only 3.5 serves the v2 API that writes custom v2 content");
    let mut flags = vec![edit("enable-v2", "true")];
    if in_snapshot {
        flags.push(edit("snapshot-count", "10"));
    }
    lab.offline(t, |_| Ok(flags)).await.unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    let snaps = lab.node(t).data_dir().join("member/snap");
    let snap_files = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&snaps).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "snap")).collect()).unwrap_or_default();
        v.sort();
        v
    };
    let before = snap_files();
    let (ca, cert, key) = lab.client_tls_files(t);
    let url = format!("{}/v2/keys/hostfix-v2-key", lab.node(t).client_url());
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--cacert"]).arg(&ca).arg("--cert").arg(&cert).arg("--key").arg(&key)
        .args(["-X", "PUT", &url, "-d", "value=kept-by-v2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "v2 put: {}", String::from_utf8_lossy(&out.stderr));
    if in_snapshot {
        // Waited for by a .snap file newer than the v2 write (one may exist from the restart,
        // taken before it): etcd snapshots once 10 entries are applied past the last.
        for k in 0..200 {
            if snap_files() != before {
                break;
            }
            lab.etcdctl(t, &["put", &format!("/v2-trap/{k}"), "x"]).unwrap();
        }
        assert_ne!(snap_files(), before, "{}: no new .snap after 200 writes", snaps.display());
    }
    lab.offline(t, |n: &Node| {
        let parked = n.host_root.join("root/etcd.yaml");
        let text = std::fs::read_to_string(&parked).map_err(|e| LabError::io(&parked, e))?;
        std::fs::write(&parked, hostfix_lab::lab::kubeadm_upgrade(&text, from, to)).map_err(|e| LabError::io(&parked, e))?;
        // 3.6 removed the flag; kubeadm never wrote it, an operator did.
        Ok(vec![("enable-v2".to_string(), None)])
    })
    .await
    .unwrap();
    t
}

/// A downgrade without etcd's procedure (`Failed to validate schema`): the lab runs a newer
/// etcd (3.7) until the member's storage version says so, then the target's manifest is
/// set back to `to`'s image, as a person reverting an upgrade by hand would.
pub async fn schema_newer(lab: &Lab, t: usize, to: EtcdVersion) -> usize {
    let from = lab.version();
    assert!(from > to, "a downgrade: the lab must run a newer etcd than {to:?}");
    let want = format!("\"storageVersion\":\"{}.0\"", &from.tag()[..from.tag().rfind('.').unwrap()]);
    // Waited for by the storage version itself: etcd's version monitor writes it after the
    // cluster version is decided.
    let mut last = String::new();
    for _ in 0..120 {
        last = lab.etcdctl(t, &["endpoint", "status", "-w", "json"]).unwrap_or_default();
        if last.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(last.contains(&want), "no {want} in {last}");
    lab.offline(t, |n: &Node| {
        let parked = n.host_root.join("root/etcd.yaml");
        let text = std::fs::read_to_string(&parked).map_err(|e| LabError::io(&parked, e))?;
        std::fs::write(&parked, text.replace(&from.kubeadm_image(), &to.kubeadm_image())).map_err(|e| LabError::io(&parked, e))?;
        Ok(vec![])
    })
    .await
    .unwrap();
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

/// A WAL whose metadata record says member ID 0 ("none"), every checksum re-chained so
/// that the file reads cleanly: etcd then restarts raft with ID 0 and panics with
/// `cannot use none as id`. That is how a WAL whose records decode into nonsense looks
/// when the nonsense happens to be well-formed.
pub async fn wal_no_member_id(lab: &Lab, t: usize) -> usize {
    lab.offline(t, |n: &Node| {
        let mut prev = None;
        for wal in Lab::wal_files(n)? {
            let b = std::fs::read(&wal).map_err(|e| LabError::io(&wal, e))?;
            // The re-encoder must reproduce an unedited file byte for byte, or its edit
            // would break more than the member ID.
            assert!(rewrite_wal_metadata(&b, None, |md| md.to_vec()).0 == b, "{}: re-encoding differs", wal.display());
            let (out, end) = rewrite_wal_metadata(&b, prev, |md| {
                // etcdserverpb.Metadata: field 1 NodeID, field 2 ClusterID, both varints.
                let fields = proto_fields(md);
                let mut m = vec![0x08, 0x00];
                for (num, v) in fields {
                    if num == 2 {
                        m.push(0x10);
                        m.extend(varint(v.varint()));
                    }
                }
                m
            });
            prev = Some(end);
            std::fs::write(&wal, out).map_err(|e| LabError::io(&wal, e))?;
        }
        Ok(vec![])
    })
    .await
    .unwrap();
    t
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl Field<'_> {
    fn varint(&self) -> u64 {
        match self {
            Field::Varint(v) => *v,
            Field::Bytes(_) => panic!("expected a varint field"),
        }
    }
}

fn read_varint(b: &[u8], off: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*off];
        *off += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// The fields of a protobuf message that uses only varints and length-delimited fields,
/// as walpb.Record and etcdserverpb.Metadata do.
fn proto_fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut off = 0;
    let mut out = vec![];
    while off < b.len() {
        let key = read_varint(b, &mut off);
        match key & 7 {
            0 => out.push((key >> 3, Field::Varint(read_varint(b, &mut off)))),
            2 => {
                let len = read_varint(b, &mut off) as usize;
                out.push((key >> 3, Field::Bytes(&b[off..off + len])));
                off += len;
            }
            w => panic!("unexpected wire type {w} in a WAL record"),
        }
    }
    out
}

/// The records of a WAL file, as (offset, length). Frames: an 8-byte little-endian length
/// of the record (low 56 bits; a set top bit means the low 3 bits of the top byte count
/// the padding bytes that follow it to 8-byte alignment), then the record. A zero length
/// is the preallocated tail.
fn wal_frames(b: &[u8]) -> Vec<(usize, usize)> {
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
    frames
}

/// Re-encode one WAL file with `edit` applied to each metadata record's data, and every
/// record's CRC re-chained. The WAL's CRC is a running CRC-32C over the data of every
/// record, carried across files: each file's first record (crc type) holds the running
/// value the previous file ended with. A changed record therefore changes the CRC of every
/// record after it, in this file and the next. `prev` is the running value the previous
/// file ended with (None for the first file); the value this file ends with is returned.
fn rewrite_wal_metadata(b: &[u8], prev: Option<u32>, edit: impl Fn(&[u8]) -> Vec<u8>) -> (Vec<u8>, u32) {
    const METADATA: u64 = 1;
    const CRC: u64 = 4;
    let mut out = Vec::with_capacity(b.len());
    let mut running = prev.unwrap_or(0);
    for (start, len) in wal_frames(b) {
        let rec = &b[start..start + len];
        let (mut typ, mut crc, mut data) = (0u64, 0u64, Vec::new());
        for (num, f) in proto_fields(rec) {
            match (num, f) {
                (1, Field::Varint(v)) => typ = v,
                (2, Field::Varint(v)) => crc = v,
                (3, Field::Bytes(d)) => data = d.to_vec(),
                _ => panic!("unexpected field {num} in a WAL record"),
            }
        }
        if typ == CRC {
            // The first file's chain starts from the value it carries; a later file's
            // carries the previous file's (re-chained) end.
            running = prev.unwrap_or(crc as u32);
            crc = u64::from(running);
        } else {
            if typ == METADATA {
                data = edit(&data);
            }
            running = crc32c::crc32c_append(running, &data);
            crc = u64::from(running);
        }
        let mut enc = vec![0x08];
        enc.extend(varint(typ));
        enc.push(0x10);
        enc.extend(varint(crc));
        if !data.is_empty() {
            enc.push(0x1a);
            enc.extend(varint(data.len() as u64));
            enc.extend(&data);
        }
        let pad = (8 - enc.len() % 8) % 8;
        let mut lenf = enc.len() as u64;
        if pad != 0 {
            lenf |= (0x80 | pad as u64) << 56;
        }
        out.extend(lenf.to_le_bytes());
        out.extend(&enc);
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    // Keep the preallocated size: zeros past the last record read as the end.
    out.resize(out.len().max(b.len()), 0);
    (out, running)
}
