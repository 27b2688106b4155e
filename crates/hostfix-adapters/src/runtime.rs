//! Container runtimes that run the local etcd member: kubeadm static pods (a manifest the
//! kubelet watches) and Rancher RKE's Docker container. Both are reduced to the same
//! [`LocalConfig`]: etcd's flags plus the binds that map container paths to host paths.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bollard::Docker;
use hostfix_core::manifest::{to_host_path, Bind, ManifestError, Pod};
use hostfix_core::status::ManifestState;
use hostfix_core::EtcdFlags;

use crate::hostroot::HostRoot;

/// kubelet's own limit for a static pod file (`maxConfigLength`).
pub const MAX_MANIFEST_BYTES: u64 = 10 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is {} MiB; kubelet reads static pod manifests of at most 10 MiB, so this is not the manifest it runs", .bytes >> 20)]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("{path}: {source}")]
    Manifest { path: PathBuf, source: ManifestError },
    #[error("no etcd manifest at {path} (nor parked at {parked})")]
    NoManifest { path: PathBuf, parked: PathBuf },
    #[error("docker container {name} does not exist (engine {host})")]
    NoContainer { name: String, host: String },
    #[error("no Docker engine answers at {host}: {reason}")]
    NoEngine { host: String, reason: String },
    #[error("docker: {op} {name}: {reason}")]
    Docker { op: &'static str, name: String, reason: String },
    #[error("container {name} does not run etcd (entrypoint and command: {argv:?})")]
    NotEtcd { name: String, argv: Vec<String> },
    #[error("container {name} was created from {tag}, which now names image {now}, not {runs} that it runs; refusing to recreate it from a different image (re-tag {runs} as {tag} first)")]
    ImageMoved { name: String, tag: String, runs: String, now: String },
    #[error("recreating container {name} failed: {reason}; {}", match rollback { None => "rolled back: the old container has its name back, stopped".to_string(), Some(e) => format!("rollback failed too ({e}); the old container may be under its aside name") })]
    RecreateFailed { name: String, reason: String, rollback: Option<String> },
    #[error("no local etcd found: {static_pod}; {docker}")]
    NothingFound { static_pod: String, docker: String },
    #[error(transparent)]
    Move(#[from] crate::relocate::MoveError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    StaticPod,
    Docker,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::StaticPod => "static-pod",
            RuntimeKind::Docker => "docker",
        }
    }
}

/// The local member's configuration, whichever runtime holds it.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub runtime: RuntimeKind,
    pub flags: EtcdFlags,
    pub argv: Vec<String>,
    /// Static pod: host paths as written in the manifest (resolve them under the host root).
    /// Docker: real host paths from the bind mounts, which stay as they are.
    pub binds: Vec<Bind>,
    pub image: String,
    pub manifest: Option<PathBuf>,
    pub manifest_state: Option<ManifestState>,
    pub container: Option<String>,
}

impl LocalConfig {
    /// The host path behind a path etcd sees. A static pod's host paths live under the host
    /// root; Docker's bind sources are the engine's real paths.
    pub fn host_path(&self, root: &HostRoot, container_path: &str) -> PathBuf {
        match (self.runtime, to_host_path(&self.binds, container_path)) {
            (RuntimeKind::StaticPod, Some(h)) => root.resolve(h),
            (RuntimeKind::StaticPod, None) => root.resolve(container_path),
            (RuntimeKind::Docker, Some(h)) => PathBuf::from(h),
            (RuntimeKind::Docker, None) => PathBuf::from(container_path),
        }
    }
}

/// kubeadm's static pod: the manifest in `manifests/`, or parked by us in the state dir.
#[derive(Debug, Clone)]
pub struct StaticPod {
    pub root: HostRoot,
    pub manifest: PathBuf,
    pub state_dir: PathBuf,
}

/// A static-pod manifest that can be parked: moved out of `manifests/` into the state dir's
/// `parked/`, so the kubelet stops the pod, and moved back. Both moves are
/// `relocate::move_file`: a rename, or where the two dirs are on different mounts (the
/// unit's sandbox, a separate disk) a durable copy whose source goes last, so a crash
/// leaves exactly one authoritative manifest: the one in `manifests/` while it exists.
/// etcd's and kube-apiserver's manifests share this.
#[derive(Debug, Clone)]
pub struct Parkable {
    pub manifest: PathBuf,
    pub parked: PathBuf,
}

impl Parkable {
    /// `manifest`, parked under `<state_dir>/parked/` by its file name.
    pub fn new(manifest: PathBuf, state_dir: &Path) -> Parkable {
        let name = manifest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        Parkable { parked: state_dir.join("parked").join(name), manifest }
    }

    /// Where the manifest is now, if anywhere.
    pub fn locate(&self) -> Option<(&Path, ManifestState)> {
        if self.manifest.exists() {
            Some((&self.manifest, ManifestState::Present))
        } else if self.parked.exists() {
            Some((&self.parked, ManifestState::Parked))
        } else {
            None
        }
    }

    /// Park it. Idempotent; `Ok(false)` when the manifest is in neither place.
    pub fn park(&self) -> Result<bool, RuntimeError> {
        if self.manifest.exists() {
            crate::relocate::move_file(&self.manifest, &self.parked)?;
            return Ok(true);
        }
        Ok(self.parked.exists())
    }

    /// Move it back into `manifests/`. Idempotent; `Ok(false)` when it is in neither place.
    pub fn unpark(&self) -> Result<bool, RuntimeError> {
        if self.parked.exists() {
            crate::relocate::move_file(&self.parked, &self.manifest)?;
            return Ok(true);
        }
        Ok(self.manifest.exists())
    }
}

/// The local kube-apiserver static pod, for a restore to bounce: its manifest is parked
/// in `<state>/parked/kube-apiserver.yaml` and moved back, as etcd's is. A master without
/// one (an etcd-only host) is not an error: parking it is then a no-op.
pub struct ApiserverPod {
    pub parkable: Parkable,
}

impl ApiserverPod {
    /// Beside etcd's manifest.
    pub fn beside(etcd: &StaticPod) -> ApiserverPod {
        let dir = etcd.manifest.parent().map(Path::to_path_buf).unwrap_or_default();
        ApiserverPod { parkable: Parkable::new(dir.join("kube-apiserver.yaml"), &etcd.state_dir) }
    }

    /// The manifest, where it is now (in place or parked), if anywhere.
    pub fn locate(&self) -> Option<&Path> {
        self.parkable.locate().map(|(p, _)| p)
    }

    /// The `--etcd-servers=...` argument of its command, which tells its process apart.
    pub fn etcd_servers_arg(&self) -> Result<Option<String>, RuntimeError> {
        let Some(path) = self.locate() else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeError::Read { path: path.to_path_buf(), source })?;
        let pod = Pod::parse(&text).map_err(|source| RuntimeError::Manifest { path: path.to_path_buf(), source })?;
        Ok(pod.spec.containers.iter().flat_map(|c| c.command.iter().chain(c.args.iter())).find(|a| a.starts_with("--etcd-servers=")).cloned())
    }

    pub fn park(&self) -> Result<(), RuntimeError> {
        self.parkable.park().map(|_| ())
    }

    pub fn unpark(&self) -> Result<(), RuntimeError> {
        self.parkable.unpark().map(|_| ())
    }
}

impl StaticPod {
    /// etcd's manifest as a parkable value: `<state>/parked/etcd.yaml` when parked.
    pub fn parkable(&self) -> Parkable {
        Parkable { manifest: self.manifest.clone(), parked: self.parked_path() }
    }
    pub fn parked_path(&self) -> PathBuf {
        self.state_dir.join("parked").join("etcd.yaml")
    }
    pub fn locate(&self) -> (PathBuf, ManifestState) {
        match self.parkable().locate() {
            Some((p, state)) => (p.to_path_buf(), state),
            None => (self.manifest.clone(), ManifestState::Missing),
        }
    }

    pub fn load(&self) -> Result<LocalConfig, RuntimeError> {
        let (path, state) = self.locate();
        if state == ManifestState::Missing {
            return Err(RuntimeError::NoManifest { path, parked: self.parked_path() });
        }
        let len = std::fs::metadata(&path).map_err(|source| RuntimeError::Read { path: path.clone(), source })?.len();
        if len > MAX_MANIFEST_BYTES {
            return Err(RuntimeError::TooLarge { path, bytes: len });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| RuntimeError::Read { path: path.clone(), source })?;
        let merr = |source| RuntimeError::Manifest { path: path.clone(), source };
        let pod = Pod::parse(&text).map_err(merr)?;
        let c = pod.etcd_container().map_err(merr)?;
        Ok(LocalConfig {
            runtime: RuntimeKind::StaticPod,
            flags: c.flags(),
            argv: c.argv(),
            binds: pod.binds().map_err(merr)?,
            image: c.image.clone(),
            manifest: Some(path.clone()),
            manifest_state: Some(state),
            container: None,
        })
    }

    /// Stop the pod the kubeadm way: move the manifest out of `manifests/`, into the state
    /// dir, so the kubelet stops it. Idempotent; an error when the manifest is nowhere.
    pub fn park(&self) -> Result<(), RuntimeError> {
        match self.parkable().park()? {
            true => Ok(()),
            false => Err(RuntimeError::NoManifest { path: self.manifest.clone(), parked: self.parked_path() }),
        }
    }

    /// Move the parked manifest back into `manifests/`. Idempotent; an error when the
    /// manifest is nowhere.
    pub fn unpark(&self) -> Result<(), RuntimeError> {
        match self.parkable().unpark()? {
            true => Ok(()),
            false => Err(RuntimeError::NoManifest { path: self.manifest.clone(), parked: self.parked_path() }),
        }
    }

    /// The newest etcd CRI log under `var/log/pods/kube-system_etcd-*/etcd/`, and the one
    /// before it. Newest by file time across all pod dirs: a pod re-created from an identical
    /// manifest reuses an old UID's dir, so neither directory times nor restart numbers order
    /// runs.
    pub fn pod_logs(&self, max_bytes: u64) -> Option<PodLogs> {
        let dir = self.root.pod_logs();
        let mut files: Vec<(std::time::SystemTime, u32, PathBuf)> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("kube-system_etcd-"))
            .filter_map(|pod| std::fs::read_dir(pod.path().join("etcd")).ok())
            .flat_map(|rd| rd.filter_map(Result::ok))
            .filter_map(|e| {
                let n: u32 = e.file_name().to_string_lossy().strip_suffix(".log")?.parse().ok()?;
                Some((e.metadata().ok()?.modified().ok()?, n, e.path()))
            })
            .collect();
        files.sort();
        let (written, newest, file) = files.pop()?;
        let placed = std::fs::metadata(&self.manifest).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            std::time::UNIX_EPOCH + std::time::Duration::new(m.ctime().max(0) as u64, m.ctime_nsec().clamp(0, 999_999_999) as u32)
        });
        // No run of the manifest as it is now has written yet: nothing to read (see
        // `written_since_placed`).
        if !hostfix_core::logs::written_since_placed(written, placed) {
            return None;
        }
        let runs: Vec<_> = files.iter().filter(|(_, _, p)| p.parent() == file.parent()).map(|(t, n, _)| (*n, *t)).collect();
        let restart = hostfix_core::logs::restarts_since_placed(newest, &runs, placed);
        // The previous run's file too: a pod that just restarted has not said yet why it will
        // die again, and its predecessor has. Only the same pod's: a pod re-created from an
        // edited manifest is a new configuration, and what an older one died of says nothing
        // about it; and only since the manifest was put in place.
        let mut tail = files
            .pop()
            .filter(|(t, _, p)| p.parent() == file.parent() && hostfix_core::logs::written_since_placed(*t, placed))
            .map(|(_, _, p)| container_tail(&p, max_bytes / 2))
            .unwrap_or_default();
        tail.push_str(&container_tail(&file, max_bytes));
        let last_line = hostfix_core::logs::join_cri_partials(&tail)
            .iter()
            .rev()
            .map(|l| hostfix_core::logs::strip_cri(l).to_string())
            .find(|l| !l.trim().is_empty());
        Some(PodLogs { file, restarts: restart, last_line, tail })
    }
}

/// The last `max` bytes one container wrote, as the kubelet keeps them. At
/// `containerLogMaxSize` (10 MiB by default) the kubelet renames `N.log` to
/// `N.log.<YYYYMMDD-hhmmss>` and the runtime reopens an empty `N.log`; at the next rotation
/// it first gzips the rotated files it finds (kubelet `pkg/kubelet/logs`, `rotateLog`). So
/// just after a rotation `N.log` holds little, and the member's words before it are in the
/// newest rotated file. That one is never compressed, and it holds at least the rotation
/// size, so a tail needs nothing older: the `.gz` files are never read.
fn container_tail(file: &Path, max: u64) -> String {
    let current = read_tail(file, max).unwrap_or_default();
    let short = max.saturating_sub(current.len() as u64);
    match newest_rotated(file).filter(|_| short > 0).and_then(|p| read_tail(&p, short).ok()) {
        Some(mut before) => {
            before.push_str(&current);
            before
        }
        None => current,
    }
}

/// `N.log.<YYYYMMDD-hhmmss>` beside `N.log`, the newest by its timestamp; not the `.gz`
/// ones, nor the kubelet's `.tmp` while it compresses.
fn newest_rotated(file: &Path) -> Option<PathBuf> {
    let name = format!("{}.", file.file_name()?.to_string_lossy());
    let is_stamp = |t: &str| t.len() == 15 && t.char_indices().all(|(i, c)| if i == 8 { c == '-' } else { c.is_ascii_digit() });
    std::fs::read_dir(file.parent()?)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.strip_prefix(&name).is_some_and(is_stamp))
        .max()
        .map(|n| file.with_file_name(n))
}

#[derive(Debug, Clone)]
pub struct PodLogs {
    pub file: PathBuf,
    /// Restarts since the manifest was put in place (`logs::restarts_since_placed`): the
    /// kubelet names log files by attempt, and counts on across a park and unpark.
    pub restarts: u32,
    pub last_line: Option<String>,
    /// The last bytes of the newest file, CRI-wrapped.
    pub tail: String,
}

/// Read at most `max` bytes from the end of a file: logs can be huge and we only want the
/// member's last words. A partial first line is dropped.
pub fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Ok(if start > 0 { text.split_once('\n').map(|(_, r)| r.to_string()).unwrap_or_default() } else { text })
}

/// What a recreate renames the old container to: `<name>-hostfix-aside-<run>`.
pub const ASIDE_INFIX: &str = "-hostfix-aside-";

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { vec![c] } else { vec!['\\', c] }).collect()
}

/// Rancher RKE's etcd container, through the Docker API.
#[derive(Clone)]
pub struct DockerRuntime {
    pub docker: Docker,
    pub host: String,
}

#[derive(Debug, Clone)]
pub struct ContainerState {
    pub status: String,
    pub restart_count: i64,
    pub running: bool,
    pub exit_code: Option<i64>,
}

impl DockerRuntime {
    /// Connect and ping. `host` is a `unix://` or `tcp://` URL; `None` means `DOCKER_HOST`,
    /// else the local socket.
    pub async fn connect(host: Option<&str>) -> Result<Self, RuntimeError> {
        let env_host = std::env::var("DOCKER_HOST").ok();
        let host_str = host.map(str::to_string).or(env_host).unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let no_engine = |reason: String| RuntimeError::NoEngine { host: host_str.clone(), reason };
        let docker = if let Some(p) = host_str.strip_prefix("unix://") {
            Docker::connect_with_unix(p, 30, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(&host_str.replacen("tcp://", "http://", 1), 30, bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| no_engine(e.to_string()))?;
        let docker = tokio::time::timeout(std::time::Duration::from_secs(5), docker.negotiate_version())
            .await
            .map_err(|_| no_engine("timed out".into()))?
            .map_err(|e| no_engine(crate::etcd::error_chain(&e)))?;
        Ok(DockerRuntime { docker, host: host_str })
    }

    pub async fn inspect(&self, name: &str) -> Result<bollard::models::ContainerInspectResponse, RuntimeError> {
        self.docker
            .inspect_container(name, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .map_err(|e| self.err("inspect", name, e))
    }

    pub async fn load(&self, name: &str) -> Result<LocalConfig, RuntimeError> {
        let info = self.inspect(name).await?;
        let cfg = info.config.clone().unwrap_or_default();
        let argv: Vec<String> =
            cfg.entrypoint.clone().unwrap_or_default().into_iter().chain(cfg.cmd.clone().unwrap_or_default()).collect();
        if !hostfix_core::container::runs_etcd(&argv) {
            return Err(RuntimeError::NotEtcd { name: name.into(), argv });
        }
        let env: Vec<(String, String)> = cfg
            .env
            .clone()
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let binds = info
            .mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(Bind { host: m.source?, container: m.destination?, read_only: !m.rw.unwrap_or(true) })
            })
            .collect();
        Ok(LocalConfig {
            runtime: RuntimeKind::Docker,
            flags: EtcdFlags::parse(&argv, &env),
            argv,
            binds,
            image: cfg.image.unwrap_or_default(),
            manifest: None,
            manifest_state: None,
            container: Some(name.to_string()),
        })
    }

    /// The container's last `lines` log lines (stdout and stderr interleaved), through the
    /// Docker API. Bounded: Docker's `tail` reads from the end.
    pub async fn logs_tail(&self, name: &str, lines: usize) -> Result<String, RuntimeError> {
        use futures_util::StreamExt;
        let opts = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(name, Some(opts));
        let mut out = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => out.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                Err(e) => return Err(self.err("logs", name, e)),
            }
        }
        Ok(out)
    }

    fn err(&self, op: &'static str, name: &str, e: bollard::errors::Error) -> RuntimeError {
        match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
                RuntimeError::NoContainer { name: name.into(), host: self.host.clone() }
            }
            e => RuntimeError::Docker { op, name: name.into(), reason: crate::etcd::error_chain(&e) },
        }
    }

    /// `docker inspect` of a container and of its image, as the Engine API's JSON.
    pub async fn inspect_json(&self, name: &str) -> Result<(serde_json::Value, serde_json::Value), RuntimeError> {
        let c = self.inspect(name).await?;
        let image_id = c.image.clone().unwrap_or_default();
        let image = self.docker.inspect_image(&image_id).await.map_err(|e| self.err("image inspect", &image_id, e))?;
        Ok((serde_json::to_value(&c).unwrap_or_default(), serde_json::to_value(&image).unwrap_or_default()))
    }

    /// The container, unless it does not exist.
    pub async fn inspect_opt(&self, name: &str) -> Result<Option<serde_json::Value>, RuntimeError> {
        match self.inspect(name).await {
            Ok(c) => Ok(Some(serde_json::to_value(&c).unwrap_or_default())),
            Err(RuntimeError::NoContainer { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The image name the container was created from must still name the image it runs;
    /// recreating from a tag that moved would silently upgrade or downgrade etcd.
    pub async fn check_image(&self, c: &serde_json::Value) -> Result<(), RuntimeError> {
        let name = hostfix_core::container::container_name(c);
        let tag = c.pointer("/Config/Image").and_then(|v| v.as_str()).unwrap_or_default();
        let runs = c.get("Image").and_then(|v| v.as_str()).unwrap_or_default();
        let now = self.docker.inspect_image(tag).await.map_err(|e| self.err("image inspect", tag, e))?;
        if now.id.as_deref() != Some(runs) {
            return Err(RuntimeError::ImageMoved {
                name,
                tag: tag.into(),
                runs: runs.into(),
                now: now.id.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Stop a container (its own stop timeout, else 10 s) and wait until it no longer runs.
    /// A manual stop also holds off the `always` restart policy, as `docker stop` does.
    pub async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        let c = self.inspect(name).await?;
        if !c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
            && !c.state.as_ref().and_then(|s| s.restarting).unwrap_or(false)
        {
            return Ok(());
        }
        let t = c.config.as_ref().and_then(|c| c.stop_timeout).unwrap_or(10) as i32;
        let opts = bollard::query_parameters::StopContainerOptions { t: Some(t), signal: None };
        self.docker.stop_container(name, Some(opts)).await.map_err(|e| self.err("stop", name, e))?;
        for _ in 0..(t as u64 * 10 + 100) {
            if !self.state(name).await?.running {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(RuntimeError::Docker { op: "stop", name: name.into(), reason: "still running after the stop timeout".into() })
    }

    pub async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.docker
            .start_container(name, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| self.err("start", name, e))
    }

    pub async fn rename(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        let opts = bollard::query_parameters::RenameContainerOptions { name: to.into() };
        self.docker.rename_container(from, opts).await.map_err(|e| self.err("rename", from, e))
    }

    /// Remove a stopped container, keeping its volumes. Gone already is fine.
    pub async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let opts = bollard::query_parameters::RemoveContainerOptions { force: false, v: false, link: false };
        match self.docker.remove_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(self.err("remove", name, e)),
        }
    }

    /// Containers that a recreate moved aside for `name`, newest first.
    pub async fn asides(&self, name: &str) -> Result<Vec<String>, RuntimeError> {
        let filters: std::collections::HashMap<String, Vec<String>> =
            [("name".to_string(), vec![format!("^/{}{ASIDE_INFIX}", regex_escape(name))])].into();
        let opts = bollard::query_parameters::ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let mut list = self.docker.list_containers(Some(opts)).await.map_err(|e| self.err("list", name, e))?;
        list.sort_by_key(|c| std::cmp::Reverse(c.created.unwrap_or(0)));
        Ok(list
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string())))
            .collect())
    }

    /// Recreate `name` with etcd flag edits, the same in everything else.
    ///
    /// The old container is stopped and renamed to `aside`, never removed here: the caller
    /// removes it (see [`DockerRuntime::remove`]) once the new member is healthy. If the new
    /// container cannot be created or started, the old one gets its name back. Each phase
    /// checks what is already true, so a run killed anywhere in here converges when rerun
    /// with the same `aside`. `phase` is called after each change (tests kill there).
    pub async fn recreate(
        &self,
        name: &str,
        aside: &str,
        edits: &[(String, Option<String>)],
        phase: &(dyn Fn(&str) + Sync),
    ) -> Result<(), RuntimeError> {
        use hostfix_core::container::{argv, check_etcd, create_body};
        let old = match (self.inspect_opt(name).await?, self.inspect_opt(aside).await?) {
            (None, None) => return Err(RuntimeError::NoContainer { name: name.into(), host: self.host.clone() }),
            (Some(cur), None) => {
                check_etcd(&cur).map_err(|_| RuntimeError::NotEtcd { name: name.into(), argv: argv(&cur) })?;
                self.check_image(&cur).await?;
                self.stop(name).await?;
                self.rename(name, aside).await?;
                phase("renamed");
                cur
            }
            (Some(cur), Some(old)) => {
                let want = create_body(&old, edits);
                let want_argv: Vec<String> = ["Entrypoint", "Cmd"]
                    .iter()
                    .flat_map(|k| want[*k].as_array().cloned().unwrap_or_default())
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                if argv(&cur) != want_argv || cur["Image"] != old["Image"] {
                    return Err(RuntimeError::Docker {
                        op: "recreate",
                        name: name.into(),
                        reason: format!(
                            "both {name} and {aside} exist and {name} is not the container this repair creates; \
                             compare them and remove the wrong one by hand"
                        ),
                    });
                }
                if !cur.pointer("/State/Running").and_then(|v| v.as_bool()).unwrap_or(false) {
                    self.start(name).await?;
                }
                return Ok(());
            }
            (None, Some(old)) => old,
        };
        let body: bollard::models::ContainerCreateBody = serde_json::from_value(create_body(&old, edits))
            .map_err(|e| RuntimeError::Docker { op: "create", name: name.into(), reason: e.to_string() })?;
        let attempt = async {
            let opts = bollard::query_parameters::CreateContainerOptions { name: Some(name.into()), ..Default::default() };
            self.docker.create_container(Some(opts), body).await.map_err(|e| self.err("create", name, e))?;
            phase("created");
            self.start(name).await
        };
        if let Err(e) = attempt.await {
            // Give the old container its name back; it stays stopped, as the caller left it.
            let rollback = async {
                if self.inspect_opt(name).await?.is_some() {
                    let opts = bollard::query_parameters::RemoveContainerOptions { force: true, v: false, link: false };
                    self.docker.remove_container(name, Some(opts)).await.map_err(|e| self.err("remove", name, e))?;
                }
                self.rename(aside, name).await
            };
            let rolled_back = rollback.await.map(|_| ()).map_err(|e| e.to_string());
            return Err(RuntimeError::RecreateFailed { name: name.into(), reason: e.to_string(), rollback: rolled_back.err() });
        }
        Ok(())
    }

    /// Run a one-off command from `image` (network none, the given binds) and return its
    /// output; for etcd's offline tools when the host has none. The container is removed
    /// afterwards: it holds nothing but its output.
    pub async fn run_tool(&self, image: &str, argv: &[String], binds: &[String]) -> Result<String, RuntimeError> {
        use futures_util::StreamExt;
        let name = format!("etcd-hostfix-tool-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0));
        let body = bollard::models::ContainerCreateBody {
            image: Some(image.into()),
            entrypoint: Some(argv[..1].to_vec()),
            cmd: Some(argv[1..].to_vec()),
            env: Some(vec!["ETCDCTL_API=3".into()]),
            host_config: Some(bollard::models::HostConfig {
                binds: Some(binds.to_vec()),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = bollard::query_parameters::CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        self.docker.create_container(Some(opts), body).await.map_err(|e| self.err("create", &name, e))?;
        let result = async {
            self.start(&name).await?;
            let mut wait = self.docker.wait_container(&name, None::<bollard::query_parameters::WaitContainerOptions>);
            let code = match wait.next().await {
                Some(Ok(r)) => r.status_code,
                // A non-zero exit arrives as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(self.err("wait", &name, e)),
                None => -1,
            };
            let out = self.logs_tail(&name, 10_000).await?;
            if code != 0 {
                let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim().to_string();
                return Err(RuntimeError::Docker { op: "run", name: format!("{image} {}", argv.join(" ")), reason: format!("exit {code}: {last}") });
            }
            Ok(out)
        }
        .await;
        let opts = bollard::query_parameters::RemoveContainerOptions { force: true, v: true, link: false };
        let _ = self.docker.remove_container(&name, Some(opts)).await;
        result
    }

    pub async fn state(&self, name: &str) -> Result<ContainerState, RuntimeError> {
        let info = self.inspect(name).await?;
        let st = info.state.unwrap_or_default();
        Ok(ContainerState {
            status: st.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
            restart_count: info.restart_count.unwrap_or(0),
            running: st.running.unwrap_or(false),
            exit_code: st.exit_code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host root with one etcd pod's container log dir, and that dir.
    fn etcd_log_dir() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let logs = d.path().join("var/log/pods/kube-system_etcd-m1_abc/etcd");
        std::fs::create_dir_all(&logs).unwrap();
        (d, logs)
    }

    fn static_pod(root: &Path) -> StaticPod {
        StaticPod {
            root: HostRoot::new(root),
            manifest: root.join("etc/kubernetes/manifests/etcd.yaml"),
            state_dir: root.join("var/lib/etcd-hostfix"),
        }
    }

    #[test]
    fn rotated_and_garbage_files_are_tolerated() {
        let (d, logs) = etcd_log_dir();
        std::fs::write(logs.join("0.log"), "2026-01-01T00:00:00Z stderr F old run\n").unwrap();
        // The kubelet's rotated files sit beside the live ones, some compressed.
        std::fs::write(logs.join("0.log.20260101-000000.gz"), [0x1f, 0x8b, 0, 0xff, 0xfe]).unwrap();
        std::fs::write(logs.join("0.log.20260101-000100"), "2026-01-01T00:01:00Z stderr F rotated\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(logs.join("1.log"), [b"\xff\xfe\x00garbage\n".as_slice(), b"2026-01-01T00:02:00Z stderr F panic: newest\n"].concat()).unwrap();
        let sp = static_pod(d.path());
        let l = sp.pod_logs(1024).unwrap();
        assert_eq!(l.restarts, 1);
        assert!(l.file.ends_with("1.log"));
        assert_eq!(l.last_line.as_deref(), Some("panic: newest"));
        assert!(l.tail.contains("old run"), "the previous run is read too");
    }

    #[test]
    fn an_unpark_is_not_a_restart() {
        // The kubelet counts on under the same pod UID: the run before the park is `0.log`,
        // the first after the manifest came back `1.log`.
        let (d, logs) = etcd_log_dir();
        let sp = static_pod(d.path());
        let pause = || std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(logs.join("0.log"), "2026-01-01T00:00:00Z stderr F panic: tocommit(112) is out of range [lastIndex(0)]\n").unwrap();
        pause();
        std::fs::create_dir_all(sp.manifest.parent().unwrap()).unwrap();
        std::fs::write(d.path().join("etcd.yaml"), "").unwrap();
        std::fs::rename(d.path().join("etcd.yaml"), &sp.manifest).unwrap();
        // Before the new run writes, the pod's earlier life does not speak for it.
        assert!(sp.pod_logs(1024).is_none());
        pause();
        std::fs::write(logs.join("1.log"), "2026-01-01T00:01:00Z stderr F starting\n").unwrap();
        let l = sp.pod_logs(1024).unwrap();
        assert_eq!(l.restarts, 0);
        assert!(!l.tail.contains("tocommit"), "{}", l.tail);
        pause();
        std::fs::write(logs.join("1.log"), "2026-01-01T00:01:00Z stderr F panic: boom\n").unwrap();
        std::fs::write(logs.join("2.log"), "2026-01-01T00:01:10Z stderr F starting\n").unwrap();
        let l = sp.pod_logs(1024).unwrap();
        assert_eq!((l.restarts, l.file.ends_with("2.log")), (1, true));
    }

    #[test]
    fn a_log_just_rotated_is_read_with_the_rotated_file_before_it() {
        // The kubelet has just rotated the running member's log: `1.log` holds one line, the
        // member's earlier words are in the newest rotated file, older ones are gzipped.
        let (d, logs) = etcd_log_dir();
        std::fs::write(logs.join("1.log.20260101-000000.gz"), [0x1f, 0x8b, 0, 0xff, 0xfe]).unwrap();
        std::fs::write(logs.join("1.log.20260101-000100.gz.tmp"), "2026-01-01T00:01:00Z stderr F half-compressed\n").unwrap();
        std::fs::write(logs.join("1.log.20260101-000200"), "2026-01-01T00:02:00Z stderr F older words\n2026-01-01T00:02:01Z stderr F the cause\n")
            .unwrap();
        std::fs::write(logs.join("1.log.20251231-235900"), "2025-12-31T23:59:00Z stderr F older still\n").unwrap();
        let current = "2026-01-01T00:02:02Z stderr F words after the rotation\n2026-01-01T00:02:03Z stderr F panic: boom\n";
        std::fs::write(logs.join("1.log"), current).unwrap();
        let sp = static_pod(d.path());
        let l = sp.pod_logs(1024).unwrap();
        assert!(l.file.ends_with("1.log"));
        assert!(l.tail.ends_with(&format!("the cause\n{current}")), "{}", l.tail);
        assert!(!l.tail.contains("older still") && !l.tail.contains("half-compressed"), "only the newest rotated file: {}", l.tail);
        // A tail the current file fills reads nothing before it.
        let l = sp.pod_logs(60).unwrap();
        assert!(l.tail.ends_with("panic: boom\n") && !l.tail.contains("the cause"), "{}", l.tail);
    }

    #[test]
    fn the_last_line_is_a_split_line_joined() {
        let (d, logs) = etcd_log_dir();
        std::fs::write(logs.join("0.log"), "2026-01-01T00:00:00Z stderr P panic: a long \n2026-01-01T00:00:00Z stderr F line\n").unwrap();
        let sp = static_pod(d.path());
        assert_eq!(sp.pod_logs(1024).unwrap().last_line.as_deref(), Some("panic: a long line"));
    }

    #[test]
    fn tail_is_bounded_and_drops_partial_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        let mut s = String::new();
        for i in 0..1000 {
            s.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&p, &s).unwrap();
        let t = read_tail(&p, 100).unwrap();
        assert!(t.len() <= 100);
        assert!(t.starts_with("line "));
        assert!(t.ends_with("line 999\n"));
    }
}
