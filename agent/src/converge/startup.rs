//! Start-up: never leave the host open, whatever is found on disk.
//!
//! 1. [`failsafe_first`], before anything that can fail: a module whose
//!    protection is absent from the host (table `inet bulwark` after a
//!    reboot) installs its failsafe.
//! 2. [`Engine::start`]: load every module's state (a module that cannot is
//!    reported CRITICAL and skipped, never a reason to exit), settle a
//!    confirmation window that closed while the daemon was down, then restore
//!    the newest generation whose seal verifies. The first module (the
//!    firewall) must come back for a generation to be in force; a later one
//!    that fails is reported and the rest still converge. When no generation
//!    can be restored the failsafe stays in force.
//! 3. A host without any generation gets the boot profile; one that fails
//!    validation is recorded and replaced by the built-in default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bulwark_model::api::{Check, Level, PendingConfirm};
use bulwark_model::Profile;

use super::{chain, Engine, EngineError, DEFAULT_PROFILE};
use crate::audit::{self, Outcome};
use crate::clock::now_unix;
use crate::firewall::render::FAILSAFE_WIREGUARD;
use crate::host::Host;
use crate::module::{Cx, Module};
use crate::state::{self, StateError};

/// What [`failsafe_first`] did.
#[derive(Debug, Clone, Default)]
pub struct Failsafe {
    /// The WireGuard port the failsafe keeps open.
    pub port: u16,
    /// (module, what it installed), to be audited once the log is open.
    pub installed: Vec<(&'static str, String)>,
}

/// The newest stored profile that parses, read without trusting it for
/// anything but the failsafe's WireGuard port (a generation is verified
/// before it is ever installed).
fn newest_profile(host: &Host) -> Option<Profile> {
    let dir = host.state_dir().join("generations");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    names.sort_unstable();
    names.iter().rev().find_map(|n| {
        let text = std::fs::read_to_string(dir.join(n).join("profile.toml")).ok()?;
        Profile::parse(n, &text).ok()
    })
}

/// Step 1: every module's failsafe, before the engine (or anything else
/// that can fail) is built.
pub fn failsafe_first(host: &Host, modules: &mut [Box<dyn Module>]) -> Failsafe {
    let last = newest_profile(host);
    let port = last
        .as_ref()
        .and_then(|p| p.wireguard.as_ref())
        .map_or(FAILSAFE_WIREGUARD, |w| w.listen_port);
    let mut out = Failsafe {
        port,
        installed: Vec::new(),
    };
    for m in modules.iter_mut() {
        let mut cx = Cx::new(host, 0);
        match m.failsafe(&mut cx, last.as_ref()) {
            Ok(true) => out
                .installed
                .push((m.name(), format!("failsafe installed (WireGuard port {port})"))),
            Ok(false) => {}
            Err(e) => {
                // Nothing else can protect the host now; say so as loudly as we can.
                log::error!(module = m.name(), error:display = chain(&e); "could not install the failsafe");
            }
        }
    }
    out
}

/// Move a damaged file out of the way under a name that says when.
pub fn set_aside(path: &Path) -> Result<PathBuf, StateError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{}", now_unix()));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside).map_err(state::io("move aside", path))?;
    Ok(aside)
}

impl Engine {
    fn note(&mut self, name: &str, module: &str, reason: String) {
        log::error!(module; "{reason}");
        self.notes.push(Check {
            name: name.to_owned(),
            module: module.to_owned(),
            level: Level::Critical,
            reason,
        });
    }

    /// Steps 2 and 3; `boot` is the boot profile's (source, text).
    pub fn start(&mut self, boot: (&str, &str)) -> Result<(), EngineError> {
        self.load_modules();
        let latest = self.store.latest()?;
        self.pending = self.read_pending(latest);
        match latest {
            Some(_) => {
                // A window that closed while the daemon was down reverts
                // straight away, without putting the unconfirmed generation
                // back first.
                if let Some(p) = self.pending.clone().filter(|p| now_unix() >= p.deadline) {
                    self.revert(&p);
                }
                if self.current.is_none() {
                    self.restore_newest_good()?;
                }
                let msg = match self.current_number() {
                    Some(n) => format!("restored generation {n}"),
                    None => "no generation could be restored; the failsafe ruleset is in force".to_owned(),
                };
                self.record(&audit::SYS_STARTED, 0, Outcome::Success, &msg);
            }
            None => self.boot(boot)?,
        }
        // Whatever else is due (a drift check, module timers) runs now.
        self.tick();
        Ok(())
    }

    /// The pending confirmation on disk. One that cannot be read is taken as
    /// a window that already closed: the generation it guarded reverts to the
    /// one before it, because an unconfirmed change must not outlive a crash.
    fn read_pending(&mut self, latest: Option<u64>) -> Option<PendingConfirm> {
        let path = self.pending_path();
        let pending = match state::read_json::<PendingConfirm>(&path) {
            Ok(p) => p,
            Err(e) => {
                let numbers = self.store.numbers().unwrap_or_default();
                let revert_to = numbers.iter().rev().nth(1).copied();
                let msg = format!(
                    "{e}; treating the newest generation {latest:?} as unconfirmed: it reverts to {revert_to:?}"
                );
                self.note("confirm", "bulwarkd", msg.clone());
                self.record(&audit::CHG_REVERTED, 0, Outcome::Failure, &msg);
                if let Err(e) = set_aside(&path) {
                    log::error!(error:display = e; "cannot move the damaged pending confirmation aside");
                }
                latest.map(|generation| PendingConfirm {
                    generation,
                    revert_to,
                    deadline: 0,
                })
            }
        };
        match pending {
            Some(p) if Some(p.generation) != latest => {
                // The confirmed apply never committed: nothing to revert.
                log::warn!(generation = p.generation; "dropping a confirmation for a generation that was never committed");
                let _ = state::remove(&path);
                None
            }
            other => other,
        }
    }

    /// Install the newest generation whose seal verifies and whose first
    /// module (the firewall) comes back; a later module that fails stays
    /// CRITICAL with its reason while the others converge.
    fn restore_newest_good(&mut self) -> Result<(), EngineError> {
        for n in self.store.numbers()?.into_iter().rev() {
            let loaded = self.store.load(n).map_err(|e| e.to_string()).and_then(|g| {
                let g = g.ok_or_else(|| format!("generation {n} vanished"))?;
                let p = Profile::parse(&g.meta.source, &g.profile_text).map_err(|e| e.to_string())?;
                Ok((g, p))
            });
            let (generation, profile) = match loaded {
                Ok(x) => x,
                Err(reason) => {
                    let msg = format!("generation {n} refused: {reason}");
                    self.record(&audit::CHG_REFUSED_GENERATION, 0, Outcome::Refused, &msg);
                    self.note("generation", "bulwarkd", msg);
                    continue;
                }
            };
            match self.install_best_effort(&profile) {
                Ok(()) => {
                    self.adopt(generation.meta, profile);
                    return Ok(());
                }
                Err(reason) => {
                    let msg = format!("generation {n} could not be installed: {reason}");
                    self.record(&audit::CHG_FAILED, 0, Outcome::Failure, &msg);
                    self.note("generation", "bulwarkd", msg);
                }
            }
        }
        self.note(
            "generation",
            "bulwarkd",
            "no generation could be restored; the failsafe ruleset is in force: apply a profile".to_owned(),
        );
        Ok(())
    }

    /// Make a generation installed by [`Engine::install_best_effort`]
    /// current, keeping what start-up found and which modules did not come
    /// back (health reports both until the next successful change).
    fn adopt(&mut self, meta: super::generations::Meta, profile: Profile) {
        let notes = std::mem::take(&mut self.notes);
        let failed: Vec<Option<String>> = self.slots.iter().map(|s| s.failed.clone()).collect();
        self.make_current(meta, Arc::new(profile));
        self.notes = notes;
        for (slot, f) in self.slots.iter_mut().zip(failed) {
            slot.failed = f;
        }
    }

    /// Converge `profile` module by module; `Err` only when the first
    /// module fails (then nothing of the profile is in force that matters).
    fn install_best_effort(&mut self, profile: &Profile) -> Result<(), String> {
        for i in 0..self.slots.len() {
            let name = self.slots[i].module.name();
            if let Some(reason) = self.slots[i].broken.clone() {
                self.slots[i].failed = Some(format!("not restored: {reason}"));
                continue;
            }
            match self.with_module(i, 0, |m, cx| m.apply(cx, profile)) {
                Ok(()) => self.slots[i].failed = None,
                Err(e) if i == 0 => return Err(chain(&e)),
                Err(e) => {
                    let reason = chain(&e);
                    self.record(&audit::SYS_MODULE_BROKEN, 0, Outcome::Failure, &reason);
                    log::error!(module = name; "not restored: {reason}");
                    self.slots[i].failed = Some(format!("not restored: {reason}"));
                }
            }
        }
        Ok(())
    }

    /// A host without generations: apply the boot profile as generation 1.
    /// A boot profile that fails validation is recorded with its errors and
    /// the built-in default applied instead, so the host is never left on
    /// the failsafe for a typo.
    fn boot(&mut self, (source, text): (&str, &str)) -> Result<(), EngineError> {
        let (source, text, profile) = match Profile::parse(source, text) {
            Ok(p) => (source.to_owned(), text.to_owned(), p),
            Err(errors) => {
                let msg = format!(
                    "{source}: {} validation error(s): {}; the built-in default profile was applied instead",
                    errors.errors.len(),
                    errors
                        .errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                self.record(&audit::CHG_BOOT_INVALID, 0, Outcome::Refused, &msg);
                let default = Profile::parse("built-in default profile", DEFAULT_PROFILE)?;
                self.notes.push(Check {
                    name: "boot_profile".to_owned(),
                    module: "bulwarkd".to_owned(),
                    level: Level::Warning,
                    reason: msg,
                });
                (
                    "built-in default profile".to_owned(),
                    DEFAULT_PROFILE.to_owned(),
                    default,
                )
            }
        };
        let mut generation = self.generation(1, &profile, text, Some(source), 0, "boot");
        match self.install_best_effort(&profile) {
            Ok(()) => {
                if let Err(e) = self.store.commit(&mut generation) {
                    // In force but not recorded: the next start boots again.
                    self.note(
                        "generation",
                        "bulwarkd",
                        format!("the boot profile is in force but was not recorded: {e}"),
                    );
                    return Ok(());
                }
                let msg = format!("generation 1 from profile {} (boot)", profile.name);
                self.record(&audit::CHG_APPLIED, 0, Outcome::Success, &msg);
                self.adopt(generation.meta, profile);
            }
            // The failsafe stays; the operator gets the API and the reason.
            Err(reason) => self.note(
                "generation",
                "bulwarkd",
                format!("the boot profile could not be applied: {reason}"),
            ),
        }
        Ok(())
    }
}
