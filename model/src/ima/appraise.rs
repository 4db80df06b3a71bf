//! Which files a policy appraises, judged from a file's own facts.
//!
//! The pre-flight scan and the labeller ask this for every file they meet.
//! A file's filesystem, owner, group, mode and path are known; the process
//! that will open it (`uid=`, `euid=`, LSM labels) and a filesystem's UUID
//! are not. A condition that cannot be judged counts as matching for an
//! `appraise` rule and as not matching for a `dont_appraise` rule, so the
//! scan errs towards listing a file rather than missing one: a missed file
//! is one that enforce mode denies.

use std::collections::BTreeSet;

use super::grammar::{Action, Func, Mask, Policy, Rule};

/// What is known about one file.
#[derive(Debug, Clone, Copy)]
pub struct FileFacts<'a> {
    /// Absolute path on the host.
    pub path: &'a str,
    /// `statfs(2)` `f_type` of its filesystem.
    pub fsmagic: u64,
    /// The filesystem type's name (`ext4`), when known.
    pub fsname: Option<&'a str>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// Starts with the ELF magic (only looked at when the policy appraises mmap).
    pub elf: bool,
}

/// Why a file is appraised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The hooks that would appraise it.
    pub funcs: Vec<Func>,
    /// A rule that may decide requires a signature, not a hash.
    pub signature: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Yes,
    No,
    Maybe,
}

/// Hooks whose files a scan can find.
const FILE_FUNCS: [Func; 10] = [
    Func::FileCheck,
    Func::MmapCheck,
    Func::MmapCheckReqprot,
    Func::BprmCheck,
    Func::CredsCheck,
    Func::ModuleCheck,
    Func::FirmwareCheck,
    Func::KexecKernelCheck,
    Func::KexecInitramfsCheck,
    Func::PolicyCheck,
];

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

impl Policy {
    /// Whether the policy appraises anything at all.
    pub fn appraises(&self) -> bool {
        self.rules.iter().any(|r| r.action == Action::Appraise)
    }

    /// The hooks some appraise rule covers (every file hook for a rule without `func=`).
    pub fn appraised_funcs(&self) -> BTreeSet<Func> {
        let mut out = BTreeSet::new();
        for r in self.rules.iter().filter(|r| r.action == Action::Appraise) {
            match r.func {
                Some(f) if f.reads_files() => {
                    out.insert(f);
                }
                Some(_) => {}
                None => out.extend(FILE_FUNCS),
            }
        }
        out
    }

    /// Whether a file's ELF magic matters (mmap for exec is appraised).
    pub fn needs_elf(&self) -> bool {
        let funcs = self.appraised_funcs();
        funcs.contains(&Func::MmapCheck) || funcs.contains(&Func::MmapCheckReqprot)
    }

    /// Filesystem magics the policy never appraises: an unconditional
    /// `dont_appraise fsmagic=M` with no appraise rule before it that could
    /// match a file there. A scan does not descend into them.
    pub fn skipped_magics(&self) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let Some(m) = r.fsmagic else { continue };
            if r.action != Action::DontAppraise || !only_fsmagic(r) {
                continue;
            }
            let shadowed = self.rules[..i]
                .iter()
                .any(|e| e.action == Action::Appraise && e.fsmagic.is_none_or(|x| x == m));
            if !shadowed {
                out.insert(m);
            }
        }
        out
    }

    /// Whether the policy appraises this file, through which hooks, and
    /// whether a signature is needed. `None`: never appraised.
    pub fn verdict(&self, f: &FileFacts<'_>) -> Option<Verdict> {
        if f.mode & S_IFMT != S_IFREG {
            return None;
        }
        let mut funcs = Vec::new();
        let mut signature = false;
        for func in FILE_FUNCS {
            if !reachable(func, f) {
                continue;
            }
            if let Some(sig) = self.decide(func, f) {
                funcs.push(func);
                signature |= sig;
            }
        }
        (!funcs.is_empty()).then_some(Verdict { funcs, signature })
    }

    /// The first appraise/dont_appraise rule that decides, per the kernel's
    /// `ima_match_policy()`. `Some(signature needed)` when appraised.
    fn decide(&self, func: Func, f: &FileFacts<'_>) -> Option<bool> {
        let mut appraised = None;
        for r in &self.rules {
            match (r.action, matches(r, func, f)) {
                (_, Match::No) | (Action::DontAppraise, Match::Maybe) => continue,
                (Action::Appraise, Match::Yes) => {
                    return Some(appraised.unwrap_or(false) | r.requires_signature());
                }
                (Action::Appraise, Match::Maybe) => {
                    appraised = Some(appraised.unwrap_or(false) | r.requires_signature());
                }
                (Action::DontAppraise, Match::Yes) => return appraised,
                _ => continue,
            }
        }
        appraised
    }
}

fn only_fsmagic(r: &Rule) -> bool {
    r.func.is_none()
        && r.mask.is_none()
        && r.fsname.is_none()
        && r.fsuuid.is_none()
        && r.uid.is_none()
        && r.gid.is_none()
        && r.fowner.is_none()
        && r.fgroup.is_none()
        && r.lsm.is_empty()
}

/// Could this file be read through this hook at all?
fn reachable(func: Func, f: &FileFacts<'_>) -> bool {
    let exec = f.mode & 0o111 != 0;
    match func {
        Func::FileCheck => true,
        Func::MmapCheck | Func::MmapCheckReqprot => exec || f.elf,
        Func::BprmCheck | Func::CredsCheck => exec,
        Func::ModuleCheck => {
            let name = f.path.rsplit('/').next().unwrap_or("");
            name.ends_with(".ko") || name.contains(".ko.")
        }
        Func::FirmwareCheck => f.path.starts_with("/lib/firmware/") || f.path.starts_with("/usr/lib/firmware/"),
        Func::KexecKernelCheck => f.path.starts_with("/boot/vmlinuz"),
        Func::KexecInitramfsCheck => f.path.starts_with("/boot/initrd"),
        Func::PolicyCheck => f.path == "/etc/ima/ima-policy",
        _ => false,
    }
}

/// The access masks a hook passes: exact for exec and kernel reads, any of
/// read/write/append for FILE_CHECK.
fn masks(func: Func) -> (&'static [Mask], bool) {
    match func {
        Func::BprmCheck | Func::CredsCheck | Func::MmapCheck | Func::MmapCheckReqprot => (&[Mask::Exec], true),
        Func::FileCheck => (&[Mask::Read, Mask::Write, Mask::Append], false),
        _ => (&[Mask::Read], true),
    }
}

fn matches(r: &Rule, func: Func, f: &FileFacts<'_>) -> Match {
    let mut m = Match::Yes;
    if r.func.is_some_and(|rf| rf != func) {
        return Match::No;
    }
    if let Some(mc) = r.mask {
        let (possible, exact) = masks(func);
        if !possible.contains(&mc.mask) {
            return Match::No;
        }
        if !exact {
            m = Match::Maybe;
        }
    }
    if r.fsmagic.is_some_and(|x| x != f.fsmagic) {
        return Match::No;
    }
    if let Some(name) = &r.fsname {
        match f.fsname {
            Some(n) if n != name => return Match::No,
            Some(_) => {}
            None => m = Match::Maybe,
        }
    }
    if r.fowner.is_some_and(|c| !c.matches(f.uid)) || r.fgroup.is_some_and(|c| !c.matches(f.gid)) {
        return Match::No;
    }
    // The acting process and the filesystem UUID are unknown to a scan.
    if r.fsuuid.is_some() || r.uid.is_some() || r.gid.is_some() || !r.lsm.is_empty() {
        m = Match::Maybe;
    }
    m
}
