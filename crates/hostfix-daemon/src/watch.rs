//! Watchers that wake the loop early, between probes: the manifests directory (not the
//! file: kubeadm and people replace it by rename), the kubelet's CRI log directory (a new
//! restart file is a crash), and, on RKE, the Docker engine's events for the container.
//! The periodic probe is the rescan: a missed event costs at most one probe interval.

use std::time::Duration;

use futures_util::StreamExt;
use hostfix_playbooks::{RuntimeChoice, Settings};
use tokio::sync::mpsc::Sender;

pub struct Watchers {
    _fs: Option<notify_debouncer_mini::Debouncer<notify::RecommendedWatcher>>,
    docker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Watchers {
    fn drop(&mut self) {
        if let Some(t) = &self.docker {
            t.abort();
        }
    }
}

pub fn start(s: &Settings, wake: Sender<&'static str>) -> Watchers {
    let fs_wake = wake.clone();
    let pods_dir = s.root().resolve("/var/log/pods");
    // A running etcd appends to its log all the time; only a new file (a restart) or a
    // new pod is news. Anything in the manifests directory is.
    let mut known: std::collections::HashSet<std::path::PathBuf> = std::collections::HashSet::new();
    let fs = notify_debouncer_mini::new_debouncer(Duration::from_millis(200), move |res: notify_debouncer_mini::DebounceEventResult| {
        let Ok(events) = res else { return };
        let news = events.iter().any(|e| !e.path.starts_with(&pods_dir) || known.insert(e.path.clone()));
        if news {
            let _ = fs_wake.try_send("file");
        }
    })
    .ok()
    .map(|mut d| {
        let manifest_dir = s.manifest_path().parent().map(|p| p.to_path_buf());
        let pods = s.root().resolve("/var/log/pods");
        for dir in manifest_dir.into_iter().chain([pods]) {
            // A directory that does not exist (an RKE master has no manifests) is skipped.
            if let Err(e) = d.watcher().watch(&dir, notify::RecursiveMode::Recursive) {
                tracing::debug!(dir = %dir.display(), error = %e, "not watched");
            }
        }
        d
    });
    let docker = (s.runtime != RuntimeChoice::StaticPod).then(|| {
        let host = s.docker_host.clone();
        let name = s.container.clone();
        tokio::spawn(async move {
            let Ok(d) = hostfix_adapters::runtime::DockerRuntime::connect(host.as_deref()).await else { return };
            let mut filters = std::collections::HashMap::new();
            filters.insert("container".to_string(), vec![name]);
            filters.insert("event".to_string(), ["die", "start", "destroy", "rename"].map(String::from).to_vec());
            let opts = bollard::query_parameters::EventsOptions { filters: Some(filters), ..Default::default() };
            let mut events = d.docker.events(Some(opts));
            while let Some(e) = events.next().await {
                if e.is_err() {
                    break;
                }
                let _ = wake.try_send("docker");
            }
        })
    });
    Watchers { _fs: fs, docker }
}
