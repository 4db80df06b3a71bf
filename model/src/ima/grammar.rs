//! The kernel's IMA policy grammar, checked offline.
//!
//! A faithful model of `ima_parse_rule()` and `ima_validate_rule()` in
//! Linux 6.1 `security/integrity/ima/ima_policy.c`, narrowed by what the
//! running kernel was built with ([`Kernel`]): every rule Bulwark writes
//! (templates and `extra_rules`) passes through here before anything is
//! written, because one bad token makes the kernel refuse the whole policy
//! and the host boots with the built-in rules instead.
//!
//! The checker is stricter than the kernel in one way only: a condition or
//! option given twice is refused even where the kernel silently keeps the
//! last one (`fsname`, `appraise_type`, `permit_directio`), since such a
//! line does not say what its author meant.

use std::fmt;

/// What the target kernel was built with: the parts of the grammar that
/// depend on its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    pub name: &'static str,
    /// `CONFIG_IMA_APPRAISE_MODSIG`: `appraise_type=imasig|modsig`, `appraise_flag=`.
    pub modsig: bool,
    /// `CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS`: `func=KEY_CHECK`, `keyrings=`.
    pub asymmetric_keys: bool,
    /// `func=MMAP_CHECK_REQPROT` (Linux 6.3 and later).
    pub mmap_reqprot: bool,
    /// The LSM that answers `subj_*`/`obj_*` conditions.
    pub lsm: Lsm,
}

/// The major LSM of the target kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lsm {
    /// AppArmor knows only `subj_role`; any other LSM condition makes the
    /// first custom policy fail as a whole.
    AppArmor,
    /// SELinux knows every `subj_*` and `obj_*` condition.
    SeLinux,
}

/// Debian 12's `linux-image-amd64` (6.1): no appended signatures, AppArmor.
pub const DEBIAN_6_1: Kernel = Kernel {
    name: "Debian 6.1",
    modsig: false,
    asymmetric_keys: true,
    mmap_reqprot: false,
    lsm: Lsm::AppArmor,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Measure,
    DontMeasure,
    Appraise,
    DontAppraise,
    Audit,
    Hash,
    DontHash,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "measure" => Action::Measure,
            "dont_measure" => Action::DontMeasure,
            "appraise" => Action::Appraise,
            "dont_appraise" => Action::DontAppraise,
            "audit" => Action::Audit,
            "hash" => Action::Hash,
            "dont_hash" => Action::DontHash,
            _ => return None,
        })
    }
}

/// The hook a rule applies to (`func=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Func {
    FileCheck,
    MmapCheck,
    MmapCheckReqprot,
    BprmCheck,
    CredsCheck,
    ModuleCheck,
    FirmwareCheck,
    KexecKernelCheck,
    KexecInitramfsCheck,
    PolicyCheck,
    KexecCmdline,
    KeyCheck,
    CriticalData,
    SetxattrCheck,
}

impl Func {
    /// Every hook, in the kernel's order.
    pub const ALL: [Func; 14] = [
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
        Func::KexecCmdline,
        Func::KeyCheck,
        Func::CriticalData,
        Func::SetxattrCheck,
    ];

    /// The name a profile's `appraise` list and a policy use.
    pub fn name(self) -> &'static str {
        match self {
            Func::FileCheck => "FILE_CHECK",
            Func::MmapCheck => "MMAP_CHECK",
            Func::MmapCheckReqprot => "MMAP_CHECK_REQPROT",
            Func::BprmCheck => "BPRM_CHECK",
            Func::CredsCheck => "CREDS_CHECK",
            Func::ModuleCheck => "MODULE_CHECK",
            Func::FirmwareCheck => "FIRMWARE_CHECK",
            Func::KexecKernelCheck => "KEXEC_KERNEL_CHECK",
            Func::KexecInitramfsCheck => "KEXEC_INITRAMFS_CHECK",
            Func::PolicyCheck => "POLICY_CHECK",
            Func::KexecCmdline => "KEXEC_CMDLINE",
            Func::KeyCheck => "KEY_CHECK",
            Func::CriticalData => "CRITICAL_DATA",
            Func::SetxattrCheck => "SETXATTR_CHECK",
        }
    }

    /// `PATH_CHECK` and `FILE_MMAP` are the kernel's old spellings.
    pub fn parse(s: &str) -> Option<Func> {
        match s {
            "PATH_CHECK" => Some(Func::FileCheck),
            "FILE_MMAP" => Some(Func::MmapCheck),
            _ => Func::ALL.into_iter().find(|f| f.name() == s),
        }
    }

    /// Hooks that appraise a file (the others carry buffers or settings).
    pub fn reads_files(self) -> bool {
        !matches!(
            self,
            Func::KexecCmdline | Func::KeyCheck | Func::CriticalData | Func::SetxattrCheck
        )
    }
}

impl fmt::Display for Func {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `mask=` values (`MAY_*` in the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mask {
    Exec,
    Write,
    Read,
    Append,
}

/// `mask=X` (the access is exactly X) or `mask=^X` (the access includes X).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskCond {
    pub mask: Mask,
    pub includes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Gt,
}

/// `uid=0`, `fowner<1000`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCond {
    pub cmp: Cmp,
    pub value: u32,
}

impl IdCond {
    pub fn matches(&self, id: u32) -> bool {
        match self.cmp {
            Cmp::Eq => id == self.value,
            Cmp::Lt => id < self.value,
            Cmp::Gt => id > self.value,
        }
    }
}

/// `appraise_type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppraiseType {
    Imasig,
    ImasigModsig,
    Sigv3,
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 1-based line in the policy text.
    pub line: usize,
    pub action: Action,
    pub func: Option<Func>,
    pub mask: Option<MaskCond>,
    pub fsmagic: Option<u64>,
    pub fsname: Option<String>,
    pub fsuuid: Option<String>,
    /// `uid`/`euid` (`true`: effective): the acting process, not the file.
    pub uid: Option<(bool, IdCond)>,
    /// `gid`/`egid`.
    pub gid: Option<(bool, IdCond)>,
    pub fowner: Option<IdCond>,
    pub fgroup: Option<IdCond>,
    /// `subj_*`/`obj_*` conditions, as written.
    pub lsm: Vec<(String, String)>,
    pub appraise_type: Option<AppraiseType>,
    pub digest_verity: bool,
    pub appraise_algos: Vec<String>,
    pub permit_directio: bool,
    pub pcr: Option<u8>,
    pub template: Option<String>,
    pub keyrings: Vec<String>,
    pub label: Vec<String>,
}

impl Rule {
    fn new(line: usize, action: Action) -> Rule {
        Rule {
            line,
            action,
            func: None,
            mask: None,
            fsmagic: None,
            fsname: None,
            fsuuid: None,
            uid: None,
            gid: None,
            fowner: None,
            fgroup: None,
            lsm: Vec::new(),
            appraise_type: None,
            digest_verity: false,
            appraise_algos: Vec::new(),
            permit_directio: false,
            pcr: None,
            template: None,
            keyrings: Vec::new(),
            label: Vec::new(),
        }
    }

    /// The rule needs a signature rather than a hash (`appraise_type=`).
    pub fn requires_signature(&self) -> bool {
        self.appraise_type.is_some()
    }
}

/// Why a line of a policy is refused: the line, the token, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// 1-based line in the policy text.
    pub line: usize,
    /// The offending token; the whole line when no single token is to blame.
    pub token: String,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: `{}`: {}", self.line, self.token, self.reason)
    }
}

/// A whole policy that the kernel would accept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// Check a policy as the kernel would load it: every line, all errors at
/// once. An empty policy is refused, as the kernel refuses it.
pub fn parse_policy(text: &str, kernel: &Kernel) -> Result<Policy, Vec<RuleError>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        match parse_rule(line, i + 1, kernel) {
            Ok(Some(rule)) => rules.push(rule),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() && rules.is_empty() {
        errors.push(RuleError {
            line: 1,
            token: String::new(),
            reason: "the policy has no rule; the kernel refuses an empty policy".to_owned(),
        });
    }
    if errors.is_empty() {
        Ok(Policy { rules })
    } else {
        Err(errors)
    }
}

const HASH_ALGOS: &[&str] = &["md5", "sha1", "sha224", "sha256", "sha384", "sha512"];
const TEMPLATES: &[&str] = &[
    "ima",
    "ima-ng",
    "ima-ngv2",
    "ima-sig",
    "ima-sigv2",
    "ima-buf",
    "ima-modsig",
    "evm-sig",
];

/// Check one line; `Ok(None)` for a comment or an empty line.
pub fn parse_rule(line: &str, lineno: usize, kernel: &Kernel) -> Result<Option<Rule>, RuleError> {
    let body = line.trim_start_matches([' ', '\t']);
    if body.is_empty() || body.starts_with('#') {
        return Ok(None);
    }
    let err = |token: &str, reason: String| RuleError {
        line: lineno,
        token: token.to_owned(),
        reason,
    };
    if line.contains('\0') || line.contains('\r') {
        return Err(err(line.trim(), "contains a NUL or carriage return".to_owned()));
    }
    let tokens: Vec<&str> = body.split([' ', '\t']).filter(|t| !t.is_empty()).collect();
    // The action may be anywhere on the line, but only once.
    let mut action = None;
    for t in &tokens {
        if let Some(a) = Action::parse(t) {
            if action.is_some() {
                return Err(err(t, "a rule has exactly one action".to_owned()));
            }
            action = Some(a);
        }
    }
    let Some(action) = action else {
        return Err(err(
            body.trim_end(),
            "no action: a rule starts with measure, dont_measure, appraise, dont_appraise, audit, hash or dont_hash"
                .to_owned(),
        ));
    };
    let mut r = Rule::new(lineno, action);
    let mut seen_action = false;
    for t in &tokens {
        if Action::parse(t).is_some() {
            seen_action = true;
            continue;
        }
        let (key, op, value) = split_token(t);
        let dup = |what: &str| err(t, format!("{what} is given twice on this line"));
        // match_token's %s never matches an empty value.
        if op.is_some() && value.is_empty() {
            return Err(err(t, format!("`{key}` needs a value")));
        }
        match (key, op) {
            ("func", Some('=')) => {
                if r.func.is_some() {
                    return Err(dup("func"));
                }
                let f = Func::parse(value)
                    .ok_or_else(|| err(t, format!("unknown hook {value:?}; one of: {}", func_names())))?;
                if f == Func::MmapCheckReqprot && !kernel.mmap_reqprot {
                    return Err(err(
                        t,
                        format!("MMAP_CHECK_REQPROT needs Linux 6.3; {} lacks it", kernel.name),
                    ));
                }
                if f == Func::KeyCheck && !kernel.asymmetric_keys {
                    return Err(err(
                        t,
                        format!("{} has no CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS", kernel.name),
                    ));
                }
                r.func = Some(f);
            }
            ("mask", Some('=')) => {
                if r.mask.is_some() {
                    return Err(dup("mask"));
                }
                let (includes, name) = match value.strip_prefix('^') {
                    Some(rest) => (true, rest),
                    None => (false, value),
                };
                let mask = match name {
                    "MAY_EXEC" => Mask::Exec,
                    "MAY_WRITE" => Mask::Write,
                    "MAY_READ" => Mask::Read,
                    "MAY_APPEND" => Mask::Append,
                    _ => {
                        return Err(err(
                            t,
                            "mask is one of MAY_EXEC, MAY_WRITE, MAY_READ, MAY_APPEND (optionally ^-prefixed)"
                                .to_owned(),
                        ))
                    }
                };
                r.mask = Some(MaskCond { mask, includes });
            }
            ("fsmagic", Some('=')) => {
                if r.fsmagic.is_some() {
                    return Err(dup("fsmagic"));
                }
                r.fsmagic = Some(
                    parse_hex(value)
                        .ok_or_else(|| err(t, "fsmagic is a hexadecimal number such as 0x9fa0".to_owned()))?,
                );
            }
            ("fsname", Some('=')) => {
                if r.fsname.is_some() {
                    return Err(dup("fsname"));
                }
                r.fsname = Some(value.to_owned());
            }
            ("fsuuid", Some('=')) => {
                if r.fsuuid.is_some() {
                    return Err(dup("fsuuid"));
                }
                if !is_uuid(value) {
                    return Err(err(
                        t,
                        "fsuuid is a UUID such as 8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6".to_owned(),
                    ));
                }
                r.fsuuid = Some(value.to_ascii_lowercase());
            }
            ("uid" | "euid", Some(c)) => {
                if r.uid.is_some() {
                    return Err(dup("uid/euid (one slot)"));
                }
                r.uid = Some((key == "euid", id_cond(c, value).map_err(|m| err(t, m))?));
            }
            ("gid" | "egid", Some(c)) => {
                if r.gid.is_some() {
                    return Err(dup("gid/egid (one slot)"));
                }
                r.gid = Some((key == "egid", id_cond(c, value).map_err(|m| err(t, m))?));
            }
            ("fowner", Some(c)) => {
                if r.fowner.is_some() {
                    return Err(dup("fowner"));
                }
                r.fowner = Some(id_cond(c, value).map_err(|m| err(t, m))?);
            }
            ("fgroup", Some(c)) => {
                if r.fgroup.is_some() {
                    return Err(dup("fgroup"));
                }
                r.fgroup = Some(id_cond(c, value).map_err(|m| err(t, m))?);
            }
            ("subj_user" | "subj_role" | "subj_type" | "obj_user" | "obj_role" | "obj_type", Some('=')) => {
                if r.lsm.iter().any(|(k, _)| k == key) {
                    return Err(dup(key));
                }
                if kernel.lsm == Lsm::AppArmor && key != "subj_role" {
                    return Err(err(
                        t,
                        format!(
                            "{} runs AppArmor, which knows only subj_role: the kernel would refuse the whole policy",
                            kernel.name
                        ),
                    ));
                }
                r.lsm.push((key.to_owned(), value.to_owned()));
            }
            ("digest_type", Some('=')) => {
                if r.digest_verity {
                    return Err(dup("digest_type"));
                }
                if r.appraise_type.is_some() {
                    return Err(err(t, "digest_type=verity must come before appraise_type".to_owned()));
                }
                if value != "verity" {
                    return Err(err(t, "the only digest_type is verity".to_owned()));
                }
                r.digest_verity = true;
            }
            ("appraise_type", Some('=')) => {
                if r.appraise_type.is_some() {
                    return Err(dup("appraise_type"));
                }
                r.appraise_type = Some(match value {
                    "imasig" if r.digest_verity => {
                        return Err(err(t, "with digest_type=verity the signature type is sigv3".to_owned()))
                    }
                    "imasig" => AppraiseType::Imasig,
                    "sigv3" if r.digest_verity => AppraiseType::Sigv3,
                    "sigv3" => return Err(err(t, "sigv3 needs digest_type=verity earlier on the line".to_owned())),
                    "imasig|modsig" if !kernel.modsig => {
                        return Err(err(
                            t,
                            format!(
                                "{} has no CONFIG_IMA_APPRAISE_MODSIG: use appraise_type=imasig",
                                kernel.name
                            ),
                        ))
                    }
                    "imasig|modsig" if r.digest_verity => {
                        return Err(err(t, "with digest_type=verity the signature type is sigv3".to_owned()))
                    }
                    "imasig|modsig" => AppraiseType::ImasigModsig,
                    _ => {
                        return Err(err(t, "appraise_type is imasig, imasig|modsig or sigv3".to_owned()));
                    }
                });
            }
            ("appraise_flag", Some('=')) => {
                return Err(if kernel.modsig {
                    err(t, "appraise_flag is not supported by Bulwark".to_owned())
                } else {
                    err(
                        t,
                        format!("{} has no CONFIG_IMA_APPRAISE_MODSIG, so no appraise_flag", kernel.name),
                    )
                });
            }
            ("appraise_algos", Some('=')) => {
                if !r.appraise_algos.is_empty() {
                    return Err(dup("appraise_algos"));
                }
                for a in value.split(',') {
                    if !HASH_ALGOS.contains(&a) {
                        return Err(err(
                            t,
                            format!("unknown hash algorithm {a:?}; one of: {}", HASH_ALGOS.join(", ")),
                        ));
                    }
                    r.appraise_algos.push(a.to_owned());
                }
            }
            ("permit_directio", None) => {
                if r.permit_directio {
                    return Err(dup("permit_directio"));
                }
                r.permit_directio = true;
            }
            ("pcr", Some('=')) => {
                if r.pcr.is_some() {
                    return Err(dup("pcr"));
                }
                r.pcr = Some(
                    value
                        .parse::<u8>()
                        .ok()
                        .filter(|p| *p < 64 && value.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| err(t, "pcr is a register number 0-63".to_owned()))?,
                );
            }
            ("template", Some('=')) => {
                if r.template.is_some() {
                    return Err(dup("template"));
                }
                if action != Action::Measure || !seen_action {
                    return Err(err(
                        t,
                        "template= belongs to a measure rule, after the action".to_owned(),
                    ));
                }
                if !TEMPLATES.contains(&value) {
                    return Err(err(
                        t,
                        format!("unknown template {value:?}; one of: {}", TEMPLATES.join(", ")),
                    ));
                }
                r.template = Some(value.to_owned());
            }
            ("keyrings", Some('=')) => {
                if !r.keyrings.is_empty() {
                    return Err(dup("keyrings"));
                }
                if !kernel.asymmetric_keys {
                    return Err(err(
                        t,
                        format!("{} has no CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS", kernel.name),
                    ));
                }
                r.keyrings = opt_list(value).map_err(|m| err(t, m))?;
            }
            ("label", Some('=')) => {
                if !r.label.is_empty() {
                    return Err(dup("label"));
                }
                r.label = opt_list(value).map_err(|m| err(t, m))?;
            }
            _ => return Err(err(t, "unknown token".to_owned())),
        }
    }
    validate(&r).map_err(|(token, reason)| err(token.unwrap_or(body.trim_end()), reason))?;
    Ok(Some(r))
}

fn func_names() -> String {
    Func::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

/// `key=value`, `key<value`, `key>value` or a bare word.
fn split_token(t: &str) -> (&str, Option<char>, &str) {
    match t.find(['=', '<', '>']) {
        Some(i) => {
            let op = t[i..].chars().next();
            (&t[..i], op, &t[i + 1..])
        }
        None => (t, None, ""),
    }
}

/// kstrtoul(…, 16): an optional `0x`, then hex digits, no sign games.
fn parse_hex(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn id_cond(op: char, value: &str) -> Result<IdCond, String> {
    let cmp = match op {
        '=' => Cmp::Eq,
        '<' => Cmp::Lt,
        _ => Cmp::Gt,
    };
    // kstrtoul(…, 10) into a uid_t; (uid_t)-1 is the invalid id.
    let value = value
        .parse::<u32>()
        .ok()
        .filter(|v| *v != u32::MAX && value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| "an id is a decimal number below 4294967295".to_owned())?;
    Ok(IdCond { cmp, value })
}

/// `a|b|c`: no empty item.
fn opt_list(s: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = s.split('|').map(str::to_owned).collect();
    if items.iter().any(String::is_empty) {
        return Err("a |-separated list has no empty item".to_owned());
    }
    Ok(items)
}

/// `ima_validate_rule()`: which conditions and options each action and hook allow.
fn validate(r: &Rule) -> Result<(), (Option<&'static str>, String)> {
    use Action::*;
    if r.pcr.is_some() && r.action != Measure {
        return Err((None, "pcr= belongs to a measure rule".to_owned()));
    }
    if r.action != Appraise && (r.appraise_type.is_some() || !r.appraise_algos.is_empty()) {
        return Err((
            None,
            "appraise_type= and appraise_algos= belong to an appraise rule".to_owned(),
        ));
    }
    if r.action == Appraise && r.digest_verity && r.appraise_type.is_none() {
        return Err((
            None,
            "an appraise rule with digest_type=verity needs appraise_type=sigv3".to_owned(),
        ));
    }
    let has_mask = r.mask.is_some();
    let file_conds =
        r.fsmagic.is_some() || r.fsname.is_some() || r.fsuuid.is_some() || r.fowner.is_some() || r.fgroup.is_some();
    let euid = matches!(r.uid, Some((true, _))) || matches!(r.gid, Some((true, _)));
    let file_options =
        r.appraise_type.is_some() || r.permit_directio || !r.appraise_algos.is_empty() || r.digest_verity;
    let func = r.func.map(Func::name).unwrap_or("(none)");
    let only_measure = |what: &str| -> Result<(), (Option<&'static str>, String)> {
        if matches!(r.action, Measure | DontMeasure) {
            Ok(())
        } else {
            Err((None, format!("func={what} allows only measure and dont_measure")))
        }
    };
    if !r.keyrings.is_empty() && r.func != Some(Func::KeyCheck) {
        return Err((None, "keyrings= belongs to func=KEY_CHECK".to_owned()));
    }
    if !r.label.is_empty() && r.func != Some(Func::CriticalData) {
        return Err((None, "label= belongs to func=CRITICAL_DATA".to_owned()));
    }
    match r.func {
        None
        | Some(
            Func::FileCheck
            | Func::MmapCheck
            | Func::MmapCheckReqprot
            | Func::BprmCheck
            | Func::CredsCheck
            | Func::FirmwareCheck
            | Func::PolicyCheck,
        ) => {
            if r.appraise_type == Some(AppraiseType::ImasigModsig) {
                return Err((
                    None,
                    format!("appraise_type=imasig|modsig belongs to MODULE_CHECK and KEXEC_* rules, not func={func}"),
                ));
            }
        }
        Some(Func::ModuleCheck | Func::KexecKernelCheck | Func::KexecInitramfsCheck) => {
            if r.digest_verity {
                return Err((None, format!("func={func} does not take digest_type=verity")));
            }
        }
        Some(Func::KexecCmdline) => {
            only_measure(func)?;
            if has_mask || file_options {
                return Err((
                    None,
                    "func=KEXEC_CMDLINE takes no mask and no appraise options".to_owned(),
                ));
            }
        }
        Some(f @ (Func::KeyCheck | Func::CriticalData)) => {
            only_measure(f.name())?;
            if has_mask || file_conds || euid || !r.lsm.is_empty() || file_options {
                let own = if f == Func::KeyCheck { "keyrings=" } else { "label=" };
                return Err((
                    None,
                    format!("func={} allows only uid=, gid=, pcr= and {own}", f.name()),
                ));
            }
        }
        Some(Func::SetxattrCheck) => {
            if r.action != Appraise {
                return Err((None, "func=SETXATTR_CHECK allows only appraise".to_owned()));
            }
            if r.appraise_algos.is_empty() {
                return Err((None, "func=SETXATTR_CHECK needs appraise_algos=".to_owned()));
            }
            if has_mask
                || file_conds
                || r.uid.is_some()
                || r.gid.is_some()
                || !r.lsm.is_empty()
                || r.appraise_type.is_some()
                || r.permit_directio
                || r.digest_verity
            {
                return Err((
                    None,
                    "func=SETXATTR_CHECK takes appraise_algos= and nothing else".to_owned(),
                ));
            }
        }
    }
    Ok(())
}
