//! The lab's Docker side: an etcd image built `FROM scratch` (nothing can be pulled here)
//! and RKE-style member containers.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{BuildImageOptions, CreateContainerOptions, ListContainersOptions, StartContainerOptions};
use futures_util::StreamExt;
use hostfix_adapters::runtime::DockerRuntime;

use crate::lab::{EtcdVersion, Node};
use crate::LabError;

fn tar_file(b: &mut tar::Builder<Vec<u8>>, src: &Path, dest: &str) -> Result<(), LabError> {
    let mut f = std::fs::File::open(src).map_err(|e| LabError::io(src, e))?;
    let meta = f.metadata().map_err(|e| LabError::io(src, e))?;
    let mut h = tar::Header::new_gnu();
    h.set_size(meta.len());
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, dest, &mut f).map_err(|e| LabError::io(src, e))
}

/// Build `hostfix-lab/etcd:<version>` unless the engine has it. Debian's 3.4 build is
/// dynamically linked, so its loader and libc go into the image too.
pub async fn ensure_image(d: &DockerRuntime, v: EtcdVersion, bins: &Path) -> Result<(), LabError> {
    let tag = v.lab_image();
    if d.docker.inspect_image(&tag).await.is_ok() {
        return Ok(());
    }
    let mut b = tar::Builder::new(Vec::new());
    let dockerfile = "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes()).map_err(|e| LabError::Runner(e.to_string()))?;
    for bin in ["etcd", "etcdctl", "etcdutl"] {
        let p = bins.join(bin);
        if p.exists() {
            tar_file(&mut b, &p, &format!("rootfs/usr/local/bin/{bin}"))?;
        }
    }
    if v == EtcdVersion::V3_4 {
        for (src, dest) in [
            ("/lib/x86_64-linux-gnu/libc.so.6", "rootfs/lib/x86_64-linux-gnu/libc.so.6"),
            ("/lib64/ld-linux-x86-64.so.2", "rootfs/lib64/ld-linux-x86-64.so.2"),
        ] {
            let real = std::fs::canonicalize(src).map_err(|e| LabError::io(Path::new(src), e))?;
            tar_file(&mut b, &real, dest)?;
        }
    }
    let body = b.into_inner().map_err(|e| LabError::Runner(e.to_string()))?;
    let opts = BuildImageOptions { dockerfile: "Dockerfile".into(), t: Some(tag.clone()), rm: true, ..Default::default() };
    let mut stream = d.docker.build_image(opts, None, Some(bollard::body_full(body.into())));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| LabError::Runner(format!("docker build {tag}: {e}")))?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(LabError::Runner(format!("docker build {tag}: {err}")));
        }
    }
    Ok(())
}

/// An RKE-style etcd container: host network, data dir and certs bind-mounted, restart
/// always, ETCDCTL_* in the environment, json-file logs.
pub async fn create_rke_container(
    d: &DockerRuntime,
    name: &str,
    v: EtcdVersion,
    n: &Node,
    dashed: &str,
    args: Vec<String>,
) -> Result<(), LabError> {
    let ssl = "/etc/kubernetes/ssl";
    let env = vec![
        "ETCDCTL_API=3".to_string(),
        format!("ETCDCTL_CACERT={ssl}/kube-ca.pem"),
        format!("ETCDCTL_CERT={ssl}/kube-etcd-{dashed}.pem"),
        format!("ETCDCTL_KEY={ssl}/kube-etcd-{dashed}-key.pem"),
        format!("ETCDCTL_ENDPOINTS=https://{}:2379", n.ip),
    ];
    let binds = vec![
        format!("{}:/var/lib/rancher/etcd/:z", n.data_dir().display()),
        format!("{}:/etc/kubernetes:z", n.host_root.join("etc/kubernetes").display()),
    ];
    let labels: HashMap<String, String> = [
        ("io.rancher.rke.container.name".to_string(), "etcd".to_string()),
        ("hostfix-lab".to_string(), name.rsplit_once("-etcd-").map(|x| x.0).unwrap_or(name).to_string()),
    ]
    .into();
    let body = ContainerCreateBody {
        image: Some(v.lab_image()),
        cmd: Some(args),
        env: Some(env),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some("host".into()),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::ALWAYS), maximum_retry_count: None }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some([("max-size".to_string(), "10m".to_string())].into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
    d.docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| LabError::Runner(format!("docker create {name}: {e}")))?;
    d.docker
        .start_container(name, None::<StartContainerOptions>)
        .await
        .map_err(|e| LabError::Runner(format!("docker start {name}: {e}")))
}

/// Every container carrying this lab's label, by ID.
pub async fn lab_containers(d: &DockerRuntime, cluster: &str) -> Result<Vec<String>, LabError> {
    let filters: HashMap<String, Vec<String>> = [("label".to_string(), vec![format!("hostfix-lab={cluster}")])].into();
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = d.docker.list_containers(Some(opts)).await.map_err(|e| LabError::Runner(e.to_string()))?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}
