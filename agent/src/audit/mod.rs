//! Audit events: the catalogue of identifiers, their ISO/IEC 27001 controls,
//! and the append-only, keyed, hash-chained local log.
//!
//! Every state change and every refused request is recorded twice: as a
//! journald entry with `BULWARK_EVENT=`, `ISO27001_2022=`, `ISO27001_2013=`
//! and `BULWARK_CHAIN=` (the line's chain hash, for comparing a copy kept off
//! the host) fields, and as one JSON line in the audit log. Each line carries
//! the hash of the line before it and its own HMAC-SHA256 under the host's
//! integrity key ([`crate::integrity`]), and `audit.head` holds the last
//! hash, so editing,
//! inserting or removing any line breaks verification, and only a holder of
//! the key can write a chain that verifies. Messages are escaped
//! ([`bulwark_model::text::escape`]): one event is one line wherever it is
//! shown.

mod chain;
pub mod controls;
mod evidence;
mod writer;

use bulwark_model::api::{AuditEvent, AuditVerify};

use crate::host::Host;
use crate::state::StateError;
use chain::Paths;
pub use chain::MAX_TAIL;
pub use evidence::{assemble as evidence, Inputs as EvidenceInputs, Window, WindowError};
pub use writer::AuditLog;

/// One kind of event in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKind {
    /// Stable identifier `BWK-<AREA>-<NNNN>`.
    pub id: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    pub iso2013: &'static [&'static str],
    pub iso2022: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Notice,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    pub fn log_level(self) -> log::Level {
        match self {
            Severity::Info | Severity::Notice => log::Level::Info,
            Severity::Warning => log::Level::Warn,
            Severity::Error => log::Level::Error,
        }
    }
}

// Control sets, as in DESIGN.md §5.
const CHANGE_2013: &[&str] = &["A.12.1.2"];
const CHANGE_2022: &[&str] = &["A.8.32", "A.8.9"];
const NETWORK_2013: &[&str] = &["A.13.1.1", "A.12.1.2"];
const NETWORK_2022: &[&str] = &["A.8.20", "A.8.22", "A.8.32"];
const LOGGING_2013: &[&str] = &["A.12.4.1"];
const LOGGING_2022: &[&str] = &["A.8.15", "A.8.16"];
const ACCESS_2013: &[&str] = &["A.9.4.1", "A.12.4.1"];
const PROVISION_2013: &[&str] = &["A.9.2.1"];
const PROVISION_2022: &[&str] = &["A.5.16", "A.5.18"];
const ACCESS_2022: &[&str] = &["A.8.3", "A.8.15"];
const INTEGRITY_2013: &[&str] = &["A.12.5.1", "A.12.2.1"];
const INTEGRITY_2022: &[&str] = &["A.8.19", "A.8.7"];
const VAULT_2013: &[&str] = &["A.9.4", "A.10.1"];
const VAULT_2022: &[&str] = &["A.8.3", "A.8.5", "A.8.24"];
const BACKUP_2013: &[&str] = &["A.12.3.1", "A.17.1.2"];
const BACKUP_2022: &[&str] = &["A.8.13", "A.8.14"];

macro_rules! events {
    ($($name:ident = $id:literal, $sev:ident, $title:literal, $i13:expr, $i22:expr;)*) => {
        $(pub const $name: EventKind = EventKind {
            id: $id, severity: Severity::$sev, title: $title, iso2013: $i13, iso2022: $i22,
        };)*
        /// Every event Bulwark emits, in identifier order.
        pub const CATALOGUE: &[EventKind] = &[$($name),*];
    };
}

events! {
    API_REFUSED = "BWK-API-0001", Warning, "Requests refused: caller lacks the required group (at most one event per uid and interval, with the count)", ACCESS_2013, ACCESS_2022;
    CHG_APPLIED = "BWK-CHG-0001", Notice, "Profile applied as a new generation", NETWORK_2013, NETWORK_2022;
    CHG_FAILED = "BWK-CHG-0002", Error, "Apply failed; previous state kept", NETWORK_2013, NETWORK_2022;
    CHG_ROLLBACK = "BWK-CHG-0003", Notice, "Rolled back to an earlier generation", CHANGE_2013, CHANGE_2022;
    CHG_CONFIRMED = "BWK-CHG-0004", Notice, "Confirmed apply kept", CHANGE_2013, CHANGE_2022;
    CHG_REVERTED = "BWK-CHG-0005", Warning, "Unconfirmed apply reverted when its window closed", CHANGE_2013, CHANGE_2022;
    CHG_INVALID = "BWK-CHG-0006", Warning, "Profile refused by validation; nothing changed", CHANGE_2013, CHANGE_2022;
    CHG_REFUSED_GENERATION = "BWK-CHG-0007", Error, "Stored generation refused: its seal does not match its content", CHANGE_2013, CHANGE_2022;
    CHG_BOOT_INVALID = "BWK-CHG-0008", Error, "Boot profile refused by validation; the built-in default was applied instead", CHANGE_2013, CHANGE_2022;
    CHG_SEALED = "BWK-CHG-0009", Notice, "Generations written before seals existed were sealed (trust on first use)", CHANGE_2013, CHANGE_2022;
    CHG_PRUNED = "BWK-CHG-0010", Info, "Old generations removed by retention", CHANGE_2013, CHANGE_2022;
    FW_DRIFT_REPAIRED = "BWK-FW-0001", Warning, "Firewall drift repaired", NETWORK_2013, NETWORK_2022;
    FW_DRIFT_DETECTED = "BWK-FW-0002", Warning, "Firewall drift detected and reported", NETWORK_2013, NETWORK_2022;
    FW_FAILSAFE = "BWK-FW-0003", Error, "Table inet bulwark was absent at start-up: failsafe ruleset installed", NETWORK_2013, NETWORK_2022;
    IMA_POLICY_WRITTEN = "BWK-IMA-0001", Notice, "IMA policy file /etc/ima/ima-policy written (systemd loads it at the next boot)", INTEGRITY_2013, INTEGRITY_2022;
    IMA_POLICY_LOADED = "BWK-IMA-0002", Notice, "IMA policy loaded into the running kernel through securityfs", INTEGRITY_2013, INTEGRITY_2022;
    IMA_CMDLINE_CHANGED = "BWK-IMA-0003", Notice, "IMA kernel command line drop-in for GRUB written or removed (update-grub and a reboot apply it)", INTEGRITY_2013, INTEGRITY_2022;
    IMA_SCAN = "BWK-IMA-0004", Info, "IMA scan finished with a changed count of files enforce mode would deny", INTEGRITY_2013, INTEGRITY_2022;
    IMA_LABELLED = "BWK-IMA-0005", Notice, "Files labelled with security.ima (bulwarkctl ima label/sign or the dpkg hook)", INTEGRITY_2013, INTEGRITY_2022;
    IMA_ENFORCE_REFUSED = "BWK-IMA-0006", Warning, "Moving to IMA enforce refused: files the policy appraises are unlabelled or stale", INTEGRITY_2013, INTEGRITY_2022;
    IMA_ENFORCE_FORCED = "BWK-IMA-0007", Warning, "Moving to IMA enforce forced (--force) although files would be denied", INTEGRITY_2013, INTEGRITY_2022;
    IMA_DRIFT_REPAIRED = "BWK-IMA-0008", Warning, "IMA policy file or GRUB drop-in drifted and was rewritten", INTEGRITY_2013, INTEGRITY_2022;
    IMA_DRIFT_DETECTED = "BWK-IMA-0009", Warning, "IMA policy file or GRUB drop-in drifted; reported, left as found", INTEGRITY_2013, INTEGRITY_2022;
    IMA_UNMANAGED = "BWK-IMA-0010", Notice, "IMA unmanaged: Bulwark's policy file and drop-in removed (the running kernel keeps its policy until reboot)", INTEGRITY_2013, INTEGRITY_2022;
    K3S_CONFIGURED = "BWK-K3S-0001", Notice, "K3s bind drop-ins written", NETWORK_2013, NETWORK_2022;
    K3S_RESTARTED = "BWK-K3S-0002", Notice, "k3s.service restarted to pick up its new bind configuration", CHANGE_2013, CHANGE_2022;
    K3S_EXPOSED = "BWK-K3S-0003", Error, "K3s API listens outside the VPN address and loopback", NETWORK_2013, NETWORK_2022;
    K3S_DRIFT_REPAIRED = "BWK-K3S-0004", Warning, "K3s drop-in edited or removed behind Bulwark's back; rewritten", NETWORK_2013, NETWORK_2022;
    K3S_DRIFT_DETECTED = "BWK-K3S-0005", Warning, "K3s drop-in edited or removed behind Bulwark's back; reported, left as found", NETWORK_2013, NETWORK_2022;
    K3S_ETCD_SNAPSHOTS = "BWK-K3S-0006", Notice, "K3s's own etcd snapshot settings (schedule, retention, off-site bucket) written or removed", BACKUP_2013, BACKUP_2022;
    SYS_STARTED = "BWK-SYS-0001", Info, "bulwarkd started and restored the current generation", LOGGING_2013, LOGGING_2022;
    SYS_AUDIT_RECOVERED = "BWK-SYS-0002", Warning, "Audit log tail torn by a crash was truncated", LOGGING_2013, LOGGING_2022;
    SYS_AUDIT_DAMAGED = "BWK-SYS-0003", Error, "Audit log found edited or cut short; verification fails from here on", LOGGING_2013, LOGGING_2022;
    SYS_MODULE_BROKEN = "BWK-SYS-0004", Error, "A module's state could not be loaded or restored; it is skipped until repaired", LOGGING_2013, LOGGING_2022;
    SYS_KEY_REPLACED = "BWK-SYS-0005", Error, "Integrity key unreadable: set aside and replaced; generations sealed with it are refused", LOGGING_2013, LOGGING_2022;
    SYS_AUDIT_KEYED = "BWK-SYS-0006", Notice, "Audit chain keyed with HMAC-SHA256 from this event on (earlier events stay verifiable)", LOGGING_2013, LOGGING_2022;
    SYS_AUDIT_LOST = "BWK-SYS-0007", Error, "Audit events could not be written to the log (disk full, I/O error); their number is recorded", LOGGING_2013, LOGGING_2022;
    VLT_INSTALLED = "BWK-VLT-0001", Notice, "Vault binary installed after its SHA-256 matched the profile", VAULT_2013, VAULT_2022;
    VLT_REFUSED = "BWK-VLT-0002", Error, "Vault binary refused: its SHA-256 differs from the profile; nothing installed", VAULT_2013, VAULT_2022;
    VLT_UPGRADED = "BWK-VLT-0003", Notice, "Vault switched to another version and restarted", VAULT_2013, VAULT_2022;
    VLT_KEY_CREATED = "BWK-VLT-0004", Notice, "Vault custody key or Bulwark token ID created and stored", VAULT_2013, VAULT_2022;
    VLT_INITIALISED = "BWK-VLT-0005", Notice, "Vault initialised", VAULT_2013, VAULT_2022;
    VLT_KEYS_ISSUED = "BWK-VLT-0006", Notice, "Vault keys and root token shown to the operator", VAULT_2013, VAULT_2022;
    VLT_KEYS_DELIVERED = "BWK-VLT-0007", Notice, "Operator acknowledged the Vault keys; Bulwark forgot them", VAULT_2013, VAULT_2022;
    VLT_ROOT_REVOKED = "BWK-VLT-0008", Notice, "Vault root token revoked", VAULT_2013, VAULT_2022;
    VLT_UNSEALED = "BWK-VLT-0009", Notice, "Vault unsealed", VAULT_2013, VAULT_2022;
    VLT_SEALED = "BWK-VLT-0010", Error, "Vault found sealed unexpectedly", VAULT_2013, VAULT_2022;
    VLT_MIGRATED = "BWK-VLT-0011", Notice, "Vault seal migrated to another custody", VAULT_2013, VAULT_2022;
    VLT_UNCLAIMED = "BWK-VLT-0012", Error, "Initialised Vault without Bulwark's custody record; it is never re-initialised", VAULT_2013, VAULT_2022;
    VLT_DRIFT_REPAIRED = "BWK-VLT-0013", Warning, "Vault binary, configuration or process drifted and was restored", VAULT_2013, VAULT_2022;
    VLT_DRIFT_DETECTED = "BWK-VLT-0014", Warning, "Vault binary, configuration or process drifted; reported, left as found", VAULT_2013, VAULT_2022;
    VLT_SNAPSHOT_TAKEN = "BWK-VLT-0201", Notice, "Vault raft snapshot taken and written locally with its SHA-256", BACKUP_2013, BACKUP_2022;
    VLT_SNAPSHOT_UPLOADED = "BWK-VLT-0202", Notice, "Vault snapshot uploaded off-site; the stored object's SHA-256 matched", BACKUP_2013, BACKUP_2022;
    VLT_SNAPSHOT_FAILED = "BWK-VLT-0203", Error, "Vault snapshot or its off-site upload failed", BACKUP_2013, BACKUP_2022;
    VLT_SNAPSHOT_PRUNED = "BWK-VLT-0204", Notice, "Vault snapshots beyond the retention removed, locally or off-site", BACKUP_2013, BACKUP_2022;
    VLT_RESTORE_TEST_PASSED = "BWK-VLT-0205", Notice, "Vault restore test passed: the snapshot opened in a throw-away Vault and its canary matched", BACKUP_2013, BACKUP_2022;
    VLT_RESTORE_TEST_FAILED = "BWK-VLT-0206", Error, "Vault restore test failed: the snapshot does not restore", BACKUP_2013, BACKUP_2022;
    VLT_RESTORED = "BWK-VLT-0207", Warning, "Vault restored from a snapshot (its data replaced)", BACKUP_2013, BACKUP_2022;
    WG_PEER_ADDED = "BWK-WG-0001", Notice, "WireGuard admin peer added", PROVISION_2013, PROVISION_2022;
    WG_PEER_REMOVED = "BWK-WG-0002", Notice, "WireGuard admin peer removed", PROVISION_2013, PROVISION_2022;
    WG_PEER_EXPIRED = "BWK-WG-0003", Notice, "WireGuard admin peer expired and removed", PROVISION_2013, PROVISION_2022;
    WG_KEY_CREATED = "BWK-WG-0004", Notice, "WireGuard server key created", PROVISION_2013, PROVISION_2022;
    WG_DRIFT_REPAIRED = "BWK-WG-0005", Warning, "WireGuard interface or peers drifted and were restored", PROVISION_2013, PROVISION_2022;
    WG_DRIFT_DETECTED = "BWK-WG-0006", Warning, "WireGuard interface or peers drifted; reported, left as found", PROVISION_2013, PROVISION_2022;
    WG_PEER_RENEWED = "BWK-WG-0007", Notice, "WireGuard admin peer given a new expiry", PROVISION_2013, PROVISION_2022;
    WG_PEER_DISABLED = "BWK-WG-0008", Notice, "WireGuard admin peer disabled: off the interface, kept in the store", PROVISION_2013, PROVISION_2022;
    WG_PEER_ENABLED = "BWK-WG-0009", Notice, "WireGuard admin peer enabled again", PROVISION_2013, PROVISION_2022;
}

/// The catalogue as a Markdown table (docs/audit-events.md is this output).
pub fn catalogue_markdown() -> String {
    let mut out = String::from(
        "# Audit event catalogue\n\nGenerated from `agent/src/audit/mod.rs`; a unit test keeps this file in step.\n\n\
         | Event | Severity | Meaning | ISO 27001:2013 | ISO 27001:2022 |\n|---|---|---|---|---|\n",
    );
    for k in CATALOGUE {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            k.id,
            k.severity.as_str(),
            k.title,
            k.iso2013.join(", "),
            k.iso2022.join(", ")
        ));
    }
    out
}

/// Outcome recorded with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Refused => "refused",
        }
    }
}

/// The last `n` events (at most [`MAX_TAIL`]), oldest first. Only reads,
/// so it runs beside the writer, off the engine thread.
pub fn tail(host: &Host, n: usize) -> Result<Vec<AuditEvent>, StateError> {
    chain::tail(&Paths::of(host), n)
}

/// Check the chain, its key and its head. Only reads (see [`tail`]).
pub fn verify(host: &Host) -> AuditVerify {
    chain::verify(&Paths::of(host))
}

#[cfg(test)]
mod tests;
