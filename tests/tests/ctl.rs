//! bulwarkctl as scripts and fleet tools drive it: the SSH guard, one exit
//! code and one JSON `kind` per failure class, profiles on stdin named by
//! `--source`, the profile's digest, the boot-profile flag, `confirm
//! --generation` and `apply --wait`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../k3s-standin/lab.rs"]
mod lab;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use bulwark_tests::bulwark_model::api::{ApplyResponse, Level, Status};
use bulwark_tests::{bin, run, run_with_stdin, Daemon, Lab, Ran, READ_GID};
use lab::{fake_systemd_with_k3s, health_until, profile, wg_name, Bulwarkd, K3sStandIn, SystemctlStandIn};
use serde_json::Value;

/// The operator's session: from the admin namespace's address to port 22.
const SSH: (&str, &str) = ("SSH_CONNECTION", "198.51.100.2 50022 198.51.100.1 22");

/// Keeps SSH open for the operator's network.
const KEEPS_SSH: &str = include_str!("../fixtures/a.toml");
const OTHER: &str = include_str!("../fixtures/b.toml");

/// Opens SSH only to a network the operator is not in.
const CUTS_SSH: &str = "[profile]
name = \"cuts-ssh\"

[firewall]
admin_cidrs = [\"192.0.2.0/24\"]
admin_tcp = [22]
";

const INVALID: &str = "[profile]\nname = \"bad\"\n[firewall]\nadmin_tcp = [70000]\n";

/// A uid in the read group only.
const READER: u32 = 61010;

/// stdout as the JSON error body every failure prints with `--json`; checks
/// its shape and returns its `kind`.
fn kind(r: &Ran) -> String {
    let body: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{r}"));
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "no error message:\n{r}"
    );
    assert!(body["profile_errors"].is_array(), "no profile_errors:\n{r}");
    body["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("no kind:\n{r}"))
        .to_owned()
}

fn sha256(text: &str) -> String {
    let r = run_with_stdin(&mut Command::new("sha256sum"), text.as_bytes());
    r.stdout.split_whitespace().next().unwrap().to_owned()
}

fn stdin_ctl(d: &Daemon, args: &[&str], input: &str) -> Ran {
    run_with_stdin(
        Command::new(bin("bulwarkctl"))
            .env_remove("SSH_CONNECTION")
            .env_remove("BULWARK_SOCKET")
            .arg("--socket")
            .arg(d.socket())
            .args(args),
        input.as_bytes(),
    )
}

#[test]
fn apply_refuses_to_cut_the_ssh_session_without_force() {
    let mut lab = Lab::new("ssh-guard");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let keeps = d.write_profile("keeps", KEEPS_SSH);
    let cuts = d.write_profile("cuts", CUTS_SSH);

    let r = d.ctl_env(&[SSH], &["apply", keeps.to_str().unwrap()]);
    assert!(r.ok(), "a profile that keeps the session open applies:\n{r}");
    let before = d.ruleset_present();
    let gens = d.generations().len();

    let r = d.ctl_env(&[SSH], &["apply", cuts.to_str().unwrap()]);
    assert_eq!(
        r.code,
        Some(8),
        "a profile that drops the SSH session needs --force:\n{r}"
    );
    assert!(
        r.stderr.contains("--force"),
        "the refusal should say how to override it:\n{r}"
    );
    let r = d.ctl_env(&[SSH], &["--json", "apply", cuts.to_str().unwrap()]);
    assert_eq!((r.code, kind(&r).as_str()), (Some(8), "ssh_lockout"), "{r}");
    assert_eq!(
        d.ruleset().as_deref(),
        Some(before.as_str()),
        "the refused apply changed the ruleset"
    );
    assert_eq!(d.generations().len(), gens, "the refused apply recorded a generation");

    let r = d.ctl_env(&[SSH], &["apply", "--force", cuts.to_str().unwrap()]);
    assert!(r.ok(), "--force overrides the guard:\n{r}");
    assert_ne!(
        d.ruleset().as_deref(),
        Some(before.as_str()),
        "the forced apply changed nothing"
    );
}

#[test]
fn every_failure_prints_its_kind_as_json_and_exits_with_its_class() {
    let mut lab = Lab::new("ctl-kinds");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let good = d.write_profile("good", KEEPS_SSH);
    let bad = d.write_profile("bad", INVALID);
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    d.ctl_ok(&["apply", good]);
    let gens = d.generations().len();

    let missing = d.root.join("no-such.toml");
    let cases: Vec<(Ran, i32, &str)> = vec![
        (d.ctl(&["--json", "validate", bad]), 4, "invalid_profile"),
        (d.ctl(&["--json", "apply", bad]), 4, "invalid_profile"),
        (d.ctl(&["--json", "apply", missing.to_str().unwrap()]), 4, "bad_input"),
        (
            d.ctl_as(READER, READER, &[READ_GID], &["--json", "apply", good]),
            5,
            "forbidden",
        ),
        (d.ctl(&["--json", "confirm"]), 6, "conflict"),
        (d.ctl(&["--json", "rollback", "999999"]), 7, "not_found"),
        (d.ctl(&["--json", "remove-peer", "nobody", "--yes"]), 6, "conflict"),
        (
            d.ctl_env(
                &[SSH],
                &["--json", "apply", d.write_profile("cuts", CUTS_SSH).to_str().unwrap()],
            ),
            8,
            "ssh_lockout",
        ),
        (d.ctl(&["--json", "frobnicate"]), 2, "usage"),
        (d.ctl(&["--json", "apply", good, "--confirm", "0"]), 2, "usage"),
    ];
    for (r, code, want) in &cases {
        assert_eq!(r.code, Some(*code), "{r}");
        assert_eq!(kind(r), *want, "{r}");
    }
    // The daemon's own answer, as sent: the profile errors name the field.
    let r = &cases[1].0;
    let body: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(body["profile_errors"][0]["path"], "firewall.admin_tcp[0]", "{r}");
    assert_eq!(d.generations().len(), gens, "a refusal recorded a generation");

    // Without a daemon: unreachable, for every command, health included
    // (which keeps its plug-in code 3 for every failure).
    let gone = ["--socket", "/nonexistent/bulwarkd.sock", "--json"];
    for args in [
        &["status"][..],
        &["apply", good],
        &["health"],
        &["confirm", "--generation", "1"],
    ] {
        let r = run(Command::new(bin("bulwarkctl")).args(gone).args(args));
        assert_eq!((r.code, kind(&r).as_str()), (Some(3), "unreachable"), "{r}");
    }
    // An invalid profile reads the same when bulwarkd refuses it, when
    // bulwarkctl finds bulwarkd down and checks it alone, and in `validate`.
    let refused = d.ctl(&["apply", bad]);
    let alone = run(Command::new(bin("bulwarkctl")).args(&gone[..2]).args(["apply", bad]));
    let validated = d.ctl(&["validate", bad]);
    assert_eq!((refused.code, alone.code, validated.code), (Some(4), Some(4), Some(4)));
    assert_eq!(refused.stderr, alone.stderr, "{refused}\n{alone}");
    assert!(
        refused.stderr.starts_with(&validated.stderr) && validated.stderr.contains("firewall.admin_tcp[0]"),
        "{refused}\n{validated}"
    );
    // Without --json stdout stays empty: the message is on stderr.
    let r = d.ctl(&["rollback", "999999"]);
    assert_eq!(r.code, Some(7), "{r}");
    assert!(r.stdout.is_empty() && r.stderr.contains("999999"), "{r}");
    // The table in --help lists every class.
    let help = d.ctl_ok(&["--help"]).stdout;
    for row in ["  4  invalid input", "  8  refused", " 10  apply --wait"] {
        assert!(help.contains(row), "--help lacks {row:?}:\n{help}");
    }
}

#[test]
fn a_profile_from_stdin_is_named_by_source_and_answered_with_its_digest() {
    let mut lab = Lab::new("ctl-stdin");
    lab.daemon.start(Some(KEEPS_SSH));
    let d = &lab.daemon;
    let status = d.status();
    let boot = status.boot_profile.clone().expect("the boot profile is listed");
    assert!(!boot.differs, "the boot profile is in force: {boot:?}");
    assert_eq!(boot.digest, sha256(KEEPS_SSH));
    assert_eq!(status.digest.as_deref(), Some(sha256(KEEPS_SSH).as_str()));

    // Errors name the operator's file, not "stdin" or a temporary path.
    let r = stdin_ctl(d, &["validate", "-", "--source", "web.toml"], INVALID);
    assert_eq!(r.code, Some(4), "{r}");
    assert!(r.stderr.contains("web.toml: firewall.admin_tcp[0]"), "{r}");
    let r = stdin_ctl(d, &["--json", "apply", "-", "--source", "web.toml"], INVALID);
    assert_eq!(r.code, Some(4), "{r}");
    let body: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(body["profile_errors"][0]["file"], "web.toml", "{r}");
    let r = stdin_ctl(d, &["validate", "-"], INVALID);
    assert!(r.stderr.contains("stdin: firewall.admin_tcp[0]"), "{r}");
    let r = stdin_ctl(d, &["validate", "-", "--source", "web.toml"], OTHER);
    assert_eq!(r.code, Some(0), "{r}");

    // A dry run from stdin plans; an apply from stdin makes the generation.
    let r = stdin_ctl(d, &["--json", "apply", "-", "--source", "web.toml", "--dry-run"], OTHER);
    let dry: ApplyResponse = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r}"));
    assert!(dry.dry_run && !dry.plan.is_empty(), "{dry:?}");
    let r = stdin_ctl(d, &["--json", "apply", "-", "--source", "web.toml"], OTHER);
    let applied: ApplyResponse = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{r}"));
    assert!(applied.changed, "{r}");
    let digest = sha256(OTHER);
    assert_eq!(applied.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(dry.digest, applied.digest, "a dry run names the same content");
    let status = d.status();
    assert_eq!(status.digest.as_deref(), Some(digest.as_str()));
    let gens = d.generations();
    let current = gens.iter().find(|g| g.current).unwrap();
    assert_eq!(
        (current.number, current.digest.as_str()),
        (applied.generation.unwrap(), digest.as_str())
    );
    // Plan values are structured: the changed ports are `after` values.
    assert!(
        applied
            .plan
            .changes
            .iter()
            .any(|c| c.module == "firewall" && c.after.as_ref().is_some_and(|v| v.to_string().contains("8081"))),
        "{:#?}",
        applied.plan
    );

    // The boot profile on disk is now not what is in force.
    let boot = status.boot_profile.unwrap();
    assert!(boot.differs, "{boot:?}");
    assert!(
        boot.reason.contains("gen-a") && boot.reason.contains("gen-b"),
        "{boot:?}"
    );
}

#[test]
fn confirm_with_a_generation_refuses_anyone_elses_pending_change() {
    let mut lab = Lab::new("ctl-confirm");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let a = d.write_profile("a", KEEPS_SSH);
    let resp = d.apply(&a, &["--confirm", "120"]);
    let pending = resp.generation.unwrap();
    assert!(resp.confirm_deadline.is_some(), "{resp:?}");

    let other = (pending + 1).to_string();
    let r = d.ctl(&["--json", "confirm", "--generation", &other]);
    assert_eq!((r.code, kind(&r).as_str()), (Some(6), "conflict"), "{r}");
    assert!(
        r.stderr.contains(&format!("generation {pending} awaits confirmation")),
        "{r}"
    );
    let status: Status = d.status();
    assert_eq!(
        status.pending_confirm.as_ref().map(|p| p.generation),
        Some(pending),
        "a refused confirm must leave the window open"
    );

    let ok: ApplyResponse = d.ctl_json(&["confirm", "--generation", &pending.to_string()]);
    assert_eq!(ok.generation, Some(pending));
    assert_eq!(ok.digest.as_deref(), Some(sha256(KEEPS_SSH).as_str()));
    assert!(d.status().pending_confirm.is_none());
    // Confirming again: nothing is pending.
    let r = d.ctl(&["--json", "confirm", "--generation", &pending.to_string()]);
    assert_eq!((r.code, kind(&r).as_str()), (Some(6), "conflict"), "{r}");
}

/// The UAPI socket a killed wireguard-go leaves in the directory every
/// namespace shares.
struct UapiSocket(String);

impl Drop for UapiSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.0));
    }
}

/// `apply --wait` returns once health is not CRITICAL: K3s (the stand-in)
/// first listens on every address, which is CRITICAL; once it moves to the
/// VPN address the wait ends. A host that stays CRITICAL exits 10 with the
/// apply's answer inside the error body.
#[test]
fn apply_wait_returns_when_health_is_no_longer_critical_and_exits_10_when_it_stays() {
    let wg = wg_name();
    // Dropped last, after the daemon and its wireguard-go are gone.
    let _socket = UapiSocket(wg.clone());
    let lab = Lab::new("ctl-wait");
    let d = &lab.daemon;
    fake_systemd_with_k3s(&d.root);
    let systemctl = SystemctlStandIn::new(&d.root);
    let _running = Bulwarkd::start(d, &lab.net.vps, &profile(&wg, &[], None), &systemctl.path);
    let exposed = K3sStandIn::start(&lab.net.vps, &d.root, Some("0.0.0.0"));
    let r = health_until(d, &[], 2);
    assert_eq!(r.code, Some(2), "{r}");

    let first = d.write_profile("first", profile(&wg, &["a.example"], None));
    let r = d.ctl(&["--json", "apply", first.to_str().unwrap(), "--wait=2"]);
    assert_eq!((r.code, kind(&r).as_str()), (Some(10), "wait_timeout"), "{r}");
    let body: Value = serde_json::from_str(&r.stdout).unwrap();
    let generation = body["apply"]["generation"].as_u64().expect("the apply's answer");
    assert_eq!(body["apply"]["changed"], true, "{r}");
    assert_eq!(body["health"]["level"], "CRITICAL", "{r}");
    assert!(body["error"].as_str().unwrap().contains("k3s_bind"), "{r}");
    assert_eq!(d.status().generation, Some(generation), "the apply itself is in force");

    // K3s moves to the VPN address 1.5 s into the wait.
    let (root, vps) = (d.root.clone(), lab.net.vps.clone());
    let mover = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1500));
        drop(exposed);
        K3sStandIn::start(&vps, &root, None)
    });
    let second = d.write_profile("second", profile(&wg, &["b.example"], None));
    let t0 = Instant::now();
    let r = d.ctl(&["--json", "apply", second.to_str().unwrap(), "--wait=30"]);
    let waited = t0.elapsed();
    let _k3s = mover.join().unwrap();
    assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
    let body: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(body["changed"], true, "{r}");
    assert_ne!(body["health"]["level"], "CRITICAL", "{r}");
    assert!(
        waited >= Duration::from_millis(1500),
        "returned before K3s moved: {waited:?}"
    );
    let h: bulwark_tests::bulwark_model::api::Health = d.ctl_json(&["health"]);
    assert_ne!(h.level, Level::Critical);

    // The human form says what it waited for.
    let r = d.ctl(&["apply", second.to_str().unwrap(), "--wait"]);
    assert!(
        r.ok() && r.stdout.contains("health ") && r.stdout.contains(" after "),
        "{r}"
    );
}
