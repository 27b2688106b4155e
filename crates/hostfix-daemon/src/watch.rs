//! Watchers that wake the loop early, between probes: the manifests directory (not the
//! file: kubeadm and people replace it by rename), the kubelet's CRI log directory (a new
//! restart file is a crash), and, on RKE, the Docker engine's events for the container.
//! The periodic probe is the rescan: a missed event costs at most one probe interval.

use futures_util::StreamExt;
use hostfix_playbooks::{RuntimeChoice, Settings};
use tokio::sync::mpsc::Sender;

pub struct Watchers {
    _fs: Option<notify::RecommendedWatcher>,
    docker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Watchers {
    fn drop(&mut self) {
        if let Some(t) = &self.docker {
            t.abort();
        }
    }
}

/// Whether a filesystem event is news for the loop. notify's inotify backend always
/// watches `IN_OPEN`, so the daemon's own read of the manifest is an event: counting it
/// made the loop wake itself about five times a second. Opens and reads are never news; in
/// the CRI log directory only a new file or directory is (a running etcd appends all the
/// time; a restart makes a new file); in the manifests directory any change is.
pub fn is_news(kind: &notify::EventKind, in_pods_dir: bool) -> bool {
    use notify::EventKind;
    match kind {
        EventKind::Access(_) => false,
        EventKind::Create(_) => true,
        _ => !in_pods_dir,
    }
}

pub fn start(s: &Settings, wake: Sender<&'static str>) -> Watchers {
    let fs_wake = wake.clone();
    let pods_dir = s.root().resolve("/var/log/pods");
    let fs = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(e) = res else { return };
        if is_news(&e.kind, e.paths.iter().all(|p| p.starts_with(&pods_dir))) {
            // A full channel already holds a wake: the loop coalesces them.
            let _ = fs_wake.try_send("file");
        }
    })
    .ok()
    .map(|mut w| {
        use notify::Watcher;
        let manifest_dir = s.manifest_path().parent().map(|p| p.to_path_buf());
        let pods = s.root().resolve("/var/log/pods");
        for dir in manifest_dir.into_iter().chain([pods]) {
            // A directory that does not exist (an RKE master has no manifests) is skipped.
            if let Err(e) = w.watch(&dir, notify::RecursiveMode::Recursive) {
                tracing::debug!(dir = %dir.display(), error = %e, "not watched");
            }
        }
        w
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RemoveKind};
    use notify::EventKind;

    #[test]
    fn opens_and_appends_are_not_news() {
        assert!(!is_news(&EventKind::Access(AccessKind::Open(AccessMode::Any)), false));
        assert!(!is_news(&EventKind::Access(AccessKind::Close(AccessMode::Read)), true));
        assert!(!is_news(&EventKind::Modify(ModifyKind::Data(DataChange::Any)), true), "etcd appending its log");
        assert!(is_news(&EventKind::Create(CreateKind::File), true), "a restart's new log file");
        assert!(is_news(&EventKind::Modify(ModifyKind::Data(DataChange::Any)), false), "a manifest edit");
        assert!(is_news(&EventKind::Remove(RemoveKind::File), false), "a manifest moved out");
    }
}
