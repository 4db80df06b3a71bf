//! The engine's timers: the confirmation window and the drift loop.

use std::time::{Duration, Instant};

use bulwark_model::api::{Level, PendingConfirm};
use bulwark_model::profile::DriftMode;

use super::{now_unix, Engine};
use crate::audit::{self, EventKind, Outcome};
use crate::state;

impl Engine {
    /// Timers: close an expired confirmation window, run a due drift check.
    /// Returns how long until the next timer.
    pub fn tick(&mut self) -> Duration {
        if let Some(p) = self.pending.clone() {
            if now_unix() >= p.deadline {
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
        if let Some(t) = self.drift.next_check {
            next = next.min(t.saturating_duration_since(Instant::now()));
        }
        next
    }

    fn revert(&mut self, p: &PendingConfirm) {
        let outcome = match p.revert_to {
            Some(target) => self.reinstall(target, 0, "revert").map(|r| r.generation.unwrap_or(0)),
            // The very first generation had nothing before it: keep it.
            None => Ok(p.generation),
        };
        match outcome {
            Ok(generation) => {
                self.pending = None;
                let msg = format!(
                    "generation {} was not confirmed by its deadline; generation {generation} restores {}",
                    p.generation,
                    p.revert_to.map_or("it".to_owned(), |n| n.to_string())
                );
                if let Err(e) = state::remove(&self.pending_path()).and_then(|()| {
                    self.audit
                        .record(&audit::CHG_REVERTED, 0, Outcome::Success, &msg)
                        .map(drop)
                }) {
                    log::error!(error:display = e; "could not record the revert");
                }
            }
            // Keep the window open: the next tick tries again.
            Err(e) => log::error!(error:display = e; "revert of generation {} failed; retrying", p.generation),
        }
    }

    pub(super) fn schedule_drift_check(&mut self) {
        self.drift.next_check = self.current.as_ref().map(|c| Instant::now() + c.profile.drift_interval);
    }

    /// Compare the host with the current generation; repair or report.
    fn check_drift(&mut self) {
        let Some(cur) = &self.current else { return };
        let mut drifted: Vec<(&'static EventKind, String)> = Vec::new();
        match self.nft.list() {
            Ok(live) if live.is_some() && live == cur.snapshot => {}
            Ok(live) => {
                let what = if live.is_none() { "deleted" } else { "modified" };
                drifted.push((&audit::FW_DRIFT_REPAIRED, format!("table inet bulwark was {what}")));
            }
            Err(e) => log::error!(error:display = e; "drift check could not list the table"),
        }
        if let Some(wg) = &cur.profile.wireguard {
            match self.wg.drift(wg) {
                Ok(Some(what)) => drifted.push((&audit::WG_DRIFT_REPAIRED, what)),
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
                        for (kind, what) in drifted {
                            self.drift.repairs += 1;
                            self.metrics.inc_drift_repairs();
                            let msg = format!("{what}; generation {number} re-installed");
                            if let Err(e) = self.audit.record(kind, 0, Outcome::Success, &msg) {
                                log::error!(error:display = e; "could not record the drift repair");
                            }
                        }
                    }
                    Err(e) => {
                        self.drift.detected = true;
                        log::error!(error:display = e; "drift repair failed");
                    }
                }
            }
            DriftMode::Report => {
                if !self.drift.detected {
                    let what: Vec<String> = drifted.into_iter().map(|(_, w)| w).collect();
                    let msg = format!("{}; drift = \"report\", left as found", what.join("; "));
                    if let Err(e) = self.audit.record(&audit::FW_DRIFT_DETECTED, 0, Outcome::Failure, &msg) {
                        log::error!(error:display = e; "could not record drift");
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
                    if let Err(e) = self.audit.record(&audit::WG_PEER_EXPIRED, 0, Outcome::Success, &msg) {
                        log::error!(error:display = e; "could not record the expiry");
                    }
                }
            }
            Err(e) => log::error!(error:display = e; "could not expire peers"),
        }
    }

    /// Refresh health (and so the metrics), and audit the moment the K3s API
    /// becomes reachable outside the VPN and loopback.
    fn watch_k3s_exposure(&mut self) {
        let health = self.health();
        let exposed = health
            .checks
            .iter()
            .find(|c| c.name == crate::k3s::CHECK && c.level == Level::Critical);
        if let (Some(check), false) = (exposed, self.k3s_exposed) {
            if let Err(e) = self
                .audit
                .record(&audit::K3S_EXPOSED, 0, Outcome::Failure, &check.reason)
            {
                log::error!(error:display = e; "could not record the K3s exposure");
            }
        }
        self.k3s_exposed = exposed.is_some();
    }
}
