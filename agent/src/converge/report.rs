//! What the engine tells about the host: status and health checks.

use bulwark_model::api::{Check, FirewallStatus, Health, Level, Status, WireGuardStatus};
use bulwark_model::profile::DriftMode;

use super::{now_unix, Engine};

impl Engine {
    pub fn status(&self) -> Status {
        let cur = self.current.as_ref();
        let live = self.nft.list().ok().flatten();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            root: self.host.root().display().to_string(),
            profile: cur.map(|c| c.profile.name.clone()),
            generation: cur.map(|c| c.generation.meta.number),
            drift: cur
                .map(|c| format!("{:?}", c.profile.drift).to_lowercase())
                .unwrap_or_default(),
            drift_interval_secs: cur.map_or(0, |c| c.profile.drift_interval.as_secs()),
            pending_confirm: self.pending.clone(),
            firewall: FirewallStatus {
                present: live.is_some(),
                in_sync: cur.is_some_and(|c| live.is_some() && c.snapshot == live),
                set_elements: cur.map_or(0, |c| c.generation.ruleset.set_elements()),
                drift_repairs: self.drift.repairs,
            },
            wireguard: cur.and_then(|c| c.profile.wireguard.as_ref()).map(|w| WireGuardStatus {
                interface: w.interface.clone(),
                backend: self.wg.backend_in_use().unwrap_or("down").to_owned(),
                address: w.address.to_string(),
                listen_port: w.listen_port,
                public_key: self.wg.public_key(),
                peers: self.wg.peers(Some(w)).map_or(0, |p| p.len()),
            }),
            // The API fills this from the full report (with resource checks).
            health: Level::Ok,
            last_error: self.last.as_ref().filter(|l| !l.ok).map(|l| l.message.clone()),
        }
    }

    pub fn health(&self) -> Health {
        let mut checks = Vec::new();
        let check = |name: &str, level, reason: String| Check {
            module: String::new(),
            name: name.to_owned(),
            level,
            reason,
        };
        checks.push(match &self.last {
            Some(l) if !l.ok => check("last_apply", Level::Warning, l.message.clone()),
            Some(l) => check("last_apply", Level::Ok, l.message.clone()),
            None => check("last_apply", Level::Ok, "no change since start-up".to_owned()),
        });
        checks.push(match (&self.current, self.drift.detected) {
            (None, _) => check("firewall", Level::Critical, "no generation is in force".to_owned()),
            (Some(c), true) if c.profile.drift == DriftMode::Report => check(
                "firewall",
                Level::Critical,
                "table inet bulwark differs from the current generation (drift = report)".to_owned(),
            ),
            (Some(_), true) => check("firewall", Level::Critical, "drift repair failed".to_owned()),
            (Some(c), false) => check(
                "firewall",
                Level::Ok,
                format!(
                    "generation {} in force, {} set elements",
                    c.generation.meta.number,
                    c.generation.ruleset.set_elements()
                ),
            ),
        });
        checks.push(match &self.pending {
            Some(p) => check(
                "confirm",
                Level::Warning,
                format!(
                    "generation {} reverts in {}s unless confirmed",
                    p.generation,
                    p.deadline.saturating_sub(now_unix())
                ),
            ),
            None => check("confirm", Level::Ok, "no confirmation pending".to_owned()),
        });
        checks.push(match self.drift.repairs {
            0 => check("drift", Level::Ok, "no drift repaired".to_owned()),
            n => check("drift", Level::Ok, format!("{n} drift repair(s) since start-up")),
        });
        if let Some(cur) = &self.current {
            if let Some(vpn) = &cur.profile.wireguard {
                checks.extend(self.wg.health(vpn));
                if let Ok(peers) = self.wg.peers(Some(vpn)) {
                    let now = now_unix();
                    let ages: Vec<(String, Option<std::time::Duration>)> = peers
                        .into_iter()
                        .map(|p| {
                            (
                                p.name,
                                p.last_handshake
                                    .map(|t| std::time::Duration::from_secs(now.saturating_sub(t))),
                            )
                        })
                        .collect();
                    self.metrics.set_wireguard_peers(&ages);
                }
            }
            if let Some(bind) = cur.profile.k3s_bind_ip() {
                checks.extend(self.k3s.checks(bind, self.k3s_note.as_deref()));
            }
        }
        Health::from_checks(checks)
    }
}
