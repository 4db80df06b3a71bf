//! Vault on the host, through bulwarkd and bulwarkctl, against the real
//! OpenBao: the binary downloaded over HTTP inside the test namespace and
//! hashed before use, bao run by bulwarkd in the namespace, every claim
//! checked from outside (its API with curl, its processes by PID, its files).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod vault_lab;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use bulwark_tests::bulwark_model::api::Level;
use bulwark_tests::{run, run_ok, Lab};
use vault_lab::*;

const START: Duration = Duration::from_secs(90);

#[test]
fn a_wrong_sha256_is_refused_with_both_digests_and_nothing_is_installed_or_started() {
    let mut lab = Lab::new("vlt-sha");
    let url = serve_bao(&lab.net.vps);
    lab.daemon.start(None);
    let d = &lab.daemon;
    let before = d.status().generation;
    let wrong = "0".repeat(64);
    let p = d.write_profile("wrong", profile(&url, &wrong, "static", "\"off\"", ""));
    let r = d.ctl(&["apply", p.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{r}");
    let text = format!("{}{}", r.stdout, r.stderr);
    assert!(
        text.contains(&wrong) && text.contains(bao_sha256()),
        "both digests must be named:\n{r}"
    );
    let lib = d.root.join("usr/local/lib/bulwark/vault");
    let left: Vec<_> = fs::read_dir(&lib)
        .map(|e| e.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", lib.display());
    assert!(
        bao_processes(&lab.net.vps).is_empty(),
        "a bao runs although its digest was wrong"
    );
    assert!(!d.state_dir().join("vault/config.hcl").exists());
    assert_eq!(d.status().generation, before, "a refused apply made a generation");
    let events: Vec<String> = d.audit_tail(50).into_iter().map(|e| e.event).collect();
    assert!(events.iter().any(|e| e == "BWK-VLT-0002"), "{events:?}");
}

#[test]
fn manual_custody_init_5_of_3_unseal_with_a_repeated_share_restart_sealed_unseal_again_and_no_secret_leaks() {
    let mut lab = Lab::new("vlt-man");
    let url = serve_bao(&lab.net.vps);
    lab.daemon.start(None);
    let ns = lab.net.vps.clone();
    let p = lab
        .daemon
        .write_profile("manual", profile(&url, bao_sha256(), "manual", "\"off\"", ""));
    lab.daemon.apply(&p, &[]);
    let d = &mut lab.daemon;
    wait_for(d, "self-initialised under the temporary key", START, |s| {
        s.custody_record
    });
    let keys = init(d);
    assert_eq!(
        (keys.keys.len(), keys.threshold, keys.key_kind.as_str()),
        (5, 3, "unseal")
    );
    let root = keys.root_token.clone().expect("a root token");
    let s = status(d);
    assert_eq!((s.seal_type.as_str(), s.sealed), ("shamir", Some(false)), "{s:#?}");
    assert!(
        !d.state_dir().join("vault/keys/staging-key").exists(),
        "the temporary key outlived init"
    );
    assert!(
        !d.state_dir().join("vault/keys/handover").exists(),
        "the keys were kept after ack"
    );
    keys_are_private(d);
    // The root token works, from outside bulwarkd.
    let r = curl(
        &ns,
        &[
            "-H",
            &format!("X-Vault-Token: {root}"),
            &format!("http://127.0.0.1:{PORT}/v1/auth/token/lookup-self"),
        ],
    );
    assert!(r.stdout.contains("\"root\""), "{r}");

    // Restart of bao: sealed, CRITICAL, and three shares unseal it again.
    kill_bao(d);
    wait_for(d, "restarted and sealed", START, |s| {
        s.running && s.sealed == Some(true)
    });
    let h = d.ctl(&["health"]);
    assert_eq!(h.code, Some(2), "sealed must be CRITICAL:\n{h}");
    let (_, a) = give_shares(d, false, &[&keys.keys[3], &keys.keys[3], &keys.keys[0], &keys.keys[4]]);
    assert_eq!((a[0].progress, a[0].repeated), (1, false), "{a:?}");
    assert_eq!(
        (a[1].progress, a[1].repeated),
        (1, true),
        "a repeated share must be reported and ignored: {a:?}"
    );
    assert_eq!(a[2].progress, 2);
    assert!(!a[3].sealed, "{a:?}");
    wait_for(d, "unsealed with three shares", START, unsealed);

    // Restart of bulwarkd too (kill -9, then both): sealed again, unsealed again.
    d.crash_and_reboot();
    d.restart();
    let (s, _) = wait_for(d, "bao back, sealed", START, |s| s.running && s.sealed == Some(true));
    assert_eq!(s.level, Level::Critical);
    give_shares(d, false, &[&keys.keys[1], &keys.keys[2], &keys.keys[0]]);
    wait_for(d, "unsealed after the reboot", START, unsealed);
    assert_eq!(inits(d), 1, "initialised more than once\n{}", bao_log(d));

    // A seal Bulwark did not cause: an audit event, and CRITICAL until unsealed.
    let r = curl(
        &ns,
        &[
            "-X",
            "PUT",
            "-H",
            &format!("X-Vault-Token: {root}"),
            &format!("http://127.0.0.1:{PORT}/v1/sys/seal"),
        ],
    );
    assert!(r.ok(), "{r}");
    let (s, _) = wait_for(d, "the unexpected seal seen", START, |s| {
        s.problems.iter().any(|p| p.contains("unexpected seal"))
    });
    assert_eq!(s.level, Level::Critical, "{s:#?}");
    let events: Vec<String> = d.audit_tail(100).into_iter().map(|e| e.event).collect();
    assert!(events.iter().any(|e| e == "BWK-VLT-0010"), "{events:?}");
    give_shares(d, false, &[&keys.keys[1], &keys.keys[2], &keys.keys[0]]);
    wait_for(d, "unsealed again", START, |s| {
        unsealed(s) && s.problems.iter().all(|p| !p.contains("unexpected"))
    });

    let mut secrets: Vec<(&str, &str)> = keys.keys.iter().map(|k| ("an unseal share", k.as_str())).collect();
    secrets.push(("the root token", root.as_str()));
    assert_no_leak(d, &ns, &secrets);
}

#[test]
fn static_custody_unseals_itself_after_restarts_of_bao_and_of_bulwarkd() {
    let mut lab = Lab::new("vlt-sta");
    let url = serve_bao(&lab.net.vps);
    lab.daemon.start(None);
    let ns = lab.net.vps.clone();
    let p = lab
        .daemon
        .write_profile("static", profile(&url, bao_sha256(), "static", "\"off\"", ""));
    let t0 = Instant::now();
    lab.daemon.apply(&p, &[]);
    let d = &mut lab.daemon;
    let (s, _) = wait_for(d, "unsealed by its static key", START, unsealed);
    eprintln!(
        "FIGURE apply -> unsealed (static, supervised, debug build): {:?}",
        t0.elapsed()
    );
    assert_eq!(s.seal_type, "static");
    keys_are_private(d);
    let key = fs::read_to_string(d.state_dir().join("vault/keys/static-key")).unwrap();
    assert_eq!(key.len(), 64, "32 bytes as hex, no newline");

    kill_bao(d);
    let t = Instant::now();
    wait_for(d, "bao restarted and unsealed by itself", START, |s| {
        unsealed(s) && bao_pid(d).is_some()
    });
    eprintln!("bao killed -> unsealed again: {:?}", t.elapsed());

    // kill -9 of bulwarkd: the running server is adopted, still unsealed.
    let pid = bao_pid(d);
    d.kill9();
    d.restart();
    wait_for(d, "adopted, unsealed", START, unsealed);
    assert_eq!(bao_pid(d), pid, "bulwarkd started a second server instead of adopting");
    assert_eq!(bao_processes(&ns).len(), 1);

    // Both gone (a reboot): bulwarkd starts bao, which unseals itself.
    d.crash_and_reboot();
    assert!(bao_processes(&ns).is_empty());
    d.restart();
    wait_for(d, "unsealed after the reboot", START, unsealed);

    // SIGTERM (a stop outside systemd): bulwarkd stops the bao it runs.
    d.terminate();
    assert_eq!(bao_processes(&ns), Vec::<i32>::new(), "bao outlived bulwarkd");
    assert_eq!(bao_pid(d), None, "the PID file of a stopped bao is left");
    d.restart();
    wait_for(d, "unsealed after the stop", START, unsealed);

    let keys = init(d);
    assert_eq!((keys.keys.len(), keys.key_kind.as_str()), (5, "recovery"));
    let root = keys.root_token.clone().unwrap();
    assert_eq!(inits(d), 1, "{}", bao_log(d));
    let mut secrets: Vec<(&str, &str)> = keys.keys.iter().map(|k| ("a recovery key", k.as_str())).collect();
    secrets.push(("the root token", root.as_str()));
    secrets.push(("the static key", key.as_str()));
    assert_no_leak(d, &ns, &secrets);
}

#[test]
fn migrate_moves_a_manual_vault_to_static_with_its_shares() {
    let mut lab = Lab::new("vlt-mig");
    let url = serve_bao(&lab.net.vps);
    lab.daemon.start(None);
    let manual = lab
        .daemon
        .write_profile("manual", profile(&url, bao_sha256(), "manual", "\"off\"", ""));
    let stat = lab
        .daemon
        .write_profile("static", profile(&url, bao_sha256(), "static", "\"off\"", ""));
    lab.daemon.apply(&manual, &[]);
    let d = &mut lab.daemon;
    wait_for(d, "self-initialised", START, |s| s.custody_record);
    let keys = init(d);
    let plan = d.ctl_ok(&["apply", "--dry-run", stat.to_str().unwrap()]);
    assert!(plan.stdout.contains("custody manual -> static"), "{plan}");
    d.apply(&stat, &[]);
    let (s, _) = wait_for(d, "sealed for the migration", START, |s| s.sealed == Some(true));
    assert!(s.problems.iter().any(|p| p.contains("migrate")), "{s:#?}");
    let (_, a) = give_shares(d, true, &[&keys.keys[0], &keys.keys[1], &keys.keys[2]]);
    assert!(!a.last().unwrap().sealed, "{a:?}");
    let (s, _) = wait_for(d, "unsealed, static", START, |s| {
        unsealed(s) && s.seal_type == "static" && s.custody == "static"
    });
    assert_eq!(s.custody, "static");
    kill_bao(d);
    wait_for(d, "unsealed by itself after a restart", START, |s| {
        unsealed(s) && s.seal_type == "static"
    });
    let events: Vec<String> = d.audit_tail(100).into_iter().map(|e| e.event).collect();
    assert!(events.iter().any(|e| e == "BWK-VLT-0011"), "{events:?}");
    assert_eq!(inits(d), 1);
}

#[test]
fn transit_custody_unseals_through_a_second_real_bao_and_restore_tests_its_snapshot_unattended() {
    let mut lab = Lab::new("vlt-trn");
    let url = serve_bao(&lab.net.vps);
    let ns = lab.net.vps.clone();
    // The transit server: a second, separate bao (dev mode, in memory) in the namespace.
    let dir = tempfile::tempdir().unwrap();
    let log = fs::File::create(dir.path().join("transit.log")).unwrap();
    let transit = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(bao())
        .args([
            "server",
            "-dev",
            "-dev-root-token-id=transit-root-token-0123",
            "-dev-listen-address=127.0.0.1:18300",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = transit.id();
    let _guard = Kill(transit);
    let t = |args: &[&str]| {
        curl(
            &ns,
            &[&["-H", "X-Vault-Token: transit-root-token-0123"][..], args].concat(),
        )
    };
    bulwark_tests::poll(Duration::from_secs(30), Duration::from_millis(200), || {
        curl(&ns, &["http://127.0.0.1:18300/v1/sys/health"])
            .stdout
            .contains("\"sealed\":false")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "transit server (pid {pid}) did not come up:\n{}",
            fs::read_to_string(dir.path().join("transit.log")).unwrap()
        )
    });
    t(&[
        "-X",
        "POST",
        "-d",
        "{\"type\":\"transit\"}",
        "http://127.0.0.1:18300/v1/sys/mounts/transit",
    ]);
    t(&["-X", "POST", "http://127.0.0.1:18300/v1/transit/keys/bulwark-unseal"]);
    let policy = "path \"transit/encrypt/bulwark-unseal\" { capabilities = [\"update\"] }\npath \"transit/decrypt/bulwark-unseal\" { capabilities = [\"update\"] }\n";
    t(&[
        "-X",
        "PUT",
        "-d",
        &serde_json::json!({ "policy": policy }).to_string(),
        "http://127.0.0.1:18300/v1/sys/policies/acl/unseal",
    ]);
    let tok = t(&[
        "-X",
        "POST",
        "-d",
        "{\"policies\":[\"unseal\"],\"no_default_policy\":true,\"period\":\"24h\"}",
        "http://127.0.0.1:18300/v1/auth/token/create",
    ]);
    let token: serde_json::Value = serde_json::from_str(&tok.stdout).unwrap_or_else(|e| panic!("{e}: {tok}"));
    let token = token["auth"]["client_token"].as_str().unwrap().to_owned();
    let token_file = lab.daemon.root.join("transit-token");
    fs::write(&token_file, &token).unwrap();

    lab.daemon.start(None);
    let extra = format!(
        "\n[vault.transit]\naddress = \"http://127.0.0.1:18300\"\nkey_name = \"bulwark-unseal\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    let snapshots = "\n[vault.snapshots]\nevery = \"1h\"\nkeep = 2\nrestore_test_every = \"off\"\n";
    let text = profile(&url, bao_sha256(), "transit", "\"off\"", snapshots).replace(
        "credential_store = \"file\"\n",
        &format!("credential_store = \"file\"{extra}"),
    );
    let p = lab.daemon.write_profile("transit", text);
    lab.daemon.apply(&p, &[]);
    let d = &mut lab.daemon;
    let (s, _) = wait_for(d, "unsealed through transit", START, unsealed);
    assert_eq!(s.seal_type, "transit");
    kill_bao(d);
    wait_for(d, "restarted and unsealed through transit", START, |s| {
        unsealed(s) && s.seal_type == "transit"
    });
    let keys = init(d);
    assert_eq!(keys.key_kind, "recovery");
    // A transit snapshot is restore-tested unattended: the throw-away Vault
    // unwraps the restored keyring through the same transit key.
    let r = d.ctl(&["--json", "vault", "snapshot"]);
    assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
    let r = d.ctl(&["--json", "vault", "restore-test"]);
    assert_eq!(r.code, Some(0), "{r}\n{}", d.logs());
    let t: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r}"));
    assert_eq!(t["passed"], true, "{t}");
    assert!(t["reason"].as_str().unwrap().contains("canary matched"), "{t}");
    assert!(!d.root.join("run/bulwark/vault-restore-test").exists());
    assert_no_leak(d, &ns, &[("the transit token", token.as_str())]);
}

#[test]
fn self_signed_tls_is_served_and_only_bulwarks_certificate_is_trusted() {
    let mut lab = Lab::new("vlt-tls");
    let url = serve_bao(&lab.net.vps);
    lab.daemon.start(None);
    let ns = lab.net.vps.clone();
    let p = lab
        .daemon
        .write_profile("tls", profile(&url, bao_sha256(), "static", "\"self-signed\"", ""));
    lab.daemon.apply(&p, &[]);
    let d = &lab.daemon;
    wait_for(d, "unsealed over TLS", START, unsealed);
    let cert = d.state_dir().join("vault/tls-cert.pem");
    let health = format!("https://127.0.0.1:{PORT}/v1/sys/health");
    // A real TLS client trusting exactly Bulwark's certificate.
    let r = curl(&ns, &["--cacert", cert.to_str().unwrap(), &health]);
    assert!(r.ok() && r.stdout.contains("\"sealed\":false"), "{r}");
    // Without it: refused (not in any trust store), and plain HTTP is not served.
    assert!(!curl(&ns, &[&health]).ok());
    assert!(!curl(&ns, &[&format!("http://127.0.0.1:{PORT}/v1/sys/health")])
        .stdout
        .contains("\"sealed\""));
    keys_are_private(d);
    assert!(d.state_dir().join("vault/keys/tls-key").exists());
}

#[test]
fn an_operators_own_certificate_is_served_to_a_real_tls_client() {
    let mut lab = Lab::new("vlt-crt");
    let url = serve_bao(&lab.net.vps);
    lab.daemon.start(None);
    let ns = lab.net.vps.clone();
    let dir = lab.daemon.root.join("etc/vault-tls");
    fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=vault.test",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let tls = format!("{{ cert = \"{}\", key = \"{}\" }}", cert.display(), key.display());
    let p = lab
        .daemon
        .write_profile("crt", profile(&url, bao_sha256(), "static", &tls, ""));
    lab.daemon.apply(&p, &[]);
    let d = &lab.daemon;
    wait_for(d, "unsealed over the operator's TLS", START, unsealed);
    let r = curl(
        &ns,
        &[
            "--cacert",
            cert.to_str().unwrap(),
            &format!("https://127.0.0.1:{PORT}/v1/sys/health"),
        ],
    );
    assert!(r.ok() && r.stdout.contains("\"sealed\":false"), "{r}");
    let served = run(Command::new("ip").args(["netns", "exec", &ns, "sh", "-c", &format!("openssl s_client -connect 127.0.0.1:{PORT} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256")]));
    let ours = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&cert),
    );
    assert_eq!(
        served.stdout.trim(),
        ours.stdout.trim(),
        "the Vault serves another certificate"
    );
}
