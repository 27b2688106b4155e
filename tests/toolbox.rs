//! Seed 003's toolbox on real mTLS clusters, both etcd versions: `keys` (the inventory,
//! against etcdctl's own listing, at a pinned revision, with and without values), `check
//! perf` (bounded, leaves nothing behind, and `rejoin` warns after a failed disk check),
//! and `defrag` (refused while a member is down; heals a real NOSPACE with no key lost).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use hostfix_lab::{EtcdVersion, Lab, LabRuntime};

fn cmd(lab: &Lab, i: usize, args: &[&str]) -> Out {
    let mut a = node_args(lab, i);
    a.extend(args.iter().map(|s| s.to_string()));
    hostfix(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn ok(o: &Out, what: &str) -> serde_json::Value {
    assert_eq!(o.code, 0, "{what}\nstdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    serde_json::from_str(&o.stdout).unwrap_or(serde_json::Value::Null)
}

/// group -> (keys, value bytes), as `keys -o json` reports it.
fn groups(v: &serde_json::Value) -> BTreeMap<String, (u64, Option<u64>)> {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_str().unwrap().to_string(), (g["keys"].as_u64().unwrap(), g["value_bytes"].as_u64())))
        .collect()
}

async fn put(lab: &Lab, key: &str, value: &[u8]) -> Result<(), String> {
    let conn = lab.connector(0).unwrap();
    let mut ep = conn.connect(&lab.node(0).client_url()).await.map_err(|e| e.to_string())?;
    ep.put_bytes(key.as_bytes(), value).await.map_err(|e| e.to_string())
}

async fn keys_inventory(lab: &Lab) {
    for i in 0..30 {
        put(lab, &format!("/registry/pods/default/web-{i}"), &[b'p'; 100]).await.unwrap();
    }
    for i in 0..12 {
        put(lab, &format!("/registry/events/kube-system/e{i}"), &[b'e'; 10]).await.unwrap();
    }
    put(lab, "/registry/pods", b"leaf").await.unwrap();
    put(lab, "/registry/pods-archive/x", b"xx").await.unwrap();
    put(lab, "plain", b"12345").await.unwrap();
    let at = ok(&cmd(lab, 0, &["-o", "json", "keys"]), "keys");
    // etcd 3.7 streams each group (RangeStream); older servers answer UNIMPLEMENTED, and the
    // same walk pages.
    let streams = lab.state.spec.version >= EtcdVersion::V3_7;
    assert_eq!(at["range_stream"], streams, "{at:#}");
    let g = groups(&at);
    assert_eq!(g["/registry/pods"], (31, Some(30 * 100 + 4)), "{at:#}");
    assert_eq!(g["/registry/events"], (12, Some(120)));
    assert_eq!(g["/registry/pods-archive"], (1, Some(2)));
    assert_eq!(g["plain"], (1, Some(5)));
    // Every key counted once: the total is etcdctl's own count.
    let listed = lab.etcdctl(0, &["get", "", "--from-key", "--keys-only"]).unwrap();
    let n = listed.lines().filter(|l| !l.is_empty()).count() as u64;
    assert_eq!(at["total_keys"].as_u64(), Some(n), "{listed}");
    // Largest first.
    assert_eq!(at["groups"][0]["group"], "/registry/pods");

    // Count-only: the same counts from the index, no bytes.
    let c = ok(&cmd(lab, 0, &["-o", "json", "keys", "--count-only"]), "keys --count-only");
    let gc = groups(&c);
    assert_eq!(gc.keys().collect::<Vec<_>>(), g.keys().collect::<Vec<_>>());
    for (k, (n, _)) in &g {
        assert_eq!(gc[k], (*n, None), "{k}");
    }
    // Small pages give the same answer as one.
    let paged = ok(&cmd(lab, 0, &["-o", "json", "keys", "--page", "7"]), "keys --page 7");
    assert_eq!(groups(&paged), g);
    assert_eq!(paged["range_stream"], false, "--page asks for pages");

    // A prefix and a depth.
    let p = ok(&cmd(lab, 0, &["-o", "json", "keys", "--prefix", "/registry/pods/", "--depth", "3"]), "keys --prefix");
    assert_eq!(groups(&p).into_iter().collect::<Vec<_>>(), [("/registry/pods/default".to_string(), (30, Some(3000)))]);
    let pc = ok(&cmd(lab, 0, &["-o", "json", "keys", "--prefix", "/registry/pods/def", "--depth", "2", "--count-only"]), "keys --prefix --count-only");
    assert_eq!(groups(&pc).into_iter().collect::<Vec<_>>(), [("/registry/pods".to_string(), (30, None))]);

    // One revision for every page: later writes do not show at the pinned revision.
    let rev = at["revision"].as_i64().unwrap();
    for i in 0..5 {
        put(lab, &format!("/registry/pods/default/late-{i}"), b"x").await.unwrap();
    }
    let old = ok(&cmd(lab, 0, &["-o", "json", "keys", "--revision", &rev.to_string(), "--page", "5"]), "keys --revision");
    assert_eq!(groups(&old), g);
    let old_streamed = ok(&cmd(lab, 0, &["-o", "json", "keys", "--revision", &rev.to_string()]), "keys --revision, streamed");
    assert_eq!(groups(&old_streamed), g);
    let oldc = ok(&cmd(lab, 0, &["-o", "json", "keys", "--revision", &rev.to_string(), "--count-only"]), "keys --revision --count-only");
    assert_eq!(groups(&oldc)["/registry/pods"], (31, None));
    let now = ok(&cmd(lab, 0, &["-o", "json", "keys"]), "keys now");
    assert_eq!(groups(&now)["/registry/pods"].0, 36);

    // The table.
    let t = cmd(lab, 0, &["keys"]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(t.stdout.starts_with("GROUP") && t.stdout.contains("TOTAL"), "{}", t.stdout);
}

async fn check_perf(lab: &Lab) {
    let o = cmd(lab, 0, &["-o", "json", "check", "perf", "--duration", "2s", "--disk-time", "1s"]);
    assert!(o.code == 0 || o.code == 4, "{}\n{}", o.stdout, o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["pass"].as_bool(), Some(o.code == 0), "{v:#}");
    assert!(v["disk"]["writes"].as_u64().unwrap() > 0 && v["disk"]["p99_ms"].as_f64().is_some(), "{v:#}");
    assert!(v["load"]["writes"].as_u64().unwrap() > 100, "{v:#}");
    assert!(v["load"]["removed"].as_u64() >= v["load"]["writes"].as_u64(), "every test key is removed: {v:#}");
    let left = lab.etcdctl(0, &["get", "/etcd-hostfix-check-perf/", "--prefix", "--keys-only"]).unwrap();
    assert!(left.trim().is_empty(), "{left}");
    let parent = lab.node(0).data_dir().parent().unwrap().to_path_buf();
    let strays: Vec<_> = std::fs::read_dir(&parent).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains("check-perf")).collect();
    assert!(strays.is_empty(), "files left beside the data dir: {strays:?}");
    let last = lab.node(0).host_root.join("var/lib/etcd-hostfix/perf/last-disk-check.json");
    assert!(last.exists());

    // The table says PASS or FAIL per figure, and overall.
    let t = cmd(lab, 0, &["check", "perf", "--disk-only", "--disk-time", "1s"]);
    assert!(t.code == 0 || t.code == 4, "{}", t.stderr);
    let last_line = t.stdout.lines().last().unwrap_or_default();
    assert!(t.stdout.contains("fdatasync p99 under") && (last_line == "PASS" || last_line == "FAIL"), "{}", t.stdout);
    assert_eq!(t.code == 0, last_line == "PASS");

    // A failed disk check is a warning in the next rejoin plan on that master.
    let t = 2;
    lab.offline(t, |n| Lab::lose_data(n).map(|_| vec![])).await.unwrap();
    let state = lab.node(t).host_root.join("var/lib/etcd-hostfix/perf");
    std::fs::create_dir_all(&state).unwrap();
    let failed = serde_json::json!({"dir": "/var/lib", "writes": 100, "bytes": 230000, "p50_ms": 9.0, "p99_ms": 31.5, "max_ms": 40.0, "pass": false, "checked_at_unix": 1});
    std::fs::write(state.join("last-disk-check.json"), failed.to_string()).unwrap();
    let plan = cmd(lab, t, &["rejoin", "--dry-run"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("warning: the last disk check here") && plan.stdout.contains("p99 31.5 ms"), "{}", plan.stdout);
    let healed = cmd(lab, t, &["rejoin", "--yes"]);
    assert_eq!(healed.code, 0, "{}\n{}", healed.stdout, healed.stderr);
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
}

async fn defrag(lab: &Lab) {
    // Refused while a member is down, nothing changed.
    lab.stop_member(1).await.unwrap();
    let o = cmd(lab, 0, &["defrag", "--yes"]);
    assert_eq!(o.code, 3, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("cannot spare a member") && o.stderr.contains(&lab.member_name(1)), "{}", o.stderr);
    lab.start_member(1).await.unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();

    // A small quota, then history until NOSPACE.
    const QUOTA: u64 = 12 << 20;
    for i in 0..3 {
        lab.offline(i, |_| Ok(vec![("quota-backend-bytes".into(), Some(QUOTA.to_string()))])).await.unwrap();
        lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    }
    for k in 0..20 {
        put(lab, &format!("/keep/{k:02}"), format!("value-{k}").as_bytes()).await.unwrap();
    }
    let big = vec![b'z'; 512 << 10];
    let mut full = None;
    for n in 0..200 {
        if let Err(e) = put(lab, "/churn/one", &big).await {
            full = Some((n, e));
            break;
        }
    }
    let (n, e) = full.expect("the quota was never reached");
    assert!(e.contains("database space exceeded"), "after {n} puts: {e}");
    let alarms = lab.etcdctl(0, &["alarm", "list"]).unwrap();
    assert!(alarms.contains("NOSPACE"), "{alarms}");

    let dry = cmd(lab, 0, &["defrag", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(dry.stdout.contains("defrag plan") && dry.stdout.contains("disarm") && dry.stdout.contains("dry run"), "{}", dry.stdout);
    let o = cmd(lab, 1, &["defrag", "--yes"]);
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("NOSPACE alarm(s) disarmed"), "{}", o.stdout);
    let alarms = lab.etcdctl(0, &["alarm", "list"]).unwrap();
    assert!(alarms.trim().is_empty(), "{alarms}");
    put(lab, "/after/defrag", b"accepted").await.expect("writes succeed after defrag");
    for k in 0..20 {
        let v = lab.etcdctl(2, &["get", &format!("/keep/{k:02}"), "--print-value-only"]).unwrap();
        assert_eq!(v.trim(), format!("value-{k}"), "key /keep/{k:02} lost");
    }
    let v = lab.etcdctl(0, &["get", "/churn/one", "--print-value-only"]).unwrap();
    assert_eq!(v.trim().len(), big.len(), "the last value written is kept");
    // Each member's db is below the quota now.
    let st = ok(&cmd(lab, 0, &["-o", "json", "status"]), "status");
    for m in st["members"].as_array().unwrap() {
        assert!(m["db_size"].as_u64().unwrap() < QUOTA, "{m:#}");
    }
}

async fn toolbox(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::StaticPod).await;
    keys_inventory(&lab).await;
    check_perf(&lab).await;
    defrag(&lab).await;
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolbox_v3_4() {
    toolbox(EtcdVersion::V3_4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolbox_v3_6() {
    toolbox(EtcdVersion::V3_6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolbox_v3_5() {
    toolbox(EtcdVersion::V3_5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolbox_v3_7() {
    toolbox(EtcdVersion::V3_7).await;
}
