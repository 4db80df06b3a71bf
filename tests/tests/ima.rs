//! IMA from the outside: `bulwarkctl validate` and bulwarkd refuse a bad
//! `extra_rules` line by its line number and write nothing; `bulwarkctl ima
//! scan`/`label`/`sign` judge and write real `security.ima` labels that the
//! real `evmctl` agrees with; the dpkg hook labels the files of the packages
//! dpkg changed. Root, evmctl (ima-evm-utils) and openssl are needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use bulwark_tests::{bin, require_root, run, run_ok, Lab, Ran};

const BAD_EXTRA: &str = "[profile]
name = \"ima-bad\"

[ima]
mode = \"enforce\"
extra_rules = [
  \"dont_appraise fsmagic=0x9fa0\",
  \"appraise func=BPRM_CHECK appraise_type=imasig|modsig\",
]
";

const ENFORCE: &str = "[profile]
name = \"ima\"

[ima]
mode = \"enforce\"
";

fn ctl(args: &[&str]) -> Ran {
    run(Command::new(bin("bulwarkctl"))
        .args(args)
        .env("BULWARK_SOCKET", "/nonexistent/bulwarkd.sock"))
}

fn xattr_hex(p: &Path) -> String {
    let out = run_ok(
        Command::new("getfattr")
            .args(["--absolute-names", "-n", "security.ima", "-e", "hex"])
            .arg(p),
    );
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("security.ima="))
        .unwrap_or_else(|| panic!("no security.ima on {}:\n{out}", p.display()))
        .to_owned()
}

/// A host tree under a temporary directory with the policy Bulwark renders.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    policy: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    let profile = dir.path().join("p.toml");
    fs::write(&profile, ENFORCE).unwrap();
    let r = ctl(&["ima", "policy", profile.to_str().unwrap()]);
    assert!(r.ok(), "{r}");
    let policy = dir.path().join("ima-policy");
    fs::write(&policy, &r.stdout).unwrap();
    Tree {
        _dir: dir,
        root,
        policy,
    }
}

impl Tree {
    fn exe(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn ima(&self, args: &[&str]) -> Ran {
        let mut all = vec![
            "ima",
            args[0],
            "--policy",
            self.policy.to_str().unwrap(),
            "--root",
            self.root.to_str().unwrap(),
        ];
        all.extend_from_slice(&args[1..]);
        ctl(&all)
    }
}

#[test]
fn a_bad_extra_rule_is_refused_with_its_line_and_nothing_is_written() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    fs::write(&file, BAD_EXTRA).unwrap();
    let r = ctl(&["validate", file.to_str().unwrap()]);
    assert_eq!(r.code, Some(4), "an invalid profile exits 4:\n{r}");
    assert!(r.stderr.contains("ima.extra_rules[1]: policy line "), "{r}");
    assert!(r.stderr.contains("`appraise_type=imasig|modsig`"), "{r}");
    assert!(r.stderr.contains("CONFIG_IMA_APPRAISE_MODSIG"), "{r}");

    // bulwarkd refuses it the same way and writes nothing.
    let mut lab = Lab::new("ima-bad");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let gens = d.generations().len();
    let bad = d.write_profile("bad", BAD_EXTRA);
    let r = d.ctl(&["apply", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(4), "an invalid profile exits 4:\n{r}");
    assert!(r.stderr.contains("ima.extra_rules[1]"), "{r}");
    assert!(
        !d.root.join("etc/ima/ima-policy").exists(),
        "a refused profile wrote the policy"
    );
    assert!(!d.root.join("etc/default/grub.d/50-bulwark-ima.cfg").exists());
    assert_eq!(d.generations().len(), gens);
}

#[test]
fn scan_lists_unlabelled_files_and_label_writes_what_evmctl_writes() {
    require_root();
    let t = tree();
    let tool = t.exe("usr/bin/tool", "#!/bin/sh\necho tool\n");
    let other = t.exe("usr/local/sbin/other", "#!/bin/sh\necho other\n");
    fs::write(t.root.join("usr/bin/data"), "not executable").unwrap();

    let r = t.ima(&["scan"]);
    assert_eq!(r.code, Some(1), "files would be denied: exit 1\n{r}");
    assert!(
        r.stdout
            .contains("missing  /usr/bin/tool - no security.ima (BPRM_CHECK)"),
        "{r}"
    );
    assert!(r.stdout.contains("2 appraised: 0 ok, 0 signed, 2 missing"), "{r}");
    assert!(!r.stdout.contains("data"), "{r}");

    let r = t.ima(&["label", "--all"]);
    assert!(r.ok(), "{r}");
    assert!(r.stdout.contains("labelled 2, already current 0, failed 0"), "{r}");
    assert!(
        r.stderr.contains("not in the audit log"),
        "no daemon: the run says it is not audited\n{r}"
    );

    // Byte for byte what evmctl writes for the same content.
    let twin = t.root.parent().unwrap().join("twin");
    fs::copy(&tool, &twin).unwrap();
    run_ok(Command::new("evmctl").args(["ima_hash", "-a", "sha256"]).arg(&twin));
    assert_eq!(xattr_hex(&tool), xattr_hex(&twin));
    assert!(xattr_hex(&other).starts_with("0x0404"));

    let r = t.ima(&["scan"]);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("2 appraised: 2 ok"), "{r}");
    let r = t.ima(&["label", "/usr/bin/tool"]);
    assert!(r.stdout.contains("labelled 0, already current 1"), "{r}");

    // Changed content: stale, and --json carries the state.
    fs::write(&tool, "#!/bin/sh\necho changed\n").unwrap();
    let r = t.ima(&["scan", "/usr/bin"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stdout.contains("stale"), "{r}");
    let r = ctl(&[
        "--json",
        "ima",
        "scan",
        "--policy",
        t.policy.to_str().unwrap(),
        "--root",
        t.root.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["counts"]["stale"], 1, "{r}");
    assert_eq!(report["files"][0]["path"], "/usr/bin/tool");
    assert_eq!(report["files"][0]["state"], "stale");
}

#[test]
fn signatures_from_ima_sign_pass_evmctl_ima_verify() {
    require_root();
    let t = tree();
    let dir = t.root.parent().unwrap().to_path_buf();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.der"));
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=bulwark ima",
                "-outform",
                "DER",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let tool = t.exe("usr/bin/tool", "#!/bin/sh\necho signed\n");
    let r = t.ima(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "/usr/bin/tool",
    ]);
    assert!(r.ok(), "{r}");
    assert!(r.stdout.contains("signed 1"), "{r}");
    let v = run(Command::new("evmctl")
        .arg("ima_verify")
        .arg("--key")
        .arg(&cert)
        .arg(&tool));
    assert!(v.ok(), "evmctl rejects the signature:\n{v}");
    let r = t.ima(&["scan", "--cert", cert.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("0 ok, 1 signed"), "{r}");
}

#[test]
fn the_dpkg_hook_labels_the_files_of_changed_packages_only() {
    require_root();
    let t = tree();
    let admin = t.root.join("var/lib/dpkg");
    fs::create_dir_all(admin.join("info")).unwrap();
    let stamp = t.root.join("stamp");
    let new = t.exe("usr/bin/new-tool", "#!/bin/sh\necho new\n");
    let old = t.exe("usr/bin/old-tool", "#!/bin/sh\necho old\n");
    // Installed before the stamp: not this run's business. Lists name
    // directories too ("/.", "/usr"): the hook must never walk them.
    fs::write(admin.join("info/old.list"), format!("/.\n/usr\n{}\n", old.display())).unwrap();
    fs::write(&stamp, format!("{}\n", now_ms() + 1)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(
        admin.join("info/new.list"),
        format!("/.\n/usr/bin\n{}\n", new.display()),
    )
    .unwrap();
    let hook = |extra: &[&str]| {
        let mut args = vec![
            "ima",
            "dpkg-hook",
            "--policy",
            t.policy.to_str().unwrap(),
            "--admindir",
            admin.to_str().unwrap(),
            "--stamp",
            stamp.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ctl(&args)
    };
    let r = hook(&[]);
    assert!(r.ok(), "{r}");
    assert!(
        r.stdout.contains("IMA labels for new: 1 written, 0 current, 0 failed"),
        "{r}"
    );
    assert!(xattr_hex(&new).starts_with("0x0404"));
    let none = run(Command::new("getfattr").args(["-n", "security.ima"]).arg(&old));
    assert!(!none.ok(), "the old package was relabelled:\n{none}");
    // Nothing changed since: nothing to say.
    let r = hook(&[]);
    assert!(r.ok() && r.stdout.is_empty(), "{r}");
    // Not Bulwark's policy: the hook does nothing and never fails dpkg.
    let foreign = t.root.join("foreign-policy");
    fs::write(&foreign, "measure func=BPRM_CHECK\n").unwrap();
    let r = ctl(&[
        "ima",
        "dpkg-hook",
        "--policy",
        foreign.to_str().unwrap(),
        "--admindir",
        "/nonexistent",
    ]);
    assert!(r.ok() && r.stdout.is_empty(), "{r}");
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Under bulwarkd's `--root`: a kernel with IMA that takes one policy, a
/// command line, a boot id.
fn fake_kernel(root: &Path, cmdline: &str) {
    for d in ["sys/kernel/security/ima", "proc/sys/kernel/random"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("sys/kernel/security/ima/policy"), "").unwrap();
    fs::write(root.join("proc/cmdline"), format!("root=/dev/vda {cmdline}\n")).unwrap();
    fs::write(
        root.join("proc/sys/kernel/random/boot_id"),
        "0f0e0d0c-0000-4000-8000-000000000001\n",
    )
    .unwrap();
}

const FIX: &str = "[profile]
name = \"ima-fix\"

[firewall]
public_tcp = [22]

[ima]
mode = \"fix\"
";

const ENFORCE_SSH: &str = "[profile]
name = \"ima-enforce\"

[firewall]
public_tcp = [22]

[ima]
mode = \"enforce\"
";

#[test]
fn bulwarkd_loads_the_policy_now_guards_enforce_and_audits_label_runs() {
    require_root();
    let mut lab = Lab::new("ima-daemon");
    fake_kernel(&lab.daemon.root, "ima_appraise=fix");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let root = d.root.clone();

    let fix = d.write_profile("fix", FIX);
    let r = d.ctl(&["apply", "--dry-run", fix.to_str().unwrap()]);
    assert!(r.ok(), "{r}\n{}", d.logs());
    assert!(r.stdout.contains("load the policy into the running kernel now"), "{r}");
    let r = d.ctl(&["apply", fix.to_str().unwrap()]);
    assert!(r.ok(), "{r}\n{}", d.logs());
    let policy = fs::read_to_string(root.join("etc/ima/ima-policy")).unwrap();
    assert!(policy.starts_with("# Managed by Bulwark"), "{policy}");
    let loaded = fs::read_to_string(root.join("sys/kernel/security/ima/policy")).unwrap();
    assert!(
        loaded.contains("appraise func=BPRM_CHECK fowner=0\n") && !loaded.contains('#'),
        "{loaded}"
    );
    // The kernel drops its policy file after the one load it takes.
    fs::remove_file(root.join("sys/kernel/security/ima/policy")).unwrap();
    let state: serde_json::Value = d.ctl_json(&["ima", "status"]);
    assert_eq!(state["policy"], "loaded", "{state}");
    assert_eq!(state["mode_in_force"], "fix", "{state}");
    assert!(fs::read_to_string(root.join("etc/default/grub.d/50-bulwark-ima.cfg"))
        .unwrap()
        .contains("ima_appraise=fix"));

    // An unlabelled root-owned executable under the root: enforce is refused.
    let bin = root.join("usr/local/bin/tool");
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    fs::write(&bin, "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let enforce = d.write_profile("enforce", ENFORCE_SSH);
    let gens = d.generations().len();
    let r = d.ctl(&["apply", enforce.to_str().unwrap()]);
    assert_eq!(r.code, Some(6), "the daemon's refusal (409) exits 6:\n{r}");
    assert!(r.stderr.contains("moving to IMA enforce refused"), "{r}");
    assert!(r.stderr.contains("/usr/local/bin/tool (missing"), "{r}");
    assert_eq!(d.generations().len(), gens, "a refused apply made a generation");
    assert!(fs::read_to_string(root.join("etc/ima/ima-policy"))
        .unwrap()
        .contains("mode fix"));
    assert!(d.audit_tail(20).iter().any(|e| e.event == "BWK-IMA-0006"));

    // bulwarkctl labels it (reporting the run to bulwarkd), then enforce passes.
    let policy_path = root.join("etc/ima/ima-policy");
    let r = d.ctl(&[
        "ima",
        "label",
        "--policy",
        policy_path.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "/usr/local/bin",
    ]);
    assert!(r.ok(), "{r}");
    assert!(!r.stderr.contains("not in the audit log"), "{r}\n{}", d.logs());
    let events = d.audit_tail(20);
    let run = events
        .iter()
        .find(|e| e.event == "BWK-IMA-0005")
        .expect("label run audited");
    assert!(run.message.contains("bulwarkctl: 1 labelled"), "{run:?}");
    assert_eq!(run.iso27001_2022, ["A.8.19", "A.8.7"]);
    let r = d.ctl(&["apply", enforce.to_str().unwrap()]);
    assert!(r.ok(), "{r}\n{}", d.logs());
    assert!(r.stdout.contains("update-grub"), "the plan says what remains:\n{r}");
    let state: serde_json::Value = d.ctl_json(&["ima", "status"]);
    assert_eq!(state["policy"], "reboot-needed", "{state}");
    assert_eq!(
        state["pending"],
        serde_json::json!([
            "add ima_appraise=enforce to the kernel command line of this host's boot loader (no /boot/grub/grub.cfg)",
            "reboot"
        ]),
        "{state}"
    );
    let r = d.ctl(&["health"]);
    assert!(
        r.stdout.contains("ima-policy") && r.stdout.contains("reboot needed"),
        "{r}"
    );
    let (code, metrics) = d.http("GET", "/v1/metrics", None);
    assert_eq!(code, 200, "{metrics}");
    for series in [
        "bulwark_ima_reboot_needed{module=\"ima\"} 1",
        "bulwark_ima_policy_loaded{module=\"ima\"} 0",
        "bulwark_ima_enforcing{module=\"ima\"} 0",
        "bulwark_ima_measurements{module=\"ima\"}",
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }

    // Another unlabelled file: --force overrides the guard, audited.
    fs::copy(&bin, root.join("usr/local/bin/other")).unwrap();
    let enforce2 = d.write_profile(
        "enforce2",
        ENFORCE_SSH.replace("mode = \"enforce\"", "mode = \"enforce\"\nmeasure = true"),
    );
    let r = d.ctl(&["apply", enforce2.to_str().unwrap()]);
    assert_eq!(r.code, Some(6), "the daemon's refusal (409) exits 6:\n{r}");
    let r = d.ctl(&["apply", "--force", enforce2.to_str().unwrap()]);
    assert!(r.ok(), "{r}\n{}", d.logs());
    assert!(d.audit_tail(20).iter().any(|e| e.event == "BWK-IMA-0007"));

    // Without [ima]: Bulwark's files go, "until reboot" in the plan.
    let plain = d.write_profile("plain", "[profile]\nname = \"plain\"\n[firewall]\npublic_tcp = [22]\n");
    let r = d.ctl(&["apply", plain.to_str().unwrap()]);
    assert!(r.ok(), "{r}");
    assert!(r.stdout.contains("until reboot"), "{r}");
    assert!(!root.join("etc/ima/ima-policy").exists());
    assert!(!root.join("etc/default/grub.d/50-bulwark-ima.cfg").exists());
}
