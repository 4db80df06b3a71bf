//! The module contract: one seam for every host concern Bulwark converges.
//!
//! Firewall, WireGuard, K3s, IMA and Vault each implement [`Module`] and sit
//! in one ordered registry ([`crate::converge::registry`]). The engine never
//! names a module: planning, converging, restoring after a failure, dry runs,
//! rollback, revert, drift, health, status and metrics all iterate the
//! registry in order, so a module cannot be forgotten by one of them.
//!
//! What a module promises:
//!
//! - **Pure rendering.** [`Module::render`] turns the profile into the
//!   artifacts a generation keeps (a ruleset, drop-ins, a policy file).
//!   The same profile always renders the same bytes.
//! - **An absent section means unmanaged.** When the profile has no section
//!   for the module, it removes what Bulwark itself created (never data, and
//!   never what others wrote) and lists that in its plan. The firewall is the
//!   one module that is always managed: a profile without `[firewall]` gets
//!   the defaults, which deny everything.
//! - **Plans say before and after.** [`Module::plan`] compares the profile
//!   with what is in force and changes nothing; an empty plan means
//!   [`Module::apply`] would change nothing.
//! - **A failed apply leaves the previous state.** Where the host allows it,
//!   apply is all-or-nothing; otherwise the engine re-applies the profile in
//!   force to every module it already touched, and says truthfully which of
//!   them came back.
//! - **Restoring is applying.** A generation is restored by applying its
//!   profile: the artifacts are re-rendered from it and compared with the
//!   sealed ones (see [`crate::converge::generations`]).
//!
//! Module-specific commands (add a peer, unseal Vault, label files) go
//! through [`Module::action`], so a new module needs no engine or API changes
//! for them, only its own wire types in `bulwark_model` and its CLI.

use std::any::Any;
use std::collections::BTreeMap;
use std::time::Instant;

use bulwark_model::api::{Change, Check, Level, ModuleStatus};
use bulwark_model::Profile;

use crate::audit::{EventKind, Outcome};
pub use crate::converge::task::Waker;
use crate::host::Host;

/// What a generation keeps for one module: file name → content.
pub type Artifacts = BTreeMap<String, String>;

/// How the API answers a failure (its HTTP status and JSON `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong (400).
    BadRequest,
    /// The request clashes with the host's state (409).
    Conflict,
    /// The named thing does not exist (404).
    NotFound,
    /// The module's own state on disk is unreadable or corrupt (500).
    State,
    /// The host refused the change (500).
    Failed,
}

/// A module's failure: which module, how to answer it, and its own typed
/// error as the source (each module keeps a `thiserror` enum of its own).
#[derive(Debug, thiserror::Error)]
#[error("{module}: {source}")]
pub struct ModuleError {
    pub module: &'static str,
    pub class: ErrorClass,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl ModuleError {
    pub fn new(
        module: &'static str,
        class: ErrorClass,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ModuleError {
        ModuleError {
            module,
            class,
            source: source.into(),
        }
    }
}

/// An audit event a module asks the engine to record.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static EventKind,
    pub outcome: Outcome,
    pub message: String,
}

/// The engine's side of a call: the host, the acting uid, and where the
/// module leaves audit events and follow-up work.
#[derive(Debug)]
pub struct Cx<'a> {
    pub host: &'a Host,
    /// uid of the caller the engine acts for (0: the daemon itself).
    pub uid: u32,
    /// The caller asked to override a module's guard (`apply --force`).
    pub force: bool,
    events: Vec<Event>,
    drift_check: bool,
    warnings: Vec<String>,
}

impl<'a> Cx<'a> {
    pub fn new(host: &'a Host, uid: u32) -> Cx<'a> {
        Cx {
            host,
            uid,
            force: false,
            events: Vec::new(),
            drift_check: false,
            warnings: Vec::new(),
        }
    }

    /// Tell the operator something about the host that does not stop the
    /// change (another firewall manager at work, say). From `plan`, it
    /// reaches the answer of the apply or dry run (`warnings`).
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// The warnings given so far, in order (the engine drains them).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Pass the apply request's `force` on to the modules.
    pub fn with_force(mut self, force: bool) -> Cx<'a> {
        self.force = force;
        self
    }

    /// Ask for an audit event; the engine records it when the call returns.
    pub fn event(&mut self, kind: &'static EventKind, outcome: Outcome, message: impl Into<String>) {
        self.events.push(Event {
            kind,
            outcome,
            message: message.into(),
        });
    }

    /// Ask the engine to check this module for drift as soon as the call
    /// returns (from [`Module::tick`], when a watcher saw the host change).
    pub fn request_drift_check(&mut self) {
        self.drift_check = true;
    }

    /// Whether [`Cx::request_drift_check`] was called.
    pub fn drift_check_requested(&self) -> bool {
        self.drift_check
    }

    /// The events asked for so far, in order (the engine drains them).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

/// The audit events of a module's drift: one when it is repaired, one when
/// it is only reported (`drift = "report"`), and how bad drift left in place
/// is for health (CRITICAL for the firewall: the host may be open).
#[derive(Debug, Clone, Copy)]
pub struct DriftEvents {
    pub repaired: &'static EventKind,
    pub detected: &'static EventKind,
    pub level: Level,
}

/// A module's answer to an action: its JSON response.
pub type ActionResult = Result<serde_json::Value, ModuleError>;

/// Who may call an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionRole {
    /// Group `bulwark` and above: reads only.
    Read,
    /// Root and group `bulwark-admin`: may change the host.
    Admin,
}

/// One host concern. See the module documentation for the promises.
///
/// Every method runs on the engine thread, which owns the host; a module
/// with long work (a scan, a restore test) runs it on a thread of its own
/// and reports back from [`Module::tick`].
pub trait Module: Any + Send {
    /// Stable name: the profile section, the `module` label in metrics and
    /// checks, the directory in a generation.
    fn name(&self) -> &'static str;

    /// Open the module's own state (keys, stores). Called at start-up and,
    /// while it keeps failing, before each apply. A module that cannot load
    /// is reported CRITICAL and skipped; the others still converge.
    fn load(&mut self, _cx: &mut Cx<'_>) -> Result<(), ModuleError> {
        Ok(())
    }

    /// At start-up, before anything that can fail: when the host holds none
    /// of this module's protection (after a reboot), put a documented
    /// failsafe in place, so a host whose state turns out to be unreadable
    /// is never left open. `last` is the newest profile that could be read,
    /// if any. Returns whether a failsafe was installed.
    fn failsafe(&mut self, _cx: &mut Cx<'_>, _last: Option<&Profile>) -> Result<bool, ModuleError> {
        Ok(false)
    }

    /// The artifacts a generation keeps for this module, rendered from the
    /// profile. Pure; empty when the module has nothing to keep.
    fn render(&self, profile: &Profile) -> Artifacts;

    /// What [`Module::apply`] of `profile` would change, given `current`,
    /// the profile in force (`None` on a host without a generation).
    /// Changes nothing on the host.
    fn plan(
        &mut self,
        cx: &mut Cx<'_>,
        profile: &Profile,
        current: Option<&Profile>,
    ) -> Result<Vec<Change>, ModuleError>;

    /// A dry run of [`Module::apply`] against the live host: whatever can be
    /// checked without changing anything (nft -c, a backend that can start,
    /// a binary's digest). Changes nothing.
    fn check(&mut self, cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError>;

    /// Checks that guard a profile an operator applies (or dry-runs)
    /// against the live host, before any module changes anything. Not run
    /// for rollbacks, reverts, start-up restores or drift repair: those put
    /// back what was in force and must not be held up by today's host.
    fn preflight(&mut self, _cx: &mut Cx<'_>, _profile: &Profile) -> Result<(), ModuleError> {
        Ok(())
    }

    /// Converge the host to `profile`. Audit events go through `cx`.
    fn apply(&mut self, cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError>;

    /// What on the live host differs from `current`, the profile in force,
    /// one line per difference; empty when in sync. Changes nothing.
    fn observe(&mut self, cx: &mut Cx<'_>, current: &Profile) -> Result<Vec<String>, ModuleError>;

    /// The events recorded when [`Module::observe`] finds drift.
    fn drift_events(&self) -> DriftEvents;

    /// Named checks for `bulwarkctl health`; the engine sets their `module`.
    fn health(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> Vec<Check>;

    /// One entry of `status.modules`. Its `level` is what the module says
    /// beyond its checks (a section it cannot serve); the engine raises it
    /// to the worst of [`Module::health`], which it asks once for both.
    fn status(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> ModuleStatus;

    /// Called once when the engine thread starts: `waker` wakes it from
    /// any thread (a watcher of the module's own), after which the engine
    /// runs every module's [`Module::tick`] at once.
    fn watch(&mut self, _waker: Waker) {}

    /// Periodic work of the module's own (expiry, schedules, watching a
    /// service). Returns when it wants to run next; `None`: no timer. A
    /// module whose watcher saw the host change calls
    /// [`Cx::request_drift_check`]: the engine then runs its drift check
    /// (observe, repair or report) right away.
    fn tick(&mut self, _cx: &mut Cx<'_>, _current: Option<&Profile>) -> Option<Instant> {
        None
    }

    /// The module's actions and who may call each. The API authorises a
    /// caller from this table before anything reaches the engine thread.
    fn actions(&self) -> &'static [(&'static str, ActionRole)] {
        &[]
    }

    /// A module-specific command (`POST /v1/modules/<name>/<action>`).
    fn action(
        &mut self,
        _cx: &mut Cx<'_>,
        _current: Option<&Profile>,
        action: &str,
        _body: serde_json::Value,
    ) -> ActionResult {
        Err(ModuleError::new(
            self.name(),
            ErrorClass::NotFound,
            format!("no action {action:?}"),
        ))
    }

    /// Register the module's own metrics (they carry its `module` label).
    fn register_metrics(&mut self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Stop what the module supervises (the daemon is exiting).
    fn shutdown(&mut self) {}

    fn as_any_mut(&mut self) -> &mut dyn Any;
}
