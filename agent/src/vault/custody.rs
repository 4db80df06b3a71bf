//! What Bulwark holds for the Vault: the static key, its own token IDs, the
//! custody record, and the hand-over of keys not yet acknowledged.
//!
//! Secrets go to a [`Store`]: `systemd-creds` (encrypted with the TPM2 when
//! the host has one, else the host key; plaintext only ever on a pipe) or,
//! where the profile says `credential_store = "file"`, plain files. Either
//! way the files are 0600 in a 0700 directory, written atomically, and a
//! secret that exists is never overwritten: a second static key would leave
//! the Vault sealed for good.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulwark_model::profile::CredentialStore;
use serde::{Deserialize, Serialize};

use bulwark_model::profile::{Tls, Vault as VaultProfile};

use super::client::Secret;
use super::render::{self, cred, Stage};
use super::{read_file, tls, Vault, VaultError, RUN_CREDENTIALS};
use crate::audit::{self, Outcome};
use crate::host::{Host, Run};
use crate::module::Cx;
use crate::state;

/// Bulwark's Vault state (host path), 0700.
pub const STATE_DIR: &str = "/var/lib/bulwark/vault";
pub const SYSTEMD_CREDS: &str = "/usr/bin/systemd-creds";
const CREDS_TIMEOUT: Duration = Duration::from_secs(30);

/// Name of the hand-over secret: keys shown to the operator, kept until acknowledged.
pub const HANDOVER: &str = "handover";

/// The secret store of one host.
#[derive(Debug, Clone)]
pub struct Store {
    kind: CredentialStore,
    dir: PathBuf,
    systemd_creds: PathBuf,
}

impl Store {
    pub fn new(host: &Host, kind: CredentialStore) -> Store {
        Store {
            kind,
            dir: host.path(STATE_DIR).join("keys"),
            systemd_creds: PathBuf::from(SYSTEMD_CREDS),
        }
    }

    pub fn kind(&self) -> CredentialStore {
        self.kind
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        match self.kind {
            CredentialStore::File => self.dir.join(name),
            CredentialStore::SystemdCreds => self.dir.join(format!("{name}.cred")),
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).is_file()
    }

    /// Store a new secret; refuses to replace one that exists.
    pub fn create(&self, name: &str, secret: &[u8]) -> Result<(), VaultError> {
        if self.exists(name) {
            return Err(VaultError::SecretExists { path: self.path(name) });
        }
        self.write(name, secret)
    }

    /// Store `secret` under `name`, replacing it (the hand-over only).
    pub fn replace(&self, name: &str, secret: &[u8]) -> Result<(), VaultError> {
        self.write(name, secret)
    }

    fn write(&self, name: &str, secret: &[u8]) -> Result<(), VaultError> {
        state::private_dir(&self.dir, 0o700).map_err(VaultError::State)?;
        let bytes = match self.kind {
            CredentialStore::File => secret.to_vec(),
            CredentialStore::SystemdCreds => {
                // Plaintext on stdin, ciphertext on stdout: never on disk, never in argv.
                Run::new(&self.systemd_creds, CREDS_TIMEOUT)
                    .arg("encrypt")
                    .arg(format!("--name={name}"))
                    .args(["-", "-"])
                    .stdin(secret.to_vec())
                    .output()
                    .map_err(|source| VaultError::Run { source })?
                    .stdout
            }
        };
        state::write_atomic(&self.path(name), &bytes).map_err(VaultError::State)
    }

    /// The secret `name`, decrypted; `None` when it was never stored.
    pub fn get(&self, name: &str) -> Result<Option<Secret>, VaultError> {
        let path = self.path(name);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = match self.kind {
            CredentialStore::File => fs::read(&path).map_err(|source| VaultError::Io {
                op: "read",
                path: path.clone(),
                source,
            })?,
            CredentialStore::SystemdCreds => {
                Run::new(&self.systemd_creds, CREDS_TIMEOUT)
                    .arg("decrypt")
                    .arg(format!("--name={name}"))
                    .arg(&path)
                    .arg("-")
                    .output()
                    .map_err(|source| VaultError::Run { source })?
                    .stdout
            }
        };
        String::from_utf8(bytes)
            .map(|s| Some(Secret(s)))
            .map_err(|_| VaultError::Corrupt {
                path,
                reason: "not UTF-8".to_owned(),
            })
    }

    pub fn remove(&self, name: &str) -> Result<(), VaultError> {
        state::remove(&self.path(name)).map_err(VaultError::State)
    }
}

/// 32 random bytes as 64 hex digits: the static key (no trailing newline:
/// OpenBao refuses to start on one) and Bulwark's token IDs.
pub fn random_hex() -> Result<String, VaultError> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| VaultError::Random(e.to_string()))?;
    Ok(hex::encode(b))
}

/// A token ID Bulwark chooses before the server creates the token.
pub fn token_id() -> Result<String, VaultError> {
    Ok(format!("bwk-{}", random_hex()?))
}

/// `custody.json`: what Bulwark knows about the Vault it initialised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// The custody the Vault is sealed under (after a migration: the new one).
    pub custody: String,
    /// Unix time Bulwark saw init complete (or, for self-init, first saw it initialised).
    pub initialised: Option<u64>,
    pub cluster_id: Option<String>,
    /// OpenBao initialised itself from Bulwark's configuration.
    pub self_init: bool,
    pub shares: u8,
    pub threshold: u8,
    /// Bulwark's own token exists in the Vault.
    pub bulwark_token: bool,
    /// Accessor of the last root token Bulwark handed out (not a secret).
    pub root_accessor: Option<String>,
    pub root_revoked: bool,
    /// Unix time the operator acknowledged the keys; until then they are
    /// kept in the hand-over and shown again by `bulwarkctl vault init`.
    pub delivered: Option<u64>,
    /// `init` has shown the kept keys at least once.
    pub keys_shown: bool,
    /// Manual custody: the Vault is sealed by the temporary static key it
    /// initialised under, until `init` has moved it to Shamir.
    pub staging: bool,
    /// Manual custody: `init` started the move to Shamir (the configuration
    /// disables the temporary key; the server migrates when unsealed).
    pub migrating: bool,
}

/// The keys in the hand-over (encrypted like every other secret). They are
/// written before the rotation that made them is verified, so a crash at
/// any point leaves either keys nobody can use yet (the rotation is then
/// cancelled and started again) or the keys in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handover {
    /// `unseal` (Shamir shares) or `recovery`.
    pub kind: String,
    pub keys: Vec<Secret>,
    pub threshold: u8,
    /// Verification nonce of the rotation that produced the keys.
    #[serde(default)]
    pub nonce: String,
}

pub fn record_path(host: &Host) -> PathBuf {
    host.path(STATE_DIR).join("custody.json")
}

pub fn read_record(host: &Host) -> Result<Option<Record>, VaultError> {
    state::read_json(&record_path(host)).map_err(VaultError::State)
}

pub fn write_record(host: &Host, r: &Record) -> Result<(), VaultError> {
    state::private_dir(&host.path(STATE_DIR), 0o700).map_err(VaultError::State)?;
    state::write_json(&record_path(host), r).map_err(VaultError::State)
}

/// The secrets of a Vault the module runs: made once, handed to the server.
impl Vault {
    /// Destroy the temporary key of a manual Vault once its record says it
    /// is sealed by Shamir (a crash may have come between the two).
    pub(super) fn forget_staging_key(&self, v: &VaultProfile) -> Result<(), VaultError> {
        let store = self.store(v);
        let shamir = read_record(&self.host)?.is_some_and(|r| !r.staging && r.initialised.is_some());
        if shamir && store.exists(cred::STAGING_KEY) {
            store.remove(cred::STAGING_KEY)?;
        }
        Ok(())
    }

    /// Keys and token IDs the configuration names, created once, before it
    /// can start a server; a key missing for a Vault that already has data is
    /// refused (a new key would never unseal it).
    pub(super) fn ensure_secrets(&self, cx: &mut Cx<'_>, v: &VaultProfile, stage: Stage) -> Result<bool, VaultError> {
        let store = self.store(v);
        let record = read_record(&self.host)?;
        let mut changed = false;
        for name in render::generated(v, stage) {
            if name == cred::TLS_KEY {
                changed |= self.ensure_tls(cx, v, &store)?;
                continue;
            }
            if store.exists(name) {
                continue;
            }
            let is_key = matches!(name, cred::STATIC_KEY | cred::STAGING_KEY);
            let has_data = record.as_ref().is_some_and(|r| r.initialised.is_some()) || self.raft_has_data();
            let sealed_under_it = match name {
                cred::STAGING_KEY => has_data,
                _ => {
                    record
                        .as_ref()
                        .is_some_and(|r| r.initialised.is_some() && r.custody == v.custody.as_str())
                        || (self.raft_has_data() && record.is_none())
                }
            };
            if is_key && sealed_under_it {
                return Err(VaultError::Conflict(format!(
                    "the key {} is missing for a Vault that has data; restore it from backup \
                     (a new key would never unseal this Vault)",
                    store.path(name).display()
                )));
            }
            let secret = if is_key { random_hex()? } else { token_id()? };
            store.create(name, secret.as_bytes())?;
            changed = true;
            cx.event(
                &audit::VLT_KEY_CREATED,
                Outcome::Success,
                format!("{name} stored in {}", store.path(name).display()),
            );
        }
        Ok(changed)
    }

    /// Bulwark's own certificate for the listen address (`tls = "self-signed"`):
    /// made when missing or when it no longer names the address. Returns
    /// whether it was (re)made.
    fn ensure_tls(&self, cx: &mut Cx<'_>, v: &VaultProfile, store: &Store) -> Result<bool, VaultError> {
        let cert = self.self_signed_cert();
        if store.exists(cred::TLS_KEY) && tls::covers(&cert, v.listen.ip()) {
            return Ok(false);
        }
        let pair = tls::generate(v.listen.ip())?;
        store.replace(cred::TLS_KEY, pair.key_pem.expose().as_bytes())?;
        state::write_atomic_mode(&cert, pair.cert_pem.as_bytes(), 0o644).map_err(VaultError::State)?;
        tls::mark(&cert, v.listen.ip())?;
        cx.event(
            &audit::VLT_KEY_CREATED,
            Outcome::Success,
            format!(
                "self-signed TLS certificate for {} in {}",
                v.listen.ip(),
                cert.display()
            ),
        );
        Ok(true)
    }

    /// Where Bulwark keeps the certificate it made (`tls = "self-signed"`).
    pub fn self_signed_cert(&self) -> PathBuf {
        self.state_dir().join(render::SELF_SIGNED_CERT)
    }

    /// Write the supervised server's credentials (0600 in a 0700 directory).
    pub(super) fn materialise_credentials(&self, v: &VaultProfile) -> Result<(), VaultError> {
        let dir = self.host.path(RUN_CREDENTIALS);
        state::private_dir(&dir, 0o700).map_err(VaultError::State)?;
        let store = self.store(v);
        for name in render::credentials(v, self.stage(v)?) {
            let secret = match (name, &v.tls, &v.transit) {
                (cred::TLS_CERT, Tls::Files { cert, .. }, _) => read_file(cert)?,
                (cred::TLS_CERT, Tls::SelfSigned, _) => read_file(&self.self_signed_cert().display().to_string())?,
                (cred::TLS_KEY, Tls::Files { key, .. }, _) => read_file(key)?,
                (cred::TRANSIT_TOKEN, _, Some(t)) => read_file(&t.token_file)?,
                _ => store
                    .get(name)?
                    .map(|s| s.0)
                    .ok_or_else(|| VaultError::Conflict(format!("credential {name} is missing")))?,
            };
            state::write_atomic(&dir.join(name), secret.as_bytes()).map_err(VaultError::State)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_store_keeps_0600_in_0700_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(&Host::new(dir.path()), CredentialStore::File);
        let key = random_hex().unwrap();
        assert_eq!(key.len(), 64);
        s.create("static-key", key.as_bytes()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.path("static-key")), 0o600);
        assert_eq!(mode(s.dir()), 0o700);
        assert!(matches!(
            s.create("static-key", b"other"),
            Err(VaultError::SecretExists { .. })
        ));
        assert_eq!(s.get("static-key").unwrap().unwrap().expose(), key);
        assert!(!fs::read(s.path("static-key")).unwrap().ends_with(b"\n"));
        assert!(s.get("absent").unwrap().is_none());
    }
}
