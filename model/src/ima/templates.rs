//! Bulwark's IMA policy templates (the files in `ima/`) and the policy a
//! profile's `[ima]` section renders to.

use crate::profile::{Ima, ImaMode};

use super::grammar::Func;

/// One template: the exclusions a kind of host needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    pub name: &'static str,
    /// The rules, with a comment per rule (`ima/NAME.policy`).
    pub text: &'static str,
    /// Directories a scan does not report although the policy would
    /// appraise them if executed from there: their files are only ever
    /// run through a mount the policy excludes (containerd's snapshots run
    /// through overlayfs).
    pub scan_skip: &'static [&'static str],
}

/// Every template, by name.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "k3s-host",
        text: include_str!("../../../ima/k3s-host.policy"),
        scan_skip: &[
            "/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
            "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
        ],
    },
    Template {
        name: "tcb",
        text: include_str!("../../../ima/tcb.policy"),
        scan_skip: &[],
    },
];

pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// First line of every policy Bulwark writes: how it recognises its own
/// file (and never removes anyone else's).
pub const POLICY_HEADER: &str = "# Managed by Bulwark";

/// Header comment naming a directory the scan does not report.
pub const SCAN_SKIP: &str = "# bulwark-scan-skip: ";
/// Header comment naming the certificate signatures are verified with.
pub const SIGNING_CERT: &str = "# bulwark-signing-cert: ";

/// What a policy file Bulwark wrote records for the scan: the `scan_skip`
/// directories and the signing certificate.
pub fn header_records(policy: &str) -> (Vec<String>, Option<String>) {
    let mut skip = Vec::new();
    let mut cert = None;
    for line in policy.lines().take_while(|l| l.starts_with('#')) {
        if let Some(d) = line.strip_prefix(SCAN_SKIP) {
            skip.push(d.trim().to_owned());
        } else if let Some(c) = line.strip_prefix(SIGNING_CERT) {
            cert = Some(c.trim().to_owned());
        }
    }
    (skip, cert)
}

/// Why each hook is appraised, for the comment above its rule.
fn why(func: Func) -> &'static str {
    match func {
        Func::BprmCheck => "executables run by execve(2)",
        Func::MmapCheck | Func::MmapCheckReqprot => "files mapped executable (shared libraries)",
        Func::ModuleCheck => "kernel modules loaded from files",
        Func::FirmwareCheck => "firmware the kernel loads",
        Func::FileCheck => "every file opened",
        Func::CredsCheck => "executables that change credentials (setuid)",
        Func::KexecKernelCheck => "kernels started by kexec",
        Func::KexecInitramfsCheck => "initramfs images started by kexec",
        Func::PolicyCheck => "IMA policy files loaded by path",
        _ => "",
    }
}

/// The policy text for a profile's `[ima]` section; `None` for mode
/// `off` (Bulwark writes no policy then). Template, then `extra_rules`
/// (so their exclusions come before the generated rules and win), then
/// the appraise and measure rules generated from `appraise`.
pub fn render_policy(ima: &Ima) -> Option<String> {
    if ima.mode == ImaMode::Off {
        return None;
    }
    let mut out = format!(
        "{POLICY_HEADER} from [ima] (template {}, mode {}); systemd loads it at boot.\n\
         # Every rule was checked against the kernel's policy grammar before it was written.\n",
        ima.template,
        ima.mode.as_str()
    );
    // For bulwarkctl and the dpkg hook, which read this file, not the profile.
    for dir in ima.scan_skip() {
        out.push_str(&format!("{SCAN_SKIP}{dir}\n"));
    }
    if ima.signatures {
        out.push_str(&format!("{SIGNING_CERT}{}\n", ima.signing_cert));
    }
    let t = template(&ima.template).map_or("", |t| t.text);
    out.push_str(t);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if !ima.extra_rules.is_empty() {
        out.push_str("# extra_rules from the profile:\n");
        for r in &ima.extra_rules {
            out.push_str(r);
            out.push('\n');
        }
    }
    let appraise = matches!(ima.mode, ImaMode::Fix | ImaMode::Enforce);
    if appraise {
        for f in &ima.appraise {
            let kind = if ima.signatures {
                "a signature by signing_cert"
            } else {
                "a hash or a signature"
            };
            out.push_str(&format!(
                "# Appraise root-owned {}: each needs {kind} in security.ima.\n",
                why(*f)
            ));
            out.push_str(&format!("appraise func={f} fowner=0"));
            if ima.signatures {
                out.push_str(" appraise_type=imasig");
            }
            out.push('\n');
        }
    }
    if ima.measure || ima.mode == ImaMode::Measure {
        for f in &ima.appraise {
            out.push_str(&format!(
                "# Measure {} into the runtime measurement list (attestation).\n",
                why(*f)
            ));
            out.push_str(&format!("measure func={f}\n"));
        }
    }
    Some(out)
}
