#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, OpenOptions};
use std::io::Write;

use bulwark_model::api::AuditEvent;

use super::chain::{seal, Head, Paths, GENESIS};
use super::*;
use crate::integrity::IntegrityKey as Key;

fn host() -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(dir.path());
    (dir, host)
}

/// A fresh log with `n` events after the keying event (line 1).
fn log_with(n: usize) -> (tempfile::TempDir, Host, AuditLog) {
    let (dir, host) = host();
    let mut log = AuditLog::open(&host).unwrap();
    for i in 0..n {
        log.record(&CHG_APPLIED, 0, Outcome::Success, &format!("generation {i}"))
            .unwrap();
    }
    log.catch_up_head();
    (dir, host, log)
}

fn paths(host: &Host) -> Paths {
    Paths::of(host)
}

fn events(host: &Host) -> Vec<AuditEvent> {
    fs::read_to_string(paths(host).log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_events(host: &Host, events: &[AuditEvent]) {
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    fs::write(paths(host).log, text).unwrap();
}

/// Recompute every line's `prev` and `hash` with `key` (None: plain
/// SHA-256) and the head to match, as someone rewriting the file would.
fn reseal(events: &mut [AuditEvent], key: Option<&Key>) -> Head {
    let mut prev = GENESIS.to_owned();
    for e in events.iter_mut() {
        e.prev = prev;
        e.hash = seal(e, key);
        prev = e.hash.clone();
    }
    let last = events.last().unwrap();
    Head::new(last.seq, &last.hash, key)
}

fn write_head(host: &Host, head: &Head) {
    crate::state::write_json(&paths(host).head, head).unwrap();
}

fn error(host: &Host) -> String {
    let v = verify(host);
    assert!(!v.ok, "verification passed: {v:?}");
    v.error.unwrap()
}

#[test]
fn an_untouched_chain_verifies_and_starts_keyed() {
    let (_dir, host, _log) = log_with(3);
    let v = verify(&host);
    assert!(v.ok && v.events == 4, "{v:?}");
    let all = tail(&host, 10).unwrap();
    assert_eq!(all[0].event, SYS_AUDIT_KEYED.id);
    assert_eq!(all.len(), 4);
    assert_eq!(tail(&host, 2).unwrap()[0].seq, 3);
    let reopened = AuditLog::open(&host).unwrap();
    drop(reopened);
    assert_eq!(
        tail(&host, 10).unwrap().len(),
        4,
        "reopening an intact log added events"
    );
    let key = fs::metadata(Key::path(&host.state_dir())).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn an_edited_line_fails_naming_the_line_and_the_check() {
    let (_dir, host, _log) = log_with(3);
    let p = paths(&host).log;
    let text = fs::read_to_string(&p).unwrap().replace("generation 1", "generation 9");
    fs::write(&p, text).unwrap();
    let err = error(&host);
    assert!(err.starts_with("line 3, hash: HMAC-SHA256"), "{err}");
}

#[test]
fn a_chain_rewritten_without_the_key_fails_and_with_it_verifies() {
    let (_dir, host, _log) = log_with(3);
    let mut evs = events(&host);
    evs[2].message = "generation 9".to_owned();
    // Plain SHA-256 everywhere, the head to match: the unkeyed scheme.
    let head = reseal(&mut evs, None);
    write_events(&host, &evs);
    write_head(&host, &head);
    let err = error(&host);
    assert!(err.starts_with("line 1, hash: HMAC-SHA256"), "{err}");
    // A guessed key fares no better.
    let other = tempfile::tempdir().unwrap();
    let guess = Key::load_or_create(other.path()).unwrap();
    let head = reseal(&mut evs, Some(&guess));
    write_events(&host, &evs);
    write_head(&host, &head);
    assert!(error(&host).starts_with("line 1, hash: HMAC-SHA256"));
    // The host's key does: the test rewrites lines exactly as the writer seals them.
    let key = Key::load(&host.state_dir()).unwrap().unwrap();
    let head = reseal(&mut evs, Some(&key));
    write_events(&host, &evs);
    write_head(&host, &head);
    assert!(verify(&host).ok, "{:?}", verify(&host));
}

#[test]
fn a_removed_line_fails_verification_even_the_last() {
    for (remove, want) in [(1usize, "line 2, seq"), (3, "audit.head, seq")] {
        let (_dir, host, _log) = log_with(3);
        let mut evs = events(&host);
        evs.remove(remove);
        write_events(&host, &evs);
        let err = error(&host);
        assert!(err.starts_with(want), "removing line {}: {err}", remove + 1);
    }
}

#[test]
fn a_removed_last_line_stays_detected_across_a_restart() {
    let (_dir, host, _log) = log_with(3);
    let mut evs = events(&host);
    evs.pop();
    write_events(&host, &evs);
    let reopened = AuditLog::open(&host).unwrap();
    drop(reopened);
    let err = error(&host);
    assert!(err.contains("records earlier damage"), "{err}");
    assert_eq!(tail(&host, 1).unwrap()[0].event, SYS_AUDIT_DAMAGED.id);
}

#[test]
fn a_rewritten_head_fails_on_its_mac() {
    let (_dir, host, _log) = log_with(3);
    let evs = events(&host);
    let last = evs.last().unwrap();
    write_head(&host, &Head::new(last.seq, &last.hash, None));
    let err = error(&host);
    assert!(err.starts_with("audit.head, mac"), "{err}");
}

#[test]
fn a_garbled_line_does_not_stop_the_log_from_opening() {
    let (_dir, host, _log) = log_with(3);
    let p = paths(&host).log;
    let text = fs::read_to_string(&p).unwrap().replacen("{\"seq\":2", "garbage{", 1);
    fs::write(&p, text).unwrap();
    let mut reopened = AuditLog::open(&host).unwrap();
    reopened.record(&CHG_APPLIED, 0, Outcome::Success, "after").unwrap();
    let err = error(&host);
    assert!(err.starts_with("line 2, json"), "{err}");
    let last = tail(&host, 2).unwrap();
    assert_eq!((last[0].event.as_str(), last[1].seq), (SYS_AUDIT_DAMAGED.id, 6));
}

#[test]
fn a_torn_tail_is_cut_and_recorded() {
    let (_dir, host, _log) = log_with(2);
    let mut f = OpenOptions::new().append(true).open(paths(&host).log).unwrap();
    f.write_all(b"{\"seq\":4,\"ti").unwrap();
    // Readers skip the unfinished line meanwhile.
    assert!(verify(&host).ok, "{:?}", verify(&host));
    let _log = AuditLog::open(&host).unwrap();
    assert!(verify(&host).ok, "{:?}", verify(&host));
    assert_eq!(tail(&host, 1).unwrap()[0].event, SYS_AUDIT_RECOVERED.id);
}

#[test]
fn a_lagging_head_is_no_alarm_and_is_caught_up() {
    let (_dir, host, _log) = log_with(4);
    let key = Key::load(&host.state_dir()).unwrap().unwrap();
    let evs = events(&host);
    // As if the head writes of the last three events had failed.
    write_head(&host, &Head::new(evs[1].seq, &evs[1].hash, Some(&key)));
    assert!(verify(&host).ok, "{:?}", verify(&host));
    let _log = AuditLog::open(&host).unwrap();
    assert!(verify(&host).ok, "{:?}", verify(&host));
    assert_eq!(Head::read(&paths(&host).head).unwrap().unwrap().seq, 5);
    assert!(tail(&host, 10).unwrap().iter().all(|e| e.event != SYS_AUDIT_DAMAGED.id));
}

#[test]
fn events_that_cannot_be_written_are_counted_and_reported_later() {
    let (_dir, host, mut log) = log_with(1);
    let p = paths(&host).log;
    let kept = p.with_extension("kept");
    fs::rename(&p, &kept).unwrap();
    // Every write to /dev/full fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", &p).unwrap();
    for _ in 0..3 {
        let err = log.record(&CHG_APPLIED, 0, Outcome::Success, "lost").unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
    }
    fs::remove_file(&p).unwrap();
    fs::rename(&kept, &p).unwrap();
    log.record(&CHG_APPLIED, 0, Outcome::Success, "kept").unwrap();
    assert!(verify(&host).ok, "{:?}", verify(&host));
    let last = tail(&host, 2).unwrap();
    assert_eq!(last[0].event, SYS_AUDIT_LOST.id);
    assert!(
        last[0].message.starts_with("3 audit event(s) could not be written"),
        "{}",
        last[0].message
    );
    assert_eq!(last[1].message, "kept");
}

/// A log as written before the chain was keyed: plain SHA-256, no key file.
fn legacy_log(host: &Host, n: u64) {
    fs::create_dir_all(host.log_dir()).unwrap();
    let mut evs: Vec<AuditEvent> = (1..=n)
        .map(|seq| AuditEvent {
            seq,
            event: CHG_APPLIED.id.to_owned(),
            message: format!("old {seq}"),
            ..AuditEvent::default()
        })
        .collect();
    let head = reseal(&mut evs, None);
    write_events(host, &evs);
    write_head(host, &head);
}

#[test]
fn a_log_written_before_keying_verifies_after_the_upgrade() {
    let (_dir, host) = host();
    legacy_log(&host, 3);
    let mut log = AuditLog::open(&host).unwrap();
    log.record(&CHG_APPLIED, 0, Outcome::Success, "new").unwrap();
    let v = verify(&host);
    assert!(v.ok && v.events == 5, "{v:?}");
    let switch = &tail(&host, 2).unwrap()[0];
    assert_eq!((switch.seq, switch.event.as_str()), (4, SYS_AUDIT_KEYED.id));
    assert!(switch.message.contains("the 3 earlier event(s)"), "{}", switch.message);

    // The old lines are covered by the first keyed one: rewriting them, even
    // with their SHA-256 chain recomputed, breaks the chain there.
    let mut evs = events(&host);
    evs[0].message = "forged".to_owned();
    let mut old = evs[..3].to_vec();
    reseal(&mut old, None);
    evs.splice(..3, old);
    write_events(&host, &evs);
    assert!(error(&host).starts_with("line 4, prev"));
}

#[test]
fn stripping_the_keyed_lines_is_detected() {
    let (_dir, host) = host();
    legacy_log(&host, 3);
    let mut log = AuditLog::open(&host).unwrap();
    log.record(&CHG_APPLIED, 0, Outcome::Success, "new").unwrap();
    drop(log);
    let mut evs = events(&host);
    evs.truncate(3);
    let head = reseal(&mut evs, None);
    write_events(&host, &evs);
    write_head(&host, &head);
    assert!(error(&host).starts_with("the log, keyed"));
}

#[test]
fn a_missing_key_fails_verification_and_is_recorded_at_start() {
    let (_dir, host, _log) = log_with(2);
    fs::remove_file(Key::path(&host.state_dir())).unwrap();
    assert!(error(&host).starts_with("integrity.key, present"));
    let _log = AuditLog::open(&host).unwrap();
    // A new key cannot vouch for lines keyed with the old one.
    assert!(error(&host).starts_with("line 1, hash"));
}

#[test]
fn a_message_with_controls_is_one_escaped_line() {
    let (_dir, host, mut log) = log_with(0);
    log.record(
        &CHG_INVALID,
        0,
        Outcome::Refused,
        "evil.toml\n{\"seq\":99,\"event\":\"BWK-CHG-0001\"}\u{1b}[2J: 1 validation error(s)",
    )
    .unwrap();
    let text = fs::read_to_string(paths(&host).log).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    let last = tail(&host, 1).unwrap().remove(0);
    assert_eq!(
        last.message,
        "evil.toml\\n{\"seq\":99,\"event\":\"BWK-CHG-0001\"}\\x1b[2J: 1 validation error(s)"
    );
    assert!(verify(&host).ok);
}

#[test]
fn identifiers_are_unique_and_well_formed() {
    let mut ids: Vec<&str> = CATALOGUE.iter().map(|k| k.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), CATALOGUE.len());
    for k in CATALOGUE {
        let parts: Vec<&str> = k.id.split('-').collect();
        assert!(parts.len() == 3 && parts[0] == "BWK" && parts[2].len() == 4, "{}", k.id);
        assert!(!k.iso2013.is_empty() && !k.iso2022.is_empty());
    }
}

#[test]
fn the_docs_catalogue_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit-events.md");
    if std::env::var_os("BULWARK_REGEN_DOCS").is_some() {
        fs::write(path, catalogue_markdown()).unwrap();
    }
    let doc = fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        doc,
        catalogue_markdown(),
        "docs/audit-events.md is stale: run BULWARK_REGEN_DOCS=1 cargo test -p bulwarkd the_docs_catalogue"
    );
}
