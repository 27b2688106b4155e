//! Real etcd clusters on one machine, each member on its own loopback address with its own
//! host root laid out like a kubeadm master (static pod run by [`crate::kubelet`]) or a
//! Rancher RKE node (a Docker container named like RKE's, from a `FROM scratch` image).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hostfix_adapters::etcd::{ClientTls, Connector};
use hostfix_adapters::runtime::DockerRuntime;
use serde::{Deserialize, Serialize};

use crate::certs::{self, Ca};
use crate::LabError;

/// The etcd versions the lab runs. 3.6 is the default: every supported kubeadm ships it
/// (1.34 and later), as do RKE2 and k3s. 3.7 is the newest; 3.5 is its newest patch (RKE1
/// and older kubeadm masters); 3.4.23 is Debian's, the legacy floor. 3.6, 3.7 and 3.5 are
/// built from etcd's Go modules by `scripts/build-etcd` (`scripts/dev` runs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EtcdVersion {
    #[serde(rename = "3.4")]
    V3_4,
    #[serde(rename = "3.5")]
    V3_5,
    #[serde(rename = "3.6")]
    V3_6,
    #[serde(rename = "3.7")]
    V3_7,
}

impl EtcdVersion {
    pub const DEFAULT: EtcdVersion = EtcdVersion::V3_6;

    pub fn all() -> [EtcdVersion; 4] {
        [EtcdVersion::V3_4, EtcdVersion::V3_5, EtcdVersion::V3_6, EtcdVersion::V3_7]
    }

    pub fn tag(self) -> &'static str {
        match self {
            EtcdVersion::V3_4 => "3.4.23",
            EtcdVersion::V3_5 => "3.5.36",
            EtcdVersion::V3_6 => "3.6.16",
            EtcdVersion::V3_7 => "3.7.3",
        }
    }

    /// The image reference kubeadm would write for this version.
    pub fn kubeadm_image(self) -> String {
        format!("registry.k8s.io/etcd:{}-0", self.tag())
    }

    pub fn lab_image(self) -> String {
        format!("hostfix-lab/etcd:{}", self.tag())
    }

    /// 3.6 and later: kubeadm 1.34+ writes the 3.6 flag forms (`--feature-gates=...`, no
    /// `--experimental-*`) and probes `/livez` and `/readyz`; 3.7 has no experimental flags
    /// left, and 3.5 refuses `--feature-gates`.
    pub fn has_feature_gates(self) -> bool {
        self >= EtcdVersion::V3_6
    }

    /// Directory with this version's `etcd`, `etcdctl` (and `etcdutl` from 3.5). Set by
    /// `scripts/dev` through `HOSTFIX_ETCD34_DIR` ... `HOSTFIX_ETCD37_DIR`.
    pub fn bin_dir(self) -> Result<PathBuf, LabError> {
        let built = |v: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/etcd").join(v);
        let (var, fallback) = match self {
            EtcdVersion::V3_4 => ("HOSTFIX_ETCD34_DIR", PathBuf::from("/usr/bin")),
            EtcdVersion::V3_5 => ("HOSTFIX_ETCD35_DIR", built(self.tag())),
            EtcdVersion::V3_6 => ("HOSTFIX_ETCD36_DIR", built(self.tag())),
            EtcdVersion::V3_7 => ("HOSTFIX_ETCD37_DIR", built(self.tag())),
        };
        let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or(fallback);
        if dir.join("etcd").is_file() && dir.join("etcdctl").is_file() {
            Ok(dir)
        } else {
            Err(LabError::MissingEtcd { version: self.tag(), dir, var })
        }
    }
}

impl std::str::FromStr for EtcdVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EtcdVersion::all()
            .into_iter()
            .find(|v| s == v.tag() || Some(s) == v.tag().rsplit_once('.').map(|x| x.0))
            .ok_or_else(|| format!("unknown etcd version {s} (3.4, 3.5, 3.6 or 3.7)"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabRuntime {
    StaticPod,
    Docker,
}

impl std::str::FromStr for LabRuntime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "static-pod" => Ok(LabRuntime::StaticPod),
            "docker" => Ok(LabRuntime::Docker),
            _ => Err(format!("unknown runtime {s} (static-pod or docker)")),
        }
    }
}

/// Which kubelet runs a static-pod lab's masters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeletKind {
    /// The lab's stand-in ([`crate::kubelet`]): fast, on loopback addresses; the bulk of
    /// the tests.
    #[default]
    StandIn,
    /// The real kubelet and containerd, masters made by kubeadm, each in its own network
    /// and mount namespaces ([`crate::realkube`]).
    Real,
}

impl std::str::FromStr for KubeletKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stand-in" => Ok(KubeletKind::StandIn),
            "real" => Ok(KubeletKind::Real),
            _ => Err(format!("unknown kubelet {s} (stand-in or real)")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabSpec {
    pub dir: PathBuf,
    pub members: usize,
    pub version: EtcdVersion,
    pub runtime: LabRuntime,
    /// Members get 127.<a>.<b>.<1..N>.
    pub subnet: [u8; 2],
    /// CrashLoopBackOff base delay of the lab kubelet.
    pub backoff_base_ms: u64,
    pub docker_host: Option<String>,
    /// Static pods only: a stand-in kube-apiserver pod on every master, beside etcd, for
    /// what a restore does to the API servers (see [`APISERVER_IMAGE`]).
    #[serde(default)]
    pub apiserver: bool,
    /// Static pods only: the masters (0-based) that are real machines, booted with systemd
    /// as PID 1 from the cached bookworm root ([`crate::machine`]), the lab kubelet running
    /// inside as `kubelet.service`. The others are process masters, as before.
    #[serde(default)]
    pub machines: Vec<usize>,
    /// The masters whose `/var/lib/etcd` is a filesystem of its own (a tmpfs mounted there
    /// before anything is written), as on masters with a dedicated etcd disk.
    #[serde(default)]
    pub etcd_disks: Vec<usize>,
    /// Static pods only: the stand-in kubelet, or the real one with kubeadm-made masters.
    #[serde(default)]
    pub kubelet: KubeletKind,
}

/// The stand-in kube-apiserver's image, as the lab kubelet knows it: a shell script named
/// `kube-apiserver` that runs until it is stopped. It is a process to bounce, with the
/// `--etcd-servers` a real one has; it serves nothing.
pub const APISERVER_IMAGE: &str = "registry.k8s.io/kube-apiserver:lab-stand-in";

const APISERVER_SCRIPT: &str = "#!/bin/sh\n# The lab's stand-in kube-apiserver: it runs until stopped, as the real one does.\ntrap 'exit 0' TERM INT\nwhile :; do sleep 1 & wait $!; done\n";

/// A kubeadm-like kube-apiserver manifest for the stand-in, pointed at the master's etcd.
pub fn apiserver_manifest(name: &str, ip: IpAddr) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
  labels:
    component: kube-apiserver
    tier: control-plane
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address={ip}
    - --etcd-servers=https://{ip}:2379
    - --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt
    image: {APISERVER_IMAGE}
    name: kube-apiserver
  hostNetwork: true
  nodeName: {name}
"#
    )
}

impl LabSpec {
    pub fn new(dir: impl Into<PathBuf>, members: usize, version: EtcdVersion, runtime: LabRuntime, subnet: [u8; 2]) -> Self {
        LabSpec {
            dir: dir.into(),
            members,
            version,
            runtime,
            subnet,
            backoff_base_ms: 500,
            docker_host: std::env::var("DOCKER_HOST").ok(),
            apiserver: false,
            machines: vec![],
            etcd_disks: vec![],
            kubelet: KubeletKind::StandIn,
        }
    }

    pub fn cluster_name(&self) -> String {
        format!("hfx-{}-{}", self.subnet[0], self.subnet[1])
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub ip: IpAddr,
    pub host_root: PathBuf,
    pub runner_pid: Option<u32>,
    pub container: Option<String>,
    /// A real-kubelet master's network namespace (`ip netns` name).
    #[serde(default)]
    pub netns: Option<String>,
}

impl Node {
    pub fn client_url(&self) -> String {
        format!("https://{}:2379", self.ip)
    }
    pub fn peer_url(&self) -> String {
        format!("https://{}:2380", self.ip)
    }
    pub fn manifest(&self) -> PathBuf {
        self.host_root.join("etc/kubernetes/manifests/etcd.yaml")
    }
    /// The stand-in kube-apiserver's manifest (labs with `apiserver`).
    pub fn apiserver_manifest(&self) -> PathBuf {
        self.host_root.join("etc/kubernetes/manifests/kube-apiserver.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.host_root.join("var/lib/etcd")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub spec: LabSpec,
    pub nodes: Vec<Node>,
}

pub struct Lab {
    pub state: LabState,
    children: Vec<std::process::Child>,
    /// The machine masters, by node index; powered off by `down` (or when dropped).
    machines: BTreeMap<usize, crate::machine::Machine>,
    /// The etcd disks this lab mounted, unmounted after everything on them has stopped.
    mounts: Vec<PathBuf>,
    /// Real-kubelet masters this process started, by node index.
    real: BTreeMap<usize, crate::realkube::Master>,
    torn_down: bool,
}

fn etcd_member_name(runtime: LabRuntime, node: &str) -> String {
    match runtime {
        LabRuntime::StaticPod => node.to_string(),
        // RKE names members etcd-<node>.
        LabRuntime::Docker => format!("etcd-{node}"),
    }
}

/// What `kubeadm upgrade apply` changes in an existing etcd.yaml when it moves the member
/// from `from` to `to`: the image, and, across 3.5 → 3.6, the flag forms and the liveness
/// probe's path (see [`kubeadm_manifest`]). Everything else is left as it was.
pub fn kubeadm_upgrade(text: &str, from: EtcdVersion, to: EtcdVersion) -> String {
    let mut t = text.replace(&from.kubeadm_image(), &to.kubeadm_image());
    if !from.has_feature_gates() && to.has_feature_gates() {
        t = t
            .replace("--experimental-initial-corrupt-check=true", "--feature-gates=InitialCorruptCheck=true")
            .replace("--experimental-watch-progress-notify-interval=5s", "--watch-progress-notify-interval=5s")
            .replace("/health?exclude=NOSPACE&serializable=true", "/livez");
    }
    t
}

/// kubeadm's etcd.yaml for one member, with the lab's addresses, as kubeadm writes it for
/// `v`: 1.34 and later write the 3.6 forms for a 3.6 image (`--feature-gates=InitialCorruptCheck=true`,
/// `--watch-progress-notify-interval`, `/livez` and `/readyz` probes on the metrics port);
/// older kubeadm wrote the `--experimental-*` forms and one `/health` probe.
pub fn kubeadm_manifest(v: EtcdVersion, image: &str, name: &str, ip: IpAddr, initial_cluster: &str, state: &str) -> String {
    let (corrupt, progress, live) = if v.has_feature_gates() {
        ("--feature-gates=InitialCorruptCheck=true", "--watch-progress-notify-interval=5s", "/livez")
    } else {
        ("--experimental-initial-corrupt-check=true", "--experimental-watch-progress-notify-interval=5s", "/health?exclude=NOSPACE&serializable=true")
    };
    let ready = if v.has_feature_gates() {
        format!(
            "\n    readinessProbe:\n      failureThreshold: 3\n      httpGet:\n        host: {ip}\n        path: /readyz\n        port: 2381\n        scheme: HTTP\n      periodSeconds: 1\n      timeoutSeconds: 15"
        )
    } else {
        String::new()
    };
    // 3.4 has no progress-notify flag under either name that kubeadm wrote for it.
    let progress = if v == EtcdVersion::V3_4 { String::new() } else { format!("\n    - {progress}") };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{ip}:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://{ip}:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - {corrupt}
    - --initial-advertise-peer-urls=https://{ip}:2380
    - --initial-cluster={initial_cluster}
    - --initial-cluster-state={state}
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://{ip}:2379
    - --listen-metrics-urls=http://{ip}:2381
    - --listen-peer-urls=https://{ip}:2380
    - --name={name}
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt{progress}
    image: {image}
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: {ip}
        path: {live}
        port: 2381
        scheme: HTTP
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: etcd{ready}
    resources:
      requests:
        cpu: 100m
        memory: 100Mi
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {{}}
"#
    )
}

/// The etcd arguments Rancher RKE writes for its `etcd` container.
pub fn rke_args(name: &str, ip: IpAddr, dashed: &str, initial_cluster: &str, state: &str) -> Vec<String> {
    let cert = format!("/etc/kubernetes/ssl/kube-etcd-{dashed}.pem");
    let key = format!("/etc/kubernetes/ssl/kube-etcd-{dashed}-key.pem");
    let ca = "/etc/kubernetes/ssl/kube-ca.pem";
    vec![
        "/usr/local/bin/etcd".into(),
        "--peer-client-cert-auth".into(),
        "--client-cert-auth".into(),
        "--data-dir=/var/lib/rancher/etcd/".into(),
        "--initial-cluster-token=etcd-cluster-1".into(),
        format!("--listen-client-urls=https://{ip}:2379"),
        format!("--initial-advertise-peer-urls=https://{ip}:2380"),
        format!("--listen-peer-urls=https://{ip}:2380"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
        format!("--name={name}"),
        format!("--advertise-client-urls=https://{ip}:2379"),
        format!("--trusted-ca-file={ca}"),
        format!("--peer-trusted-ca-file={ca}"),
        format!("--cert-file={cert}"),
        format!("--key-file={key}"),
        format!("--peer-cert-file={cert}"),
        format!("--peer-key-file={key}"),
    ]
}

impl Lab {
    /// Bring a lab up. `runner_exe` is the etcd-hostfix binary, whose hidden
    /// `lab kubelet` subcommand runs each master's static-pod runner. With `detach`, runners
    /// outlive this process (for `lab up`); otherwise they die with it.
    pub async fn up(spec: LabSpec, runner_exe: &Path, detach: bool) -> Result<Lab, LabError> {
        let bins = spec.version.bin_dir()?;
        // Old data dirs under new certificates would make a cluster of strangers; a lab
        // directory is used once, and what a previous lab left (archives) is not ours to delete.
        if spec.dir.join("lab.json").exists() || spec.dir.join("m1").exists() {
            return Err(LabError::Runner(format!(
                "{} already holds a lab; run `etcd-hostfix lab down --dir {}` and move it away, or choose another --dir",
                spec.dir.display(),
                spec.dir.display()
            )));
        }
        std::fs::create_dir_all(&spec.dir).map_err(|e| LabError::io(&spec.dir, e))?;
        let ca = Ca::new("etcd-ca")?;
        let nodes: Vec<Node> = (1..=spec.members)
            .map(|i| {
                let name = format!("m{i}");
                let ip = match spec.kubelet {
                    KubeletKind::StandIn => IpAddr::from([127, spec.subnet[0], spec.subnet[1], i as u8]),
                    KubeletKind::Real => crate::realkube::master_ip(spec.subnet, i),
                };
                Node { ip, host_root: spec.dir.join(&name), name, runner_pid: None, container: None, netns: None }
            })
            .collect();
        let initial_cluster = nodes
            .iter()
            .map(|n| format!("{}={}", etcd_member_name(spec.runtime, &n.name), n.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        if (!spec.machines.is_empty() || !spec.etcd_disks.is_empty()) && (spec.runtime != LabRuntime::StaticPod || spec.apiserver) {
            return Err(LabError::Runner("machine masters and etcd disks are for static-pod labs without the stand-in apiserver".into()));
        }
        let mut lab = Lab {
            state: LabState { spec: spec.clone(), nodes },
            children: vec![],
            machines: BTreeMap::new(),
            mounts: vec![],
            real: BTreeMap::new(),
            torn_down: false,
        };
        match spec.runtime {
            LabRuntime::StaticPod if spec.kubelet == KubeletKind::Real => {
                lab.up_real(detach).await?;
            }
            LabRuntime::StaticPod => {
                for (i, n) in lab.state.nodes.iter().enumerate() {
                    if spec.machines.contains(&i) {
                        crate::machine::copy_root(&n.host_root)?;
                    }
                    if spec.etcd_disks.contains(&i) {
                        let disk = n.data_dir();
                        std::fs::create_dir_all(&disk).map_err(|e| LabError::io(&disk, e))?;
                        // 0700: etcd 3.6 refuses a data dir anyone else may read.
                        let st = std::process::Command::new("mount")
                            .args(["-t", "tmpfs", "-o", "size=1g,mode=0700", "hostfix-etcd-disk"])
                            .arg(&disk)
                            .status()
                            .map_err(|e| LabError::Runner(format!("spawn mount: {e}")))?;
                        if !st.success() {
                            return Err(LabError::Runner(format!("mount a tmpfs on {}: {st}", disk.display())));
                        }
                        lab.mounts.push(disk);
                    }
                    for d in ["var/lib/etcd", "var/log/pods", "etc/kubernetes/manifests"] {
                        let p = n.host_root.join(d);
                        std::fs::create_dir_all(&p).map_err(|e| LabError::io(&p, e))?;
                    }
                    certs::write_kubeadm(&n.host_root.join("etc/kubernetes/pki/etcd"), &ca, &n.name, n.ip)?;
                    let m = kubeadm_manifest(spec.version, &spec.version.kubeadm_image(), &n.name, n.ip, &initial_cluster, "new");
                    // 0600, as kubeadm writes its static-pod manifests.
                    certs::write(&n.manifest(), &m, true)?;
                    if spec.apiserver {
                        let a = n.host_root.join("etc/kubernetes/manifests/kube-apiserver.yaml");
                        certs::write(&a, &apiserver_manifest(&n.name, n.ip), true)?;
                    }
                }
                if spec.apiserver {
                    let bin = spec.dir.join("stand-in/kube-apiserver");
                    std::fs::create_dir_all(bin.parent().unwrap()).map_err(|e| LabError::io(&bin, e))?;
                    std::fs::write(&bin, APISERVER_SCRIPT).map_err(|e| LabError::io(&bin, e))?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(|e| LabError::io(&bin, e))?;
                }
                for i in 0..lab.state.nodes.len() {
                    lab.start_runner(i, runner_exe, &bins, detach)?;
                }
            }
            LabRuntime::Docker => {
                let docker = DockerRuntime::connect(spec.docker_host.as_deref()).await?;
                crate::image::ensure_image(&docker, spec.version, &bins).await?;
                // The lab CA's key, for tests that sign odd client certificates (kubeadm
                // masters keep theirs in pki/etcd/ca.key).
                certs::write(&spec.dir.join("ca.key"), ca.key_pem(), true)?;
                for i in 0..lab.state.nodes.len() {
                    let n = lab.state.nodes[i].clone();
                    std::fs::create_dir_all(n.data_dir()).map_err(|e| LabError::io(&n.data_dir(), e))?;
                    let dashed = certs::write_rke(&n.host_root.join("etc/kubernetes/ssl"), &ca, n.ip)?;
                    let args =
                        rke_args(&etcd_member_name(spec.runtime, &n.name), n.ip, &dashed, &initial_cluster, "new");
                    let cname = format!("{}-etcd-{}", spec.cluster_name(), n.name);
                    crate::image::create_rke_container(&docker, &cname, spec.version, &n, &dashed, args).await?;
                    lab.state.nodes[i].container = Some(cname);
                }
            }
        }
        lab.save()?;
        Ok(lab)
    }

    /// The images the lab kubelet knows: the lab's version, and every other version built
    /// here, by the image kubeadm writes for it (an upgrade or a downgrade is then what
    /// kubeadm makes it, an edit of the manifest's image); the stand-in apiserver's.
    fn images(&self, bins: &Path) -> Vec<(String, PathBuf)> {
        let spec = &self.state.spec;
        let mut v = vec![(spec.version.kubeadm_image(), bins.to_path_buf())];
        for other in EtcdVersion::all().into_iter().filter(|v| *v != spec.version) {
            if let Ok(dir) = other.bin_dir() {
                v.push((other.kubeadm_image(), dir));
            }
        }
        if spec.apiserver {
            v.push((APISERVER_IMAGE.to_string(), spec.dir.join("stand-in")));
        }
        v
    }

    /// A machine master: its kubelet is a unit inside, enabled before boot; the binaries it
    /// runs (this lab's etcd-hostfix for the kubelet, each image's etcd) are bound in
    /// read-only. An etcd disk needs nothing more: nspawn binds the root directory
    /// recursively, so the tmpfs mounted on its `var/lib/etcd` is the machine's
    /// `/var/lib/etcd`, one mount, as on a master.
    fn boot_machine(&mut self, i: usize, exe: &Path, bins: &Path) -> Result<(), LabError> {
        let n = self.state.nodes[i].clone();
        let exe_in = "/usr/local/libexec/hostfix-lab/etcd-hostfix";
        let mut binds = vec![format!("--bind-ro={}:{exe_in}", exe.display())];
        let mut images = vec![];
        for (k, (image, dir)) in self.images(bins).into_iter().enumerate() {
            let inside = format!("/opt/hostfix-lab/images/{k}");
            binds.push(format!("--bind-ro={}:{inside}", dir.display()));
            images.push((image, inside));
        }
        let unit = n.host_root.join("etc/systemd/system/kubelet.service");
        let text = crate::machine::kubelet_unit(exe_in, &n.name, &images, self.state.spec.backoff_base_ms);
        std::fs::write(&unit, text).map_err(|e| LabError::io(&unit, e))?;
        let wants = n.host_root.join("etc/systemd/system/multi-user.target.wants");
        std::fs::create_dir_all(&wants).map_err(|e| LabError::io(&wants, e))?;
        let link = wants.join("kubelet.service");
        std::os::unix::fs::symlink("/etc/systemd/system/kubelet.service", &link).map_err(|e| LabError::io(&link, e))?;
        let name = format!("{}-{}", self.state.spec.cluster_name(), n.name);
        let m = crate::machine::Machine::boot(&n.host_root, &name, &binds)?;
        self.state.nodes[i].runner_pid = Some(m.nspawn_pid());
        self.machines.insert(i, m);
        Ok(())
    }

    /// Node `i`'s machine, when it is a machine master.
    pub fn machine(&self, i: usize) -> Option<&crate::machine::Machine> {
        self.machines.get(&i)
    }

    fn start_runner(&mut self, i: usize, exe: &Path, bins: &Path, detach: bool) -> Result<(), LabError> {
        if self.state.spec.machines.contains(&i) {
            return self.boot_machine(i, exe, bins);
        }
        let images = self.images(bins);
        let n = &self.state.nodes[i];
        let log = n.host_root.join("kubelet.log");
        let logf = std::fs::File::create(&log).map_err(|e| LabError::io(&log, e))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["lab", "kubelet", "--host-root"])
            .arg(&n.host_root)
            .args(["--node", &n.name])
            .args(["--backoff-base-ms", &self.state.spec.backoff_base_ms.to_string()]);
        for (image, dir) in images {
            cmd.arg("--image").arg(format!("{image}={}", dir.display()));
        }
        cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| LabError::io(&log, e))?)
            .stderr(logf);
        use std::os::unix::process::CommandExt;
        unsafe {
            if detach {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            } else {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|e| LabError::Runner(format!("spawn {}: {e}", exe.display())))?;
        self.state.nodes[i].runner_pid = Some(child.id());
        if detach {
            std::mem::forget(child);
        } else {
            self.children.push(child);
        }
        Ok(())
    }

    pub fn state_file(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn save(&self) -> Result<(), LabError> {
        let p = Self::state_file(&self.state.spec.dir);
        let s = serde_json::to_string_pretty(&self.state).expect("lab state serialises");
        std::fs::write(&p, s).map_err(|e| LabError::io(&p, e))
    }

    /// Attach to a lab brought up by another process (`lab up`).
    pub fn load(dir: &Path) -> Result<Lab, LabError> {
        let p = Self::state_file(dir);
        let s = std::fs::read_to_string(&p).map_err(|e| LabError::io(&p, e))?;
        let state: LabState = serde_json::from_str(&s).map_err(|e| LabError::Runner(format!("{}: {e}", p.display())))?;
        Ok(Lab { state, children: vec![], machines: BTreeMap::new(), mounts: vec![], real: BTreeMap::new(), torn_down: false })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.state.nodes
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.state.nodes[i]
    }

    /// The etcd version the lab was made with (a test may have moved a member's manifest
    /// to another since).
    pub fn version(&self) -> EtcdVersion {
        self.state.spec.version
    }

    pub fn member_name(&self, i: usize) -> String {
        etcd_member_name(self.state.spec.runtime, &self.state.nodes[i].name)
    }

    /// Client TLS for talking to node `i`, from its own files.
    pub fn client_tls_files(&self, i: usize) -> (PathBuf, PathBuf, PathBuf) {
        let n = &self.state.nodes[i];
        match self.state.spec.runtime {
            LabRuntime::StaticPod => {
                let d = n.host_root.join("etc/kubernetes/pki/etcd");
                (d.join("ca.crt"), d.join("healthcheck-client.crt"), d.join("healthcheck-client.key"))
            }
            LabRuntime::Docker => {
                let d = n.host_root.join("etc/kubernetes/ssl");
                let dashed = n.ip.to_string().replace('.', "-");
                (
                    d.join("kube-ca.pem"),
                    d.join(format!("kube-etcd-{dashed}.pem")),
                    d.join(format!("kube-etcd-{dashed}-key.pem")),
                )
            }
        }
    }

    pub fn connector(&self, i: usize) -> Result<Connector, LabError> {
        let (ca, cert, key) = self.client_tls_files(i);
        Ok(Connector::new(Some(ClientTls::load(&ca, Some(&cert), Some(&key))?), Duration::from_secs(3)))
    }

    /// Wait until the given nodes answer a quorum read and list `expect_members` members.
    pub async fn wait_healthy(&self, nodes: &[usize], expect_members: usize, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        'outer: while Instant::now() < deadline {
            for &i in nodes {
                let url = self.node(i).client_url();
                let r: Result<(), String> = async {
                    let mut ep = self.connector(i).map_err(|e| e.to_string())?.connect(&url).await.map_err(|e| e.to_string())?;
                    ep.health().await.map_err(|e| e.to_string())?;
                    let n = ep.member_list().await.map_err(|e| e.to_string())?.members.len();
                    if n != expect_members {
                        return Err(format!("{url} lists {n} members"));
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = r {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue 'outer;
                }
            }
            return Ok(());
        }
        Err(LabError::Timeout(format!("cluster not healthy after {timeout:?}: {last}")))
    }

    /// Run the lab version's etcdctl against node `i` with that node's client certs.
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> Result<String, LabError> {
        let (ca, cert, key) = self.client_tls_files(i);
        let bin = self.state.spec.version.bin_dir()?.join("etcdctl");
        let out = std::process::Command::new(&bin)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.node(i).client_url()))
            .arg(format!("--cacert={}", ca.display()))
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()))
            .args(["--dial-timeout=3s", "--command-timeout=10s"])
            .args(args)
            .output()
            .map_err(|e| LabError::Runner(format!("{}: {e}", bin.display())))?;
        if !out.status.success() {
            return Err(LabError::Runner(format!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn docker(&self) -> Result<DockerRuntime, LabError> {
        Ok(DockerRuntime::connect(self.state.spec.docker_host.as_deref()).await?)
    }

    /// Stop a member the way an operator does: move the manifest out of `manifests/`
    /// (to `/root/etcd.yaml`, as in seed 002), or `docker stop`.
    pub async fn stop_member(&self, i: usize) -> Result<(), LabError> {
        let n = self.node(i);
        match self.state.spec.runtime {
            LabRuntime::StaticPod => {
                let to = n.host_root.join("root/etcd.yaml");
                std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| LabError::io(&to, e))?;
                std::fs::rename(n.manifest(), &to).map_err(|e| LabError::io(&n.manifest(), e))?;
                self.wait_port_closed(i, Duration::from_secs(30)).await
            }
            LabRuntime::Docker => {
                let c = n.container.clone().expect("docker node has a container");
                self.docker()
                    .await?
                    .docker
                    .stop_container(&c, None::<bollard::query_parameters::StopContainerOptions>)
                    .await
                    .map_err(|e| LabError::Runner(format!("docker stop {c}: {e}")))
            }
        }
    }

    pub async fn start_member(&self, i: usize) -> Result<(), LabError> {
        let n = self.node(i);
        match self.state.spec.runtime {
            LabRuntime::StaticPod => {
                let from = n.host_root.join("root/etcd.yaml");
                std::fs::rename(&from, n.manifest()).map_err(|e| LabError::io(&from, e))
            }
            LabRuntime::Docker => {
                let c = n.container.clone().expect("docker node has a container");
                self.docker()
                    .await?
                    .docker
                    .start_container(&c, None::<bollard::query_parameters::StartContainerOptions>)
                    .await
                    .map_err(|e| LabError::Runner(format!("docker start {c}: {e}")))
            }
        }
    }

    async fn wait_port_closed(&self, i: usize, timeout: Duration) -> Result<(), LabError> {
        let addr = std::net::SocketAddr::new(self.node(i).ip, 2379);
        let deadline = Instant::now() + timeout;
        // The port closes before etcd has finished its last backend commit; a test that
        // corrupts the data dir must wait for the process itself to be gone, or etcd's final
        // meta-page write quietly repairs the damage.
        // And the runner must have seen the manifest go: a crashlooping pod has no process
        // between restarts, and a sync pass that read the manifest just before it moved may
        // still start one more (a straggler), which would write a fresh data dir behind the
        // procedure's back. A person checks `crictl pods` for the same reason.
        let url = self.node(i).client_url();
        let runner = crate::kubelet::KubeletConfig::state_file(&self.node(i).host_root);
        while Instant::now() < deadline {
            let runner_done = std::fs::read_to_string(&runner).map(|s| s == "none").unwrap_or(true);
            if runner_done
                && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
                && hostfix_adapters::process::etcd_pids(&url).is_empty()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LabError::Timeout(format!("{addr} still answers or its etcd still runs after {timeout:?}")))
    }

    /// Make a member crashloop the way seed 000's does: its data dir is lost while the
    /// manifest still says `--initial-cluster-state=new`, so etcd exits with
    /// "member ... has already been bootstrapped" on every start. The old data is moved
    /// aside, not deleted.
    pub async fn crashloop_member(&self, i: usize) -> Result<(), LabError> {
        self.stop_member(i).await?;
        let data = self.node(i).data_dir().join("member");
        if data.exists() {
            Self::set_aside(self.node(i), &data, "lost-member")?;
        }
        self.start_member(i).await
    }

    /// The lab member's ID (hex) as the cluster lists it, asked through node `via`.
    pub fn member_id(&self, via: usize, i: usize) -> Result<Option<String>, LabError> {
        let out = self.etcdctl(via, &["member", "list", "-w", "json"])?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| LabError::Runner(format!("member list json: {e}")))?;
        let peer = self.node(i).peer_url();
        Ok(v["members"].as_array().into_iter().flatten().find_map(|m| {
            let peers = m["peerURLs"].as_array()?;
            peers.iter().any(|p| p.as_str() == Some(peer.as_str())).then(|| format!("{:x}", m["ID"].as_u64().unwrap_or(0)))
        }))
    }

    /// Stop a static-pod member, let `change` alter its host root and return manifest edits,
    /// apply those to the parked manifest (minimal diff, verified) and start it again. This is
    /// how every failure a real master sees is injected.
    pub async fn offline<F>(&self, i: usize, change: F) -> Result<(), LabError>
    where
        F: FnOnce(&Node) -> Result<Vec<hostfix_core::manifest::FlagEdit>, LabError>,
    {
        assert_eq!(self.state.spec.runtime, LabRuntime::StaticPod, "offline edits are for static pods");
        self.stop_member(i).await?;
        let n = self.node(i);
        let edits = change(n)?;
        if !edits.is_empty() {
            let parked = n.host_root.join("root/etcd.yaml");
            let text = std::fs::read_to_string(&parked).map_err(|e| LabError::io(&parked, e))?;
            let new = hostfix_core::manifest::edit_manifest_flags(&text, &edits)
                .map_err(|e| LabError::Runner(format!("{}: {e}", parked.display())))?;
            std::fs::write(&parked, new).map_err(|e| LabError::io(&parked, e))?;
        }
        self.start_member(i).await
    }

    /// Move `var/lib/etcd/member` aside (never deleted) so the member starts empty.
    pub fn lose_data(n: &Node) -> Result<(), LabError> {
        let data = n.data_dir().join("member");
        if data.exists() {
            Self::set_aside(n, &data, "lost-member")?;
        }
        Ok(())
    }

    /// Move a data dir out of etcd's way, never deleting it: to the host root, or, when the
    /// data dir is a filesystem of its own (an etcd disk: a rename off it is EXDEV), beside
    /// it on that disk, where etcd only warns about an unknown entry.
    fn set_aside(n: &Node, data: &Path, stem: &str) -> Result<PathBuf, LabError> {
        let free = |dir: &Path| {
            (0..).map(|k| dir.join(format!("{stem}.{k}"))).find(|p| !p.exists()).expect("a free name")
        };
        let aside = free(&n.host_root);
        match std::fs::rename(data, &aside) {
            Ok(()) => Ok(aside),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let aside = free(&n.data_dir());
                std::fs::rename(data, &aside).map_err(|e| LabError::io(data, e))?;
                Ok(aside)
            }
            Err(e) => Err(LabError::io(data, e)),
        }
    }

    /// Overwrite bytes of a file in place, from `offset`, with a fixed garbage pattern.
    pub fn scribble(path: &Path, offset: u64, len: usize) -> Result<(), LabError> {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| LabError::io(path, e))?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| LabError::io(path, e))?;
        let junk: Vec<u8> = (0..len).map(|k| (k as u8).wrapping_mul(37).wrapping_add(0x5a)).collect();
        f.write_all(&junk).map_err(|e| LabError::io(path, e))
    }

    /// The WAL files of a member, oldest first (their names sort by sequence number).
    pub fn wal_files(n: &Node) -> Result<Vec<PathBuf>, LabError> {
        let dir = n.data_dir().join("member/wal");
        let mut wals: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| LabError::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().map(|x| x == "wal").unwrap_or(false))
            .collect();
        wals.sort();
        Ok(wals)
    }

    /// The newest WAL file of a member.
    pub fn newest_wal(n: &Node) -> Result<PathBuf, LabError> {
        Self::wal_files(n)?.pop().ok_or_else(|| LabError::Runner(format!("no WAL in {}", n.data_dir().join("member/wal").display())))
    }

    /// Stop every runner and container this lab started, by PID or container ID.
    pub async fn down(&mut self) -> Result<(), LabError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        // Machines first, in parallel: each shuts its units down in order.
        std::thread::scope(|s| {
            for m in self.machines.values_mut() {
                s.spawn(|| m.poweroff(Duration::from_secs(60)));
            }
        });
        for (i, n) in self.state.nodes.iter().enumerate() {
            if let Some(pid) = n.runner_pid.filter(|_| !self.machines.contains_key(&i) && n.netns.is_none()) {
                terminate_pid(pid, Duration::from_secs(15));
            }
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        self.machines.clear();
        self.stop_real();
        self.unmount_disks();
        if self.state.spec.runtime == LabRuntime::Docker {
            let d = self.docker().await?;
            for n in &self.state.nodes {
                if let Some(c) = &n.container {
                    let opts = bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() };
                    let _ = d.docker.remove_container(c, Some(opts)).await;
                }
                // The runtime may have renamed a container aside during a repair.
                for other in crate::image::lab_containers(&d, &self.state.spec.cluster_name()).await.unwrap_or_default() {
                    let opts = bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() };
                    let _ = d.docker.remove_container(&other, Some(opts)).await;
                }
            }
        }
        Ok(())
    }
}

impl Lab {
    /// Bring up a real-kubelet lab (see [`crate::realkube`]): the bridge and each master's
    /// namespaces and daemons, then kubeadm's etcd phases, master by master as `kubeadm
    /// init` and `kubeadm join` make them: the first alone, each next one added as a learner
    /// through the first, given its manifest, and promoted once it has caught up.
    async fn up_real(&mut self, detach: bool) -> Result<(), LabError> {
        let spec = self.state.spec.clone();
        if spec.apiserver || !spec.machines.is_empty() || !spec.etcd_disks.is_empty() {
            return Err(LabError::Runner("the real kubelet lab has no stand-in apiserver, machine masters or etcd disks yet".into()));
        }
        if spec.version < EtcdVersion::V3_6 {
            // kubeadm 1.36 refuses etcd older than 3.6.0.
            return Err(LabError::Runner(format!(
                "kubeadm {} runs etcd 3.6 or later; the real-kubelet lab cannot run {}",
                crate::realkube::K8S_VERSION,
                spec.version.tag()
            )));
        }
        let tools = crate::realkube::Tools::locate()?;
        let archives = crate::realkube::write_images(&spec.dir.join("images"), &tools)?;
        crate::realkube::bridge_up(spec.subnet)?;
        for i in 0..self.state.nodes.len() {
            let ns = crate::realkube::netns_up(spec.subnet, &self.state.nodes[i])?;
            self.state.nodes[i].netns = Some(ns.clone());
            self.save()?;
            let m = crate::realkube::start(&self.state.nodes[i], &ns, &tools, &archives, detach)?;
            if detach {
                self.state.nodes[i].runner_pid = Some(m.runner.id());
                std::mem::forget(m);
            } else {
                self.real.insert(i, m);
            }
        }
        self.save()?;
        let first = self.state.nodes[0].clone();
        let ns = first.netns.clone().expect("set above");
        crate::realkube::kubeadm(&first, &ns, &tools, &crate::realkube::kubeadm_config(&first, spec.version, None))?;
        self.wait_healthy(&[0], 1, Duration::from_secs(120)).await?;
        let ca_dir = first.host_root.join("etc/kubernetes/pki/etcd");
        for i in 1..self.state.nodes.len() {
            let n = self.state.nodes[i].clone();
            let pki = n.host_root.join("etc/kubernetes/pki/etcd");
            std::fs::create_dir_all(&pki).map_err(|e| LabError::io(&pki, e))?;
            for f in ["ca.crt", "ca.key"] {
                std::fs::copy(ca_dir.join(f), pki.join(f)).map_err(|e| LabError::io(&ca_dir.join(f), e))?;
            }
            // etcd refuses an add while a just-promoted member is not yet "started"
            // ("unhealthy cluster"), as kubeadm join's retries meet it.
            let deadline = Instant::now() + Duration::from_secs(60);
            let added = loop {
                match self.etcdctl(0, &["member", "add", &n.name, "--learner", &format!("--peer-urls={}", n.peer_url()), "-w", "json"]) {
                    Ok(out) => break out,
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            };
            let v: serde_json::Value =
                serde_json::from_str(&added).map_err(|e| LabError::Runner(format!("member add json: {e}")))?;
            let id = format!("{:x}", v["member"]["ID"].as_u64().unwrap_or(0));
            // The initial cluster kubeadm join writes: the members as the add returned them.
            let ic = v["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let peer = m["peerURLs"].as_array()?.first()?.as_str()?.to_string();
                    let name = m["name"].as_str().filter(|s| !s.is_empty()).unwrap_or(&n.name).to_string();
                    Some(format!("{name}={peer}"))
                })
                .collect::<Vec<_>>()
                .join(",");
            let ns = n.netns.clone().expect("set above");
            crate::realkube::kubeadm(&n, &ns, &tools, &crate::realkube::kubeadm_config(&n, spec.version, Some(&ic)))?;
            let deadline = Instant::now() + Duration::from_secs(120);
            while let Err(e) = self.etcdctl(0, &["member", "promote", &id]) {
                if Instant::now() > deadline {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let all: Vec<usize> = (0..self.state.nodes.len()).collect();
        self.wait_healthy(&all, all.len(), Duration::from_secs(120)).await
    }

    /// Stop every real-kubelet master of this lab: those this process started, and those a
    /// detached `lab up` left (by their pid files), then the namespaces and the bridge.
    fn stop_real(&mut self) {
        if self.state.spec.kubelet != KubeletKind::Real {
            return;
        }
        let Ok(tools) = crate::realkube::Tools::locate() else { return };
        let nodes = self.state.nodes.clone();
        std::thread::scope(|s| {
            let mut real = std::mem::take(&mut self.real);
            for (i, n) in nodes.iter().enumerate() {
                let Some(ns) = n.netns.clone() else { continue };
                let mut m = real.remove(&i);
                let tools = &tools;
                s.spawn(move || crate::realkube::stop(n, &ns, tools, m.as_mut().map(|m| &mut m.runner)));
            }
        });
        crate::realkube::net_down(self.state.spec.subnet, &self.state.nodes);
    }

    /// `program` as run on master `i`: in its network namespace when it has one (a
    /// real-kubelet master), as is otherwise.
    pub fn command(&self, i: usize, program: impl AsRef<Path>) -> std::process::Command {
        let n = self.node(i);
        match &n.netns {
            Some(ns) => crate::realkube::on_master(n, ns, false, program.as_ref()),
            None => std::process::Command::new(program.as_ref()),
        }
    }

    /// crictl against master `i`'s containerd (real-kubelet labs).
    pub fn crictl(&self, i: usize, args: &[&str]) -> Result<String, LabError> {
        crate::realkube::crictl(self.node(i), &crate::realkube::Tools::locate()?, args)
    }
}

/// SIGTERM a process we started, wait for it to go, SIGKILL if it will not.
pub fn terminate_pid(pid: u32, grace: Duration) {
    let pid = pid as i32;
    unsafe {
        if libc::kill(pid, libc::SIGTERM) != 0 {
            return;
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        let mut status = 0;
        // Reap it if it is our child; otherwise poll for its disappearance.
        unsafe {
            libc::waitpid(pid, &mut status, libc::WNOHANG);
            if libc::kill(pid, 0) != 0 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

impl Lab {
    /// Unmount the etcd disks this lab mounted (lazily when something still holds them:
    /// nothing of ours does once the masters are down, and a stuck mount must not keep a
    /// test's temporary dir from going).
    fn unmount_disks(&mut self) {
        for m in self.mounts.drain(..) {
            let ok = std::process::Command::new("umount").arg(&m).status().is_ok_and(|s| s.success());
            if !ok {
                let _ = std::process::Command::new("umount").arg("-l").arg(&m).status();
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for m in self.machines.values_mut() {
            m.poweroff(Duration::from_secs(60));
        }
        self.machines.clear();
        if !self.real.is_empty() && !self.torn_down {
            self.stop_real();
        }
        // Children we own die with us; detached labs are left for `lab down`.
        if !self.children.is_empty() && !self.torn_down {
            for c in &mut self.children {
                terminate_pid(c.id(), Duration::from_secs(15));
                let _ = c.wait();
            }
        }
        self.unmount_disks();
    }
}

/// Images the lab kubelet knows, for the hidden runner subcommand.
pub fn image_map(pairs: &[String]) -> Result<BTreeMap<String, PathBuf>, LabError> {
    pairs
        .iter()
        .map(|p| {
            p.rsplit_once('=')
                .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
                .ok_or_else(|| LabError::Runner(format!("--image {p}: expected IMAGE=DIR")))
        })
        .collect()
}
