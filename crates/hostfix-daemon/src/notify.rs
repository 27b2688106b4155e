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

    fn send(&self, s: &[sd_notify::NotifyState]) {
        if self.enabled {
            if let Err(e) = sd_notify::notify(s) {
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
