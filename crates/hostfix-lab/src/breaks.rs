//! The definitive breaks: the ways a static-pod master's member breaks for good that the
//! daemon heals by itself (a `rejoin`). Shared by the daemon tests and the soak.

use crate::lab::Node;
use crate::{Lab, LabError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// Seed 000: data lost, the manifest still says `--initial-cluster-state=new`.
    AlreadyBootstrapped,
    /// Data lost, with `existing`: etcd starts empty at commit index 0.
    DataLost,
    /// Both bbolt meta pages destroyed.
    DbCorrupt,
    /// A data dir of another cluster (another token, `new`): it bootstraps a cluster alone.
    ClusterIdMismatch,
}

impl Break {
    pub const ALL: [Break; 4] = [Break::AlreadyBootstrapped, Break::DataLost, Break::DbCorrupt, Break::ClusterIdMismatch];

    /// The class `diagnose` gives it.
    pub fn class(self) -> &'static str {
        match self {
            Break::AlreadyBootstrapped => "already-bootstrapped",
            Break::DataLost => "data-lost",
            Break::DbCorrupt => "db-corrupt",
            Break::ClusterIdMismatch => "cluster-id-mismatch",
        }
    }

    pub fn from_class(class: &str) -> Option<Break> {
        Break::ALL.into_iter().find(|b| b.class() == class)
    }

    /// Stop member `t`, break it, start it again. Data is moved aside, never deleted.
    pub async fn apply(self, lab: &Lab, t: usize) -> Result<(), LabError> {
        match self {
            Break::AlreadyBootstrapped => lab.offline(t, |n| Lab::lose_data(n).map(|_| vec![edit("initial-cluster-state", "new")])).await,
            Break::DataLost => lab.offline(t, |n| Lab::lose_data(n).map(|_| vec![edit("initial-cluster-state", "existing")])).await,
            Break::DbCorrupt => lab.offline(t, |n: &Node| Lab::scribble(&n.data_dir().join("member/snap/db"), 0, 8192).map(|_| vec![])).await,
            Break::ClusterIdMismatch => {
                lab.offline(t, |n| {
                    Lab::lose_data(n).map(|_| vec![edit("initial-cluster-token", "some-other-cluster"), edit("initial-cluster-state", "new")])
                })
                .await
            }
        }
    }
}

pub fn edit(name: &str, v: &str) -> (String, Option<String>) {
    (name.to_string(), Some(v.to_string()))
}
