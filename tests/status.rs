//! `etcd-hostfix status` against real 3-member mTLS clusters, in both lab forms (kubeadm
//! static pods and RKE Docker containers) and with both etcd versions, in three states:
//! healthy, one member stopped, one member crashlooping.

mod common;

use common::*;
use hostfix_lab::{EtcdVersion, LabRuntime};

fn members_by_name(j: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    j["members"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap().to_string(), m.clone())).collect()
}

async fn scenario(rt: LabRuntime, v: EtcdVersion) {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = lab(dir.path(), 3, v, rt).await;
    for i in 0..20 {
        lab.etcdctl(0, &["put", &format!("/k/{i}"), "v"]).unwrap();
    }
    let names: Vec<String> = (0..3).map(|i| lab.member_name(i)).collect();

    // Healthy: table and JSON, exit 0.
    let t = status(&lab, 0, &[]);
    assert_eq!(t.code, 0, "{}\n{}", t.stdout, t.stderr);
    assert!(t.stdout.contains("cluster: healthy"), "{}", t.stdout);
    assert!(t.stdout.contains("NAME") && t.stdout.contains(&names[2]));
    let j = status(&lab, 0, &["-o", "json"]);
    assert_eq!(j.code, 0, "{}", j.stderr);
    let j = j.json();
    let ms = members_by_name(&j);
    assert_eq!(ms.len(), 3);
    for n in &names {
        let m = &ms[n];
        assert_eq!(m["healthy"], true, "{m}");
        assert_eq!(m["version"].as_str().unwrap(), v.tag());
        assert!(m["revision"].as_i64().unwrap() >= 21, "{m}");
        assert!(m["raft_index"].as_u64().unwrap() > 0);
        assert_eq!(m["is_learner"], false);
    }
    assert_eq!(ms.values().filter(|m| m["is_leader"] == true).count(), 1);
    assert_eq!(j["local"]["name"], names[0]);
    assert_eq!(j["local"]["state"], "running");
    assert_eq!(j["local"]["member_id"], ms[&names[0]]["id"]);
    assert!(j["leader"].is_string());
    match rt {
        LabRuntime::StaticPod => {
            assert_eq!(j["local"]["runtime"], "static-pod");
            assert_eq!(j["local"]["manifest_state"], "present");
            // hostPath volumes are honoured: etcd wrote /var/lib/etcd inside its container,
            // which is <host-root>/var/lib/etcd on the host.
            assert!(lab.node(0).data_dir().join("member/wal").is_dir());
            assert_eq!(j["local"]["data_dir"].as_str().unwrap(), lab.node(0).data_dir().display().to_string());
        }
        LabRuntime::Docker => {
            assert_eq!(j["local"]["runtime"], "docker");
            assert_eq!(j["local"]["container_state"], "running");
            assert!(lab.node(0).data_dir().join("member/wal").is_dir());
        }
    }

    // One member stopped: degraded (exit 4), seen from a healthy member.
    lab.stop_member(2).await.unwrap();
    let j = status(&lab, 0, &["-o", "json"]);
    assert_eq!(j.code, 4, "{}\n{}", j.stdout, j.stderr);
    let j = j.json();
    let ms = members_by_name(&j);
    assert_eq!(ms[&names[2]]["healthy"], false);
    assert_eq!(ms[&names[2]]["reachable"], false);
    assert_eq!(ms[&names[0]]["healthy"], true);
    assert_eq!(ms[&names[1]]["healthy"], true);
    assert_eq!(j["healthy"], false);
    let t = status(&lab, 0, &[]);
    assert_eq!(t.code, 4);
    assert!(t.stdout.contains("DEGRADED") && t.stdout.contains("unreachable"), "{}", t.stdout);
    if rt == LabRuntime::Docker {
        // The stopped node itself: its container is inspected, the peers give the list.
        let j = status(&lab, 2, &["-o", "json"]);
        assert_eq!(j.code, 4, "{}", j.stderr);
        let j = j.json();
        assert_eq!(j["local"]["state"], "stopped");
        assert_eq!(j["local"]["container_state"], "exited");
    }
    lab.start_member(2).await.unwrap();
    lab.wait_healthy(&[0, 1, 2], 3, std::time::Duration::from_secs(60)).await.unwrap();
    assert_eq!(status(&lab, 2, &[]).code, 0);

    // One member crashlooping: seen from that member, whose own endpoint is down, so the
    // member list comes from the peers in --initial-cluster.
    lab.crashloop_member(2).await.unwrap();
    let mut last = None;
    until("crashloop to show", 60, || {
        let o = status(&lab, 2, &["-o", "json"]);
        let ok = o.code == 4 && o.json()["local"]["state"] == "crashlooping";
        last = Some(o);
        ok
    })
    .await;
    let o = last.unwrap();
    let j = o.json();
    assert!(j["local"]["restarts"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(members_by_name(&j)[&names[2]]["healthy"], false);
    assert!(j["problems"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().contains("crashlooping")));
    assert_ne!(j["source_endpoint"], lab.node(2).client_url());
    let t = status(&lab, 2, &[]);
    assert_eq!(t.code, 4);
    assert!(t.stdout.contains("crashlooping"), "{}", t.stdout);
    if rt == LabRuntime::StaticPod {
        // CRI-format logs under var/log/pods, one file per restart, and etcd's own words.
        let log = std::path::PathBuf::from(j["local"]["log"].as_str().unwrap());
        let rel = log.strip_prefix(lab.node(2).host_root.join("var/log/pods")).unwrap().display().to_string();
        assert!(rel.starts_with("kube-system_etcd-m3_") && rel.contains("/etcd/"), "{rel}");
        // The newest file may belong to a restart that has not written yet; every line of
        // every file must be CRI-formatted.
        let all_logs: String = std::fs::read_dir(log.parent().unwrap())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert!(!all_logs.is_empty());
        for line in all_logs.lines() {
            let parts: Vec<&str> = line.splitn(4, ' ').collect();
            assert!(parts[0].contains('T') && parts[0].ends_with('Z'), "{line}");
            assert!(matches!(parts[1], "stdout" | "stderr") && parts[2] == "F", "{line}");
        }
        assert!(all_logs.contains("has already been bootstrapped"), "{all_logs}");
    }
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_etcd_3_4() {
    scenario(LabRuntime::StaticPod, EtcdVersion::V3_4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_etcd_3_6() {
    scenario(LabRuntime::StaticPod, EtcdVersion::V3_6).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_etcd_3_4() {
    scenario(LabRuntime::Docker, EtcdVersion::V3_4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_etcd_3_6() {
    scenario(LabRuntime::Docker, EtcdVersion::V3_6).await
}
