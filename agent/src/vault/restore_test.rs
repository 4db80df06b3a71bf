//! Restore tests: the latest snapshot (read back from the bucket when there
//! is one, else the local file), its SHA-256 checked, restored into a
//! throw-away Vault of the same binary on free loopback ports with its own
//! raft directory, and the canary of that snapshot read back and compared.
//!
//! The throw-away Vault gets the live Vault's seal with its own copy of
//! the key: under static custody the static key, under transit custody the
//! transit token (the transit server unwraps the restored keyring), so the
//! restored keyring opens and stays unsealed: both run unattended. A Shamir
//! snapshot (manual custody) seals the throw-away Vault and opens only after
//! a restart with the ORIGINAL shares, so it runs on demand only, with the
//! shares the operator gives (`vault restore-test --shares`); they are used
//! in memory and never stored. Everything lives in one 0700 directory on
//! tmpfs, `/run/bulwark/vault-restore-test`, and is removed afterwards; a
//! bulwarkd killed during a test leaves it, and the next start stops the
//! throw-away server (found by its configuration on its command line) and
//! removes the directory.
//!
//! `restore` (the live Vault) lives here too: it needs a token that may
//! `update` `sys/storage/raft/snapshot-force`, which Bulwark's own cannot.

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulwark_model::profile::{Custody, Snapshots, Vault as VaultProfile};
use bulwark_model::vault::RestoreTest;

use super::client::{Client, Secret};
use super::render::{self, cred, Stage};
use super::snapshots::{now_unix, sha256_hex, Entry};
use super::{supervise, Vault, VaultError};
use crate::audit::{self, Outcome};
use crate::module::Cx;
use crate::state;

/// The throw-away Vault's directory (host path).
pub const TEST_DIR: &str = "/run/bulwark/vault-restore-test";
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> Result<u16, VaultError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| VaultError::Io {
            op: "find a free port on",
            path: PathBuf::from("127.0.0.1"),
            source,
        })
}

fn config(v: &VaultProfile, dir: &Path, port: u16, cluster: u16) -> String {
    let d = dir.display();
    let mut s = String::new();
    let _ = writeln!(s, "# Bulwark's restore test: a throw-away Vault, removed afterwards.");
    let _ = writeln!(s, "ui = false");
    let _ = writeln!(s, "api_addr = \"http://127.0.0.1:{port}\"");
    let _ = writeln!(s, "cluster_addr = \"http://127.0.0.1:{cluster}\"");
    let _ = writeln!(
        s,
        // A single node: the tightest raft timings elect it soonest.
        "storage \"raft\" {{\n  path = \"{d}/raft\"\n  node_id = \"bulwark-restore-test\"\n  performance_multiplier = 1\n}}"
    );
    let _ = writeln!(
        s,
        "listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}"
    );
    // The live Vault's seal (key ID included: the restored keyring is
    // wrapped under it), reading its key or token from this directory.
    s.push_str(&render::seal(v, Stage::Steady, &d.to_string()));
    s
}

/// Poll until `f` holds, bounded.
fn wait(what: &str, mut f: impl FnMut() -> bool) -> Result<(), VaultError> {
    let deadline = Instant::now() + WAIT;
    while !f() {
        super::progress();
        if Instant::now() >= deadline {
            return Err(VaultError::Start(format!("{what} within {}s", WAIT.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

impl Vault {
    fn test_dir(&self) -> PathBuf {
        self.host.path(TEST_DIR)
    }

    /// Stop a throw-away server an interrupted test left and remove its
    /// directory. True when something was left.
    pub(super) fn cleanup_restore_test(&self) -> bool {
        let dir = self.test_dir();
        if !dir.exists() {
            return false;
        }
        if let Some(mut s) = supervise::adopt(&dir.join("bao.pid"), &dir.join("config.hcl")) {
            log::warn!(pid = s.pid(); "killing the throw-away Vault of an interrupted restore test");
            s.kill();
        }
        if let Err(e) = fs::remove_dir_all(&dir) {
            log::error!(error:display = e, dir:display = dir.display(); "cannot remove the restore test's directory");
        }
        true
    }

    /// The bytes of `e`: from the bucket when there is one (the off-site
    /// copy is what a restore would use), else the local file; either way
    /// checked against the recorded SHA-256.
    pub(super) fn snapshot_bytes(&self, s: &Snapshots, e: &Entry) -> Result<(Vec<u8>, &'static str), VaultError> {
        let remote = e.shown.uploaded.is_some() && !e.remote_pruned;
        let (bytes, source, from) = match self.bucket(s) {
            Some(b) if remote || !e.shown.local => {
                let b = b.map_err(|err| VaultError::Conflict(err.to_string()))?;
                let bytes = b
                    .download(&e.shown.name)
                    .map_err(|err| VaultError::Conflict(err.to_string()))?;
                (bytes, "remote", b.key(&e.shown.name))
            }
            _ => {
                let path = self.snapshot_dir(s).join(&e.shown.name);
                let bytes = fs::read(&path).map_err(|source| VaultError::Io {
                    op: "read",
                    path: path.clone(),
                    source,
                })?;
                (bytes, "local", path.display().to_string())
            }
        };
        let actual = sha256_hex(&bytes);
        if actual != e.shown.sha256 {
            return Err(VaultError::Corrupt {
                path: PathBuf::from(from),
                reason: format!(
                    "its SHA-256 is {actual}, {} was recorded when it was taken",
                    e.shown.sha256
                ),
            });
        }
        Ok((bytes, source))
    }

    /// Run one restore test, record it, audit it; the result either way,
    /// except a share the restored snapshot refuses (the operator's typo is
    /// no failed restore): that is the error, and nothing is recorded.
    /// `shares`: the original unseal shares (manual custody only).
    pub(super) fn restore_test(
        &mut self,
        cx: &mut Cx<'_>,
        v: &VaultProfile,
        s: &Snapshots,
        shares: &[Secret],
    ) -> Result<RestoreTest, VaultError> {
        let t0 = Instant::now();
        let mut cat = match self.catalogue() {
            Ok(c) => c,
            Err(e) => {
                return Ok(RestoreTest {
                    reason: e.to_string(),
                    at: now_unix(),
                    ..RestoreTest::default()
                })
            }
        };
        let latest = cat.latest().cloned();
        let mut result = RestoreTest {
            snapshot: latest.as_ref().map(|e| e.shown.name.clone()).unwrap_or_default(),
            ..RestoreTest::default()
        };
        let outcome = match &latest {
            None => Err(VaultError::Conflict("there is no snapshot to restore yet".to_owned())),
            Some(e) => self.restore_into_throwaway(v, s, e, shares),
        };
        self.cleanup_restore_test();
        result.at = now_unix();
        result.took_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Err(e @ VaultError::BadRequest(_)) => return Err(e),
            Ok((source, phases)) => {
                result.passed = true;
                result.source = source.to_owned();
                result.reason = format!(
                    "restored from the {source} copy into a throw-away Vault; the canary matched \
                     (after the server answered: {phases})"
                );
                cx.event(
                    &audit::VLT_RESTORE_TEST_PASSED,
                    Outcome::Success,
                    format!("{} ({source}, {} ms)", result.snapshot, result.took_ms),
                );
            }
            Err(e) => {
                result.reason = e.to_string();
                log::error!(snapshot = result.snapshot.as_str(), error:display = e; "Vault restore test failed");
                cx.event(
                    &audit::VLT_RESTORE_TEST_FAILED,
                    Outcome::Failure,
                    format!("{}: {e}", result.snapshot),
                );
            }
        }
        cat.last_restore_test = Some(result.clone());
        if let Err(e) = self.save_catalogue(&cat) {
            log::error!(error:display = e; "cannot record the restore test");
        }
        Ok(result)
    }

    /// The copy used (`remote` or `local`) and how long each step took.
    fn restore_into_throwaway(
        &mut self,
        v: &VaultProfile,
        s: &Snapshots,
        e: &Entry,
        shares: &[Secret],
    ) -> Result<(&'static str, String), VaultError> {
        let (bytes, source) = self.snapshot_bytes(s, e)?;
        // The throw-away Vault's own copy of what opens the live seal.
        let seal_key = match (v.custody, &v.transit) {
            (Custody::Static, _) => Some((
                cred::STATIC_KEY,
                self.store(v)
                    .get(cred::STATIC_KEY)?
                    .ok_or_else(|| VaultError::Conflict("the static key is missing from the store".to_owned()))?,
            )),
            // Written as the live Vault gets it (materialise_credentials).
            (Custody::Transit, Some(t)) => Some((cred::TRANSIT_TOKEN, Secret(super::read_file(&t.token_file)?))),
            _ => None,
        };
        let token = self.bulwark_token(v)?;
        self.cleanup_restore_test();
        let dir = self.test_dir();
        state::private_dir(&dir, 0o700).map_err(VaultError::State)?;
        state::private_dir(&dir.join("raft"), 0o700).map_err(VaultError::State)?;
        if let Some((name, key)) = &seal_key {
            state::write_atomic(&dir.join(name), key.expose().as_bytes()).map_err(VaultError::State)?;
        }
        let (port, cluster) = (free_port()?, free_port()?);
        state::write_atomic(&dir.join("config.hcl"), config(v, &dir, port, cluster).as_bytes())
            .map_err(VaultError::State)?;
        let mut throwaway = Throwaway {
            binary: self.installer.current_binary(),
            client: Client::new(&format!("http://127.0.0.1:{port}"), None)?,
            server: None,
            dir,
            shamir: v.custody == Custody::Manual,
        };
        let result = throwaway.check(bytes, &token, shares, e);
        throwaway.stop();
        result.map(|phases| (source, phases))
    }

    /// Replace the live Vault's data with snapshot `name` (`token` may
    /// `update` `sys/storage/raft/snapshot-force`).
    pub(super) fn restore_live(
        &mut self,
        cx: &mut Cx<'_>,
        v: &VaultProfile,
        s: &Snapshots,
        name: &str,
        token: &Secret,
    ) -> Result<String, VaultError> {
        let cat = self.catalogue()?;
        let e = cat
            .snapshots
            .iter()
            .find(|e| e.shown.name == name)
            .cloned()
            .ok_or_else(|| {
                VaultError::BadRequest(format!("no snapshot {name:?}; `bulwarkctl vault snapshots` lists them"))
            })?;
        let (bytes, source) = self.snapshot_bytes(s, &e)?;
        self.watch.expect_restart();
        self.client(v)?.restore(token, bytes)?;
        let msg = format!("{name} ({source} copy, sha256 {})", e.shown.sha256);
        cx.event(&audit::VLT_RESTORED, Outcome::Success, msg.clone());
        Ok(msg)
    }
}

/// The throw-away Vault of one restore test.
struct Throwaway {
    binary: PathBuf,
    client: Client,
    server: Option<supervise::Server>,
    dir: PathBuf,
    /// No seal stanza (manual custody): init gives it an unseal key, and
    /// the restored snapshot opens only with the original shares.
    shamir: bool,
}

impl Throwaway {
    /// Start the server and wait until it answers.
    fn start(&mut self) -> Result<(), VaultError> {
        let log = self.dir.join("bao.log");
        let mut server = supervise::spawn(
            &self.binary,
            &self.dir.join("config.hcl"),
            &log,
            &self.dir.join("bao.pid"),
        )?;
        let client = &self.client;
        let mut exited = false;
        let answered = wait("the throw-away Vault did not answer", || {
            exited = !server.alive();
            exited || client.seal_status().is_ok()
        });
        self.server = Some(server);
        if exited {
            return Err(VaultError::Start(format!(
                "the throw-away Vault exited: {}",
                super::tail(&log, 6)
            )));
        }
        answered
    }

    fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }

    /// Init, restore `bytes`, open the restored keyring (with `shares`
    /// under manual custody), compare the canary: how long each step took.
    fn check(&mut self, bytes: Vec<u8>, token: &Secret, shares: &[Secret], e: &Entry) -> Result<String, VaultError> {
        self.start()?;
        let t0 = Instant::now();
        let mut phases = Vec::new();
        let mut phase = |name: &str| phases.push(format!("{name} {} ms", t0.elapsed().as_millis()));
        phase("up");
        let (root, key) = self.client.init_throwaway(self.shamir)?;
        if let Some(key) = &key {
            self.client.unseal(key, false)?;
        }
        self.client.wait_active(WAIT)?;
        phase("initialised");
        self.client.restore(&root, bytes)?;
        phase("restored");
        if self.shamir {
            // The restored keyring is under the original shares: the server
            // seals itself once the snapshot is in (a restart before that
            // loses it), then opens only after a restart, with them.
            let client = &self.client;
            wait("the throw-away Vault did not seal itself after the restore", || {
                client.seal_status().is_ok_and(|s| s.sealed)
            })?;
            phase("sealed itself");
            self.stop();
            self.start()?;
            self.open_with(shares)?;
            phase("unsealed with the shares");
        }
        self.client.wait_active(WAIT)?;
        phase("active");
        let canary = self.client.read_canary(token)?;
        phase("canary read");
        if canary.is_empty() {
            return Err(VaultError::Corrupt {
                path: PathBuf::from(&e.shown.name),
                reason: "the restored Vault has no canary".to_owned(),
            });
        }
        if sha256_hex(canary.as_bytes()) != e.canary_sha256 {
            return Err(VaultError::Corrupt {
                path: PathBuf::from(&e.shown.name),
                reason: "the restored canary differs from the one written before the snapshot".to_owned(),
            });
        }
        Ok(phases.join(", "))
    }

    /// Unseal the restored snapshot with the operator's shares. A share it
    /// refuses, or too few, is the operator's mistake (a bad request), not
    /// a failed restore.
    fn open_with(&self, shares: &[Secret]) -> Result<(), VaultError> {
        let seal = self.client.seal_status()?;
        let what = format!("the restored snapshot ({} of {} shares)", seal.t, seal.n);
        for share in shares {
            let status = self.client.unseal(share, false).map_err(|err| match err {
                VaultError::Refused {
                    status: 400, errors, ..
                } => VaultError::BadRequest(format!("shares: {what} refused one ({errors})")),
                other => other,
            })?;
            if !status.sealed {
                return Ok(());
            }
        }
        Err(VaultError::BadRequest(format!(
            "shares: the {} given did not unseal {what}",
            shares.len()
        )))
    }
}
