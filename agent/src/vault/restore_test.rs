//! Restore tests: the latest snapshot (read back from the bucket when there
//! is one, else the local file), its SHA-256 checked, restored into a
//! throw-away Vault of the same binary on free loopback ports with its own
//! raft directory, and the canary of that snapshot read back and compared.
//!
//! Only under static custody: the throw-away Vault gets a copy of the static
//! key, so the restored keyring opens and stays unsealed. (A Shamir snapshot
//! opens only with the original shares and a restart.) Everything lives in
//! one 0700 directory on tmpfs, `/run/bulwark/vault-restore-test`, and is
//! removed afterwards; a bulwarkd killed during a test leaves it, and the
//! next start stops the throw-away server (found by its configuration on
//! its command line) and removes the directory.
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
use super::snapshots::{now_unix, sha256_hex, Entry};
use super::{render::cred, supervise, Vault, VaultError};
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

fn config(dir: &Path, port: u16, cluster: u16) -> String {
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
    // The live Vault's key ID: the restored keyring is wrapped under it.
    let _ = writeln!(
        s,
        "seal \"static\" {{\n  current_key_id = \"bulwark-1\"\n  current_key = \"file://{d}/{}\"\n}}",
        cred::STATIC_KEY
    );
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

    /// Run one restore test, record it, audit it; the result either way.
    pub(super) fn restore_test(&mut self, cx: &mut Cx<'_>, v: &VaultProfile, s: &Snapshots) -> RestoreTest {
        let t0 = Instant::now();
        let mut cat = match self.catalogue() {
            Ok(c) => c,
            Err(e) => {
                return RestoreTest {
                    reason: e.to_string(),
                    at: now_unix(),
                    ..RestoreTest::default()
                }
            }
        };
        let latest = cat.latest().cloned();
        let mut result = RestoreTest {
            snapshot: latest.as_ref().map(|e| e.shown.name.clone()).unwrap_or_default(),
            ..RestoreTest::default()
        };
        let outcome = match &latest {
            None => Err(VaultError::Conflict("there is no snapshot to restore yet".to_owned())),
            Some(e) => self.restore_into_throwaway(v, s, e),
        };
        self.cleanup_restore_test();
        result.at = now_unix();
        result.took_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
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
        result
    }

    /// The copy used (`remote` or `local`) and how long each step took.
    fn restore_into_throwaway(
        &mut self,
        v: &VaultProfile,
        s: &Snapshots,
        e: &Entry,
    ) -> Result<(&'static str, String), VaultError> {
        if v.custody != Custody::Static {
            return Err(VaultError::Conflict(format!(
                "restore tests run only under static custody; a {} Vault's snapshot opens only with its keys",
                v.custody.as_str()
            )));
        }
        let (bytes, source) = self.snapshot_bytes(s, e)?;
        let key = self
            .store(v)
            .get(cred::STATIC_KEY)?
            .ok_or_else(|| VaultError::Conflict("the static key is missing from the store".to_owned()))?;
        let token = self.bulwark_token(v)?;
        self.cleanup_restore_test();
        let dir = self.test_dir();
        state::private_dir(&dir, 0o700).map_err(VaultError::State)?;
        state::private_dir(&dir.join("raft"), 0o700).map_err(VaultError::State)?;
        state::write_atomic(&dir.join(cred::STATIC_KEY), key.expose().as_bytes()).map_err(VaultError::State)?;
        let (port, cluster) = (free_port()?, free_port()?);
        let conf = dir.join("config.hcl");
        state::write_atomic(&conf, config(&dir, port, cluster).as_bytes()).map_err(VaultError::State)?;
        let log = dir.join("bao.log");
        let mut server = supervise::spawn(&self.installer.current_binary(), &conf, &log, &dir.join("bao.pid"))?;
        let result = self.check_throwaway(&mut server, &log, port, bytes, &token, e);
        server.kill();
        result.map(|phases| (source, phases))
    }

    /// Init the throw-away Vault, restore into it, compare the canary.
    fn check_throwaway(
        &self,
        server: &mut supervise::Server,
        log: &Path,
        port: u16,
        bytes: Vec<u8>,
        token: &Secret,
        e: &Entry,
    ) -> Result<String, VaultError> {
        let client = Client::new(&format!("http://127.0.0.1:{port}"), None)?;
        let mut up = || {
            if !server.alive() {
                return Err(VaultError::Start(format!(
                    "the throw-away Vault exited: {}",
                    super::tail(log, 6)
                )));
            }
            Ok(client.seal_status().is_ok())
        };
        let mut failed = None;
        wait("the throw-away Vault did not answer", || match up() {
            Ok(b) => b,
            Err(err) => {
                failed = Some(err);
                true
            }
        })?;
        if let Some(err) = failed {
            return Err(err);
        }
        let t0 = Instant::now();
        let mut phases = Vec::new();
        let mut phase = |name: &str| phases.push(format!("{name} {} ms", t0.elapsed().as_millis()));
        phase("up");
        let root: Secret = client.init_auto()?;
        client.wait_active(WAIT)?;
        phase("initialised");
        client.restore(&root, bytes)?;
        phase("restored");
        client.wait_active(WAIT)?;
        phase("active");
        let canary = client.read_canary(token)?;
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
