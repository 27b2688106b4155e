//! The `--host-root` seam: every path the tool reads from a manifest or a default location
//! is a path on the master's filesystem, and resolves under this root. Tests and the lab
//! point it at a temp dir; production leaves it at `/`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot(PathBuf);

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot(root.into())
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    /// Resolve an absolute host path (as written in a manifest) under the root. Relative
    /// paths are taken as relative to the root too, never to the process's cwd.
    pub fn resolve(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.as_os_str().is_empty() {
            self.0.clone()
        } else {
            self.0.join(rel)
        }
    }

    pub fn default_manifest(&self) -> PathBuf {
        self.resolve("/etc/kubernetes/manifests/etcd.yaml")
    }

    pub fn default_state_dir(&self) -> PathBuf {
        self.resolve("/var/lib/etcd-hostfix")
    }

    pub fn pod_logs(&self) -> PathBuf {
        self.resolve("/var/log/pods")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_under_root() {
        let r = HostRoot::new("/tmp/m1");
        assert_eq!(r.resolve("/var/lib/etcd"), PathBuf::from("/tmp/m1/var/lib/etcd"));
        assert_eq!(r.resolve("var/lib/etcd"), PathBuf::from("/tmp/m1/var/lib/etcd"));
        assert_eq!(HostRoot::new("/").resolve("/etc/x"), PathBuf::from("/etc/x"));
        assert_eq!(r.default_manifest(), PathBuf::from("/tmp/m1/etc/kubernetes/manifests/etcd.yaml"));
    }
}
