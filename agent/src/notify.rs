//! systemd notifications: READY, STATUS and WATCHDOG.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op. Child
//! processes must not inherit the variable: spawners remove it from their
//! environment.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Long but bounded work on the engine thread (a download and hash, waiting
/// for a server, a child process with a deadline) tells systemd's watchdog
/// the daemon is alive, at most every 5 s. Only work that cannot outlive its
/// own bound calls this, so a hung engine still misses the watchdog.
pub fn progress() {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let Ok(mut last) = LAST.lock() else { return };
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
        *last = Some(Instant::now());
        watchdog();
    }
}

/// Half of `WatchdogSec`, when systemd set one for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}
