//! The seal-watch loop: what the Vault reports, how long it has been
//! unsealed, an unexpected seal as an audit event, health and metrics.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulwark_model::api::{Check, Level};
use bulwark_model::profile::{Custody, Vault as VaultProfile};
use bulwark_model::vault::{VaultStatus, MODULE};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::client::SealStatus;
use super::custody;
use super::{supervise, Vault};
use crate::audit::{self, Outcome};
use crate::module::Cx;

/// How often the loop asks the Vault.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// A seal within this long after Bulwark restarted the server is expected.
const RESTART_GRACE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabel {
    version: String,
    seal_type: String,
    custody: String,
}

#[derive(Debug, Default)]
pub struct Watch {
    pub last: Option<SealStatus>,
    pub api_error: Option<String>,
    /// When bulwarkd first saw the current unsealed stretch.
    pub unsealed_since: Option<Instant>,
    restart_until: Option<Instant>,
    /// The last seal nobody asked for (until the Vault is unsealed again).
    pub unexpected_seal: Option<String>,
    /// An initialised Vault without Bulwark's record was reported.
    unclaimed_reported: bool,
    restarts: u64,
    initialized: Gauge,
    sealed: Gauge,
    unsealed_seconds: Gauge<f64, AtomicU64>,
    info: Family<InfoLabel, Gauge>,
}

impl Watch {
    /// Bulwark is about to (re)start the server: a seal now is no surprise.
    pub fn expect_restart(&mut self) {
        self.restart_until = Some(Instant::now() + RESTART_GRACE);
    }

    fn restart_expected(&self) -> bool {
        self.restart_until.is_some_and(|t| Instant::now() < t)
    }

    pub fn saw(&mut self, s: &SealStatus) {
        if s.initialized && !s.sealed {
            self.unsealed_since.get_or_insert_with(Instant::now);
            self.unexpected_seal = None;
            self.restart_until = None;
        } else {
            self.unsealed_since = None;
        }
        self.api_error = None;
        self.last = Some(s.clone());
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "vault_initialized",
            "Vault reports initialised (1) or not (0)",
            self.initialized.clone(),
        );
        registry.register(
            "vault_sealed",
            "Vault reports sealed (1) or unsealed (0)",
            self.sealed.clone(),
        );
        registry.register(
            "vault_unsealed_seconds",
            "Seconds since bulwarkd saw the Vault unsealed (0 while sealed)",
            self.unsealed_seconds.clone(),
        );
        registry.register("vault_info", "Vault version, seal type and custody", self.info.clone());
    }

    fn export(&self, status: &VaultStatus) {
        self.initialized.set(i64::from(status.initialized == Some(true)));
        self.sealed.set(i64::from(status.sealed != Some(false)));
        self.unsealed_seconds.set(status.unsealed_for_secs.unwrap_or(0) as f64);
        self.info.clear();
        self.info
            .get_or_create(&InfoLabel {
                version: status.server_version.clone(),
                seal_type: status.seal_type.clone(),
                custody: status.custody.clone(),
            })
            .set(1);
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Vault {
    /// One round of the loop: restart a supervised server that died, then
    /// [`Vault::refresh`].
    pub(super) fn watch_once(&mut self, cx: &mut Cx<'_>, v: &VaultProfile) {
        if !self.under_systemd() && self.config_path().exists() {
            if self.server.is_none() {
                self.server = supervise::adopt(&self.pidfile(), &self.config_path());
            }
            if !self.server.as_mut().is_some_and(|s| s.alive()) {
                log::warn!("bao server is not running; starting it");
                self.watch.restarts += 1;
                if let Err(e) = self.start(v, true) {
                    log::error!(error:display = e; "cannot restart bao");
                }
            }
        }
        self.refresh(cx, v);
    }

    /// Read the seal status now (the loop, or a reader asked): record a
    /// seal nobody caused or an unseal, complete the record of a self-init.
    pub(super) fn refresh(&mut self, cx: &mut Cx<'_>, v: &VaultProfile) {
        let status = match self.client(v).and_then(|c| c.seal_status()) {
            Ok(s) => s,
            Err(e) => {
                self.watch.api_error = Some(e.to_string());
                return;
            }
        };
        let was = self.watch.last.clone();
        let expected = self.watch.restart_expected();
        self.watch.saw(&status);
        match was {
            Some(w) if w.initialized && !w.sealed && status.sealed && !expected => {
                let msg = format!("{} seal: sealed while Bulwark did not restart it", status.seal_type);
                self.watch.unexpected_seal = Some(msg.clone());
                cx.event(&audit::VLT_SEALED, Outcome::Failure, msg);
            }
            Some(w) if w.sealed && status.initialized && !status.sealed => {
                cx.event(
                    &audit::VLT_UNSEALED,
                    Outcome::Success,
                    format!("{} seal: unsealed", status.seal_type),
                );
            }
            _ => {}
        }
        self.claim(cx, v, &status);
    }

    /// Complete the record of a self-initialised Vault; report a Vault that
    /// is initialised without Bulwark's record.
    pub(super) fn claim(&mut self, cx: &mut Cx<'_>, v: &VaultProfile, s: &SealStatus) {
        if !s.initialized {
            return;
        }
        let record = match custody::read_record(&self.host) {
            Ok(r) => r,
            Err(e) => {
                self.watch.api_error = Some(e.to_string());
                return;
            }
        };
        let Some(mut record) = record else {
            if !self.watch.unclaimed_reported {
                self.watch.unclaimed_reported = true;
                cx.event(
                    &audit::VLT_UNCLAIMED,
                    Outcome::Failure,
                    format!(
                        "the Vault at {} is initialised but Bulwark holds no custody record",
                        v.listen
                    ),
                );
            }
            return;
        };
        if record.initialised.is_some() {
            // A seal migration that finished while nobody watched (a crash
            // between the last share and the record).
            if record.custody == Custody::Manual.as_str()
                && v.custody == Custody::Static
                && s.seal_type == "static"
                && !s.migration
                && !s.sealed
            {
                record.custody = Custody::Static.as_str().to_owned();
                if custody::write_record(&self.host, &record).is_ok() {
                    cx.event(
                        &audit::VLT_MIGRATED,
                        Outcome::Success,
                        "manual (shamir) -> static; the shares are recovery keys now".to_owned(),
                    );
                }
            }
            return;
        }
        if !record.self_init || s.sealed {
            return;
        }
        // Self-init ran: prove Bulwark's token works before saying so.
        let store = self.store(v);
        let token = store.get(super::cred::BULWARK_TOKEN).ok().flatten();
        let works = match (token, self.client(v)) {
            (Some(t), Ok(c)) => c.lookup_self(&t).is_ok(),
            _ => false,
        };
        if !works {
            return;
        }
        // The canary the restore test reads back: written once, by Bulwark's token.
        if let (Ok(Some(t)), Ok(c)) = (store.get(super::cred::BULWARK_TOKEN), self.client(v)) {
            if c.read_canary(&t).map_or(true, |value| value.is_empty()) {
                if let Err(e) = custody::random_hex().and_then(|value| c.write_canary(&t, &value)) {
                    self.watch.api_error = Some(e.to_string());
                    return;
                }
            }
        }
        record.initialised = Some(now_unix());
        record.cluster_id = Some(s.cluster_id.clone()).filter(|c| !c.is_empty());
        record.bulwark_token = true;
        if let Err(e) = custody::write_record(&self.host, &record) {
            self.watch.api_error = Some(e.to_string());
            return;
        }
        cx.event(
            &audit::VLT_INITIALISED,
            Outcome::Success,
            format!(
                "self-initialised under {} custody (cluster {}); run `bulwarkctl vault init` for the recovery keys",
                v.custody.as_str(),
                s.cluster_id
            ),
        );
    }

    /// Everything health, status and the CLI show.
    pub(super) fn vault_status(&mut self, v: &VaultProfile) -> VaultStatus {
        let record = custody::read_record(&self.host);
        let mut problems = Vec::new();
        let mut level = Level::Ok;
        let mut raise = |l: Level, p: String, problems: &mut Vec<String>| {
            level = level.max(l);
            problems.push(p);
        };
        let running = if self.under_systemd() {
            self.watch.last.is_some()
        } else {
            self.server.as_mut().is_some_and(|s| s.alive())
        };
        let last = self.watch.last.clone().filter(|_| self.watch.api_error.is_none());
        if let Some(e) = &self.watch.api_error {
            raise(
                Level::Critical,
                format!("the Vault API does not answer: {e}"),
                &mut problems,
            );
        } else if last.is_none() {
            raise(
                Level::Unknown,
                "the Vault has not been asked yet".to_owned(),
                &mut problems,
            );
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                raise(Level::Critical, e.to_string(), &mut problems);
                None
            }
        };
        if let Some(s) = &last {
            match (&record, s.initialized) {
                (None, true) => raise(
                    Level::Critical,
                    "initialised, but Bulwark holds no custody record: it will not initialise it again".to_owned(),
                    &mut problems,
                ),
                (_, false) => raise(Level::Warning, "initialising itself".to_owned(), &mut problems),
                _ => {}
            }
            if s.initialized && s.sealed {
                let how = if s.migration {
                    "sealed for a seal migration: run `bulwarkctl vault migrate --to static` with the shares"
                } else if v.custody == Custody::Manual {
                    "sealed: run `bulwarkctl vault unseal` with the shares"
                } else {
                    "sealed although its seal should unseal it"
                };
                raise(Level::Critical, how.to_owned(), &mut problems);
            }
        }
        if let Some(msg) = &self.watch.unexpected_seal {
            raise(Level::Critical, format!("unexpected seal: {msg}"), &mut problems);
        }
        if let Some(r) = &record {
            if r.staging && r.initialised.is_some() {
                raise(
                    Level::Warning,
                    "initialised under a temporary key; run `bulwarkctl vault init` to move it to Shamir \
                     and take the shares"
                        .to_owned(),
                    &mut problems,
                );
            }
            if r.initialised.is_some() && r.delivered.is_none() {
                raise(
                    Level::Warning,
                    "the keys were not acknowledged: run `bulwarkctl vault init` and store them".to_owned(),
                    &mut problems,
                );
            }
        }
        let s = last.clone().unwrap_or_default();
        let status = VaultStatus {
            managed: true,
            implementation: v.implementation.as_str().to_owned(),
            version: v.version.clone(),
            sha256: v.source.sha256.clone(),
            runner: if self.under_systemd() { "systemd" } else { "supervised" }.to_owned(),
            running,
            listen: v.listen.to_string(),
            initialized: last.as_ref().map(|s| s.initialized),
            sealed: last.as_ref().map(|s| s.sealed),
            seal_type: s.seal_type.clone(),
            server_version: s.version.clone(),
            progress: s.progress,
            threshold: s.t,
            custody: record
                .as_ref()
                .map(|r| r.custody.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| v.custody.as_str().to_owned()),
            credential_store: match v.credential_store {
                bulwark_model::profile::CredentialStore::File => "file",
                bulwark_model::profile::CredentialStore::SystemdCreds => "systemd-creds",
            }
            .to_owned(),
            unsealed_for_secs: self.watch.unsealed_since.map(|t| t.elapsed().as_secs()),
            custody_record: record.as_ref().is_some_and(|r| r.initialised.is_some()),
            keys_delivered: record.as_ref().is_some_and(|r| r.delivered.is_some()),
            root_revoked: record.as_ref().is_some_and(|r| r.root_revoked),
            level,
            problems,
        };
        self.watch.export(&status);
        status
    }
}

/// Health checks from a status: one for the seal, one for custody.
pub fn checks(s: &VaultStatus) -> Vec<Check> {
    let reason = if s.problems.is_empty() {
        summary(s)
    } else {
        s.problems.join("; ")
    };
    vec![Check {
        name: MODULE.to_owned(),
        module: String::new(),
        level: s.level,
        reason,
    }]
}

/// One line for people.
pub fn summary(s: &VaultStatus) -> String {
    let state = match (s.initialized, s.sealed) {
        (None, _) => "not answering".to_owned(),
        (Some(false), _) => "not initialised".to_owned(),
        (Some(true), Some(true)) => format!("sealed ({}/{})", s.progress, s.threshold),
        (Some(true), _) => match s.unsealed_for_secs {
            Some(secs) => format!("unsealed for {}", humantime::format_duration(Duration::from_secs(secs))),
            None => "unsealed".to_owned(),
        },
    };
    format!(
        "{} {} on {}: {state}, {} seal, custody {}",
        s.implementation, s.version, s.listen, s.seal_type, s.custody
    )
}
