//! The converge engine: validate → observe → plan → apply → verify → record.
//!
//! [`Engine`] is the only code that changes the host. It runs on one thread
//! ([`task`]), which serialises every request and owns the timers: the
//! confirmation window and the drift loop.

pub mod generations;
pub mod published;
mod report;
pub mod task;
mod timers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use bulwark_model::api::{
    AddPeerRequest, AddPeerResponse, ApplyRequest, ApplyResponse, Change, ChangeOp, PeerInfo, PendingConfirm, Plan,
};
use bulwark_model::{Profile, ValidationErrors};

use crate::audit::{self, AuditLog, Outcome};
use crate::firewall::{self, FirewallError, Nft, Ruleset};
use crate::health::Metrics;
use crate::host::Host;
use crate::k3s::{K3s, K3sError};
use crate::state::{self, StateError};
use crate::wireguard::{WgError, WireGuard};
use generations::{Generation, Meta, Store};

/// Every profile setting that differs, top-level key by key, so no change
/// (a new `[monitoring] listen`, a WireGuard endpoint) is ever planned as
/// "no changes". The firewall is left out: its ruleset diff says it better.
fn setting_changes(old: &Profile, new: &Profile) -> Vec<Change> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    new.iter()
        .filter(|(key, value)| key.as_str() != "firewall" && old.get(key.as_str()) != Some(value))
        .map(|(key, value)| Change {
            module: "profile".to_owned(),
            op: ChangeOp::Change,
            what: format!(
                "{key}: {} -> {value}",
                old.get(key.as_str()).unwrap_or(&serde_json::Value::Null)
            ),
        })
        .collect()
}

/// The profile applied when a host has neither a generation nor a boot profile.
pub const DEFAULT_PROFILE: &str = include_str!("../../../profiles/default.toml");

/// Longest confirmation window accepted: a revert pending for longer than a
/// day is one nobody remembers.
const CONFIRM_MAX: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("firewall change failed; {kept}")]
    Firewall {
        kept: &'static str,
        #[source]
        source: FirewallError,
    },
    #[error("WireGuard configuration failed; {kept}")]
    WireGuard {
        kept: &'static str,
        #[source]
        source: WgError,
    },
    #[error(transparent)]
    Peer(#[from] WgError),
    #[error("K3s configuration failed; {kept}")]
    K3s {
        kept: &'static str,
        #[source]
        source: K3sError,
    },
    #[error("verification failed: {0}")]
    Verify(String),
    #[error("state on disk: {0}")]
    State(#[from] StateError),
}

const KEPT: &str = "the previous ruleset is still in force";
const RESTORED: &str = "the previous generation was put back";

/// The generation in force and what the kernel held right after installing it.
#[derive(Debug)]
struct Current {
    generation: Generation,
    profile: Profile,
    /// `nft list table` right after our own apply: drift is any difference.
    snapshot: Option<String>,
}

#[derive(Debug, Default)]
struct Drift {
    /// Table differs from the snapshot (only stays set under `report`).
    detected: bool,
    repairs: u64,
    next_check: Option<Instant>,
}

/// Retries of a revert that failed: backing off keeps a host that cannot
/// revert from spinning and flooding the audit log.
#[derive(Debug, Default)]
struct RevertRetry {
    failures: u32,
    next: Option<Instant>,
}

/// Outcome of the last apply, rollback or revert.
#[derive(Debug)]
struct LastChange {
    ok: bool,
    message: String,
}

#[derive(Debug)]
pub struct Engine {
    host: Host,
    nft: Nft,
    store: Store,
    audit: AuditLog,
    current: Option<Current>,
    pending: Option<PendingConfirm>,
    drift: Drift,
    revert_retry: RevertRetry,
    last: Option<LastChange>,
    wg: WireGuard,
    k3s: K3s,
    /// Why K3s was not restarted (no systemd, not installed), for health.
    k3s_note: Option<String>,
    /// K3s was last seen exposed: audit only the transition.
    k3s_exposed: bool,
    metrics: Arc<Metrics>,
    /// The monitoring listener address the daemon should serve.
    monitor: watch::Sender<Option<SocketAddr>>,
}

/// What the engine is built from, besides the host paths.
#[derive(Debug)]
pub struct Parts {
    pub nft: Nft,
    pub k3s: K3s,
    pub metrics: Arc<Metrics>,
    pub monitor: watch::Sender<Option<SocketAddr>>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Engine {
    pub fn new(host: Host, parts: Parts) -> Result<Engine, EngineError> {
        let state_dir = host.state_dir();
        state::private_dir(&state_dir, 0o700)?;
        let removed = state::remove_leftovers(&state_dir)?;
        if removed > 0 {
            log::warn!(removed; "removed {removed} temporary file(s) left by an interrupted write");
        }
        let store = Store::open(&state_dir)?;
        let mut audit = AuditLog::open(&host.log_dir())?;
        let (wg, key_created) = WireGuard::open(&host)?;
        if key_created {
            let msg = format!("public key {}", wg.public_key());
            audit.record(&audit::WG_KEY_CREATED, 0, Outcome::Success, &msg)?;
        }
        let Parts {
            nft,
            k3s,
            metrics,
            monitor,
        } = parts;
        Ok(Engine {
            host,
            nft,
            store,
            audit,
            current: None,
            pending: None,
            drift: Drift::default(),
            revert_retry: RevertRetry::default(),
            last: None,
            wg,
            k3s,
            k3s_note: None,
            k3s_exposed: false,
            metrics,
            monitor,
        })
    }

    fn pending_path(&self) -> std::path::PathBuf {
        self.host.state_dir().join("pending-confirm.json")
    }

    /// Bring the host to its last good state: the current generation when
    /// there is one (finishing or resuming an open confirmation window),
    /// otherwise the boot profile as generation 1.
    pub fn start(&mut self, boot: (&str, &str)) -> Result<(), EngineError> {
        let latest = self.store.latest()?;
        self.pending = state::read_json::<PendingConfirm>(&self.pending_path())?;
        if let Some(p) = &self.pending {
            if Some(p.generation) != latest {
                // The confirmed apply never committed: nothing to revert.
                log::warn!(generation = p.generation; "dropping a confirmation for a generation that was never committed");
                state::remove(&self.pending_path())?;
                self.pending = None;
            }
        }
        match latest {
            Some(n) => {
                // A window that closed while the daemon was down reverts
                // straight away, without putting the unconfirmed generation
                // back first.
                if let Some(p) = self.pending.clone().filter(|p| now_unix() >= p.deadline) {
                    self.revert(&p);
                }
                if self.current.is_none() {
                    self.restore_latest_good(n)?;
                }
                let number = self.current_number().unwrap_or(n);
                self.record(
                    &audit::SYS_STARTED,
                    0,
                    Outcome::Success,
                    &format!("restored generation {number}"),
                );
            }
            None => {
                let (source, text) = boot;
                let req = ApplyRequest {
                    profile: text.to_owned(),
                    source: Some(source.to_owned()),
                    dry_run: false,
                    confirm_secs: None,
                    force: false,
                };
                self.apply_as(req, 0, "boot")?;
            }
        }
        // A window that closed while the daemon was down reverts now.
        self.tick();
        Ok(())
    }

    /// Install the newest generation that installs, starting at `latest`:
    /// a host must come back to the last state that worked, not stay down
    /// because the newest one no longer applies (a missing wireguard-go
    /// after a reboot, say).
    fn restore_latest_good(&mut self, latest: u64) -> Result<(), EngineError> {
        let mut first_error = None;
        for n in self.store.numbers()?.into_iter().rev().filter(|n| *n <= latest) {
            match self.load(n).and_then(|g| self.install(g)) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let msg = format!("restoring generation {n} at start-up: {e}");
                    log::error!("{msg}");
                    self.record(&audit::CHG_FAILED, 0, Outcome::Failure, &msg);
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| EngineError::NotFound(format!("generation {latest} does not exist"))))
    }

    fn load(&self, number: u64) -> Result<Generation, EngineError> {
        self.store
            .load(number)?
            .ok_or_else(|| EngineError::NotFound(format!("generation {number} does not exist")))
    }

    /// Make `generation` the one in force on the host without recording a
    /// new generation (start-up, drift repair).
    fn install(&mut self, generation: Generation) -> Result<(), EngineError> {
        let profile = Profile::parse(&generation.meta.source, &generation.profile_text)?;
        let snapshot = self.converge(&profile, &generation.ruleset, 0)?;
        self.make_current(generation, profile, snapshot);
        Ok(())
    }

    pub fn apply(&mut self, req: ApplyRequest, uid: u32) -> Result<ApplyResponse, EngineError> {
        self.apply_as(req, uid, "apply")
    }

    fn apply_as(&mut self, req: ApplyRequest, uid: u32, reason: &str) -> Result<ApplyResponse, EngineError> {
        let source = req.source.clone().unwrap_or_else(|| "profile".to_owned());
        let profile = match Profile::parse(&source, &req.profile) {
            Ok(p) => p,
            Err(errors) => {
                if !req.dry_run {
                    let msg = format!("{source}: {} validation error(s)", errors.errors.len());
                    self.record(&audit::CHG_INVALID, uid, Outcome::Refused, &msg);
                }
                return Err(errors.into());
            }
        };
        if let Some(secs) = req.confirm_secs {
            if secs == 0 || Duration::from_secs(secs) > CONFIRM_MAX {
                return Err(EngineError::BadRequest(format!(
                    "confirm window {secs}s is outside 1..={} seconds",
                    CONFIRM_MAX.as_secs()
                )));
            }
        }
        if let (Some(p), false) = (&self.pending, req.dry_run) {
            return Err(EngineError::Conflict(format!(
                "generation {} awaits confirmation until its window closes; run `bulwarkctl confirm` or wait for the revert",
                p.generation
            )));
        }

        let vpn = profile.wireguard.as_ref().map(|w| w.interface.as_str());
        let desired = firewall::render(&profile.firewall, vpn);
        let (plan, in_sync) = self.plan(&profile, &desired)?;
        let mut response = ApplyResponse {
            profile: profile.name.clone(),
            generation: self.current_number(),
            plan,
            changed: false,
            dry_run: req.dry_run,
            confirm_deadline: None,
        };
        if req.dry_run {
            self.nft.check(&desired).map_err(|source| EngineError::Firewall {
                kept: "nothing was changed",
                source,
            })?;
            return Ok(response);
        }
        if response.plan.is_empty() && in_sync {
            return Ok(response);
        }

        let number = self.store.latest()?.map_or(1, |n| n + 1);
        if let Some(secs) = req.confirm_secs {
            // Written before the kernel changes: a crash at any later point
            // still reverts when the window closes.
            let pending = PendingConfirm {
                generation: number,
                revert_to: self.current_number(),
                deadline: now_unix() + secs,
            };
            state::write_json(&self.pending_path(), &pending)?;
            self.pending = Some(pending);
        }
        let generation = Generation {
            meta: Meta {
                number,
                profile: profile.name.clone(),
                source,
                created: now_unix(),
                uid,
                reason: reason.to_owned(),
            },
            profile_text: req.profile,
            ruleset: desired,
        };
        match self.commit(generation) {
            Ok(()) => {
                let msg = format!(
                    "generation {number} from profile {} ({} change(s))",
                    profile.name,
                    response.plan.changes.len()
                );
                self.record(&audit::CHG_APPLIED, uid, Outcome::Success, &msg);
                self.last = Some(LastChange { ok: true, message: msg });
                response.generation = Some(number);
                response.changed = true;
                response.confirm_deadline = self.pending.as_ref().map(|p| p.deadline);
                Ok(response)
            }
            Err(e) => {
                if self.pending.take().is_some() {
                    state::remove(&self.pending_path())?;
                }
                let msg = format!("profile {}: {e}", profile.name);
                self.record(&audit::CHG_FAILED, uid, Outcome::Failure, &msg);
                self.last = Some(LastChange {
                    ok: false,
                    message: msg,
                });
                Err(e)
            }
        }
    }

    /// Apply a generation to the host, record it, and make it current. On a
    /// failure after the host changed, the current generation is put back.
    fn commit(&mut self, generation: Generation) -> Result<(), EngineError> {
        let profile = Profile::parse(&generation.meta.source, &generation.profile_text)?;
        let snapshot = self.converge(&profile, &generation.ruleset, generation.meta.uid)?;
        if let Err(e) = self.store.commit(&generation) {
            self.restore_current();
            return Err(e.into());
        }
        self.make_current(generation, profile, snapshot);
        Ok(())
    }

    fn make_current(&mut self, generation: Generation, profile: Profile, snapshot: String) {
        self.drift = Drift {
            repairs: self.drift.repairs,
            ..Drift::default()
        };
        self.metrics.set_generation(generation.meta.number);
        self.metrics
            .set_firewall_set_elements(generation.ruleset.set_elements());
        self.monitor
            .send_if_modified(|listen| std::mem::replace(listen, profile.monitoring.listen) != *listen);
        self.current = Some(Current {
            generation,
            profile,
            snapshot: Some(snapshot),
        });
        self.schedule_drift_check();
        self.notify_status();
    }

    /// Converge every module, in dependency order (firewall, WireGuard, K3s),
    /// and read the firewall back. If a module fails, those already changed
    /// are put back to the current generation. Returns the firewall snapshot.
    fn converge(&mut self, profile: &Profile, ruleset: &Ruleset, uid: u32) -> Result<String, EngineError> {
        let started = Instant::now();
        self.nft
            .apply(ruleset)
            .map_err(|source| EngineError::Firewall { kept: KEPT, source })?;
        let result = self
            .converge_modules(profile, uid)
            .and_then(|()| match self.nft.list() {
                Ok(Some(snapshot)) => Ok(snapshot),
                Ok(None) => Err(EngineError::Verify(
                    "table inet bulwark is missing right after the apply".to_owned(),
                )),
                Err(source) => Err(EngineError::Firewall { kept: RESTORED, source }),
            });
        if result.is_err() {
            self.restore_current();
        }
        self.metrics.observe_converge(started.elapsed());
        result
    }

    /// The modules after the firewall.
    fn converge_modules(&mut self, profile: &Profile, uid: u32) -> Result<(), EngineError> {
        if let Some(wg) = &profile.wireguard {
            self.wg
                .apply(wg)
                .map_err(|source| EngineError::WireGuard { kept: RESTORED, source })?;
            if let Some(backend) = self.wg.backend_in_use() {
                log::info!(interface = wg.interface.as_str(), backend; "WireGuard {} up on the {backend} backend", wg.interface);
            }
        }
        let outcome = self
            .k3s
            .apply(profile.k3s.as_ref(), profile.k3s_bind_ip())
            .map_err(|source| EngineError::K3s { kept: RESTORED, source })?;
        if outcome.changed {
            let msg = format!(
                "bind {}",
                profile.k3s_bind_ip().map_or("removed".to_owned(), |ip| ip.to_string())
            );
            self.record(&audit::K3S_CONFIGURED, uid, Outcome::Success, &msg);
        }
        if outcome.restarted {
            self.record(&audit::K3S_RESTARTED, uid, Outcome::Success, "k3s.service restarted");
        }
        self.k3s_note = outcome.note;
        Ok(())
    }

    /// Put the current generation back after a failed change.
    fn restore_current(&mut self) {
        let Some(cur) = &self.current else { return };
        let (ruleset, profile) = (cur.generation.ruleset.clone(), cur.profile.clone());
        if let Err(e) = self.nft.apply(&ruleset) {
            log::error!(error:display = e; "could not restore the previous ruleset");
        }
        if let Err(e) = self.converge_modules(&profile, 0) {
            log::error!(error:display = e; "could not restore the previous module state");
        }
    }

    fn current_number(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.generation.meta.number)
    }

    /// The plan from what is in force to `desired`, and whether the live table
    /// still matches the snapshot of the current generation.
    fn plan(&self, profile: &Profile, desired: &Ruleset) -> Result<(Plan, bool), EngineError> {
        let live = self.nft.list().map_err(|source| EngineError::Firewall {
            kept: "nothing was changed",
            source,
        })?;
        let mut changes = Vec::new();
        let in_sync = match &self.current {
            Some(cur) => {
                changes.extend(setting_changes(&cur.profile, profile));
                changes.extend(firewall::plan(desired, Some(&cur.generation.ruleset)));
                live.is_some() && live == cur.snapshot
            }
            None => {
                changes.extend(firewall::plan(desired, None));
                false
            }
        };
        changes.extend(self.wg.plan(profile.wireguard.as_ref()));
        changes.extend(self.k3s.plan(profile.k3s.as_ref(), profile.k3s_bind_ip()));
        if !in_sync && self.current.is_some() {
            changes.push(Change {
                module: "firewall".to_owned(),
                op: ChangeOp::Change,
                what: "table inet bulwark drifted from the current generation; it will be replaced".to_owned(),
            });
        }
        Ok((Plan { changes }, in_sync))
    }

    pub fn confirm(&mut self, uid: u32) -> Result<ApplyResponse, EngineError> {
        let Some(pending) = self.pending.take() else {
            return Err(EngineError::Conflict("no apply is waiting for confirmation".to_owned()));
        };
        state::remove(&self.pending_path())?;
        let msg = format!("generation {} confirmed", pending.generation);
        self.record(&audit::CHG_CONFIRMED, uid, Outcome::Success, &msg);
        self.notify_status();
        Ok(self.response_for(pending.generation))
    }

    fn response_for(&self, generation: u64) -> ApplyResponse {
        ApplyResponse {
            profile: self
                .current
                .as_ref()
                .map(|c| c.profile.name.clone())
                .unwrap_or_default(),
            generation: Some(generation),
            ..ApplyResponse::default()
        }
    }

    /// Re-install generation `target` (default: the one before the current)
    /// as a new generation. Also ends an open confirmation window.
    pub fn rollback(&mut self, target: Option<u64>, uid: u32) -> Result<ApplyResponse, EngineError> {
        let numbers = self.store.numbers()?;
        let current = numbers.last().copied();
        let target =
            match target {
                Some(n) if numbers.contains(&n) => n,
                Some(n) => {
                    return Err(EngineError::NotFound(format!(
                        "generation {n} does not exist; see `bulwarkctl generations`"
                    )))
                }
                None => numbers.iter().rev().nth(1).copied().ok_or_else(|| {
                    EngineError::NotFound("there is no earlier generation to roll back to".to_owned())
                })?,
            };
        let response = self.reinstall(target, uid, "rollback")?;
        if self.pending.take().is_some() {
            state::remove(&self.pending_path())?;
        }
        let msg = format!(
            "generation {} restores generation {target} (was {})",
            response.generation.unwrap_or(0),
            current.unwrap_or(0)
        );
        self.record(&audit::CHG_ROLLBACK, uid, Outcome::Success, &msg);
        Ok(response)
    }

    /// Commit an old generation's profile and ruleset as a new generation.
    fn reinstall(&mut self, target: u64, uid: u32, reason: &str) -> Result<ApplyResponse, EngineError> {
        let old = self.load(target)?;
        let previous = self.current.as_ref().map(|c| c.generation.ruleset.clone());
        let number = self.store.latest()?.map_or(1, |n| n + 1);
        let plan = Plan {
            changes: firewall::plan(&old.ruleset, previous.as_ref()),
        };
        let generation = Generation {
            meta: Meta {
                number,
                created: now_unix(),
                uid,
                reason: reason.to_owned(),
                ..old.meta
            },
            ..old
        };
        let profile = generation.meta.profile.clone();
        if let Err(e) = self.commit(generation) {
            let msg = format!("{reason} to generation {target}: {e}");
            self.record(&audit::CHG_FAILED, uid, Outcome::Failure, &msg);
            self.last = Some(LastChange {
                ok: false,
                message: msg,
            });
            return Err(e);
        }
        self.last = Some(LastChange {
            ok: true,
            message: format!("{reason} to generation {target}"),
        });
        Ok(ApplyResponse {
            profile,
            generation: Some(number),
            plan,
            changed: true,
            ..ApplyResponse::default()
        })
    }

    /// Record an audit event. The change it reports has already happened,
    /// so a failure to write the event is logged, not turned into a failed
    /// request (an add-peer's config, shown once, must not be lost to it).
    fn record(&mut self, kind: &audit::EventKind, uid: u32, outcome: Outcome, message: &str) {
        if let Err(e) = self.audit.record(kind, uid, outcome, message) {
            log::error!(error:display = e, event = kind.id; "could not write audit event: {message}");
        }
    }

    /// The `[wireguard]` section in force, or why peers cannot be managed.
    fn vpn(&self) -> Result<bulwark_model::profile::WireGuard, EngineError> {
        self.current
            .as_ref()
            .and_then(|c| c.profile.wireguard.clone())
            .ok_or_else(|| {
                EngineError::Conflict("the profile in force has no [wireguard] section; apply one first".to_owned())
            })
    }

    pub fn add_peer(&mut self, req: AddPeerRequest, uid: u32) -> Result<AddPeerResponse, EngineError> {
        let vpn = self.vpn()?;
        let added = self.wg.add_peer(&vpn, req)?;
        let p = &added.peer;
        let msg = format!("peer {} {} key {}", p.name, p.address, p.public_key);
        self.record(&audit::WG_PEER_ADDED, uid, Outcome::Success, &msg);
        Ok(added)
    }

    pub fn remove_peer(&mut self, name: &str, uid: u32) -> Result<PeerInfo, EngineError> {
        let vpn = self.vpn()?;
        let removed = self.wg.remove_peer(&vpn, name)?;
        let msg = format!("peer {} {} key {}", removed.name, removed.address, removed.public_key);
        self.record(&audit::WG_PEER_REMOVED, uid, Outcome::Success, &msg);
        Ok(removed)
    }

    pub fn peers(&self) -> Result<Vec<PeerInfo>, EngineError> {
        let vpn = self.current.as_ref().and_then(|c| c.profile.wireguard.as_ref());
        Ok(self.wg.peers(vpn)?)
    }

    pub fn generations(&self) -> Result<Vec<bulwark_model::api::GenerationInfo>, EngineError> {
        Ok(self.store.list()?)
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn audit_mut(&mut self) -> &mut AuditLog {
        &mut self.audit
    }

    fn notify_status(&self) {
        let status = match &self.current {
            Some(c) => format!(
                "generation {} ({}){}",
                c.generation.meta.number,
                c.profile.name,
                if self.drift.detected { ", drift detected" } else { "" }
            ),
            None => "no generation".to_owned(),
        };
        crate::notify::status(&status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_changed_setting_outside_the_firewall_is_planned() {
        let old = Profile::parse("a", "[profile]\nname = \"a\"\n[firewall]\npublic_tcp = [22]\n").unwrap();
        let new = Profile::parse(
            "b",
            "[profile]\nname = \"a\"\ndrift = \"report\"\n[firewall]\npublic_tcp = [23]\n\
             [monitoring]\nlisten = \"127.0.0.1:9469\"\n",
        )
        .unwrap();
        let what: Vec<String> = setting_changes(&old, &new).into_iter().map(|c| c.what).collect();
        assert_eq!(
            what,
            [
                "drift: \"repair\" -> \"report\"",
                "monitoring: {\"listen\":null} -> {\"listen\":\"127.0.0.1:9469\"}",
            ]
        );
        assert!(setting_changes(&old, &old).is_empty());
    }
}
