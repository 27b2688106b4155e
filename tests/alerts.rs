//! The alerting rules and the Grafana dashboard that ship in the packages
//! (`/usr/share/etcd-hostfix/`), checked with Prometheus' own promtool (Debian's
//! `prometheus`, installed by scripts/dev): the rules load, each alert's unit test passes,
//! and every query of the dashboard parses. That every metric they use is really emitted
//! by a daemon is checked on a live lab: `tests/daemon.rs` `the_fleet_is_seen_from_every_master`.

use std::path::{Path, PathBuf};
use std::process::Command;

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
