//! Start-up never leaves the host open. Each test simulates a reboot (the
//! daemon and wireguard-go killed, table inet bulwark deleted), damages one
//! piece of state, and starts bulwarkd again: the firewall comes back from
//! the last good generation or as the failsafe, the broken piece is CRITICAL
//! in health by name, and the API keeps serving. Checked with packets from
//! the internet namespace, not only by reading status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use bulwark_tests::addr::{VPS_ADMIN_V4, VPS_INET_V4};
use bulwark_tests::bulwark_model::api::{Health, Level};
use bulwark_tests::{bin, reachable, run, Daemon, Lab};

const A: &str = include_str!("../fixtures/a.toml");
const B: &str = include_str!("../fixtures/b.toml");
/// Ports the probes try: A opens 8080 to all and 22 to admins.
const PORTS: [u16; 5] = [22, 80, 443, 8080, 8081];

/// A WireGuard interface name unique to this process and test.
fn iface() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "wgs{}x{}",
        std::process::id() % 10000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Profile A with a WireGuard section (userspace here: no kernel module).
fn a_with_vpn(iface: &str) -> String {
    format!(
        "{A}\n[wireguard]\ninterface = \"{iface}\"\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"\nbackend = \"auto\"\n"
    )
}

fn health(d: &Daemon) -> Health {
    let r = d.ctl(&["--json", "health"]);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("health --json ({e}):\n{r}\n{}", d.logs()))
}

fn critical_naming(d: &Daemon, needle: &str) {
    let h = health(d);
    assert_eq!(h.level, Level::Critical, "{h:#?}");
    assert!(
        h.checks
            .iter()
            .any(|c| c.level == Level::Critical && c.reason.contains(needle)),
        "no CRITICAL check names {needle:?}: {h:#?}"
    );
}

fn events(d: &Daemon) -> Vec<String> {
    d.audit_tail(100)
        .into_iter()
        .map(|e| format!("{} {}", e.event, e.message))
        .collect()
}

/// A applied and in force; returns its live ruleset.
fn a_in_force(lab: &mut Lab, profile: &str) -> String {
    lab.daemon.start(None);
    let d = &lab.daemon;
    let resp = d.apply(&d.write_profile("a", profile), &[]);
    assert!(resp.changed, "{resp:?}");
    d.ruleset_present()
}

fn assert_a_from_outside(lab: &Lab) {
    let net = &lab.net;
    assert_eq!(reachable(&net.inet, VPS_INET_V4, &PORTS), [8080], "from the internet");
    assert_eq!(
        reachable(&net.admin, VPS_ADMIN_V4, &PORTS),
        [22, 8080],
        "from the admin network"
    );
}

#[test]
fn a_corrupt_peer_store_leaves_the_firewall_restored_and_wireguard_critical() {
    let mut lab = Lab::new("boot-peers");
    let wg = iface();
    let rules = a_in_force(&mut lab, &a_with_vpn(&wg));
    let _l = lab.net.listen(&lab.net.vps, &PORTS);
    lab.daemon.crash_and_reboot();
    let store = lab.daemon.state_dir().join("wireguard/peers.json");
    fs::write(&store, b"{ not json").unwrap();

    lab.daemon.restart();
    let d = &lab.daemon;
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules.as_str()),
        "the generation's ruleset is not back"
    );
    assert_a_from_outside(&lab);
    critical_naming(d, "peers.json");
    assert!(d.ctl(&["status"]).ok(), "the API must keep serving");
}

#[test]
fn a_corrupt_server_key_leaves_the_firewall_restored_and_wireguard_critical() {
    let mut lab = Lab::new("boot-key");
    let wg = iface();
    let rules = a_in_force(&mut lab, &a_with_vpn(&wg));
    let _l = lab.net.listen(&lab.net.vps, &PORTS);
    lab.daemon.crash_and_reboot();
    fs::write(lab.daemon.state_dir().join("wireguard/server.key"), b"").unwrap();

    lab.daemon.restart();
    let d = &lab.daemon;
    assert_eq!(d.ruleset().as_deref(), Some(rules.as_str()));
    assert_a_from_outside(&lab);
    critical_naming(d, "server.key");
}

#[test]
fn a_corrupt_pending_confirmation_reverts_the_unconfirmed_generation() {
    let mut lab = Lab::new("boot-pending");
    let rules_a = a_in_force(&mut lab, A);
    let d = &lab.daemon;
    d.apply(&d.write_profile("b", B), &["--confirm", "600"]);
    assert_ne!(d.ruleset_present(), rules_a);
    lab.daemon.crash_and_reboot();
    fs::write(lab.daemon.state_dir().join("pending-confirm.json"), b"\0\0garbage").unwrap();

    lab.daemon.restart();
    let d = &lab.daemon;
    let _l = lab.net.listen(&lab.net.vps, &PORTS);
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules_a.as_str()),
        "B outlived its unreadable confirmation"
    );
    assert_a_from_outside(&lab);
    assert!(d.status().pending_confirm.is_none());
    assert!(
        events(d)
            .iter()
            .any(|e| e.starts_with("BWK-CHG-0005") && e.contains("unconfirmed")),
        "{:#?}",
        events(d)
    );
}

#[test]
fn every_generation_damaged_leaves_the_failsafe_and_the_api() {
    let mut lab = Lab::new("boot-allgens");
    a_in_force(&mut lab, A);
    let d = &lab.daemon;
    d.apply(&d.write_profile("b", B), &[]);
    lab.daemon.crash_and_reboot();
    let gens = lab.daemon.state_dir().join("generations");
    for g in fs::read_dir(&gens).unwrap().flatten() {
        fs::write(g.path().join("firewall/ruleset.json"), b"{}").unwrap();
    }

    lab.daemon.restart();
    let d = &lab.daemon;
    let _l = lab.net.listen(&lab.net.vps, &PORTS);
    // The failsafe: SSH from anywhere, nothing else.
    assert_eq!(
        reachable(&lab.net.inet, VPS_INET_V4, &PORTS),
        [22],
        "failsafe from the internet"
    );
    let table = d.ruleset_present();
    assert!(table.contains("policy drop"), "{table}");
    critical_naming(d, "failsafe");
    assert!(
        events(d).iter().filter(|e| e.starts_with("BWK-CHG-0007")).count() >= 2,
        "{:#?}",
        events(d)
    );
    // The operator repairs by applying a profile.
    d.apply(&d.write_profile("a2", A), &[]);
    assert_a_from_outside(&lab);
}

#[test]
fn a_generation_edited_to_policy_accept_is_refused_and_the_one_before_restored() {
    newest_generation_edited_is_refused("boot-edited", |g| {
        let path = g.join("firewall/ruleset.json");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"drop\""), "{text}");
        fs::write(&path, text.replace("\"drop\"", "\"accept\"")).unwrap();
    });
}

#[test]
fn a_generation_whose_seal_was_blanked_is_refused_not_trusted() {
    // Only a store where no generation is sealed yet (an upgrade) seals
    // unsealed ones; here a blanked seal would otherwise buy trust.
    newest_generation_edited_is_refused("boot-blanked", |g| {
        let path = g.join("meta.json");
        let mut meta: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert!(!meta["seal"].as_str().unwrap().is_empty());
        meta["seal"] = serde_json::Value::String(String::new());
        fs::write(&path, meta.to_string()).unwrap();
    });
}

/// Profile A, then B (generation 3); `edit` generation 3 on disk during a
/// reboot: it is refused (audit, CRITICAL) and A is in force again.
fn newest_generation_edited_is_refused(name: &str, edit: impl FnOnce(&Path)) {
    let mut lab = Lab::new(name);
    let rules_a = a_in_force(&mut lab, A);
    let d = &lab.daemon;
    d.apply(&d.write_profile("b", B), &[]);
    lab.daemon.crash_and_reboot();
    edit(&lab.daemon.state_dir().join("generations/000003"));

    lab.daemon.restart();
    let d = &lab.daemon;
    let _l = lab.net.listen(&lab.net.vps, &PORTS);
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules_a.as_str()),
        "the edited generation was installed"
    );
    assert_a_from_outside(&lab);
    assert!(
        events(d)
            .iter()
            .any(|e| e.starts_with("BWK-CHG-0007") && e.contains("generation 3")),
        "{:#?}",
        events(d)
    );
    critical_naming(d, "generation 3 refused");
}

#[test]
fn an_invalid_boot_profile_on_first_start_falls_back_to_the_built_in_default() {
    let mut lab = Lab::new("boot-invalid");
    lab.daemon.start(Some(
        "[profile]\nname = \"bad\"\n[firewall]\nadmin_cidrs = [\"0.0.0.0/33\"]\npublic_tcp = [70000]\n",
    ));
    let d = &lab.daemon;
    let _l = lab.net.listen(&lab.net.vps, &PORTS);
    let status = d.status();
    assert_eq!(status.generation, Some(1));
    assert_eq!(status.profile.as_deref(), Some("default"));
    assert_eq!(
        reachable(&lab.net.inet, VPS_INET_V4, &PORTS),
        [22],
        "the default keeps only SSH open"
    );
    let invalid = events(d)
        .into_iter()
        .find(|e| e.starts_with("BWK-CHG-0008"))
        .expect("no BWK-CHG-0008 event");
    assert!(
        invalid.contains("firewall.admin_cidrs[0]") && invalid.contains("firewall.public_tcp[0]"),
        "{invalid}"
    );
}

#[test]
fn an_nft_that_exits_0_and_changes_nothing_is_a_failed_apply() {
    let mut lab = Lab::new("boot-lying-nft");
    let lie = lab.daemon.root.join("nft-lies");
    lab.daemon.wrap_nft(&format!(
        "# nft that reports success for a batch and applies nothing while {} exists\n\
         if [ -e '{}' ] && [ \"$1\" = -j ] && [ \"$2\" = -f ]; then cat >/dev/null; exit 0; fi",
        lie.display(),
        lie.display()
    ));
    let rules_a = a_in_force(&mut lab, A);
    let d = &lab.daemon;
    fs::write(&lie, b"").unwrap();
    let r = d.ctl(&["apply", d.write_profile("b", B).to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("not what was sent"), "{r}");
    assert_eq!(d.ruleset().as_deref(), Some(rules_a.as_str()));
    assert_eq!(d.status().generation, Some(2), "a failed apply made a generation");
}

#[test]
fn a_second_bulwarkd_on_the_same_root_changes_nothing_and_says_who_runs() {
    let mut lab = Lab::new("st-twice");
    let rules = a_in_force(&mut lab, A);
    let _l = lab.net.listen(&lab.net.vps, &PORTS);
    let d = &lab.daemon;
    let socket = fs::metadata(d.socket()).unwrap().ino();
    let audit = fs::read(d.root.join("var/log/bulwark/audit.log")).unwrap();
    let pid = d.pid().unwrap();
    let generation = d.status().generation;
    // Started by hand beside the running one, with a boot profile that
    // would change the table.
    let boot = d.write_profile("boot", B);
    // Bounded: a second daemon that starts would never exit by itself.
    let second = run(Command::new("timeout")
        .args(["20", "ip", "netns", "exec", &lab.net.vps])
        .arg(bin("bulwarkd"))
        .arg("--root")
        .arg(&d.root)
        .arg("--profile")
        .arg(&boot));
    assert_eq!(second.code, Some(3), "{second}");
    assert!(
        second.stderr.contains(&format!(
            "another bulwarkd (PID {pid}) runs on root {}",
            d.root.display()
        )),
        "{second}"
    );
    assert_eq!(d.ruleset_present(), rules, "the second daemon changed the table");
    assert_eq!(
        fs::metadata(d.socket()).unwrap().ino(),
        socket,
        "the socket was replaced"
    );
    assert_eq!(
        fs::read(d.root.join("var/log/bulwark/audit.log")).unwrap(),
        audit,
        "the audit log changed"
    );
    assert_eq!(d.status().generation, generation);
    assert_a_from_outside(&lab);

    // Once the first is gone, however it ended, the next one starts.
    lab.daemon.kill9();
    lab.daemon.restart();
    assert_eq!(lab.daemon.ruleset_present(), rules);
}
