//! Refused requests: answered at once, recorded sparingly.
//!
//! A refusal is answered without waiting for the engine, and its audit event
//! (`BWK-API-0001`) is rate-limited per uid: a uid's first refusal is
//! recorded at once; the ones that follow within [`INTERVAL`] are counted,
//! and one event when the interval ends says how many there were and what
//! the last one asked for. A caller looping on refused requests adds one
//! event per interval to the audit log, not one per request. Every message
//! starts with its count (`N request(s) refused`), so the events add up to
//! the number of refusals. Counts of an interval still open when the daemon
//! stops are not recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::audit::{self, Outcome};
use crate::converge::task::EngineHandle;

/// One event per uid and interval at most (besides the first).
pub const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Window {
    opened: Instant,
    /// Refusals since the last event.
    unrecorded: u64,
    last: String,
}

/// The refusal windows of all uids.
#[derive(Debug)]
pub struct Refusals {
    engine: EngineHandle,
    windows: Mutex<HashMap<u32, Window>>,
}

impl Refusals {
    /// Start recording refusals through `engine`, flushing counts every
    /// second on a task of the current runtime.
    pub fn start(engine: EngineHandle) -> Arc<Refusals> {
        let refusals = Arc::new(Refusals {
            engine,
            windows: Mutex::new(HashMap::new()),
        });
        let flusher = refusals.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                flusher.flush(Instant::now());
            }
        });
        refusals
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Window>> {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Note that `uid` was refused `what` (e.g. `POST /v1/apply needs ...`).
    pub fn refused(&self, uid: u32, what: String) {
        let first = {
            let mut windows = self.windows();
            match windows.get_mut(&uid) {
                Some(w) => {
                    w.unrecorded += 1;
                    w.last = what.clone();
                    false
                }
                None => {
                    windows.insert(
                        uid,
                        Window {
                            opened: Instant::now(),
                            unrecorded: 0,
                            last: what.clone(),
                        },
                    );
                    true
                }
            }
        };
        if first {
            self.record(uid, format!("1 request(s) refused: {what}"));
        }
    }

    /// Record the counts of windows open for [`INTERVAL`] by `now`; a window
    /// with refusals stays open for the next interval, an idle one closes.
    pub fn flush(&self, now: Instant) {
        let due: Vec<(u32, u64, String)> = {
            let mut windows = self.windows();
            let mut due = Vec::new();
            windows.retain(|uid, w| {
                if now.duration_since(w.opened) < INTERVAL {
                    return true;
                }
                if w.unrecorded == 0 {
                    return false;
                }
                due.push((*uid, std::mem::take(&mut w.unrecorded), w.last.clone()));
                w.opened = now;
                true
            });
            due
        };
        for (uid, n, last) in due {
            self.record(
                uid,
                format!(
                    "{n} request(s) refused in the last {}s; the last: {last}",
                    INTERVAL.as_secs()
                ),
            );
        }
    }

    fn record(&self, uid: u32, message: String) {
        self.engine.record(&audit::API_REFUSED, uid, Outcome::Refused, message);
    }
}
