//! What the IMA module tells: its plan, its state, its health checks.

use bulwark_model::api::{Change, ChangeOp, Check, Level};
use bulwark_model::ima::api::{ImaState, ScanSummary, MODULE};
use bulwark_model::ima::cmdline::{wanted_appraise, GRUB_DROPIN};
use bulwark_model::profile::{Ima as ImaProfile, ImaMode};

use super::host::{self, sha256_hex, ImaHost, Kernel, POLICY_FILE, SECURITYFS};
use super::{as_i64, change, parsed, scan, wanted, Ima, ImaError};
use crate::module::Cx;

impl Ima {
    /// `loaded`, `after-reboot`, `reboot-needed`, `not-loaded` or `none`.
    pub(super) fn policy_state(ih: &ImaHost, wanted: Option<&str>) -> Result<&'static str, ImaError> {
        Ok(match (ih.kernel()?, wanted) {
            (Kernel::NoIma, _) => "none",
            (_, None) => "none",
            (Kernel::NotLoaded, Some(_)) => match ih.policy_file()? {
                Some(_) => "after-reboot",
                None => "not-loaded",
            },
            (Kernel::Loaded(Some(sha)), Some(w)) if sha == sha256_hex(w) => "loaded",
            (Kernel::Loaded(_), Some(w)) if ih.policy_file()?.as_deref() == Some(w) => "reboot-needed",
            (Kernel::Loaded(_), Some(_)) => "reboot-needed",
        })
    }

    /// The commands left for the operator, in order.
    pub(super) fn pending(ih: &ImaHost, ima: &ImaProfile, policy_state: &str) -> Vec<String> {
        let mut out = Vec::new();
        let want = wanted_appraise(ima.mode);
        let word = format!("ima_appraise={want}");
        let running = ih.cmdline();
        let cmdline_ok = running.appraise.as_deref() == Some(want)
            || (matches!(ima.mode, ImaMode::Off | ImaMode::Measure) && running.appraise.is_none());
        if ima.manage_cmdline && !cmdline_ok {
            match ih.grub_cfg_has(&word) {
                Some(false) => out.push("update-grub".to_owned()),
                Some(true) => {}
                None => out.push(format!(
                    "add {word} to the kernel command line of this host's boot loader (no /boot/grub/grub.cfg)"
                )),
            }
        } else if !cmdline_ok {
            out.push(format!(
                "add {word} to the kernel command line (manage_cmdline = false)"
            ));
        }
        if !cmdline_ok || matches!(policy_state, "after-reboot" | "reboot-needed") {
            out.push("reboot".to_owned());
        }
        out
    }

    pub(super) fn state(&mut self, cx: &Cx<'_>, ima: &ImaProfile) -> Result<ImaState, ImaError> {
        let ih = ImaHost::new(cx.host.clone());
        let w = wanted(ima);
        let kernel = ih.kernel()?;
        let policy = Ima::policy_state(&ih, w.policy.as_deref())?;
        let running = ih.cmdline();
        let state = ImaState {
            mode_wanted: ima.mode.as_str().to_owned(),
            mode_in_force: running.appraise_mode().to_owned(),
            kernel_ima: kernel != Kernel::NoIma,
            policy_file_current: ih.policy_file()? == w.policy,
            policy: policy.to_owned(),
            pending: Ima::pending(&ih, ima, policy),
            measurements: ih.counter("runtime_measurements_count"),
            violations: ih.counter("violations"),
            last_scan: self.scanner.last.as_ref().map(|r| ScanSummary {
                finished: r.started + r.duration_ms / 1000,
                duration_ms: r.duration_ms,
                counts: r.counts,
            }),
        };
        let g = &self.gauges;
        g.enforcing
            .set(i64::from(state.kernel_ima && state.mode_in_force == "enforce"));
        g.mode_matches
            .set(i64::from(state.mode_in_force == wanted_appraise(ima.mode)));
        g.policy_loaded.set(i64::from(policy == "loaded"));
        g.reboot_needed
            .set(i64::from(state.pending.iter().any(|p| p == "reboot")));
        g.measurements.set(as_i64(state.measurements.unwrap_or(0)));
        g.violations.set(as_i64(state.violations.unwrap_or(0)));
        if let Some(s) = &state.last_scan {
            g.scan_age.set(as_i64(host::now().saturating_sub(s.finished)));
        }
        Ok(state)
    }

    pub(super) fn plan_for(cx: &Cx<'_>, ima: Option<&ImaProfile>) -> Result<Vec<Change>, ImaError> {
        let ih = ImaHost::new(cx.host.clone());
        let mut out = Vec::new();
        let have_policy = ih.policy_file()?;
        let have_dropin = ih.dropin()?;
        let Some(ima) = ima else {
            if have_policy.as_deref().is_some_and(ImaHost::policy_is_ours) {
                out.push(change(
                    ChangeOp::Remove,
                    format!("{POLICY_FILE} (the running kernel keeps its policy until reboot)"),
                ));
            }
            if have_dropin.is_some() {
                out.push(change(
                    ChangeOp::Remove,
                    format!("{GRUB_DROPIN} (then run `update-grub`)"),
                ));
            }
            return Ok(out);
        };
        let w = wanted(ima);
        match (&have_policy, &w.policy) {
            (None, Some(p)) | (Some(_), Some(p)) if have_policy.as_ref() != Some(p) => {
                let rules = parsed(p).map(|x| x.rules.len()).unwrap_or(0);
                let op = if have_policy.is_some() {
                    ChangeOp::Change
                } else {
                    ChangeOp::Add
                };
                out.push(change(
                    op,
                    format!(
                        "{POLICY_FILE} (template {}, mode {}, {rules} rules)",
                        ima.template,
                        ima.mode.as_str()
                    ),
                ));
                let load = match ih.kernel()? {
                    Kernel::NoIma => "not loaded: this kernel has no IMA (/sys/kernel/security/ima)".to_owned(),
                    Kernel::NotLoaded if Ima::may_load_now(&ih, ima, p) => "load the policy into the running kernel now".to_owned(),
                    Kernel::NotLoaded => format!(
                        "not loaded now: this boot enforces (ima_appraise={}) and the profile wants {}; takes effect after reboot",
                        ih.cmdline().appraise_mode(),
                        ima.mode.as_str()
                    ),
                    Kernel::Loaded(_) => "takes effect after reboot (this boot already runs a custom policy)".to_owned(),
                };
                out.push(change(ChangeOp::Change, load));
            }
            (Some(old), None) if ImaHost::policy_is_ours(old) => {
                out.push(change(
                    ChangeOp::Remove,
                    format!("{POLICY_FILE} (mode off; the running kernel keeps its policy until reboot)"),
                ));
            }
            _ => {}
        }
        if have_dropin != w.dropin {
            let what = match (&w.dropin, &have_dropin) {
                (Some(_), _) => format!(
                    "{GRUB_DROPIN} (ima_appraise={}; then run `update-grub` and `reboot`)",
                    wanted_appraise(ima.mode)
                ),
                (None, _) => format!("{GRUB_DROPIN} (manage_cmdline = false; then run `update-grub`)"),
            };
            let op = match (&w.dropin, &have_dropin) {
                (Some(_), None) => ChangeOp::Add,
                (None, _) => ChangeOp::Remove,
                _ => ChangeOp::Change,
            };
            out.push(change(op, what));
        }
        if ima.mode == ImaMode::Enforce && Ima::moving_to_enforce(&ih, ima, &w)? {
            out.push(change(
                ChangeOp::Change,
                "moving to enforce: a pre-flight scan must find every appraised file labelled (or --force)".to_owned(),
            ));
        }
        Ok(out)
    }

    pub(super) fn checks(&mut self, cx: &Cx<'_>, ima: &ImaProfile) -> Vec<Check> {
        let check = |name: &str, level, reason: String| Check {
            name: name.to_owned(),
            module: MODULE.to_owned(),
            level,
            reason,
        };
        let state = match self.state(cx, ima) {
            Ok(s) => s,
            Err(e) => return vec![check("ima", Level::Critical, e.to_string())],
        };
        let mut out = Vec::new();
        let wants_kernel = ima.mode != ImaMode::Off;
        if !state.kernel_ima {
            let level = if wants_kernel { Level::Critical } else { Level::Ok };
            out.push(check(
                "ima-kernel",
                level,
                format!("no {SECURITYFS}: this kernel has no IMA"),
            ));
            return out;
        }
        let want = wanted_appraise(ima.mode);
        let steps = if state.pending.is_empty() {
            String::new()
        } else {
            format!("; to do: {}", state.pending.join(", then "))
        };
        let mode_ok = match ima.mode {
            ImaMode::Fix | ImaMode::Enforce => state.mode_in_force == want,
            // Without appraise rules the appraisal mode does not matter,
            // unless a built-in appraise policy is on the command line.
            ImaMode::Off | ImaMode::Measure => ImaHost::new(cx.host.clone()).cmdline().builtin_appraisal().is_none(),
        };
        out.push(check(
            "ima-mode",
            if mode_ok { Level::Ok } else { Level::Warning },
            format!(
                "ima_appraise={} in force, profile wants {} (mode {}){steps}",
                state.mode_in_force,
                want,
                ima.mode.as_str()
            ),
        ));
        let (level, reason) = match state.policy.as_str() {
            "loaded" => (Level::Ok, "this boot runs the profile's policy".to_owned()),
            "after-reboot" => (Level::Warning, "the policy file takes effect after reboot".to_owned()),
            "reboot-needed" => (
                Level::Warning,
                "reboot needed: this boot runs another policy than /etc/ima/ima-policy (the kernel takes one policy per boot)".to_owned(),
            ),
            "not-loaded" => (Level::Warning, "no custom policy loaded".to_owned()),
            _ => (Level::Ok, "no policy (mode off)".to_owned()),
        };
        out.push(check("ima-policy", level, reason));
        if matches!(ima.mode, ImaMode::Fix | ImaMode::Enforce) {
            let (level, reason) = match &state.last_scan {
                None if self.scanner.running() => (Level::Ok, "first scan running".to_owned()),
                None => (Level::Ok, "no scan yet".to_owned()),
                Some(s) => {
                    let age = host::now().saturating_sub(s.finished);
                    let failing = s.counts.failing();
                    let what = format!(
                        "{} appraised file(s): {} ok, {} signed, {} missing, {} stale, {} unreadable (scan {}s ago)",
                        s.counts.total(),
                        s.counts.ok,
                        s.counts.signed,
                        s.counts.missing,
                        s.counts.stale,
                        s.counts.unreadable,
                        age
                    );
                    if failing == 0 && age > 2 * scan::INTERVAL.as_secs() {
                        (Level::Warning, format!("{what}; the scan is old"))
                    } else if failing == 0 {
                        (Level::Ok, what)
                    } else if state.mode_in_force == "enforce" {
                        (
                            Level::Critical,
                            format!("{what}: enforce denies them; run `bulwarkctl ima label --all`"),
                        )
                    } else {
                        (
                            Level::Warning,
                            format!("{what}: enforce would deny them; run `bulwarkctl ima label --all`"),
                        )
                    }
                }
            };
            out.push(check("ima-labels", level, reason));
        }
        out
    }
}
