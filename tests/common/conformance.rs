//! One scenario list for both kubelets (issue 29): what etcd-hostfix reads of a kubelet,
//! driven and asserted the same way on the lab's stand-in (tests/kubelet.rs) and on the
//! real kubelet (tests/real_kubelet.rs). Where the two differed, the stand-in was changed to
//! the real one's behaviour (hostfix_lab::kubelet says which); what is asserted here is what
//! both do, and what each did is printed, with its timings, for docs/real-kubelet.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hostfix_lab::Lab;

use super::{daemon_config, node_args, run_out, until, DaemonProc, BIN};

/// Master `t`'s etcd pod log dirs (`kube-system_etcd-<node>_<uid>`), each with its run
/// files' attempt numbers (`N.log`, not the kubelet's rotated ones), sorted.
fn etcd_pods(lab: &Lab, t: usize) -> Vec<(String, Vec<u32>)> {
    let prefix = format!("kube-system_etcd-{}_", lab.node(t).name);
    let mut v: Vec<(String, Vec<u32>)> = std::fs::read_dir(lab.node(t).host_root.join("var/log/pods"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .map(|n| {
            let mut runs: Vec<u32> = std::fs::read_dir(pod_dir(lab, t, &n))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.file_name().to_string_lossy().strip_suffix(".log")?.parse().ok())
                .collect();
            runs.sort();
            (n, runs)
        })
        .collect();
    v.sort();
    v
}

fn pod_dir(lab: &Lab, t: usize, pod: &str) -> PathBuf {
    lab.node(t).host_root.join("var/log/pods").join(pod).join("etcd")
}

/// The one pod dir, with its attempts; a panic with what is there otherwise.
fn one_pod(lab: &Lab, t: usize) -> (String, Vec<u32>) {
    let pods = etcd_pods(lab, t);
    assert_eq!(pods.len(), 1, "one etcd pod log dir: {pods:?}");
    pods.into_iter().next().unwrap()
}

/// `status -o json` on master `t`: the product's own reading of the kubelet's files.
fn local_status(lab: &Lab, t: usize) -> serde_json::Value {
    let o = run_out(lab.command(t, BIN).args(node_args(lab, t)).args(["-o", "json", "status"]));
    serde_json::from_str::<serde_json::Value>(&o.stdout).map(|j| j["local"].clone()).unwrap_or_default()
}

fn etcd_running(lab: &Lab, t: usize) -> bool {
    !hostfix_adapters::process::etcd_pids(&lab.node(t).client_url()).is_empty()
}

/// The product reads master `t`'s member as running with `restarts` restart(s), after `what`.
fn assert_reads_running(lab: &Lab, t: usize, restarts: u64, what: &str) {
    let s = local_status(lab, t);
    assert_eq!(s["state"], "running", "{what}: {s:#}");
    assert_eq!(s["restarts"].as_u64(), Some(restarts), "{what}: {s:#}");
}

/// A person's park of master `t`'s manifest; returns once the pod is gone.
async fn park(lab: &Lab, t: usize) {
    lab.stop_member(t).await.unwrap();
    until("the pod to stop on park", 60, || !etcd_running(lab, t)).await;
}

/// Every line of every run file of master `t`'s etcd pods is a CRI line:
/// `<RFC 3339 time> <stdout|stderr> <P|F> <message>`.
fn assert_cri_lines(lab: &Lab, t: usize) {
    for (pod, runs) in etcd_pods(lab, t) {
        for n in runs {
            let f = pod_dir(lab, t, &pod).join(format!("{n}.log"));
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for line in text.lines() {
                let p: Vec<&str> = line.splitn(4, ' ').collect();
                let time_ok = p.first().is_some_and(|ts| time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok());
                assert!(
                    time_ok && p.len() == 4 && matches!(p[1], "stdout" | "stderr") && matches!(p[2], "P" | "F"),
                    "not a CRI line in {}: {line:.200}",
                    f.display()
                );
            }
        }
    }
}

/// The daemons' records stay empty for `secs` of probes.
async fn quiet(ds: &[DaemonProc], secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        for (i, d) in ds.iter().enumerate() {
            assert!(d.incidents().is_empty(), "{what}: m{}'s daemon acted: {:#?}\n{}", i + 1, d.incidents(), d.log_text());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The scenario on master `t` of a healthy 3-member lab, with a daemon on every master
/// (`ds`): none of these is a reason to repair, and each must look to the product as it
/// is. Returns what was seen, one line per step, for the record.
///
/// 1. Layout: one pod log dir, `kube-system_etcd-<node>_<uid>/etcd/N.log`, CRI lines.
/// 2. `kill -9` of etcd: the kubelet runs it again in the same dir as attempt N+1; the
///    product reads one restart more.
/// 3. A short park and unpark of the unchanged manifest: the pod goes; it comes back under
///    the same UID, and the product reads no restart (counted from the manifest's placement)
///    and a running member. The kubelet numbers on in the same dir (attempt N+2), unless its
///    GC pass (once a minute) fell inside the park and took the dir: then it starts over at
///    `0.log`. The real kubelet does either, by where its GC tick falls; both are accepted,
///    and which one was seen is said.
/// 4. Crashloop GC, after a numbering-on unpark: only the previous and the current attempt's
///    logs are kept (the real kubelet within its GC minute; bounded at 90 s).
/// 5. A park longer than the kubelet's GC period: the pod's log dir goes while parked (the
///    wait is for that, bounded), and the unparked pod starts over at `0.log` under the same
///    UID; the product reads no restart and a running member.
/// 6. An edit of the manifest: a new UID, whose first attempt is `0.log`; the old pod's dir
///    goes (the real kubelet within its GC minute), and the product reads no restart.
pub async fn kubelet_behaves(lab: &Lab, t: usize, ds: &[DaemonProc]) -> Vec<String> {
    let mut seen = vec![];
    let healthy = |secs: u64| async move {
        if let Err(e) = lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(secs)).await {
            panic!("{e}\n{}", super::explain(lab, t));
        }
    };

    // 1.
    let (pod, runs) = one_pod(lab, t);
    let first = *runs.last().expect("a run file");
    assert_cri_lines(lab, t);
    let before = local_status(lab, t)["restarts"].as_u64().unwrap_or(0);
    seen.push(format!("layout: {pod}/etcd/{runs:?}.log; the product reads {before} restart(s)"));

    // 2.
    let start = Instant::now();
    for pid in hostfix_adapters::process::etcd_pids(&lab.node(t).client_url()) {
        // SAFETY: a PID of an etcd this lab started, found by its client URL.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    until("the kubelet to run etcd again after kill -9", 90, || {
        let (p, r) = one_pod(lab, t);
        p == pod && r.last() == Some(&(first + 1)) && etcd_running(lab, t)
    })
    .await;
    let restarted = start.elapsed();
    healthy(120).await;
    assert_reads_running(lab, t, before + 1, "one restart more after kill -9");
    seen.push(format!("kill -9: attempt {} in the same dir after {restarted:.1?}; the product reads {} restart(s)", first + 1, before + 1));
    quiet(ds, 10, "kill -9").await;

    // 3.
    let start = Instant::now();
    park(lab, t).await;
    let stopped = start.elapsed();
    let start = Instant::now();
    lab.start_member(t).await.unwrap();
    until("the unparked pod to run", 90, || etcd_running(lab, t)).await;
    let (p, r) = one_pod(lab, t);
    assert_eq!(p, pod, "the unchanged manifest keeps its UID");
    let numbered_on = r.last() == Some(&(first + 2));
    assert!(numbered_on || r == [0], "after an unpark the kubelet numbers on ({}) or, its GC having taken the dir, starts over at 0: {r:?}", first + 2);
    healthy(120).await;
    let running = start.elapsed();
    assert_reads_running(lab, t, 0, "an unpark is not a restart");
    let how = if numbered_on { format!("attempt {} in the same dir", first + 2) } else { "0.log in a new dir of the same UID (the GC pass fell inside the park)".into() };
    seen.push(format!("short park: gone after {stopped:.1?}; unpark: {how}, healthy after {running:.1?}; the product reads 0 restarts"));
    quiet(ds, 10, "a person's park and unpark").await;

    // 4.
    if numbered_on {
        let start = Instant::now();
        until("only the previous and the current attempt's logs", 90, || one_pod(lab, t).1 == [first + 1, first + 2]).await;
        seen.push(format!("crashloop GC: attempts {:?} kept, after {:.1?}", [first + 1, first + 2], start.elapsed()));
    } else {
        seen.push("crashloop GC: not seen this run (the dir had gone with the park)".into());
    }

    // 5.
    let start = Instant::now();
    park(lab, t).await;
    until("the parked pod's log dir to be collected", 150, || etcd_pods(lab, t).is_empty()).await;
    let collected = start.elapsed();
    let start = Instant::now();
    lab.start_member(t).await.unwrap();
    until("the pod unparked after a long park to run", 90, || etcd_running(lab, t) && etcd_pods(lab, t).len() == 1).await;
    let (p, r) = one_pod(lab, t);
    assert_eq!(p, pod, "the unchanged manifest keeps its UID, however long it was parked");
    assert_eq!(r, [0], "the dir went while parked: the kubelet starts over at 0.log");
    healthy(120).await;
    let running = start.elapsed();
    assert_reads_running(lab, t, 0, "a long park's unpark is not a restart");
    assert_cri_lines(lab, t);
    seen.push(format!("long park: the log dir collected {collected:.1?} after the park; unpark: 0.log under the same UID, healthy after {running:.1?}; the product reads 0 restarts"));
    quiet(ds, 10, "a person's long park and unpark").await;

    // 6.
    let m = lab.node(t).manifest();
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(text.contains("--snapshot-count=10000"), "{text}");
    let start = Instant::now();
    std::fs::write(&m, text.replace("--snapshot-count=10000", "--snapshot-count=10001")).unwrap();
    until("the edited manifest to run as a new pod", 120, || {
        etcd_pods(lab, t).iter().any(|(p, r)| *p != pod && r == &[0]) && etcd_running(lab, t)
    })
    .await;
    let new_pod = start.elapsed();
    until("the old pod's log dir to go", 90, || etcd_pods(lab, t).iter().all(|(p, _)| *p != pod)).await;
    let old_gone = start.elapsed();
    healthy(120).await;
    assert_reads_running(lab, t, 0, "a manifest edit is a new pod, not a restart");
    assert_cri_lines(lab, t);
    seen.push(format!("edit: a new UID at 0.log after {new_pod:.1?}; the old dir gone after {old_gone:.1?}"));
    quiet(ds, 10, "a manifest edit").await;
    seen
}

/// [`kubelet_behaves`] on master m3 of `lab` (healthy, three masters), with a daemon started
/// on every master for it; prints what was seen under `kubelet`'s name.
pub async fn run_on(lab: &Lab, kubelet: &str) {
    let ds: Vec<DaemonProc> = (0..3).map(|i| DaemonProc::start(lab, i, &daemon_config(lab, i, ""), &[])).collect();
    until("every daemon watching", 60, || ds.iter().all(|d| d.status()["decision"].as_str().is_some())).await;
    let seen = kubelet_behaves(lab, 2, &ds).await;
    println!("{kubelet}, m3:\n  {}", seen.join("\n  "));
}
