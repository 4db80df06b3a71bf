//! The audit trail from the outside: what a caller sends cannot forge lines
//! or reach a terminal raw, a full disk and `kill -9` raise no false alarm,
//! and a chain rewritten without the host's key fails verification, naming
//! the line and the check. Checked on the real files, the real socket and
//! bulwarkctl's real output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use bulwark_model::api::{AuditEvent, ErrorBody};
use bulwark_model::text::is_unsafe;
use bulwark_tests::{run, run_ok, run_with_stdin, Daemon, Lab};

const A: &str = include_str!("../fixtures/a.toml");
const B: &str = include_str!("../fixtures/b.toml");

/// Debian's python3 (scripts/install-deps), for SHA-256 and HMAC as an
/// outsider would compute them.
const PYTHON: &str = "/usr/bin/python3";

fn log_path(d: &Daemon) -> PathBuf {
    d.root.join("var/log/bulwark/audit.log")
}

fn events(d: &Daemon) -> Vec<AuditEvent> {
    fs::read_to_string(log_path(d))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line ({e}): {l}")))
        .collect()
}

/// The characters of `text` that must never reach a terminal, line ends aside.
fn controls(text: &str) -> Vec<char> {
    text.chars().filter(|c| *c != '\n' && is_unsafe(*c)).collect()
}

/// An HTTP request as root straight on the socket; (status, body).
fn request(d: &Daemon, method: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
    let body = body.to_string();
    let mut s = UnixStream::connect(d.socket()).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (code, body)
}

#[test]
fn a_source_with_newline_and_escape_bytes_is_one_escaped_line_everywhere() {
    let mut lab = Lab::new("audit-inject");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let before = events(d).len();

    // A line that would pass for an apply, then screen clear, title change,
    // an 8-bit CSI and a right-to-left override.
    let forged = "2024-05-01T10:00:00Z  BWK-CHG-0001  notice  uid=0  success  generation 99 applied";
    let source = format!("evil.toml\n{forged}\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}");
    let invalid = "[profile]\nname = \"x\"\n[firewall]\npublic_tcp = [70000]\n";
    let (code, body) = request(
        d,
        "POST",
        "/v1/apply",
        &serde_json::json!({ "profile": invalid, "source": source }),
    );
    assert_eq!(code, 422, "{body}");
    // The answer quotes the source too, escaped.
    let err: ErrorBody = serde_json::from_str(&body).unwrap_or_else(|e| panic!("422 body ({e}): {body}"));
    assert!(controls(&err.error).is_empty(), "{err:?}");
    assert!(!err.profile_errors.is_empty(), "{err:?}");
    for e in &err.profile_errors {
        assert!(
            controls(&e.file).is_empty() && e.file.starts_with("evil.toml\\n"),
            "{e:?}"
        );
    }

    // The audit log: exactly one more line, and the event's own text escaped.
    let after = events(d);
    assert_eq!(after.len(), before + 1, "{after:#?}");
    let event = after.last().unwrap();
    assert_eq!(event.event, "BWK-CHG-0006", "{event:?}");
    assert!(controls(&event.message).is_empty(), "{event:?}");
    assert!(
        event.message.starts_with(&format!(
            "evil.toml\\n{forged}\\x1b[2J\\x1b]0;pwned\\x07\\u{{9b}}31m\\u{{202e}}"
        )),
        "{}",
        event.message
    );

    // `audit tail`: one line per event, no control characters.
    let tail = d.ctl_ok(&["audit", "tail", "-n", "100"]);
    assert!(controls(&tail.stdout).is_empty(), "{:?}", controls(&tail.stdout));
    assert_eq!(tail.stdout.lines().count(), after.len(), "{}", tail.stdout);
    assert!(!tail.stdout.lines().any(|l| l.starts_with(forged)), "{}", tail.stdout);

    // bulwarkd's own log: the event is one line, carrying its chain hash.
    let stderr = fs::read_to_string(d.root.join("bulwarkd.stderr")).unwrap();
    assert!(controls(&stderr).is_empty(), "{:?}", controls(&stderr));
    assert!(!stderr.lines().any(|l| l.starts_with(forged)), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("BWK-CHG-0006:"))
        .unwrap_or_else(|| panic!("no log line for the event:\n{stderr}"));
    assert!(line.contains(&format!("evil.toml\\n{forged}")), "{line}");
    assert!(line.contains(&format!("bulwark_chain={}", event.hash)), "{line}");

    // bulwarkctl's own errors quote a file name the same way.
    let bad = d.write_profile("bad\n\u{1b}[2Jname", invalid);
    let r = d.ctl(&["apply", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(4), "{r}");
    assert!(controls(&r.stderr).is_empty(), "{:?}\n{r}", controls(&r.stderr));
    assert!(r.stderr.contains("bad\\n\\x1b[2Jname.toml"), "{r}");
}

/// A tmpfs mounted at a directory of the test's own root; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(
            dir.starts_with(std::env::temp_dir()),
            "{} is outside the temp dir",
            dir.display()
        );
        fs::create_dir_all(dir).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "bulwark-test"])
                .arg(dir),
        );
        Tmpfs(dir.to_owned())
    }

    /// Fill the filesystem to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = fs::File::create(&path).unwrap();
        let block = [0u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        let _ = f.sync_all();
        path
    }
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let r = run(Command::new("umount").arg("-l").arg(&self.0));
        if !r.ok() {
            eprintln!("warning: could not unmount {}:\n{r}", self.0.display());
        }
    }
}

fn verify_ok(d: &Daemon, when: &str) {
    let r = d.ctl(&["audit", "verify"]);
    assert!(
        r.ok() && r.stdout.contains("audit chain ok"),
        "audit verify {when}:\n{r}\n{}",
        d.logs()
    );
}

#[test]
fn a_full_log_disk_then_kill_9_raises_no_false_alarm() {
    let mut lab = Lab::new("audit-full");
    let disk = Tmpfs::mount(&lab.daemon.root.join("var/log/bulwark"), "256k");
    lab.daemon.start(None);
    let d = &mut lab.daemon;
    let (a, b) = (d.write_profile("a", A), d.write_profile("b", B));
    let apply_many = |d: &Daemon, n: usize| {
        for i in 0..n {
            d.apply(if i % 2 == 0 { &a } else { &b }, &[]);
        }
    };
    apply_many(d, 2);

    // Full while running: applies go on, verification never cries tamper,
    // and once there is room again the lost events are counted.
    let filler = disk.fill();
    apply_many(d, 16);
    verify_ok(d, "with the log's disk full");
    fs::remove_file(&filler).unwrap();
    apply_many(d, 1);
    verify_ok(d, "after space came back");
    let lost: Vec<AuditEvent> = events(d).into_iter().filter(|e| e.event == "BWK-SYS-0007").collect();
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert!(
        lost[0].message.contains("audit event(s) could not be written"),
        "{lost:?}"
    );

    // Full, then killed: after a restart with room again, still no alarm.
    let filler = disk.fill();
    apply_many(d, 16);
    d.kill9();
    fs::remove_file(&filler).unwrap();
    d.restart();
    apply_many(d, 1);
    verify_ok(d, "after a full disk, kill -9 and a restart");
    let damaged: Vec<AuditEvent> = events(d).into_iter().filter(|e| e.event == "BWK-SYS-0003").collect();
    assert!(damaged.is_empty(), "a full disk was taken for tampering: {damaged:#?}");
    d.kill9();
    drop(disk);
}

/// SHA-256 of `parts[1]` (no key: the unkeyed scheme), or HMAC-SHA256 of
/// `parts` length-prefixed (8 bytes, big-endian) as the integrity key seals
/// them, hex, by python's hashlib.
fn digest(parts: &[&[u8]], key: Option<&[u8]>) -> String {
    let key: String = key.unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect();
    let mut input = Vec::new();
    for p in parts {
        input.extend_from_slice(&(p.len() as u64).to_be_bytes());
        input.extend_from_slice(p);
    }
    let script = "import sys, hmac, hashlib\nd = sys.stdin.buffer.read()\nk = sys.argv[1]\n\
                  print(hmac.new(bytes.fromhex(k), d, hashlib.sha256).hexdigest() if k else hashlib.sha256(d).hexdigest())";
    let stdin = if key.is_empty() { parts[1].to_vec() } else { input };
    let r = run_with_stdin(Command::new(PYTHON).args(["-c", script, &key]), &stdin);
    assert!(r.ok(), "{r}");
    r.stdout.trim().to_owned()
}

/// What an event's hash covers: the event with `hash` empty, as JSON.
fn content(e: &AuditEvent) -> Vec<u8> {
    serde_json::to_vec(&AuditEvent {
        hash: String::new(),
        ..e.clone()
    })
    .unwrap()
}

/// Rewrite the log from line `from` (1-based) on with `key` (None: plain
/// SHA-256, as anyone could), recomputing each hash and the head.
fn rewrite(d: &Daemon, events: &mut [AuditEvent], from: usize, key: Option<&[u8]>) {
    for i in from - 1..events.len() {
        if i > 0 {
            events[i].prev = events[i - 1].hash.clone();
        }
        events[i].hash = digest(&[b"bulwark audit line", &content(&events[i])], key);
    }
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    fs::write(log_path(d), text).unwrap();
    let last = events.last().unwrap();
    let mut head = serde_json::json!({ "seq": last.seq, "hash": last.hash });
    if key.is_some() {
        let seq = last.seq.to_string();
        head["mac"] = digest(&[b"bulwark audit head", seq.as_bytes(), last.hash.as_bytes()], key).into();
    }
    fs::write(d.root.join("var/log/bulwark/audit.head"), head.to_string()).unwrap();
}

#[test]
fn a_line_rewritten_without_the_key_fails_verify_naming_the_line_and_check() {
    let mut lab = Lab::new("audit-rewrite");
    lab.daemon.start(None);
    let d = &lab.daemon;
    d.apply(&d.write_profile("a", A), &[]);
    d.apply(&d.write_profile("b", B), &[]);
    let mut evs = events(d);
    let target = evs.iter().position(|e| e.message.contains("gen-a")).unwrap() + 1;
    evs[target - 1].message = evs[target - 1].message.replace("gen-a", "trusted");

    // Every hash from the edited line on and the head recomputed, without the key.
    rewrite(d, &mut evs, target, None);
    let r = d.ctl(&["audit", "verify"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stdout.contains(&format!(
            "BROKEN after {} events: line {target}, hash: HMAC-SHA256",
            target - 1
        )),
        "{r}"
    );

    // The same rewrite with the host's key verifies: the key, and only the
    // key, is what it takes.
    let key = fs::read(d.state_dir().join("integrity.key")).unwrap();
    rewrite(d, &mut evs, target, Some(&key));
    verify_ok(d, "after a rewrite with the host's key");

    // Cutting the last line is named too.
    let text = fs::read_to_string(log_path(d)).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    fs::write(log_path(d), kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let r = d.ctl(&["audit", "verify"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stdout.contains("audit.head, seq: records line"), "{r}");
}

#[test]
fn a_log_written_before_keying_verifies_after_the_upgrade() {
    let mut lab = Lab::new("audit-upgrade");
    let d = &mut lab.daemon;
    // Three events chained with plain SHA-256, as before the chain was keyed.
    let dir = d.root.join("var/log/bulwark");
    fs::create_dir_all(&dir).unwrap();
    let mut old: Vec<AuditEvent> = (1..=3)
        .map(|seq| AuditEvent {
            seq,
            time: "2024-05-01T10:00:00Z".to_owned(),
            event: "BWK-CHG-0001".to_owned(),
            severity: "notice".to_owned(),
            result: "success".to_owned(),
            message: format!("generation {seq} from an earlier release"),
            prev: "0".repeat(64),
            ..AuditEvent::default()
        })
        .collect();
    rewrite(d, &mut old, 1, None);
    d.start(None);
    verify_ok(d, "after upgrading an unkeyed log");
    let evs = events(d);
    let json = |e: &[AuditEvent]| serde_json::to_string(e).unwrap();
    assert_eq!(json(&evs[..3]), json(&old), "the old lines were changed");
    assert_eq!(evs[3].event, "BWK-SYS-0006", "{:?}", evs[3]);
    assert!(evs[3].message.contains("the 3 earlier event(s)"), "{:?}", evs[3]);
}
