//! sd_notify: `READY=1` after the first full observation, `WATCHDOG=1` from the decision
//! loop itself (a hung loop is then restarted by systemd), and one `STATUS=` line. Without
//! `NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Notifier {
    enabled: bool,
    /// Half the watchdog interval systemd asked for, if it asked.
    pub watchdog_every: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog_every: sd_notify::watchdog_enabled().map(|d| d / 2),
        }
    }

    /// `sd_notify::notify` sends with a blocking socket: a manager that does not drain its
    /// queue would then stall the decision loop, which must never wait on its reporting.
    /// So the message is formatted by the crate and sent here without blocking; one that
    /// does not fit is dropped (the next turn sends a newer one).
    fn send(&self, s: &[sd_notify::NotifyState]) {
        if !self.enabled {
            return;
        }
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
        let msg: String = s.iter().map(|x| format!("{x}\n")).collect();
        if let Err(e) = send_nonblocking(&path, msg.as_bytes()) {
            if e.kind() != std::io::ErrorKind::WouldBlock {
                tracing::warn!(error = %e, "sd_notify failed");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        if self.watchdog_every.is_some() {
            self.send(&[sd_notify::NotifyState::Watchdog]);
        }
    }

    pub fn status(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    pub fn stopping(&self) {
        self.send(&[sd_notify::NotifyState::Stopping]);
    }
}

fn send_nonblocking(path: &std::ffi::OsStr, msg: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        // An abstract socket, as systemd may hand out.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    sock.send_to_addr(msg, &addr)?;
    Ok(())
}
