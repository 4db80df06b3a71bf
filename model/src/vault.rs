//! Wire types of the Vault module's actions (`/v1/modules/vault/<action>`).
//!
//! Keys and tokens appear only in [`InitResponse`], the one answer that
//! shows them; its `Debug` is redacted, and requests carrying a share are
//! redacted too.

use serde::{Deserialize, Serialize};

use crate::api::Level;

/// The module's name in routes, metrics and checks.
pub const MODULE: &str = "vault";

/// `GET /v1/modules/vault/status` (also `status.modules[].details`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaultStatus {
    /// The profile in force has a `[vault]` section.
    pub managed: bool,
    pub implementation: String,
    /// The version `current` points at (`2.7.2`).
    pub version: String,
    /// SHA-256 of the binary in force.
    pub sha256: String,
    /// `systemd` (the rendered unit) or `supervised` (bulwarkd runs bao).
    pub runner: String,
    pub running: bool,
    pub listen: String,
    /// From `/v1/sys/seal-status`; `None` while the API does not answer.
    pub initialized: Option<bool>,
    pub sealed: Option<bool>,
    /// `shamir`, `static`, `transit`.
    pub seal_type: String,
    /// The version the server reports.
    pub server_version: String,
    /// Shares submitted towards unsealing, and how many are needed.
    pub progress: u8,
    pub threshold: u8,
    pub custody: String,
    pub credential_store: String,
    /// Seconds since bulwarkd saw the Vault unsealed (while it is).
    pub unsealed_for_secs: Option<u64>,
    /// Bulwark holds a custody record for this Vault.
    pub custody_record: bool,
    /// The operator acknowledged the keys shown at init.
    pub keys_delivered: bool,
    /// The root token was revoked by Bulwark.
    pub root_revoked: bool,
    pub level: Level,
    /// What needs attention, one line each.
    pub problems: Vec<String>,
}

/// `POST /v1/modules/vault/init`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {}

/// The answer to `init`: shown once. Asking again before `ack` shows the
/// same keys (and, where one was made, a new root token).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InitResponse {
    pub custody: String,
    /// `unseal` (Shamir shares: manual custody) or `recovery`.
    pub key_kind: String,
    pub keys: Vec<String>,
    pub threshold: u8,
    /// `None` when the profile revokes it (`revoke_root = true`).
    pub root_token: Option<String>,
    /// Not a secret: revoke with `bao token revoke -accessor ACCESSOR`.
    pub root_token_accessor: Option<String>,
    pub root_revoked: bool,
    /// True when these keys were shown before and never acknowledged.
    pub repeated: bool,
    /// What to do next, for people.
    pub notes: Vec<String>,
}

impl std::fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitResponse")
            .field("custody", &self.custody)
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("root_token", &self.root_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// `POST /v1/modules/vault/ack`: the operator has stored the keys; Bulwark
/// forgets them and revokes its one-shot bootstrap token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {}

/// `POST /v1/modules/vault/unseal` and `…/migrate`: one share.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    /// One unseal (or, migrating, recovery) share, hex or base64.
    pub key: String,
    /// `migrate` only: the custody to migrate to (`static`).
    #[serde(default)]
    pub to: Option<String>,
}

impl std::fmt::Debug for UnsealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsealRequest")
            .field("key", &"<redacted>")
            .field("to", &self.to)
            .finish()
    }
}

/// Progress after one share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsealResponse {
    pub sealed: bool,
    pub progress: u8,
    pub threshold: u8,
    /// The share was given before in this round: ignored.
    pub repeated: bool,
    /// A migration is under way (or just finished).
    pub migration: bool,
    pub seal_type: String,
}

/// One snapshot Bulwark took (`snapshot`, `snapshots`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotEntry {
    /// File name, also the object's name under the bucket's prefix.
    pub name: String,
    /// Unix time it was taken.
    pub taken: u64,
    pub size: u64,
    /// Lower-case hex SHA-256 of the snapshot's bytes.
    pub sha256: String,
    /// The file is still in the local directory.
    pub local: bool,
    /// Unix time the off-site copy was stored and read back with this digest.
    pub uploaded: Option<u64>,
    /// Why the last upload attempt failed (retried with backoff).
    pub upload_error: Option<String>,
    /// How long the snapshot took (canary, API, write, fsync).
    pub took_ms: u64,
    /// How long the successful upload and its read-back took.
    pub upload_ms: Option<u64>,
}

/// An object in the bucket under the profile's prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteObject {
    pub key: String,
    pub size: u64,
    /// Unix time the server says it was last modified.
    pub modified: u64,
    /// The digest Bulwark recorded for it, when it is one of Bulwark's.
    pub sha256: Option<String>,
}

/// The last restore test.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreTest {
    pub snapshot: String,
    /// `remote` (read back from the bucket) or `local`.
    pub source: String,
    pub passed: bool,
    /// Unix time it finished.
    pub at: u64,
    pub took_ms: u64,
    /// What was checked, or what failed.
    pub reason: String,
}

/// `GET /v1/modules/vault/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotsResponse {
    pub dir: String,
    /// `bucket/prefix` at the endpoint, when the profile has `s3`.
    pub remote: Option<String>,
    pub snapshots: Vec<SnapshotEntry>,
    pub objects: Vec<RemoteObject>,
    /// Why the bucket could not be listed.
    pub remote_error: Option<String>,
    pub last_restore_test: Option<RestoreTest>,
}

/// `POST /v1/modules/vault/restore-test`. `shares`: under manual custody,
/// the original unseal shares (a threshold of them) that open the restored
/// snapshot; used in memory and never stored.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreTestRequest {
    #[serde(default)]
    pub shares: Vec<String>,
}

impl std::fmt::Debug for RestoreTestRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreTestRequest")
            .field("shares", &format_args!("<{} redacted>", self.shares.len()))
            .finish()
    }
}

/// `POST /v1/modules/vault/restore`: replace the Vault's data with a
/// snapshot. The token must allow `update` on
/// `sys/storage/raft/snapshot-force` (Bulwark's own token cannot).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub snapshot: String,
    pub token: String,
}

impl std::fmt::Debug for RestoreRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreRequest")
            .field("snapshot", &self.snapshot)
            .field("token", &"<redacted>")
            .finish()
    }
}
