//! Masters made the kubeadm way and run by the real kubelet and containerd (issue 29), built
//! from their published Go modules by `scripts/build-k8s`.
//!
//! Each master is what a kubeadm master is, on one host:
//! - **Its own network namespace.** kubeadm will not advertise a loopback address: given
//!   127.x it resolves the host's default-route address instead (apimachinery's
//!   `ResolveBindAddress`), and it always adds `https://127.0.0.1:2379` to
//!   `--listen-client-urls` and `127.0.0.1:2381` for the probes. Several masters on the
//!   host's network would fight over those ports, and their manifests would no longer be
//!   what kubeadm writes. So each master gets a network namespace: its own `lo` (its own
//!   127.0.0.1) and a veth into a host-only bridge, with an address from 198.18.0.0/15
//!   (RFC 2544: networks for benchmarking, never routed). The namespaces have no default
//!   route and the bridge has no uplink, so no packet can leave the machine.
//! - **Its own mount namespace,** where the master's directories are bound over kubeadm's
//!   real paths (`/etc/kubernetes`, `/var/lib/etcd`, `/var/lib/kubelet`, `/var/log/pods`).
//!   containerd, its shims, runc and the kubelet all run there, so a manifest's `hostPath`
//!   means on this master what it means on a real one, and etcd-hostfix sees the same files
//!   under `--host-root`. The empty mount points are made on the host if missing.
//! - **Its own containerd and kubelet,** standalone (no API server: no kubeconfig, webhook
//!   authn off, `AlwaysAllow`), each kubelet with its own `cgroupRoot` under every cgroup v1
//!   hierarchy so that two kubelets never manage the same `kubepods`.
//! - **The kubelet's kernel tunables stay in the namespace.** At start the kubelet sets six
//!   host-wide sysctls (`vm.overcommit_memory`, `kernel.panic`, ...: `setupKernelTunables`).
//!   Each is bind-mounted from a file of the master's, so the kubelet reads and writes its
//!   own copy and the host is not touched.
//!
//! Images cannot be pulled here: the pause and etcd images are OCI archives made locally
//! ([`crate::oci`]) and imported into each containerd, tagged exactly as the manifest names
//! them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::{EtcdVersion, Node};
use crate::oci::OciImage;
use crate::LabError;

/// The Kubernetes release whose kubelet and kubeadm the lab runs (scripts/build-k8s).
pub const K8S_VERSION: &str = "1.36.3";

/// The kernel tunables the kubelet sets at start, with their paths under /proc/sys.
const TUNABLES: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// kubeadm's paths that each master's mount namespace binds from its host root.
const BOUND: [&str; 4] = ["etc/kubernetes", "var/lib/etcd", "var/lib/kubelet", "var/log/pods"];

/// The binaries scripts/build-k8s leaves in one directory.
#[derive(Debug, Clone)]
pub struct Tools {
    pub dir: PathBuf,
    pub pause_tag: String,
}

impl Tools {
    /// `HOSTFIX_K8S_DIR` (set by scripts/dev), else `.cache/k8s/<K8S_VERSION>`.
    pub fn locate() -> Result<Tools, LabError> {
        let dir = std::env::var_os("HOSTFIX_K8S_DIR").map(PathBuf::from).unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/k8s").join(K8S_VERSION)
        });
        let missing = ["kubelet", "kubeadm", "containerd", "containerd-shim-runc-v2", "ctr", "crictl", "pause"]
            .into_iter()
            .find(|b| !dir.join(b).is_file());
        let tag = std::fs::read_to_string(dir.join("pause.tag")).map(|s| s.trim().to_string());
        match (missing, tag) {
            (None, Ok(pause_tag)) if !pause_tag.is_empty() => Ok(Tools { dir, pause_tag }),
            (m, _) => Err(LabError::Runner(format!(
                "the real kubelet's tools are not in {} ({} missing); scripts/dev builds them (scripts/build-k8s), or set HOSTFIX_K8S_DIR",
                dir.display(),
                m.unwrap_or("pause.tag")
            ))),
        }
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn pause_image(&self) -> String {
        format!("registry.k8s.io/pause:{}", self.pause_tag)
    }
}

/// Where a lab's masters live on the bridge: 198.18.<a>.<16·b + i>, a /28 per lab (the lab's
/// loopback subnet is 127.<a>.<b>.0/24, so labs that differ there differ here), the bridge
/// at .14 of it.
pub fn master_ip(subnet: [u8; 2], i: usize) -> IpAddr {
    assert!(subnet[1] < 16 && (1..=13).contains(&i), "a real-kubelet lab needs subnet[1] < 16 and at most 13 masters");
    IpAddr::from([198, 18, subnet[0], 16 * subnet[1] + i as u8])
}

fn bridge_ip(subnet: [u8; 2]) -> String {
    format!("198.18.{}.{}/28", subnet[0], 16 * subnet[1] + 14)
}

fn bridge_name(subnet: [u8; 2]) -> String {
    format!("hfxb{}x{}", subnet[0], subnet[1])
}

/// The master's network namespace, as `ip netns` names it (under /run/netns).
pub fn netns_name(subnet: [u8; 2], node: &str) -> String {
    format!("hfx-{}-{}-{node}", subnet[0], subnet[1])
}

fn veth_name(subnet: [u8; 2], node: &str) -> String {
    format!("hfxv{}x{}{node}", subnet[0], subnet[1])
}

pub fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

fn run(cmd: &mut Command) -> Result<String, LabError> {
    let what = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| LabError::Runner(format!("spawn {what}: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Runner(format!("{what}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, LabError> {
    run(Command::new("ip").args(args))
}

/// The lab's bridge: host-only, no uplink.
pub fn bridge_up(subnet: [u8; 2]) -> Result<(), LabError> {
    let br = bridge_name(subnet);
    ip(&["link", "add", &br, "type", "bridge"])?;
    ip(&["addr", "add", &bridge_ip(subnet), "dev", &br])?;
    ip(&["link", "set", &br, "up"])?;
    Ok(())
}

/// A master's network namespace, its veth on the bridge, its address; no default route.
pub fn netns_up(subnet: [u8; 2], node: &Node) -> Result<String, LabError> {
    let ns = netns_name(subnet, &node.name);
    let veth = veth_name(subnet, &node.name);
    let addr = format!("{}/28", node.ip);
    ip(&["netns", "add", &ns])?;
    ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
    ip(&["link", "set", &veth, "master", &bridge_name(subnet), "up"])?;
    ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    Ok(ns)
}

/// Remove what [`bridge_up`] and [`netns_up`] made (each by its exact name; what is already
/// gone is fine). Deleting a namespace deletes its veth pair.
pub fn net_down(subnet: [u8; 2], nodes: &[Node]) {
    for n in nodes {
        let _ = ip(&["netns", "del", &netns_name(subnet, &n.name)]);
    }
    let _ = ip(&["link", "del", &bridge_name(subnet)]);
}

/// This master's private files: containerd's root and state, the kubelet's config, the
/// pid files and logs. Under the host root, where a real master keeps them.
fn private(n: &Node) -> PathBuf {
    n.host_root.join("run/hostfix-lab")
}

fn socket(n: &Node) -> PathBuf {
    n.host_root.join("run/containerd/containerd.sock")
}

fn cgroup_root(netns: &str) -> String {
    format!("/{netns}")
}

/// The cgroup hierarchies of the kubelet's `cgroupRoot`. It must exist in each v1 one
/// before the kubelet starts (it refuses a root with "missing paths"); the cgroup2 one at
/// `unified` is made by the runtime as it goes, and is removed with the others.
fn cgroup_dirs(netns: &str, with_unified: bool) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else { return vec![] };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| (with_unified || e.file_name() != "unified") && e.path().is_dir() && !e.path().is_symlink())
        .map(|e| e.path().join(netns))
        .collect();
    v.sort();
    v
}

fn containerd_config(n: &Node, tools: &Tools) -> String {
    let r = n.host_root.display();
    format!(
        r#"version = 3
root = '{r}/var/lib/containerd'
state = '{r}/run/containerd'
[grpc]
  address = '{sock}'
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '{pause}'
# This sandbox lacks CAP_SYS_RESOURCE: containerd may only raise a container's oom_score_adj.
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
"#,
        sock = socket(n).display(),
        pause = tools.pause_image(),
    )
}

/// The kubelet's configuration: standalone, in the master's network namespace (so its own
/// 127.0.0.1 and the default ports), its own cgroup root, no eviction that this shared disk
/// could trigger. `maxContainerRestartPeriod` is left at its default (300 s): the backoff is
/// part of what the conformance suite checks. Logs rotate at 16 KiB (10 MiB on a master),
/// checked every 3 s (the least the kubelet takes), so that the lab's members have rotated
/// and gzipped logs within seconds, as a master's have after weeks.
fn kubelet_config(n: &Node, netns: &str) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
staticPodPath: /etc/kubernetes/manifests
containerRuntimeEndpoint: unix://{sock}
cgroupDriver: cgroupfs
cgroupRoot: {root}
failCgroupV1: false
failSwapOn: false
podLogsDir: /var/log/pods
containerLogMaxSize: 16Ki
containerLogMaxFiles: 3
containerLogMonitorInterval: 3s
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}}
"#,
        sock = socket(n).display(),
        root = cgroup_root(netns),
    )
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The script that runs in the master's fresh mount namespace: the binds, containerd, the
/// image imports, the kubelet. It waits on both; the pid files let [`stop`] stop them.
fn master_script(n: &Node, tools: &Tools, archives: &[PathBuf]) -> String {
    let r = quote(&n.host_root);
    let p = quote(&private(n));
    let mut s = String::from("set -e\n");
    for d in BOUND {
        s.push_str(&format!("mkdir -p /{d} {r}/{d}\nmount --bind {r}/{d} /{d}\n"));
    }
    for t in TUNABLES {
        s.push_str(&format!("mount --bind {p}/sysctl/{} /proc/sys/{t}\n", t.replace('/', "_")));
    }
    let bin = |b: &str| quote(&tools.bin(b));
    s.push_str(&format!("{} --config {p}/containerd.toml >{p}/containerd.log 2>&1 &\n", bin("containerd")));
    s.push_str(&format!("echo $! >{p}/containerd.pid\n"));
    s.push_str(&format!(
        "for i in $(seq 300); do [ -S {sock} ] && break; sleep 0.1; done\n",
        sock = quote(&socket(n))
    ));
    for a in archives {
        s.push_str(&format!(
            "{} -a {} -n k8s.io images import --platform linux/amd64 {} >>{p}/import.log 2>&1\n",
            bin("ctr"),
            quote(&socket(n)),
            quote(a)
        ));
    }
    s.push_str(&format!(
        "{} --config {p}/kubelet.yaml --root-dir /var/lib/kubelet --hostname-override {} --node-ip {} --v=2 >{p}/kubelet.log 2>&1 &\n",
        bin("kubelet"),
        n.name,
        n.ip
    ));
    s.push_str(&format!("echo $! >{p}/kubelet.pid\nwait\n"));
    s
}

/// The pause and etcd images as OCI archives in `dir`: pause from scripts/build-k8s, etcd
/// from each built version's binaries, tagged as kubeadm names it with `imageTag`
/// `<version>-0` ([`EtcdVersion::kubeadm_image`]).
pub fn write_images(dir: &Path, tools: &Tools) -> Result<Vec<PathBuf>, LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    let mut images = vec![OciImage {
        reference: tools.pause_image(),
        files: vec![("/pause".into(), tools.bin("pause"))],
        entrypoint: vec!["/pause".into()],
        env: vec![],
    }];
    for v in [EtcdVersion::V3_6, EtcdVersion::V3_7] {
        let Ok(bins) = v.bin_dir() else { continue };
        images.push(OciImage {
            reference: v.kubeadm_image(),
            files: ["etcd", "etcdctl", "etcdutl"]
                .into_iter()
                .map(|b| (format!("/usr/local/bin/{b}"), bins.join(b)))
                .filter(|(_, p)| p.is_file())
                .collect(),
            entrypoint: vec![],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        });
    }
    images
        .iter()
        .map(|i| {
            let name = i.reference.rsplit('/').next().unwrap_or("image").replace(':', "_");
            let p = dir.join(format!("{name}.tar"));
            i.write(&p)?;
            Ok(p)
        })
        .collect()
}

/// A running master's processes.
#[derive(Debug)]
pub struct Master {
    /// The `nsenter … unshare … bash` that holds the namespaces and waits on the daemons.
    pub runner: std::process::Child,
    pub netns: String,
}

/// Start master `n`: its sysctl files, cgroup roots, configs, then the namespaces and the
/// daemons. Returns once containerd answers and the kubelet has started.
pub fn start(n: &Node, netns: &str, tools: &Tools, archives: &[PathBuf], detach: bool) -> Result<Master, LabError> {
    let p = private(n);
    let sysctl = p.join("sysctl");
    std::fs::create_dir_all(&sysctl).map_err(|e| LabError::io(&sysctl, e))?;
    for t in TUNABLES {
        let host = Path::new("/proc/sys").join(t);
        let v = std::fs::read_to_string(&host).map_err(|e| LabError::io(&host, e))?;
        let f = sysctl.join(t.replace('/', "_"));
        std::fs::write(&f, v).map_err(|e| LabError::io(&f, e))?;
    }
    for d in cgroup_dirs(netns, false) {
        std::fs::create_dir_all(&d).map_err(|e| LabError::io(&d, e))?;
    }
    for (name, text) in [("containerd.toml", containerd_config(n, tools)), ("kubelet.yaml", kubelet_config(n, netns))] {
        let f = p.join(name);
        std::fs::write(&f, text).map_err(|e| LabError::io(&f, e))?;
    }
    for f in ["containerd.pid", "kubelet.pid"] {
        let _ = std::fs::remove_file(p.join(f));
    }
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", netns_path(netns).display()))
        .args(["--", "unshare", "--mount", "--propagation", "private", "--", "bash", "-c"])
        .arg(master_script(n, tools, archives))
        .env("PATH", format!("{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", tools.dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let log = p.join("master.log");
    let logf = std::fs::File::create(&log).map_err(|e| LabError::io(&log, e))?;
    cmd.stderr(logf);
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(move || {
            // Its own process group either way, so that a terminal's ^C reaches the test,
            // which then stops the master in order (pods, kubelet, containerd).
            libc::setsid();
            if !detach {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            }
            Ok(())
        });
    }
    let runner = cmd.spawn().map_err(|e| LabError::Runner(format!("spawn nsenter for {}: {e}", n.name)))?;
    let master = Master { runner, netns: netns.to_string() };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(p.join("kubelet.pid").is_file() && socket(n).exists()) {
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(LabError::Timeout(format!("{}: containerd and the kubelet did not start in 60 s: {tail}", n.name)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(master)
}

fn pid_file(n: &Node, name: &str) -> Option<u32> {
    std::fs::read_to_string(private(n).join(name)).ok()?.trim().parse().ok()
}

/// A command run on master `n` the way a person on that master runs it: in its network
/// namespace, and, with `mounts`, in its mount namespace too (where kubeadm's paths are the
/// master's). etcd-hostfix itself needs only the network: it reads files under
/// `--host-root`, as on a master with the host's root mounted somewhere.
pub fn on_master(n: &Node, netns: &str, mounts: bool, program: &Path) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", netns_path(netns).display()));
    if mounts {
        if let Some(pid) = pid_file(n, "containerd.pid") {
            c.arg(format!("--mount=/proc/{pid}/ns/mnt"));
        }
    }
    c.arg("--").arg(program);
    c
}

/// crictl on master `n`, against its containerd.
pub fn crictl(n: &Node, tools: &Tools, args: &[&str]) -> Result<String, LabError> {
    let sock = format!("unix://{}", socket(n).display());
    run(Command::new(tools.bin("crictl")).args(["--runtime-endpoint", &sock, "--image-endpoint", &sock]).args(args))
}

/// The kubeadm configuration of master `n`: its advertise address and name; the etcd image
/// tag of the lab's version (`imageTag`, kubeadm's own knob for a patched etcd); for a
/// joining master, the `--initial-cluster` and `--initial-cluster-state=existing` that
/// `kubeadm join` writes after its learner add.
pub fn kubeadm_config(n: &Node, v: EtcdVersion, join: Option<&str>) -> String {
    let extra = match join {
        None => "    extraArgs: []\n".to_string(),
        Some(ic) => format!(
            "    extraArgs:\n    - name: initial-cluster\n      value: {ic}\n    - name: initial-cluster-state\n      value: existing\n"
        ),
    };
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: {ip}\n  bindPort: 6443\nnodeRegistration:\n  name: {name}\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v{K8S_VERSION}\netcd:\n  local:\n    dataDir: /var/lib/etcd\n    imageTag: {tag}-0\n{extra}",
        ip = n.ip,
        name = n.name,
        tag = v.tag(),
    )
}

/// kubeadm's etcd phases on master `n`, in its namespaces: the etcd PKI (the CA copied from
/// the first master beforehand, as kubeadm's docs have a person do), then the static-pod
/// manifest.
pub fn kubeadm(n: &Node, netns: &str, tools: &Tools, config: &str) -> Result<(), LabError> {
    let cfg = private(n).join("kubeadm.yaml");
    std::fs::write(&cfg, config).map_err(|e| LabError::io(&cfg, e))?;
    let kubeadm = tools.bin("kubeadm");
    for phase in [
        &["certs", "etcd-ca"][..],
        &["certs", "etcd-server"],
        &["certs", "etcd-peer"],
        &["certs", "etcd-healthcheck-client"],
        &["certs", "apiserver-etcd-client"],
        &["etcd", "local"],
    ] {
        run(on_master(n, netns, true, &kubeadm).args(["init", "phase"]).args(phase).arg("--config").arg(&cfg))?;
    }
    Ok(())
}

/// Stop master `n` in order: the kubelet (so it restarts nothing), every pod (containerd
/// stops their containers and their shims exit), containerd, then the runner. A process
/// still in the master's mount namespace after that (a stuck shim) is ours, made in a
/// namespace we made, and is killed by PID. The cgroup roots are removed once empty.
pub fn stop(n: &Node, netns: &str, tools: &Tools, runner: Option<&mut std::process::Child>) {
    let ns = pid_file(n, "containerd.pid").and_then(|pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok());
    if let Some(pid) = pid_file(n, "kubelet.pid") {
        crate::lab::terminate_pid(pid, Duration::from_secs(15));
    }
    let _ = crictl(n, tools, &["rmp", "--force", "--all"]);
    if let Some(pid) = pid_file(n, "containerd.pid") {
        crate::lab::terminate_pid(pid, Duration::from_secs(15));
    }
    if let Some(ns) = ns {
        for pid in pids_in_mount_ns(&ns) {
            crate::lab::terminate_pid(pid, Duration::from_secs(5));
        }
    }
    if let Some(r) = runner {
        crate::lab::terminate_pid(r.id(), Duration::from_secs(5));
        let _ = r.wait();
    }
    for d in cgroup_dirs(netns, true) {
        remove_cgroup_tree(&d);
    }
}

fn pids_in_mount_ns(ns: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return vec![] };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().as_deref() == Some(ns))
        .collect()
}

/// rmdir a cgroup and its children, deepest first (a cgroup directory is removed with
/// rmdir, never by deleting its files).
fn remove_cgroup_tree(d: &Path) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            name: "m2".into(),
            ip: master_ip([150, 3], 2),
            host_root: PathBuf::from("/tmp/lab/m2"),
            runner_pid: None,
            container: None,
            netns: None,
        }
    }

    #[test]
    fn addresses_are_on_the_labs_own_slice_of_the_benchmarking_range() {
        assert_eq!(master_ip([150, 3], 2).to_string(), "198.18.150.50");
        assert_eq!(bridge_ip([150, 3]), "198.18.150.62/28");
        // Interface names must fit IFNAMSIZ (15 bytes).
        assert!(veth_name([199, 15], "m13").len() <= 15);
        assert!(bridge_name([199, 15]).len() <= 15);
    }

    #[test]
    fn a_joiners_kubeadm_config_carries_what_kubeadm_join_writes() {
        let c = kubeadm_config(&node(), EtcdVersion::V3_6, Some("m1=https://198.18.150.49:2380,m2=https://198.18.150.50:2380"));
        assert!(c.contains("advertiseAddress: 198.18.150.50"));
        assert!(c.contains("imageTag: 3.6.16-0"));
        assert!(c.contains("value: existing"));
        let first = kubeadm_config(&node(), EtcdVersion::V3_6, None);
        assert!(first.contains("extraArgs: []") && !first.contains("initial-cluster"));
    }

    #[test]
    fn the_master_script_binds_kubeadms_paths_and_the_kubelets_tunables() {
        let tools = Tools { dir: PathBuf::from("/k8s"), pause_tag: "3.10.2".into() };
        let s = master_script(&node(), &tools, &[PathBuf::from("/img/etcd.tar")]);
        for d in BOUND {
            assert!(s.contains(&format!("mount --bind '/tmp/lab/m2'/{d} /{d}")), "{d}:\n{s}");
        }
        for t in TUNABLES {
            assert!(s.contains(&format!("/proc/sys/{t}\n")), "{t}:\n{s}");
        }
        // The kubelet starts after the images are in, so its first sync finds them.
        assert!(s.find("images import").unwrap() < s.find("'/k8s/kubelet'").unwrap());
    }
}
