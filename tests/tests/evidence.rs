//! `bulwarkctl evidence` from the outside: a host with every module the
//! namespace suite can run (firewall, WireGuard, K3s through the stand-in,
//! IMA, a real OpenBao), with K3s exposed on 0.0.0.0 and the Vault sealed;
//! the files it writes, their digests, the period's bounds, the page as
//! headless Chromium renders and prints it (DOM, screenshot and PDF kept
//! under target/evidence/), and a tampered audit line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../k3s-standin/lab.rs"]
mod lab;
mod vault_lab;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bulwark_tests::bulwark_model::api::AuditEvent;
use bulwark_tests::bulwark_model::evidence::{Control, ControlStatus, Evidence};
use bulwark_tests::{poll, run, run_ok, Daemon, Lab, Ran};
use lab::{wg_name, K3sStandIn, VPN_IP};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vault_lab::{bao_sha256, init, kill_bao, serve_bao, wait_for};

const CONTROLS: [&str; 7] = [
    "access",
    "network",
    "secrets",
    "change",
    "backup",
    "logging",
    "integrity",
];

/// Where a test keeps its report, page dump and screenshot for people to
/// look at after the run: target/evidence/<name>/.
fn artefacts(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/evidence")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kills the wireguard-go serving `iface` when dropped (a daemon killed by
/// the harness leaves it running, and it would keep its namespace alive).
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in wg_go_pids(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = poll(Duration::from_secs(3), Duration::from_millis(20), || {
            wg_go_pids(&self.0).is_empty().then_some(())
        });
        for pid in wg_go_pids(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = fs::remove_file(format!("/var/run/wireguard/{}.sock", self.0));
    }
}

fn wg_go_pids(iface: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        if args.len() >= 2 && args[0].ends_with(b"wireguard-go") && args.last() == Some(&iface.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Every module of the namespace suite in one profile.
fn full_profile(wg: &str, url: &str) -> String {
    format!(
        "[profile]
name = \"evidence-host\"
drift_interval = \"1s\"

[firewall]
admin_cidrs = [\"198.51.100.0/24\"]
admin_tcp = [22]
vpn_tcp = [6443, 10250]

[wireguard]
interface = \"{wg}\"
address = \"{VPN_IP}/24\"
endpoint = \"203.0.113.1:51820\"
backend = \"userspace\"

[k3s]
bind = \"vpn\"
restart = false

[ima]
mode = \"measure\"

[vault]
version = \"2.7.2\"
source = {{ url = \"{url}\", sha256 = \"{sha}\" }}
listen = \"127.0.0.1:{port}\"
tls = \"off\"
custody = \"manual\"
shares = 3
threshold = 2
credential_store = \"file\"
",
        sha = bao_sha256(),
        port = vault_lab::PORT
    )
}

/// `bulwarkctl evidence ARGS --out DIR`, the report it wrote, and its run.
fn evidence(d: &Daemon, dir: &Path, args: &[&str]) -> (Evidence, Ran) {
    let mut all = vec!["evidence"];
    all.extend_from_slice(args);
    all.extend(["--out", dir.to_str().unwrap()]);
    let r = d.ctl(&all);
    let json = fs::read_to_string(dir.join("evidence.json"))
        .unwrap_or_else(|e| panic!("no evidence.json ({e}):\n{r}\n{}", d.logs()));
    let e: Evidence = serde_json::from_str(&json).unwrap_or_else(|e| panic!("evidence.json: {e}\n{json}"));
    (e, r)
}

fn control<'a>(e: &'a Evidence, id: &str) -> &'a Control {
    e.controls
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no control {id}"))
}

/// The digests in SHA256SUMS are the files' own: sha256sum -c agrees.
fn sums_verify(dir: &Path) {
    let r = run(Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(dir));
    assert!(r.ok(), "{r}");
    assert!(
        r.stdout.contains("evidence.json: OK") && r.stdout.contains("evidence.html: OK"),
        "{r}"
    );
}

/// The page as headless Chromium renders it: the DOM after layout, and a
/// screenshot (kept next to it).
fn chromium(html: &Path, keep: &Path) -> String {
    let url = format!("file://{}", html.display());
    let profile = tempfile::tempdir().unwrap();
    let base = |cmd: &mut Command| {
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dump = Command::new("timeout");
    dump.args(["60", "chromium"]);
    base(&mut dump);
    let dom = run_ok(dump.arg("--dump-dom").arg(&url)).stdout;
    fs::write(keep.join("evidence.dom.html"), &dom).unwrap();
    let png = keep.join("evidence.png");
    let mut shot = Command::new("timeout");
    shot.args(["60", "chromium"]);
    base(&mut shot);
    run_ok(
        shot.arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1280,4000")
            .arg(&url),
    );
    let bytes = fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10_000,
        "a {} byte screenshot is a blank page",
        bytes.len()
    );
    // Printable: Chromium's print path lays it out on pages.
    let pdf = keep.join("evidence.pdf");
    let mut print = Command::new("timeout");
    print.args(["60", "chromium"]);
    base(&mut print);
    run_ok(
        print
            .arg(format!("--print-to-pdf={}", pdf.display()))
            .arg("--no-pdf-header-footer")
            .arg(&url),
    );
    let bytes = fs::read(&pdf).unwrap_or_else(|e| panic!("no PDF {}: {e}", pdf.display()));
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    // The page tree's `/Count N`: how many pages were printed.
    let text = String::from_utf8_lossy(&bytes);
    let pages = text
        .split("/Count ")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    assert!(pages >= 2, "{pages} page(s) printed from a report of seven controls");
    dom
}

fn in_period(e: &AuditEvent, since: &str, until: &str) -> bool {
    // RFC 3339 in UTC to the second compares as text.
    e.time.as_str() >= since && e.time.as_str() < until
}

#[test]
fn a_host_with_every_module_reports_each_control_its_failing_checks_and_only_the_periods_events() {
    let mut lab = Lab::new("evd-full");
    let wg = wg_name();
    let _reaper = Reaper(wg.clone());
    let url = serve_bao(&lab.net.vps);
    // A root K3s is "installed" in, without systemd: the drop-ins are written
    // and nothing is restarted.
    fs::create_dir_all(lab.daemon.root.join("usr/local/bin")).unwrap();
    fs::write(lab.daemon.root.join("usr/local/bin/k3s"), "#!/bin/sh\nexit 1\n").unwrap();
    lab.daemon.start(None);
    let p = lab.daemon.write_profile("full", full_profile(&wg, &url));
    lab.daemon.apply(&p, &[]);
    let d = &mut lab.daemon;

    // The Vault: initialised by the operator, then its server killed, so
    // it comes back sealed (manual custody: CRITICAL until shares arrive).
    wait_for(d, "self-initialised", vault_lab_start(), |s| s.custody_record);
    init(d);
    kill_bao(d);
    wait_for(d, "restarted and sealed", vault_lab_start(), |s| {
        s.running && s.sealed == Some(true)
    });
    // K3s ignoring its drop-in and listening everywhere: CRITICAL.
    let _k3s = K3sStandIn::start(&lab.net.vps, &d.root, Some("0.0.0.0"));
    lab::health_until(d, &[], 2);

    // The period: from the second the peer was added to the second of the
    // later change, so events fall on both sides of it.
    std::thread::sleep(Duration::from_millis(1100));
    let configs = tempfile::tempdir().unwrap();
    let conf = |name: &str| configs.path().join(format!("{name}.conf")).to_str().unwrap().to_owned();
    d.ctl_ok(&["add-peer", "alice", "--expires", "30d", "--output", &conf("alice")]);
    std::thread::sleep(Duration::from_millis(1100));
    d.ctl_ok(&["add-peer", "bob", "--output", &conf("bob")]);
    d.ctl_ok(&["disable-peer", "bob"]);
    let events = d.audit_tail(1000);
    let added = |name: &str| {
        events
            .iter()
            .find(|e| e.event == "BWK-WG-0001" && e.message.contains(&format!("peer {name} ")))
            .unwrap_or_else(|| panic!("no BWK-WG-0001 for {name}: {events:#?}"))
            .clone()
    };
    let (alice, bob) = (added("alice"), added("bob"));
    let (since, until) = (alice.time.clone(), bob.time.clone());
    assert!(since < until, "{since} {until}");

    let dir = artefacts("full-host");
    let (e, r) = evidence(d, &dir, &["--since", &since, "--until", &until]);
    println!("{}", r.stdout);
    assert_eq!(
        r.code,
        Some(1),
        "a failing control exits 1, after writing the files:\n{r}"
    );
    sums_verify(&dir);

    // Every control of the table, each with a status.
    let ids: Vec<&str> = e.controls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, CONTROLS);
    let network = control(&e, "network");
    assert_eq!(network.status, ControlStatus::Fail, "{network:#?}");
    assert!(network.reason.contains("0.0.0.0:6443"), "{}", network.reason);
    let secrets = control(&e, "secrets");
    assert_eq!(secrets.status, ControlStatus::Fail, "{secrets:#?}");
    assert!(secrets.reason.contains("sealed"), "{}", secrets.reason);
    assert_eq!(secrets.vault.as_ref().map(|v| v.sealed), Some(Some(true)));
    let backup = control(&e, "backup");
    assert!(
        backup.reason.starts_with("not configured"),
        "backups without snapshots are never a pass: {backup:#?}"
    );
    assert_ne!(backup.status, ControlStatus::Pass);
    assert_eq!(control(&e, "logging").status, ControlStatus::Pass, "{:#?}", e.chain);
    let integrity = control(&e, "integrity");
    assert_eq!(integrity.ima.as_ref().map(|i| i.mode_wanted.as_str()), Some("measure"));
    assert!(!integrity.checks.is_empty(), "{integrity:#?}");
    assert_eq!(e.summary.status, ControlStatus::Fail);
    assert!(
        e.summary.problems.iter().any(|p| p.contains("0.0.0.0:6443"))
            && e.summary.problems.iter().any(|p| p.contains("sealed")),
        "{:#?}",
        e.summary
    );

    // Only the period's events; both peers are in the access review.
    assert!(!e.events.is_empty());
    for ev in &e.events {
        assert!(in_period(ev, &since, &until), "{ev:?} is outside {since} .. {until}");
    }
    let seqs: Vec<u64> = e.events.iter().map(|e| e.seq).collect();
    assert!(seqs.contains(&alice.seq), "{seqs:?}");
    assert!(!seqs.contains(&bob.seq), "until is exclusive: {seqs:?}");
    let before: Vec<&AuditEvent> = events.iter().filter(|ev| ev.time < since).collect();
    assert!(!before.is_empty(), "the test needs events before the period");
    assert!(before.iter().all(|ev| !seqs.contains(&ev.seq)));
    let access = control(&e, "access");
    assert!(access.events.contains(&alice.seq));
    let peers = access.peers.as_ref().expect("an access review");
    let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"], "the review lists every peer in force");
    assert_eq!(
        (peers[0].added_by_uid, peers[0].added_event),
        (Some(0), Some(alice.seq))
    );
    assert_eq!(peers[0].added_by.as_deref(), Some("root"));
    assert!(peers[0].expires.is_some() && peers[1].expires.is_none());
    assert!(peers[1].notes.iter().any(|n| n == "never expires"), "{peers:#?}");
    assert!(!peers[0].disabled && peers[1].disabled, "{peers:#?}");
    assert!(e.chain.ok && e.chain.head.is_some(), "{:#?}", e.chain);
    assert!(e.host.hostname.is_some(), "{:#?}", e.host);

    // The whole log: every event, and the generations applied with who
    // made them and the digest of what is in force.
    let (all, _) = evidence(d, &artefacts("full-host-whole-log"), &[]);
    assert_eq!(all.events.len() as u64, all.chain.lines, "{:#?}", all.chain);
    let gens = control(&all, "change").generations.as_ref().expect("generations");
    let current = gens.iter().find(|g| g.current).expect("the generation in force");
    assert_eq!(Some(current.digest.as_str()), all.host.digest.as_deref());
    assert_eq!(
        (
            current.uid,
            current.user.as_deref(),
            current.reason.as_str(),
            current.confirmation.as_str()
        ),
        (0, Some("root"), "apply", "none"),
        "{gens:#?}"
    );

    // The page: every control's heading, the failures at the top.
    let html = fs::read_to_string(dir.join("evidence.html")).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external assets"
    );
    let dom = chromium(&dir.join("evidence.html"), &dir);
    for c in &e.controls {
        let heading = format!("<h2 id=\"control-{}\">{} (", c.id, c.title);
        assert!(dom.contains(&heading), "no heading {heading:?} in the rendered page");
    }
    let top = dom.find("id=\"summary\"").expect("a summary at the top");
    assert!(
        top < dom.find("id=\"control-access\"").unwrap(),
        "the summary comes first"
    );
    let summary = &dom[top..dom[top..].find("</div>").unwrap() + top];
    assert!(
        summary.contains("Status: fail") && summary.contains("0.0.0.0:6443"),
        "{summary}"
    );
}

fn vault_lab_start() -> Duration {
    Duration::from_secs(90)
}

#[test]
fn a_tampered_audit_line_makes_the_report_say_the_chain_is_broken() {
    let mut lab = Lab::new("evd-tamper");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let p = d.write_profile(
        "open",
        "[profile]\nname = \"open\"\n[firewall]\npublic_tcp = [22, 443]\n",
    );
    d.apply(&p, &[]);
    let p = d.write_profile(
        "closed",
        "[profile]\nname = \"closed\"\n[firewall]\npublic_tcp = [22]\n",
    );
    d.apply(&p, &[]);
    let log = d.root.join("var/log/bulwark/audit.log");
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let target = lines
        .iter()
        .position(|l| l.contains("BWK-CHG-0001") && l.contains("profile open"))
        .unwrap_or_else(|| panic!("no apply of profile open in the log:\n{text}"));
    let edited = text.replacen("profile open", "profile OPEN", 1);
    assert_ne!(edited, text);
    fs::write(&log, edited).unwrap();

    let dir = artefacts("tampered");
    let (e, r) = evidence(d, &dir, &[]);
    println!("{}", r.stdout);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stdout.starts_with("evidence: fail  chain: BROKEN\n"), "{r}");
    let line = target as u64 + 1;
    assert!(!e.chain.ok && !e.summary.chain_ok, "{:#?}", e.chain);
    assert_eq!(e.chain.first_unverified, Some(line), "{:#?}", e.chain);
    assert!(
        e.chain.error.as_deref().unwrap().starts_with(&format!("line {line}")),
        "{:#?}",
        e.chain
    );
    assert!(
        e.summary.problems[0].starts_with("audit chain BROKEN"),
        "{:#?}",
        e.summary
    );
    assert_eq!(control(&e, "logging").status, ControlStatus::Fail);
    assert_eq!(e.summary.status, ControlStatus::Fail);
    // The edited event is still shown, as found, never as proven.
    assert!(e.events.iter().any(|ev| ev.message.contains("profile OPEN")));
    let html = fs::read_to_string(dir.join("evidence.html")).unwrap();
    let summary = html.find("id=\"summary\"").unwrap();
    assert!(html[summary..].contains("audit chain: BROKEN"), "{html}");
    assert!(html.contains("NOT VERIFIED"));
    sums_verify(&dir);

    // A period that cannot be read is refused, naming the bound.
    let (code, body) = d.http("GET", "/v1/evidence?since=2026-1-1", None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("since: \\\"2026-1-1\\\" is not a date"), "{body}");
    let empty = artefacts("empty-period");
    let r = d.ctl(&[
        "evidence",
        "--since",
        "2026-02-01",
        "--until",
        "2026-01-01",
        "--out",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(4), "a period the daemon refuses is invalid input:\n{r}");
    assert!(
        r.stderr
            .contains("until: 2026-01-01T00:00:00Z is not after since: 2026-02-01T00:00:00Z"),
        "{r}"
    );
    assert!(!empty.join("evidence.json").exists(), "a refused report wrote a file");
    let r = d.ctl(&["evidence", "--since", "last week", "--out", empty.to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "a date bulwarkctl cannot read is a usage error:\n{r}");
}
