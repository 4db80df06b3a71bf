//! systemd notifications: READY, STATUS and WATCHDOG.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op. Child
//! processes must not inherit the variable: spawners remove it from their
//! environment.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        log::warn!(error:display = e; "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Half of `WatchdogSec`, when systemd set one for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}
