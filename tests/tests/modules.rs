//! The module contract from the outside: rollback and revert plan and
//! restore every module (K3s included), K3s drop-ins are drift-checked, a dry
//! run asks every module, status has an entry per module, and old
//! generations are pruned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../k3s-standin/lab.rs"]
mod lab;

use std::fs;
use std::time::Duration;

use bulwark_tests::bulwark_model::api::{ApplyResponse, Status};
use bulwark_tests::{poll, Daemon, Lab};
use lab::{fake_systemd_with_k3s, profile, wg_name, SystemctlStandIn};

const CONFIG_DROPIN: &str = "etc/rancher/k3s/config.yaml.d/50-bulwark.yaml";

/// A systemd-looking root with K3s, bulwarkd started with the systemctl
/// stand-in and the K3s profile (tls-san `first.example`) as generation 1.
fn k3s_lab(tag: &str, drift: &str) -> (Lab, SystemctlStandIn, String) {
    let mut lab = Lab::new(tag);
    fake_systemd_with_k3s(&lab.daemon.root);
    let systemctl = SystemctlStandIn::new(&lab.daemon.root);
    let wg = wg_name();
    lab.daemon.arg("--systemctl").arg(&systemctl.path);
    lab.daemon
        .start(Some(&with_drift(&profile(&wg, &["first.example"], None), drift)));
    (lab, systemctl, wg)
}

fn with_drift(profile: &str, drift: &str) -> String {
    profile.replacen("drift_interval", &format!("drift = \"{drift}\"\ndrift_interval"), 1)
}

fn dropin(d: &Daemon) -> String {
    fs::read_to_string(d.root.join(CONFIG_DROPIN)).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()))
}

fn k3s_changes(resp: &ApplyResponse) -> Vec<String> {
    resp.plan
        .changes
        .iter()
        .filter(|c| c.module == "k3s")
        .map(|c| c.what.clone())
        .collect()
}

#[test]
fn a_rollback_of_a_k3s_only_change_plans_k3s_and_restores_the_drop_ins() {
    let (lab, _systemctl, wg) = k3s_lab("mod-rollback", "repair");
    let d = &lab.daemon;
    let first = dropin(d);
    let second = d.write_profile("second", profile(&wg, &["second.example"], None));
    d.apply(&second, &[]);
    assert!(dropin(d).contains("second.example"));

    let resp: ApplyResponse = d.ctl_json(&["rollback"]);
    assert!(resp.changed);
    let k3s = k3s_changes(&resp);
    assert!(
        k3s.iter().any(|w| w.contains("first.example")),
        "the rollback's plan shows no K3s change: {:#?}",
        resp.plan
    );
    assert_eq!(dropin(d), first, "the rollback did not restore the drop-in");

    // A revert (unconfirmed apply) goes the same way.
    d.apply(&second, &["--confirm", "2"]);
    assert!(dropin(d).contains("second.example"));
    let back = poll(Duration::from_secs(8), Duration::from_millis(200), || {
        (dropin(d) == first).then_some(())
    });
    assert!(back.is_some(), "the revert did not restore the drop-in:\n{}", d.logs());
}

#[test]
fn an_edited_k3s_drop_in_is_rewritten_under_repair_with_an_audit_event() {
    let (lab, _systemctl, _wg) = k3s_lab("mod-k3s-repair", "repair");
    let d = &lab.daemon;
    let good = dropin(d);
    fs::write(d.root.join(CONFIG_DROPIN), "bind-address: \"0.0.0.0\"\n").unwrap();
    let repaired = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        (dropin(d) == good).then_some(())
    });
    assert!(
        repaired.is_some(),
        "the edited drop-in was not rewritten:\n{}",
        d.logs()
    );
    fs::remove_file(d.root.join(CONFIG_DROPIN)).unwrap();
    let recreated = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        fs::read_to_string(d.root.join(CONFIG_DROPIN))
            .ok()
            .filter(|t| *t == good)
    });
    assert!(
        recreated.is_some(),
        "the deleted drop-in was not recreated:\n{}",
        d.logs()
    );
    let events: Vec<String> = d
        .audit_tail(50)
        .into_iter()
        .map(|e| format!("{} {}", e.event, e.message))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("BWK-K3S-0004") && e.contains("was edited")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("BWK-K3S-0004") && e.contains("was deleted")),
        "{events:#?}"
    );
}

#[test]
fn an_edited_k3s_drop_in_is_reported_as_a_warning_under_report() {
    let (lab, _systemctl, _wg) = k3s_lab("mod-k3s-report", "report");
    let d = &lab.daemon;
    fs::write(d.root.join(CONFIG_DROPIN), "bind-address: \"0.0.0.0\"\n").unwrap();
    // (Without a K3s listening, health is already WARNING: wait for the drift itself.)
    let r = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        let r = d.ctl(&["--json", "health"]);
        r.stdout.contains("50-bulwark.yaml was edited").then_some(r)
    })
    .unwrap_or_else(|| panic!("health never named the edited drop-in:\n{}", d.logs()));
    assert_eq!(r.code, Some(1), "health is not WARNING:\n{r}");
    assert_eq!(
        dropin(d),
        "bind-address: \"0.0.0.0\"\n",
        "report mode repaired the drop-in"
    );
    let events: Vec<String> = d.audit_tail(50).into_iter().map(|e| e.event).collect();
    assert!(events.iter().any(|e| e == "BWK-K3S-0005"), "{events:#?}");
}

#[test]
fn a_dry_run_that_a_module_would_refuse_fails_and_changes_nothing() {
    let mut lab = Lab::new("mod-dryrun");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let before = d.ruleset_present();
    // No WireGuard kernel module here: the kernel backend cannot start.
    let text = format!(
        "[profile]\nname = \"kernel-only\"\n[firewall]\npublic_tcp = [22, 443]\n\
         [wireguard]\ninterface = \"{}\"\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"\nbackend = \"kernel\"\n",
        wg_name()
    );
    let r = d.ctl(&["apply", "--dry-run", d.write_profile("kernel", text).to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("kernel"), "{r}");
    assert_eq!(d.ruleset().as_deref(), Some(before.as_str()));
    assert_eq!(d.generations().len(), 1);
}

#[test]
fn status_has_one_entry_per_module_in_converge_order() {
    let (lab, _systemctl, _wg) = k3s_lab("mod-status", "repair");
    let d = &lab.daemon;
    let status: Status = d.ctl_json(&["status"]);
    let names: Vec<&str> = status.modules.iter().map(|m| m.module.as_str()).collect();
    assert_eq!(names, ["firewall", "wireguard", "k3s", "ima", "vault"], "{status:#?}");
    // The profile has neither [ima] nor [vault]: both are listed, unmanaged.
    assert!(
        status
            .modules
            .iter()
            .all(|m| m.managed == !matches!(m.module.as_str(), "ima" | "vault")),
        "{status:#?}"
    );
    assert_eq!(status.digest.as_deref().map(str::len), Some(64), "{status:#?}");
    let human = d.ctl_ok(&["status"]).stdout;
    for name in names {
        assert!(human.contains(&format!("  {name} ")), "{human}");
    }
}

#[test]
fn only_the_newest_generations_are_kept() {
    let mut lab = Lab::new("mod-retention");
    lab.daemon.start(None);
    let d = &lab.daemon;
    for n in 0..12 {
        let text = format!(
            "[profile]\nname = \"p{n}\"\nkeep_generations = 2\n[firewall]\npublic_tcp = [{}]\n",
            1000 + n
        );
        d.apply(&d.write_profile("p", text), &[]);
    }
    let gens = d.generations();
    let numbers: Vec<u64> = gens.iter().map(|g| g.number).collect();
    assert_eq!(numbers, [12, 13], "{gens:#?}");
    assert!(gens.last().unwrap().current);
    let dirs = fs::read_dir(d.state_dir().join("generations")).unwrap().count();
    assert_eq!(dirs, 2);
}
