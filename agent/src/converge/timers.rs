//! The engine's timers: the confirmation window, the drift loop and peer
//! expiry.

use std::time::{Duration, Instant};

use bulwark_model::api::{Level, PendingConfirm};
use bulwark_model::profile::DriftMode;

use super::{now_unix, Engine, RevertRetry};
use crate::audit::{self, EventKind, Outcome};
use crate::state;

/// Longest pause between attempts at a revert that keeps failing.
const REVERT_BACKOFF_MAX: Duration = Duration::from_secs(60);

impl Engine {
    /// Close an expired confirmation window, run a due drift check. Returns
    /// how long until the next timer.
    pub fn tick(&mut self) -> Duration {
        if let Some(p) = self.pending.clone() {
            let retry_due = self.revert_retry.next.is_none_or(|t| Instant::now() >= t);
            if now_unix() >= p.deadline && retry_due {
                self.revert(&p);
            }
        }
        if self.drift.next_check.is_some_and(|t| Instant::now() >= t) {
            self.expire_peers();
            self.check_drift();
            self.watch_k3s_exposure();
            self.schedule_drift_check();
        }
        let mut next = Duration::from_secs(3600);
        if let Some(p) = &self.pending {
            // Poll the wall-clock deadline at a fine grain: it must hold across restarts.
            next = next.min(Duration::from_secs(p.deadline.saturating_sub(now_unix())).max(Duration::from_millis(200)));
        }
        for t in [self.drift.next_check, self.revert_retry.next].into_iter().flatten() {
            next = next.min(t.saturating_duration_since(Instant::now()));
        }
        next
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
                log::error!(error:display = e; "revert of generation {} failed; retrying in {}s", p.generation, wait.as_secs());
            }
        }
    }

    pub(super) fn schedule_drift_check(&mut self) {
        self.drift.next_check = self.current.as_ref().map(|c| Instant::now() + c.profile.drift_interval);
    }

    /// Compare the host with the current generation; repair or report.
    fn check_drift(&mut self) {
        let Some(cur) = &self.current else { return };
        // (what drifted, its repair event, its report event)
        let mut drifted: Vec<(String, &'static EventKind, &'static EventKind)> = Vec::new();
        match self.nft.list() {
            Ok(live) if live.is_some() && live == cur.snapshot => {}
            Ok(live) => {
                let what = if live.is_none() { "deleted" } else { "modified" };
                let what = format!("table inet bulwark was {what}");
                drifted.push((what, &audit::FW_DRIFT_REPAIRED, &audit::FW_DRIFT_DETECTED));
            }
            Err(e) => log::error!(error:display = e; "drift check could not list the table"),
        }
        if let Some(wg) = &cur.profile.wireguard {
            match self.wg.drift(wg) {
                Ok(Some(what)) => drifted.push((what, &audit::WG_DRIFT_REPAIRED, &audit::WG_DRIFT_DETECTED)),
                Ok(None) => {}
                Err(e) => log::error!(error:display = e; "drift check could not read the WireGuard device"),
            }
        }
        if drifted.is_empty() {
            self.drift.detected = false;
            return;
        }
        match cur.profile.drift {
            DriftMode::Repair => {
                let generation = cur.generation.clone();
                let number = generation.meta.number;
                match self.install(generation) {
                    Ok(()) => {
                        for (what, repaired, _) in drifted {
                            self.drift.repairs += 1;
                            self.metrics.inc_drift_repairs();
                            self.record(
                                repaired,
                                0,
                                Outcome::Success,
                                &format!("{what}; generation {number} re-installed"),
                            );
                        }
                    }
                    Err(e) => {
                        self.drift.detected = true;
                        log::error!(error:display = e; "drift repair failed");
                    }
                }
            }
            DriftMode::Report => {
                // Report a drift once, when it appears, not at every check.
                if !self.drift.detected {
                    for (what, _, detected) in drifted {
                        self.record(
                            detected,
                            0,
                            Outcome::Failure,
                            &format!("{what}; drift = \"report\", left as found"),
                        );
                    }
                }
                self.drift.detected = true;
            }
        }
        self.notify_status();
    }

    /// Remove peers whose expiry passed, with an audit event each.
    fn expire_peers(&mut self) {
        let Some(vpn) = self.current.as_ref().and_then(|c| c.profile.wireguard.clone()) else {
            return;
        };
        match self.wg.expire(&vpn, now_unix()) {
            Ok(expired) => {
                for p in expired {
                    let msg = format!("peer {} {} key {}", p.name, p.address, p.public_key);
                    self.record(&audit::WG_PEER_EXPIRED, 0, Outcome::Success, &msg);
                }
            }
            Err(e) => log::error!(error:display = e; "could not expire peers"),
        }
    }

    /// Audit the moment the K3s API becomes reachable outside the VPN and
    /// loopback.
    fn watch_k3s_exposure(&mut self) {
        let Some(bind) = self.current.as_ref().and_then(|c| c.profile.k3s_bind_ip()) else {
            return;
        };
        let checks = self.k3s.checks(bind, None);
        let exposed = checks
            .iter()
            .find(|c| c.name == crate::k3s::CHECK && c.level == Level::Critical);
        if let (Some(check), false) = (exposed, self.k3s_exposed) {
            let reason = check.reason.clone();
            self.record(&audit::K3S_EXPOSED, 0, Outcome::Failure, &reason);
        }
        self.k3s_exposed = exposed.is_some();
    }
}
