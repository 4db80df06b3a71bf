//! The firewall on the module contract.
//!
//! Always managed: a profile without `[firewall]` gets the defaults, which
//! open nothing. Every apply replaces table `inet bulwark` in one transaction
//! and is then read back: an nft that reports success while the kernel holds
//! something else is a failed apply, never "in force". The listing taken
//! right after the apply is what drift is measured against.

use std::any::Any;

use bulwark_model::api::{Change, ChangeOp, Check, Level, ModuleStatus};
use bulwark_model::Profile;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::coexist::Coexistence;
use super::nft::{FirewallError, Nft};
use super::render::{FAILSAFE_SSH, FAILSAFE_WIREGUARD};
use super::ruleset::Ruleset;
use super::verify::{differences, Summary};
use super::{plan, render};
use crate::audit;
use crate::module::{Artifacts, Cx, DriftEvents, ErrorClass, Module, ModuleError};

pub const NAME: &str = "firewall";
const RULESET_FILE: &str = "ruleset.json";

/// Name of the profile the engine restores to when no generation is in
/// force: it cannot collide with an operator's (names allow no parentheses).
pub const FAILSAFE_PROFILE: &str = "(failsafe)";

/// The failsafe as a profile, so restoring to it goes the same way as
/// restoring to a generation: only SSH and the WireGuard port, nothing
/// else managed. See [`super::render::failsafe`].
pub fn failsafe_profile(wireguard_port: u16) -> Profile {
    Profile {
        name: FAILSAFE_PROFILE.to_owned(),
        drift: bulwark_model::profile::DriftMode::Repair,
        drift_interval: std::time::Duration::from_secs(30),
        keep_generations: bulwark_model::profile::KEEP_GENERATIONS,
        firewall: bulwark_model::profile::Firewall {
            public_tcp: vec![FAILSAFE_SSH],
            public_udp: vec![wireguard_port],
            ..Default::default()
        },
        wireguard: None,
        k3s: None,
        monitoring: Default::default(),
        ima: None,
        vault: None,
    }
}

/// The ruleset a profile asks for.
pub fn desired(profile: &Profile) -> Ruleset {
    render(
        &profile.firewall,
        profile.wireguard.as_ref().map(|w| w.interface.as_str()),
    )
}

fn failed(e: FirewallError) -> ModuleError {
    ModuleError::new(NAME, ErrorClass::Failed, e)
}

#[derive(Debug)]
pub struct FirewallModule {
    nft: Nft,
    /// The table as listed right after this daemon's last verified apply.
    snapshot: Option<Value>,
    /// The failsafe ruleset is what this daemon installed last.
    failsafe: Option<u16>,
    /// What the last drift check found (status and health report it).
    drift: Vec<String>,
    /// Whether the last listing found the table at all.
    present: bool,
    set_elements: Gauge,
    /// Other firewall managers found on the host.
    others: Coexistence,
}

impl FirewallModule {
    pub fn new(nft: Nft) -> FirewallModule {
        FirewallModule {
            nft,
            snapshot: None,
            failsafe: None,
            drift: Vec::new(),
            present: false,
            set_elements: Gauge::default(),
            others: Coexistence::default(),
        }
    }

    pub fn nft(&self) -> &Nft {
        &self.nft
    }

    /// Replace the table with `rs` and prove the kernel holds it.
    fn install(&mut self, rs: &Ruleset) -> Result<(), FirewallError> {
        self.snapshot = None;
        self.nft.apply(rs)?;
        let listed = self.nft.list_json()?.ok_or_else(|| FirewallError::Mismatch {
            what: "the table is missing right after the apply".to_owned(),
        })?;
        let have = Summary::of_listing(&listed).map_err(|what| FirewallError::Mismatch { what })?;
        let diffs = differences(&Summary::of_ruleset(rs), &have);
        if !diffs.is_empty() {
            return Err(FirewallError::Mismatch { what: diffs.join("; ") });
        }
        self.snapshot = Some(listed);
        self.drift.clear();
        self.present = true;
        self.set_elements
            .set(i64::try_from(rs.set_elements()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// What differs between the live table and the last verified apply.
    fn drifted(&mut self) -> Result<Vec<String>, FirewallError> {
        let live = self.nft.list_json()?;
        self.present = live.is_some();
        Ok(match (&self.snapshot, live) {
            (_, None) => vec!["table inet bulwark was deleted".to_owned()],
            (Some(s), Some(l)) if *s == l => Vec::new(),
            (Some(s), Some(l)) => {
                let (want, have) = (Summary::of_listing(s), Summary::of_listing(&l));
                let mut d = match (want, have) {
                    (Ok(w), Ok(h)) => differences(&w, &h),
                    _ => Vec::new(),
                };
                if d.is_empty() {
                    d.push("table inet bulwark was modified".to_owned());
                }
                d.into_iter()
                    .map(|what| format!("table inet bulwark: {what}"))
                    .collect()
            }
            (None, Some(_)) => vec!["table inet bulwark was never verified by this daemon".to_owned()],
        })
    }
}

impl Module for FirewallModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn failsafe(&mut self, _cx: &mut Cx<'_>, last: Option<&Profile>) -> Result<bool, ModuleError> {
        if self.nft.list_json().map_err(failed)?.is_some() {
            // The table survived (a daemon restart, not a reboot): it is the
            // last state an operator applied, better than any failsafe.
            return Ok(false);
        }
        let port = last
            .and_then(|p| p.wireguard.as_ref())
            .map_or(FAILSAFE_WIREGUARD, |w| w.listen_port);
        self.install(&desired(&failsafe_profile(port))).map_err(failed)?;
        self.failsafe = Some(port);
        log::warn!(ssh = FAILSAFE_SSH, wireguard = port; "table inet bulwark was absent: failsafe ruleset installed (SSH {FAILSAFE_SSH}/tcp and WireGuard {port}/udp only)");
        Ok(true)
    }

    fn render(&self, profile: &Profile) -> Artifacts {
        let json = serde_json::to_string_pretty(&desired(profile)).unwrap_or_default();
        Artifacts::from([(RULESET_FILE.to_owned(), json)])
    }

    fn plan(
        &mut self,
        cx: &mut Cx<'_>,
        profile: &Profile,
        current: Option<&Profile>,
    ) -> Result<Vec<Change>, ModuleError> {
        for f in self.others.refresh(cx.host, &self.nft) {
            cx.warn(f.to_string());
        }
        let previous = current.map(desired);
        let mut changes = plan(&desired(profile), previous.as_ref());
        let note = |what: String| Change::new(NAME, ChangeOp::Change, what);
        if let Some(port) = self.failsafe.filter(|_| profile.name != FAILSAFE_PROFILE) {
            changes.push(note(format!(
                "the failsafe ruleset (SSH {FAILSAFE_SSH}/tcp, WireGuard {port}/udp) is in force; it will be replaced"
            )));
        } else if current.is_some_and(|c| c.name != FAILSAFE_PROFILE) {
            let drift = self.drifted().map_err(failed)?;
            if !drift.is_empty() {
                changes.push(note(format!(
                    "the live table differs from the generation in force ({}); it will be replaced",
                    drift.join("; ")
                )));
            }
        }
        Ok(changes)
    }

    /// Trusting an interface that carries the default route or a public
    /// address would open every port to it.
    fn preflight(&mut self, _cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        super::refuse_trusted_uplinks(&profile.firewall).map_err(|e| ModuleError::new(NAME, ErrorClass::Conflict, e))
    }

    fn check(&mut self, _cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        self.nft.check(&desired(profile)).map_err(failed)
    }

    fn apply(&mut self, _cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        self.install(&desired(profile)).map_err(failed)?;
        self.failsafe = (profile.name == FAILSAFE_PROFILE).then(|| {
            profile
                .firewall
                .public_udp
                .first()
                .copied()
                .unwrap_or(FAILSAFE_WIREGUARD)
        });
        Ok(())
    }

    fn observe(&mut self, cx: &mut Cx<'_>, _current: &Profile) -> Result<Vec<String>, ModuleError> {
        self.others.refresh_due(cx.host, &self.nft);
        self.drift = self.drifted().map_err(failed)?;
        Ok(self.drift.clone())
    }

    fn drift_events(&self) -> DriftEvents {
        DriftEvents {
            repaired: &audit::FW_DRIFT_REPAIRED,
            detected: &audit::FW_DRIFT_DETECTED,
            level: Level::Critical,
        }
    }

    fn health(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> Vec<Check> {
        self.others.refresh_due(cx.host, &self.nft);
        let (level, reason) = match (current, self.failsafe, &self.snapshot) {
            (None, Some(port), _) => (
                Level::Critical,
                format!(
                    "failsafe ruleset in force (SSH {FAILSAFE_SSH}/tcp and WireGuard {port}/udp only): no \
                     generation could be restored; apply a profile"
                ),
            ),
            (None, None, _) => (Level::Critical, "no generation is in force".to_owned()),
            (Some(_), _, None) => (
                Level::Critical,
                "table inet bulwark is not verified: the last install failed".to_owned(),
            ),
            (Some(p), _, Some(_)) if self.drift.is_empty() => (
                Level::Ok,
                format!(
                    "ruleset in force and verified, {} set elements",
                    p.firewall.set_elements()
                ),
            ),
            (Some(_), _, Some(_)) => (Level::Critical, self.drift.join("; ")),
        };
        let others = &self.others.findings;
        vec![
            Check {
                name: NAME.to_owned(),
                module: NAME.to_owned(),
                level,
                reason,
            },
            Check {
                name: "firewall_managers".to_owned(),
                module: NAME.to_owned(),
                level: if others.is_empty() { Level::Ok } else { Level::Warning },
                reason: if others.is_empty() {
                    "no other firewall manager found (ufw, firewalld, nftables.service flushing the ruleset, \
                     legacy iptables)"
                        .to_owned()
                } else {
                    others.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | ")
                },
            },
        ]
    }

    fn status(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> ModuleStatus {
        let level = self
            .health(cx, current)
            .into_iter()
            .map(|c| c.level)
            .max()
            .unwrap_or_default();
        let elements = current.map_or(0, |p| p.firewall.set_elements());
        let summary = match (current, self.failsafe) {
            (None, Some(port)) => format!("failsafe: SSH {FAILSAFE_SSH}/tcp, WireGuard {port}/udp"),
            (None, None) => "no ruleset".to_owned(),
            (Some(p), _) => format!(
                "default deny; public tcp {:?}, admin tcp {:?}, vpn tcp {:?}; {elements} set elements",
                p.firewall.public_tcp, p.firewall.admin_tcp, p.firewall.vpn_tcp
            ),
        };
        ModuleStatus {
            module: NAME.to_owned(),
            managed: true,
            level,
            summary,
            details: serde_json::json!({
                "present": self.present,
                "in_sync": self.snapshot.is_some() && self.drift.is_empty(),
                "failsafe": self.failsafe.is_some(),
                "set_elements": elements,
                "drift": self.drift,
            }),
        }
    }

    fn register_metrics(&mut self, registry: &mut Registry) {
        registry.register(
            "firewall_set_elements",
            "Elements in the allow-list sets of table inet bulwark",
            self.set_elements.clone(),
        );
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
