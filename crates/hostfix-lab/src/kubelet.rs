//! A stand-in for the kubelet's static-pod file source, since no kubelet runs here.
//!
//! It behaves the way etcd-hostfix relies on the real one behaving:
//! - it watches `etc/kubernetes/manifests/` (the directory: renames kill file watches),
//!   debounced, with a periodic rescan as the kubelet does, and runs one pod per `*.yaml`
//!   there that is not a dotfile, which the kubelet ignores (etcd's, and the stand-in
//!   kube-apiserver's when the lab has one);
//! - a manifest that appears starts the pod; a changed manifest restarts it as a new pod
//!   (new UID, new log dir); a manifest moved away stops it;
//! - an exited container is restarted after a CrashLoopBackOff delay that doubles;
//! - `hostPath` volumes are honoured: the container runs chrooted in a private mount
//!   namespace (`unshare --mount`) where only the pod's volumes are bind-mounted, so
//!   container paths really differ from host paths;
//! - stdout and stderr go to CRI-format files
//!   `var/log/pods/<ns>_<pod>-<node>_<uid>/<container>/<attempt>.log`; a manifest put back
//!   unchanged (same UID) goes on numbering after the files it left, as the kubelet does;
//! - what the kubelet's garbage collection removes, it removes from `var/log/pods`: another
//!   UID's log dir once a pod of that name starts under a new UID, and every attempt's log
//!   but the previous and the current. The kubelet does that within a minute (its GC
//!   period); the stand-in does it at once, the harsher of the two for the product. It
//!   keeps what it removes under `lab-kubelet-gc/` in the host root, outside the product's
//!   view, for a failed test's explanation;
//! - the log dir of a pod whose manifest went away (parked) goes too, at the kubelet's
//!   next GC pass, within [`KUBELET_GC_PERIOD`] of the pod's end. Put back unchanged after
//!   that, the pod starts over at `0.log` in a new dir of the same UID; before it, it
//!   numbers on. The real kubelet does either after a short park (where its GC tick
//!   falls); the stand-in keeps the dir for the whole period, so a short park always
//!   numbers on and one longer than the period always starts over: each of the real
//!   kubelet's two outcomes, at the park lengths where the real one is sure to give it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostfix_core::manifest::Pod;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::LabError;

/// The kubelet's container and pod-log garbage collection runs once a minute
/// (`ContainerGCPeriod` in kubelet.go, 1.36.3). A pod whose manifest went away loses its
/// containers and its log dir at the first pass after it has terminated; the restart count
/// it had goes with them, since the kubelet counts on from the containers it still has, else
/// from the `N.log` files in the dir (`calcRestartCountByLogDir`).
pub const KUBELET_GC_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub host_root: PathBuf,
    pub node: String,
    /// Image reference to a directory holding that image's binaries, mounted at
    /// `/usr/local/bin` in the container.
    pub images: BTreeMap<String, PathBuf>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub rescan: Duration,
    /// How long a stopped container gets between SIGTERM and SIGKILL.
    pub grace: Duration,
}

struct Running {
    hash: String,
    uid: String,
    child: Option<Child>,
    restarts: u32,
    /// The first run's log number: the kubelet's attempt count goes on from the container it
    /// finds of the same pod UID, so an unparked, unchanged manifest writes `1.log` beside
    /// `0.log`, not over it.
    first_log: u32,
    started: Instant,
    next_start: Option<Instant>,
    pod: Pod,
}

/// One past the highest `N.log` in a container's log dir (0 if none): the attempt the real
/// kubelet gives a pod it starts again under the same UID, since it counts on from the
/// container it still has (kubelet 1.36.3 seen in `calm_on_the_real_kubelet`: `1.log` after
/// an unpark). Once its GC has removed the dir (a pod parked for longer than
/// [`KUBELET_GC_PERIOD`]) there is nothing to count on from, and the pod starts at `0.log`.
fn next_log_number(dir: &Path) -> u32 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".log")?.parse::<u32>().ok())
                .map(|n| n + 1)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

pub fn pod_uid(manifest: &[u8]) -> String {
    let h = hex::encode(Sha256::digest(manifest));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The container a lab pod runs: etcd's, else the first (the stand-in kube-apiserver).
fn main_container(pod: &Pod) -> Result<&hostfix_core::manifest::Container, LabError> {
    pod.etcd_container().or_else(|e| pod.spec.containers.first().ok_or_else(|| LabError::Runner(e.to_string())))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl KubeletConfig {
    fn manifests_dir(&self) -> PathBuf {
        self.host_root.join("etc/kubernetes/manifests")
    }

    /// Where the runner says whether it has a pod (`pod`) or none (`none`), after each sync:
    /// what a person reads from `crictl pods` before touching the data dir.
    pub fn state_file(host_root: &std::path::Path) -> PathBuf {
        host_root.join("var/lib/kubelet/lab-runner-state")
    }

    fn host(&self, p: &str) -> PathBuf {
        self.host_root.join(p.trim_start_matches('/'))
    }

    fn pod_log_dir(&self, pod: &Pod, uid: &str) -> PathBuf {
        let ns = if pod.metadata.namespace.is_empty() { "default" } else { &pod.metadata.namespace };
        self.host_root.join("var/log/pods").join(format!("{ns}_{}-{}_{uid}", pod.metadata.name, self.node))
    }

    fn log_dir(&self, pod: &Pod, uid: &str, container: &str) -> PathBuf {
        self.pod_log_dir(pod, uid).join(container)
    }

    /// Where the stand-in keeps what the kubelet's GC would delete (see the module doc).
    pub fn gc_dir(host_root: &Path) -> PathBuf {
        host_root.join("lab-kubelet-gc")
    }

    /// Move `path` (under `var/log/pods`) to the same place under [`Self::gc_dir`].
    fn collect(&self, path: &Path) {
        let Ok(rel) = path.strip_prefix(self.host_root.join("var/log/pods")) else { return };
        let to = Self::gc_dir(&self.host_root).join(rel);
        // An earlier life of the same dir or file may be there already: keep both.
        let to = if to.exists() {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
            let mut name = to.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".{nanos}"));
            to.with_file_name(name)
        } else {
            to
        };
        let moved = to.parent().map(std::fs::create_dir_all).transpose().and_then(|_| std::fs::rename(path, &to));
        if let Err(e) = moved {
            tracing::warn!(path = %path.display(), error = %e, "cannot collect a log the kubelet would delete");
        }
    }

    /// What the kubelet's container GC leaves of a pod about to start attempt `attempt`
    /// under `uid`: the pod's log dirs of other UIDs go (the pod they belonged to is gone),
    /// and so do this UID's logs older than the previous attempt's.
    fn garbage_collect(&self, pod: &Pod, uid: &str, container: &str, attempt: u32) {
        let dir = self.log_dir(pod, uid, container);
        let pods = self.host_root.join("var/log/pods");
        let ns = if pod.metadata.namespace.is_empty() { "default" } else { &pod.metadata.namespace };
        let prefix = format!("{ns}_{}-{}_", pod.metadata.name, self.node);
        for e in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && Some(e.path().as_path()) != dir.parent() {
                self.collect(&e.path());
            }
        }
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.split('.').next().and_then(|n| n.parse::<u32>().ok());
            if n.is_some_and(|n| n + 1 < attempt) {
                self.collect(&e.path());
            }
        }
    }

    /// The shell script that builds the container's view inside a fresh mount namespace and
    /// execs the container's command there. Mounts die with the namespace.
    fn container_script(&self, pod: &Pod, rootfs: &Path) -> Result<String, LabError> {
        let c = main_container(pod)?;
        let image_dir = self
            .images
            .get(&c.image)
            .ok_or_else(|| LabError::Runner(format!("image {} is not known to the lab kubelet", c.image)))?;
        let r = rootfs.display().to_string();
        let mut s = String::from("set -e\n");
        for d in ["usr", "dev", "proc", "tmp", "etc", "run"] {
            s.push_str(&format!("mkdir -p {r}/{d}\n"));
        }
        for l in ["bin", "lib", "lib64", "sbin"] {
            s.push_str(&format!("[ -L {r}/{l} ] || ln -s usr/{l} {r}/{l}\n"));
        }
        s.push_str(&format!("mount --rbind /usr {r}/usr\nmount --rbind /dev {r}/dev\nmount --rbind /proc {r}/proc\n"));
        s.push_str(&format!("mount -t tmpfs tmpfs {r}/tmp\n"));
        s.push_str(&format!("printf '127.0.0.1 localhost\\n' > {r}/etc/hosts\n"));
        s.push_str(&format!("mount --bind {} {r}/usr/local/bin\n", shell_quote(&image_dir.display().to_string())));
        for m in &c.volume_mounts {
            let Some(v) = pod.spec.volumes.iter().find(|v| v.name == m.name) else { continue };
            let Some(hp) = &v.host_path else { continue };
            let host = self.host(&hp.path);
            if hp.kind.as_deref() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(&host).map_err(|e| LabError::io(&host, e))?;
            }
            let target = format!("{r}{}", m.mount_path);
            s.push_str(&format!("mkdir -p {}\n", shell_quote(&target)));
            let ro = if m.read_only { " -o ro" } else { "" };
            s.push_str(&format!("mount --bind{ro} {} {}\n", shell_quote(&host.display().to_string()), shell_quote(&target)));
        }
        let mut env = vec!["PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
        env.extend(c.env_pairs().into_iter().map(|(k, v)| format!("{k}={v}")));
        let argv: Vec<String> = c.argv().iter().map(|a| shell_quote(a)).collect();
        let envs: Vec<String> = env.iter().map(|e| shell_quote(e)).collect();
        s.push_str(&format!("cd /\nexec chroot {r} /usr/bin/env -i {} {}\n", envs.join(" "), argv.join(" ")));
        Ok(s)
    }

    async fn start(&self, run: &mut Running) -> Result<(), LabError> {
        let c = main_container(&run.pod)?.clone();
        let pod_dir = self.host_root.join("var/lib/kubelet/pods").join(&run.uid);
        let rootfs = pod_dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| LabError::io(&rootfs, e))?;
        let script = self.container_script(&run.pod, &rootfs)?;
        let log_dir = self.log_dir(&run.pod, &run.uid, &c.name);
        std::fs::create_dir_all(&log_dir).map_err(|e| LabError::io(&log_dir, e))?;
        let attempt = run.first_log + run.restarts;
        self.garbage_collect(&run.pod, &run.uid, &c.name, attempt);
        let log_path = log_dir.join(format!("{attempt}.log"));
        // Each file holds exactly one run. (The kubelet's numbering: see `first_log`.)
        let log = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .await
            .map_err(|e| LabError::io(&log_path, e))?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // The container must not outlive its kubelet, even on kill -9 of the runner.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| LabError::Runner(format!("spawn unshare: {e}")))?;
        let log = Arc::new(Mutex::new(log));
        for (stream, name) in [
            (child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), "stdout"),
            (child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), "stderr"),
        ] {
            let Some(stream) = stream else { continue };
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let ts = time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default();
                    let _ = log.lock().await.write_all(format!("{ts} {name} F {line}\n").as_bytes()).await;
                }
            });
        }
        tracing::info!(node = %self.node, uid = %run.uid, restart = run.restarts, pid = child.id(), "started pod");
        run.child = Some(child);
        run.started = Instant::now();
        run.next_start = None;
        Ok(())
    }

    async fn stop(&self, run: &mut Running) {
        if let Some(mut child) = run.child.take() {
            if let Some(pid) = child.id() {
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
            if tokio::time::timeout(self.grace, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            tracing::info!(node = %self.node, uid = %run.uid, "stopped pod");
        }
    }

    fn backoff(&self, restarts: u32) -> Duration {
        let d = self.backoff_base.saturating_mul(1u32 << restarts.min(16));
        d.min(self.backoff_max)
    }

    /// One reconcile pass for the manifest `file`: compare it on disk with its running pod.
    async fn sync(&self, file: &str, current: &mut Option<Running>) {
        let path = self.manifests_dir().join(file);
        let desired = match std::fs::read(&path) {
            Ok(bytes) => match std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(|t| {
                Pod::parse(t).map_err(|e| e.to_string())
            }) {
                Ok(pod) => Some((hex::encode(Sha256::digest(&bytes)), pod_uid(&bytes), pod)),
                Err(e) => {
                    // The kubelet logs and skips a manifest it cannot decode.
                    tracing::warn!(path = %path.display(), error = %e, "invalid static pod manifest; ignoring");
                    None
                }
            },
            Err(_) => None,
        };
        match (desired, current.as_mut()) {
            (None, Some(run)) => {
                self.stop(run).await;
                *current = None;
            }
            (Some((hash, uid, pod)), cur) => {
                if cur.as_ref().map(|r| r.hash != hash).unwrap_or(true) {
                    if let Some(run) = current.as_mut() {
                        self.stop(run).await;
                    }
                    let first_log = next_log_number(&self.log_dir(&pod, &uid, &main_container(&pod).map(|c| c.name.clone()).unwrap_or_default()));
                    let mut run = Running {
                        hash,
                        uid,
                        child: None,
                        restarts: 0,
                        first_log,
                        started: Instant::now(),
                        next_start: None,
                        pod,
                    };
                    if let Err(e) = self.start(&mut run).await {
                        tracing::error!(error = %e, "cannot start pod");
                        run.next_start = Some(Instant::now() + self.backoff(0));
                    }
                    *current = Some(run);
                    return;
                }
                let run = current.as_mut().expect("checked above");
                if let Some(child) = run.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        // Back-off resets after a long healthy run, as the kubelet's does.
                        if run.started.elapsed() > self.backoff_max * 10 {
                            run.restarts = run.restarts.min(1);
                        }
                        let delay = self.backoff(run.restarts);
                        tracing::info!(node = %self.node, ?status, ?delay, "container exited; CrashLoopBackOff");
                        run.child = None;
                        run.next_start = Some(Instant::now() + delay);
                    }
                }
                if run.child.is_none() && run.next_start.map(|t| Instant::now() >= t).unwrap_or(false) {
                    run.restarts += 1;
                    if let Err(e) = self.start(run).await {
                        tracing::error!(error = %e, "cannot restart pod");
                        run.next_start = Some(Instant::now() + self.backoff(run.restarts));
                    }
                }
            }
            (None, None) => {}
        }
    }

    /// Run until SIGTERM or SIGINT, then stop the pod and return.
    pub async fn run(self) -> Result<(), LabError> {
        let dir = self.manifests_dir();
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Opens and reads are not changes: notify's inotify backend reports every open, and
        // counting this runner's own read of the manifest (or a daemon's) made it wake itself.
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.map(|e| !matches!(e.kind, notify::EventKind::Access(_))).unwrap_or(true) {
                let _ = tx.send(());
            }
        })
        .map_err(|e| LabError::Runner(format!("watch: {e}")))?;
        notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| LabError::Runner(format!("watch {}: {e}", dir.display())))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| LabError::Runner(e.to_string()))?;
        let mut tick = tokio::time::interval(self.rescan);
        // One pod per manifest file, as the kubelet's file source has it.
        let mut pods: BTreeMap<String, Option<Running>> = BTreeMap::new();
        // The log dirs of pods whose manifest went away, and since when: collected once
        // gone for KUBELET_GC_PERIOD (see the module doc), forgotten if the pod comes back.
        let mut gone: BTreeMap<PathBuf, Instant> = BTreeMap::new();
        let mut said = "";
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = rx.recv() => {
                    // Debounce: a rename or a save is several events; sync once, after them.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while rx.try_recv().is_ok() {}
                },
                _ = tick.tick() => {},
            }
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str().map(String::from)).filter(|n| n.ends_with(".yaml") && !n.starts_with('.')).collect())
                .unwrap_or_default();
            files.push("etcd.yaml".into());
            files.extend(pods.keys().cloned());
            files.sort();
            files.dedup();
            for f in files {
                let cur = pods.entry(f.clone()).or_default();
                let before = cur.as_ref().map(|r| self.pod_log_dir(&r.pod, &r.uid));
                self.sync(&f, cur).await;
                if let (Some(dir), None) = (before, cur.as_ref()) {
                    gone.insert(dir, Instant::now());
                }
            }
            pods.retain(|_, p| p.is_some());
            let live: Vec<PathBuf> = pods.values().flatten().map(|r| self.pod_log_dir(&r.pod, &r.uid)).collect();
            gone.retain(|dir, since| {
                if live.contains(dir) {
                    return false;
                }
                if since.elapsed() < KUBELET_GC_PERIOD {
                    return true;
                }
                if dir.exists() {
                    tracing::info!(node = %self.node, dir = %dir.display(), "the parked pod's log dir is collected, as the kubelet's GC would");
                    self.collect(dir);
                }
                false
            });
            // What the lab waits on is etcd's pod.
            let state = if pods.contains_key("etcd.yaml") { "pod" } else { "none" };
            if said != state {
                let f = Self::state_file(&self.host_root);
                let _ = std::fs::create_dir_all(f.parent().unwrap());
                let _ = std::fs::write(&f, state);
                said = state;
            }
        }
        for run in pods.values_mut().flatten() {
            self.stop(run).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_pod_started_again_numbers_its_log_on() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(next_log_number(&d.path().join("absent")), 0);
        assert_eq!(next_log_number(d.path()), 0);
        for f in ["0.log", "1.log", "1.log.20260101-000000", "1.log.20251231-235959.gz"] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        assert_eq!(next_log_number(d.path()), 2);
    }
}
