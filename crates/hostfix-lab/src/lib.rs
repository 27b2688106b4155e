//! The lab: real etcd clusters laid out like kubeadm and Rancher RKE masters, on loopback
//! addresses of this machine, used by the integration tests and by `etcd-hostfix lab`.

pub mod benchutil;
pub mod breaks;
pub mod certs;
pub mod fault;
pub mod image;
pub mod kubelet;
pub mod lab;
pub mod machine;
pub mod manual;
pub mod oci;
pub mod realkube;

use std::path::{Path, PathBuf};

pub use lab::{EtcdVersion, KubeletKind, Lab, LabRuntime, LabSpec};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificate generation: {0}")]
    Certs(String),
    #[error("etcd {version} binaries not found in {dir} (set {var}; scripts/setup.sh installs them)")]
    MissingEtcd { version: &'static str, dir: PathBuf, var: &'static str },
    #[error("lab runner: {0}")]
    Runner(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error(transparent)]
    Runtime(#[from] hostfix_adapters::runtime::RuntimeError),
    #[error(transparent)]
    Etcd(#[from] hostfix_adapters::etcd::EtcdError),
}

impl LabError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        LabError::Io { path: path.to_path_buf(), source }
    }
}
