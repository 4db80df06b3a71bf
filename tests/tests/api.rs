//! The API's gatekeeping: authorisation from the peer's credentials, request
//! size limits, error statuses with JSON bodies, and audit events for refusals.
//! Callers are real processes under other uids (setpriv), not mocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use bulwark_model::api::{ErrorBody, VersionInfo, MAX_BODY_BYTES};
use bulwark_tests::{run, Daemon, Lab, ADMIN_GID, OTHER_GID, READ_GID};

const A: &str = include_str!("../fixtures/a.toml");
const B: &str = include_str!("../fixtures/b.toml");

/// Unprivileged callers: a reader, an admin, and someone in neither group.
const READER: u32 = 61010;
const ADMIN: u32 = 61011;
const STRANGER: u32 = 61012;

fn forbidden(stderr: &str) -> bool {
    let s = stderr.to_lowercase();
    s.contains("forbidden") || s.contains("403")
}

/// Boots on the embedded default, applies A, and returns B's file: the
/// profile unprivileged callers try to apply.
fn with_a_applied(lab: &mut Lab) -> std::path::PathBuf {
    lab.daemon.start(None);
    let d = &lab.daemon;
    d.apply(&d.write_profile("a", A), &[]);
    d.write_profile("b", B)
}

#[test]
fn read_group_may_read_but_apply_is_forbidden_and_audited() {
    let mut lab = Lab::new("api-reader");
    let b = with_a_applied(&mut lab);
    let d = &lab.daemon;
    let (rules, gens) = (d.ruleset_present(), d.generations().len());

    for read in [&["status"][..], &["generations"], &["audit", "tail"]] {
        let r = d.ctl_as(READER, READER, &[READ_GID], read);
        assert!(
            r.ok(),
            "a member of the read group may run {read:?}:\n{r}\n{}",
            d.logs()
        );
    }
    let r = d.ctl_as(READER, READER, &[READ_GID], &["health"]);
    assert_eq!(r.code, Some(0), "a member of the read group may read health:\n{r}");

    let r = d.ctl_as(READER, READER, &[READ_GID], &["apply", b.to_str().unwrap()]);
    assert_eq!(r.code, Some(5), "apply by a reader must be refused with exit 5:\n{r}");
    assert!(forbidden(&r.stderr), "the refusal should say forbidden/403:\n{r}");
    for change in [&["confirm"][..], &["rollback"]] {
        let r = d.ctl_as(READER, READER, &[READ_GID], change);
        assert_eq!(r.code, Some(5), "{change:?} by a reader must be refused:\n{r}");
        assert!(forbidden(&r.stderr), "the refusal should say forbidden/403:\n{r}");
    }
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules.as_str()),
        "a refused apply changed the ruleset"
    );
    assert_eq!(d.generations().len(), gens, "a refused apply recorded a generation");

    // Refusals are answered before they are recorded: give the event a moment.
    let events = bulwark_tests::poll(Duration::from_secs(5), Duration::from_millis(100), || {
        let events = d.audit_tail(50);
        events
            .iter()
            .any(|e| e.event.starts_with("BWK-API-") && e.uid == READER)
            .then_some(events)
    })
    .unwrap_or_else(|| {
        panic!(
            "no BWK-API-* event for uid {READER} in the audit log: {:#?}",
            d.audit_tail(50)
        )
    });
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.event.starts_with("BWK-API-") && e.uid == READER)
        .collect();
    assert!(
        refused.iter().all(|e| e.result == "refused"),
        "refusal events must have result \"refused\": {refused:#?}"
    );
}

#[test]
fn uid_in_neither_group_is_refused_and_changes_nothing() {
    let mut lab = Lab::new("api-stranger");
    let b = with_a_applied(&mut lab);
    let d = &lab.daemon;
    let (rules, gens) = (d.ruleset_present(), d.generations().len());

    // Refused either at connect time (socket mode: exit 3) or by the API (403: exit 5).
    for args in [&["status"][..], &["apply", b.to_str().unwrap()], &["rollback"]] {
        let r = d.ctl_as(STRANGER, STRANGER, &[OTHER_GID], args);
        assert!(
            matches!(r.code, Some(5) | Some(3)),
            "{args:?} by a uid in neither group must be refused:\n{r}"
        );
        if r.code == Some(5) {
            assert!(forbidden(&r.stderr), "exit 5 should be a 403:\n{r}");
        }
    }
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules.as_str()),
        "a refused caller changed the ruleset"
    );
    assert_eq!(d.generations().len(), gens, "a refused caller recorded a generation");
}

/// `apply` as an unprivileged uid with `groups`; asserts success and that the
/// new generation records that uid.
fn apply_as_admin(tag: &str, groups: &[u32]) {
    let mut lab = Lab::new(tag);
    let b = with_a_applied(&mut lab);
    let d = &lab.daemon;

    let r = d.ctl_as(ADMIN, ADMIN, groups, &["apply", b.to_str().unwrap()]);
    assert!(
        r.ok(),
        "a member of the admin group (groups {groups:?}) may apply:\n{r}\n{}",
        d.logs()
    );
    let gens = d.generations();
    let cur = gens.iter().find(|g| g.current).expect("a current generation");
    assert_eq!(
        (cur.profile.as_str(), cur.uid),
        ("gen-b", ADMIN),
        "generation after an admin's apply: {gens:#?}"
    );
}

#[test]
fn admin_group_may_apply_and_the_generation_names_the_caller() {
    // An operator in both groups, as a package would typically set one up.
    apply_as_admin("api-admin", &[READ_GID, ADMIN_GID]);
}

#[test]
fn admin_group_alone_is_enough_to_apply() {
    // The contract gives the admin group the right to change state; that must
    // not depend on also being in the read group (e.g. through the socket's mode).
    apply_as_admin("api-admin-only", &[ADMIN_GID]);
}

#[test]
fn version_is_served_to_any_connecting_caller() {
    let mut lab = Lab::new("api-version");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let (code, body) = d.http("GET", "/version", None);
    assert_eq!(code, 200, "GET /version: {body}");
    let v: VersionInfo = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /version body ({e}): {body}"));
    assert!(!v.version.is_empty(), "{v:?}");
    assert!(v.api_versions.iter().any(|a| a == "v1"), "{v:?}");

    // A reader without any rights beyond connecting gets it too.
    let r = run(Command::new("setpriv")
        .args([
            "--reuid",
            &READER.to_string(),
            "--regid",
            &READER.to_string(),
            "--groups",
            &READ_GID.to_string(),
        ])
        .args(["curl", "-sS", "--max-time", "10", "--unix-socket"])
        .arg(d.socket())
        .arg("http://localhost/version"));
    assert!(r.ok() && r.stdout.contains("v1"), "GET /version as uid {READER}:\n{r}");
}

/// Writes an apply request whose profile text is `len` bytes long.
fn apply_body(d: &Daemon, name: &str, len: usize, dry_run: bool) -> std::path::PathBuf {
    let head = "[profile]\\nname = \\\"big\\\"\\n# ";
    let filler = "x".repeat(len.saturating_sub(head.len()));
    let body = format!("{{\"profile\":\"{head}{filler}\",\"dry_run\":{dry_run}}}");
    let path = d.root.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn oversized_body_is_refused_with_413_and_changes_nothing() {
    let mut lab = Lab::new("api-413");
    with_a_applied(&mut lab);
    let d = &lab.daemon;
    let (rules, gens) = (d.ruleset_present(), d.generations().len());

    let big = apply_body(d, "big.json", MAX_BODY_BYTES + 100 * 1024, false);
    let (code, body) = d.http("POST", "/v1/apply", Some(&big));
    assert_eq!(
        code,
        413,
        "an apply body over {MAX_BODY_BYTES} bytes: {body}\n{}",
        d.logs()
    );
    let err: ErrorBody =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("413 body is not an ErrorBody ({e}): {body}"));
    assert_eq!(err.kind, "too_large", "{err:?}");

    // Just under the limit is a normal (dry-run) request.
    let fits = apply_body(d, "fits.json", MAX_BODY_BYTES - 100 * 1024, true);
    let (code, body) = d.http("POST", "/v1/apply", Some(&fits));
    assert_eq!(code, 200, "a dry-run apply just under the limit: {body}");

    d.ctl_ok(&["status"]);
    assert_eq!(d.ruleset().as_deref(), Some(rules.as_str()));
    assert_eq!(d.generations().len(), gens);
}

#[test]
fn errors_carry_the_contracted_status_and_a_json_body() {
    let mut lab = Lab::new("api-errors");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let rules = d.ruleset_present();
    let json = |name: &str, text: &str| {
        let p = d.root.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };

    let cases = [
        (
            "POST",
            "/v1/apply",
            Some(json("garbage.json", "{not json")),
            400,
            "bad_request",
        ),
        ("GET", "/v1/no-such-route", None, 404, "not_found"),
        (
            "POST",
            "/v1/rollback",
            Some(json("rb.json", r#"{"generation": 999999}"#)),
            404,
            "not_found",
        ),
        ("POST", "/v1/confirm", None, 409, "conflict"),
        (
            "POST",
            "/v1/apply",
            Some(json(
                "invalid.json",
                r#"{"profile": "[profile]\nname = \"x\"\n[firewall]\npublic_tcp = [70000]\n"}"#,
            )),
            422,
            "invalid_profile",
        ),
    ];
    for (method, path, body, want, kind) in cases {
        let (code, text) = d.http(method, path, body.as_deref());
        let err: Result<ErrorBody, _> = serde_json::from_str(&text);
        assert_eq!(code, want, "{method} {path}: {text}");
        let err = err.unwrap_or_else(|e| panic!("{method} {path}: body is not an ErrorBody ({e}): {text}"));
        assert_eq!(err.kind, kind, "{method} {path}: {err:?}");
        assert!(
            !err.error.is_empty(),
            "{method} {path}: the error says nothing: {err:?}"
        );
    }
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules.as_str()),
        "a refused request changed the ruleset"
    );
}

#[test]
fn idle_clients_do_not_block_other_callers() {
    let mut lab = Lab::new("api-idle");
    lab.daemon.start(None);
    let d = &lab.daemon;

    // Half a request each, then silence.
    let idle: Vec<UnixStream> = (0..4)
        .map(|_| {
            let mut s = UnixStream::connect(d.socket()).unwrap();
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n").unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    let r = d.ctl(&["status"]);
    assert!(r.ok(), "status while 4 clients idle:\n{r}\n{}", d.logs());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "status took {:?} while 4 clients idle",
        t0.elapsed()
    );
    drop(idle);
}
