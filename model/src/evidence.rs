//! Wire types of `GET /v1/evidence`: the report for auditors, per ISO/IEC
//! 27001 control of the architecture, with its live checks, the audit
//! events of a period, and the records each control needs (generations,
//! the VPN access review, backups, IMA, Vault).
//!
//! `bulwarkctl evidence` writes this JSON as `evidence.json` and renders
//! `evidence.html` from it, so the page shows exactly what the file holds.
//! The schema is documented field by field in docs/evidence.md; [`VERSION`]
//! changes whenever a field changes meaning or goes away (new fields are
//! added with defaults and leave it alone). Every time is RFC 3339 in UTC,
//! to the second.

use serde::{Deserialize, Serialize};

use crate::api::{AuditEvent, Check};
use crate::ima::api::ImaState;
use crate::vault::VaultStatus;

/// `schema` of every report.
pub const SCHEMA: &str = "bulwark-evidence";
/// The schema version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Most events one report lists; the rest of the period is counted in
/// [`Evidence::events_omitted`] and named at the top of the report.
pub const MAX_EVENTS: usize = 100_000;

/// `GET /v1/evidence?since=…&until=…`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// [`VERSION`] of the daemon that assembled it.
    pub version: u32,
    /// When the live checks were taken and the log was read.
    pub generated: String,
    pub period: Period,
    pub host: HostFacts,
    /// What the top of the report says: the worst status and every problem.
    pub summary: Summary,
    pub chain: ChainEvidence,
    /// One per control of the architecture's table, in its order.
    pub controls: Vec<Control>,
    /// Live checks that evidence none of the table's controls (disk space,
    /// memory); listed so that no failing check is left out.
    pub other_checks: Vec<Check>,
    /// Every audit event of the period (up to [`MAX_EVENTS`]), oldest first;
    /// controls refer to them by `seq`.
    pub events: Vec<AuditEvent>,
    /// Events of the period not listed (past [`MAX_EVENTS`]).
    pub events_omitted: u64,
}

/// The audit period: `since` inclusive, `until` exclusive; absent is open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Period {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Which host, and what is in force on it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HostFacts {
    pub hostname: Option<String>,
    pub machine_id: Option<String>,
    pub bulwarkd_version: String,
    /// The daemon's `--root` (`/` in production).
    pub root: String,
    pub profile: Option<String>,
    pub generation: Option<u64>,
    /// SHA-256 of the profile text in force.
    pub digest: Option<String>,
}

/// A control's standing at export time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlStatus {
    /// Every live check that evidences it is OK.
    Pass,
    /// Bulwark does not manage it on this host (no section in the profile).
    NotManaged,
    /// Nothing on this host evidences it (no check, no record source).
    #[default]
    NoEvidence,
    /// A check that evidences it is WARNING.
    Warning,
    /// A check that evidences it is CRITICAL or UNKNOWN, or the audit
    /// chain is broken (logging).
    Fail,
}

impl ControlStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlStatus::Pass => "pass",
            ControlStatus::NotManaged => "not_managed",
            ControlStatus::NoEvidence => "no_evidence",
            ControlStatus::Warning => "warning",
            ControlStatus::Fail => "fail",
        }
    }
}

/// The top of the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// The worst control status (`fail` also when the chain is broken).
    pub status: ControlStatus,
    /// The audit chain verified from its first line to its end.
    pub chain_ok: bool,
    /// One line per thing an auditor must see first: a broken chain,
    /// each control that fails or warns and why, omitted events.
    pub problems: Vec<String>,
}

/// The audit chain as read for this report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainEvidence {
    /// Every line verified, from line 1 (the genesis) to the end, with its
    /// key and `audit.head`.
    pub ok: bool,
    /// Lines verified before the first break (all of them when `ok`).
    pub verified: u64,
    /// Complete lines in the log.
    pub lines: u64,
    /// The first break: where and which check.
    pub error: Option<String>,
    /// The first line that is not verified (events from it on are listed
    /// as found, unproven); absent when every line verified.
    pub first_unverified: Option<u64>,
    /// The last verified line: compare with a copy kept off the host
    /// (journald's `BULWARK_CHAIN=`).
    pub head: Option<ChainPoint>,
    /// The first and last line of the period's events.
    pub period_first: Option<u64>,
    pub period_last: Option<u64>,
    /// One sentence: what was verified and where the period sits in it.
    pub note: String,
}

/// One line of the chain: its number and hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainPoint {
    pub seq: u64,
    pub hash: String,
}

/// One control of the architecture's table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Control {
    /// Stable key: `access`, `network`, `secrets`, `change`, `backup`,
    /// `logging`, `integrity`.
    pub id: String,
    pub title: String,
    pub iso2013: Vec<String>,
    pub iso2022: Vec<String>,
    /// What on the host evidences it, in one sentence.
    pub evidence: String,
    pub status: ControlStatus,
    /// Why it has this status: the failing checks' reasons, or what is missing.
    pub reason: String,
    /// The live checks that evidence it, as taken at export time.
    pub checks: Vec<Check>,
    /// `seq` of every event of the period that carries one of its
    /// ISO 27001:2013 identifiers (see [`Evidence::events`]).
    pub events: Vec<u64>,
    /// Change management: the generations created in the period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generations: Option<Vec<GenerationRecord>>,
    /// Access control: every VPN peer in force (an access review).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerReview>>,
    /// Backups: snapshots and restore tests of the period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<Backups>,
    /// Integrity: the IMA mode in force and the last scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ima: Option<ImaState>,
    /// Secrets: the Vault's version, seal and custody.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultStatus>,
}

/// A generation made in the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationRecord {
    pub number: u64,
    pub profile: String,
    pub created: String,
    /// Who made it (0: bulwarkd itself, at boot or for a revert).
    pub uid: u32,
    /// The account name of `uid` on this host, when it has one.
    pub user: Option<String>,
    /// `boot`, `apply`, `rollback` or `revert`.
    pub reason: String,
    /// SHA-256 of the profile text.
    pub digest: String,
    /// In force at export time.
    pub current: bool,
    /// From the audit log: `confirmed` (BWK-CHG-0004), `reverted`
    /// (BWK-CHG-0005), `pending` (its window is open), or `none` (no
    /// confirmation was asked for, or a rollback ended its window).
    pub confirmation: String,
    /// The event that settled it, and who sent it.
    pub settled_by: Option<u64>,
    pub settled_uid: Option<u32>,
}

/// One VPN peer, for the access review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerReview {
    pub name: String,
    pub address: String,
    pub public_key: String,
    pub added: String,
    /// The uid of the `BWK-WG-0001` event that added this key, and its account name.
    pub added_by_uid: Option<u32>,
    pub added_by: Option<String>,
    /// `seq` of that event.
    pub added_event: Option<u64>,
    /// Absent: the peer never expires.
    pub expires: Option<String>,
    /// Absent: no handshake yet.
    pub last_handshake: Option<String>,
    /// Kept in the store but off the interface (`disable-peer`).
    pub disabled: bool,
    /// What a reviewer should look at, one line each (no expiry, never
    /// connected, no audit record of who added it).
    pub notes: Vec<String>,
}

/// Backups of the period, from the audit events of the Vault's snapshots
/// and restore tests (`BWK-VLT-02xx`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Backups {
    /// The profile in force has `[vault.snapshots]` (the `vault-snapshots`
    /// check is there); `false`: backups are not configured by Bulwark on
    /// this host, and nothing here evidences them.
    pub configured: bool,
    /// `seq` of the period's snapshot events (taken, uploaded, failed).
    pub snapshots: Vec<u64>,
    /// `seq` of the period's restore test events (passed, failed).
    pub restore_tests: Vec<u64>,
}
