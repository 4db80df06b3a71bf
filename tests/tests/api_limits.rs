//! No local user can starve the API: connection floods, slow bodies,
//! bursts of readers and floods of refused requests, each made by a real
//! process under another uid (setpriv) against the real socket, while root,
//! an admin and another reader keep being answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bulwark_model::api::AuditEvent;
use bulwark_tests::{run, Daemon, Lab, ADMIN_GID, READ_GID};

/// A reader who floods; another reader; an admin (not root).
const FLOODER: u32 = 61020;
const OTHER_READER: u32 = 61021;
const ADMIN: u32 = 61022;

/// The load generator: plain sockets, so what it does is exactly what it
/// says. `idle N SECS`: hold N connections without sending a byte and
/// reconnect each one the daemon closes, until SECS pass. `burst N`: N
/// concurrent `GET /v1/status`. `refuse N THREADS`: N `POST /v1/apply`.
/// The last two print `{status: count}` as JSON.
const LOAD: &str = r#"
import json, selectors, socket, sys, threading, time
mode, path = sys.argv[1], sys.argv[2]

def call(raw):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(90)
        s.connect(path)
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "no answer"
    except OSError as e:
        return type(e).__name__

def many(n, threads, raw):
    counts, lock, start = {}, threading.Lock(), threading.Barrier(threads)
    def worker(k):
        start.wait()
        for _ in range(k):
            code = call(raw)
            with lock:
                counts[code] = counts.get(code, 0) + 1
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=worker, args=(k,)) for k in per]
    for t in ts: t.start()
    for t in ts: t.join()
    print(json.dumps(counts), flush=True)

if mode == "idle":
    n, secs = int(sys.argv[3]), float(sys.argv[4])
    sel = selectors.DefaultSelector()
    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            return False
        sel.register(s, selectors.EVENT_READ)
        return True
    opened = sum(connect() for _ in range(n))
    print(f"ready {opened}", flush=True)
    reconnects, end = 0, time.time() + secs
    while time.time() < end:
        for key, _ in sel.select(timeout=0.2):
            sel.unregister(key.fileobj)
            key.fileobj.close()
            reconnects += connect()
    print(f"reconnects {reconnects}", flush=True)
elif mode == "burst":
    n = int(sys.argv[3])
    many(n, n, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
elif mode == "refuse":
    n, threads = int(sys.argv[3]), int(sys.argv[4])
    body = b'{"profile": "[profile]\\nname = \\"x\\"\\n"}'
    raw = b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
    many(n, threads, raw + b"Content-Length: %d\r\n\r\n" % len(body) + body)
"#;

/// Debian's python3 (scripts/install-deps), by path: another uid cannot run
/// a python3 found first on root's PATH (a pyenv shim under /root, say).
const PYTHON: &str = "/usr/bin/python3";

/// The load generator as `uid` (groups `groups`), or as root for uid 0.
fn load(d: &Daemon, uid: u32, groups: &[u32], args: &[&str]) -> Command {
    let mut cmd = if uid == 0 {
        Command::new(PYTHON)
    } else {
        let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--groups",
            &groups.join(","),
            "--",
            PYTHON,
        ]);
        c
    };
    cmd.args(["-c", LOAD]).args(&args[..1]).arg(d.socket()).args(&args[1..]);
    cmd
}

/// Counts by HTTP status from a `burst` or `refuse` run.
fn counts(r: &bulwark_tests::Ran) -> std::collections::BTreeMap<String, u64> {
    assert!(r.ok(), "load generator failed:\n{r}");
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("load output ({e}):\n{r}"))
}

/// A child process that is killed (by PID) and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `bulwarkctl status` by root, an admin and another reader, each timed.
fn others_get_status(d: &Daemon) -> Vec<Duration> {
    let mut took = Vec::new();
    for (who, uid, groups) in [
        ("root", 0, &[][..]),
        ("an admin", ADMIN, &[ADMIN_GID][..]),
        ("another reader", OTHER_READER, &[READ_GID][..]),
    ] {
        let t0 = Instant::now();
        let r = if uid == 0 {
            d.ctl(&["status"])
        } else {
            d.ctl_as(uid, uid, groups, &["status"])
        };
        took.push(t0.elapsed());
        assert!(r.ok(), "{who} was kept out by the flood:\n{r}\n{}", d.logs());
    }
    took
}

#[test]
fn a_readers_idle_and_reconnecting_connections_lock_out_nobody_else() {
    let mut lab = Lab::new("lim-idle");
    lab.daemon.start(None);
    let d = &lab.daemon;

    // 800 idle connections: more than one reader's budget (640), so the
    // daemon closes some at once and the flooder keeps reconnecting them.
    let mut child = load(d, FLOODER, &[READ_GID], &["idle", "800", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let flood = Reaped(child);
    let mut ready = String::new();
    out.read_line(&mut ready).unwrap();
    let opened: usize = ready
        .strip_prefix("ready ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("flooder did not start: {ready:?}"));
    assert!(opened >= 700, "the flooder opened only {opened} connections");
    thread::sleep(Duration::from_secs(2));

    // Through the header timeout (10 s) and beyond: idle connections are
    // closed and reopened meanwhile.
    let mut worst = Duration::ZERO;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        worst = worst.max(others_get_status(d).into_iter().max().unwrap());
        thread::sleep(Duration::from_millis(500));
    }
    eprintln!("slowest status while a reader held 800 connections: {worst:?}");
    drop(flood);

    // The flooder's own budget comes back once its connections are gone.
    let back = bulwark_tests::poll(Duration::from_secs(10), Duration::from_millis(200), || {
        d.ctl_as(FLOODER, FLOODER, &[READ_GID], &["status"]).ok().then_some(())
    });
    assert!(back.is_some(), "the flooder's budget was not freed:\n{}", d.logs());
}

#[test]
fn a_body_sent_a_byte_every_5s_is_cut_at_the_total_deadline() {
    let mut lab = Lab::new("lim-slow");
    lab.daemon.start(None);
    let d = &lab.daemon;

    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(
        b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    let t0 = Instant::now();
    let mut trickle = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        // One byte every 5 s: each read is far inside 30 s, the whole is not.
        for _ in 0..20 {
            thread::sleep(Duration::from_secs(5));
            if trickle.write_all(b" ").is_err() {
                return;
            }
        }
    });
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let took = t0.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled body after {took:?}: {answer:?}\n{}",
        d.logs()
    );
    assert!(answer.contains("\"kind\":\"timeout\""), "{answer}");
    assert!(
        (Duration::from_secs(29)..Duration::from_secs(40)).contains(&took),
        "the body deadline is 30 s in total; the request was cut after {took:?}"
    );
    writer.join().unwrap();
    d.ctl_ok(&["status"]);
}

#[test]
fn five_hundred_concurrent_status_calls_are_all_answered() {
    let mut lab = Lab::new("lim-burst");
    lab.daemon.start(None);
    let d = &lab.daemon;

    for (who, uid, groups) in [("root", 0, &[][..]), ("a reader", FLOODER, &[READ_GID][..])] {
        let got = counts(&run(&mut load(d, uid, groups, &["burst", "500"])));
        assert_eq!(
            got.get("200").copied(),
            Some(500),
            "500 concurrent status calls by {who}: {got:?}\n{}",
            d.logs()
        );
    }

    // curl keeps its 500 connections open after each answer. Idle
    // connections must not hold the turns others wait for: every call is
    // answered before the 10 s header timeout could free anything.
    let r = run(Command::new("curl")
        .args([
            "-s",
            "--no-progress-meter",
            "--parallel",
            "--parallel-immediate",
            "--parallel-max",
            "500",
        ])
        .args([
            "--max-time",
            "8",
            "-o",
            "/dev/null",
            "-w",
            "%{stderr}%{http_code}\n",
            "--unix-socket",
        ])
        .arg(d.socket())
        .arg("http://localhost/v1/status?[1-500]"));
    let codes: Vec<&str> = r.stderr.lines().filter(|l| l.len() == 3).collect();
    assert!(
        codes.len() == 500 && codes.iter().all(|c| *c == "200"),
        "500 concurrent keep-alive status calls: {} answered, {} with 200\n{}",
        codes.len(),
        codes.iter().filter(|c| **c == "200").count(),
        d.logs()
    );
}

/// Events `BWK-API-0001` of `uid`, and the refusals they count (each
/// message starts with its count).
fn refusal_events(d: &Daemon, uid: u32) -> (usize, u64) {
    let events: Vec<AuditEvent> = d.audit_tail(1000);
    let mine: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.event == "BWK-API-0001" && e.uid == uid)
        .collect();
    let counted = mine
        .iter()
        .map(|e| {
            let n = e.message.split(' ').next().unwrap_or("");
            assert!(
                e.message.contains(" request(s) refused") && e.result == "refused",
                "{e:?}"
            );
            n.parse::<u64>().unwrap_or_else(|_| panic!("no count in {e:?}"))
        })
        .sum();
    (mine.len(), counted)
}

#[test]
fn ten_thousand_refused_posts_add_one_counted_audit_event_and_few_log_lines_per_interval() {
    let mut lab = Lab::new("lim-refused");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let log = d.root.join("var/log/bulwark/audit.log");
    let before = std::fs::metadata(&log).unwrap().len();

    let t0 = Instant::now();
    let mut flood = load(d, FLOODER, &[READ_GID], &["refuse", "10000", "8"]);
    let flood = thread::spawn(move || run(&mut flood));
    let mut root = Vec::new();
    while !flood.is_finished() {
        let t = Instant::now();
        d.ctl_ok(&["status"]);
        root.push(t.elapsed());
        thread::sleep(Duration::from_millis(250));
    }
    let took = t0.elapsed();
    let got = counts(&flood.join().unwrap());
    assert_eq!(got.get("403").copied(), Some(10_000), "{got:?}");
    root.sort();
    eprintln!(
        "10000 refused POSTs in {took:?}; root's status during them: {} calls, median {:?}, slowest {:?}",
        root.len(),
        root.get(root.len() / 2).copied().unwrap_or_default(),
        root.last().copied().unwrap_or_default()
    );

    // The count of the last interval is recorded when it closes (10 s).
    let (events, counted) = bulwark_tests::poll(Duration::from_secs(20), Duration::from_millis(500), || {
        let (events, counted) = refusal_events(d, FLOODER);
        (counted == 10_000).then_some((events, counted))
    })
    .unwrap_or_else(|| panic!("refusals counted: {:?}\n{}", refusal_events(d, FLOODER), d.logs()));
    let intervals = took.as_secs() / 10 + 1;
    assert!(
        events as u64 <= intervals + 2,
        "{events} events for {counted} refusals over {took:?}: more than one per 10 s interval"
    );
    let grown = std::fs::metadata(&log).unwrap().len() - before;
    assert!(
        grown < 1024 * (intervals + 2),
        "the audit log grew by {grown} bytes for {events} events"
    );
    let v = d.ctl_ok(&["audit", "verify"]);
    assert!(v.stdout.contains("audit chain ok"), "{v}");

    // bulwarkd's request log stays bounded too, and its counts add up.
    let lines = bulwark_tests::poll(Duration::from_secs(15), Duration::from_millis(500), || {
        let (one_by_one, counted) = request_lines(d, FLOODER);
        (one_by_one as u64 + counted == 10_000).then_some(one_by_one)
    })
    .unwrap_or_else(|| panic!("request lines (one by one, counted): {:?}", request_lines(d, FLOODER)));
    assert!(
        lines as u64 <= 50 * (intervals + 2),
        "{lines} request lines logged one by one for uid {FLOODER}"
    );
}

/// Request lines of `uid` in bulwarkd's log: (logged one by one, counted in summaries).
fn request_lines(d: &Daemon, uid: u32) -> (usize, u64) {
    let log = std::fs::read_to_string(d.root.join("bulwarkd.stderr")).unwrap();
    let tag = format!(" uid={uid} ");
    let one_by_one = log
        .lines()
        .filter(|l| l.contains("INFO: request ") && format!("{l} ").contains(&tag))
        .count();
    let counted = log
        .lines()
        .filter(|l| l.contains("not logged one by one") && l.contains(&format!("uid={uid} ")))
        .filter_map(|l| l.split(" unlogged=").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    (one_by_one, counted)
}
