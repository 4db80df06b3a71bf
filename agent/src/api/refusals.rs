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

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::throttle::Throttle;
use crate::audit::{self, Outcome};
use crate::converge::task::EngineHandle;

/// One event per uid and interval at most (besides the first).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The refusal windows of all uids.
#[derive(Debug)]
pub struct Refusals {
    engine: EngineHandle,
    throttle: Throttle,
}

impl Refusals {
    /// Start recording refusals through `engine`, flushing counts every
    /// second on a task of the current runtime.
    pub fn start(engine: EngineHandle) -> Arc<Refusals> {
        let refusals = Arc::new(Refusals {
            engine,
            throttle: Throttle::new(INTERVAL, 1),
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

    /// Note that `uid` was refused `what` (e.g. `POST /v1/apply needs ...`).
    pub fn refused(&self, uid: u32, what: &str) {
        if self.throttle.pass(uid, what) {
            self.record(uid, format!("1 request(s) refused: {what}"));
        }
    }

    /// Record the counts of the windows that ended by `now`.
    fn flush(&self, now: Instant) {
        for held in self.throttle.flush(now) {
            let msg = format!(
                "{} request(s) refused in the last {}s; the last: {}",
                held.count,
                INTERVAL.as_secs(),
                held.last
            );
            self.record(held.uid, msg);
        }
    }

    fn record(&self, uid: u32, message: String) {
        self.engine.record(&audit::API_REFUSED, uid, Outcome::Refused, message);
    }
}
