//! Wire types of bulwarkd's HTTP/JSON API on its Unix socket.
//!
//! Requests are strict (`deny_unknown_fields`); responses are tolerant
//! (`#[serde(default)]`) so an older `bulwarkctl` can read a newer daemon.

use serde::{Deserialize, Serialize};

use crate::profile::ProfileError;

/// The API version served under `/v1`.
pub const API_VERSION: &str = "v1";
/// Route prefix of the versioned API.
pub const API_PREFIX: &str = "/v1";
/// Where bulwarkd listens unless told otherwise (relative to `--root`).
pub const DEFAULT_SOCKET: &str = "/run/bulwark/bulwarkd.sock";
/// Largest request body the daemon accepts: 8 MiB holds a profile of
/// 350,000 admin networks written as quoted CIDRs (about 22 bytes each once
/// JSON-escaped). A body is read into memory whole and parsed once, so this
/// bounds what one request can make the daemon allocate (and, with at most
/// 64 connections served at once, all of them together: 512 MiB).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// `GET /version`: what this daemon is and speaks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionInfo {
    pub version: String,
    pub api_versions: Vec<String>,
    /// Modules and features this daemon has, e.g. `firewall`, `confirm`.
    pub capabilities: Vec<String>,
}

/// `POST /v1/apply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The profile's TOML text.
    pub profile: String,
    /// File name used to label validation errors.
    #[serde(default)]
    pub source: Option<String>,
    /// Plan only: validate and diff, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Revert to the previous generation unless confirmed within this many seconds.
    #[serde(default)]
    pub confirm_secs: Option<u64>,
    /// Apply even when a module's guard refuses (IMA enforce while files
    /// are unlabelled). Older clients omit it.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/confirm`. An empty body confirms whatever is pending.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// Confirm only if this is the generation awaiting confirmation; any
    /// other pending generation (another operator's change) is refused.
    #[serde(default)]
    pub generation: Option<u64>,
}

/// `POST /v1/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Generation to restore; the one before the current when absent.
    #[serde(default)]
    pub generation: Option<u64>,
}

/// What an apply, rollback or revert would change or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// One line of a plan: a module adds, removes or changes one thing.
///
/// `what` names the thing; `before` and `after` are its values where the
/// module has them (a policy, a port, a profile setting; an added rule or
/// set element as `after` only, a removed one as `before` only). Older
/// daemons put everything in `what` and send neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Module that owns the change: `firewall`, `wireguard`, ...
    pub module: String,
    pub op: ChangeOp,
    /// What changes, in the module's own words (an nft chain, a set, a
    /// profile setting such as `monitoring.listen`, ...).
    pub what: String,
    /// The value in force; absent for an addition or where the module has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The value the change puts in force; absent for a removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Add,
    Remove,
    Change,
}

impl Change {
    /// A change described in words only.
    pub fn new(module: &str, op: ChangeOp, what: impl Into<String>) -> Change {
        Change {
            module: module.to_owned(),
            op,
            what: what.into(),
            before: None,
            after: None,
        }
    }

    /// A change of `what` from one value to another.
    pub fn values(
        module: &str,
        what: impl Into<String>,
        before: impl Into<serde_json::Value>,
        after: impl Into<serde_json::Value>,
    ) -> Change {
        Change {
            before: Some(before.into()),
            after: Some(after.into()),
            ..Change::new(module, ChangeOp::Change, what)
        }
    }

    /// `what`, then its values: `chain input policy: drop -> accept`,
    /// `set admin_v4: 192.0.2.0/24`.
    pub fn describe(&self) -> String {
        match (&self.before, &self.after) {
            (None, None) => self.what.clone(),
            (Some(v), None) | (None, Some(v)) => format!("{}: {}", self.what, show(v)),
            (Some(b), Some(a)) => format!("{}: {} -> {}", self.what, show(b), show(a)),
        }
    }
}

/// A value as people read it: strings bare, `null` as "(none)", the rest
/// as compact JSON.
fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "(none)".to_owned(),
        other => other.to_string(),
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.op {
            ChangeOp::Add => '+',
            ChangeOp::Remove => '-',
            ChangeOp::Change => '~',
        };
        write!(f, "{sign} {}: {}", self.module, self.describe())
    }
}

/// Response of apply, rollback and confirm.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ApplyResponse {
    pub profile: String,
    /// Generation now in force (unchanged for a dry run or an empty plan).
    pub generation: Option<u64>,
    pub plan: Plan,
    /// Whether the host was changed.
    pub changed: bool,
    pub dry_run: bool,
    /// Unix time at which the apply reverts unless confirmed.
    pub confirm_deadline: Option<u64>,
    /// SHA-256 (hex) of the profile text this answer is about: the one sent
    /// (apply, dry run), or the generation's (rollback, confirm). Equal to
    /// `status.digest` when exactly this text is in force.
    pub digest: Option<String>,
    /// What the operator should know about the host this change met, such as
    /// another firewall manager at work; the change was made all the same.
    pub warnings: Vec<String>,
}

/// Health levels, in the monitoring plug-in convention (exit code = value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    #[default]
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    pub fn exit_code(self) -> i32 {
        self as i32
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        })
    }
}

/// One named health check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Check {
    pub name: String,
    /// The module the check belongs to (`firewall`, `wireguard`, ...;
    /// `bulwarkd` for the daemon's own and the host's resources).
    pub module: String,
    pub level: Level,
    /// One line: why the check has this level.
    pub reason: String,
}

/// `GET /v1/health`: the worst check decides the overall level.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    pub level: Level,
    pub checks: Vec<Check>,
}

impl Health {
    pub fn from_checks(checks: Vec<Check>) -> Health {
        let level = checks.iter().map(|c| c.level).max().unwrap_or_default();
        Health { level, checks }
    }
}

/// A pending confirmation window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PendingConfirm {
    pub generation: u64,
    /// Generation restored when the window closes unconfirmed.
    pub revert_to: Option<u64>,
    /// Unix time the window closes.
    pub deadline: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub version: String,
    pub root: String,
    pub profile: Option<String>,
    pub generation: Option<u64>,
    pub drift: String,
    pub drift_interval_secs: u64,
    pub pending_confirm: Option<PendingConfirm>,
    pub firewall: FirewallStatus,
    /// Present when the profile in force has a `[wireguard]` section.
    pub wireguard: Option<WireGuardStatus>,
    pub health: Level,
    pub last_error: Option<String>,
    /// SHA-256 of the profile text in force.
    pub digest: Option<String>,
    /// `/etc/bulwark/profile.toml` compared with what is in force; absent
    /// when there is no such file.
    pub boot_profile: Option<BootProfile>,
    /// One entry per module, in the order the engine converges them.
    pub modules: Vec<ModuleStatus>,
}

/// The boot profile on disk against the generation in force: an edited
/// file takes effect only through `bulwarkctl apply`, so a difference is
/// worth knowing before the next host rebuild.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootProfile {
    /// Where the file is (under the daemon's `--root`).
    pub path: String,
    /// SHA-256 of its text.
    pub digest: String,
    /// Its settings differ from those in force, or it is not a valid profile.
    pub differs: bool,
    /// One line: how it compares.
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FirewallStatus {
    /// Table `inet bulwark` exists in the kernel.
    pub present: bool,
    /// The live table matches what the current generation installed.
    pub in_sync: bool,
    pub set_elements: usize,
    pub drift_repairs: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WireGuardStatus {
    pub interface: String,
    /// `kernel` or `userspace`: the backend actually in use.
    pub backend: String,
    pub address: String,
    pub listen_port: u16,
    /// The server's public key (the private key never leaves the host).
    pub public_key: String,
    /// Stored peers, enabled or not (`GET /v1/peers` lists them).
    pub peers: usize,
    /// Of `peers`, those kept in the store but off the interface.
    pub disabled_peers: usize,
}

/// One module's entry in `status.modules`, in registry order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModuleStatus {
    pub module: String,
    /// The profile in force has a section for it (the firewall always has).
    pub managed: bool,
    /// The worst of the module's health checks.
    pub level: Level,
    /// One line for people: what is in force.
    pub summary: String,
    /// Module-specific detail for scripts; its shape is the module's own.
    pub details: serde_json::Value,
}

/// One entry of `GET /v1/generations`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationInfo {
    pub number: u64,
    pub profile: String,
    /// Unix time of creation.
    pub created: u64,
    /// uid of the caller who made it (0 for the daemon itself).
    pub uid: u32,
    /// How it came to be: `apply`, `boot`, `rollback`, `revert`.
    pub reason: String,
    pub current: bool,
    /// SHA-256 of the profile text it was made from.
    pub digest: String,
}

/// `GET /v1/generations/{n}`: one generation whole, as kept on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationDetail {
    pub info: GenerationInfo,
    /// The file the profile came from, as the operator named it.
    pub source: String,
    /// The bulwarkd version that wrote it.
    pub version: String,
    /// Whether its seal verifies with this host's integrity key. One that
    /// does not was edited or damaged on disk and is never installed.
    pub sealed: bool,
    /// The profile text as applied.
    pub profile: String,
    /// Module → file name → content: what each module rendered from the profile.
    pub artifacts: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// One line of the audit log (`GET /v1/audit`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditEvent {
    pub seq: u64,
    /// RFC 3339 time.
    pub time: String,
    /// Stable identifier `BWK-<AREA>-<NNNN>`.
    pub event: String,
    pub severity: String,
    pub uid: u32,
    /// `success`, `failure` or `refused`.
    pub result: String,
    pub message: String,
    pub iso27001_2013: Vec<String>,
    pub iso27001_2022: Vec<String>,
    /// Hash of the previous line; all zeros for the first.
    pub prev: String,
    /// SHA-256 over `prev` and this event's other fields.
    pub hash: String,
}

/// `GET /v1/audit/verify`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditVerify {
    pub ok: bool,
    pub events: u64,
    /// The first break found, naming the line.
    pub error: Option<String>,
}

/// Error body of every non-2xx response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// Machine-readable kind: `invalid_profile`, `forbidden`, `apply_failed`, ...
    pub kind: String,
    /// What went wrong, with its cause chain, in one sentence.
    pub error: String,
    /// Validation errors of a refused profile, one per field.
    pub profile_errors: Vec<ProfileError>,
}

/// `POST /v1/peers`: onboard an admin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPeerRequest {
    /// Unique name: 1-32 of a-z A-Z 0-9 . _ - (starting with a letter or digit).
    pub name: String,
    /// The admin's own public key (base64); Bulwark generates a key pair when absent.
    #[serde(default)]
    pub public_key: Option<String>,
    /// A specific VPN address; the next free one when absent.
    #[serde(default)]
    pub address: Option<std::net::Ipv4Addr>,
    /// Lifetime such as "90d"; the profile's `peer_expiry` when absent.
    #[serde(default)]
    pub expires: Option<String>,
}

/// `DELETE /v1/peers/NAME`, as the body of the `remove-peer` action.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovePeerRequest {
    /// Name of the peer to remove.
    pub name: String,
}

/// `renew-peer`: give a peer a new lifetime, counted from now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewPeerRequest {
    /// Name of the peer.
    pub name: String,
    /// New lifetime such as "90d", or "never"; the profile's `peer_expiry`
    /// when absent.
    #[serde(default)]
    pub expires: Option<String>,
}

/// `disable-peer` and `enable-peer`: the peer named.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRef {
    /// Name of the peer.
    pub name: String,
}

/// Response of `POST /v1/peers`: the only time the client config is shown.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AddPeerResponse {
    pub peer: PeerInfo,
    /// wg-quick configuration for the admin; holds the private key when
    /// Bulwark generated it, a placeholder otherwise. Not stored by Bulwark.
    pub client_config: String,
}

/// The client config holds private and preshared keys: never in Debug output.
impl std::fmt::Debug for AddPeerResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddPeerResponse")
            .field("peer", &self.peer)
            .field("client_config", &"<redacted>")
            .finish()
    }
}

/// One WireGuard peer (`GET /v1/peers`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerInfo {
    pub name: String,
    pub address: String,
    pub public_key: String,
    /// Unix times.
    pub created: u64,
    pub expires: Option<u64>,
    pub last_handshake: Option<u64>,
    /// Bytes received from and sent to the peer since its session began.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Kept in the store but off the interface: its config does not work
    /// until `enable-peer`.
    pub disabled: bool,
}
