//! K3s on the module contract.
//!
//! `[k3s]` absent means unmanaged: Bulwark's drop-ins are removed (and
//! systemd reloaded; K3s is not restarted, so it keeps its binding until its
//! operator restarts it). A drop-in edited or deleted behind Bulwark's back is
//! drift: rewritten under `drift = "repair"`, reported under `"report"`.

use std::any::Any;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bulwark_model::api::{Change, Check, Level, ModuleStatus};
use bulwark_model::profile::EtcdSnapshots;
use bulwark_model::Profile;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{K3s, K3sError, CHECK};
use crate::audit::{self, Outcome};
use crate::module::{Artifacts, Cx, DriftEvents, ErrorClass, Module, ModuleError};

pub const NAME: &str = "k3s";
/// How often the listener table is checked for an exposed API.
const EXPOSURE_EVERY: Duration = Duration::from_secs(10);

fn failed(e: K3sError) -> ModuleError {
    let class = match e {
        K3sError::State(_) => ErrorClass::State,
        // The credentials file is missing, unreadable or open to others.
        K3sError::Credentials(_) => ErrorClass::Conflict,
        _ => ErrorClass::Failed,
    };
    ModuleError::new(NAME, class, e)
}

#[derive(Debug)]
pub struct K3sModule {
    k3s: K3s,
    /// Why K3s did not pick the last change up (no systemd, not installed).
    note: Option<String>,
    /// The API was seen exposed at the last check: audit only the transition.
    exposed: bool,
    next_exposure_check: Option<Instant>,
    /// One sample while `[k3s]` is managed, none otherwise.
    bind_ok: Family<Vec<(String, String)>, Gauge>,
}

impl K3sModule {
    pub fn new(k3s: K3s) -> K3sModule {
        K3sModule {
            k3s,
            note: None,
            exposed: false,
            next_exposure_check: None,
            bind_ok: Family::default(),
        }
    }

    fn bind(profile: Option<&Profile>) -> Option<IpAddr> {
        profile.and_then(Profile::k3s_bind_ip)
    }
}

impl Module for K3sModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn render(&self, profile: &Profile) -> Artifacts {
        K3s::wanted(profile.k3s.as_ref(), profile.k3s_bind_ip())
            .into_iter()
            .filter_map(|(path, text)| {
                let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                text.map(|t| (name, t))
            })
            .collect()
    }

    fn plan(
        &mut self,
        _cx: &mut Cx<'_>,
        profile: &Profile,
        _current: Option<&Profile>,
    ) -> Result<Vec<Change>, ModuleError> {
        self.k3s
            .plan(profile.k3s.as_ref(), profile.k3s_bind_ip())
            .map_err(failed)
    }

    fn check(&mut self, _cx: &mut Cx<'_>, _profile: &Profile) -> Result<(), ModuleError> {
        Ok(())
    }

    fn apply(&mut self, cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        let bind = profile.k3s_bind_ip();
        let outcome = self.k3s.apply(profile.k3s.as_ref(), bind).map_err(failed)?;
        if outcome.changed {
            let what = bind.map_or("removed".to_owned(), |ip| ip.to_string());
            cx.event(&audit::K3S_CONFIGURED, Outcome::Success, format!("bind {what}"));
        }
        if outcome.etcd_changed {
            let etcd = profile.k3s.as_ref().and_then(|k| k.etcd_snapshots.as_ref());
            let what = etcd.map_or("removed".to_owned(), |e| format!("etcd snapshots {}", e.describe()));
            cx.event(&audit::K3S_ETCD_SNAPSHOTS, Outcome::Success, what);
        }
        if outcome.restarted {
            cx.event(&audit::K3S_RESTARTED, Outcome::Success, "k3s.service restarted");
        }
        self.note = outcome.note;
        Ok(())
    }

    fn observe(&mut self, _cx: &mut Cx<'_>, current: &Profile) -> Result<Vec<String>, ModuleError> {
        let mut out = Vec::new();
        let wanted = self
            .k3s
            .all_wanted(current.k3s.as_ref(), current.k3s_bind_ip())
            .map_err(failed)?;
        for (path, want) in wanted {
            let have = self.k3s.read(path).map_err(failed)?;
            match (have, want) {
                (None, Some(_)) => out.push(format!("{path} was deleted")),
                (Some(a), Some(b)) if a != b => out.push(format!("{path} was edited")),
                (Some(_), None) => out.push(format!("{path} is back although the profile does not manage K3s")),
                _ => {}
            }
        }
        Ok(out)
    }

    fn drift_events(&self) -> DriftEvents {
        DriftEvents {
            repaired: &audit::K3S_DRIFT_REPAIRED,
            detected: &audit::K3S_DRIFT_DETECTED,
            level: Level::Warning,
        }
    }

    fn health(&mut self, _cx: &mut Cx<'_>, current: Option<&Profile>) -> Vec<Check> {
        let Some(bind) = Self::bind(current) else {
            self.bind_ok.clear();
            return Vec::new();
        };
        let etcd = current.and_then(|c| c.k3s.as_ref()?.etcd_snapshots.as_ref());
        let checks = self.k3s.checks(bind, etcd, self.note.as_deref());
        let exposed = checks.iter().any(|c| c.name == CHECK && c.level == Level::Critical);
        self.bind_ok.get_or_create(&Vec::new()).set(i64::from(!exposed));
        checks
    }

    fn status(&mut self, _cx: &mut Cx<'_>, current: Option<&Profile>) -> ModuleStatus {
        let section = current.and_then(|c| c.k3s.as_ref());
        let bind = Self::bind(current);
        ModuleStatus {
            module: NAME.to_owned(),
            managed: section.is_some(),
            level: Level::Ok,
            summary: match (section, bind) {
                (Some(k), Some(ip)) => format!(
                    "API bound to {ip}{}",
                    if k.tls_san.is_empty() {
                        String::new()
                    } else {
                        format!("; tls-san {}", k.tls_san.join(", "))
                    }
                ),
                _ => "unmanaged".to_owned(),
            },
            details: serde_json::json!({
                "bind": bind.map(|ip| ip.to_string()),
                "tls_san": section.map(|k| k.tls_san.clone()).unwrap_or_default(),
                "restart": section.is_some_and(|k| k.restart),
                "etcd_snapshots": section
                    .and_then(|k| k.etcd_snapshots.as_ref())
                    .map(EtcdSnapshots::describe),
                "installed": self.k3s.presence().installed,
                "note": self.note,
            }),
        }
    }

    /// Audit the moment the K3s API becomes reachable outside the VPN and
    /// loopback.
    fn tick(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> Option<Instant> {
        let bind = Self::bind(current)?;
        let now = Instant::now();
        if self.next_exposure_check.is_some_and(|t| now < t) {
            return self.next_exposure_check;
        }
        self.next_exposure_check = Some(now + EXPOSURE_EVERY);
        let checks = self.k3s.checks(bind, None, None);
        let exposed = checks.iter().find(|c| c.name == CHECK && c.level == Level::Critical);
        if let (Some(check), false) = (exposed, self.exposed) {
            cx.event(&audit::K3S_EXPOSED, Outcome::Failure, check.reason.clone());
        }
        self.exposed = exposed.is_some();
        self.next_exposure_check
    }

    fn register_metrics(&mut self, registry: &mut Registry) {
        registry.register(
            "k3s_bind_ok",
            "0 while a K3s port listens outside the bind address and loopback, else 1 (absent without [k3s])",
            self.bind_ok.clone(),
        );
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
