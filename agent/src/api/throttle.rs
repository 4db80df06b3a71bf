//! Per-uid allowances in fixed windows: the first `allowed` occurrences of a
//! window pass, the rest are counted and handed back once the window ends,
//! so one summary can stand for them. Used for refusal audit events and for
//! the per-request log line.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Window {
    opened: Instant,
    passed: u64,
    /// Occurrences beyond the allowance, not yet handed back.
    held: u64,
    last: String,
}

/// The windows of all uids.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    allowed: u64,
    windows: Mutex<HashMap<u32, Window>>,
}

/// Occurrences of one uid held back in a window that has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub uid: u32,
    pub count: u64,
    /// What the last of them was.
    pub last: String,
}

impl Throttle {
    pub fn new(interval: Duration, allowed: u64) -> Throttle {
        Throttle {
            interval,
            allowed,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Window>> {
        // Plain counters: consistent at every point a panic could leave them.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Note one occurrence for `uid`; whether it is within the allowance.
    pub fn pass(&self, uid: u32, what: &str) -> bool {
        let mut windows = self.windows();
        let w = windows.entry(uid).or_insert_with(|| Window {
            opened: Instant::now(),
            passed: 0,
            held: 0,
            last: String::new(),
        });
        if w.passed < self.allowed {
            w.passed += 1;
            return true;
        }
        w.held += 1;
        what.clone_into(&mut w.last);
        false
    }

    /// The counts held in windows that ended by `now`. A window that held
    /// some starts again (a steady flood gives one summary per interval); an
    /// idle one is forgotten, so the next occurrence passes at once.
    pub fn flush(&self, now: Instant) -> Vec<Held> {
        let mut held = Vec::new();
        self.windows().retain(|uid, w| {
            if now.duration_since(w.opened) < self.interval {
                return true;
            }
            if w.held == 0 {
                return false;
            }
            held.push(Held {
                uid: *uid,
                count: std::mem::take(&mut w.held),
                last: std::mem::take(&mut w.last),
            });
            w.opened = now;
            w.passed = self.allowed;
            true
        });
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_allowance_occurrences_are_counted_and_summarised_per_window() {
        let t = Throttle::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert!(t.pass(7, "a") && t.pass(7, "b"));
        assert!(!t.pass(7, "c") && !t.pass(7, "d"));
        assert!(t.pass(8, "other uid"));
        assert!(t.flush(t0).is_empty(), "windows still open");
        let later = t0 + Duration::from_secs(11);
        assert_eq!(
            t.flush(later),
            vec![Held {
                uid: 7,
                count: 2,
                last: "d".to_owned()
            }]
        );
        // A flooding uid stays throttled in its next window; the idle one is forgotten.
        assert!(!t.pass(7, "e"));
        assert_eq!(t.flush(later + Duration::from_secs(11)).len(), 1);
        assert_eq!(t.flush(later + Duration::from_secs(22)), vec![]);
        assert!(t.pass(7, "f"), "a quiet uid passes again at once");
    }
}
