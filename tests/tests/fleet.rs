//! Many hosts: the bulwark.host collection's example playbooks
//! (ansible/examples) driving three namespace hosts over SSH, each with its
//! own sshd and bulwarkd, from an ansible-playbook in the root namespace.
//!
//! In order: a check run changes nothing; the first run changes all three;
//! the second changes none; a profile that is bad on host 2 stops the
//! rolling rollout before host 3; a profile that locks the controller out is
//! never confirmed (the reconnect is a new connection, though an SSH master
//! would have survived) and reverts by itself, and the rollout stops there;
//! bulwark_peer adds a peer once and its config completes a WireGuard
//! handshake; bulwark_info's facts become the Prometheus file_sd list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fleet/lab.rs"]
mod lab;

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use bulwark_tests::bulwark_model::api::Status;
use bulwark_tests::{poll, run, Ran};
use lab::{recap, Fleet, Host, WgClient};
use serde_json::{json, Value};

const VPN_SERVER: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
const VPN_PORT: u16 = 7000;

/// The rendered profile a host should get: the template's variables for
/// it, as the inventory gives them.
fn base_vars(h: &Host, web_port: u16) -> serde_json::Map<String, Value> {
    let vars = json!({
        "bulwark_profile_name": format!("fleet-{web_port}"),
        "bulwark_admin_cidrs": [format!("{}/32", h.controller), "198.51.100.0/24"],
        "bulwark_admin_tcp": [22],
        "bulwark_public_tcp": [web_port],
        "bulwark_vpn_tcp": [VPN_PORT, 9469],
        "bulwark_wireguard": {
            "interface": h.wg,
            "address": "10.8.0.1/24",
            "endpoint": "198.51.100.1:51820",
            "backend": "userspace",
        },
        "bulwark_metrics_listen": "10.8.0.1:9469",
        "bulwark_peers": [{"name": "alice", "expires": "30d"}],
    });
    let Value::Object(map) = vars else { unreachable!() };
    map
}

fn changed(r: &Ran) -> Vec<(String, u32)> {
    recap(r).into_iter().map(|(h, c, _, _)| (h, c)).collect()
}

fn failed(r: &Ran) -> Vec<(String, u32)> {
    recap(r).into_iter().map(|(h, _, f, _)| (h, f)).collect()
}

fn names(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(h, n)| ((*h).to_owned(), *n)).collect()
}

fn generations(h: &Host) -> usize {
    h.daemon.generations().len()
}

#[test]
fn a_rolling_rollout_over_ssh_to_three_hosts() {
    let mut fleet = Fleet::new(3);
    fleet.start_daemons();
    for h in &mut fleet.hosts {
        h.vars = base_vars(h, 8080);
    }
    let before: Vec<(String, usize)> = fleet
        .hosts
        .iter()
        .map(|h| (h.daemon.ruleset_present(), generations(h)))
        .collect();

    // Check mode: every host would change, none does, and --diff shows the plan.
    let (r, _) = fleet.playbook("rollout.yml", &["--check", "--diff"]);
    assert!(r.ok(), "check run failed:\n{r}\n{}", fleet.logs());
    assert_eq!(changed(&r), names(&[("host1", 1), ("host2", 1), ("host3", 1)]), "{r}");
    assert!(
        r.stdout.contains("+firewall: chain input: tcp dport 8080 accept"),
        "the diff shows the plan's after side:\n{r}"
    );
    assert!(r.stdout.contains("--- before: generation 1, in force"), "{r}");
    for (h, (rules, gens)) in fleet.hosts.iter().zip(&before) {
        assert_eq!(
            &h.daemon.ruleset_present(),
            rules,
            "{}: check mode changed the ruleset",
            h.name
        );
        assert_eq!(generations(h), *gens, "{}: check mode made a generation", h.name);
    }

    // First run: all three change, each confirmed, with the rendered text in force.
    let (r, change_time) = fleet.playbook("rollout.yml", &[]);
    assert!(r.ok(), "first run failed:\n{r}\n{}", fleet.logs());
    assert_eq!(changed(&r), names(&[("host1", 1), ("host2", 1), ("host3", 1)]), "{r}");
    let mut v1 = Vec::new();
    for h in &fleet.hosts {
        let s: Status = h.daemon.status();
        assert!(s.pending_confirm.is_none(), "{}: left unconfirmed: {s:?}", h.name);
        assert_eq!(s.profile.as_deref(), Some("fleet-8080"));
        let gens = h.daemon.generations();
        let current = gens.iter().find(|g| g.current).unwrap();
        assert_eq!(s.digest.as_deref(), Some(current.digest.as_str()));
        assert!(
            h.daemon.ruleset_present().contains("tcp dport 8080 accept"),
            "{}",
            h.name
        );
        v1.push((s.digest.unwrap(), gens.len()));
    }
    // The template rendered per host: the controllers' networks differ.
    assert_ne!(v1[0].0, v1[1].0);

    // Second run: nothing to change anywhere, no generation made.
    let (r, noop_time) = fleet.playbook("rollout.yml", &[]);
    assert!(r.ok(), "second run failed:\n{r}\n{}", fleet.logs());
    assert_eq!(changed(&r), names(&[("host1", 0), ("host2", 0), ("host3", 0)]), "{r}");
    for (h, (digest, gens)) in fleet.hosts.iter().zip(&v1) {
        assert_eq!(h.daemon.status().digest.as_ref(), Some(digest));
        assert_eq!(generations(h), *gens, "{}: a no-op made a generation", h.name);
    }
    eprintln!(
        "wall time across 3 hosts (serial: 1): change {:.1}s, no-op {:.1}s",
        change_time.as_secs_f64(),
        noop_time.as_secs_f64()
    );

    // A new port everywhere, but host 2's profile is invalid: host 1 changes,
    // host 2 fails, host 3 is never touched.
    for h in &mut fleet.hosts {
        h.vars = base_vars(h, 8443);
    }
    fleet.hosts[1].vars.insert("bulwark_public_tcp".into(), json!([70000]));
    let (r, _) = fleet.playbook("rollout.yml", &[]);
    assert_eq!(r.code, Some(2), "a failed host fails the run:\n{r}");
    assert_eq!(
        changed(&r),
        names(&[("host1", 1), ("host2", 0)]),
        "host 3 must not run:\n{r}"
    );
    assert_eq!(failed(&r), names(&[("host1", 0), ("host2", 1)]), "{r}");
    assert!(
        r.stdout.contains("invalid_profile") && r.stdout.contains("firewall.public_tcp[0]"),
        "{r}"
    );
    assert!(fleet.hosts[0]
        .daemon
        .ruleset_present()
        .contains("tcp dport 8443 accept"));
    for (h, (digest, _)) in fleet.hosts.iter().zip(&v1).skip(1) {
        assert_eq!(h.daemon.status().digest.as_ref(), Some(digest), "{} changed", h.name);
    }
    let v2_host1 = fleet.hosts[0].daemon.status().digest.unwrap();

    // A profile that locks the controller out (forced past bulwarkctl's SSH
    // guard, as an operator who overrides it would): host 1 applies it, the
    // reconnect fails, nothing confirms it, it reverts; hosts 2 and 3 are
    // never touched.
    let rules_host1 = fleet.hosts[0].daemon.ruleset_present();
    for h in &mut fleet.hosts {
        h.vars = base_vars(h, 8443);
        h.vars.insert("bulwark_admin_cidrs".into(), json!(["192.0.2.0/24"]));
        h.vars.insert("bulwark_force".into(), json!(true));
        h.vars.insert("bulwark_confirm_timeout".into(), json!(20));
    }
    // An SSH master opened before the change: it outlives the lock-out.
    let host1 = &fleet.hosts[0];
    let master = fleet.path("cp/probe");
    let ssh = |extra: &[&str]| {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", fleet.path("known_hosts").display()))
        .arg("-o")
        .arg(format!("ControlPath={}", master.display()))
        .arg("-i")
        .arg(fleet.path("id_ed25519"))
        .args(extra)
        .arg(format!("root@{}", host1.addr))
        .arg("true")
        .env_remove("SSH_AUTH_SOCK");
        run(&mut cmd)
    };
    let r = ssh(&["-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-f", "-N"]);
    assert!(r.ok(), "cannot open the probe master:\n{r}");
    let (r, _) = fleet.playbook("rollout.yml", &[]);
    assert_eq!(r.code, Some(2), "the lock-out must fail the run:\n{r}");
    assert_eq!(failed(&r), names(&[("host1", 1)]), "hosts 2 and 3 must not run:\n{r}");
    assert!(r.stdout.contains("could not be confirmed over a new connection"), "{r}");
    let host1 = &fleet.hosts[0];
    assert!(!host1.ssh_port_open(), "a new connection passes the lock-out profile");
    let r = ssh(&["-o", "ControlMaster=no"]);
    assert!(
        r.ok(),
        "the existing master should survive the lock-out (established):\n{r}"
    );
    let s = host1.daemon.status();
    assert!(s.pending_confirm.is_some(), "the lock-out was confirmed: {s:?}");
    for (h, (digest, _)) in fleet.hosts.iter().zip(&v1).skip(1) {
        assert_eq!(h.daemon.status().digest.as_ref(), Some(digest), "{} changed", h.name);
    }
    let reverted = poll(Duration::from_secs(40), Duration::from_millis(500), || {
        let s = host1.daemon.status();
        (s.pending_confirm.is_none() && s.digest.as_deref() == Some(v2_host1.as_str())).then_some(s)
    });
    assert!(reverted.is_some(), "host 1 did not revert:\n{}", host1.daemon.logs());
    assert_eq!(host1.daemon.ruleset_present(), rules_host1);
    assert!(host1.ssh_port_open(), "SSH is back after the revert");
    let _ = run(Command::new("ssh")
        .arg("-O")
        .arg("exit")
        .arg("-o")
        .arg(format!("ControlPath={}", master.display()))
        .arg("x"));

    // Peers: added once on every host, the config kept on the controller
    // (0600, never in the output), and it completes a handshake.
    for h in &mut fleet.hosts {
        h.vars = base_vars(h, 8443);
    }
    // -v prints every result in full: one holding a key must be censored.
    let (r, _) = fleet.playbook("peers.yml", &["-v"]);
    assert!(r.ok(), "peers run failed:\n{r}\n{}", fleet.logs());
    assert_eq!(changed(&r), names(&[("host1", 2), ("host2", 2), ("host3", 2)]), "{r}");
    assert!(
        !r.stdout.contains("PrivateKey") && !r.stdout.contains("PresharedKey"),
        "a key reached the output:\n{r}"
    );
    assert!(
        r.stdout.contains("changed: [host1] => (item=(censored due to no_log))"),
        "{r}"
    );
    let (again, _) = fleet.playbook("peers.yml", &[]);
    assert!(again.ok(), "{again}");
    assert_eq!(
        changed(&again),
        names(&[("host1", 0), ("host2", 0), ("host3", 0)]),
        "{again}"
    );
    let file = fleet.path("peers/host2-alice.conf");
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let config = fs::read_to_string(&file).unwrap();
    assert!(
        config.contains("PrivateKey") && config.contains("Endpoint = 198.51.100.1:51820"),
        "{config}"
    );
    let host2 = &fleet.hosts[1];
    let peers: Vec<Value> = host2.daemon.ctl_json(&["peers"]);
    assert_eq!(peers.len(), 1, "{peers:?}");
    let _listener = host2.net.listen(&host2.net.vps, &[VPN_PORT]);
    let client = WgClient::up(&host2.net.admin, &config);
    let through = poll(Duration::from_secs(20), Duration::from_millis(250), || {
        client.connects(VPN_SERVER, VPN_PORT).then_some(())
    });
    assert!(
        through.is_some(),
        "no connection through the tunnel:\n{}",
        host2.daemon.logs()
    );
    assert!(client.latest_handshake() > 0, "no WireGuard handshake");

    // Facts, and the fleet's Prometheus targets from them.
    let (r, _) = fleet.playbook("facts.yml", &[]);
    assert!(r.ok(), "facts run failed:\n{r}\n{}", fleet.logs());
    let sd_text = fs::read_to_string(fleet.path("file_sd.json")).unwrap();
    if std::env::var_os("BULWARK_FLEET_SHOW").is_some() {
        eprintln!("file_sd.json:\n{sd_text}");
    }
    let sd: Value = serde_json::from_str(&sd_text).unwrap();
    let targets: Vec<(&str, &str, &str)> = sd
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let label = |k: &str| t["labels"][k].as_str().unwrap();
            (
                label("instance"),
                label("bulwark_profile"),
                t["targets"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("host1", "fleet-8443", "10.8.0.1:9469"),
            ("host2", "fleet-8080", "10.8.0.1:9469"),
            ("host3", "fleet-8080", "10.8.0.1:9469"),
        ],
        "{sd}"
    );
}
