//! The converge engine: validate → observe → plan → apply → verify → record.
//!
//! [`Engine`] is the only code that changes the host. It runs on one thread
//! ([`task`]), which serialises every request and owns the timers: the
//! confirmation window, the drift loop and the modules' own ticks. It never
//! names a module: every operation iterates the registry ([`registry`]) in
//! order, through the module contract ([`crate::module::Module`]).
//!
//! A failed change leaves what was in force before: the engine re-applies
//! the profile in force (or, with none, the failsafe) to every module it
//! touched, and the error says which of them came back.

pub mod error;
pub mod generations;
pub mod published;
pub mod registry;
mod report;
mod startup;
pub mod task;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use bulwark_model::api::{ApplyRequest, ApplyResponse, BootProfile, Change, ChangeOp, Check, PendingConfirm, Plan};
use bulwark_model::Profile;

use crate::audit::{self, AuditLog, EventKind, Outcome};
use crate::clock::now_unix;
use crate::firewall::failsafe_profile;
use crate::health::Metrics;
use crate::host::Host;
use crate::integrity::IntegrityKey;
use crate::module::{Cx, Module, ModuleError};
use crate::state;
pub use error::EngineError;
use generations::{profile_digest, Generation, Meta, Store};
pub use startup::{failsafe_first, Failsafe};

/// The profile applied when a host has neither a generation nor a boot profile.
pub const DEFAULT_PROFILE: &str = include_str!("../../../profiles/default.toml");

/// Longest confirmation window accepted: a revert pending for longer than a
/// day is one nobody remembers.
const CONFIRM_MAX: Duration = Duration::from_secs(24 * 3600);

/// One module of the registry and what the engine knows about it.
struct Slot {
    module: Box<dyn Module>,
    /// Why its state could not be loaded; `None` once it has loaded.
    broken: Option<String>,
    /// Why it could not be brought to the generation in force at start-up;
    /// cleared by the next successful apply.
    failed: Option<String>,
    /// What its last drift check found (under `report`, it stays).
    drift: Vec<String>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("module", &self.module.name())
            .field("broken", &self.broken)
            .field("failed", &self.failed)
            .finish()
    }
}

/// The generation in force and its profile, parsed once.
#[derive(Debug)]
struct Current {
    meta: Meta,
    /// Shared, not copied: a profile of 200,000 networks is megabytes, and
    /// every plan, tick, status and action reads it.
    profile: Arc<Profile>,
}

#[derive(Debug, Default)]
struct Drift {
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
    store: Store,
    audit: AuditLog,
    slots: Vec<Slot>,
    current: Option<Current>,
    /// The WireGuard port the failsafe keeps open.
    failsafe_port: u16,
    pending: Option<PendingConfirm>,
    drift: Drift,
    revert_retry: RevertRetry,
    last: Option<LastChange>,
    /// What start-up found wrong (refused generations, a failsafe in
    /// force), shown in health until the next successful change.
    notes: Vec<Check>,
    metrics: Arc<Metrics>,
    /// The monitoring listener address the daemon should serve.
    monitor: watch::Sender<Option<SocketAddr>>,
    /// Warnings modules gave during the request being handled.
    warnings: Vec<String>,
    /// The last [`Engine::boot_profile`] answer, with the file's stamp and
    /// the generation it was judged against: status is published every
    /// few seconds, and parsing a profile of 200,000 networks each time
    /// would cost most of a core.
    boot_seen: Option<(FileStamp, Option<u64>, BootProfile)>,
}

/// A file's identity, size and times: while they stay the same, so does
/// its text.
type FileStamp = (u64, u64, u64, i64, i64, i64, i64);

fn file_stamp(m: &std::fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    (
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// What the engine is built from, besides the host paths.
pub struct Parts {
    /// The registry, in converge order.
    pub modules: Vec<Box<dyn Module>>,
    /// What [`failsafe_first`] did before the engine existed.
    pub failsafe: Failsafe,
    pub metrics: Arc<Metrics>,
    pub monitor: watch::Sender<Option<SocketAddr>>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.modules.iter().map(|m| m.name()).collect();
        f.debug_struct("Parts").field("modules", &names).finish_non_exhaustive()
    }
}

impl Engine {
    /// Open the state (generations, audit log, integrity key). Fails only
    /// when the state directory itself cannot be used; module state is
    /// loaded later, in [`Engine::start`], where a failure is reported
    /// instead of stopping the daemon.
    pub fn new(host: Host, parts: Parts) -> Result<Engine, EngineError> {
        let state_dir = host.state_dir();
        state::private_dir(&state_dir, 0o700)?;
        let removed = state::remove_leftovers(&state_dir)?;
        if removed > 0 {
            log::warn!(removed; "removed {removed} temporary file(s) left by an interrupted write");
        }
        let mut audit = AuditLog::open(&host)?;
        let key = match IntegrityKey::load_or_create(&state_dir) {
            Ok(k) => k,
            Err(e) => {
                // Without a usable key nothing sealed can be trusted: set the
                // file aside (for forensics), start a new key, and let every
                // generation sealed with the old one be refused.
                let aside = startup::set_aside(&state_dir.join("integrity.key"))?;
                let msg = format!("{e}; moved to {}", aside.display());
                log::error!("integrity key: {msg}");
                let _ = audit.record(&audit::SYS_KEY_REPLACED, 0, Outcome::Failure, &msg);
                IntegrityKey::load_or_create(&state_dir)?
            }
        };
        let (store, sealed) = Store::open(&state_dir, key)?;
        if !sealed.is_empty() {
            let msg = format!("generation(s) {sealed:?} sealed on first open");
            let _ = audit.record(&audit::CHG_SEALED, 0, Outcome::Success, &msg);
        }
        let Parts {
            modules,
            failsafe,
            metrics,
            monitor,
        } = parts;
        let mut engine = Engine {
            host,
            store,
            audit,
            slots: modules
                .into_iter()
                .map(|module| Slot {
                    module,
                    broken: None,
                    failed: None,
                    drift: Vec::new(),
                })
                .collect(),
            current: None,
            failsafe_port: failsafe.port,
            pending: None,
            drift: Drift::default(),
            revert_retry: RevertRetry::default(),
            last: None,
            notes: Vec::new(),
            metrics,
            monitor,
            warnings: Vec::new(),
            boot_seen: None,
        };
        for (module, message) in failsafe.installed {
            engine.record(
                &audit::FW_FAILSAFE,
                0,
                Outcome::Failure,
                &format!("{module}: {message}"),
            );
        }
        Ok(engine)
    }

    fn pending_path(&self) -> std::path::PathBuf {
        self.host.state_dir().join("pending-confirm.json")
    }

    /// The profile the host should be in: the generation in force, or the
    /// failsafe when none is.
    fn in_force(&self) -> Arc<Profile> {
        match &self.current {
            Some(c) => c.profile.clone(),
            None => Arc::new(failsafe_profile(self.failsafe_port)),
        }
    }

    /// "generation 7" or "the failsafe ruleset": what a restore goes back to.
    fn in_force_name(&self) -> String {
        match &self.current {
            Some(c) => format!("generation {}", c.meta.number),
            None => "the failsafe".to_owned(),
        }
    }

    fn current_number(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.meta.number)
    }

    /// Run `f` on module `i` with a context for `uid`, then record the
    /// audit events it asked for.
    fn with_module<T>(&mut self, i: usize, uid: u32, f: impl FnOnce(&mut dyn Module, &mut Cx<'_>) -> T) -> T {
        self.with_module_forced(i, uid, false, f)
    }

    /// [`Engine::with_module`], passing on the request's `force`.
    fn with_module_forced<T>(
        &mut self,
        i: usize,
        uid: u32,
        force: bool,
        f: impl FnOnce(&mut dyn Module, &mut Cx<'_>) -> T,
    ) -> T {
        let host = self.host.clone();
        let mut cx = Cx::new(&host, uid).with_force(force);
        let out = f(self.slots[i].module.as_mut(), &mut cx);
        for e in cx.take_events() {
            self.record(e.kind, uid, e.outcome, &e.message);
        }
        let name = self.slots[i].module.name();
        for w in cx.take_warnings() {
            log::warn!(module = name; "{w}");
            self.warnings.push(format!("{name}: {w}"));
        }
        out
    }

    /// Load every module whose state did not load yet. Returns the first
    /// one that still cannot, with why.
    fn load_modules(&mut self) -> Option<(&'static str, String)> {
        let mut first = None;
        for i in 0..self.slots.len() {
            if self.slots[i].broken.is_none() && first.is_some() {
                continue;
            }
            let was_broken = self.slots[i].broken.is_some();
            match self.with_module(i, 0, |m, cx| m.load(cx)) {
                Ok(()) => {
                    if was_broken {
                        log::info!(module = self.slots[i].module.name(); "module state loaded");
                    }
                    self.slots[i].broken = None;
                }
                Err(e) => {
                    let reason = chain(&e);
                    let name = self.slots[i].module.name();
                    if !was_broken {
                        self.record(&audit::SYS_MODULE_BROKEN, 0, Outcome::Failure, &reason);
                    }
                    self.slots[i].broken = Some(reason.clone());
                    first.get_or_insert((name, reason));
                }
            }
        }
        first
    }

    pub fn apply(&mut self, req: ApplyRequest, uid: u32) -> Result<ApplyResponse, EngineError> {
        let source = req.source.clone().unwrap_or_else(|| "profile".to_owned());
        // The text in force was validated when it was applied: the same text
        // again is not parsed a second time (200,000 networks take a while).
        let digest = generations::profile_digest(&req.profile);
        let same = self.current.as_ref().filter(|c| c.meta.digest == digest);
        let parsed = match same {
            Some(c) => Ok(c.profile.clone()),
            None => Profile::parse(&source, &req.profile).map(Arc::new),
        };
        let profile = match parsed {
            Ok(p) => p,
            Err(errors) => {
                if !req.dry_run {
                    let msg = format!("{source}: {} validation error(s)", errors.errors.len());
                    self.record(&audit::CHG_INVALID, uid, Outcome::Refused, &msg);
                }
                return Err(errors.into());
            }
        };
        // What guards a new profile against the live host (an interface
        // that carries the default route trusted as a cluster interface)
        // runs here, before any module changes anything. Reverts, restores
        // and drift repair put back what was in force and are not held up.
        for i in 0..self.slots.len() {
            if let Err(e) = self.with_module_forced(i, uid, req.force, |m, cx| m.preflight(cx, &profile)) {
                if !req.dry_run {
                    self.record(
                        &audit::CHG_INVALID,
                        uid,
                        Outcome::Refused,
                        &format!("{source}: {}", chain(&e)),
                    );
                }
                return Err(e.into());
            }
        }
        self.apply_profile(profile, digest, req, uid, "apply")
    }

    /// Apply a parsed profile (parsed once per request); `digest` is its
    /// text's, computed once per request too.
    fn apply_profile(
        &mut self,
        profile: Arc<Profile>,
        digest: String,
        req: ApplyRequest,
        uid: u32,
        reason: &str,
    ) -> Result<ApplyResponse, EngineError> {
        if let Some(secs) = req.confirm_secs {
            if secs == 0 || Duration::from_secs(secs) > CONFIRM_MAX {
                return Err(EngineError::ConfirmWindow {
                    secs,
                    max: CONFIRM_MAX.as_secs(),
                });
            }
        }
        if let (Some(p), false) = (&self.pending, req.dry_run) {
            return Err(EngineError::ConfirmPending {
                generation: p.generation,
            });
        }
        self.warnings.clear();
        let plan = self.plan(&profile)?;
        let mut response = ApplyResponse {
            profile: profile.name.clone(),
            generation: self.current_number(),
            plan,
            changed: false,
            dry_run: req.dry_run,
            confirm_deadline: None,
            digest: Some(digest),
            warnings: std::mem::take(&mut self.warnings),
        };
        if req.dry_run {
            for i in 0..self.slots.len() {
                self.with_module(i, uid, |m, cx| m.check(cx, &profile))?;
            }
            return Ok(response);
        }
        if response.plan.is_empty() && self.current.is_some() {
            return Ok(response);
        }

        let number = self.store.latest()?.map_or(1, |n| n + 1);
        if let Some(secs) = req.confirm_secs {
            // Written before the host changes: a crash at any later point
            // still reverts when the window closes.
            let pending = PendingConfirm {
                generation: number,
                revert_to: self.current_number(),
                deadline: now_unix() + secs,
            };
            state::write_json(&self.pending_path(), &pending)?;
            self.pending = Some(pending);
        }
        let generation = self.generation(number, &profile, req.profile, req.source, uid, reason);
        match self.commit(generation, profile, uid) {
            Ok(()) => {
                let msg = format!(
                    "generation {number} from profile {} ({} change(s))",
                    response.profile,
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
                self.failed_change(uid, format!("profile {}: {}", response.profile, chain(&e)));
                Err(e)
            }
        }
    }

    /// A new generation for `profile`, with every module's artifacts.
    fn generation(
        &self,
        number: u64,
        profile: &Profile,
        text: String,
        source: Option<String>,
        uid: u32,
        reason: &str,
    ) -> Generation {
        let artifacts = self
            .slots
            .iter()
            .map(|s| (s.module.name().to_owned(), s.module.render(profile)))
            .filter(|(_, files)| !files.is_empty())
            .collect();
        Generation {
            meta: Meta {
                number,
                profile: profile.name.clone(),
                source: source.unwrap_or_else(|| "profile".to_owned()),
                created: now_unix(),
                uid,
                reason: reason.to_owned(),
                digest: String::new(),
                version: String::new(),
                seal: String::new(),
            },
            profile_text: text,
            artifacts,
        }
    }

    fn failed_change(&mut self, uid: u32, message: String) {
        self.metrics.set_last_change(now_unix(), false);
        self.record(&audit::CHG_FAILED, uid, Outcome::Failure, &message);
        self.last = Some(LastChange { ok: false, message });
    }

    /// Converge the host to `profile`, record the generation, and make it
    /// current. On any failure what was in force before is put back.
    fn commit(&mut self, mut generation: Generation, profile: Arc<Profile>, uid: u32) -> Result<(), EngineError> {
        self.converge(&profile, uid)?;
        if let Err(e) = self.store.commit(&mut generation) {
            let (restored, not_restored) = self.restore(self.slots.len(), uid);
            return Err(EngineError::Apply {
                failed: ModuleError::new("generations", crate::module::ErrorClass::State, e),
                restored,
                not_restored,
                target: self.in_force_name(),
            });
        }
        self.make_current(generation.meta, profile);
        Ok(())
    }

    /// Apply `profile` to every module in order. A module that fails stops
    /// the converge; it and every module before it are put back to what was
    /// in force. Nothing is touched while a module cannot load its state.
    fn converge(&mut self, profile: &Profile, uid: u32) -> Result<(), EngineError> {
        if let Some((module, reason)) = self.load_modules() {
            return Err(EngineError::ModuleBroken { module, reason });
        }
        let started = Instant::now();
        for i in 0..self.slots.len() {
            if let Err(failed) = self.with_module(i, uid, |m, cx| m.apply(cx, profile)) {
                let (restored, not_restored) = self.restore(i + 1, uid);
                self.metrics.observe_converge(started.elapsed());
                return Err(EngineError::Apply {
                    failed,
                    restored,
                    not_restored,
                    target: self.in_force_name(),
                });
            }
        }
        self.metrics.observe_converge(started.elapsed());
        Ok(())
    }

    /// Put the first `upto` modules back to the profile in force; returns
    /// which came back and which could not.
    fn restore(&mut self, upto: usize, uid: u32) -> (Vec<&'static str>, Vec<(&'static str, String)>) {
        let target = self.in_force();
        let (mut restored, mut not_restored) = (Vec::new(), Vec::new());
        for i in 0..upto.min(self.slots.len()) {
            let name = self.slots[i].module.name();
            match self.with_module(i, uid, |m, cx| m.apply(cx, &target)) {
                Ok(()) => restored.push(name),
                Err(e) => {
                    log::error!(module = name, error:display = chain(&e); "could not put the module back");
                    not_restored.push((name, chain(&e)));
                }
            }
        }
        (restored, not_restored)
    }

    fn make_current(&mut self, meta: Meta, profile: Arc<Profile>) {
        self.metrics.set_generation(meta.number);
        self.metrics.set_last_change(meta.created, true);
        self.monitor
            .send_if_modified(|listen| std::mem::replace(listen, profile.monitoring.listen) != *listen);
        let keep = profile.keep_generations;
        self.current = Some(Current { meta, profile });
        for slot in &mut self.slots {
            slot.failed = None;
            slot.drift.clear();
        }
        self.notes.clear();
        self.schedule_drift_check();
        self.prune(keep);
        self.notify_status();
    }

    /// Keep the newest `keep` generations and the one a pending confirmation
    /// reverts to.
    fn prune(&mut self, keep: usize) {
        let protect: Vec<u64> = self.pending.iter().filter_map(|p| p.revert_to).collect();
        match self.store.prune(keep, &protect) {
            Ok(removed) if !removed.is_empty() => {
                let msg = format!(
                    "{} generation(s) removed, {}..={}; keeping the newest {keep}",
                    removed.len(),
                    removed[0],
                    removed[removed.len() - 1]
                );
                self.record(&audit::CHG_PRUNED, 0, Outcome::Success, &msg);
            }
            Ok(_) => {}
            Err(e) => log::error!(error:display = e; "could not prune old generations"),
        }
    }

    /// The plan from what is in force to `profile`: each module's changes,
    /// then profile settings outside any module's own plan.
    fn plan(&mut self, profile: &Profile) -> Result<Plan, EngineError> {
        if let Some((module, reason)) = self.load_modules() {
            return Err(EngineError::ModuleBroken { module, reason });
        }
        let current = self.current.as_ref().map(|c| c.profile.clone());
        let mut changes = Vec::new();
        let mut planned = Vec::new();
        for i in 0..self.slots.len() {
            let c = self.with_module(i, 0, |m, cx| m.plan(cx, profile, current.as_deref()))?;
            if !c.is_empty() {
                planned.push(self.slots[i].module.name());
            }
            changes.extend(c);
        }
        if let Some(cur) = &current {
            changes.extend(setting_changes(cur, profile, &planned));
        }
        Ok(Plan { changes })
    }

    /// Keep the pending generation. With `expected`, only when that is
    /// the one pending: an operator confirms their own change, never one
    /// made by someone else in the meantime.
    pub fn confirm(&mut self, uid: u32, expected: Option<u64>) -> Result<ApplyResponse, EngineError> {
        let Some(pending) = self.pending.clone() else {
            return Err(EngineError::NothingToConfirm);
        };
        if let Some(asked) = expected.filter(|n| *n != pending.generation) {
            return Err(EngineError::ConfirmOther {
                asked,
                pending: pending.generation,
            });
        }
        state::remove(&self.pending_path())?;
        self.pending = None;
        let msg = format!("generation {} confirmed", pending.generation);
        self.record(&audit::CHG_CONFIRMED, uid, Outcome::Success, &msg);
        self.notify_status();
        let current = self.current.as_ref();
        Ok(ApplyResponse {
            profile: current.map(|c| c.profile.name.clone()).unwrap_or_default(),
            generation: Some(pending.generation),
            digest: current.map(|c| c.meta.digest.clone()),
            ..ApplyResponse::default()
        })
    }

    /// The boot profile (`/etc/bulwark/profile.toml` under the root)
    /// against the profile in force; `None` when there is no such file.
    /// Judged again only when the file or the generation in force changed.
    fn boot_profile(&mut self) -> Option<BootProfile> {
        use std::io::Read;
        let path = self.host.default_profile();
        let unreadable = |e: std::io::Error| {
            Some(BootProfile {
                path: path.display().to_string(),
                digest: String::new(),
                differs: true,
                reason: format!("cannot be read: {e}"),
            })
        };
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.boot_seen = None;
                return None;
            }
            Err(e) => return unreadable(e),
        };
        let stamp = match file.metadata() {
            Ok(m) => file_stamp(&m),
            Err(e) => return unreadable(e),
        };
        let number = self.current_number();
        if let Some((_, _, seen)) = self.boot_seen.as_ref().filter(|(s, n, _)| *s == stamp && *n == number) {
            return Some(seen.clone());
        }
        let mut bytes = Vec::new();
        if let Err(e) = file.read_to_end(&mut bytes) {
            return unreadable(e);
        }
        let text = String::from_utf8_lossy(&bytes);
        let digest = profile_digest(&text);
        let (differs, reason) = match (&self.current, Profile::parse(&path.display().to_string(), &text)) {
            (_, Err(v)) => (true, format!("not a valid profile ({} error(s))", v.errors.len())),
            (None, Ok(_)) => (true, "no generation is in force".to_owned()),
            (Some(c), Ok(_)) if c.meta.digest == digest => {
                (false, format!("the text of generation {}", c.meta.number))
            }
            (Some(c), Ok(p)) if p == *c.profile => (
                false,
                format!("the settings of generation {} (the text differs)", c.meta.number),
            ),
            (Some(c), Ok(p)) => (
                true,
                format!(
                    "profile {} differs from generation {} (profile {}); it takes effect only through `bulwarkctl apply`",
                    p.name, c.meta.number, c.profile.name
                ),
            ),
        };
        let seen = BootProfile {
            path: path.display().to_string(),
            digest,
            differs,
            reason,
        };
        self.boot_seen = Some((stamp, number, seen.clone()));
        Some(seen)
    }

    /// Re-install generation `target` (default: the one before the current)
    /// as a new generation. Also ends an open confirmation window.
    pub fn rollback(&mut self, target: Option<u64>, uid: u32) -> Result<ApplyResponse, EngineError> {
        let numbers = self.store.numbers()?;
        let current = numbers.last().copied();
        let target = match target {
            Some(n) if numbers.contains(&n) => n,
            Some(n) => return Err(EngineError::NoSuchGeneration { number: n }),
            None => numbers
                .iter()
                .rev()
                .nth(1)
                .copied()
                .ok_or(EngineError::NoEarlierGeneration)?,
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

    /// Commit an old generation's profile as a new generation, planned and
    /// converged like any apply.
    fn reinstall(&mut self, target: u64, uid: u32, reason: &str) -> Result<ApplyResponse, EngineError> {
        let result = self.reinstall_inner(target, uid, reason);
        match &result {
            Ok(_) => {
                self.last = Some(LastChange {
                    ok: true,
                    message: format!("{reason} to generation {target}"),
                })
            }
            Err(e) => self.failed_change(uid, format!("{reason} to generation {target}: {}", chain(e))),
        }
        result
    }

    fn reinstall_inner(&mut self, target: u64, uid: u32, reason: &str) -> Result<ApplyResponse, EngineError> {
        let old = self
            .store
            .load(target)?
            .ok_or(EngineError::NoSuchGeneration { number: target })?;
        let profile = Profile::parse(&old.meta.source, &old.profile_text)?;
        self.warnings.clear();
        let plan = self.plan(&profile)?;
        let number = self.store.latest()?.map_or(1, |n| n + 1);
        let generation = self.generation(number, &profile, old.profile_text, Some(old.meta.source), uid, reason);
        let name = profile.name.clone();
        self.commit(generation, Arc::new(profile), uid)?;
        Ok(ApplyResponse {
            profile: name,
            generation: Some(number),
            plan,
            changed: true,
            digest: self.current.as_ref().map(|c| c.meta.digest.clone()),
            warnings: std::mem::take(&mut self.warnings),
            ..ApplyResponse::default()
        })
    }

    /// A module's action (`POST /v1/modules/<module>/<action>`).
    pub fn action(
        &mut self,
        module: &str,
        action: &str,
        body: serde_json::Value,
        uid: u32,
    ) -> Result<serde_json::Value, EngineError> {
        let i = self
            .slots
            .iter()
            .position(|s| s.module.name() == module)
            .ok_or_else(|| EngineError::NoSuchModule {
                module: module.to_owned(),
            })?;
        if let Some((name, reason)) = self.load_modules().filter(|(n, _)| *n == self.slots[i].module.name()) {
            return Err(EngineError::ModuleBroken { module: name, reason });
        }
        let current = self.current.as_ref().map(|c| c.profile.clone());
        Ok(self.with_module(i, uid, |m, cx| m.action(cx, current.as_deref(), action, body))?)
    }

    /// Every module's actions and who may call them, for the API.
    pub fn actions(&self) -> BTreeMap<(String, String), crate::module::ActionRole> {
        self.slots
            .iter()
            .flat_map(|s| {
                let name = s.module.name();
                s.module
                    .actions()
                    .iter()
                    .map(move |(a, role)| ((name.to_owned(), (*a).to_owned()), *role))
            })
            .collect()
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

    /// Record an audit event. The change it reports has already happened,
    /// so a failure to write the event is logged, not turned into a failed
    /// request (an add-peer's config, shown once, must not be lost to it).
    fn record(&mut self, kind: &EventKind, uid: u32, outcome: Outcome, message: &str) {
        if let Err(e) = self.audit.record(kind, uid, outcome, message) {
            log::error!(error:display = e, event = kind.id; "could not write audit event: {message}");
        }
    }

    /// Stop what modules supervise (wireguard-go, …): the daemon is exiting.
    pub fn shutdown(&mut self) {
        for slot in &mut self.slots {
            slot.module.shutdown();
        }
    }

    /// A module of the registry by its type, for callers that need more
    /// than the contract (tests, the daemon's start-up).
    pub fn module_mut<M: Module>(&mut self) -> Option<&mut M> {
        self.slots
            .iter_mut()
            .find_map(|s| s.module.as_any_mut().downcast_mut::<M>())
    }

    fn notify_status(&self) {
        let status = match &self.current {
            Some(c) => format!("generation {} ({})", c.meta.number, c.profile.name),
            None => "no generation; failsafe ruleset".to_owned(),
        };
        crate::notify::status(&status);
    }
}

/// The message with its whole cause chain, as one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        // thiserror's transparent and "{source}" variants repeat their source.
        if !msg.ends_with(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        source = s.source();
    }
    msg
}

/// Profile settings that changed outside the sections whose module already
/// planned a change (its own diff says it better), so no change (a new
/// `[monitoring] listen`, a WireGuard endpoint) is ever planned as "no
/// changes". One change per setting, named by its path in the profile
/// model (`monitoring.listen`, `profile.drift`), with both values.
fn setting_changes(old: &Profile, new: &Profile, planned: &[&str]) -> Vec<Change> {
    // Serialising a profile of 50,000 networks costs more than the rest of
    // an apply together, so the firewall is left out when its module planned
    // it or it has not changed.
    if old == new {
        return Vec::new();
    }
    let without_firewall = |p: &Profile| {
        serde_json::to_value(Profile {
            firewall: Default::default(),
            ..p.clone()
        })
    };
    let (old, new) = if old.firewall == new.firewall || planned.contains(&crate::firewall::plan::MODULE) {
        (without_firewall(old), without_firewall(new))
    } else {
        (serde_json::to_value(old), serde_json::to_value(new))
    };
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) = (old, new) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let null = serde_json::Value::Null;
    for (key, value) in &new {
        if planned.contains(&key.as_str()) {
            continue;
        }
        // `[profile]` keys sit at the top of the model.
        let path = if value.is_object() || old.get(key).is_some_and(serde_json::Value::is_object) {
            key.clone()
        } else {
            format!("profile.{key}")
        };
        leaf_changes(&path, old.get(key).unwrap_or(&null), value, &mut out);
    }
    out
}

/// The settings under `path` that differ, down to values that are not
/// tables (a list is one value). A section that appears or goes is one
/// change with the whole section on one side.
fn leaf_changes(path: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<Change>) {
    use serde_json::Value;
    match (old, new) {
        _ if old == new => {}
        (Value::Object(o), Value::Object(n)) => {
            for key in n.keys().chain(o.keys().filter(|k| !n.contains_key(*k))) {
                let (a, b) = (o.get(key).unwrap_or(&Value::Null), n.get(key).unwrap_or(&Value::Null));
                leaf_changes(&format!("{path}.{key}"), a, b, out);
            }
        }
        (Value::Null, _) => out.push(Change {
            after: Some(new.clone()),
            ..Change::new("profile", ChangeOp::Add, path)
        }),
        (_, Value::Null) => out.push(Change {
            before: Some(old.clone()),
            ..Change::new("profile", ChangeOp::Remove, path)
        }),
        _ => out.push(Change::values("profile", path, old.clone(), new.clone())),
    }
}
