//! The converge engine: confirm windows that revert (even across a kill -9),
//! generations and rollback, drift repair and report, and a daemon killed at
//! random moments during applies that always comes back consistent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bulwark_model::api::{GenerationInfo, Level};
use bulwark_tests::{bin, poll, Daemon, Lab, Rng};

const A: &str = include_str!("../fixtures/a.toml");
const B: &str = include_str!("../fixtures/b.toml");
const DRIFT_REPAIR: &str = include_str!("../fixtures/drift-repair.toml");
const DRIFT_REPORT: &str = include_str!("../fixtures/drift-report.toml");

/// Applies A, the "previous" state of the confirm tests. Returns A's ruleset
/// and B's profile file.
fn with_a_applied(d: &Daemon) -> (String, std::path::PathBuf) {
    d.apply(&d.write_profile("a", A), &[]);
    (d.ruleset_present(), d.write_profile("b", B))
}

fn current(gens: &[GenerationInfo]) -> &GenerationInfo {
    let cur: Vec<_> = gens.iter().filter(|g| g.current).collect();
    assert_eq!(cur.len(), 1, "exactly one generation must be current: {gens:#?}");
    cur[0]
}

fn assert_strictly_increasing(gens: &[GenerationInfo]) {
    assert!(!gens.is_empty(), "no generations listed");
    for w in gens.windows(2) {
        assert!(
            w[0].number < w[1].number,
            "generation numbers not strictly increasing: {gens:#?}"
        );
    }
}

#[test]
fn unconfirmed_apply_reverts_to_the_previous_ruleset_within_five_seconds() {
    let mut lab = Lab::new("confirm-revert");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let (rules_a, b) = with_a_applied(d);

    let t0 = Instant::now();
    let resp = d.apply(&b, &["--confirm", "3"]);
    assert!(
        resp.confirm_deadline.is_some(),
        "an apply with --confirm reports its deadline: {resp:?}"
    );
    let rules_b = d.ruleset_present();
    assert_ne!(rules_b, rules_a, "B is not in force after its apply");
    assert!(
        d.status().pending_confirm.is_some(),
        "status shows no pending confirmation"
    );

    let left = Duration::from_secs(5).saturating_sub(t0.elapsed());
    if let Err(last) = d.wait_ruleset(Some(&rules_a), left) {
        panic!(
            "previous ruleset not back 5 s after an unconfirmed --confirm 3; live:\n{last:?}\n{}",
            d.logs()
        );
    }
    assert_eq!(
        current(&d.generations()).profile,
        "gen-a",
        "current generation after the revert"
    );
}

#[test]
fn unconfirmed_apply_reverts_even_when_the_daemon_is_killed_in_the_window() {
    let mut lab = Lab::new("confirm-kill");
    lab.daemon.start(None);
    let (rules_a, b) = with_a_applied(&lab.daemon);

    let t0 = Instant::now();
    lab.daemon.apply(&b, &["--confirm", "3"]);
    assert_ne!(
        lab.daemon.ruleset_present(),
        rules_a,
        "B is not in force after its apply"
    );
    thread::sleep(Duration::from_millis(300));
    lab.daemon.kill9();
    lab.daemon.restart();
    let d = &lab.daemon;

    // The window is 3 s; allow 5 s as without the kill, plus slack for the restart.
    let left = Duration::from_secs(7).saturating_sub(t0.elapsed());
    if let Err(last) = d.wait_ruleset(Some(&rules_a), left) {
        panic!(
            "previous ruleset not back 7 s after --confirm 3 with a kill -9 in the window; live:\n{last:?}\n{}",
            d.logs()
        );
    }
    assert_eq!(
        current(&d.generations()).profile,
        "gen-a",
        "current generation after the revert"
    );
    let pending = poll(Duration::from_secs(2), Duration::from_millis(100), || {
        d.status().pending_confirm.is_none().then_some(())
    });
    assert!(
        pending.is_some(),
        "a confirmation is still pending after the revert: {:?}",
        d.status()
    );
}

#[test]
fn unconfirmed_apply_reverts_at_start_when_the_window_closed_while_the_daemon_was_down() {
    let mut lab = Lab::new("confirm-down");
    lab.daemon.start(None);
    let (rules_a, b) = with_a_applied(&lab.daemon);

    lab.daemon.apply(&b, &["--confirm", "2"]);
    lab.daemon.kill9();
    // The window closes while nobody is there to revert.
    thread::sleep(Duration::from_secs(3));
    lab.daemon.restart();
    let d = &lab.daemon;
    if let Err(last) = d.wait_ruleset(Some(&rules_a), Duration::from_secs(2)) {
        panic!(
            "expired confirm window not reverted within 2 s of the restart; live:\n{last:?}\n{}",
            d.logs()
        );
    }
    assert_eq!(
        current(&d.generations()).profile,
        "gen-a",
        "current generation after the revert"
    );
}

#[test]
fn a_settings_only_change_is_planned_and_becomes_a_generation() {
    let mut lab = Lab::new("settings");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let first = d.apply(&d.write_profile("a", A), &[]).generation;
    let rules = d.ruleset_present();
    let changed = A.replace("[profile]\n", "[profile]\ndrift = \"report\"\n");
    let r = d.apply(&d.write_profile("a-report", changed), &[]);
    assert!(r.changed, "a drift-mode change was planned as no change: {r:?}");
    assert!(
        r.plan.changes.iter().any(|c| c.module == "profile"
            && c.what == "profile.drift"
            && c.before == Some("repair".into())
            && c.after == Some("report".into())),
        "{:?}",
        r.plan
    );
    assert_ne!(r.generation, first, "no new generation for the settings change");
    assert_eq!(d.ruleset_present(), rules, "the ruleset must not change");
}

#[test]
fn confirmed_apply_stays_in_force() {
    let mut lab = Lab::new("confirm-ok");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let (rules_a, b) = with_a_applied(d);

    d.apply(&b, &["--confirm", "3"]);
    let rules_b = d.ruleset_present();
    assert_ne!(rules_b, rules_a);
    d.ctl_ok(&["confirm"]);
    assert!(
        d.status().pending_confirm.is_none(),
        "still pending after confirm: {:?}",
        d.status()
    );

    // Watch past the window's end: B must never be replaced.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            d.ruleset().as_deref(),
            Some(rules_b.as_str()),
            "confirmed ruleset replaced after {:?}",
            t0.elapsed()
        );
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(current(&d.generations()).profile, "gen-b");
    // Nothing left to confirm.
    let r = d.ctl(&["confirm"]);
    assert_eq!(r.code, Some(6), "a second confirm has nothing to confirm (409):\n{r}");
}

#[test]
fn rollback_restores_a_generations_ruleset_and_generations_lists_them() {
    let mut lab = Lab::new("rollback");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let boot = d.ruleset_present();
    let ga = d
        .apply(&d.write_profile("a", A), &[])
        .generation
        .expect("apply A made a generation");
    let rules_a = d.ruleset_present();
    let gb = d
        .apply(&d.write_profile("b", B), &[])
        .generation
        .expect("apply B made a generation");
    let rules_b = d.ruleset_present();
    assert!(ga < gb, "generation numbers grow: A={ga} B={gb}");

    let gens = d.generations();
    assert_strictly_increasing(&gens);
    assert_eq!(current(&gens).number, gb);
    let by_number: BTreeMap<u64, &GenerationInfo> = gens.iter().map(|g| (g.number, g)).collect();
    assert_eq!(by_number[&ga].profile, "gen-a");
    assert_eq!(by_number[&gb].profile, "gen-b");
    assert_eq!(by_number[&gb].reason, "apply");
    let first = gens[0].number;

    // Without a number: the generation before the current one.
    d.ctl_ok(&["rollback"]);
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules_a.as_str()),
        "`rollback` did not restore A"
    );
    assert_eq!(current(&d.generations()).profile, "gen-a");

    d.ctl_ok(&["rollback", &gb.to_string()]);
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules_b.as_str()),
        "`rollback {gb}` did not restore B"
    );

    if first < ga {
        // The boot generation (embedded default) is a generation too.
        d.ctl_ok(&["rollback", &first.to_string()]);
        assert_eq!(
            d.ruleset().as_deref(),
            Some(boot.as_str()),
            "`rollback {first}` did not restore the boot ruleset"
        );
        d.ctl_ok(&["rollback", &gb.to_string()]);
    }

    // An unknown generation is refused and changes nothing.
    let r = d.ctl(&["rollback", "999999"]);
    assert_eq!(r.code, Some(7), "rollback to a generation that does not exist:\n{r}");
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules_b.as_str()),
        "a refused rollback changed the ruleset"
    );

    let gens = d.generations();
    assert_strictly_increasing(&gens);
    assert_eq!(current(&gens).profile, "gen-b");
}

#[test]
fn deleted_table_is_restored_under_drift_repair_with_an_audit_event() {
    let mut lab = Lab::new("drift-repair");
    lab.daemon.start(None);
    let d = &lab.daemon;
    d.apply(&d.write_profile("drift-repair", DRIFT_REPAIR), &[]);
    let ours = d.ruleset_present();

    let r = d.nft(&["delete", "table", "inet", "bulwark"]);
    assert!(r.ok(), "{r}");
    match d.wait_ruleset(Some(&ours), Duration::from_secs(10)) {
        Ok(took) => eprintln!("deleted table repaired after {took:?}"),
        Err(last) => panic!(
            "deleted table not restored within 10 s (drift_interval 1s); live:\n{last:?}\n{}",
            d.logs()
        ),
    }

    // A changed table (rules flushed, table still there) is drift as well.
    // The repair follows the flush's nf_tables event within milliseconds, so
    // it is counted rather than caught in between.
    let repairs = d.status().firewall.drift_repairs;
    let r = d.nft(&["flush", "table", "inet", "bulwark"]);
    assert!(r.ok(), "{r}");
    if let Err(last) = d.wait_ruleset(Some(&ours), Duration::from_secs(10)) {
        panic!("flushed table not restored within 10 s; live:\n{last:?}\n{}", d.logs());
    }
    let counted = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        (d.status().firewall.drift_repairs > repairs).then_some(())
    });
    assert!(
        counted.is_some(),
        "the flushed table was not repaired as drift\n{}",
        d.logs()
    );

    let events = d.audit_tail(50);
    assert!(
        events
            .iter()
            .any(|e| e.event.to_uppercase().contains("DRIFT") || e.message.to_lowercase().contains("drift")),
        "no drift event in the audit log: {events:#?}"
    );
    assert!(
        d.status().firewall.drift_repairs >= 1,
        "status counts no drift repair: {:?}",
        d.status()
    );
}

#[test]
fn deleted_table_stays_gone_and_degrades_health_under_drift_report() {
    let mut lab = Lab::new("drift-report");
    lab.daemon.start(None);
    let d = &lab.daemon;
    d.apply(&d.write_profile("drift-report", DRIFT_REPORT), &[]);
    assert_eq!(
        d.ctl(&["health"]).code,
        Some(0),
        "health before the drift:\n{}",
        d.ctl(&["health"])
    );

    let r = d.nft(&["delete", "table", "inet", "bulwark"]);
    assert!(r.ok(), "{r}");
    let degraded = poll(Duration::from_secs(10), Duration::from_millis(250), || {
        let r = d.ctl(&["health"]);
        matches!(r.code, Some(1) | Some(2)).then_some(r)
    });
    let Some(r) = degraded else {
        panic!(
            "health not WARNING or CRITICAL 10 s after the table was deleted:\n{}\n{}",
            d.ctl(&["health"]),
            d.logs()
        );
    };
    eprintln!("health after drift:\n{r}");
    let health: bulwark_model::api::Health = serde_json::from_str(&d.ctl(&["--json", "health"]).stdout).unwrap();
    assert!(matches!(health.level, Level::Warning | Level::Critical), "{health:?}");
    assert!(
        !d.status().firewall.present,
        "status says the table is present: {:?}",
        d.status()
    );

    // Several drift intervals later it is still gone: report never repairs.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(d.ruleset(), None, "drift = \"report\" restored the table");
}

/// A `bulwarkctl apply` in the background, to be interrupted by a kill -9.
fn spawn_apply(d: &Daemon, file: &Path) -> std::process::Child {
    Command::new(bin("bulwarkctl"))
        .env_remove("SSH_CONNECTION")
        .arg("--socket")
        .arg(d.socket())
        .arg("apply")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn kill9_during_applies_always_restarts_into_the_last_good_generation() {
    let mut lab = Lab::new("kill9");
    lab.daemon.start(None);
    let mut rng = Rng::from_env();

    // Rulesets of known-good applies, to compare with after each restart.
    let files = [lab.daemon.write_profile("a", A), lab.daemon.write_profile("b", B)];
    let mut rules = BTreeMap::new();
    for (name, f) in [("gen-a", &files[0]), ("gen-b", &files[1])] {
        lab.daemon.apply(f, &[]);
        rules.insert(name, lab.daemon.ruleset_present());
    }
    assert_ne!(rules["gen-a"], rules["gen-b"]);
    let mut in_force = "gen-b";

    for i in 0..16 {
        let (name, file) = if i % 2 == 0 {
            ("gen-a", &files[0])
        } else {
            ("gen-b", &files[1])
        };
        let child = spawn_apply(&lab.daemon, file);
        // An apply takes a few tens of milliseconds here: half the rounds aim
        // at that window instead of the whole 0-300 ms.
        let delay = if i % 4 < 2 { rng.below(301) } else { rng.below(61) };
        thread::sleep(Duration::from_millis(delay));
        lab.daemon.kill9();
        let out = child.wait_with_output().unwrap();
        let reported = out.status.success();
        let said = String::from_utf8_lossy(if reported { &out.stdout } else { &out.stderr })
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        eprintln!(
            "round {i}: apply {name}, kill -9 after {delay} ms, exit {:?}: {said}",
            out.status.code()
        );

        lab.daemon.restart();
        let d = &lab.daemon;
        let gens = d.generations();
        assert_strictly_increasing(&gens);
        let cur = current(&gens).profile.clone();
        if reported {
            assert_eq!(
                cur, name,
                "round {i}: the apply reported success, so its generation must be current: {gens:#?}"
            );
        } else {
            assert!(
                cur == name || cur == in_force,
                "round {i}: current generation {cur} is neither {in_force} nor {name}"
            );
        }
        in_force = if cur == "gen-a" { "gen-a" } else { "gen-b" };
        if let Err(last) = d.wait_ruleset(Some(&rules[in_force]), Duration::from_secs(5)) {
            panic!(
                "round {i}: live ruleset is not that of the current generation {in_force}; live:\n{last:?}\n{}",
                d.logs()
            );
        }
    }

    let d = &lab.daemon;
    let leftovers = d.temp_files();
    assert!(
        leftovers.is_empty(),
        "temporary files left in the state directory: {leftovers:?}"
    );
    let r = d.ctl(&["audit", "verify"]);
    assert_eq!(r.code, Some(0), "audit chain broken after kill -9s:\n{r}\n{}", d.logs());
}
