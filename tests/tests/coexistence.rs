//! Other firewall managers beside Bulwark, for real and only inside the
//! test's own namespace: ufw's rules loaded by its own init script, a
//! firewalld on a private D-Bus, legacy iptables rules, and an
//! nftables.service that flushes the ruleset. Each is named, with what to
//! do, in the answer of an apply and in health; the root namespace's
//! ruleset is the same before and after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bulwark_model::api::{ApplyResponse, Check, Health};
use bulwark_tests::{poll, run, run_ok, Daemon, Lab};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PROFILE: &str = r#"[profile]
name = "coexist"

[firewall]
public_tcp = [22]
"#;

fn root_ruleset() -> String {
    run_ok(Command::new("nft").args(["list", "ruleset"])).stdout
}

/// The warnings a dry run of the profile in force answers with.
fn warnings(d: &Daemon) -> Vec<String> {
    let file = d.write_profile("coexist", PROFILE);
    let r = d.ctl_ok(&["--json", "apply", "--dry-run", file.to_str().unwrap()]);
    let resp: ApplyResponse = serde_json::from_str(&r.stdout).unwrap();
    resp.warnings
}

fn managers_check(d: &Daemon) -> Check {
    let r = d.ctl(&["--json", "health"]);
    let h: Health = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}:\n{r}"));
    h.checks
        .into_iter()
        .find(|c| c.name == "firewall_managers")
        .expect("a firewall_managers check")
}

/// A process killed by PID when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let waited = poll(Duration::from_secs(5), Duration::from_millis(50), || {
            self.0.try_wait().ok().flatten()
        });
        if waited.is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn ufw_and_legacy_iptables_in_the_namespace_are_named_at_apply_and_in_health() {
    let before = root_ruleset();
    let mut lab = Lab::new("coexist-ufw");
    lab.daemon.start(Some(PROFILE));
    let d = &lab.daemon;
    let vps = lab.net.vps.clone();
    assert!(warnings(d).is_empty(), "a quiet host has no warning");
    assert_eq!(managers_check(d).level, bulwark_model::api::Level::Ok);

    // ufw's configuration under the daemon's root, enabled, and its rules
    // loaded into the vps namespace by ufw's own boot script.
    let root = &d.root;
    fs::create_dir_all(root.join("etc/default")).unwrap();
    fs::create_dir_all(root.join("lib/ufw")).unwrap();
    run_ok(Command::new("cp").args(["-a", "/etc/ufw"]).arg(root.join("etc/")));
    let conf = fs::read_to_string("/etc/ufw/ufw.conf").unwrap();
    fs::write(root.join("etc/ufw/ufw.conf"), conf.replace("ENABLED=no", "ENABLED=yes")).unwrap();
    // No sysctl changes: those are not what this test is about.
    let defaults = fs::read_to_string("/etc/default/ufw").unwrap();
    let defaults: String = defaults
        .lines()
        .map(|l| if l.starts_with("IPT_SYSCTL=") { "IPT_SYSCTL=" } else { l })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(root.join("etc/default/ufw"), defaults).unwrap();
    let init = |what: &str| {
        run(Command::new("ip")
            .args(["netns", "exec", &vps, "/lib/ufw/ufw-init", "--datadir"])
            .arg(root)
            .arg(what))
    };
    let started = init("start");
    assert!(started.ok(), "ufw-init start:\n{started}");
    let chains = run_ok(Command::new("ip").args(["netns", "exec", &vps, "nft", "list", "chains"])).stdout;
    assert!(chains.contains("ufw-before-input"), "ufw loaded no rules:\n{chains}");

    // Legacy iptables rules in the same namespace.
    run_ok(Command::new("ip").args([
        "netns",
        "exec",
        &vps,
        "iptables-legacy",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "9",
        "-j",
        "DROP",
    ]));

    let w = warnings(d);
    let ufw = w
        .iter()
        .find(|w| w.starts_with("firewall: ufw: "))
        .unwrap_or_else(|| panic!("{w:#?}"));
    assert!(
        ufw.contains("its rules are loaded (table ip filter, table ip6 filter)"),
        "{ufw}"
    );
    assert!(
        ufw.contains("enabled at boot (ENABLED=yes in /etc/ufw/ufw.conf)") && ufw.contains("ufw disable"),
        "{ufw}"
    );
    let legacy = w
        .iter()
        .find(|w| w.starts_with("firewall: iptables-legacy: "))
        .unwrap_or_else(|| panic!("{w:#?}"));
    assert!(
        legacy.contains("(filter)") && legacy.contains("iptables-legacy-save"),
        "{legacy}"
    );
    // The human answer of an apply says it too.
    let file = d.write_profile("coexist", PROFILE);
    let human = d.ctl_ok(&["apply", "--dry-run", file.to_str().unwrap()]);
    assert!(human.stdout.contains("\nwarning: firewall: ufw: "), "{human}");
    let c = managers_check(d);
    assert_eq!(c.level, bulwark_model::api::Level::Warning, "{c:?}");
    assert!(
        c.reason.contains("ufw: ") && c.reason.contains("iptables-legacy: "),
        "{c:?}"
    );
    assert_eq!(d.ctl(&["health"]).code, Some(1));

    // Gone again: the next look says so.
    assert!(init("stop").ok());
    fs::write(root.join("etc/ufw/ufw.conf"), conf).unwrap();
    run_ok(Command::new("ip").args(["netns", "exec", &vps, "iptables-legacy", "-F"]));
    // An x_tables table stays registered once created; only ufw is gone.
    let w = warnings(d);
    assert!(!w.iter().any(|w| w.contains("ufw")), "{w:#?}");
    drop(lab);
    assert_eq!(root_ruleset(), before, "the root namespace's ruleset changed");
}

/// A private system bus for one firewalld, in `dir`.
fn private_bus(dir: &Path) -> (Killed, String) {
    let sock = dir.join("bus.sock");
    let conf = dir.join("bus.conf");
    fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
            sock.display()
        ),
    )
    .unwrap();
    let child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--nopidfile"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon (package dbus)");
    let up = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        sock.exists().then_some(())
    });
    assert!(up.is_some(), "the private bus did not come up");
    (Killed(child), format!("unix:path={}", sock.display()))
}

#[test]
fn a_firewalld_and_a_flushing_nftables_service_are_named_with_their_fixes() {
    let before = root_ruleset();
    let mut lab = Lab::new("coexist-fwd");
    lab.daemon.start(Some(PROFILE));
    let d = &lab.daemon;
    let vps = lab.net.vps.clone();
    let dir = tempfile::tempdir().unwrap();
    let (_bus, address) = private_bus(dir.path());
    // firewalld's own configuration copied, so nothing under /etc changes.
    let config = dir.path().join("firewalld");
    run_ok(Command::new("cp").arg("-a").arg("/etc/firewalld").arg(&config));
    let log = fs::File::create(dir.path().join("firewalld.log")).unwrap();
    let firewalld = Killed(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &vps,
                "firewalld",
                "--nofork",
                "--nopid",
                "--log-target",
                "console",
            ])
            .arg("--system-config")
            .arg(&config)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("firewalld (package firewalld)"),
    );
    let running = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let t = run(Command::new("ip").args(["netns", "exec", &vps, "nft", "list", "tables"])).stdout;
        t.contains("table inet firewalld").then_some(())
    });
    assert!(
        running.is_some(),
        "firewalld did not build its table:\n{}",
        fs::read_to_string(dir.path().join("firewalld.log")).unwrap_or_default()
    );

    // And an nftables.service enabled at boot whose config flushes everything.
    let root = &d.root;
    fs::write(
        root.join("etc/nftables.conf"),
        "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n",
    )
    .unwrap();
    let wants = root.join("etc/systemd/system/sysinit.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/system/nftables.service", wants.join("nftables.service")).unwrap();

    let w = warnings(d);
    let fwd = w
        .iter()
        .find(|w| w.starts_with("firewall: firewalld: "))
        .unwrap_or_else(|| panic!("{w:#?}"));
    assert!(
        fwd.contains("it is running (table inet firewalld)") && fwd.contains("systemctl disable --now firewalld"),
        "{fwd}"
    );
    let nft = w
        .iter()
        .find(|w| w.starts_with("firewall: nftables.service: "))
        .unwrap_or_else(|| panic!("{w:#?}"));
    assert!(
        nft.contains("flush table inet filter") && nft.contains("systemctl disable nftables"),
        "{nft}"
    );
    let c = managers_check(d);
    assert_eq!(c.level, bulwark_model::api::Level::Warning, "{c:?}");
    assert!(
        c.reason.contains("firewalld: ") && c.reason.contains("nftables.service: "),
        "{c:?}"
    );

    drop(firewalld);
    drop(lab);
    assert_eq!(root_ruleset(), before, "the root namespace's ruleset changed");
}

#[test]
fn bulwarkd_lists_other_tables_again_only_after_someone_else_commits() {
    let mut lab = Lab::new("coexist-gen");
    let log = lab.daemon.root.join("nft-calls");
    lab.daemon.wrap_nft(&format!(
        "# nft that notes its arguments\necho \"$*\" >> '{}'",
        log.display()
    ));
    lab.daemon.start(Some(PROFILE));
    let d = &lab.daemon;
    let listings = || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "-j list chains")
            .count()
    };
    let with_80 = d.write_profile("coexist-80", PROFILE.replace("[22]", "[22, 80]"));
    let without = d.write_profile("coexist-22", PROFILE);
    // Each apply replaces the table whole (its rules change) with nft -f.
    d.ctl_ok(&["apply", with_80.to_str().unwrap()]);
    let first = listings();
    for file in [&without, &with_80, &without] {
        d.ctl_ok(&["apply", file.to_str().unwrap()]);
    }
    let calls = fs::read_to_string(&log).unwrap();
    assert_eq!(
        listings(),
        first,
        "bulwarkd's own commits made it list every chain again:\n{calls}"
    );
    assert!(calls.matches("-j -f -").count() >= 4, "not replaced whole:\n{calls}");

    // Another process commits a table of firewalld's: the next plan lists
    // again and names it.
    let vps = lab.net.vps.clone();
    let nft = |args: &[&str]| run_ok(Command::new("ip").args(["netns", "exec", &vps, "nft"]).args(args));
    nft(&["add", "table", "inet", "firewalld"]);
    nft(&["add", "chain", "inet", "firewalld", "filter_INPUT"]);
    let w = warnings(d);
    assert!(
        w.iter()
            .any(|w| w.starts_with("firewall: firewalld: it is running (table inet firewalld)")),
        "{w:#?}"
    );
    assert_eq!(listings(), first + 1);
}
