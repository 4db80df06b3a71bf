#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_model::api::{AuditEvent, Check, GenerationInfo, Health, Level, ModuleStatus, PeerInfo, Status};
use bulwark_model::evidence::ControlStatus;

use super::*;
use crate::audit::chain::{seal, Head, GENESIS};
use crate::audit::controls::{controls_markdown, CONTROLS};
use crate::audit::{AuditLog, Outcome, CATALOGUE, CHG_APPLIED, CHG_CONFIRMED, CHG_REVERTED, WG_PEER_ADDED};
use crate::integrity::IntegrityKey as Key;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

const DAY: u64 = 86_400;
/// 2025-01-01T00:00:00Z.
const JAN1: u64 = 1_735_689_600;

fn check(module: &str, name: &str, level: Level, reason: &str) -> Check {
    Check {
        name: name.to_owned(),
        module: module.to_owned(),
        level,
        reason: reason.to_owned(),
    }
}

fn module(name: &str, managed: bool) -> ModuleStatus {
    ModuleStatus {
        module: name.to_owned(),
        managed,
        ..ModuleStatus::default()
    }
}

/// A host whose log holds `events` (kind, uid, message, unix time), in
/// order after the keying line, resealed with the host's key as the writer
/// would have sealed them at those times.
fn host_with(events: &[(&'static crate::audit::EventKind, u32, &str, u64)]) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(dir.path());
    let mut log = AuditLog::open(&host).unwrap();
    for (kind, uid, msg, _) in events {
        log.record(kind, *uid, Outcome::Success, msg).unwrap();
    }
    drop(log);
    let paths = Paths::of(&host);
    let mut lines: Vec<AuditEvent> = fs::read_to_string(&paths.log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[0].time = rfc3339(t(JAN1 - DAY));
    for (line, (_, _, _, at)) in lines[1..].iter_mut().zip(events) {
        line.time = rfc3339(t(*at));
    }
    let key = Key::load(&host.state_dir()).unwrap().unwrap();
    let mut prev = GENESIS.to_owned();
    for e in &mut lines {
        e.prev = prev;
        e.hash = seal(e, Some(&key));
        prev = e.hash.clone();
    }
    let text: String = lines.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect();
    fs::write(&paths.log, text).unwrap();
    let last = lines.last().unwrap();
    crate::state::write_json(&paths.head, &Head::new(last.seq, &last.hash, Some(&key))).unwrap();
    (dir, host)
}

struct World {
    status: Status,
    health: Health,
    generations: Vec<GenerationInfo>,
    peers: Vec<PeerInfo>,
}

impl World {
    fn new(checks: Vec<Check>, managed: &[&str]) -> World {
        let modules = ["firewall", "wireguard", "k3s", "ima", "vault"]
            .iter()
            .map(|m| module(m, *m == "firewall" || managed.contains(m)))
            .collect();
        World {
            status: Status {
                modules,
                ..Status::default()
            },
            health: Health::from_checks(checks),
            generations: Vec::new(),
            peers: Vec::new(),
        }
    }

    fn report(&self, host: &Host, window: Window) -> Evidence {
        let inputs = Inputs {
            status: &self.status,
            health: &self.health,
            generations: &self.generations,
            peers: &self.peers,
        };
        assemble(host, inputs, window, t(JAN1 + 40 * DAY))
    }
}

fn status_of(e: &Evidence, id: &str) -> (ControlStatus, String) {
    let c = e.controls.iter().find(|c| c.id == id).unwrap();
    (c.status, c.reason.clone())
}

#[test]
fn every_control_of_the_table_is_reported_in_order_with_its_status() {
    let (_dir, host) = host_with(&[]);
    let world = World::new(
        vec![
            check("firewall", "firewall", Level::Ok, "ruleset in force and verified"),
            check(
                "k3s",
                "k3s-listen",
                Level::Critical,
                "K3s listens on 0.0.0.0:6443 outside 10.8.0.1 and loopback",
            ),
            check("bulwarkd", "last_apply", Level::Ok, "no change since start-up"),
            check("bulwarkd", "memory", Level::Warning, "4% of memory available"),
            check(
                "ima",
                "ima-mode",
                Level::Warning,
                "ima_appraise=off in force, profile wants fix",
            ),
        ],
        &["k3s", "ima"],
    );
    let e = world.report(&host, Window::default());
    let ids: Vec<&str> = e.controls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "access",
            "network",
            "secrets",
            "change",
            "backup",
            "logging",
            "integrity"
        ]
    );
    assert_eq!((e.schema.as_str(), e.version), ("bulwark-evidence", 1));
    let (s, why) = status_of(&e, "network");
    assert_eq!(s, ControlStatus::Fail);
    assert!(why.contains("0.0.0.0:6443"), "{why}");
    assert_eq!(status_of(&e, "access").0, ControlStatus::NotManaged);
    assert_eq!(status_of(&e, "secrets").0, ControlStatus::NotManaged);
    assert_eq!(status_of(&e, "backup").0, ControlStatus::NotManaged);
    assert_eq!(status_of(&e, "change").0, ControlStatus::Pass);
    assert_eq!(status_of(&e, "logging").0, ControlStatus::Pass);
    assert_eq!(status_of(&e, "integrity").0, ControlStatus::Warning);
    // The memory check belongs to no control, and is still reported.
    assert_eq!(e.other_checks.len(), 1, "{:?}", e.other_checks);
    assert!(
        e.summary.problems.iter().any(|p| p.contains("memory")),
        "{:?}",
        e.summary
    );
    assert_eq!(e.summary.status, ControlStatus::Fail);
    assert!(e.summary.problems[0].starts_with("Firewall and network controls (A.13.1.1): fail"));
}

#[test]
fn backups_without_a_snapshot_schedule_are_not_configured_never_a_pass() {
    let (_dir, host) = host_with(&[]);
    let world = World::new(vec![check("vault", "vault", Level::Ok, "unsealed")], &["vault"]);
    let e = world.report(&host, Window::default());
    let (s, why) = status_of(&e, "backup");
    assert_eq!(s, ControlStatus::NoEvidence, "{why}");
    assert!(
        why.starts_with("not configured: the profile in force has no [vault.snapshots] section"),
        "{why}"
    );
    assert!(e
        .summary
        .problems
        .iter()
        .any(|p| p.contains("not configured: the profile in force has no [vault.snapshots] section")));
    assert_eq!(e.summary.status, ControlStatus::NoEvidence);
}

#[test]
fn events_outside_the_period_are_left_out_and_the_mid_chain_start_is_named() {
    let (_dir, host) = host_with(&[
        (&CHG_APPLIED, 0, "generation 1 from profile a (1 change(s))", JAN1 - 1),
        (&CHG_APPLIED, 1000, "generation 2 from profile b (1 change(s))", JAN1),
        (&WG_PEER_ADDED, 1000, "peer alice 10.8.0.2 key AAAA", JAN1 + DAY),
        (
            &CHG_APPLIED,
            1000,
            "generation 3 from profile c (1 change(s))",
            JAN1 + 31 * DAY,
        ),
    ]);
    let world = World::new(Vec::new(), &[]);
    let window = Window {
        since: Some(t(JAN1)),
        until: Some(t(JAN1 + 31 * DAY)),
    };
    let e = world.report(&host, window);
    let seqs: Vec<u64> = e.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 4], "since is inclusive, until exclusive");
    assert_eq!(e.period.since.as_deref(), Some("2025-01-01T00:00:00Z"));
    assert_eq!(e.period.until.as_deref(), Some("2025-02-01T00:00:00Z"));
    assert!(e.chain.ok, "{:?}", e.chain);
    assert_eq!((e.chain.verified, e.chain.lines), (5, 5));
    assert_eq!((e.chain.period_first, e.chain.period_last), (Some(3), Some(4)));
    assert!(
        e.chain
            .note
            .contains("starts mid-chain, at line 3, and the lines before it were verified too"),
        "{}",
        e.chain.note
    );
    assert_eq!(e.chain.head.as_ref().unwrap().seq, 5);
    let change = e.controls.iter().find(|c| c.id == "change").unwrap();
    assert_eq!(change.events, [3], "the peer event is access, not change");
    let access = e.controls.iter().find(|c| c.id == "access").unwrap();
    assert_eq!(access.events, [4]);
}

#[test]
fn a_tampered_line_breaks_the_chain_at_the_top_and_later_events_are_unproven() {
    let (_dir, host) = host_with(&[
        (&CHG_APPLIED, 0, "generation 1 from profile a (1 change(s))", JAN1),
        (&CHG_APPLIED, 0, "generation 2 from profile b (1 change(s))", JAN1 + 1),
        (&CHG_APPLIED, 0, "generation 3 from profile c (1 change(s))", JAN1 + 2),
    ]);
    let log = Paths::of(&host).log;
    let text = fs::read_to_string(&log).unwrap().replace("profile b", "profile x");
    fs::write(&log, text).unwrap();
    let e = World::new(Vec::new(), &[]).report(&host, Window::default());
    assert!(!e.chain.ok);
    assert_eq!(e.chain.first_unverified, Some(3));
    assert_eq!(e.chain.verified, 2);
    assert!(
        e.chain.error.as_deref().unwrap().starts_with("line 3, hash"),
        "{:?}",
        e.chain
    );
    assert_eq!(e.events.len(), 4, "events past the break are still listed");
    assert!(!e.summary.chain_ok);
    assert_eq!(e.summary.status, ControlStatus::Fail);
    assert!(
        e.summary.problems[0].starts_with("audit chain BROKEN"),
        "{:?}",
        e.summary
    );
    let (s, why) = status_of(&e, "logging");
    assert_eq!(s, ControlStatus::Fail);
    assert!(why.contains("line 3, hash"), "{why}");
}

#[test]
fn generations_say_how_their_window_ended_and_peers_who_added_them() {
    let (_dir, host) = host_with(&[
        (&CHG_APPLIED, 0, "generation 2 from profile a (1 change(s))", JAN1),
        (&CHG_CONFIRMED, 0, "generation 2 confirmed", JAN1 + 5),
        (
            &CHG_REVERTED,
            0,
            "generation 3 was not confirmed by its deadline; generation 4 restores 2",
            JAN1 + 100,
        ),
        (&WG_PEER_ADDED, 0, "peer alice 10.8.0.2 key QUJD", JAN1 + 200),
    ]);
    let mut world = World::new(Vec::new(), &["wireguard"]);
    let generation = |number, reason: &str, created| GenerationInfo {
        number,
        profile: "p".into(),
        created,
        uid: 0,
        reason: reason.into(),
        current: number == 5,
        digest: "d".into(),
    };
    world.generations = vec![
        generation(1, "boot", JAN1 - DAY),
        generation(2, "apply", JAN1),
        generation(3, "apply", JAN1 + 50),
        generation(4, "revert", JAN1 + 100),
        generation(5, "apply", JAN1 + 300),
    ];
    world.status.pending_confirm = Some(bulwark_model::api::PendingConfirm {
        generation: 5,
        revert_to: Some(4),
        deadline: JAN1 + 400,
    });
    world.peers = vec![
        PeerInfo {
            name: "alice".into(),
            public_key: "QUJD".into(),
            created: JAN1 + 200,
            expires: Some(JAN1 + 90 * DAY),
            last_handshake: Some(JAN1 + 300),
            ..PeerInfo::default()
        },
        PeerInfo {
            name: "bob".into(),
            public_key: "REVG".into(),
            created: JAN1 - 10 * DAY,
            disabled: true,
            ..PeerInfo::default()
        },
    ];
    let e = world.report(
        &host,
        Window {
            since: Some(t(JAN1)),
            until: None,
        },
    );
    let change = e.controls.iter().find(|c| c.id == "change").unwrap();
    let gens = change.generations.as_ref().unwrap();
    let how: Vec<(u64, &str)> = gens.iter().map(|g| (g.number, g.confirmation.as_str())).collect();
    assert_eq!(
        how,
        [(2, "confirmed"), (3, "reverted"), (4, "none"), (5, "pending")],
        "generation 1 is before the period"
    );
    assert_eq!(gens[0].settled_by, Some(3));
    assert_eq!(gens[0].user.as_deref(), Some("root"));
    let access = e.controls.iter().find(|c| c.id == "access").unwrap();
    let peers = access.peers.as_ref().unwrap();
    assert_eq!(peers.len(), 2, "the review lists every peer, whenever added");
    assert_eq!((peers[0].added_by_uid, peers[0].added_event), (Some(0), Some(5)));
    assert_eq!(peers[0].expires.as_deref(), Some("2025-04-01T00:00:00Z"));
    assert!(peers[0].notes.is_empty(), "{:?}", peers[0].notes);
    assert_eq!(peers[1].added_by_uid, None);
    assert_eq!(
        peers[1].notes,
        [
            "never expires",
            "disabled: off the interface, kept in the store",
            "no handshake yet",
            "no BWK-WG-0001 event for this key in the audit log: who added it is not recorded"
        ]
    );
}

#[test]
fn every_catalogue_event_evidences_a_control_and_the_table_is_the_architectures() {
    for k in CATALOGUE {
        assert!(
            CONTROLS.iter().any(|c| c.covers(k.iso2013)),
            "{} evidences no control of the table",
            k.id
        );
    }
    let table: Vec<(&str, &[&str], &[&str])> = CONTROLS.iter().map(|c| (c.id, c.iso2013, c.iso2022)).collect();
    assert_eq!(
        table,
        [
            ("access", &["A.9.2.1"][..], &["A.5.16", "A.5.18"][..]),
            ("network", &["A.13.1.1"], &["A.8.20", "A.8.22"]),
            ("secrets", &["A.9.4", "A.10.1"], &["A.8.3", "A.8.5", "A.8.24"]),
            ("change", &["A.12.1.2"], &["A.8.32", "A.8.9"]),
            ("backup", &["A.17.1.2", "A.12.3.1"], &["A.8.13", "A.8.14"]),
            ("logging", &["A.12.4.1"], &["A.8.15", "A.8.16"]),
            ("integrity", &["A.12.5.1", "A.12.2.1"], &["A.8.19", "A.8.7"]),
        ]
    );
}

#[test]
fn the_docs_catalogue_of_controls_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/controls.md");
    if std::env::var_os("BULWARK_REGEN_DOCS").is_some() {
        fs::write(path, controls_markdown()).unwrap();
    }
    assert_eq!(
        fs::read_to_string(path).unwrap_or_default(),
        controls_markdown(),
        "docs/controls.md is stale: run BULWARK_REGEN_DOCS=1 cargo test -p bulwarkd the_docs_catalogue"
    );
}

#[test]
fn a_period_reads_dates_and_times_in_utc_and_refuses_an_empty_one() {
    let w = Window::parse(Some("2025-01-01"), Some("2025-02-01T00:00:00Z")).unwrap();
    assert_eq!((w.since, w.until), (Some(t(JAN1)), Some(t(JAN1 + 31 * DAY))));
    assert!(w.contains(t(JAN1)) && !w.contains(t(JAN1 + 31 * DAY)) && !w.contains(t(JAN1 - 1)));
    assert_eq!(Window::parse(None, None).unwrap(), Window::default());
    let err = Window::parse(Some("2025-1-1"), None).unwrap_err().to_string();
    assert!(err.starts_with("since: \"2025-1-1\" is not a date"), "{err}");
    let err = Window::parse(None, Some("2025-01-01T00:00:00+01:00"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("until: "), "{err}");
    let err = Window::parse(Some("2025-02-01"), Some("2025-01-01"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "until: 2025-01-01T00:00:00Z is not after since: 2025-02-01T00:00:00Z: the period would be empty"
    );
}
