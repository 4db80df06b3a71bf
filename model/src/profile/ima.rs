//! `[ima]`: Linux IMA appraisal, from a template in `ima/`.
//!
//! The section is validated by rendering the whole policy it stands for
//! and running every line through the kernel's grammar
//! ([`crate::ima::grammar`]), so `bulwarkctl validate` refuses offline
//! exactly what bulwarkd would refuse, before anything is written.

use serde::Serialize;
use toml::{Table, Value};

use super::Checker;
use crate::ima::grammar::{parse_policy, Func, DEBIAN_6_1};
use crate::ima::templates::{render_policy, template, TEMPLATES};

const IMA_KEYS: &[&str] = &[
    "mode",
    "template",
    "appraise",
    "measure",
    "signatures",
    "signing_cert",
    "extra_rules",
    "manage_cmdline",
    "scan_skip",
];
const DEFAULT_APPRAISE: [Func; 3] = [Func::BprmCheck, Func::ModuleCheck, Func::FirmwareCheck];
pub const DEFAULT_SIGNING_CERT: &str = "/etc/bulwark/ima/cert.der";

/// What IMA does on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImaMode {
    /// No policy; appraisal off on the command line.
    Off,
    /// Measurement rules only, no appraisal.
    Measure,
    /// Appraise, but let the kernel write missing or stale hashes instead of denying.
    Fix,
    /// Deny what has no valid label.
    Enforce,
}

impl ImaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ImaMode::Off => "off",
            ImaMode::Measure => "measure",
            ImaMode::Fix => "fix",
            ImaMode::Enforce => "enforce",
        }
    }
}

/// `[ima]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ima {
    pub mode: ImaMode,
    /// A template from `ima/` (its exclusions).
    pub template: String,
    /// Hooks appraised (and measured) for root-owned files.
    #[serde(serialize_with = "func_names")]
    pub appraise: Vec<Func>,
    /// Measurement rules too, for attestation.
    pub measure: bool,
    /// Require imasig signatures (verified with `signing_cert`) instead of hashes.
    pub signatures: bool,
    /// DER X.509 certificate whose key signs the files (with `signatures`).
    pub signing_cert: String,
    /// Policy lines added after the template, checked like it.
    pub extra_rules: Vec<String>,
    /// Write /etc/default/grub.d/50-bulwark-ima.cfg with the appraisal mode.
    pub manage_cmdline: bool,
    /// Directories the scan does not report, besides the template's.
    pub scan_skip: Vec<String>,
}

fn func_names<S: serde::Serializer>(v: &[Func], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|f| f.name()))
}

impl Ima {
    /// The policy file's text (`None` for mode off).
    pub fn policy(&self) -> Option<String> {
        render_policy(self)
    }

    /// Directories the scan does not report: the template's and the profile's.
    pub fn scan_skip(&self) -> Vec<String> {
        let mut out: Vec<String> = template(&self.template)
            .map(|t| t.scan_skip.iter().map(|s| (*s).to_owned()).collect())
            .unwrap_or_default();
        out.extend(self.scan_skip.iter().cloned());
        out
    }
}

impl Checker<'_> {
    pub(super) fn ima(&mut self, t: &Table) -> Option<Ima> {
        const P: &str = "ima";
        self.unknown_keys(P, t, IMA_KEYS);
        let before = self.errors.len();
        let mode = match self.choice(t, P, "mode", &["off", "measure", "fix", "enforce"]) {
            Some("off") => ImaMode::Off,
            Some("measure") => ImaMode::Measure,
            Some("enforce") => ImaMode::Enforce,
            Some(_) => ImaMode::Fix,
            None if t.contains_key("mode") => ImaMode::Fix,
            None => {
                self.err("ima.mode", "missing: one of off, measure, fix, enforce");
                ImaMode::Fix
            }
        };
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
        let template = match t.get("template") {
            None => "k3s-host".to_owned(),
            Some(_) => self.choice(t, P, "template", &names).unwrap_or("k3s-host").to_owned(),
        };
        let mut appraise = if t.contains_key("appraise") {
            self.array(t, P, "appraise", "hook names", |v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("expected a hook name such as \"BPRM_CHECK\", found {}", v.type_str()))?;
                match Func::parse(s) {
                    Some(f) if f.reads_files() && f != Func::MmapCheckReqprot => Ok(f),
                    Some(f) => Err(format!("{f} does not appraise files; use it in extra_rules")),
                    None => Err(format!(
                        "{s:?} is not a hook; one of BPRM_CHECK, MMAP_CHECK, FILE_CHECK, CREDS_CHECK, MODULE_CHECK, FIRMWARE_CHECK, KEXEC_KERNEL_CHECK, KEXEC_INITRAMFS_CHECK, POLICY_CHECK"
                    )),
                }
            })
        } else {
            DEFAULT_APPRAISE.to_vec()
        };
        let mut seen = Vec::new();
        appraise.retain(|f| {
            let fresh = !seen.contains(f);
            seen.push(*f);
            fresh
        });
        if appraise.is_empty() && mode != ImaMode::Off && t.contains_key("appraise") && self.errors.len() == before {
            self.err("ima.appraise", "empty: name at least one hook, e.g. [\"BPRM_CHECK\"]");
        }
        let measure = self.bool(t, P, "measure").unwrap_or(false);
        let signatures = self.bool(t, P, "signatures").unwrap_or(false);
        let signing_cert = match t.get("signing_cert") {
            None => DEFAULT_SIGNING_CERT.to_owned(),
            Some(Value::String(s)) if s.starts_with('/') && !s.contains('\0') => s.clone(),
            Some(Value::String(s)) => {
                self.err("ima.signing_cert", format!("{s:?} is not an absolute path"));
                String::new()
            }
            Some(v) => {
                self.err("ima.signing_cert", format!("expected a path, found {}", v.type_str()));
                String::new()
            }
        };
        let extra_rules = self.array(t, P, "extra_rules", "policy lines", |v| {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a policy line, found {}", v.type_str()))?;
            if s.contains('\n') || s.contains('\r') {
                return Err("one policy rule per string: no line breaks".to_owned());
            }
            Ok(s.to_owned())
        });
        let manage_cmdline = self.bool(t, P, "manage_cmdline").unwrap_or(true);
        let scan_skip = self.array(t, P, "scan_skip", "absolute paths", |v| match v.as_str() {
            Some(s) if s.starts_with('/') && !s.contains('\0') => Ok(s.trim_end_matches('/').to_owned()),
            Some(s) => Err(format!("{s:?} is not an absolute path")),
            None => Err(format!("expected a path, found {}", v.type_str())),
        });
        if self.errors.len() != before {
            return None;
        }
        let ima = Ima {
            mode,
            template,
            appraise,
            measure,
            signatures,
            signing_cert,
            extra_rules,
            manage_cmdline,
            scan_skip,
        };
        self.ima_policy(&ima);
        (self.errors.len() == before).then_some(ima)
    }

    /// Run the rendered policy through the kernel's grammar; name the
    /// `extra_rules` entry (or the template) a refused line came from.
    fn ima_policy(&mut self, ima: &Ima) {
        let Some(text) = ima.policy() else { return };
        let Err(errors) = parse_policy(&text, &DEBIAN_6_1) else {
            return;
        };
        let lines: Vec<&str> = text.split('\n').collect();
        for e in errors {
            let line = lines.get(e.line.saturating_sub(1)).copied().unwrap_or("");
            let path = match ima.extra_rules.iter().position(|r| r == line) {
                Some(i) => format!("ima.extra_rules[{i}]"),
                None => "ima.template".to_owned(),
            };
            self.err(
                path,
                format!(
                    "policy line {}: `{}`: {} ({})",
                    e.line, e.token, e.reason, DEBIAN_6_1.name
                ),
            );
        }
    }
}
