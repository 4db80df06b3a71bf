//! No crash of bulwarkd during `init` loses the Vault's keys or makes it
//! initialise twice. Each round builds a fresh Vault (manual and static
//! custody in turn), starts `bulwarkctl vault init`, kills bulwarkd with
//! SIGKILL at a random moment of it, starts bulwarkd again and runs `init`
//! to the end. Then, from outside: OpenBao logged exactly one storage init,
//! the keys Bulwark hands out are the ones in force (the root token made
//! from them works, and under manual custody they unseal the restarted
//! Vault), the temporary key is gone and every key file is 0600 in 0700.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod vault_lab;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bulwark_tests::bulwark_model::vault::InitResponse;
use bulwark_tests::{bin, Lab, Rng};
use vault_lab::*;

/// Rounds with a kill (the issue asks for at least 20).
const KILLED_ROUNDS: u64 = 20;
const WAIT: Duration = Duration::from_secs(90);

/// One round: a fresh Vault under `custody`, `init` killed after `kill_after`
/// (none: measure an undisturbed init). Returns how long `init` took.
fn round(custody: &str, kill_after: Option<Duration>) -> Duration {
    let mut lab = Lab::new("vlt-kill");
    let url = serve_bao(&lab.net.vps);
    let ns = lab.net.vps.clone();
    let text = profile(&url, bao_sha256(), custody, "\"off\"", "");
    lab.daemon.start(Some(&text));
    let d = &mut lab.daemon;
    wait_for(d, "self-initialised", WAIT, |s| s.custody_record);

    let t0 = Instant::now();
    let child = Command::new(bin("bulwarkctl"))
        .env_remove("SSH_CONNECTION")
        .arg("--socket")
        .arg(d.socket())
        .args(["--json", "vault", "init"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let keys: InitResponse = match kill_after {
        None => {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        }
        Some(after) => {
            thread::sleep(after);
            d.kill9();
            let out = child.wait_with_output().unwrap();
            d.restart();
            // The first `init` may have printed the keys before the kill
            // (its acknowledgement may have been lost with the daemon, or
            // not): then those are the operator's keys.
            // Its stdout may hold the keys, then an error body when their
            // acknowledgement failed, or an error body alone: no keys.
            let printed = serde_json::Deserializer::from_slice(&out.stdout)
                .into_iter::<InitResponse>()
                .next()
                .and_then(Result::ok)
                .filter(|k| !k.keys.is_empty());
            match printed {
                Some(k) => k,
                None => {
                    let r = d.ctl(&["--json", "vault", "init"]);
                    assert!(
                        r.ok(),
                        "init after the crash (killed at {after:?}) failed:\n{r}\n{}\n{}",
                        d.logs(),
                        bao_log(d)
                    );
                    serde_json::from_str(&r.stdout).unwrap()
                }
            }
        }
    };
    let took = t0.elapsed();
    assert_eq!(keys.keys.len(), 5, "{keys:?}");
    assert_eq!(
        inits(d),
        1,
        "killed at {kill_after:?}: the Vault was initialised again\n{}",
        bao_log(d)
    );
    let root = keys.root_token.clone().unwrap();
    let r = curl(
        &ns,
        &[
            "-H",
            &format!("X-Vault-Token: {root}"),
            &format!("http://127.0.0.1:{PORT}/v1/auth/token/lookup-self"),
        ],
    );
    assert!(
        r.stdout.contains("\"root\""),
        "the root token made from the kept keys does not work (killed at {kill_after:?}):\n{r}"
    );
    assert!(
        !d.state_dir().join("vault/keys/staging-key").exists(),
        "the temporary key outlived init"
    );
    keys_are_private(d);
    if custody == "manual" {
        // The shares handed out are the ones in force.
        kill_bao(d);
        wait_for(d, "restarted, sealed", WAIT, |s| s.running && s.sealed == Some(true));
        give_shares(d, false, &[&keys.keys[4], &keys.keys[2], &keys.keys[0]]);
        let (s, _) = wait_for(d, "unsealed with the kept shares", WAIT, unsealed);
        assert_eq!(s.seal_type, "shamir");
    } else {
        let s = status(d);
        assert!(unsealed(&s) && s.seal_type == "static", "{s:#?}");
    }
    assert_eq!(inits(d), 1, "{}", bao_log(d));
    took
}

#[test]
fn kill_9_of_bulwarkd_at_random_points_of_init_never_initialises_twice_nor_loses_the_keys() {
    let mut rng = Rng::from_env();
    // Undisturbed rounds first: how long `init` takes under each custody.
    let manual = round("manual", None);
    let stat = round("static", None);
    eprintln!("undisturbed init: manual {manual:?}, static {stat:?}");
    for i in 0..KILLED_ROUNDS {
        let (custody, span) = if i % 2 == 0 {
            ("manual", manual)
        } else {
            ("static", stat)
        };
        // Uniform over the whole init, a little past its end.
        let span_ms = u64::try_from(span.as_millis()).unwrap().max(50) * 12 / 10;
        let after = Duration::from_millis(rng.below(span_ms));
        eprintln!("round {i}: {custody}, kill -9 after {after:?}");
        round(custody, Some(after));
    }
}
