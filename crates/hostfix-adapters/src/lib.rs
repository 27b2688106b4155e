//! Thin adapters that act on the outside world, one narrow surface per system:
//! [`etcd`] (one endpoint at a time, via etcd-client), [`runtime`] (static pod or Docker via
//! bollard) and [`hostroot`] (where the master's filesystem is).

pub mod etcd;
pub mod hostroot;
pub mod etcdtool;
pub mod journal;
pub mod process;
pub mod runtime;

pub use hostroot::HostRoot;
