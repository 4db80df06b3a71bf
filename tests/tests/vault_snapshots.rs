//! Off-site Vault snapshots and restore tests, through bulwarkd and
//! bulwarkctl, against the real OpenBao and a real S3 server that checks
//! SigV4 signatures (s3s-fs, whose bucket is a plain directory the test
//! reads and corrupts from outside).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod vault_lab;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bulwark_tests::bulwark_model::evidence::{ControlStatus, Evidence};
use bulwark_tests::bulwark_model::vault::{RestoreTest, SnapshotEntry, SnapshotsResponse};
use bulwark_tests::{in_ns, poll, run, run_with_stdin, Daemon, Lab};
use vault_lab::*;

const START: Duration = Duration::from_secs(90);
const ACCESS: &str = "bwkaccess0123456789";
const SECRET: &str = "bwk-s3-secret-6f1d0c9a8b7e4d2f";
const BUCKET: &str = "vault-snaps";
const PREFIX: &str = "hosts/t1/";
const S3_PORT: u16 = 19000;

/// The s3s-fs binary (`BULWARK_S3S_FS`, set by scripts/test); missing is a failure.
fn s3s_fs() -> PathBuf {
    let p = PathBuf::from(std::env::var("BULWARK_S3S_FS").unwrap_or_else(|_| {
        panic!("BULWARK_S3S_FS is not set: point it at the s3s-fs 0.14.1 binary (.ci/run installs it; scripts/test sets it)")
    }));
    assert!(p.is_file(), "BULWARK_S3S_FS={} does not exist", p.display());
    p
}

/// A running s3s-fs inside the vps namespace, killed by PID on drop.
struct S3 {
    child: Child,
    dir: PathBuf,
}

impl S3 {
    fn start(ns: &str, dir: &Path) -> S3 {
        fs::create_dir_all(dir.join(BUCKET)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &S3_PORT.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ns2 = ns.to_owned();
        let up = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            let ns = ns2.clone();
            in_ns(&ns, || TcpStream::connect(("127.0.0.1", S3_PORT)).is_ok()).then_some(())
        });
        assert!(up.is_some(), "s3s-fs did not start");
        S3 {
            child,
            dir: dir.to_owned(),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The snapshot objects in the bucket under the prefix, by name.
    fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let dir = self.dir.join(BUCKET).join(PREFIX);
        let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".snap"))
                    .map(|n| {
                        let b = fs::read(dir.join(&n)).unwrap();
                        (n, b)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn credentials(d: &Daemon, secret: &str) -> PathBuf {
    let p = d.root.join("etc/bulwark/s3-credentials");
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(
        &p,
        format!("access_key_id = \"{ACCESS}\"\nsecret_access_key = \"{secret}\"\n"),
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn snapshot_profile(url: &str, keep: u32, every: &str, restore_test_every: &str) -> String {
    profile(
        url,
        bao_sha256(),
        "static",
        "\"off\"",
        &format!(
            "\n[vault.snapshots]\nevery = \"{every}\"\nkeep = {keep}\nrestore_test_every = \"{restore_test_every}\"\n\
             s3 = {{ endpoint = \"http://127.0.0.1:{S3_PORT}\", bucket = \"{BUCKET}\", prefix = \"{PREFIX}\", \
             credentials = {{ file = \"/etc/bulwark/s3-credentials\" }} }}\n"
        ),
    )
}

fn sha(b: &[u8]) -> String {
    let r = run_with_stdin(&mut Command::new("sha256sum"), b);
    r.stdout.split_whitespace().next().unwrap().to_owned()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn listing(d: &Daemon) -> SnapshotsResponse {
    d.ctl_json(&["vault", "snapshots"])
}

fn local_files(d: &Daemon) -> Vec<String> {
    let dir = d.root.join("var/lib/bulwark/vault/snapshots");
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn events(d: &Daemon) -> Vec<(String, String)> {
    d.audit_tail(500).into_iter().map(|e| (e.event, e.message)).collect()
}

/// Bring up a static Vault with snapshots and wait until its first
/// scheduled snapshot is taken.
fn vault_with_snapshots(lab: &mut Lab, keep: u32, every: &str, restore_test_every: &str) {
    let url = serve_bao(&lab.net.vps);
    lab.daemon.start(None);
    credentials(&lab.daemon, SECRET);
    let p = lab
        .daemon
        .write_profile("snap", snapshot_profile(&url, keep, every, restore_test_every));
    lab.daemon.apply(&p, &[]);
    wait_for(&lab.daemon, "unsealed and claimed", START, |s| {
        unsealed(s) && s.custody_record
    });
}

/// `count` KV secrets written with `token` through the API, from inside the namespace.
fn write_secrets(ns: &str, token: &str, count: usize) {
    let token = token.to_owned();
    in_ns(ns, move || {
        for i in 0..count {
            let body = format!("{{\"value\":\"secret-number-{i}-{}\"}}", "x".repeat(64));
            let mut c = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
            write!(
                c,
                "POST /v1/bulwark/load/{i} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 204"), "writing secret {i}: {answer}");
        }
    });
}

#[test]
fn snapshots_land_in_the_bucket_with_their_digest_retention_prunes_both_sides_and_restore_tests_catch_corruption() {
    let mut lab = Lab::new("vsn-s3");
    let ns = lab.net.vps.clone();
    let s3dir = lab.daemon.root.join("s3");
    let s3 = S3::start(&ns, &s3dir);
    vault_with_snapshots(&mut lab, 2, "1h", "off");
    let d = &lab.daemon;
    // The first one is scheduled (none yet): it comes on its own.
    poll(START, Duration::from_millis(300), || {
        (listing(d).snapshots.iter().any(|e| e.uploaded.is_some())).then_some(())
    })
    .unwrap_or_else(|| panic!("no scheduled snapshot reached the bucket\n{}", d.logs()));

    let keys = init(d);
    let root = keys.root_token.clone().unwrap();
    let t = Instant::now();
    write_secrets(&ns, &root, 1000);
    eprintln!("FIGURE writing 1,000 KV secrets: {:?}", t.elapsed());

    let mut taken = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = d.ctl(&["--json", "vault", "snapshot"]);
        assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
        let e: SnapshotEntry = serde_json::from_str(&r.stdout).unwrap();
        eprintln!(
            "FIGURE snapshot with 1,000 secrets: {} bytes, snapshot {} ms, upload+read-back {} ms, whole command {:?}",
            e.size,
            e.took_ms,
            e.upload_ms.unwrap(),
            t.elapsed()
        );
        assert!(e.uploaded.is_some() && e.local, "{e:?}");
        taken.push(e);
    }
    // Retention: the newest two, locally and in the bucket, with the recorded digests.
    let newest: Vec<String> = taken[1..].iter().map(|e| e.name.clone()).collect();
    assert_eq!(local_files(d), newest, "local retention");
    let objects = s3.objects();
    assert_eq!(
        objects.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        newest,
        "remote retention"
    );
    for ((name, bytes), e) in objects.iter().zip(&taken[1..]) {
        assert_eq!(
            (name, sha(bytes)),
            (&e.name, e.sha256.clone()),
            "the object's bytes differ"
        );
        let local = d.root.join("var/lib/bulwark/vault/snapshots").join(name);
        assert_eq!(sha(&fs::read(&local).unwrap()), e.sha256);
        assert_eq!(mode(&local), 0o600, "{}", local.display());
    }
    assert_eq!(mode(&d.root.join("var/lib/bulwark/vault/snapshots")), 0o700);
    let l = listing(d);
    assert_eq!(l.objects.len(), 2, "{l:#?}");
    assert!(l.objects.iter().all(|o| o.sha256.is_some()), "{l:#?}");
    let ev = events(d);
    assert!(
        ev.iter()
            .any(|(e, m)| e == "BWK-VLT-0204" && m.contains(&taken[0].name)),
        "{ev:?}"
    );
    assert!(ev.iter().filter(|(e, _)| e == "BWK-VLT-0202").count() >= 3, "{ev:?}");

    // The restore test passes from the off-site copy.
    let r = d.ctl(&["--json", "vault", "restore-test"]);
    assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
    let t: RestoreTest = serde_json::from_str(&r.stdout).unwrap();
    assert!(t.passed && t.source == "remote" && t.snapshot == taken[2].name, "{t:?}");
    eprintln!(
        "FIGURE restore test with 1,000 secrets (download, throw-away bao, restore, canary): {} ms",
        t.took_ms
    );
    assert!(
        !d.root.join("run/bulwark/vault-restore-test").exists(),
        "the throw-away Vault's directory is left"
    );
    assert_eq!(bao_processes(&ns).len(), 1, "the throw-away bao is left");
    let (_, metrics) = d.http("GET", "/v1/metrics", None);
    for g in [
        "bulwark_vault_snapshot_local_timestamp_seconds",
        "bulwark_vault_snapshot_remote_timestamp_seconds",
        "bulwark_vault_restore_test_timestamp_seconds",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(g))
            .unwrap_or_else(|| panic!("{g} missing:\n{metrics}"));
        let v: f64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(v > 1.7e9, "{line}");
    }
    assert!(
        metrics.contains("bulwark_vault_restore_test_success{module=\"vault\"} 1"),
        "{metrics}"
    );
    let (level, reason) = snapshot_health(d);
    assert_eq!(level, "ok", "{reason}");
    assert!(reason.contains("restore test passed"), "{reason}");

    // A corrupted off-site copy: the test fails loudly.
    let (name, mut bytes) = s3.objects().pop().unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(s3dir.join(BUCKET).join(PREFIX).join(&name), &bytes).unwrap();
    let r = d.ctl(&["--json", "vault", "restore-test"]);
    assert_eq!(r.code, Some(1), "{r}");
    let t: RestoreTest = serde_json::from_str(&r.stdout).unwrap();
    assert!(!t.passed && t.reason.contains("SHA-256"), "{t:?}");
    let h = d.ctl(&["health"]);
    assert_eq!(h.code, Some(2), "a failed restore test must be CRITICAL:\n{h}");
    let (level, reason) = snapshot_health(d);
    assert_eq!(level, "critical", "{reason}");
    assert!(reason.contains("restore test") && reason.contains(&name), "{reason}");
    assert!(events(d).iter().any(|(e, m)| e == "BWK-VLT-0206" && m.contains(&name)));
    assert!(metrics_now(d).contains("bulwark_vault_restore_test_success{module=\"vault\"} 0"));

    // Restore: refused without --yes and a terminal; with it, the data of
    // the snapshot replaces what came after.
    let put = |path: &str| {
        let r = curl(
            &ns,
            &[
                "-X",
                "POST",
                "-H",
                &format!("X-Vault-Token: {root}"),
                "-d",
                "{\"value\":\"later\"}",
                &format!("http://127.0.0.1:{PORT}/v1/bulwark/{path}"),
            ],
        );
        assert!(r.ok(), "{r}");
    };
    let get = |path: &str| {
        curl(
            &ns,
            &[
                "-H",
                &format!("X-Vault-Token: {root}"),
                &format!("http://127.0.0.1:{PORT}/v1/bulwark/{path}"),
            ],
        )
        .stdout
    };
    put("after-the-snapshot");
    assert!(get("after-the-snapshot").contains("later"));
    let ctl = |args: &[&str], stdin: &str| {
        let mut cmd = Command::new(bulwark_tests::bin("bulwarkctl"));
        cmd.env_remove("SSH_CONNECTION")
            .arg("--socket")
            .arg(d.socket())
            .args(args);
        run_with_stdin(&mut cmd, stdin.as_bytes())
    };
    let r = ctl(&["vault", "restore", &taken[1].name], &format!("{root}\n"));
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("--yes"), "{r}");
    assert!(
        get("after-the-snapshot").contains("later"),
        "restored without confirmation"
    );
    // The corrupted newest copy is refused, the intact older one restores.
    let r = ctl(&["vault", "restore", &taken[2].name, "--yes"], &format!("{root}\n"));
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("SHA-256"), "{r}");
    let r = ctl(&["vault", "restore", &taken[1].name, "--yes"], &format!("{root}\n"));
    assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
    let gone = poll(Duration::from_secs(30), Duration::from_millis(300), || {
        let a = get("after-the-snapshot");
        (a.contains("errors") && get("load/999").contains("secret-number-999")).then_some(())
    });
    assert!(
        gone.is_some(),
        "after the restore: {} / {}",
        get("after-the-snapshot"),
        get("load/999")
    );
    wait_for(d, "unsealed after the restore", START, unsealed);
    assert!(events(d)
        .iter()
        .any(|(e, m)| e == "BWK-VLT-0207" && m.contains(&taken[1].name)));

    // The secret and access key: nowhere but s3s-fs's own command line.
    let mut hay = leak_haystacks(d, &ns);
    for args in [&["--json", "vault", "snapshots"][..], &["vault", "snapshots"]] {
        let r = d.ctl(args);
        hay.push((
            format!("bulwarkctl {}", args.join(" ")),
            format!("{}{}", r.stdout, r.stderr).into_bytes(),
        ));
    }
    assert_not_leaked(&ns, &hay, &[SECRET, ACCESS, root.as_str()]);
}

/// The `vault-snapshots` health check: level and reason.
fn snapshot_health(d: &Daemon) -> (String, String) {
    let r = d.ctl(&["--json", "health"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r}"));
    let checks = v["checks"].as_array().unwrap_or_else(|| panic!("no checks: {v}"));
    let c = checks
        .iter()
        .find(|c| c["name"] == "vault-snapshots")
        .unwrap_or_else(|| panic!("no vault-snapshots check: {v}"));
    (
        c["level"].as_str().unwrap().to_lowercase(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

/// The PID of the process named `comm` in namespace `ns`.
fn pid_of(ns: &str, comm: &str) -> i32 {
    let r = run(Command::new("ip").args(["netns", "pids", ns]));
    r.stdout
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
        .unwrap_or_else(|| panic!("no {comm} in {ns}"))
}

fn metrics_now(d: &Daemon) -> String {
    d.http("GET", "/v1/metrics", None).1
}

/// The s3s-fs processes (and the `ip netns exec` that started them) in `ns`.
fn s3_pids(ns: &str) -> Vec<String> {
    let r = run(Command::new("ip").args(["netns", "pids", ns]));
    r.stdout
        .split_whitespace()
        .filter(|p| fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.windows(6).any(|w| w == b"s3s-fs")))
        .map(str::to_owned)
        .collect()
}

/// Panics naming the first place in `hay` that holds one of `secrets`;
/// s3s-fs's own command line (which carries its keys) is not a leak.
fn assert_not_leaked(ns: &str, hay: &[(String, Vec<u8>)], secrets: &[&str]) {
    let s3_pid = s3_pids(ns);
    for (place, bytes) in hay {
        if s3_pid.iter().any(|p| place.starts_with(&format!("/proc/{p}/"))) {
            continue;
        }
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} leaked into {place}"
            );
        }
    }
}

#[test]
fn s3_down_keeps_the_snapshot_locally_with_a_warning_uploads_it_when_back_and_a_wrong_secret_is_named() {
    let mut lab = Lab::new("vsn-down");
    let ns = lab.net.vps.clone();
    let s3dir = lab.daemon.root.join("s3");
    // The server is down from the start; snapshots and restore tests on a short schedule.
    vault_with_snapshots(&mut lab, 50, "15s", "15s");
    let d = &lab.daemon;
    let r = d.ctl(&["--json", "vault", "snapshot"]);
    assert_eq!(r.code, Some(1), "an upload that failed must fail the command:\n{r}");
    let e: SnapshotEntry = serde_json::from_str(&r.stdout).unwrap();
    assert!(e.local && e.uploaded.is_none(), "{e:?}");
    assert!(e.upload_error.as_deref().unwrap().contains("cannot reach"), "{e:?}");
    assert!(local_files(d).contains(&e.name), "the local snapshot is gone");
    let (level, reason) = snapshot_health(d);
    assert_eq!(level, "warning", "S3 down must be WARNING: {reason}");
    assert!(reason.contains("not off-site yet"), "{reason}");
    let h = d.ctl(&["health"]);
    assert_ne!(h.code, Some(0), "{h}");

    // Back: the pending uploads go out on their own (backoff from 10 s).
    let s3 = S3::start(&ns, &s3dir);
    let t = Instant::now();
    poll(Duration::from_secs(120), Duration::from_millis(500), || {
        let l = listing(d);
        (!l.snapshots.is_empty() && l.snapshots.iter().all(|e| e.uploaded.is_some())).then_some(())
    })
    .unwrap_or_else(|| panic!("not uploaded after S3 came back: {:#?}\n{}", listing(d), d.logs()));
    eprintln!("S3 back -> pending snapshots uploaded: {:?}", t.elapsed());
    let names: Vec<String> = s3.objects().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&e.name), "{names:?}");
    let (level, reason) = snapshot_health(d);
    assert_eq!(level, "ok", "{reason}");
    // The schedule: more snapshots than were asked for, and a restore test nobody asked for.
    let l = poll(Duration::from_secs(90), Duration::from_millis(500), || {
        let l = listing(d);
        (l.snapshots.len() >= 3 && l.last_restore_test.is_some()).then_some(l)
    })
    .unwrap_or_else(|| panic!("no scheduled snapshot or restore test: {:#?}\n{}", listing(d), d.logs()));
    let t = l.last_restore_test.unwrap();
    assert!(t.passed && t.reason.contains("canary matched"), "{t:?}");

    // A full disk: the snapshot fails naming the file, nothing half-written is left.
    // (In bulwarkd's own mount namespace: `ip netns exec` gave it one.)
    let snaps = d.root.join("var/lib/bulwark/vault/snapshots");
    let mnt = format!("--mount=/proc/{}/ns/mnt", pid_of(&ns, "bulwarkd"));
    let inside = |args: &[&str]| {
        let r = run(Command::new("nsenter").arg(&mnt).args(args).arg(&snaps));
        assert!(r.ok(), "{r}");
        r
    };
    inside(&["mount", "-t", "tmpfs", "-o", "size=8k,mode=0700", "tmpfs"]);
    let r = d.ctl(&["vault", "snapshot"]);
    let listed = inside(&["ls", "-A"]).stdout;
    inside(&["umount"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("No space left") && r.stderr.contains(".bwk-tmp"),
        "{r}"
    );
    assert_eq!(listed.trim(), "", "a partial snapshot was left on the full disk");

    // A wrong secret: refused by the server, named clearly, the snapshot kept.
    credentials(d, "wrong-secret-value-0123456789");
    let r = d.ctl(&["--json", "vault", "snapshot"]);
    assert_eq!(r.code, Some(1), "{r}");
    let e: SnapshotEntry = serde_json::from_str(&r.stdout).unwrap();
    let err = e.upload_error.unwrap();
    assert!(
        err.contains("refused the credentials") && err.contains("/etc/bulwark/s3-credentials"),
        "{err}"
    );
    // A credentials file others can read is refused before anything is sent.
    let p = credentials(d, SECRET);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let r = d.ctl(&["--json", "vault", "snapshot"]);
    let e: SnapshotEntry = serde_json::from_str(&r.stdout).unwrap();
    assert!(e.upload_error.unwrap().contains("chmod 600"), "{r}");

    let mut hay = leak_haystacks(d, &ns);
    let r = d.ctl(&["--json", "vault", "snapshots"]);
    hay.push((
        "bulwarkctl vault snapshots".to_owned(),
        format!("{}{}", r.stdout, r.stderr).into_bytes(),
    ));
    assert_not_leaked(&ns, &hay, &[SECRET, ACCESS, "wrong-secret-value-0123456789"]);
}

#[test]
fn a_kill_9_during_the_restore_test_leaves_no_process_or_directory_after_the_restart() {
    let mut lab = Lab::new("vsn-kill");
    let ns = lab.net.vps.clone();
    let s3dir = lab.daemon.root.join("s3");
    let _s3 = S3::start(&ns, &s3dir);
    vault_with_snapshots(&mut lab, 3, "1h", "off");
    let test_dir = lab.daemon.root.join("run/bulwark/vault-restore-test");
    poll(START, Duration::from_millis(300), || {
        listing(&lab.daemon)
            .snapshots
            .iter()
            .any(|e| e.uploaded.is_some())
            .then_some(())
    })
    .expect("a scheduled snapshot");
    let main = bao_pid(&lab.daemon).unwrap();
    let mut ctl = Command::new(bulwark_tests::bin("bulwarkctl"))
        .env_remove("SSH_CONNECTION")
        .arg("--socket")
        .arg(lab.daemon.socket())
        .args(["vault", "restore-test"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the throw-away server, then kill bulwarkd mid-test.
    let throwaway = poll(Duration::from_secs(30), Duration::from_millis(20), || {
        bao_processes(&ns).into_iter().find(|p| *p != main)
    })
    .unwrap_or_else(|| panic!("no throw-away bao appeared\n{}", lab.daemon.logs()));
    lab.daemon.kill9();
    let _ = ctl.wait();
    assert!(
        test_dir.exists(),
        "the test's directory should still be there right after the kill"
    );
    assert!(
        Path::new(&format!("/proc/{throwaway}")).exists(),
        "the throw-away bao died with bulwarkd"
    );
    lab.daemon.restart();
    poll(Duration::from_secs(60), Duration::from_millis(200), || {
        (!test_dir.exists() && !bao_processes(&ns).contains(&throwaway)).then_some(())
    })
    .unwrap_or_else(|| panic!("the interrupted restore test was not cleaned up\n{}", lab.daemon.logs()));
    wait_for(&lab.daemon, "the Vault still unsealed", START, unsealed);
    assert_eq!(bao_processes(&ns), vec![main], "only the adopted Vault runs");
    // And the next test passes.
    let r = lab.daemon.ctl(&["--json", "vault", "restore-test"]);
    assert_eq!(r.code, Some(0), "{r}\n{}", lab.daemon.logs());
    thread::sleep(Duration::from_millis(10));
}

/// `bulwarkctl vault restore-test --shares` with `shares` on stdin.
fn restore_test_with(d: &Daemon, shares: &[&str]) -> bulwark_tests::Ran {
    let mut cmd = Command::new(bulwark_tests::bin("bulwarkctl"));
    cmd.env_remove("SSH_CONNECTION").arg("--socket").arg(d.socket()).args([
        "--json",
        "vault",
        "restore-test",
        "--shares",
    ]);
    let input: String = shares.iter().map(|s| format!("{s}\n")).collect();
    run_with_stdin(&mut cmd, input.as_bytes())
}

#[test]
fn a_manual_custody_snapshot_is_restore_tested_only_with_the_original_shares_which_are_never_kept() {
    let mut lab = Lab::new("vsn-man");
    let ns = lab.net.vps.clone();
    let url = serve_bao(&ns);
    lab.daemon.start(None);
    let text = profile(
        &url,
        bao_sha256(),
        "manual",
        "\"off\"",
        "\n[vault.snapshots]\nevery = \"1h\"\nkeep = 3\nrestore_test_every = \"1h\"\n",
    );
    let p = lab.daemon.write_profile("manual-snap", text);
    lab.daemon.apply(&p, &[]);
    let d = &lab.daemon;
    wait_for(d, "self-initialised", START, |s| s.custody_record);
    let keys = init(d);
    assert_eq!((keys.keys.len(), keys.threshold), (5, 3));
    let root = keys.root_token.clone().expect("a root token");
    wait_for(d, "unsealed (shamir)", START, |s| {
        unsealed(s) && s.seal_type == "shamir"
    });
    let r = d.ctl(&["--json", "vault", "snapshot"]);
    assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
    let test_dir = d.root.join("run/bulwark/vault-restore-test");
    let main = bao_pid(d).unwrap();
    let nothing_left = |what: &str| {
        assert!(!test_dir.exists(), "{what}: the restore test's directory is left");
        assert_eq!(bao_processes(&ns), vec![main], "{what}: only the live Vault runs");
    };

    // Health says how to run it; nothing runs it on its own.
    let (level, reason) = snapshot_health(d);
    assert_eq!(level, "ok", "{reason}");
    assert!(reason.contains("restore-test --shares"), "{reason}");
    assert!(listing(d).last_restore_test.is_none());

    // Without shares, or with too few: refused as a conflict, nothing started.
    let r = d.ctl(&["--json", "vault", "restore-test"]);
    assert_eq!(r.code, Some(6), "{r}");
    assert!(
        r.stdout.contains("original shares") && r.stdout.contains("give 3"),
        "{r}"
    );
    let r = restore_test_with(d, &keys.keys[..2].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, Some(6), "{r}");
    assert!(r.stdout.contains("2 given"), "{r}");
    nothing_left("too few shares");

    // A wrong share is the operator's mistake: a bad request, no failed test.
    let wrong = "00".repeat(keys.keys[0].len() / 2);
    let r = restore_test_with(d, &[keys.keys[0].as_str(), keys.keys[1].as_str(), wrong.as_str()]);
    assert_eq!(r.code, Some(4), "{r}\n{}", d.logs());
    assert!(r.stdout.contains("shares:"), "{r}");
    nothing_left("a wrong share");
    assert!(listing(d).last_restore_test.is_none(), "a typo was recorded as a test");
    assert_ne!(snapshot_health(d).0, "critical");

    // The original shares (any three) open the restored snapshot.
    let r = restore_test_with(
        d,
        &[keys.keys[4].as_str(), keys.keys[2].as_str(), keys.keys[0].as_str()],
    );
    assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
    let t: RestoreTest = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r}"));
    assert!(t.passed, "{t:?}");
    assert!(
        t.reason.contains("canary matched") && t.reason.contains("unsealed with the shares"),
        "{t:?}"
    );
    eprintln!("manual custody restore test: {} ms ({})", t.took_ms, t.reason);
    nothing_left("a passed test");
    let (level, reason) = snapshot_health(d);
    assert_eq!(level, "ok", "{reason}");
    assert!(reason.contains("restore test passed"), "{reason}");
    let ev = events(d);
    assert!(ev.iter().any(|(e, _)| e == "BWK-VLT-0205"), "{ev:?}");
    assert!(!ev.iter().any(|(e, _)| e == "BWK-VLT-0206"), "{ev:?}");
    wait_for(d, "the live Vault still unsealed", START, unsealed);

    // The auditors' report counts the snapshot and the passed test as the
    // backup control's evidence (the refused attempts left no event).
    let out = tempfile::tempdir().unwrap();
    let r = d.ctl(&["evidence", "--out", out.path().to_str().unwrap()]);
    let json = fs::read_to_string(out.path().join("evidence.json")).unwrap_or_else(|e| panic!("{e}: {r}"));
    let report: Evidence = serde_json::from_str(&json).unwrap();
    let backup = report.controls.iter().find(|c| c.id == "backup").unwrap();
    let b = backup.backups.as_ref().unwrap();
    assert!(b.configured, "{backup:#?}");
    assert_eq!(backup.status, ControlStatus::Pass, "{backup:#?}");
    assert!(!b.snapshots.is_empty(), "{backup:#?}");
    assert_eq!(b.restore_tests.len(), 1, "{backup:#?}");

    // The shares were used in memory only.
    let mut secrets: Vec<(&str, &str)> = keys.keys.iter().map(|k| ("an unseal share", k.as_str())).collect();
    secrets.push(("the root token", root.as_str()));
    assert_no_leak(d, &ns, &secrets);
}

const K3S_CONFIG: &str = "etc/rancher/k3s/config.yaml.d/50-bulwark.yaml";
const K3S_KEYS: &str = "etc/rancher/k3s/config.yaml.d/51-bulwark-etcd-s3.yaml";

/// The snapshot profile with K3s bound to the admin address and handed
/// the bucket (`etcd` is the `[k3s.etcd_snapshots]` body; empty: none).
fn k3s_profile(url: &str, retention: u32, etcd: bool) -> String {
    let etcd = if etcd {
        format!("\n[k3s.etcd_snapshots]\nschedule = \"0 */6 * * *\"\nretention = {retention}\ns3 = true\n")
    } else {
        String::new()
    };
    snapshot_profile(url, 1, "1h", "off").replace(
        "name = \"vault-test\"\n",
        "name = \"vault-test\"\ndrift_interval = \"2s\"\n",
    ) + &format!("\n[k3s]\nbind = \"198.51.100.1\"\nrestart = false\n{etcd}")
}

/// A stand-in for K3s's etcd snapshot upload (K3s itself cannot run here):
/// it merges config.yaml.d the way K3s does (files in lexical order, later
/// keys win), then PUTs a snapshot object signed with the keys and to the
/// endpoint, bucket, folder and region found there. Returns the object key.
fn k3s_standin_uploads_an_etcd_snapshot(ns: &str, root: &Path, keys_dir: &Path) -> String {
    use bulwark_tests::bulwark_model::profile::{S3Credentials, S3 as S3Target};
    let dir = root.join("etc/rancher/k3s/config.yaml.d");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut cfg = std::collections::BTreeMap::new();
    for f in files {
        for line in fs::read_to_string(f).unwrap().lines() {
            if let Some((k, v)) = line.split_once(": ").filter(|_| !line.starts_with('#')) {
                cfg.insert(k.to_owned(), v.trim_matches('"').to_owned());
            }
        }
    }
    assert_eq!(cfg.get("etcd-s3").map(String::as_str), Some("true"), "{cfg:?}");
    let scheme = if cfg.get("etcd-s3-insecure").is_some_and(|v| v == "true") {
        "http"
    } else {
        "https"
    };
    let keys = keys_dir.join("keys");
    fs::write(
        &keys,
        format!(
            "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            cfg["etcd-s3-access-key"], cfg["etcd-s3-secret-key"]
        ),
    )
    .unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
    let target = S3Target {
        endpoint: format!("{scheme}://{}", cfg["etcd-s3-endpoint"]),
        bucket: cfg["etcd-s3-bucket"].clone(),
        prefix: format!("{}/", cfg["etcd-s3-folder"]),
        region: cfg["etcd-s3-region"].clone(),
        credentials: S3Credentials::File(keys.to_str().unwrap().to_owned()),
    };
    let snapshot = b"etcd snapshot bytes from the K3s stand-in".to_vec();
    let digest = sha(&snapshot);
    in_ns(ns, move || {
        let bucket = bulwark_agent::vault::s3::Bucket::open(&target, |p: &str| PathBuf::from(p)).unwrap();
        bucket
            .upload("etcd-snapshot-vps-1764633600", snapshot, &digest)
            .unwrap();
        bucket.key("etcd-snapshot-vps-1764633600")
    })
}

/// Every file under `dir` but `except` and programs (over 8 MiB), with its path.
fn files_under(dir: &Path, except: &[PathBuf], out: &mut Vec<(String, Vec<u8>)>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files_under(&p, except, out);
        } else if t.is_file() && !except.contains(&p) && e.metadata().unwrap().len() < 8 << 20 {
            out.push((p.display().to_string(), fs::read(&p).unwrap_or_default()));
        }
    }
}

#[test]
fn k3s_is_handed_the_bucket_and_its_keys_stay_out_of_generations_plans_and_logs() {
    let mut lab = Lab::new("vsn-k3s");
    let ns = lab.net.vps.clone();
    let s3dir = lab.daemon.root.join("s3");
    let s3 = S3::start(&ns, &s3dir);
    let url = serve_bao(&ns);
    lab.daemon.start(None);
    let creds = credentials(&lab.daemon, SECRET);
    let d = &lab.daemon;
    let p = d.write_profile("k3s", k3s_profile(&url, 3, true));

    // The dry run names the keys' drop-in and its source, never the keys.
    let dry = d.ctl_ok(&["apply", "--dry-run", p.to_str().unwrap()]);
    assert!(!dry.stdout.contains(SECRET) && !dry.stdout.contains(ACCESS), "{dry}");
    assert!(
        dry.stdout
            .contains("51-bulwark-etcd-s3.yaml (S3 keys from /etc/bulwark/s3-credentials, mode 0600)"),
        "{dry}"
    );
    assert!(
        dry.stdout
            .contains("to s3://vault-snaps/hosts/t1/k3s-etcd at 127.0.0.1:19000"),
        "{dry}"
    );
    d.apply(&p, &[]);
    wait_for(d, "unsealed and claimed", START, |s| unsealed(s) && s.custody_record);

    let config = fs::read_to_string(d.root.join(K3S_CONFIG)).unwrap();
    for line in [
        "etcd-snapshot-schedule-cron: \"0 */6 * * *\"",
        "etcd-snapshot-retention: 3",
        "etcd-s3: true",
        "etcd-s3-endpoint: \"127.0.0.1:19000\"",
        "etcd-s3-bucket: \"vault-snaps\"",
        "etcd-s3-folder: \"hosts/t1/k3s-etcd\"",
        "etcd-s3-region: \"us-east-1\"",
        "etcd-s3-insecure: true",
    ] {
        assert!(config.lines().any(|l| l == line), "{line} missing from:\n{config}");
    }
    assert_eq!(mode(&d.root.join(K3S_CONFIG)), 0o644);
    let keys = d.root.join(K3S_KEYS);
    assert_eq!(mode(&keys), 0o600);
    let text = fs::read_to_string(&keys).unwrap();
    assert!(
        text.contains(&format!("etcd-s3-access-key: \"{ACCESS}\"\n"))
            && text.contains(&format!("etcd-s3-secret-key: \"{SECRET}\"\n")),
        "{text}"
    );
    let ev = events(d);
    assert!(
        ev.iter().any(|(e, m)| e == "BWK-K3S-0006"
            && m.contains("at \"0 */6 * * *\", keep 3, to s3://vault-snaps/hosts/t1/k3s-etcd")),
        "{ev:?}"
    );

    // What K3s would upload with those settings is signed right and lands
    // in its own folder, which the Vault's retention (keep = 1) leaves alone.
    let keys_dir = tempfile::tempdir().unwrap();
    let key = k3s_standin_uploads_an_etcd_snapshot(&ns, &d.root, keys_dir.path());
    assert_eq!(key, "hosts/t1/k3s-etcd/etcd-snapshot-vps-1764633600");
    let object = s3dir.join(BUCKET).join(&key);
    for _ in 0..2 {
        d.ctl_ok(&["vault", "snapshot"]);
    }
    assert_eq!(s3.objects().len(), 1, "the Vault's retention keeps one");
    assert_eq!(fs::read(&object).unwrap(), b"etcd snapshot bytes from the K3s stand-in");

    // The keys' drop-in deleted or opened to others: put back by drift repair.
    fs::remove_file(&keys).unwrap();
    poll(Duration::from_secs(20), Duration::from_millis(200), || {
        keys.exists().then_some(())
    })
    .unwrap_or_else(|| panic!("the keys' drop-in was not repaired:\n{}", d.logs()));
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o644)).unwrap();
    poll(Duration::from_secs(20), Duration::from_millis(200), || {
        (mode(&keys) == 0o600).then_some(())
    })
    .unwrap_or_else(|| panic!("the keys' drop-in stayed world-readable:\n{}", d.logs()));
    assert!(events(d)
        .iter()
        .any(|(e, m)| e == "BWK-K3S-0004" && m.contains("51-bulwark-etcd-s3.yaml")));

    // Credentials others can read: the next apply is refused, naming the
    // file, and the settings in force stay.
    let gens = d.generations().len();
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o644)).unwrap();
    let p4 = d.write_profile("k3s4", k3s_profile(&url, 4, true));
    let r = d.ctl(&["apply", p4.to_str().unwrap()]);
    assert_eq!(r.code, Some(6), "{r}");
    assert!(
        r.stderr.contains("k3s.etcd_snapshots.s3")
            && r.stderr.contains("s3-credentials")
            && r.stderr.contains("chmod 600"),
        "{r}"
    );
    assert_eq!(d.generations().len(), gens);
    assert_eq!(fs::read_to_string(d.root.join(K3S_CONFIG)).unwrap(), config);
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o600)).unwrap();

    // Nowhere but the credentials file and the keys' drop-in: not in the
    // state directory (generations, plans, artifacts), logs, audit logs,
    // API answers, command lines or environments.
    let mut hay = leak_haystacks(d, &ns);
    files_under(&d.root, &[creds.clone(), keys.clone()], &mut hay);
    assert_not_leaked(&ns, &hay, &[SECRET, ACCESS]);
    assert!(
        hay.iter().any(|(p, _)| p.contains("/generations/")),
        "the walk saw no generation"
    );

    // Without the section: both settings and keys are gone.
    let p = d.write_profile("k3s-plain", k3s_profile(&url, 3, false));
    d.apply(&p, &[]);
    assert!(!keys.exists());
    let config = fs::read_to_string(d.root.join(K3S_CONFIG)).unwrap();
    assert!(!config.contains("etcd"), "{config}");
    assert!(events(d).iter().any(|(e, m)| e == "BWK-K3S-0006" && m == "removed"));
}

#[test]
fn systemd_creds_credentials_sign_the_uploads_and_k3s_gets_the_decrypted_keys() {
    let mut lab = Lab::new("vsn-creds");
    let ns = lab.net.vps.clone();
    let s3dir = lab.daemon.root.join("s3");
    let s3 = S3::start(&ns, &s3dir);
    let url = serve_bao(&ns);
    lab.daemon.start(None);
    let d = &lab.daemon;
    // systemd-creds keeps its host key in /var/lib/systemd/credential.secret
    // (and refuses one on tmpfs): a directory of the test's bind-mounted
    // there, in bulwarkd's own mount namespace (`ip netns exec` gave it
    // one), keeps this machine's untouched.
    let mnt = format!("--mount=/proc/{}/ns/mnt", pid_of(&ns, "bulwarkd"));
    let inside = |args: &[&str]| {
        let r = run(Command::new("nsenter").arg(&mnt).args(args));
        assert!(r.ok(), "{r}");
    };
    let machine_key = Path::new("/var/lib/systemd/credential.secret");
    let machine_key_before = fs::read(machine_key).ok();
    let host_key_dir = d.root.join("var/lib/systemd");
    fs::create_dir_all(&host_key_dir).unwrap();
    inside(&["mount", "--bind", host_key_dir.to_str().unwrap(), "/var/lib/systemd"]);
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = plain_dir.path().join("s3-keys");
    fs::write(
        &plain,
        format!("access_key_id = \"{ACCESS}\"\nsecret_access_key = \"{SECRET}\"\n"),
    )
    .unwrap();
    let cred = d.root.join("etc/bulwark/s3.cred");
    fs::create_dir_all(cred.parent().unwrap()).unwrap();
    let encrypt = |name: &str| {
        inside(&[
            "systemd-creds",
            "encrypt",
            &format!("--name={name}"),
            plain.to_str().unwrap(),
            cred.to_str().unwrap(),
        ]);
    };
    encrypt("bulwark-s3");
    let text = k3s_profile(&url, 3, true).replace(
        "credentials = { file = \"/etc/bulwark/s3-credentials\" }",
        "credentials = { systemd_creds = \"/etc/bulwark/s3.cred\" }",
    );
    assert!(text.contains("systemd_creds"), "{text}");
    let p = d.write_profile("creds", text);
    d.apply(&p, &[]);
    wait_for(d, "unsealed and claimed", START, |s| unsealed(s) && s.custody_record);

    // Decrypted for each use: the upload is signed with the keys, and K3s
    // gets them in plain text in its root-only drop-in.
    let r = d.ctl(&["--json", "vault", "snapshot"]);
    assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
    let e: SnapshotEntry = serde_json::from_str(&r.stdout).unwrap();
    let objects = s3.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(
        (objects[0].0.as_str(), sha(&objects[0].1)),
        (e.name.as_str(), e.sha256.clone())
    );
    let keys = d.root.join(K3S_KEYS);
    assert!(fs::read_to_string(&keys)
        .unwrap()
        .contains(&format!("etcd-s3-secret-key: \"{SECRET}\"")));

    // A credential sealed under another name is refused, naming the file.
    encrypt("someone-else");
    let r = d.ctl(&["--json", "vault", "snapshot"]);
    assert_eq!(r.code, Some(1), "{r}");
    let e: SnapshotEntry = serde_json::from_str(&r.stdout).unwrap();
    let err = e.upload_error.unwrap();
    assert!(
        err.contains("vault.snapshots.s3.credentials") && err.contains("s3.cred"),
        "{err}"
    );

    drop(plain_dir);
    assert!(host_key_dir.join("credential.secret").is_file());
    assert_eq!(
        fs::read(machine_key).ok(),
        machine_key_before,
        "this machine's host key changed"
    );
    let mut hay = leak_haystacks(d, &ns);
    files_under(&d.root, &[keys], &mut hay);
    assert_not_leaked(&ns, &hay, &[SECRET, ACCESS]);
}
