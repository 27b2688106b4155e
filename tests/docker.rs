//! The Docker runtime against the real engine: `docker-run`'s round trip on containers with
//! rich configurations, RKE rejoin with both etcd versions (seed 004), kill -9 mid-recreate,
//! the recreate's rollback, and the errors that must change nothing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use hostfix_core::container::comparable;
use hostfix_lab::{EtcdVersion, Lab, LabRuntime};
use serde_json::Value;

fn inspect(name: &str) -> Option<Value> {
    let o = docker(&["inspect", "--type", "container", name]);
    (o.code == 0).then(|| o.json()[0].clone())
}

/// Removes the named test containers and volumes, whatever happens to the test.
struct Cleanup(Vec<String>, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.0 {
            // -v: the anonymous volumes the rich image declares are test debris too.
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        for v in &self.1 {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
    }
}

async fn ensure_images() {
    let d = hostfix_adapters::runtime::DockerRuntime::connect(None).await.expect("docker engine");
    for v in EtcdVersion::all() {
        hostfix_lab::image::ensure_image(&d, v, &v.bin_dir().unwrap()).await.unwrap();
    }
    // An image with its own entrypoint, env, labels, workdir and volume, so "minus what the
    // image sets" and image volumes are exercised. Built from the lab image: nothing is pulled.
    let dockerfile = format!(
        "FROM {}\nENV IMGVAR=1\nLABEL img.label=from-image\nWORKDIR /var\nVOLUME /var/lib/anon\nENTRYPOINT [\"/usr/local/bin/etcd\"]\nCMD [\"--version\"]\n",
        EtcdVersion::V3_6.lab_image()
    );
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", "hostfix-test/rich:1", "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(dockerfile.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker build: {}", String::from_utf8_lossy(&out.stderr));
}

/// Print the run command, move the original aside, run the printed command, and compare.
fn round_trip(name: &str, extra: &[&str]) -> (Value, Value) {
    let mut args = vec!["docker-run", name];
    args.extend_from_slice(extra);
    let o = hostfix(&args);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let before = inspect(name).unwrap();
    let aside = format!("{name}-orig");
    docker_ok(&["rename", name, &aside]);
    let run = Command::new("sh").arg("-c").arg(&o.stdout).output().unwrap();
    assert!(run.status.success(), "the printed command failed:\n{}\n{}", o.stdout, String::from_utf8_lossy(&run.stderr));
    let after = inspect(name).unwrap();
    docker_ok(&["rm", "-f", name]);
    docker_ok(&["rename", &aside, name]);
    (before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_run_round_trip_on_rich_containers() {
    ensure_images().await;
    let p = std::process::id();
    let (a, b, c) = (format!("hfx-rich-a-{p}"), format!("hfx-rich-b-{p}"), format!("hfx-rich-c-{p}"));
    let vol = format!("hfx-vol-{p}");
    // A failed round trip leaves the original renamed `<name>-orig`.
    let names: Vec<String> = [&a, &b, &c].iter().flat_map(|n| [n.to_string(), format!("{n}-orig")]).collect();
    let _clean = Cleanup(names, vec![vol.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let host_dir = dir.path().to_str().unwrap();
    let image = EtcdVersion::V3_6.lab_image();
    // RKE-like, but with nearly every option the issue lists.
    docker_ok(&[
        "create", "--name", &a, "--network", "host", "--pid", "host", "--ipc", "private", "--user", "0:0",
        "--workdir", "/var", "--restart", "on-failure:3",
        "--env", "A=it's $HOME and \"quoted\"", "--env", "B=two words",
        "--volume", &format!("{host_dir}:/data:ro,z"), "--volume", &format!("{vol}:/named"),
        "--tmpfs", "/run:size=64k,mode=1777",
        "--mount", &format!("type=bind,source={host_dir},target=/m,readonly"),
        "--label", "a=b", "--label", "c=d e;f", "--log-driver", "json-file", "--log-opt", "max-size=1m", "--log-opt", "max-file=2",
        "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "--device", "/dev/null:/dev/xnull:rw",
        "--security-opt", "no-new-privileges", "--ulimit", "nofile=1024:2048", "--add-host", "a.b:127.1.2.3",
        "--dns", "127.0.0.53", "--dns-search", "x.test", "--dns-option", "ndots:2", "--publish", "127.0.0.1:9999:2379",
        "--stop-signal", "SIGINT", "--stop-timeout", "7",
        "--health-cmd", "etcdctl endpoint health", "--health-interval", "5s", "--health-timeout", "2s",
        "--health-retries", "2", "--health-start-period", "1500ms",
        "--memory", "256m", "--memory-reservation", "128m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "100",
        "--shm-size", "32m", "--read-only", "--group-add", "10", "--sysctl", "kernel.msgmax=65536",
        &image, "/usr/local/bin/etcd", "--name=rich", "--initial-cluster-state=new", "--version",
    ]);
    // The image's entrypoint reset, a hostname, no healthcheck, an overridden image variable,
    // an exposed port, and the image's anonymous volume. (`--privileged` is rendered too, but
    // this sandbox's runc cannot grant every capability, so no container here can use it.)
    docker_ok(&[
        "create", "--name", &b, "--network", "none", "--hostname", "rich-b", "--domainname", "example.test",
        "--entrypoint", "", "--no-healthcheck", "--env", "IMGVAR=2", "--expose", "1234/udp",
        "--restart", "on-failure", "--tty", "--interactive",
        "hostfix-test/rich:1", "/usr/local/bin/etcd", "--version",
    ]);
    // The image's entrypoint kept, flags only in the command.
    docker_ok(&["create", "--name", &c, "--network", "none", "hostfix-test/rich:1", "--name=c", "--version"]);

    for name in [&a, &b, &c] {
        let (before, after) = round_trip(name, &[]);
        assert_eq!(comparable(&before), comparable(&after), "{name}: the recreated container differs");
    }
    // The image's variable and label are not printed, yet present after the round trip.
    let out = hostfix(&["docker-run", &b]).stdout;
    assert!(!out.contains("img.label") && out.contains("IMGVAR=2"), "{out}");
    assert!(out.contains("--entrypoint ''"), "{out}");

    // Flag edits change those flags and nothing else.
    let (before, after) =
        round_trip(&a, &["--set-flag", "initial-cluster-state=existing", "--unset-flag", "name", "--set-flag", "--data-dir=/d"]);
    let (mut x, mut y) = (comparable(&before), comparable(&after));
    assert_eq!(y["Argv"], serde_json::json!(["/usr/local/bin/etcd", "--initial-cluster-state=existing", "--version", "--data-dir=/d"]));
    x["Argv"] = Value::Null;
    y["Argv"] = Value::Null;
    assert_eq!(x, y);
    let (_, after) = round_trip(&c, &["--set-flag", "name=renamed"]);
    assert_eq!(comparable(&after)["Argv"], serde_json::json!(["/usr/local/bin/etcd", "--name=renamed", "--version"]));
    assert!(after["Config"]["Entrypoint"] == serde_json::json!(["/usr/local/bin/etcd"]));
}

/// Seed 004: the bbolt file is corrupt (`invalid database`) and `restart: always` keeps
/// the container crashlooping.
async fn corrupt_db(lab: &Lab, i: usize) {
    lab.stop_member(i).await.unwrap();
    Lab::scribble(&lab.node(i).data_dir().join("member/snap/db"), 0, 8192).unwrap();
    lab.start_member(i).await.unwrap();
    let mut args = node_args(lab, i);
    args.extend(["-o".into(), "json".into(), "diagnose".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut last = Value::Null;
    for _ in 0..120 {
        last = hostfix(&args).json();
        if last["class"] == "db-corrupt" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("never diagnosed db-corrupt: {last:#}");
}

/// What must not change across a rejoin: everything but the two flags it sets.
fn unchanged_but_flags(before: &Value, after: &Value) {
    let (mut x, mut y) = (comparable(before), comparable(after));
    let flags = |v: &Value| -> Vec<String> {
        v["Argv"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let (fa, fb) = (flags(&x), flags(&y));
    assert_eq!(fa.len(), fb.len(), "{fa:?}\n{fb:?}");
    for (p, q) in fa.iter().zip(&fb) {
        if p != q {
            assert!(q.starts_with("--initial-cluster=") || q == "--initial-cluster-state=existing", "unexpected change {p} -> {q}");
        }
    }
    assert!(fb.contains(&"--initial-cluster-state=existing".to_string()));
    x["Argv"] = Value::Null;
    y["Argv"] = Value::Null;
    assert_eq!(x, y, "image, mounts, env, labels, restart policy or log options changed");
}

async fn rke_heals(v: EtcdVersion) {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, v, LabRuntime::Docker).await;
    write_keys(&lab, 0);
    let name = lab.node(2).container.clone().unwrap();
    corrupt_db(&lab, 2).await;
    let before = inspect(&name).unwrap();
    // The runtime is found by itself: no manifest under the host root, and the container exists.
    let root = lab.node(2).host_root.display().to_string();
    let o = hostfix(&["--host-root", &root, "--container", &name, "rejoin", "--yes"]);
    assert_eq!(o.code, 0, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains(&format!("stop container {name}")), "{}", o.stdout);
    lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
    assert_all_keys(&lab, 2);
    let after = inspect(&name).unwrap();
    unchanged_but_flags(&before, &after);
    assert_ne!(before["Id"], after["Id"], "the container was recreated");
    // Seed 004's trap: restarted with `new`, the member met a cluster ID mismatch. An
    // absence, checked after a second more of logs: it can only pass wrongly, never fail
    // because something was slow.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let logs = docker(&["logs", &name]);
    assert!(!(logs.stdout + &logs.stderr).contains("cluster ID mismatch"));
    // The old container was removed once the new one was healthy; its data is archived.
    let asides = asides_left(&name);
    assert!(asides.is_empty(), "{asides}");
    let archive = lab.node(2).host_root.join("var/lib/etcd-hostfix/archive");
    let run = std::fs::read_dir(&archive).unwrap().next().unwrap().unwrap().path();
    assert!(run.join("member/snap/db").exists() && run.join("container.inspect.json").exists());
    lab.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rke_db_corrupt_is_healed_v3_4() {
    rke_heals(EtcdVersion::V3_4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rke_db_corrupt_is_healed_v3_6() {
    rke_heals(EtcdVersion::V3_6).await;
}

/// RKE1 is archived on 3.5.x: its newest patch, as RKE nodes run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rke_db_corrupt_is_healed_v3_5() {
    rke_heals(EtcdVersion::V3_5).await;
}

/// kill -9 after each part of the Docker steps, including inside the recreate (renamed
/// aside but not created; created but not started), then a rerun converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_recreate_then_rerun_converges() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 3, EtcdVersion::V3_6, LabRuntime::Docker).await;
    write_keys(&lab, 0);
    let name = lab.node(2).container.clone().unwrap();
    for at in ["stop", "configure", "recreate-renamed", "recreate-created", "start", "wait-healthy"] {
        corrupt_db(&lab, 2).await;
        let before = inspect(&name).unwrap();
        let o = rejoin(&lab, 2, &["--yes"], &[("HOSTFIX_CRASH_AT", at)]);
        assert_eq!(o.code, -1, "{at}: expected SIGKILL\n{}\n{}", o.stdout, o.stderr);
        let o = rejoin(&lab, 2, &["--yes"], &[]);
        assert_eq!(o.code, 0, "{at}: rerun failed\nstdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
        assert!(o.stdout.contains("resuming rejoin run"), "{}", o.stdout);
        lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
        assert_all_keys(&lab, 2);
        unchanged_but_flags(&before, &inspect(&name).unwrap());
        let asides = asides_left(&name);
        assert!(asides.is_empty(), "{at}: {asides}");
    }
    lab.down().await.unwrap();
}

/// A recreate whose new container cannot be created gives the old one its name back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_recreate_rolls_back() {
    ensure_images().await;
    let name = format!("hfx-rollback-{}", std::process::id());
    let aside = format!("{name}-hostfix-aside-test");
    let _clean = Cleanup(vec![name.clone(), aside.clone()], vec![]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("gone");
    std::fs::create_dir(&src).unwrap();
    docker_ok(&[
        "create", "--name", &name, "--network", "none",
        "--mount", &format!("type=bind,source={},target=/m", src.display()),
        &EtcdVersion::V3_6.lab_image(), "/usr/local/bin/etcd", "--version",
    ]);
    let before = inspect(&name).unwrap();
    // `--mount` refuses a bind source that no longer exists: the create fails for real.
    std::fs::remove_dir(&src).unwrap();
    let d = hostfix_adapters::runtime::DockerRuntime::connect(None).await.unwrap();
    let err = d
        .recreate(&name, &aside, &[("name".into(), Some("x".into()))], &|_| {})
        .await
        .expect_err("the create must fail");
    let msg = err.to_string();
    assert!(msg.contains("rolled back") && msg.contains(&name), "{msg}");
    let after = inspect(&name).expect("the old container has its name back");
    assert_eq!(before["Id"], after["Id"]);
    assert!(inspect(&aside).is_none());
}

/// A missing container, a stopped engine and a container that does not run etcd: one clear
/// error each, exit 1, and nothing changed (no state dir, the container untouched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_docker_input_changes_nothing() {
    ensure_images().await;
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let wrapper = format!("hfx-not-etcd-{}", std::process::id());
    let _clean = Cleanup(vec![wrapper.clone()], vec![]);
    docker_ok(&["create", "--name", &wrapper, "--network", "none", &EtcdVersion::V3_6.lab_image(), "/usr/local/bin/etcdctl", "version"]);
    let before = inspect(&wrapper).unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--container", "hfx-no-such-etcd"], "docker container hfx-no-such-etcd does not exist".into()),
        (vec!["--docker-host", "unix:///nonexistent/docker.sock"], "no Docker engine answers at unix:///nonexistent/docker.sock".into()),
        (vec!["--container", &wrapper], format!("container {wrapper} does not run etcd")),
    ];
    for (opts, needle) in &cases {
        for cmd in [&["docker-run"][..], &["rejoin", "--yes"], &["rejoin", "--dry-run"]] {
            let mut args = vec!["--host-root", root, "--runtime", "docker"];
            args.extend(opts);
            args.extend(cmd);
            let o = hostfix(&args);
            assert_eq!(o.code, 1, "{args:?}\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
            assert!(o.stderr.contains(needle.as_str()), "{args:?}: stderr lacks {needle:?}:\n{}", o.stderr);
            assert_eq!(o.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", o.stderr);
        }
    }
    // `docker-run` of a missing container names it too.
    let o = hostfix(&["docker-run", "hfx-no-such-etcd"]);
    assert!(o.code == 1 && o.stderr.contains("hfx-no-such-etcd does not exist"), "{}", o.stderr);
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "the host root was written to");
    assert_eq!(before, inspect(&wrapper).unwrap());
}
