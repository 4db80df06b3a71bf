//! IMA: the appraisal policy, its load into the kernel, the kernel command
//! line, the pre-flight scan and the enforce guard.
//!
//! Bulwark owns two files: `/etc/ima/ima-policy` (recognised by its first
//! line; someone else's policy is never replaced or removed) and
//! `/etc/default/grub.d/50-bulwark-ima.cfg`. The policy is rendered from
//! the profile and checked against the kernel's grammar by the model, so
//! nothing invalid reaches the kernel. When this boot has no custom policy
//! yet it is loaded now through securityfs; otherwise it takes effect
//! after a reboot (Debian's kernel takes one policy per boot).
//!
//! A wrong enforce policy bricks a host, so moving to enforce is refused
//! while a scan finds files the policy would deny, unless `--force`.
//! bulwarkd never writes `security.ima` (that needs CAP_SYS_ADMIN, which its
//! unit does not grant): `bulwarkctl ima label` and the dpkg hook do, and
//! report their runs here for the audit log.

mod host;
mod report;
mod scan;

use std::any::Any;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bulwark_model::api::{Change, ChangeOp, Check, Level, ModuleStatus};
use bulwark_model::ima::api::{LabelRun, LabelRunRecorded, ScanReport, ScanRequest, MODULE};
use bulwark_model::ima::cmdline::{grub_dropin, wanted_appraise, GRUB_DROPIN};
use bulwark_model::ima::grammar::{parse_policy, Policy, DEBIAN_6_1};
use bulwark_model::profile::{Ima as ImaProfile, ImaMode};
use bulwark_model::Profile;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::audit::{self, Outcome};
use crate::module::{ActionResult, ActionRole, Artifacts, Cx, DriftEvents, ErrorClass, Module, ModuleError};
use crate::state::StateError;

pub use host::{sha256_hex, ImaHost, Kernel, CMDLINE, POLICY_FILE, SECURITYFS};
pub use scan::{ScanJob, Scanner};

/// Files a refusal lists before "and N more".
const REFUSAL_LIST: usize = 10;
/// Failing files a daemon report keeps.
const REPORT_LIMIT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ImaError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel refused policy line {line} `{rule}`: {source}; nothing of this policy was loaded")]
    Load {
        line: usize,
        rule: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists and was not written by Bulwark (no \"# Managed by Bulwark\" first line): move it away to let Bulwark manage IMA")]
    Foreign { path: String },
    #[error("moving to IMA enforce refused: {failing} file(s) the policy appraises would be denied:\n  {list}\nlabel them (`bulwarkctl ima label --all`, or the paths) and apply again, or apply with --force")]
    EnforceRefused { failing: u64, list: String },
    #[error("the IMA policy the profile renders is invalid: {0}")]
    Invalid(String),
    #[error("bad request body: {0}")]
    Body(#[from] serde_json::Error),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ImaError {
    fn class(&self) -> ErrorClass {
        match self {
            ImaError::Foreign { .. } | ImaError::EnforceRefused { .. } => ErrorClass::Conflict,
            ImaError::Body(_) | ImaError::Invalid(_) => ErrorClass::BadRequest,
            ImaError::State(_) => ErrorClass::State,
            ImaError::Io { .. } | ImaError::Load { .. } => ErrorClass::Failed,
        }
    }
}

impl From<ImaError> for ModuleError {
    fn from(e: ImaError) -> ModuleError {
        ModuleError::new(MODULE, e.class(), e)
    }
}

/// What the profile wants on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    policy: Option<String>,
    dropin: Option<String>,
}

fn wanted(ima: &ImaProfile) -> Wanted {
    Wanted {
        policy: ima.policy(),
        dropin: ima.manage_cmdline.then(|| grub_dropin(ima.mode)),
    }
}

fn parsed(text: &str) -> Result<Policy, ImaError> {
    parse_policy(text, &DEBIAN_6_1)
        .map_err(|errs| ImaError::Invalid(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))
}

/// The module's metrics; they carry `module="ima"`.
#[derive(Debug, Default, Clone)]
struct Gauges {
    enforcing: Gauge,
    mode_matches: Gauge,
    policy_loaded: Gauge,
    reboot_needed: Gauge,
    measurements: Gauge,
    violations: Gauge,
    unlabelled: Gauge,
    scan_age: Gauge,
}

/// The IMA module.
#[derive(Debug, Default)]
pub struct Ima {
    scanner: Scanner,
    gauges: Gauges,
    /// Failing count of the last scan that was audited.
    audited_failing: Option<u64>,
    /// The profile's scan job, for the periodic scan.
    job: Option<ScanJob>,
}

fn change(op: ChangeOp, what: String) -> Change {
    Change::new(MODULE, op, what)
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Ima {
    pub fn new() -> Ima {
        Ima::default()
    }

    fn job(cx: &Cx<'_>, ima: &ImaProfile, policy: Policy) -> ScanJob {
        ScanJob {
            roots: vec![cx.host.root().to_path_buf()],
            root: cx.host.root().to_path_buf(),
            policy,
            skip: ima.scan_skip(),
            cert: ima.signatures.then(|| cx.host.path(&ima.signing_cert)),
            limit: Some(REPORT_LIMIT),
        }
    }

    /// Whether this apply moves the host into enforce: the profile
    /// enforces, something Bulwark does changes (the policy file, the
    /// drop-in, a load now), and this boot does not already enforce exactly
    /// this policy.
    fn moving_to_enforce(ih: &ImaHost, ima: &ImaProfile, w: &Wanted) -> Result<bool, ImaError> {
        let Some(policy) = &w.policy else { return Ok(false) };
        if ima.mode != ImaMode::Enforce {
            return Ok(false);
        }
        let kernel = ih.kernel()?;
        let running = ih.cmdline();
        let already = running.appraise_mode() == "enforce" && kernel == Kernel::Loaded(Some(sha256_hex(policy)));
        let changes = ih.policy_file()?.as_ref() != Some(policy)
            || (w.dropin.is_some() && ih.dropin()? != w.dropin)
            || kernel == Kernel::NotLoaded;
        Ok(changes && !already)
    }

    /// The pre-flight scan; refuses unless clean or forced.
    fn guard(&mut self, cx: &mut Cx<'_>, ima: &ImaProfile, policy_text: &str) -> Result<(), ImaError> {
        let policy = parsed(policy_text)?;
        let mut job = Ima::job(cx, ima, policy);
        job.limit = Some(REFUSAL_LIST);
        let report = job.run();
        let failing = report.counts.failing();
        self.remember(report.clone());
        if failing == 0 {
            return Ok(());
        }
        let mut list: Vec<String> = report
            .files
            .iter()
            .map(|f| format!("{} ({}: {})", f.path, f.state.map_or("?", |s| s.as_str()), f.detail))
            .collect();
        if failing > list.len() as u64 {
            list.push(format!("and {} more", failing - list.len() as u64));
        }
        let list = list.join("\n  ");
        if cx.force {
            cx.event(
                &audit::IMA_ENFORCE_FORCED,
                Outcome::Success,
                format!("{failing} file(s) would be denied: {}", list.replace("\n  ", "; ")),
            );
            return Ok(());
        }
        cx.event(
            &audit::IMA_ENFORCE_REFUSED,
            Outcome::Refused,
            format!("{failing} file(s) would be denied: {}", list.replace("\n  ", "; ")),
        );
        Err(ImaError::EnforceRefused { failing, list })
    }

    fn remember(&mut self, report: ScanReport) {
        self.gauges.unlabelled.set(as_i64(report.counts.failing()));
        self.scanner.last = Some(report);
    }

    /// Whether loading now is safe: the running kernel does not enforce,
    /// or the profile enforces too (and the guard passed).
    fn may_load_now(ih: &ImaHost, ima: &ImaProfile, policy: &str) -> bool {
        let appraises = parsed(policy).map(|p| p.appraises()).unwrap_or(true);
        !appraises || ih.cmdline().appraise_mode() != "enforce" || ima.mode == ImaMode::Enforce
    }

    /// Remove what Bulwark created: its policy file and drop-in.
    fn unmanage(&mut self, cx: &mut Cx<'_>) -> Result<(), ImaError> {
        let ih = ImaHost::new(cx.host.clone());
        let mut removed = Vec::new();
        if ih.policy_file()?.is_some_and(|t| ImaHost::policy_is_ours(&t)) {
            ih.remove(POLICY_FILE)?;
            removed.push(POLICY_FILE);
        }
        if ih.dropin()?.is_some() {
            ih.remove(GRUB_DROPIN)?;
            removed.push(GRUB_DROPIN);
        }
        self.job = None;
        self.scanner.next = None;
        if !removed.is_empty() {
            cx.event(
                &audit::IMA_UNMANAGED,
                Outcome::Success,
                format!(
                    "removed {}; the running kernel keeps its policy until reboot",
                    removed.join(", ")
                ),
            );
        }
        Ok(())
    }

    fn converge(&mut self, cx: &mut Cx<'_>, ima: &ImaProfile) -> Result<(), ImaError> {
        let ih = ImaHost::new(cx.host.clone());
        let w = wanted(ima);
        let before = ih.policy_file()?;
        if let Some(text) = &before {
            if !ImaHost::policy_is_ours(text) && w.policy.is_some() {
                return Err(ImaError::Foreign {
                    path: POLICY_FILE.to_owned(),
                });
            }
        }
        match &w.policy {
            Some(p) if before.as_ref() != Some(p) => {
                ih.write(POLICY_FILE, p)?;
                cx.event(
                    &audit::IMA_POLICY_WRITTEN,
                    Outcome::Success,
                    format!(
                        "template {}, mode {}, sha256 {}",
                        ima.template,
                        ima.mode.as_str(),
                        sha256_hex(p)
                    ),
                );
            }
            Some(_) => {}
            None if before.as_deref().is_some_and(ImaHost::policy_is_ours) => ih.remove(POLICY_FILE)?,
            None => {}
        }
        if let Some(p) = &w.policy {
            if ih.kernel()? == Kernel::NotLoaded && Ima::may_load_now(&ih, ima, p) {
                if let Err(e) = ih.load(p) {
                    // Put the file back: a policy the kernel refuses now would
                    // fail at boot too.
                    match &before {
                        Some(old) => ih.write(POLICY_FILE, old)?,
                        None => ih.remove(POLICY_FILE)?,
                    }
                    return Err(e);
                }
                cx.event(
                    &audit::IMA_POLICY_LOADED,
                    Outcome::Success,
                    format!(
                        "sha256 {} under ima_appraise={}",
                        sha256_hex(p),
                        ih.cmdline().appraise_mode()
                    ),
                );
            }
        }
        let dropin = ih.dropin()?;
        if dropin != w.dropin {
            match &w.dropin {
                Some(d) => ih.write(GRUB_DROPIN, d)?,
                None => ih.remove(GRUB_DROPIN)?,
            }
            let what = match &w.dropin {
                Some(_) => format!(
                    "{GRUB_DROPIN}: ima_appraise={}; run update-grub and reboot",
                    wanted_appraise(ima.mode)
                ),
                None => format!("{GRUB_DROPIN} removed; run update-grub"),
            };
            cx.event(&audit::IMA_CMDLINE_CHANGED, Outcome::Success, what);
        }
        self.job = w
            .policy
            .as_deref()
            .map(parsed)
            .transpose()?
            .map(|p| Ima::job(cx, ima, p));
        if let Some(job) = self.job.clone() {
            if job.policy.appraises() {
                self.scanner.start(job);
            }
        }
        Ok(())
    }
}

impl Module for Ima {
    fn name(&self) -> &'static str {
        MODULE
    }

    fn render(&self, profile: &Profile) -> Artifacts {
        let mut a = Artifacts::new();
        if let Some(ima) = &profile.ima {
            let w = wanted(ima);
            if let Some(p) = w.policy {
                a.insert("ima-policy".to_owned(), p);
            }
            if let Some(d) = w.dropin {
                a.insert("50-bulwark-ima.cfg".to_owned(), d);
            }
        }
        a
    }

    fn plan(
        &mut self,
        cx: &mut Cx<'_>,
        profile: &Profile,
        _current: Option<&Profile>,
    ) -> Result<Vec<Change>, ModuleError> {
        Ok(Ima::plan_for(cx, profile.ima.as_ref())?)
    }

    fn check(&mut self, cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        let Some(ima) = &profile.ima else { return Ok(()) };
        let ih = ImaHost::new(cx.host.clone());
        if let Some(text) = ih.policy_file()? {
            if !ImaHost::policy_is_ours(&text) && ima.policy().is_some() {
                return Err(ImaError::Foreign {
                    path: POLICY_FILE.to_owned(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// The enforce guard: an operator's apply (or dry run) that moves the
    /// host into enforce is refused while files would be denied. Restores,
    /// rollbacks and drift repair put back what was in force and skip it.
    fn preflight(&mut self, cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        let Some(ima) = &profile.ima else { return Ok(()) };
        let ih = ImaHost::new(cx.host.clone());
        let w = wanted(ima);
        if let Some(p) = &w.policy {
            if Ima::moving_to_enforce(&ih, ima, &w)? {
                self.guard(cx, ima, p)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        match &profile.ima {
            Some(ima) => self.converge(cx, ima)?,
            None => self.unmanage(cx)?,
        }
        Ok(())
    }

    fn observe(&mut self, cx: &mut Cx<'_>, current: &Profile) -> Result<Vec<String>, ModuleError> {
        let ih = ImaHost::new(cx.host.clone());
        let mut out = Vec::new();
        let Some(ima) = &current.ima else { return Ok(out) };
        let w = wanted(ima);
        if ih.policy_file().map_err(ModuleError::from)? != w.policy {
            out.push(format!("{POLICY_FILE} differs from the profile"));
        }
        if ih.dropin().map_err(ModuleError::from)? != w.dropin {
            out.push(format!("{GRUB_DROPIN} differs from the profile"));
        }
        Ok(out)
    }

    fn drift_events(&self) -> DriftEvents {
        DriftEvents {
            repaired: &audit::IMA_DRIFT_REPAIRED,
            detected: &audit::IMA_DRIFT_DETECTED,
            // The file only matters at the next boot.
            level: Level::Warning,
        }
    }

    fn health(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> Vec<Check> {
        match current.and_then(|p| p.ima.as_ref()) {
            Some(ima) => self.checks(cx, ima),
            None => Vec::new(),
        }
    }

    fn status(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> ModuleStatus {
        let Some(ima) = current.and_then(|p| p.ima.as_ref()) else {
            return ModuleStatus {
                module: MODULE.to_owned(),
                managed: false,
                summary: "not managed".to_owned(),
                ..ModuleStatus::default()
            };
        };
        match self.state(cx, ima) {
            Ok(s) => ModuleStatus {
                module: MODULE.to_owned(),
                managed: true,
                level: Level::Ok,
                summary: format!(
                    "mode {} (ima_appraise={} in force), policy {}",
                    s.mode_wanted, s.mode_in_force, s.policy
                ),
                details: serde_json::to_value(&s).unwrap_or_default(),
            },
            Err(e) => ModuleStatus {
                module: MODULE.to_owned(),
                managed: true,
                level: Level::Critical,
                summary: e.to_string(),
                details: serde_json::Value::Null,
            },
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> Option<Instant> {
        let ima = current.and_then(|p| p.ima.as_ref())?;
        if self.job.is_none() {
            // After a restart: the generation in force decides what to scan.
            self.job = ima.policy().and_then(|t| parsed(&t).ok()).map(|p| Ima::job(cx, ima, p));
        }
        if let Some(report) = self.scanner.poll() {
            let failing = report.counts.failing();
            let counts = report.counts;
            let ms = report.duration_ms;
            self.gauges.unlabelled.set(as_i64(failing));
            if self.audited_failing != Some(failing) {
                self.audited_failing = Some(failing);
                cx.event(
                    &audit::IMA_SCAN,
                    Outcome::Success,
                    format!(
                        "{} appraised file(s) in {ms} ms: {} ok, {} signed, {} missing, {} stale, {} unreadable",
                        counts.total(),
                        counts.ok,
                        counts.signed,
                        counts.missing,
                        counts.stale,
                        counts.unreadable
                    ),
                );
            }
        }
        let job = self.job.clone().filter(|j| j.policy.appraises())?;
        let due = self.scanner.next.is_none_or(|n| Instant::now() >= n);
        if due && !self.scanner.running() {
            self.scanner.start(job);
        }
        // Poll a running scan every few seconds; otherwise wake for the next one.
        Some(if self.scanner.running() {
            Instant::now() + Duration::from_secs(2)
        } else {
            self.scanner.next.unwrap_or_else(|| Instant::now() + scan::INTERVAL)
        })
    }

    fn actions(&self) -> &'static [(&'static str, ActionRole)] {
        &[
            ("state", ActionRole::Read),
            ("report", ActionRole::Read),
            ("scan", ActionRole::Admin),
            ("labelled", ActionRole::Admin),
        ]
    }

    fn action(
        &mut self,
        cx: &mut Cx<'_>,
        current: Option<&Profile>,
        action: &str,
        body: serde_json::Value,
    ) -> ActionResult {
        let not_managed = || {
            ModuleError::new(
                MODULE,
                ErrorClass::Conflict,
                "the profile in force has no [ima] section: apply one first",
            )
        };
        let ima = current.and_then(|p| p.ima.as_ref());
        match action {
            "state" => {
                let ima = ima.ok_or_else(not_managed)?;
                let s = self.state(cx, ima)?;
                Ok(json(&s))
            }
            "report" => Ok(serde_json::to_value(&self.scanner.last).unwrap_or_default()),
            "scan" => {
                let ima = ima.ok_or_else(not_managed)?;
                let req: ScanRequest = if body.is_null() {
                    ScanRequest::default()
                } else {
                    serde_json::from_value(body).map_err(ImaError::from)?
                };
                let text = ima.policy().ok_or_else(not_managed)?;
                let mut job = Ima::job(cx, ima, parsed(&text)?);
                if !req.paths.is_empty() {
                    job.roots = req.paths.iter().map(|p| cx.host.path(p)).collect();
                }
                job.limit = Some(req.limit.unwrap_or(REPORT_LIMIT));
                let report = job.run();
                self.remember(report.clone());
                Ok(json(&report))
            }
            "labelled" => {
                let run: LabelRun = serde_json::from_value(body).map_err(ImaError::from)?;
                let mut msg = format!(
                    "{}: {} labelled, {} already current, {} failed in {} ms",
                    run.source, run.labelled, run.current, run.failed, run.duration_ms
                );
                if !run.packages.is_empty() {
                    msg.push_str(&format!(" (packages: {})", run.packages.join(", ")));
                }
                if !run.failures.is_empty() {
                    msg.push_str(&format!("; failures: {}", run.failures.join("; ")));
                }
                let outcome = if run.failed == 0 {
                    Outcome::Success
                } else {
                    Outcome::Failure
                };
                cx.event(&audit::IMA_LABELLED, outcome, msg);
                // Labels changed: rescan for health.
                if let Some(job) = self.job.clone() {
                    self.scanner.next = None;
                    self.scanner.start(job);
                }
                Ok(json(&LabelRunRecorded {
                    event: audit::IMA_LABELLED.id.to_owned(),
                }))
            }
            other => Err(ModuleError::new(
                MODULE,
                ErrorClass::NotFound,
                format!("no action {other:?}"),
            )),
        }
    }

    fn register_metrics(&mut self, registry: &mut Registry) {
        // The registry handed in already labels every series module="ima".
        let r = registry;
        let g = &self.gauges;
        r.register(
            "ima_enforcing",
            "1 when this boot appraises in enforce mode",
            g.enforcing.clone(),
        );
        r.register(
            "ima_mode_matches",
            "1 when the appraisal mode in force is the profile's",
            g.mode_matches.clone(),
        );
        r.register(
            "ima_policy_loaded",
            "1 when this boot runs the profile's policy",
            g.policy_loaded.clone(),
        );
        r.register(
            "ima_reboot_needed",
            "1 when a reboot is needed to take the profile into use",
            g.reboot_needed.clone(),
        );
        r.register(
            "ima_measurements",
            "Entries in the IMA runtime measurement list",
            g.measurements.clone(),
        );
        r.register(
            "ima_violations",
            "Integrity violations the kernel counted",
            g.violations.clone(),
        );
        r.register(
            "ima_unlabelled_files",
            "Appraised files the last scan found missing, stale or unreadable",
            g.unlabelled.clone(),
        );
        r.register(
            "ima_scan_age_seconds",
            "Seconds since the last scan finished",
            g.scan_age.clone(),
        );
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// An answer as JSON (these types always serialise).
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

#[cfg(test)]
mod tests;
