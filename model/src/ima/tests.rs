#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::appraise::FileFacts;
use super::cmdline::{grub_dropin, ImaCmdline};
use super::grammar::{parse_policy, parse_rule, Action, Func, Kernel, Lsm, DEBIAN_6_1};
use super::templates::{render_policy, TEMPLATES};
use crate::profile::ImaMode;
use crate::Profile;

const SELINUX_WITH_MODSIG: Kernel = Kernel {
    name: "a SELinux kernel with modsig",
    modsig: true,
    asymmetric_keys: true,
    mmap_reqprot: true,
    lsm: Lsm::SeLinux,
};

/// The example rules of Documentation/ABI/testing/ima_policy (Linux 6.1)
/// that Debian's 6.1 kernel accepts.
const KERNEL_EXAMPLES_ACCEPTED: &[&str] = &[
    "dont_measure fsmagic=0x9fa0",
    "dont_appraise fsmagic=0x9fa0",
    "dont_measure fsmagic=0x62656572",
    "dont_appraise fsmagic=0x62656572",
    "dont_measure fsmagic=0x64626720",
    "dont_appraise fsmagic=0x64626720",
    "dont_measure fsmagic=0x01021994",
    "dont_appraise fsmagic=0x01021994",
    "dont_measure fsmagic=0x858458f6",
    "dont_appraise fsmagic=0x858458f6",
    "dont_measure fsmagic=0x73636673",
    "dont_appraise fsmagic=0x73636673",
    "dont_measure fsmagic=0xf97cff8c",
    "dont_appraise fsmagic=0xf97cff8c",
    "measure func=BPRM_CHECK",
    "measure func=FILE_MMAP mask=MAY_EXEC",
    "measure func=FILE_CHECK mask=MAY_READ uid=0",
    "measure func=MODULE_CHECK",
    "measure func=FIRMWARE_CHECK",
    "appraise fowner=0",
    "measure subj_role=system_r func=FILE_CHECK mask=MAY_READ",
    "measure func=KEXEC_KERNEL_CHECK pcr=4",
    "measure func=KEXEC_INITRAMFS_CHECK pcr=5",
    "measure func=KEY_CHECK",
    "measure func=KEY_CHECK keyrings=.builtin_trusted_keys|.ima",
    "appraise func=SETXATTR_CHECK appraise_algos=sha256,sha384,sha512",
    "measure func=FILE_CHECK digest_type=verity template=ima-ngv2",
    "measure func=BPRM_CHECK digest_type=verity template=ima-sig",
    "appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3",
    "measure func=CRITICAL_DATA label=selinux",
];

/// Kernel examples Debian's 6.1 kernel refuses, with the reason's key words.
const KERNEL_EXAMPLES_REFUSED: &[(&str, &str)] = &[
    ("appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig|modsig", "MODSIG"),
    ("dont_measure obj_type=var_log_t", "AppArmor"),
    ("dont_appraise obj_type=var_log_t", "AppArmor"),
    ("measure subj_user=system_u func=FILE_CHECK mask=MAY_READ", "AppArmor"),
    ("measure subj_user=_ func=FILE_CHECK mask=MAY_READ", "AppArmor"),
];

#[test]
fn the_kernels_example_rules_that_debian_accepts_parse() {
    for line in KERNEL_EXAMPLES_ACCEPTED {
        let r = parse_rule(line, 1, &DEBIAN_6_1);
        assert!(matches!(r, Ok(Some(_))), "{line}: {r:?}");
    }
}

#[test]
fn the_kernels_examples_debian_lacks_support_for_are_refused_with_the_reason() {
    for (line, why) in KERNEL_EXAMPLES_REFUSED {
        let e = parse_rule(line, 7, &DEBIAN_6_1).unwrap_err();
        assert_eq!(e.line, 7);
        assert!(e.reason.contains(why), "{line}: {e}");
        // A kernel built with them takes the same lines.
        assert!(parse_rule(line, 7, &SELINUX_WITH_MODSIG).is_ok(), "{line}");
    }
}

#[test]
fn refused_rules_name_the_token_and_the_reason() {
    // (rule, token blamed, words of the reason)
    let table: &[(&str, &str, &str)] = &[
        ("func=BPRM_CHECK", "func=BPRM_CHECK", "no action"),
        ("measure appraise func=BPRM_CHECK", "appraise", "exactly one action"),
        ("appraise func=BPRM_CHECKS", "func=BPRM_CHECKS", "unknown hook"),
        ("appraise func=MMAP_CHECK_REQPROT", "func=MMAP_CHECK_REQPROT", "6.3"),
        (
            "appraise func=BPRM_CHECK func=MODULE_CHECK",
            "func=MODULE_CHECK",
            "twice",
        ),
        ("appraise mask=MAY_EXEC mask=^MAY_READ", "mask=^MAY_READ", "twice"),
        ("appraise mask=MAY_RUN", "mask=MAY_RUN", "mask is one of"),
        (
            "dont_appraise fsmagic=0x9fa0 fsmagic=0x62656572",
            "fsmagic=0x62656572",
            "twice",
        ),
        ("dont_appraise fsmagic=proc", "fsmagic=proc", "hexadecimal"),
        ("dont_appraise fsmagic=", "fsmagic=", "needs a value"),
        ("dont_appraise fsname=ext4 fsname=xfs", "fsname=xfs", "twice"),
        ("dont_appraise fsuuid=1234", "fsuuid=1234", "UUID"),
        ("appraise uid=0 euid=0", "euid=0", "one slot"),
        ("appraise gid=0 egid<5", "egid<5", "one slot"),
        ("appraise fowner=0 fowner>10", "fowner>10", "twice"),
        ("appraise fowner=-1", "fowner=-1", "decimal"),
        ("appraise fowner=4294967295", "fowner=4294967295", "below 4294967295"),
        ("appraise fgroup=root", "fgroup=root", "decimal"),
        ("appraise subj_role=a subj_role=b", "subj_role=b", "twice"),
        ("appraise obj_user=system_u", "obj_user=system_u", "AppArmor"),
        (
            "appraise func=BPRM_CHECK appraise_type=imasig|modsig",
            "appraise_type=imasig|modsig",
            "MODSIG",
        ),
        (
            "appraise func=BPRM_CHECK appraise_type=sigv3",
            "appraise_type=sigv3",
            "digest_type=verity earlier",
        ),
        (
            "appraise func=BPRM_CHECK appraise_type=imasig digest_type=verity",
            "digest_type=verity",
            "before appraise_type",
        ),
        (
            "appraise func=BPRM_CHECK digest_type=verity appraise_type=imasig",
            "appraise_type=imasig",
            "sigv3",
        ),
        (
            "appraise func=BPRM_CHECK digest_type=verity",
            "appraise func=BPRM_CHECK digest_type=verity",
            "needs appraise_type=sigv3",
        ),
        (
            "appraise func=BPRM_CHECK digest_type=sha256",
            "digest_type=sha256",
            "verity",
        ),
        (
            "appraise func=BPRM_CHECK appraise_type=rsa",
            "appraise_type=rsa",
            "imasig",
        ),
        (
            "appraise func=MODULE_CHECK appraise_flag=check_blacklist",
            "appraise_flag=check_blacklist",
            "MODSIG",
        ),
        (
            "appraise func=BPRM_CHECK appraise_type=imasig appraise_type=imasig",
            "appraise_type=imasig",
            "twice",
        ),
        (
            "measure func=BPRM_CHECK appraise_type=imasig",
            "measure func=BPRM_CHECK appraise_type=imasig",
            "appraise rule",
        ),
        (
            "dont_appraise func=BPRM_CHECK appraise_type=imasig",
            "dont_appraise func=BPRM_CHECK appraise_type=imasig",
            "appraise rule",
        ),
        (
            "appraise func=BPRM_CHECK pcr=10",
            "appraise func=BPRM_CHECK pcr=10",
            "measure rule",
        ),
        ("measure func=BPRM_CHECK pcr=64", "pcr=64", "0-63"),
        ("measure func=BPRM_CHECK pcr=1 pcr=2", "pcr=2", "twice"),
        (
            "template=ima-ng measure func=BPRM_CHECK",
            "template=ima-ng",
            "after the action",
        ),
        (
            "appraise func=BPRM_CHECK template=ima-ng",
            "template=ima-ng",
            "measure rule",
        ),
        (
            "measure func=BPRM_CHECK template=ima-foo",
            "template=ima-foo",
            "unknown template",
        ),
        (
            "measure func=KEY_CHECK keyrings=.ima||.evm",
            "keyrings=.ima||.evm",
            "empty item",
        ),
        (
            "measure func=BPRM_CHECK keyrings=.ima",
            "measure func=BPRM_CHECK keyrings=.ima",
            "KEY_CHECK",
        ),
        (
            "measure func=FILE_CHECK label=selinux",
            "measure func=FILE_CHECK label=selinux",
            "CRITICAL_DATA",
        ),
        ("appraise func=KEY_CHECK", "appraise func=KEY_CHECK", "only measure"),
        (
            "measure func=KEY_CHECK fowner=0",
            "measure func=KEY_CHECK fowner=0",
            "allows only uid=",
        ),
        (
            "measure func=CRITICAL_DATA euid=0",
            "measure func=CRITICAL_DATA euid=0",
            "allows only uid=",
        ),
        (
            "measure func=KEXEC_CMDLINE mask=MAY_READ",
            "measure func=KEXEC_CMDLINE mask=MAY_READ",
            "no mask",
        ),
        (
            "appraise func=KEXEC_CMDLINE",
            "appraise func=KEXEC_CMDLINE",
            "only measure",
        ),
        (
            "measure func=SETXATTR_CHECK appraise_algos=sha256",
            "measure func=SETXATTR_CHECK appraise_algos=sha256",
            "appraise rule",
        ),
        (
            "appraise func=SETXATTR_CHECK",
            "appraise func=SETXATTR_CHECK",
            "needs appraise_algos",
        ),
        (
            "appraise func=SETXATTR_CHECK appraise_algos=sha256 fowner=0",
            "appraise func=SETXATTR_CHECK appraise_algos=sha256 fowner=0",
            "nothing else",
        ),
        (
            "appraise func=SETXATTR_CHECK appraise_algos=sha256,",
            "appraise_algos=sha256,",
            "unknown hash",
        ),
        (
            "appraise func=SETXATTR_CHECK appraise_algos=sha256 appraise_algos=sha512",
            "appraise_algos=sha512",
            "twice",
        ),
        (
            "appraise func=MODULE_CHECK digest_type=verity appraise_type=sigv3",
            "appraise func=MODULE_CHECK digest_type=verity appraise_type=sigv3",
            "verity",
        ),
        (
            "appraise func=BPRM_CHECK permit_directio permit_directio",
            "permit_directio",
            "twice",
        ),
        ("appraise func=BPRM_CHECK # root binaries", "#", "unknown token"),
        ("appraise func=BPRM_CHECK fowner=0 bogus", "bogus", "unknown token"),
    ];
    for (line, token, why) in table {
        let e = parse_rule(line, 3, &DEBIAN_6_1).expect_err(line);
        assert_eq!(e.line, 3, "{line}");
        assert_eq!(&e.token, token, "{line}: {e}");
        assert!(e.reason.contains(why), "{line}: {e}");
    }
}

#[test]
fn accepted_rules_keep_their_conditions() {
    let accepted = [
        "  appraise\tfunc=BPRM_CHECK   fowner=0 ",
        "appraise func=PATH_CHECK mask=^MAY_READ fowner<1000 fgroup>0",
        "dont_appraise fsuuid=8BCBE394-4f13-4144-be8e-5aa9ea2ce2f6",
        "dont_appraise fsname=overlay",
        "audit func=BPRM_CHECK",
        "hash func=FILE_CHECK",
        "dont_hash fsmagic=9fa0",
        "appraise func=MODULE_CHECK appraise_type=imasig",
        "measure func=KEXEC_CMDLINE pcr=12",
        "appraise func=BPRM_CHECK euid=0 egid=0 permit_directio",
        "measure func=POLICY_CHECK",
        "appraise func=CREDS_CHECK fowner=0",
    ];
    for line in accepted {
        assert!(matches!(parse_rule(line, 1, &DEBIAN_6_1), Ok(Some(_))), "{line}");
    }
    let r = parse_rule(accepted[1], 1, &DEBIAN_6_1).unwrap().unwrap();
    assert_eq!(r.func, Some(Func::FileCheck));
    assert_eq!(r.action, Action::Appraise);
    assert!(r.mask.unwrap().includes);
    assert_eq!(
        parse_rule("dont_hash fsmagic=9fa0", 1, &DEBIAN_6_1)
            .unwrap()
            .unwrap()
            .fsmagic,
        Some(0x9fa0)
    );
    for blank in ["", "   ", "# a comment", "\t# indented comment"] {
        assert_eq!(parse_rule(blank, 1, &DEBIAN_6_1), Ok(None));
    }
}

#[test]
fn a_policy_reports_every_bad_line_and_an_empty_policy_is_refused() {
    let errs = parse_policy(
        "# only\n\nappraise func=BPRM_CHECK\nmeasure func=NOPE\nfoo\n",
        &DEBIAN_6_1,
    )
    .unwrap_err();
    assert_eq!(errs.iter().map(|e| e.line).collect::<Vec<_>>(), [4, 5]);
    let errs = parse_policy("# nothing here\n", &DEBIAN_6_1).unwrap_err();
    assert!(errs[0].reason.contains("empty policy"), "{errs:?}");
}

#[test]
fn every_template_parses_and_has_a_comment_above_each_rule() {
    for t in TEMPLATES {
        let policy = parse_policy(t.text, &DEBIAN_6_1).unwrap_or_else(|e| panic!("{}: {e:?}", t.name));
        assert!(!policy.appraises(), "{}: templates only exclude", t.name);
        let lines: Vec<&str> = t.text.lines().collect();
        for r in &policy.rules {
            // The rule's comment is the nearest comment line above it.
            let above = lines[..r.line - 1].iter().rev().find(|l| !l.starts_with("dont_"));
            assert!(
                above.is_some_and(|l| l.starts_with("# ")),
                "{}: line {} has no comment",
                t.name,
                r.line
            );
        }
    }
}

fn ima_profile(ima: &str) -> Result<Profile, crate::ValidationErrors> {
    Profile::parse("p.toml", &format!("[profile]\nname = \"t\"\n[ima]\n{ima}\n"))
}

fn facts(path: &str, fsmagic: u64, uid: u32, mode: u32) -> FileFacts<'_> {
    FileFacts {
        path,
        fsmagic,
        fsname: None,
        uid,
        gid: 0,
        mode: 0o100000 | mode,
        elf: false,
    }
}

#[test]
fn k3s_host_appraises_root_executables_modules_firmware_but_not_overlay_or_tmpfs() {
    let p = ima_profile("mode = \"enforce\"\ntemplate = \"k3s-host\"").unwrap();
    let ima = p.ima.unwrap();
    let text = ima.policy().unwrap();
    assert!(text.starts_with("# Managed by Bulwark"), "{text}");
    let policy = parse_policy(&text, &DEBIAN_6_1).unwrap();
    const EXT4: u64 = 0xef53;
    let v = policy.verdict(&facts("/usr/bin/ls", EXT4, 0, 0o755)).unwrap();
    assert_eq!(v.funcs, [Func::BprmCheck]);
    assert!(!v.signature);
    assert!(
        policy.verdict(&facts("/usr/bin/ls", EXT4, 1000, 0o755)).is_none(),
        "not root-owned"
    );
    assert!(
        policy.verdict(&facts("/etc/passwd", EXT4, 0, 0o644)).is_none(),
        "not executable"
    );
    assert!(policy
        .verdict(&facts("/usr/lib/modules/6.1/kernel/a.ko", EXT4, 0, 0o644))
        .is_some());
    assert!(policy
        .verdict(&facts("/usr/lib/firmware/x.bin", EXT4, 0, 0o644))
        .is_some());
    for magic in [0x794c7630, 0x01021994, 0x9fa0] {
        assert!(
            policy.verdict(&facts("/x/bin/sh", magic, 0, 0o755)).is_none(),
            "{magic:#x}"
        );
        assert!(policy.skipped_magics().contains(&magic), "{magic:#x}");
    }
    assert!(!policy.skipped_magics().contains(&EXT4));
    let tcb = ima_profile("mode = \"enforce\"\ntemplate = \"tcb\"")
        .unwrap()
        .ima
        .unwrap();
    let tcb = parse_policy(&tcb.policy().unwrap(), &DEBIAN_6_1).unwrap();
    assert!(
        tcb.verdict(&facts("/x/bin/sh", 0x794c7630, 0, 0o755)).is_some(),
        "tcb appraises overlayfs"
    );
}

#[test]
fn signatures_and_measure_change_the_generated_rules() {
    let ima = ima_profile("mode = \"enforce\"\nsignatures = true\nmeasure = true\nappraise = [\"BPRM_CHECK\"]")
        .unwrap()
        .ima
        .unwrap();
    let text = ima.policy().unwrap();
    assert!(
        text.contains("\nappraise func=BPRM_CHECK fowner=0 appraise_type=imasig\n"),
        "{text}"
    );
    assert!(text.contains("\nmeasure func=BPRM_CHECK\n"), "{text}");
    let (skip, cert) = super::templates::header_records(&text);
    assert_eq!(cert.as_deref(), Some("/etc/bulwark/ima/cert.der"));
    assert_eq!(skip.len(), 2, "{skip:?}");
    let policy = parse_policy(&text, &DEBIAN_6_1).unwrap();
    assert!(
        policy
            .verdict(&facts("/usr/bin/ls", 0xef53, 0, 0o755))
            .unwrap()
            .signature
    );
    let m = ima_profile("mode = \"measure\"").unwrap().ima.unwrap();
    let mp = parse_policy(&m.policy().unwrap(), &DEBIAN_6_1).unwrap();
    assert!(!mp.appraises(), "measure mode has no appraise rule");
    assert!(ima_profile("mode = \"off\"").unwrap().ima.unwrap().policy().is_none());
}

#[test]
fn extra_rules_come_before_the_generated_rules_so_their_exclusions_win() {
    let ima =
        ima_profile("mode = \"fix\"\nextra_rules = [\"dont_appraise fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6\"]")
            .unwrap()
            .ima
            .unwrap();
    let text = render_policy(&ima).unwrap();
    let extra = text.find("dont_appraise fsuuid=").unwrap();
    let generated = text.find("appraise func=BPRM_CHECK").unwrap();
    assert!(extra < generated, "{text}");
}

#[test]
fn a_bad_extra_rule_is_refused_with_its_index_policy_line_token_and_reason() {
    let e = ima_profile(
        "mode = \"enforce\"\nextra_rules = [\"dont_appraise fsmagic=0x9fa0\", \"appraise func=BPRM_CHECK appraise_type=imasig|modsig\"]",
    )
    .unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    let err = &e.errors[0];
    assert_eq!(err.path, "ima.extra_rules[1]");
    // Two header lines, two scan-skip records, the template, the
    // extra_rules comment and the first extra rule come first.
    let line = 2 + 2 + TEMPLATES[0].text.lines().count() + 3;
    assert!(
        err.reason
            .starts_with(&format!("policy line {line}: `appraise_type=imasig|modsig`:")),
        "{err}"
    );
    assert!(err.reason.contains("MODSIG"), "{err}");
}

#[test]
fn ima_section_errors_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("template = \"x\"\nmode = \"fix\"", "ima.template", "not one of"),
        ("", "ima.mode", "missing"),
        ("mode = \"strict\"", "ima.mode", "not one of"),
        (
            "mode = \"fix\"\nappraise = [\"KEY_CHECK\"]",
            "ima.appraise[0]",
            "does not appraise files",
        ),
        ("mode = \"fix\"\nappraise = [\"NOPE\"]", "ima.appraise[0]", "not a hook"),
        ("mode = \"fix\"\nappraise = []", "ima.appraise", "empty"),
        (
            "mode = \"fix\"\nsigning_cert = \"cert.der\"",
            "ima.signing_cert",
            "absolute",
        ),
        (
            "mode = \"fix\"\nextra_rules = [\"a\\nb\"]",
            "ima.extra_rules[0]",
            "line breaks",
        ),
        (
            "mode = \"fix\"\nmanage_cmdline = \"yes\"",
            "ima.manage_cmdline",
            "true or false",
        ),
        ("mode = \"fix\"\nsigs = true", "ima.sigs", "unknown key"),
    ];
    for (body, path, why) in cases {
        let e = ima_profile(body).unwrap_err();
        assert!(
            e.errors.iter().any(|x| x.path == *path && x.reason.contains(why)),
            "{body}: {e}"
        );
    }
    let ok = ima_profile("mode = \"enforce\"").unwrap().ima.unwrap();
    assert_eq!(ok.appraise, [Func::BprmCheck, Func::ModuleCheck, Func::FirmwareCheck]);
    assert!(ok.manage_cmdline && !ok.measure && !ok.signatures);
    assert_eq!(ok.template, "k3s-host");
    assert!(ok.scan_skip()[0].contains("containerd"));
    assert!(Profile::parse("p.toml", "[profile]\nname = \"t\"\n")
        .unwrap()
        .ima
        .is_none());
}

#[test]
fn cmdline_parameters_and_the_kernels_default_mode() {
    let c = ImaCmdline::parse(
        "BOOT_IMAGE=/vmlinuz root=/dev/vda ima_appraise=fix ima_template=ima-ng ima_appraise=enforce",
    );
    assert_eq!(c.appraise_mode(), "enforce");
    assert_eq!(c.template.as_deref(), Some("ima-ng"));
    assert_eq!(ImaCmdline::parse("root=/dev/vda").appraise_mode(), "enforce");
    assert_eq!(ImaCmdline::parse("ima_appraise=fix").appraise_mode(), "fix");
    assert_eq!(
        ImaCmdline::parse("ima_policy=tcb|appraise_tcb").builtin_appraisal(),
        Some("appraise_tcb")
    );
    assert_eq!(ImaCmdline::parse("ima_policy=tcb").builtin_appraisal(), None);
    let d = grub_dropin(ImaMode::Enforce);
    assert!(
        d.contains("GRUB_CMDLINE_LINUX=\"${GRUB_CMDLINE_LINUX} ima_appraise=enforce\"\n"),
        "{d}"
    );
    assert!(grub_dropin(ImaMode::Measure).contains("ima_appraise=off"));
}

#[test]
fn conditions_a_scan_cannot_judge_err_towards_listing_the_file() {
    let p = |text: &str| parse_policy(text, &DEBIAN_6_1).unwrap();
    let f = facts("/usr/bin/ls", 0xef53, 0, 0o755);
    // The acting uid is unknown: an appraise rule on it may apply...
    assert!(p("appraise func=BPRM_CHECK uid=0").verdict(&f).is_some());
    // ...and a dont_appraise on it cannot be relied on.
    assert!(p("dont_appraise uid=1000\nappraise func=BPRM_CHECK")
        .verdict(&f)
        .is_some());
    assert!(
        p("dont_appraise fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6\nappraise fowner=0")
            .verdict(&f)
            .is_some()
    );
    // What a scan knows decides: the owner, the filesystem, the hook's mask.
    assert!(p("dont_appraise fowner=0\nappraise func=BPRM_CHECK")
        .verdict(&f)
        .is_none());
    assert!(p("appraise func=BPRM_CHECK mask=MAY_READ").verdict(&f).is_none());
    assert!(p("appraise func=BPRM_CHECK mask=MAY_EXEC fgroup=0")
        .verdict(&f)
        .is_some());
    // A signature rule that may decide makes the file need a signature.
    let v = p("appraise func=BPRM_CHECK euid=0 appraise_type=imasig\nappraise func=BPRM_CHECK")
        .verdict(&f)
        .unwrap();
    assert!(v.signature);
    // A rule without func= covers every file hook: a plain data file too.
    let data = facts("/etc/passwd", 0xef53, 0, 0o644);
    assert_eq!(p("appraise fowner=0").verdict(&data).unwrap().funcs, [Func::FileCheck]);
    assert!(p("appraise fowner=0").skipped_magics().is_empty());
    assert!(p("dont_appraise fsmagic=0x9fa0 func=BPRM_CHECK\nappraise fowner=0")
        .skipped_magics()
        .is_empty());
}
