//! The IMA module against a temporary root: a fake /proc/cmdline, boot id
//! and securityfs policy file drive "loaded now", "after reboot" and
//! "reboot needed"; real files and real security.ima labels drive the
//! enforce guard (these tests run as root, like the rest of the suite).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use bulwark_model::api::{ChangeOp, Level};
use bulwark_model::Profile;

use super::*;
use crate::host::Host;

struct Root {
    _dir: tempfile::TempDir,
    path: PathBuf,
    host: Host,
}

const BOOT: &str = "4b3a2f1e-0000-4000-8000-000000000001";

/// A root with IMA in the kernel, no custom policy yet, the given command line.
fn root(cmdline: &str) -> Root {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    for d in [
        "var/lib/bulwark",
        "proc/sys/kernel/random",
        "sys/kernel/security/ima",
        "etc",
    ] {
        fs::create_dir_all(path.join(d)).unwrap();
    }
    fs::write(
        path.join("proc/cmdline"),
        format!("BOOT_IMAGE=/vmlinuz root=/dev/vda {cmdline}\n"),
    )
    .unwrap();
    fs::write(path.join("proc/sys/kernel/random/boot_id"), format!("{BOOT}\n")).unwrap();
    fs::write(path.join("proc/stat"), "cpu 1 2 3\nbtime 1000\n").unwrap();
    fs::write(path.join("sys/kernel/security/ima/policy"), "").unwrap();
    fs::write(path.join("sys/kernel/security/ima/runtime_measurements_count"), "42\n").unwrap();
    fs::write(path.join("sys/kernel/security/ima/violations"), "0\n").unwrap();
    Root {
        host: Host::new(&path),
        _dir: dir,
        path,
    }
}

impl Root {
    fn file(&self, p: &str) -> PathBuf {
        self.path.join(p.trim_start_matches('/'))
    }
    fn read(&self, p: &str) -> Option<String> {
        fs::read_to_string(self.file(p)).ok()
    }
    /// What the kernel does after a load with CONFIG_IMA_WRITE_POLICY off.
    fn kernel_took_policy(&self) -> String {
        let p = self.file("/sys/kernel/security/ima/policy");
        let loaded = fs::read_to_string(&p).unwrap();
        fs::remove_file(&p).unwrap();
        loaded
    }
    /// A root-owned executable without a label.
    fn executable(&self, p: &str) -> PathBuf {
        let f = self.file(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, format!("#!/bin/sh\necho {p}\n")).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
        f
    }
}

fn profile(ima: &str) -> Profile {
    Profile::parse("p.toml", &format!("[profile]\nname = \"t\"\n[ima]\n{ima}\n")).unwrap()
}

fn no_ima() -> Profile {
    Profile::parse("p.toml", "[profile]\nname = \"t\"\n").unwrap()
}

fn ids(cx: &mut Cx<'_>) -> Vec<&'static str> {
    cx.take_events().iter().map(|e| e.kind.id).collect()
}

fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} in {checks:?}"))
}

#[test]
fn a_kernel_without_a_policy_loads_it_now_and_the_file_is_written_atomically() {
    let r = root("ima_appraise=fix");
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    let p = profile("mode = \"fix\"");
    let plan = m.plan(&mut cx, &p, None).unwrap();
    assert!(
        plan.iter()
            .any(|c| c.what.contains("load the policy into the running kernel now")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|c| c.what.contains("ima_appraise=fix; then run `update-grub` and `reboot`")),
        "{plan:?}"
    );
    m.apply(&mut cx, &p).unwrap();
    assert_eq!(ids(&mut cx), ["BWK-IMA-0001", "BWK-IMA-0002", "BWK-IMA-0003"]);
    let file = r.read(POLICY_FILE).unwrap();
    assert_eq!(Some(&file), p.ima.as_ref().unwrap().policy().as_ref());
    let mode = fs::metadata(r.file(POLICY_FILE)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert!(
        !r.file("/etc/ima/ima-policy.bwk-tmp").exists(),
        "no temporary left behind"
    );
    // The kernel got the rules, one per line, without comments.
    let loaded = r.kernel_took_policy();
    let rules: Vec<&str> = file.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(loaded.lines().collect::<Vec<_>>(), rules);
    assert!(loaded.contains("appraise func=BPRM_CHECK fowner=0\n"));
    let s = m.state(&cx, p.ima.as_ref().unwrap()).unwrap();
    assert_eq!(s.policy, "loaded");
    assert_eq!(s.mode_in_force, "fix");
    assert_eq!(s.measurements, Some(42));
    // No GRUB here: the drop-in is written, and nothing remains once the boot has fix.
    assert!(r.read(GRUB_DROPIN).unwrap().contains("ima_appraise=fix"));
    assert!(s.pending.is_empty(), "{:?}", s.pending);
    let checks = m.health(&mut cx, Some(&p));
    assert_eq!(check(&checks, "ima-policy").level, Level::Ok, "{checks:?}");
    assert_eq!(check(&checks, "ima-mode").level, Level::Ok, "{checks:?}");
    // A second apply changes nothing and loads nothing.
    assert!(m.plan(&mut cx, &p, Some(&p)).unwrap().is_empty());
    m.apply(&mut cx, &p).unwrap();
    assert!(ids(&mut cx).is_empty());
    assert!(m.observe(&mut cx, &p).unwrap().is_empty());
}

#[test]
fn a_boot_that_already_runs_a_policy_takes_the_new_one_after_reboot() {
    let r = root("ima_appraise=fix");
    // systemd loaded some policy at boot; none of Bulwark's.
    fs::remove_file(r.file("/sys/kernel/security/ima/policy")).unwrap();
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    let p = profile("mode = \"fix\"");
    let plan = m.plan(&mut cx, &p, None).unwrap();
    assert!(
        plan.iter().any(|c| c.what.contains("takes effect after reboot")),
        "{plan:?}"
    );
    m.apply(&mut cx, &p).unwrap();
    assert_eq!(ids(&mut cx), ["BWK-IMA-0001", "BWK-IMA-0003"]);
    let s = m.state(&cx, p.ima.as_ref().unwrap()).unwrap();
    assert_eq!(s.policy, "reboot-needed");
    assert_eq!(s.pending, ["reboot"]);
    let checks = m.health(&mut cx, Some(&p));
    let c = check(&checks, "ima-policy");
    assert_eq!(c.level, Level::Warning);
    assert!(c.reason.contains("reboot needed"), "{c:?}");
}

#[test]
fn a_policy_file_older_than_the_boot_is_what_systemd_loaded() {
    let r = root("ima_appraise=fix");
    let p = profile("mode = \"fix\"");
    let mut m = Ima::new();
    {
        let mut cx = Cx::new(&r.host, 0);
        m.apply(&mut cx, &p).unwrap();
    }
    // Next boot: systemd loaded the file (written at t=0 < btime), a new boot id.
    fs::write(r.file("/proc/sys/kernel/random/boot_id"), "another-boot\n").unwrap();
    fs::write(r.file("/proc/stat"), format!("btime {}\n", host::now() + 10)).unwrap();
    r.kernel_took_policy();
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    assert_eq!(m.state(&cx, p.ima.as_ref().unwrap()).unwrap().policy, "loaded");
    // Changing the profile now only changes the file: reboot needed.
    let p2 = profile("mode = \"fix\"\nmeasure = true");
    m.apply(&mut cx, &p2).unwrap();
    assert_eq!(ids(&mut cx), ["BWK-IMA-0001"]);
    assert_eq!(m.state(&cx, p2.ima.as_ref().unwrap()).unwrap().policy, "reboot-needed");
}

#[test]
fn an_enforcing_kernel_does_not_load_a_fix_policy_now() {
    // No ima_appraise= on the command line: the kernel enforces.
    let r = root("");
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    let p = profile("mode = \"fix\"");
    let plan = m.plan(&mut cx, &p, None).unwrap();
    assert!(plan.iter().any(|c| c.what.contains("this boot enforces")), "{plan:?}");
    m.apply(&mut cx, &p).unwrap();
    assert_eq!(r.read("/sys/kernel/security/ima/policy").unwrap(), "", "nothing loaded");
    let s = m.state(&cx, p.ima.as_ref().unwrap()).unwrap();
    assert_eq!(s.policy, "after-reboot");
    assert_eq!(s.mode_in_force, "enforce");
    assert_eq!(s.pending.last().map(String::as_str), Some("reboot"));
    let checks = m.health(&mut cx, Some(&p));
    assert_eq!(check(&checks, "ima-mode").level, Level::Warning);
    assert!(check(&checks, "ima-policy").reason.contains("after reboot"));
}

#[test]
fn grub_hosts_are_told_to_run_update_grub_then_reboot() {
    let r = root("ima_appraise=fix");
    fs::create_dir_all(r.file("/boot/grub")).unwrap();
    fs::write(
        r.file("/boot/grub/grub.cfg"),
        "menuentry 'Debian' {\n\tlinux /vmlinuz root=/dev/vda ro ima_appraise=fix\n}\n",
    )
    .unwrap();
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    let p = profile("mode = \"fix\"");
    m.apply(&mut cx, &p).unwrap();
    assert!(m.state(&cx, p.ima.as_ref().unwrap()).unwrap().pending.is_empty());
    // Enforce with everything labelled (an empty root): the drop-in changes.
    let e = profile("mode = \"enforce\"");
    m.apply(&mut cx, &e).unwrap();
    let s = m.state(&cx, e.ima.as_ref().unwrap()).unwrap();
    assert_eq!(s.pending, ["update-grub", "reboot"]);
    fs::write(
        r.file("/boot/grub/grub.cfg"),
        "\tlinux /vmlinuz ro ima_appraise=fix ima_appraise=enforce\n",
    )
    .unwrap();
    assert_eq!(m.state(&cx, e.ima.as_ref().unwrap()).unwrap().pending, ["reboot"]);
}

#[test]
fn moving_to_enforce_is_refused_while_a_file_is_unlabelled_and_nothing_is_written() {
    let r = root("ima_appraise=fix");
    let bin = r.executable("/usr/local/bin/unlabelled");
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    let e = profile("mode = \"enforce\"");
    let err = m.preflight(&mut cx, &e).unwrap_err();
    assert_eq!(err.class, ErrorClass::Conflict);
    let text = err.to_string();
    assert!(
        text.contains("1 file(s)") && text.contains("/usr/local/bin/unlabelled (missing"),
        "{text}"
    );
    assert!(text.contains("--force"), "{text}");
    assert_eq!(ids(&mut cx), ["BWK-IMA-0006"]);
    assert!(r.read(POLICY_FILE).is_none(), "nothing written");
    assert!(r.read(GRUB_DROPIN).is_none(), "nothing written");
    cx.take_events();

    // Labelled (as bulwarkctl does), the same apply goes through.
    assert_eq!(
        bulwark_imalabel::label_file(&bin, false, None, None),
        bulwark_imalabel::LabelOutcome::Labelled
    );
    m.preflight(&mut cx, &e).unwrap();
    m.apply(&mut cx, &e).unwrap();
    assert!(r.read(GRUB_DROPIN).unwrap().contains("ima_appraise=enforce"));
    let events = ids(&mut cx);
    assert!(
        events.contains(&"BWK-IMA-0001") && !events.contains(&"BWK-IMA-0006"),
        "{events:?}"
    );
}

#[test]
fn force_overrides_the_guard_and_is_audited() {
    let r = root("ima_appraise=fix");
    r.executable("/usr/local/bin/unlabelled");
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0).with_force(true);
    let e = profile("mode = \"enforce\"");
    m.preflight(&mut cx, &e).unwrap();
    m.apply(&mut cx, &e).unwrap();
    let events = ids(&mut cx);
    assert_eq!(events[0], "BWK-IMA-0007", "{events:?}");
    assert!(r.read(POLICY_FILE).is_some());
}

#[test]
fn a_scan_does_not_enter_excluded_filesystems_or_scan_skip() {
    let r = root("ima_appraise=fix");
    r.executable("/usr/bin/tool");
    r.executable("/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/bin/sh");
    let tmp = r.file("/run");
    fs::create_dir_all(&tmp).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "bulwark-test", tmp.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs (root needed)");
    r.executable("/run/on-tmpfs");
    let p = profile("mode = \"fix\"");
    let ima = p.ima.as_ref().unwrap();
    let job = Ima::job(&Cx::new(&r.host, 0), ima, parsed(&ima.policy().unwrap()).unwrap());
    let report = job.run();
    let _ = std::process::Command::new("umount").arg("-l").arg(&tmp).status();
    let paths: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/usr/bin/tool"], "{report:?}");
    assert!(
        report.skipped.iter().any(|s| s.starts_with("/run (tmpfs")),
        "{:?}",
        report.skipped
    );
    assert!(
        report.skipped.iter().any(|s| s.contains("snapshots (scan_skip)")),
        "{:?}",
        report.skipped
    );
}

#[test]
fn without_the_section_only_bulwarks_own_files_are_removed() {
    let r = root("ima_appraise=fix");
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    m.apply(&mut cx, &profile("mode = \"fix\"")).unwrap();
    cx.take_events();
    let plan = m.plan(&mut cx, &no_ima(), None).unwrap();
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert!(plan.iter().all(|c| c.op == ChangeOp::Remove));
    assert!(plan[0].what.contains("until reboot"), "{plan:?}");
    m.apply(&mut cx, &no_ima()).unwrap();
    assert_eq!(ids(&mut cx), ["BWK-IMA-0010"]);
    assert!(r.read(POLICY_FILE).is_none() && r.read(GRUB_DROPIN).is_none());
    assert!(m.health(&mut cx, Some(&no_ima())).is_empty());

    // Someone else's policy is neither removed nor replaced.
    fs::write(r.file(POLICY_FILE), "measure func=BPRM_CHECK\n").unwrap();
    m.apply(&mut cx, &no_ima()).unwrap();
    assert!(r.read(POLICY_FILE).is_some());
    let err = m.apply(&mut cx, &profile("mode = \"fix\"")).unwrap_err();
    assert!(err.to_string().contains("not written by Bulwark"), "{err}");
    assert_eq!(r.read(POLICY_FILE).unwrap(), "measure func=BPRM_CHECK\n");
}

#[test]
fn a_load_the_kernel_refuses_puts_the_previous_file_back() {
    let r = root("ima_appraise=fix");
    // A securityfs node that cannot be opened for writing.
    let node = r.file("/sys/kernel/security/ima/policy");
    fs::remove_file(&node).unwrap();
    fs::create_dir(&node).unwrap();
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    let err = m.apply(&mut cx, &profile("mode = \"fix\"")).unwrap_err();
    assert_eq!(err.class, ErrorClass::Failed, "{err}");
    assert!(r.read(POLICY_FILE).is_none(), "the file was put back (absent)");
}

#[test]
fn a_kernel_without_ima_is_critical() {
    let r = root("ima_appraise=fix");
    fs::remove_dir_all(r.file("/sys/kernel/security/ima")).unwrap();
    let mut m = Ima::new();
    let mut cx = Cx::new(&r.host, 0);
    let p = profile("mode = \"fix\"");
    m.apply(&mut cx, &p).unwrap();
    let checks = m.health(&mut cx, Some(&p));
    assert_eq!(check(&checks, "ima-kernel").level, Level::Critical);
    // The engine raises the module's status to this check's level
    // (converge::tests::a_report_asks_each_module_once_and_raises_its_status_to_its_worst_check).
    assert!(m.status(&mut cx, Some(&p)).managed);
}

#[test]
fn artifacts_are_the_policy_and_the_dropin() {
    let m = Ima::new();
    let a = m.render(&profile("mode = \"enforce\""));
    assert_eq!(a.keys().collect::<Vec<_>>(), ["50-bulwark-ima.cfg", "ima-policy"]);
    assert!(m.render(&profile("mode = \"off\"\nmanage_cmdline = false")).is_empty());
    assert!(m.render(&no_ima()).is_empty());
}
