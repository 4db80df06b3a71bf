//! Vault on the host: a pinned OpenBao (or Vault) binary, run hardened,
//! initialised exactly once, kept unsealed. One [`Module`] over:
//!
//! - [`install`]: fetch or copy, SHA-256 before anything runs it, versions
//!   side by side, an atomic `current` switch;
//! - [`render`]: the server configuration and the hardened unit;
//! - [`client`]: the Vault HTTP API;
//! - [`custody`]: the keys and token IDs Bulwark makes (and the TLS key),
//!   the custody record, and the hand-over of keys until the operator
//!   acknowledges them;
//! - [`tls`]: the self-signed certificate and a client pinned to it;
//! - [`supervise`]: running `bao server` without systemd;
//! - [`watch`]: the seal-watch loop, health and metrics;
//! - [`ops`]: the actions (`init`, `ack`, `unseal`, `migrate`, `status`),
//!   and init made crash-safe for every custody.
//!
//! **Who runs the server.** When `/run/systemd/system` exists under the
//! host root, systemd is PID 1 and the rendered `bulwark-vault.service`
//! runs it (its own dynamic user, credentials through
//! `LoadCredential[Encrypted]=`). Otherwise (containers, the namespace
//! tests) bulwarkd supervises `bao server` itself and hands it the same
//! credentials as files in a 0700 directory under `/run/bulwark/vault`.

pub mod client;
pub mod custody;
pub mod install;
mod ops;
pub mod render;
pub mod supervise;
pub mod tls;
mod watch;

#[cfg(test)]
mod tests;

use std::any::Any;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulwark_model::api::{Change, ChangeOp, Check, Level, ModuleStatus};
use bulwark_model::profile::{Custody, Tls, Vault as VaultProfile};
use bulwark_model::vault::MODULE;
use bulwark_model::Profile;

use crate::audit::{self, Outcome};
use crate::host::{Host, Run, RunError};
use crate::module::{ActionResult, ActionRole, Artifacts, Cx, DriftEvents, ErrorClass, Module, ModuleError};
use crate::state::{self, StateError};
use client::Client;
use custody::{Record, Store};
use install::Installer;
use render::{cred, Layout, Stage};
use supervise::Server;

/// How long an apply waits for the API to answer after a (re)start; the
/// seal-watch loop takes over after that.
const START_WAIT: Duration = Duration::from_secs(30);
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the supervised server finds its credentials (tmpfs on real hosts).
const RUN_CREDENTIALS: &str = "/run/bulwark/vault";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(StateError),
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("refusing {from}: its SHA-256 is {actual}, the profile pins {expected}; nothing was installed")]
    Digest {
        from: String,
        expected: String,
        actual: String,
    },
    #[error("{from} reports version {actual:?}, the profile wants {expected:?}; nothing was installed")]
    WrongVersion {
        from: String,
        expected: String,
        actual: String,
    },
    #[error("cannot download {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error(transparent)]
    Run {
        #[from]
        source: RunError,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Vault API at {call} failed: {reason}")]
    Api { call: String, reason: String },
    #[error("the Vault refused {call} (HTTP {status}): {errors}")]
    Refused { call: String, status: u16, errors: String },
    #[error("{path} exists; Bulwark never replaces a stored key")]
    SecretExists { path: PathBuf },
    #[error("no randomness: {0}")]
    Random(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the Vault did not start: {0}")]
    Start(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl VaultError {
    fn class(&self) -> ErrorClass {
        match self {
            VaultError::Conflict(_) | VaultError::SecretExists { .. } => ErrorClass::Conflict,
            VaultError::BadRequest(_) => ErrorClass::BadRequest,
            VaultError::State(_) | VaultError::Corrupt { .. } => ErrorClass::State,
            _ => ErrorClass::Failed,
        }
    }
}

impl From<VaultError> for ModuleError {
    fn from(e: VaultError) -> ModuleError {
        ModuleError::new(MODULE, e.class(), e)
    }
}

/// The Vault module.
#[derive(Debug)]
pub struct Vault {
    host: Host,
    systemctl: PathBuf,
    installer: Installer,
    server: Option<Server>,
    watch: watch::Watch,
    /// The profile in force's name (it labels the rendered configuration).
    profile_name: String,
    /// The unit changed on disk (or is not linked yet): systemd must reload it.
    unit_dirty: bool,
}

impl Vault {
    pub fn new(host: Host, systemctl: impl Into<PathBuf>) -> Vault {
        Vault {
            installer: Installer::new(&host),
            systemctl: systemctl.into(),
            server: None,
            watch: watch::Watch::default(),
            profile_name: String::new(),
            unit_dirty: false,
            host,
        }
    }

    /// systemd runs the server when it is PID 1 (under the host root).
    pub fn under_systemd(&self) -> bool {
        self.host.path("/run/systemd/system").is_dir()
    }

    fn state_dir(&self) -> PathBuf {
        self.host.path(custody::STATE_DIR)
    }

    fn config_path(&self) -> PathBuf {
        self.state_dir().join(cred::CONFIG)
    }

    fn unit_path(&self) -> PathBuf {
        self.installer.lib().join(render::UNIT)
    }

    fn pidfile(&self) -> PathBuf {
        self.state_dir().join("bao.pid")
    }

    /// The supervised server's output (bao writes no secret to it).
    pub fn server_log(&self) -> PathBuf {
        self.state_dir().join("bao.log")
    }

    fn layout(&self) -> Layout {
        if self.under_systemd() {
            Layout::systemd()
        } else {
            Layout {
                credentials: self.host.path(RUN_CREDENTIALS).display().to_string(),
                data_dir: self.host.path(render::DATA_DIR).display().to_string(),
            }
        }
    }

    fn store(&self, v: &VaultProfile) -> Store {
        Store::new(&self.host, v.credential_store)
    }

    /// A client for the API that trusts exactly the Vault's certificate.
    fn client(&self, v: &VaultProfile) -> Result<Client, VaultError> {
        let cert = match &v.tls {
            Tls::Off => return Client::new(&render::api_addr(v), None),
            Tls::SelfSigned => self.self_signed_cert(),
            Tls::Files { cert, .. } => PathBuf::from(cert),
        };
        let pem = fs::read(&cert).map_err(|source| VaultError::Io {
            op: "read",
            path: cert.clone(),
            source,
        })?;
        Client::new(&render::api_addr(v), Some(tls::first_cert(&pem, &cert)?))
    }

    fn raft_has_data(&self) -> bool {
        let raft = PathBuf::from(self.layout().raft_dir());
        fs::read_dir(raft).map(|mut d| d.next().is_some()).unwrap_or(false)
    }

    /// The custody change `v` asks for on the Vault the record describes.
    fn custody_change(&self, v: &VaultProfile) -> Result<Option<(String, Custody)>, VaultError> {
        let Some(record) = custody::read_record(&self.host)? else {
            return Ok(None);
        };
        if record.staging && v.custody != Custody::Manual {
            return Err(VaultError::Conflict(
                "vault.custody: this Vault is still under its temporary key; finish `bulwarkctl vault init` \
                 under manual custody first"
                    .to_owned(),
            ));
        }
        if record.custody == v.custody.as_str() || record.initialised.is_none() {
            return Ok(None);
        }
        if record.custody == Custody::Manual.as_str() && v.custody == Custody::Static {
            return Ok(Some((record.custody, v.custody)));
        }
        Err(VaultError::Conflict(format!(
            "vault.custody: this Vault is sealed under {:?} custody; Bulwark migrates manual to static only",
            record.custody
        )))
    }

    fn systemctl(&self, args: &[&str]) -> Result<(), VaultError> {
        Run::new(&self.systemctl, SYSTEMCTL_TIMEOUT).args(args).output()?;
        Ok(())
    }

    fn read(path: &Path) -> Option<String> {
        fs::read_to_string(path).ok()
    }

    /// Stop and remove what Bulwark made for the Vault; binaries, raft data
    /// and keys stay (they are the Vault's, not the profile's).
    fn unmanage(&mut self) -> Result<bool, VaultError> {
        let had = self.config_path().exists() || self.unit_path().exists();
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        if let Some(mut s) = supervise::adopt(&self.pidfile(), &self.config_path()) {
            s.stop();
        }
        if self.under_systemd() && self.unit_path().exists() {
            self.systemctl(&["disable", "--now", render::UNIT])?;
            self.systemctl(&["daemon-reload"])?;
        }
        state::remove(&self.unit_path()).map_err(VaultError::State)?;
        state::remove(&self.config_path()).map_err(VaultError::State)?;
        self.installer.unlink()?;
        self.watch = watch::Watch::default();
        Ok(had)
    }

    /// The stage the configuration is at (see [`render::Stage`]).
    fn stage(&self, v: &VaultProfile) -> Result<Stage, VaultError> {
        Ok(match custody::read_record(&self.host)? {
            Some(r) if r.staging && v.custody == Custody::Manual && r.migrating => Stage::Migrating,
            Some(r) if r.staging && v.custody == Custody::Manual => Stage::Staging,
            _ => Stage::Steady,
        })
    }

    /// The configuration (and, under systemd, the unit) for the stage the
    /// record says; returns whether either changed on disk.
    fn write_rendered(&mut self, profile_name: &str, v: &VaultProfile) -> Result<bool, VaultError> {
        let stage = self.stage(v)?;
        let config = render::config(profile_name, v, &self.layout(), stage);
        let mut changed = false;
        if Self::read(&self.config_path()).as_deref() != Some(config.as_str()) {
            state::write_atomic(&self.config_path(), config.as_bytes()).map_err(VaultError::State)?;
            changed = true;
        }
        if self.under_systemd() {
            let unit = self.unit_text(v, stage);
            if Self::read(&self.unit_path()).as_deref() != Some(unit.as_str()) {
                state::write_atomic_mode(&self.unit_path(), unit.as_bytes(), 0o644).map_err(VaultError::State)?;
                changed = true;
                self.unit_dirty = true;
            }
            // Linked and enabled once per daemon start, whatever is on disk.
            if !self.host.path("/etc/systemd/system").join(render::UNIT).exists() {
                self.unit_dirty = true;
            }
        }
        Ok(changed)
    }

    /// Start (or restart) the server. Supervised, wait (bounded) for its
    /// API. Under systemd only queue the job: the unit is ordered after
    /// bulwarkd, so waiting for it while bulwarkd itself starts (at boot)
    /// would wait for ever; the seal-watch loop reports what follows.
    fn start(&mut self, v: &VaultProfile, restart: bool) -> Result<(), VaultError> {
        self.watch.expect_restart();
        if self.under_systemd() {
            if self.unit_dirty {
                let unit = self.unit_path().display().to_string();
                self.systemctl(&["link", &unit])?;
                self.systemctl(&["daemon-reload"])?;
                self.systemctl(&["enable", render::UNIT])?;
                self.unit_dirty = false;
            }
            self.systemctl(&[if restart { "restart" } else { "start" }, "--no-block", render::UNIT])?;
            return Ok(());
        }
        let running = match &mut self.server {
            Some(s) => s.alive(),
            None => false,
        };
        if running && !restart {
            return self.wait_api(v);
        }
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        self.materialise_credentials(v)?;
        let data = PathBuf::from(self.layout().data_dir);
        state::private_dir(&data, 0o700).map_err(VaultError::State)?;
        state::private_dir(&PathBuf::from(self.layout().raft_dir()), 0o700).map_err(VaultError::State)?;
        self.server = Some(supervise::spawn(
            &self.installer.current_binary(),
            &self.config_path(),
            &self.server_log(),
            &self.pidfile(),
        )?);
        self.wait_api(v)
    }

    fn wait_api(&mut self, v: &VaultProfile) -> Result<(), VaultError> {
        let client = self.client(v)?;
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(s) = client.seal_status() {
                self.watch.saw(&s);
                return Ok(());
            }
            if let Some(s) = &mut self.server {
                if !s.alive() {
                    let tail = tail(&self.server_log(), 8);
                    self.server = None;
                    return Err(VaultError::Start(format!("bao exited: {tail}")));
                }
            }
            progress();
            if Instant::now() >= deadline {
                // Slow but alive: the seal-watch loop reports what follows.
                log::warn!(
                    "the Vault API did not answer within {}s of the start",
                    START_WAIT.as_secs()
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn converge(&mut self, cx: &mut Cx<'_>, profile: &Profile, v: &VaultProfile) -> Result<(), VaultError> {
        self.profile_name = profile.name.clone();
        let migrating = self.custody_change(v)?;
        let name = install::dir_name(&v.version, &v.source.sha256);
        match self.installer.ensure(&v.version, &v.source) {
            Ok(true) => cx.event(
                &audit::VLT_INSTALLED,
                Outcome::Success,
                format!("{} {} sha256 {}", v.implementation.as_str(), v.version, v.source.sha256),
            ),
            Ok(false) => {}
            Err(e @ VaultError::Digest { .. }) => {
                cx.event(&audit::VLT_REFUSED, Outcome::Refused, e.to_string());
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        state::private_dir(&self.state_dir(), 0o700).map_err(VaultError::State)?;
        // Self-initialisation creates the Vault this record describes; the
        // record exists before the first start, so an initialised Vault
        // without one is never ours.
        if custody::read_record(&self.host)?.is_none() && !self.raft_has_data() {
            custody::write_record(
                &self.host,
                &Record {
                    custody: v.custody.as_str().to_owned(),
                    self_init: true,
                    staging: v.custody == Custody::Manual,
                    shares: v.shares,
                    threshold: v.threshold,
                    ..Record::default()
                },
            )?;
        }
        let secrets_changed = self.ensure_secrets(cx, v, self.stage(v)?)?;
        self.forget_staging_key(v)?;
        let previous = self.installer.switch(&name)?;
        let switched = previous.as_deref().is_some_and(|p| p != name);
        if switched {
            cx.event(
                &audit::VLT_UPGRADED,
                Outcome::Success,
                format!("{} -> {name}", previous.unwrap_or_default()),
            );
        }
        let rendered_changed = self.write_rendered(&profile.name, v)?;
        if !self.under_systemd() && self.server.is_none() {
            self.server = supervise::adopt(&self.pidfile(), &self.config_path());
        }
        self.start(
            v,
            switched || rendered_changed || secrets_changed || migrating.is_some(),
        )?;
        Ok(())
    }

    fn unit_text(&self, v: &VaultProfile, stage: Stage) -> String {
        render::unit(
            v,
            stage,
            &Host::new("/")
                .path(install::LIB_DIR)
                .join(install::CURRENT)
                .join("bao")
                .display()
                .to_string(),
            &Path::new(custody::STATE_DIR).join(cred::CONFIG).display().to_string(),
            &Path::new(custody::STATE_DIR).join("keys").display().to_string(),
        )
    }

    /// What differs on the host from what `v` wants, one line each.
    fn differences(&mut self, profile: &Profile, v: &VaultProfile) -> Vec<String> {
        let mut out = Vec::new();
        let name = install::dir_name(&v.version, &v.source.sha256);
        match self.installer.verified(&name, &v.source.sha256) {
            Ok(true) => {}
            Ok(false) => out.push(format!("{name}/bao is missing or its SHA-256 changed")),
            Err(e) => out.push(e.to_string()),
        }
        if self.installer.current().as_deref() != Some(name.as_str()) {
            out.push(format!(
                "{}/current does not point at {name}",
                self.installer.lib().display()
            ));
        }
        let stage = match self.stage(v) {
            Ok(s) => s,
            Err(e) => {
                out.push(e.to_string());
                return out;
            }
        };
        let config = render::config(&profile.name, v, &self.layout(), stage);
        if Self::read(&self.config_path()).as_deref() != Some(config.as_str()) {
            out.push(format!(
                "{} differs from the rendered configuration",
                self.config_path().display()
            ));
        }
        if self.under_systemd() {
            if Self::read(&self.unit_path()).as_deref() != Some(self.unit_text(v, stage).as_str()) {
                out.push(format!("{} differs from the rendered unit", self.unit_path().display()));
            }
        } else {
            if self.server.is_none() {
                self.server = supervise::adopt(&self.pidfile(), &self.config_path());
            }
            if !self.server.as_mut().is_some_and(Server::alive) {
                out.push("bao server is not running".to_owned());
            }
        }
        out
    }
}

/// Long steps of this module (a 180 MB download and hash, waiting for the
/// server) run on the engine thread; while they make progress they tell
/// systemd's watchdog the daemon is alive, at most every few seconds.
pub(crate) fn progress() {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let Ok(mut last) = LAST.lock() else { return };
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
        *last = Some(Instant::now());
        crate::notify::watchdog();
    }
}

fn read_file(path: &str) -> Result<String, VaultError> {
    fs::read_to_string(path).map_err(|source| VaultError::Io {
        op: "read",
        path: PathBuf::from(path),
        source,
    })
}

/// The last `n` lines of a log, on one line (for errors).
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn change(op: ChangeOp, what: impl Into<String>) -> Change {
    Change::new(MODULE, op, what)
}

impl Module for Vault {
    fn name(&self) -> &'static str {
        MODULE
    }

    fn render(&self, profile: &Profile) -> Artifacts {
        let mut a = Artifacts::new();
        if let Some(v) = &profile.vault {
            a.insert(
                cred::CONFIG.to_owned(),
                render::config(&profile.name, v, &Layout::systemd(), Stage::Steady),
            );
            a.insert(render::UNIT.to_owned(), self.unit_text(v, Stage::Steady));
        }
        a
    }

    fn plan(
        &mut self,
        _cx: &mut Cx<'_>,
        profile: &Profile,
        _current: Option<&Profile>,
    ) -> Result<Vec<Change>, ModuleError> {
        let Some(v) = &profile.vault else {
            if self.config_path().exists() {
                return Ok(vec![change(
                    ChangeOp::Remove,
                    "stop the Vault, remove its unit and configuration (binaries, raft data and keys stay)",
                )]);
            }
            return Ok(Vec::new());
        };
        let mut changes = Vec::new();
        let name = install::dir_name(&v.version, &v.source.sha256);
        if !self.installer.verified(&name, &v.source.sha256)? {
            changes.push(change(
                ChangeOp::Add,
                format!(
                    "install {} {} (sha256 {})",
                    v.implementation.as_str(),
                    v.version,
                    v.source.sha256
                ),
            ));
        }
        match self.installer.current() {
            Some(cur) if cur == name => {}
            Some(cur) => changes.push(change(ChangeOp::Change, format!("switch {cur} -> {name} and restart"))),
            None => changes.push(change(ChangeOp::Add, format!("run {name} listening on {}", v.listen))),
        }
        if let Some((from, to)) = self.custody_change(v)? {
            changes.push(change(
                ChangeOp::Change,
                format!(
                    "custody {from} -> {}; then `bulwarkctl vault migrate --to static`",
                    to.as_str()
                ),
            ));
        }
        let store = self.store(v);
        if v.custody == Custody::Static && !store.exists(cred::STATIC_KEY) {
            changes.push(change(
                ChangeOp::Add,
                format!("static key in {}", store.path(cred::STATIC_KEY).display()),
            ));
        }
        let config = render::config(&profile.name, v, &self.layout(), self.stage(v)?);
        if self.installer.current().is_some() && Self::read(&self.config_path()).as_deref() != Some(config.as_str()) {
            changes.push(change(
                ChangeOp::Change,
                format!("{} and restart", self.config_path().display()),
            ));
        }
        Ok(changes)
    }

    fn check(&mut self, _cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        let Some(v) = &profile.vault else { return Ok(()) };
        self.custody_change(v)?;
        if let bulwark_model::profile::Location::Path(p) = &v.source.location {
            let actual = install::sha256_file(Path::new(p))?;
            if actual != v.source.sha256 {
                return Err(VaultError::Digest {
                    from: p.clone(),
                    expected: v.source.sha256.clone(),
                    actual,
                }
                .into());
            }
        }
        Ok(())
    }

    fn apply(&mut self, cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        match &profile.vault {
            None => {
                self.unmanage()?;
                Ok(())
            }
            Some(v) => Ok(self.converge(cx, profile, v)?),
        }
    }

    fn observe(&mut self, _cx: &mut Cx<'_>, current: &Profile) -> Result<Vec<String>, ModuleError> {
        Ok(match &current.vault {
            Some(v) => self.differences(current, v),
            None => Vec::new(),
        })
    }

    fn drift_events(&self) -> DriftEvents {
        DriftEvents {
            repaired: &audit::VLT_DRIFT_REPAIRED,
            detected: &audit::VLT_DRIFT_DETECTED,
            level: Level::Warning,
        }
    }

    fn health(&mut self, _cx: &mut Cx<'_>, current: Option<&Profile>) -> Vec<Check> {
        match current.and_then(|p| p.vault.as_ref()) {
            Some(v) => {
                let status = self.vault_status(v);
                watch::checks(&status)
            }
            None => Vec::new(),
        }
    }

    fn status(&mut self, _cx: &mut Cx<'_>, current: Option<&Profile>) -> ModuleStatus {
        let Some(v) = current.and_then(|p| p.vault.as_ref()) else {
            return ModuleStatus {
                module: MODULE.to_owned(),
                summary: "not managed".to_owned(),
                ..ModuleStatus::default()
            };
        };
        let s = self.vault_status(v);
        ModuleStatus {
            module: MODULE.to_owned(),
            managed: true,
            level: s.level,
            summary: watch::summary(&s),
            details: serde_json::to_value(&s).unwrap_or_default(),
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> Option<Instant> {
        let v = current.and_then(|p| p.vault.as_ref())?;
        self.watch_once(cx, v);
        Some(Instant::now() + watch::INTERVAL)
    }

    fn actions(&self) -> &'static [(&'static str, ActionRole)] {
        ops::ACTIONS
    }

    fn action(
        &mut self,
        cx: &mut Cx<'_>,
        current: Option<&Profile>,
        action: &str,
        body: serde_json::Value,
    ) -> ActionResult {
        let Some(v) = current.and_then(|p| p.vault.clone()) else {
            return Err(VaultError::Conflict(
                "the profile in force has no [vault] section; apply one first".to_owned(),
            )
            .into());
        };
        if let Some(p) = current {
            self.profile_name = p.name.clone();
        }
        Ok(self.run_action(cx, &v, action, body)?)
    }

    fn register_metrics(&mut self, registry: &mut prometheus_client::registry::Registry) {
        self.watch.register(registry);
    }

    fn shutdown(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
