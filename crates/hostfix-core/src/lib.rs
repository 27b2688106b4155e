//! The pure core of etcd-hostfix: plain data in, decisions out.
//!
//! Nothing here talks to etcd, Docker or the filesystem, and nothing here depends on tokio,
//! bollard or etcd-client. That keeps every decision unit-testable from fixtures, and keeps
//! the adapters thin enough to read in one sitting.

pub mod agent;
pub mod archive;
pub mod backup;
pub mod config;
pub mod container;
pub mod defrag;
pub mod diagnose;
pub mod dr;
pub mod exit;
pub mod logs;
pub mod flags;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod manifest;
pub mod peers;
pub mod perf;
pub mod policy;
pub mod rejoin;
pub mod retry;
pub mod status;

pub use flags::{EtcdFlags, PeerEntry, TlsFiles};
pub use manifest::{Bind, Pod};
