//! Bad input: each case is one clear error naming the file, endpoint or container, exit 1,
//! and not one byte changed under the host root.

mod common;

use std::path::Path;

use common::*;
use hostfix_lab::lab::kubeadm_manifest;
use hostfix_lab::{EtcdVersion, LabRuntime};

fn write_manifest(root: &Path, text: &str) -> std::path::PathBuf {
    let p = root.join("etc/kubernetes/manifests/etcd.yaml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn valid_manifest(sub: [u8; 2]) -> String {
    let ip = std::net::IpAddr::from([127, sub[0], sub[1], 1]);
    kubeadm_manifest(EtcdVersion::V3_6, &EtcdVersion::V3_6.kubeadm_image(), "m1", ip, &format!("m1=https://{ip}:2380"), "new")
}

/// Run status against a host root and check: exit 1, stderr mentions every `needle`,
/// and the host root is byte-identical afterwards.
fn refuses(root: &Path, extra: &[&str], needles: &[&str]) {
    let before = snapshot(root);
    let mut args = vec!["--host-root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("status");
    let o = hostfix(&args);
    assert_eq!(o.code, 1, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    for n in needles {
        assert!(o.stderr.contains(n), "stderr lacks {n:?}:\n{}", o.stderr);
    }
    assert_eq!(o.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert_eq!(before, snapshot(root), "files changed");
}

#[test]
fn malformed_yaml() {
    let d = tempfile::tempdir().unwrap();
    let p = write_manifest(d.path(), "apiVersion: v1\nkind: Pod\nspec:\n  containers: [unclosed\n");
    refuses(d.path(), &[], &[p.to_str().unwrap(), "malformed manifest"]);
}

#[test]
fn manifest_without_etcd_container() {
    let d = tempfile::tempdir().unwrap();
    let p = write_manifest(
        d.path(),
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver]\n",
    );
    refuses(d.path(), &["--runtime", "static-pod"], &[p.to_str().unwrap(), "no etcd container", "kube-apiserver"]);
}

#[test]
fn missing_cert_files() {
    let d = tempfile::tempdir().unwrap();
    write_manifest(d.path(), &valid_manifest(subnet()));
    let ca = d.path().join("etc/kubernetes/pki/etcd/ca.crt");
    refuses(d.path(), &[], &[&format!("CA file {} is missing", ca.display())]);
}

#[test]
fn unreachable_members() {
    let d = tempfile::tempdir().unwrap();
    let sub = subnet();
    write_manifest(d.path(), &valid_manifest(sub));
    let ca = hostfix_lab::certs::Ca::new("etcd-ca").unwrap();
    let ip = std::net::IpAddr::from([127, sub[0], sub[1], 1]);
    hostfix_lab::certs::write_kubeadm(&d.path().join("etc/kubernetes/pki/etcd"), &ca, "m1", ip).unwrap();
    refuses(d.path(), &[], &["no etcd endpoint answered", &format!("https://{ip}:2379"), "Connection refused"]);
    // Explicit endpoints are named too.
    refuses(d.path(), &["--endpoints", "https://127.0.0.9:1"], &["https://127.0.0.9:1"]);
}

#[test]
fn no_local_etcd_at_all() {
    let d = tempfile::tempdir().unwrap();
    refuses(
        d.path(),
        &["--docker-host", "unix:///nonexistent/docker.sock"],
        &["no local etcd found", "no etcd manifest at", "no Docker engine answers"],
    );
}

#[test]
fn container_that_does_not_exist() {
    let d = tempfile::tempdir().unwrap();
    refuses(d.path(), &["--runtime", "docker", "--container", "hostfix-no-such-etcd"], &[
        "docker container hostfix-no-such-etcd does not exist",
    ]);
}

#[test]
fn no_docker_engine() {
    let d = tempfile::tempdir().unwrap();
    refuses(d.path(), &["--runtime", "docker", "--docker-host", "unix:///nonexistent/docker.sock"], &[
        "no Docker engine answers at unix:///nonexistent/docker.sock",
    ]);
}

#[test]
fn usage_error_exits_2() {
    assert_eq!(hostfix(&["status", "--no-such-flag"]).code, 2);
    assert_eq!(hostfix(&["--runtime", "podman", "status"]).code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca() {
    let d = tempfile::tempdir().unwrap();
    let mut lab = lab(d.path(), 1, EtcdVersion::V3_6, LabRuntime::StaticPod).await;
    let other = d.path().join("other-ca.crt");
    std::fs::write(&other, hostfix_lab::certs::Ca::new("not-the-etcd-ca").unwrap().cert_pem()).unwrap();
    let root = lab.node(0).host_root.clone();
    // Snapshot only the configuration: etcd itself keeps writing its data dir.
    let conf = root.join("etc");
    let before = snapshot(&conf);
    let o = hostfix(&["--host-root", root.to_str().unwrap(), "--cacert", other.to_str().unwrap(), "status"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains(&format!("server certificate is not signed by CA {}", other.display())), "{}", o.stderr);
    assert!(o.stderr.contains(&lab.node(0).client_url()), "{}", o.stderr);
    assert_eq!(before, snapshot(&conf));
    // The right CA still works, so the failure above was the CA and nothing else.
    assert_eq!(hostfix(&["--host-root", root.to_str().unwrap(), "status"]).code, 0);
    lab.down().await.unwrap();
}

#[test]
fn manifest_not_utf8() {
    let d = tempfile::tempdir().unwrap();
    let mut bytes = valid_manifest(subnet()).into_bytes();
    bytes.extend_from_slice(b"# \xff\xfe\n");
    let p = d.path().join("etc/kubernetes/manifests/etcd.yaml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    refuses(d.path(), &[], &[p.to_str().unwrap(), "UTF-8"]);
}

#[test]
fn manifest_of_50_mb() {
    let d = tempfile::tempdir().unwrap();
    let filler = format!("# {}\n", "x".repeat(1 << 20)).repeat(50);
    let p = write_manifest(d.path(), &format!("{}{filler}", valid_manifest(subnet())));
    refuses(d.path(), &[], &[p.to_str().unwrap(), "MiB"]);
}

#[test]
fn manifest_that_is_a_directory() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("etc/kubernetes/manifests/etcd.yaml");
    std::fs::create_dir_all(&p).unwrap();
    refuses(d.path(), &[], &[p.to_str().unwrap()]);
}
