//! Thin adapters that act on the outside world, one narrow surface per system:
//! [`etcd`] (one endpoint at a time, via etcd-client), [`runtime`] (static pod or Docker via
//! bollard), [`hostroot`] (where the master's filesystem is) and [`private`] (the modes of
//! every file the tool creates: they hold the cluster's secrets).

pub mod etcd;
pub mod hostroot;
pub mod etcdtool;
pub mod journal;
pub mod private;
pub mod process;
pub mod relocate;
pub mod runtime;

pub use hostroot::HostRoot;
