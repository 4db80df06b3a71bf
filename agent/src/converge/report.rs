//! What the engine tells about the host: status and health, module by
//! module.

use bulwark_model::api::{Check, FirewallStatus, Health, Level, ModuleStatus, Status, WireGuardStatus};
use bulwark_model::profile::DriftMode;

use super::Engine;
use crate::clock::now_unix;

/// `module` of the daemon's own checks.
pub const DAEMON: &str = "bulwarkd";

fn check(name: &str, module: &str, level: Level, reason: String) -> Check {
    Check {
        name: name.to_owned(),
        module: module.to_owned(),
        level,
        reason,
    }
}

impl Engine {
    /// Status and health from one pass over the modules: each module's
    /// checks are asked once and give both its health and its status level.
    pub fn report(&mut self) -> (Status, Health) {
        let current = self.current.as_ref().map(|c| c.profile.clone());
        let mut modules = Vec::with_capacity(self.slots.len());
        let mut checks = Vec::with_capacity(self.slots.len());
        for i in 0..self.slots.len() {
            let name = self.slots[i].module.name();
            let own = match &self.slots[i].broken {
                Some(_) => Vec::new(),
                None => self.with_module(i, 0, |m, cx| m.health(cx, current.as_deref())),
            };
            let mut st = self.with_module(i, 0, |m, cx| m.status(cx, current.as_deref()));
            st.level = own.iter().map(|c| c.level).fold(st.level, Level::max);
            let slot = &self.slots[i];
            if let Some(reason) = slot.broken.as_ref().or(slot.failed.as_ref()) {
                st.level = Level::Critical;
                st.summary = reason.clone();
            } else if !slot.drift.is_empty() {
                st.level = st.level.max(Level::Warning);
                st.summary = format!("drift: {}", slot.drift.join("; "));
            }
            modules.push(st);
            checks.push(
                own.into_iter()
                    .map(|mut c| {
                        c.module = name.to_owned();
                        c
                    })
                    .collect(),
            );
        }
        let health = self.health_of(checks);
        (self.status_of(modules), health)
    }

    pub fn status(&mut self) -> Status {
        self.report().0
    }

    #[cfg(test)]
    pub fn health(&mut self) -> Health {
        self.report().1
    }

    fn status_of(&mut self, modules: Vec<ModuleStatus>) -> Status {
        let detail = |name: &str| modules.iter().find(|m| m.module == name).map(|m| &m.details);
        // The fields before `modules` stay filled for older clients.
        let firewall = detail("firewall").cloned().unwrap_or_default();
        let wireguard: Option<WireGuardStatus> =
            detail("wireguard").and_then(|d| serde::Deserialize::deserialize(d).ok());
        let cur = self.current.as_ref();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            root: self.host.root().display().to_string(),
            profile: cur.map(|c| c.profile.name.clone()),
            generation: cur.map(|c| c.meta.number),
            digest: cur.map(|c| c.meta.digest.clone()),
            drift: cur
                .map(|c| format!("{:?}", c.profile.drift).to_lowercase())
                .unwrap_or_default(),
            drift_interval_secs: cur.map_or(0, |c| c.profile.drift_interval.as_secs()),
            pending_confirm: self.pending.clone(),
            firewall: FirewallStatus {
                present: firewall["present"].as_bool().unwrap_or(false),
                in_sync: firewall["in_sync"].as_bool().unwrap_or(false),
                set_elements: firewall["set_elements"].as_u64().unwrap_or(0) as usize,
                drift_repairs: self.drift.repairs,
            },
            wireguard,
            health: modules.iter().map(|m| m.level).max().unwrap_or_default(),
            last_error: self.last.as_ref().filter(|l| !l.ok).map(|l| l.message.clone()),
            boot_profile: self.boot_profile(),
            modules,
        }
    }

    /// The daemon's own checks around `own`, each module's checks.
    fn health_of(&mut self, own: Vec<Vec<Check>>) -> Health {
        let mut checks = self.notes.clone();
        checks.push(match &self.last {
            Some(l) if !l.ok => check("last_apply", DAEMON, Level::Warning, l.message.clone()),
            Some(l) => check("last_apply", DAEMON, Level::Ok, l.message.clone()),
            None => check("last_apply", DAEMON, Level::Ok, "no change since start-up".to_owned()),
        });
        checks.push(match &self.pending {
            Some(p) => check(
                "confirm",
                DAEMON,
                Level::Warning,
                format!(
                    "generation {} reverts in {}s unless confirmed",
                    p.generation,
                    p.deadline.saturating_sub(now_unix())
                ),
            ),
            None => check("confirm", DAEMON, Level::Ok, "no confirmation pending".to_owned()),
        });
        let reporting = self
            .current
            .as_ref()
            .is_some_and(|c| c.profile.drift == DriftMode::Report);
        let mut drifted = Vec::new();
        for (slot, own) in self.slots.iter().zip(own) {
            let name = slot.module.name();
            if let Some(reason) = &slot.broken {
                checks.push(check(
                    name,
                    name,
                    Level::Critical,
                    format!("cannot load its state: {reason}; repair or move the file aside, then apply again"),
                ));
                continue;
            }
            if let Some(reason) = slot.failed.clone() {
                checks.push(check(name, name, Level::Critical, reason));
            }
            if !slot.drift.is_empty() {
                drifted.push((name, slot.module.drift_events().level, slot.drift.join("; ")));
            }
            checks.extend(own);
        }
        // Drift left as found counts at the level its module gives it.
        checks.push(match (drifted.is_empty(), reporting) {
            (true, _) => check(
                "drift",
                DAEMON,
                Level::Ok,
                match self.drift.repairs {
                    0 => "no drift repaired".to_owned(),
                    n => format!("{n} drift repair(s) since start-up"),
                },
            ),
            (false, _) => {
                let level = drifted.iter().map(|(_, l, _)| *l).max().unwrap_or(Level::Warning);
                let what: Vec<String> = drifted.iter().map(|(m, _, d)| format!("{m}: {d}")).collect();
                let mode = if reporting { "drift = report" } else { "repair failed" };
                check("drift", DAEMON, level, format!("{} ({mode})", what.join("; ")))
            }
        });
        let health = Health::from_checks(checks);
        self.metrics.set_checks(&health.checks);
        health
    }
}
