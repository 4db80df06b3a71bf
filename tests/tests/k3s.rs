//! K3s bound to the VPN: Bulwark's drop-ins, the restart only on change, and
//! the listener check against the K3s stand-in (a small program that reads
//! the config the way K3s does and listens where K3s would).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../k3s-standin/lab.rs"]
mod lab;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use bulwark_tests::bulwark_model::api::{ApplyResponse, Health, Level};
use bulwark_tests::{Daemon, Lab};
use lab::{fake_systemd_with_k3s, health_until, profile, wg_name, Bulwarkd, K3sStandIn, SystemctlStandIn, VPN_IP};

const CONFIG_DROPIN: &str = "etc/rancher/k3s/config.yaml.d/50-bulwark.yaml";
const UNIT_DROPIN: &str = "etc/systemd/system/k3s.service.d/50-bulwark.conf";

/// A lab whose root looks like a systemd host with K3s installed, and a
/// bulwarkd converged to the K3s profile with the systemctl stand-in.
fn k3s_lab(tag: &str, tls_san: &[&str]) -> (Lab, SystemctlStandIn, Bulwarkd, String) {
    let lab = Lab::new(tag);
    fake_systemd_with_k3s(&lab.daemon.root);
    let systemctl = SystemctlStandIn::new(&lab.daemon.root);
    let wg = wg_name();
    let running = Bulwarkd::start(&lab.daemon, &lab.net.vps, &profile(&wg, tls_san, None), &systemctl.path);
    (lab, systemctl, running, wg)
}

fn health_json(d: &Daemon, want: i32) -> Health {
    let r = health_until(d, &["--json"], want);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("health --json is not JSON ({e}):\n{r}\n{}", d.logs()))
}

fn apply(d: &Daemon, name: &str, text: &str) -> ApplyResponse {
    let file = d.write_profile(name, text);
    d.apply(&file, &[])
}

#[test]
fn drop_ins_have_the_expected_content_and_restart_only_on_change() {
    let (lab, systemctl, _running, wg) = k3s_lab("k3s-dropin", &["10.8.0.1", "k3s.vpn.internal"]);
    let d = &lab.daemon;

    let yaml = fs::read_to_string(d.root.join(CONFIG_DROPIN)).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    let body: Vec<&str> = yaml.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        body,
        [
            "bind-address: \"10.8.0.1\"",
            "advertise-address: \"10.8.0.1\"",
            "node-ip: \"10.8.0.1\"",
            "tls-san:",
            "  - \"10.8.0.1\"",
            "  - \"k3s.vpn.internal\"",
        ],
        "{yaml}"
    );
    assert!(yaml.starts_with("# Managed by Bulwark"), "{yaml}");
    let unit = fs::read_to_string(d.root.join(UNIT_DROPIN)).unwrap();
    assert!(
        unit.contains("[Unit]\nWants=bulwarkd.service\nAfter=bulwarkd.service\n"),
        "{unit}"
    );
    for f in [CONFIG_DROPIN, UNIT_DROPIN] {
        let mode = fs::metadata(d.root.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{f}");
    }
    // What the stand-in reads is what K3s would: the bind address.
    let merged = bulwark_tests::run_ok(
        std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-standin/k3s-standin"))
            .arg("--root")
            .arg(&d.root)
            .arg("--print-config"),
    );
    let merged: serde_json::Value = serde_json::from_str(&merged.stdout).unwrap();
    assert_eq!(merged["config"]["bind-address"], VPN_IP);
    assert_eq!(merged["config"]["node-ip"], VPN_IP);

    assert_eq!(
        systemctl.calls(),
        ["daemon-reload", "--no-block try-restart k3s.service"],
        "the first apply writes the drop-ins, reloads systemd and restarts K3s\n{}",
        d.logs()
    );

    // The same profile again: nothing to write, nothing to restart.
    let same = apply(d, "same", &profile(&wg, &["10.8.0.1", "k3s.vpn.internal"], None));
    assert!(!same.changed, "an unchanged profile changed something: {same:?}");
    assert!(same.plan.changes.iter().all(|c| c.module != "k3s"), "{same:?}");
    assert_eq!(
        systemctl.restarts(),
        1,
        "unchanged apply restarted K3s: {:?}",
        systemctl.calls()
    );

    // A changed tls_san rewrites the drop-in and restarts K3s once more.
    let changed = apply(d, "san", &profile(&wg, &["10.8.0.1", "k3s.example.org"], None));
    assert!(changed.changed, "{changed:?}");
    assert!(
        changed
            .plan
            .changes
            .iter()
            .any(|c| c.module == "k3s" && c.what.contains("k3s.example.org")),
        "the plan should name the new tls-san: {changed:?}"
    );
    assert_eq!(systemctl.restarts(), 2, "{:?}", systemctl.calls());
    let yaml = fs::read_to_string(d.root.join(CONFIG_DROPIN)).unwrap();
    assert!(
        yaml.contains("  - \"k3s.example.org\"\n") && !yaml.contains("k3s.vpn.internal"),
        "{yaml}"
    );
}

#[test]
fn k3s_listening_on_every_address_is_critical_and_audited() {
    let (lab, _systemctl, _running, _wg) = k3s_lab("k3s-exposed", &[]);
    let d = &lab.daemon;
    let _k3s = K3sStandIn::start(&lab.net.vps, &d.root, Some("0.0.0.0"));

    let r = health_until(d, &[], 2);
    assert_eq!(r.code, Some(2), "K3s on 0.0.0.0 must be CRITICAL:\n{r}\n{}", d.logs());
    assert!(r.stdout.contains("0.0.0.0"), "health must name the address:\n{r}");
    let h = health_json(d, 2);
    let bind = h
        .checks
        .iter()
        .find(|c| c.name == "k3s_bind")
        .expect("a k3s_bind check");
    assert_eq!(bind.level, Level::Critical);
    assert!(bind.reason.contains("0.0.0.0:6443"), "{bind:?}");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = d.audit_tail(50);
        if let Some(e) = events.iter().find(|e| e.event == "BWK-K3S-0003") {
            assert!(e.message.contains("0.0.0.0"), "{e:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no BWK-K3S-0003 audit event for the exposed API: {events:#?}\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn k3s_on_the_vpn_address_is_ok() {
    let (lab, _systemctl, _running, _wg) = k3s_lab("k3s-ok", &[]);
    let d = &lab.daemon;
    let k3s = K3sStandIn::start(&lab.net.vps, &d.root, None);
    assert_eq!(
        k3s.listening,
        [format!("listening {VPN_IP}:6443"), format!("listening {VPN_IP}:10250")],
        "the stand-in reads bind-address from Bulwark's drop-in"
    );

    let r = health_until(d, &[], 0);
    let h = health_json(d, 0);
    let bind = h
        .checks
        .iter()
        .find(|c| c.name == "k3s_bind")
        .expect("a k3s_bind check");
    assert_eq!(bind.level, Level::Ok, "{bind:?}");
    assert_eq!(r.code, Some(0), "every check should be OK:\n{r}\n{}", d.logs());
    assert!(r.stdout.starts_with("overall: OK"), "{r}");
}

#[test]
fn health_exit_codes_ok_warning_critical_unreachable() {
    let (lab, _systemctl, mut running, _wg) = k3s_lab("k3s-codes", &[]);
    let d = &lab.daemon;

    // K3s not running at all: a WARNING that says so.
    let r = health_until(d, &[], 1);
    assert_eq!(r.code, Some(1), "nothing on 6443 is a WARNING:\n{r}\n{}", d.logs());
    assert!(r.stdout.contains("k3s not listening"), "{r}");

    {
        let _k3s = K3sStandIn::start(&lab.net.vps, &d.root, None);
        let r = health_until(d, &[], 0);
        assert_eq!(r.code, Some(0), "{r}");
    }
    {
        let _k3s = K3sStandIn::start(&lab.net.vps, &d.root, Some("0.0.0.0"));
        let r = health_until(d, &[], 2);
        assert_eq!(r.code, Some(2), "{r}");
    }

    running.kill();
    let r = d.ctl(&["health"]);
    assert_eq!(r.code, Some(3), "a stopped daemon is UNKNOWN:\n{r}");
    let r = bulwark_tests::run(std::process::Command::new(bulwark_tests::bin("bulwarkctl")).args([
        "--socket",
        "/nonexistent/bulwarkd.sock",
        "health",
    ]));
    assert_eq!(r.code, Some(3), "a missing socket is UNKNOWN:\n{r}");
}
