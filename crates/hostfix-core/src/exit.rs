//! Process exit codes, shared by every command and documented in the README.

/// Success; for `status`, every member is healthy.
pub const OK: i32 = 0;
/// An error: bad input, an unreachable endpoint, a failed step. Nothing was changed unless
/// the message says otherwise.
pub const ERROR: i32 = 1;
/// The command line itself was wrong (clap's own code).
pub const USAGE: i32 = 2;
/// A safety check refused to act. Nothing was changed.
pub const REFUSED: i32 = 3;
/// The command ran, and found the cluster unhealthy or a problem to fix.
pub const UNHEALTHY: i32 = 4;
