//! The engine's timers: the confirmation window, the drift loop, and the
//! modules' own ticks.

use std::time::{Duration, Instant};

use bulwark_model::api::PendingConfirm;
use bulwark_model::profile::DriftMode;

use super::{chain, Engine, RevertRetry};
use crate::audit::{self, Outcome};
use crate::clock::now_unix;
use crate::state;

/// Longest pause between attempts at a revert that keeps failing.
const REVERT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Longest sleep of the engine thread when nothing is due.
const IDLE: Duration = Duration::from_secs(3600);

impl Engine {
    /// Close an expired confirmation window, run a due drift check and the
    /// modules' ticks. Returns how long until the next timer.
    pub fn tick(&mut self) -> Duration {
        if let Some(p) = self.pending.clone() {
            let retry_due = self.revert_retry.next.is_none_or(|t| Instant::now() >= t);
            if now_unix() >= p.deadline && retry_due {
                self.revert(&p);
            }
        }
        if self.drift.next_check.is_some_and(|t| Instant::now() >= t) {
            self.check_drift();
            self.schedule_drift_check();
        }
        let current = self.current.as_ref().map(|c| c.profile.clone());
        let mut next = Instant::now() + IDLE;
        let mut asked = Vec::new();
        for i in 0..self.slots.len() {
            if self.slots[i].broken.is_some() {
                continue;
            }
            let (t, check) = self.with_module(i, 0, |m, cx| {
                (m.tick(cx, current.as_deref()), cx.drift_check_requested())
            });
            if let Some(t) = t {
                next = next.min(t);
            }
            if check {
                asked.push(i);
            }
        }
        if !asked.is_empty() {
            self.check_drift_of(&asked);
        }
        let mut wait = next.saturating_duration_since(Instant::now());
        if let Some(p) = &self.pending {
            // Poll the wall-clock deadline at a fine grain: it must hold across restarts.
            wait = wait.min(Duration::from_secs(p.deadline.saturating_sub(now_unix())).max(Duration::from_millis(200)));
        }
        for t in [self.drift.next_check, self.revert_retry.next].into_iter().flatten() {
            wait = wait.min(t.saturating_duration_since(Instant::now()));
        }
        wait
    }

    /// Re-install the generation an unconfirmed apply replaced.
    pub(super) fn revert(&mut self, p: &PendingConfirm) {
        let outcome = match p.revert_to {
            Some(target) => self.reinstall(target, 0, "revert").map(|r| r.generation.unwrap_or(0)),
            // The very first generation had nothing before it: keep it.
            None => Ok(p.generation),
        };
        match outcome {
            Ok(generation) => {
                self.pending = None;
                self.revert_retry = RevertRetry::default();
                if let Err(e) = state::remove(&self.pending_path()) {
                    log::error!(error:display = e; "could not remove the pending confirmation");
                }
                let restored = p.revert_to.map_or("it".to_owned(), |n| n.to_string());
                let msg = format!(
                    "generation {} was not confirmed by its deadline; generation {generation} restores {restored}",
                    p.generation
                );
                self.record(&audit::CHG_REVERTED, 0, Outcome::Success, &msg);
            }
            // Keep the window open and try again, less and less often.
            Err(e) => {
                let r = &mut self.revert_retry;
                r.failures += 1;
                let wait = Duration::from_secs(1 << r.failures.min(6)).min(REVERT_BACKOFF_MAX);
                r.next = Some(Instant::now() + wait);
                log::error!(error:display = chain(&e); "revert of generation {} failed; retrying in {}s", p.generation, wait.as_secs());
            }
        }
    }

    pub(super) fn schedule_drift_check(&mut self) {
        self.drift.next_check = self.current.as_ref().map(|c| Instant::now() + c.profile.drift_interval);
    }

    /// Ask every module what differs from the generation in force; repair
    /// the modules that drifted (`repair`) or report them once (`report`).
    pub(super) fn check_drift(&mut self) {
        let all: Vec<usize> = (0..self.slots.len()).collect();
        self.check_drift_of(&all);
    }

    /// [`Engine::check_drift`] of the modules at `which` only (those whose
    /// watcher saw a change).
    fn check_drift_of(&mut self, which: &[usize]) {
        let Some(profile) = self.current.as_ref().map(|c| c.profile.clone()) else {
            return;
        };
        let number = self.current_number().unwrap_or(0);
        for &i in which {
            if self.slots[i].broken.is_some() {
                continue;
            }
            let items = match self.with_module(i, 0, |m, cx| m.observe(cx, &profile)) {
                Ok(items) => items,
                Err(e) => {
                    log::error!(module = self.slots[i].module.name(), error:display = chain(&e); "drift check failed");
                    continue;
                }
            };
            if items.is_empty() {
                self.slots[i].drift.clear();
                continue;
            }
            let events = self.slots[i].module.drift_events();
            let what = items.join("; ");
            match profile.drift {
                DriftMode::Repair => match self.with_module(i, 0, |m, cx| m.apply(cx, &profile)) {
                    Ok(()) => {
                        self.slots[i].drift.clear();
                        self.slots[i].failed = None;
                        self.drift.repairs += 1;
                        self.metrics.inc_drift_repairs();
                        let msg = format!("{what}; generation {number} re-applied");
                        self.record(events.repaired, 0, Outcome::Success, &msg);
                    }
                    Err(e) => {
                        let reason = chain(&e);
                        log::error!(module = self.slots[i].module.name(); "drift repair failed: {reason}");
                        self.slots[i].drift = items;
                        self.slots[i].failed = Some(format!("drift repair failed: {reason}"));
                    }
                },
                DriftMode::Report => {
                    // Report a drift once, when it appears or changes, not at every check.
                    if self.slots[i].drift != items {
                        let msg = format!("{what}; drift = \"report\", left as found");
                        self.record(events.detected, 0, Outcome::Failure, &msg);
                    }
                    self.slots[i].drift = items;
                }
            }
        }
        self.notify_status();
    }
}
