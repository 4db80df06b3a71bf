//! The firewall on the module contract.
//!
//! Always managed: a profile without `[firewall]` gets the defaults, which
//! open nothing. An apply that changes chains or rules replaces table `inet
//! bulwark` in one nft transaction and is then read back: an nft that
//! reports success while the kernel holds something else is a failed apply,
//! never "in force". An apply that only adds or removes set elements sends
//! just those over netlink in one transaction, which the kernel must ACK
//! message by message and commit as the very next generation.
//!
//! The table is listed only when it may have changed: after a verified
//! change the module keeps the nftables generation id; an unchanged id, or
//! commits the event watcher saw leave the table alone, need no listing.
//! The watcher wakes the engine for a drift check as soon as anyone touches
//! the table; the periodic check is the backstop.

use std::any::Any;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use bulwark_model::api::{Change, ChangeOp, Check, Level, ModuleStatus};
use bulwark_model::Profile;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::coexist::Coexistence;
use super::events::{Since, Watch};
use super::netlink::{after, has_end, NfTables, SetChange};
use super::nft::{FirewallError, Nft};
use super::readback::{self, Table};
use super::render::{FAILSAFE_SSH, FAILSAFE_WIREGUARD};
use super::ruleset::{sorted_difference, Ruleset, TABLE};
use super::verify::{differences, Summary};
use super::{plan, render};
use crate::audit;
use crate::host::Host;
use crate::module::{Artifacts, Cx, DriftEvents, ErrorClass, Module, ModuleError, Waker};

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

/// Element changes above this many go through the full replace: nft
/// sends a big set faster than element messages would.
const INCREMENTAL_MAX: usize = 4096;
/// Longest pause between drift checks after installs that failed.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a drift check waits for the event watcher to catch up with the
/// kernel before it lists the table instead.
const CATCH_UP: Duration = Duration::from_millis(100);

/// What the last verified install put into the kernel.
#[derive(Debug)]
struct Installed {
    ruleset: Ruleset,
    /// The table as read back right after the install, without the named
    /// sets' elements (the ruleset has those): chains, rules as the kernel
    /// encodes them, set flags, anonymous sets. Drift is measured against it.
    shape: Table,
}

#[derive(Debug)]
pub struct FirewallModule {
    nft: Nft,
    installed: Option<Installed>,
    /// The generation the table was last known at, and what differed from
    /// [`Installed`] then (empty: in sync). An unchanged generation, or one
    /// the watcher says did not touch the table, needs no new listing.
    checked: Option<(u32, Vec<String>)>,
    /// nf_tables over netlink (generation ids, read-back, element
    /// changes); opened on first use.
    kernel: Option<NfTables>,
    watch: Option<Watch>,
    /// The failsafe ruleset is what this daemon installed last.
    failsafe: Option<u16>,
    /// What the last drift check found (status and health report it).
    drift: Vec<String>,
    /// Whether the last listing found the table at all.
    present: bool,
    set_elements: Gauge,
    incremental: Counter,
    /// Installs that failed in a row, and when to look again: a table
    /// someone changed while it was being verified is checked (and so
    /// repaired) again soon, less and less often while it keeps failing.
    failures: u32,
    retry_at: Option<Instant>,
    /// Other firewall managers found on the host.
    others: Coexistence,
}

impl FirewallModule {
    pub fn new(nft: Nft) -> FirewallModule {
        FirewallModule {
            nft,
            installed: None,
            checked: None,
            kernel: None,
            watch: None,
            failsafe: None,
            drift: Vec::new(),
            present: false,
            set_elements: Gauge::default(),
            incremental: Counter::default(),
            failures: 0,
            retry_at: None,
            others: Coexistence::default(),
        }
    }

    pub fn nft(&self) -> &Nft {
        &self.nft
    }

    /// The netlink socket, opened on first use (in the thread's namespace).
    fn kernel(&mut self) -> Result<&mut NfTables, FirewallError> {
        match &mut self.kernel {
            Some(k) => Ok(k),
            empty => Ok(empty.insert(NfTables::open()?)),
        }
    }

    /// The nf_tables generation id now.
    fn generation(&mut self) -> Result<u32, FirewallError> {
        let result = self.kernel()?.generation();
        if result.is_err() {
            // Open a new socket next time rather than read a stale answer.
            self.kernel = None;
        }
        Ok(result?)
    }

    /// The table as the kernel holds it, and the generation it was read at.
    fn read(&mut self) -> Result<(u32, Option<Table>), FirewallError> {
        let result = readback::read(self.kernel()?);
        if result.is_err() {
            self.kernel = None;
        }
        let (generation, table) = result?;
        self.present = table.is_some();
        Ok((generation, table))
    }

    /// The generation now, when the table is known to be exactly what was
    /// installed without reading it: nobody committed since the last check,
    /// or the watcher saw no commit touch table inet bulwark.
    fn known_in_sync(&mut self) -> Option<u32> {
        let now = self.generation().ok()?;
        let (at, found) = self.checked.as_ref()?;
        if !found.is_empty() || self.installed.is_none() {
            return None;
        }
        let unchanged = *at == now
            || self
                .watch
                .as_ref()
                .is_some_and(|w| w.since(*at, now, CATCH_UP) == Since::Unchanged);
        unchanged.then(|| {
            self.checked = Some((now, Vec::new()));
            now
        })
    }

    /// Replace the table with `rs` and prove the kernel holds it.
    fn install(&mut self, rs: Ruleset) -> Result<(), FirewallError> {
        let result = self.install_whole(rs);
        match &result {
            Ok(()) => (self.failures, self.retry_at) = (0, None),
            Err(e) => {
                self.failures += 1;
                let wait = Duration::from_secs(1 << self.failures.min(5)).min(RETRY_MAX);
                self.retry_at = Some(Instant::now() + wait);
                self.checked = self.generation().ok().map(|g| (g, vec![format!("not verified: {e}")]));
            }
        }
        result
    }

    fn install_whole(&mut self, rs: Ruleset) -> Result<(), FirewallError> {
        self.installed = None;
        self.checked = None;
        if let Some(w) = &self.watch {
            w.pause();
        }
        let before = self.generation().ok();
        let applied = self.nft.apply(&rs);
        let read = applied.and_then(|()| self.read());
        if let (Some(before), Ok((after, _))) = (before, &read) {
            self.others.own_commit(before, *after);
        }
        if let Some(w) = self.watch.clone() {
            // The generation read back, or (after a failure) now.
            let now = read.as_ref().map(|(g, _)| *g).ok().or_else(|| self.generation().ok());
            w.resume(now.unwrap_or(0));
        }
        let (generation, table) = read?;
        let table = table.ok_or_else(|| FirewallError::Mismatch {
            what: "the table is missing right after the apply".to_owned(),
        })?;
        let diffs = differences(&Summary::of_ruleset(&rs), &table.summary());
        if !diffs.is_empty() {
            return Err(FirewallError::Mismatch { what: diffs.join("; ") });
        }
        let shape = table.shape();
        drop(table);
        self.verified(Installed { ruleset: rs, shape }, generation);
        crate::memory::trim();
        Ok(())
    }

    fn verified(&mut self, installed: Installed, generation: u32) {
        self.set_elements
            .set(i64::try_from(installed.ruleset.set_elements()).unwrap_or(i64::MAX));
        self.installed = Some(installed);
        self.checked = Some((generation, Vec::new()));
        self.drift.clear();
        self.present = true;
    }

    /// Send only the set elements that differ from what is installed, in
    /// one netlink transaction. `Ok(false)`: this change needs the full
    /// replace (chains or rules differ, the table may have drifted, too many
    /// elements, or an element whose interval touches another).
    fn install_changes(&mut self, rs: &Ruleset) -> Result<bool, FirewallError> {
        let Some(installed) = &self.installed else {
            return Ok(false);
        };
        if installed.ruleset.chains != rs.chains {
            return Ok(false);
        }
        let Some(changes) = element_changes(&installed.ruleset, rs) else {
            return Ok(false);
        };
        let Some(now) = self.known_in_sync() else {
            return Ok(false);
        };
        match self.kernel()?.change_elements(now, &changes) {
            Ok(generation) => {
                self.others.own_commit(now, generation);
                let (added, removed) = changes
                    .iter()
                    .fold((0, 0), |(a, r), c| (a + c.add.len(), r + c.remove.len()));
                log::info!(added, removed, generation; "table inet bulwark: {added} element(s) added, {removed} removed in one netlink transaction");
                let shape = self.installed.take().map(|i| i.shape).unwrap_or_default();
                self.verified(
                    Installed {
                        ruleset: rs.clone(),
                        shape,
                    },
                    generation,
                );
                self.incremental.inc();
                Ok(true)
            }
            Err(e) => {
                log::warn!(error:display = e; "element change not taken; replacing table inet bulwark whole");
                self.checked = None;
                Ok(false)
            }
        }
    }

    /// Look for other firewall managers when the last look is older than
    /// [`super::coexist::EVERY`].
    fn look_for_others_when_due(&mut self, host: &Host) {
        if self.others.due() {
            let generation = self.generation().ok();
            self.others.refresh(host, &self.nft, generation);
        }
    }

    /// What differs between the live table and the last verified install.
    fn drifted(&mut self) -> Result<Vec<String>, FirewallError> {
        if self.installed.is_none() {
            self.present = self.kernel()?.table_exists(TABLE)?;
            return Ok(vec![if self.present {
                "table inet bulwark was never verified by this daemon"
            } else {
                "table inet bulwark was deleted"
            }
            .to_owned()]);
        }
        let now = self.generation()?;
        if let Some((at, found)) = &self.checked {
            let unchanged = *at == now
                || self
                    .watch
                    .as_ref()
                    .is_some_and(|w| w.since(*at, now, CATCH_UP) == Since::Unchanged);
            if unchanged {
                let found = found.clone();
                self.checked = Some((now, found.clone()));
                return Ok(found);
            }
        }
        let (generation, live) = self.read()?;
        let found = self.compare(live);
        crate::memory::trim();
        self.checked = Some((generation, found.clone()));
        Ok(found)
    }

    /// What differs between `live` and the last verified install.
    fn compare(&self, live: Option<Table>) -> Vec<String> {
        let (Some(live), Some(installed)) = (live, &self.installed) else {
            return vec!["table inet bulwark was deleted".to_owned()];
        };
        let mut want = Summary::of_ruleset(&installed.ruleset);
        let before = installed.shape.summary();
        for (name, chain) in &mut want.chains {
            chain.rules = before.chains.get(name).map(|c| c.rules.clone()).unwrap_or_default();
        }
        let mut found = differences(&want, &live.summary());
        if found.is_empty() && live.shape() != installed.shape {
            found.push("modified (set flags, chain types or anonymous sets)".to_owned());
        }
        found
            .into_iter()
            .map(|what| format!("table inet bulwark: {what}"))
            .collect()
    }
}

/// Per set, the elements to add and remove to turn `old` into `new`, when
/// that can be sent as element messages: the same sets, each sorted, at
/// most [`INCREMENTAL_MAX`] changes, and no changed network adjacent to
/// another one (nft may store two adjacent intervals with one shared
/// boundary, which removing one of them by its own pair would break) or
/// ending at the top of the address space (it has no end element).
fn element_changes(old: &Ruleset, new: &Ruleset) -> Option<Vec<SetChange>> {
    if old.sets.len() != new.sets.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut total = 0;
    for (o, n) in old.sets.iter().zip(&new.sets) {
        if (&o.name, o.family) != (&n.name, n.family) || !sorted(&o.elements) || !sorted(&n.elements) {
            return None;
        }
        let (add, remove) = sorted_difference(&n.elements, &o.elements);
        total += add.len() + remove.len();
        if total > INCREMENTAL_MAX {
            return None;
        }
        let clear = |net: &IpNet| has_end(net) && !adjacent(&o.elements, net) && !adjacent(&n.elements, net);
        if !add.iter().chain(&remove).all(clear) {
            return None;
        }
        if !add.is_empty() || !remove.is_empty() {
            out.push(SetChange {
                set: n.name.clone(),
                add,
                remove,
            });
        }
    }
    Some(out)
}

fn sorted(nets: &[IpNet]) -> bool {
    nets.windows(2).all(|w| w[0].broadcast() < w[1].network())
}

/// Whether another network of `set` (sorted, non-overlapping) ends right
/// before `net` or starts right after it.
fn adjacent(set: &[IpNet], net: &IpNet) -> bool {
    let i = set.partition_point(|e| e.network() < net.network());
    let end = after(net);
    set[i.saturating_sub(1)..(i + 2).min(set.len())]
        .iter()
        .any(|e| e != net && (after(e) == net.network() || e.network() == end))
}

impl Module for FirewallModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn failsafe(&mut self, _cx: &mut Cx<'_>, last: Option<&Profile>) -> Result<bool, ModuleError> {
        if self
            .kernel()
            .map_err(failed)?
            .table_exists(TABLE)
            .map_err(|e| failed(e.into()))?
        {
            // The table survived (a daemon restart, not a reboot): it is the
            // last state an operator applied, better than any failsafe.
            return Ok(false);
        }
        let port = last
            .and_then(|p| p.wireguard.as_ref())
            .map_or(FAILSAFE_WIREGUARD, |w| w.listen_port);
        self.install(desired(&failsafe_profile(port))).map_err(failed)?;
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
        let generation = self.generation().ok();
        for f in self.others.refresh(cx.host, &self.nft, generation) {
            cx.warn(f.to_string());
        }
        // The ruleset depends on the firewall section and the VPN interface
        // only: when those are the ones in force (a no-op apply, a change
        // elsewhere) there is nothing to plan and nothing to render.
        let interface = |p: &Profile| p.wireguard.as_ref().map(|w| w.interface.clone());
        let same = current.is_some_and(|c| c.firewall == profile.firewall && interface(c) == interface(profile));
        let mut changes = if same {
            Vec::new()
        } else {
            plan(&desired(profile), current.map(desired).as_ref())
        };
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
        let rs = desired(profile);
        if !self.install_changes(&rs).map_err(failed)? {
            self.install(rs).map_err(failed)?;
        }
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
        self.look_for_others_when_due(cx.host);
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
        self.look_for_others_when_due(cx.host);
        let (level, reason) = match (current, self.failsafe, &self.installed) {
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

    fn status(&mut self, _cx: &mut Cx<'_>, current: Option<&Profile>) -> ModuleStatus {
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
            level: Level::Ok,
            summary,
            details: serde_json::json!({
                "present": self.present,
                "in_sync": self.installed.is_some() && self.drift.is_empty(),
                "failsafe": self.failsafe.is_some(),
                "set_elements": elements,
                "drift": self.drift,
            }),
        }
    }

    fn watch(&mut self, waker: Waker) {
        match Watch::start(waker) {
            Ok(w) => self.watch = Some(w),
            Err(e) => {
                log::warn!(error:display = e; "cannot watch nf_tables events: drift is found by the periodic check only")
            }
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, _current: Option<&Profile>) -> Option<Instant> {
        let touched = match (&self.watch, &self.checked) {
            (Some(w), Some((at, _))) => w.touched_after(*at),
            _ => false,
        };
        let retry = self.retry_at.is_some_and(|t| Instant::now() >= t);
        if retry {
            let wait = Duration::from_secs(1 << self.failures.min(5)).min(RETRY_MAX);
            self.retry_at = Some(Instant::now() + wait);
        }
        if touched || retry {
            cx.request_drift_check();
        }
        self.retry_at
    }

    fn register_metrics(&mut self, registry: &mut Registry) {
        registry.register(
            "firewall_set_elements",
            "Elements in the allow-list sets of table inet bulwark",
            self.set_elements.clone(),
        );
        registry.register(
            "firewall_incremental_applies",
            "Applies sent as set element changes over netlink instead of a table replace",
            self.incremental.clone(),
        );
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
