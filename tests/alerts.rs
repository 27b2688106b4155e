//! The alerting rules and the Grafana dashboard that ship in the packages
//! (`/usr/share/etcd-hostfix/`), checked with Prometheus' own promtool (Debian's
//! `prometheus`, installed by scripts/dev): the rules load, each alert's unit test passes,
//! and every query of the dashboard parses. That every metric they use is really emitted
//! by a daemon is checked on a live lab: `tests/daemon.rs` `the_fleet_is_seen_from_every_master`.
//! And a real Prometheus server, scraping a lab's daemons with the shipped rules, sees
//! the alerts fire for real breaks (`alerts_fire_in_the_lab`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use hostfix_lab::breaks::Break;
use hostfix_lab::{EtcdVersion, LabRuntime};

fn tree() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let o = Command::new("promtool").args(args).current_dir(dir).output().expect("promtool (scripts/dev installs Debian's prometheus)");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_load_and_every_alert_fires_as_tested() {
    let dir = tree().join("packaging/prometheus");
    let out = promtool(&["check", "rules", "etcd-hostfix.rules.yml"], &dir);
    assert!(out.contains("SUCCESS: 10 rules found"), "{out}");
    let out = promtool(&["test", "rules", "etcd-hostfix.rules.test.yml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test that expects it to fire.
    let rules = std::fs::read_to_string(dir.join("etcd-hostfix.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("etcd-hostfix.rules.test.yml")).unwrap();
    for name in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        let fires = tests.split("- eval_time:").any(|t| t.contains(&format!("alertname: {name}\n")) && t.contains("exp_labels"));
        assert!(fires, "no unit test sees {name} fire");
    }
}

/// The dashboard's queries, with Grafana's variables given values promtool can parse.
pub fn dashboard_queries() -> Vec<String> {
    let p = tree().join("packaging/grafana/etcd-hostfix-dashboard.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let mut out = vec![];
    for panel in d["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn every_dashboard_query_parses() {
    let p = tree().join("packaging/grafana/etcd-hostfix-dashboard.json");
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(d["uid"], "etcd-hostfix");
    // Panel IDs unique; every query goes to the data source the user picks.
    let panels = d["panels"].as_array().unwrap();
    let mut ids: Vec<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        assert!(panel["targets"].as_array().is_some_and(|t| !t.is_empty()), "{} has a query", panel["title"]);
    }
    // Each query as a recording rule: `promtool check rules` parses every expression.
    let rules: Vec<String> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.replace("$__rate_interval", "5m").replace("$instance", ".*");
            format!("      - record: dashboard:query{i}\n        expr: {}\n", serde_json::to_string(&e).unwrap())
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, format!("groups:\n  - name: dashboard\n    rules:\n{}", rules.concat())).unwrap();
    let out = promtool(&["check", "rules", file.to_str().unwrap()], dir.path());
    assert!(out.contains(&format!("SUCCESS: {} rules found", rules.len())), "{out}");
}

/// A Prometheus server of our own for one lab: its own address in the lab's subnet and its
/// own data dir; stopped by PID when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        hostfix_lab::lab::terminate_pid(self.child.id(), Duration::from_secs(10));
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Port 9090 on host `host` of the lab's subnet (the masters are .1 to .3).
    fn addr(lab: &hostfix_lab::Lab, host: u8) -> String {
        let ip = lab.node(0).ip.to_string();
        format!("{}.{host}:9090", ip.rsplit_once('.').unwrap().0)
    }

    /// Start one in `dir` on `addr` (its own address in the lab's subnet), scraping
    /// `targets` every second with the shipped rules, only their `for:` holds cut to 3 s (a
    /// test cannot wait 5 minutes per alert; the expressions, labels and texts are the
    /// shipped ones). `cut`: started inside a partition's group, on the cut-off side.
    fn start(dir: &Path, addr: &str, targets: &[String], cut: Option<&hostfix_lab::fault::Partition>) -> Prometheus {
        let rules = std::fs::read_to_string(tree().join("packaging/prometheus/etcd-hostfix.rules.yml")).unwrap();
        let quick: String = rules
            .lines()
            .map(|l| if l.trim_start().starts_with("for: ") { l.split("for:").next().unwrap().to_string() + "for: 3s" } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("rules.yml"), quick).unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: etcd-hostfix\n    static_configs:\n      - targets: [{}]\n", targets.join(", ")),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(p) = cut {
            p.enter(&mut cmd);
        }
        let child = cmd.spawn().expect("prometheus (scripts/dev installs Debian's)");
        Prometheus { child, url: format!("http://{addr}") }
    }

    /// Wait, bounded, until every one of `names` has fired; each firing alert is kept in
    /// `fired` (the first time it is seen).
    fn wait_for(&self, fired: &mut std::collections::BTreeMap<String, serde_json::Value>, names: &[&str], secs: u64, log: &Path) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            for a in self.firing() {
                let name = a["labels"]["alertname"].as_str().unwrap_or_default().to_string();
                fired.entry(name).or_insert(a);
            }
            if names.iter().all(|n| fired.contains_key(*n)) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not fired after {secs}s: {names:?}; fired: {:?}\n{}",
                fired.keys().collect::<Vec<_>>(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The alerts Prometheus has firing now: (name, labels and annotations as JSON).
    fn firing(&self) -> Vec<serde_json::Value> {
        let o = Command::new("curl").args(["-s", "--max-time", "5", &format!("{}/api/v1/alerts", self.url)]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["data"]["alerts"].as_array().cloned().unwrap_or_default().into_iter().filter(|a| a["state"] == "firing").collect()
    }
}

/// The shipped rules under a real Prometheus scraping a real lab's daemons, every second.
/// Only the `for:` holds are cut to seconds (a test cannot wait 5 minutes per alert); the
/// expressions, labels and texts are the shipped ones. Broken for real: a daemon paused two
/// days ago, a snapshot three hours old, a repair that fails with max_repairs 1 (repair
/// failed, budget spent, circuit open), a daemon killed (down, and silent in etcd), and two
/// members of three gone (quorum lost), then a member's quota filled (NOSPACE). What fired
/// is added to target/alerts-lab.json (docs/fleet.md quotes it). Partitioned fires in
/// `the_partition_alert_fires_in_the_lab`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_in_the_lab() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    write_keys(&lab, 0);
    // m1: paused two days ago (the file `pause` writes, dated back).
    let state = |i: usize| lab.node(i).host_root.join("var/lib/etcd-hostfix");
    let since = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    let since = since.format(&time::format_description::well_known::Rfc3339).unwrap();
    std::fs::create_dir_all(state(0).join("daemon")).unwrap();
    std::fs::write(state(0).join("daemon/paused.json"), serde_json::json!({"reason": "kernel upgrade", "since": since}).to_string()).unwrap();
    // m2: its newest scheduled snapshot is three hours old, and the next is far off.
    let snaps = state(1).join("snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    let old = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 3 * 3600;
    std::fs::write(snaps.join(format!("scheduled-{old}.db")), b"stand-in").unwrap();
    // m3: a repair that fails at its add-learner step, with one repair allowed.
    let cause = d.path().join("cause");
    std::fs::write(&cause, b"").unwrap();
    let fail_at = format!("add-learner:{}", cause.display());
    let cfg = |i: usize, extra: &str| format!("probe_interval: 500ms\nmetrics_listen: {}:9379\n{extra}", lab.node(i).ip);
    let mut ds = vec![
        DaemonProc::start(&lab, 0, &cfg(0, "snapshot_interval: 0\n"), &[]),
        DaemonProc::start(&lab, 1, &cfg(1, "snapshot_interval: 1000h\n"), &[]),
        DaemonProc::start(&lab, 2, &cfg(2, "snapshot_interval: 0\nmax_repairs: 1\n"), &[("HOSTFIX_FAIL_AT", fail_at.as_str())]),
    ];

    // The server, on the lab's .10.
    let pdir = d.path().join("prometheus");
    let addr = Prometheus::addr(&lab, 10);
    let targets: Vec<String> = (0..3).map(|i| format!("{}:9379", lab.node(i).ip)).collect();
    let prom = Prometheus::start(&pdir, &addr, &targets, None);
    let log = pdir.join("prometheus.log");
    let mut fired: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    let mut wait_for = |prom: &Prometheus, names: &[&str], secs: u64| prom.wait_for(&mut fired, names, secs, &log);
    wait_for(&prom, &["EtcdHostfixPausedTooLong", "EtcdHostfixSnapshotTooOld"], 90);

    Break::AlreadyBootstrapped.apply(&lab, 2).await.unwrap();
    wait_for(&prom, &["EtcdHostfixRepairFailed", "EtcdHostfixBudgetSpent", "EtcdHostfixCircuitOpen"], 120);

    ds[1].kill();
    wait_for(&prom, &["EtcdHostfixAgentDown", "EtcdHostfixAgentSilent"], 60);

    // m3 crashloops and m2 is stopped: m1's daemon, paused, still observes quorum lost.
    lab.stop_member(1).await.unwrap();
    wait_for(&prom, &["EtcdHostfixQuorumLost"], 120);

    // Quorum back (m1 and m2; the failed repair had removed m3), then m1 restarted with a
    // 1 MiB quota and filled: NOSPACE.
    lab.start_member(1).await.unwrap();
    lab.wait_healthy(&[0, 1], 2, Duration::from_secs(60)).await.unwrap();
    lab.offline(0, |_| Ok(vec![("quota-backend-bytes".to_string(), Some("1048576".to_string()))])).await.unwrap();
    lab.wait_healthy(&[0, 1], 2, Duration::from_secs(60)).await.unwrap();
    let big = "x".repeat(64 * 1024);
    let full = (0..64).find_map(|k| lab.etcdctl(0, &["put", &format!("/fill/{k}"), &big]).err());
    assert!(full.is_some_and(|e| e.to_string().contains("database space exceeded")), "the quota was reached");
    wait_for(&prom, &["EtcdHostfixNospace"], 120);

    assert_eq!(fired["EtcdHostfixAgentSilent"]["labels"]["member"], "m2");
    assert_eq!(fired["EtcdHostfixCircuitOpen"]["labels"]["instance"], format!("{}:9379", lab.node(2).ip));
    assert!(fired["EtcdHostfixPausedTooLong"]["annotations"]["description"].as_str().unwrap().contains("etcd-hostfix resume"));
    record(&fired);
    drop(prom);
    drop(ds);
    lab.down().await.unwrap();
}

/// What fired, added to target/alerts-lab.json (docs/fleet.md quotes it).
fn record(fired: &std::collections::BTreeMap<String, serde_json::Value>) {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let out = tree().join("target/alerts-lab.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut all: serde_json::Map<String, serde_json::Value> =
        std::fs::read_to_string(&out).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    for (k, v) in fired {
        all.insert(k.clone(), v.clone());
    }
    std::fs::write(&out, serde_json::to_string_pretty(&all).unwrap()).unwrap();
    eprintln!("fired in the lab: {:?} (added to {})", fired.keys().collect::<Vec<_>>(), out.display());
}

/// `EtcdHostfixPartitioned`, for real: m3 cut off by the lab's partition (cgroup + iptables).
/// A cut master cannot be scraped from outside its cut, so this Prometheus runs on the cut-off
/// side, in the partition's group, and scrapes m3's daemon alone; its own address is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_alert_fires_in_the_lab() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    let mut cut = hostfix_lab::fault::Partition::group(&lab, 2).unwrap();
    let cfg = format!("probe_interval: 500ms\nsnapshot_interval: 0\nmetrics_listen: {}:9379\n", lab.node(2).ip);
    let daemon = DaemonProc::start_in(&lab, 2, &cfg, &[], Some(&cut));
    let addr = Prometheus::addr(&lab, 11);
    let pdir = d.path().join("prometheus");
    let prom = Prometheus::start(&pdir, &addr, &[format!("{}:9379", lab.node(2).ip)], Some(&cut));
    until("m3's daemon watching", 60, || daemon.status()["decision"].as_str().is_some()).await;
    cut.cut_off().unwrap();
    let mut fired = Default::default();
    prom.wait_for(&mut fired, &["EtcdHostfixPartitioned"], 120, &pdir.join("prometheus.log"));
    assert_eq!(fired["EtcdHostfixPartitioned"]["labels"]["instance"], format!("{}:9379", lab.node(2).ip));
    record(&fired);
    drop(prom);
    cut.heal().unwrap();
    drop(daemon);
    lab.down().await.unwrap();
}
