//! Audit events: the catalogue of identifiers, their ISO/IEC 27001 controls,
//! and the append-only, hash-chained local log.
//!
//! Every state change and every refused request is recorded twice: as a
//! journald entry with `BULWARK_EVENT=`, `ISO27001_2022=` and `ISO27001_2013=`
//! fields, and as one JSON line in the audit log. Each line carries the hash of
//! the line before it, and `audit.head` holds the last hash, so editing,
//! inserting or removing any line (the last one included) breaks verification.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bulwark_model::api::{AuditEvent, AuditVerify};
use sha2::{Digest, Sha256};

use crate::state::{self, io, StateError};

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
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    fn log_level(self) -> log::Level {
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
const VAULT_2013: &[&str] = &["A.9.4", "A.10.1"];
const VAULT_2022: &[&str] = &["A.8.3", "A.8.5", "A.8.24"];

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
    API_REFUSED = "BWK-API-0001", Warning, "Request refused: caller lacks the required group", ACCESS_2013, ACCESS_2022;
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
    K3S_CONFIGURED = "BWK-K3S-0001", Notice, "K3s bind drop-ins written", NETWORK_2013, NETWORK_2022;
    K3S_RESTARTED = "BWK-K3S-0002", Notice, "k3s.service restarted to pick up its new bind configuration", CHANGE_2013, CHANGE_2022;
    K3S_EXPOSED = "BWK-K3S-0003", Error, "K3s API listens outside the VPN address and loopback", NETWORK_2013, NETWORK_2022;
    K3S_DRIFT_REPAIRED = "BWK-K3S-0004", Warning, "K3s drop-in edited or removed behind Bulwark's back; rewritten", NETWORK_2013, NETWORK_2022;
    K3S_DRIFT_DETECTED = "BWK-K3S-0005", Warning, "K3s drop-in edited or removed behind Bulwark's back; reported, left as found", NETWORK_2013, NETWORK_2022;
    SYS_STARTED = "BWK-SYS-0001", Info, "bulwarkd started and restored the current generation", LOGGING_2013, LOGGING_2022;
    SYS_AUDIT_RECOVERED = "BWK-SYS-0002", Warning, "Audit log tail torn by a crash was truncated", LOGGING_2013, LOGGING_2022;
    SYS_AUDIT_DAMAGED = "BWK-SYS-0003", Error, "Audit log found edited or cut short; verification fails from here on", LOGGING_2013, LOGGING_2022;
    SYS_MODULE_BROKEN = "BWK-SYS-0004", Error, "A module's state could not be loaded or restored; it is skipped until repaired", LOGGING_2013, LOGGING_2022;
    SYS_KEY_REPLACED = "BWK-SYS-0005", Error, "Integrity key unreadable: set aside and replaced; generations sealed with it are refused", LOGGING_2013, LOGGING_2022;
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
    WG_PEER_ADDED = "BWK-WG-0001", Notice, "WireGuard admin peer added", PROVISION_2013, PROVISION_2022;
    WG_PEER_REMOVED = "BWK-WG-0002", Notice, "WireGuard admin peer removed", PROVISION_2013, PROVISION_2022;
    WG_PEER_EXPIRED = "BWK-WG-0003", Notice, "WireGuard admin peer expired and removed", PROVISION_2013, PROVISION_2022;
    WG_KEY_CREATED = "BWK-WG-0004", Notice, "WireGuard server key created", PROVISION_2013, PROVISION_2022;
    WG_DRIFT_REPAIRED = "BWK-WG-0005", Warning, "WireGuard interface or peers drifted and were restored", PROVISION_2013, PROVISION_2022;
    WG_DRIFT_DETECTED = "BWK-WG-0006", Warning, "WireGuard interface or peers drifted; reported, left as found", PROVISION_2013, PROVISION_2022;
}

/// The catalogue as a Markdown table (docs/audit-events.md is this output).
pub fn catalogue_markdown() -> String {
    let mut out = String::from(
        "# Audit event catalogue\n\nGenerated from `agent/src/audit.rs`; a unit test keeps this file in step.\n\n\
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
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Refused => "refused",
        }
    }
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The append-only audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    head: PathBuf,
    seq: u64,
    last_hash: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

impl AuditLog {
    /// Open (creating) the log in `dir`. A final line torn by a crash is cut
    /// off and the cut recorded, so the chain stays verifiable. A log that was
    /// tampered with (lines edited or removed, the head not where the log
    /// ends) still opens, so the daemon keeps running, but the damage is
    /// recorded as an event of its own and `verify` fails from then on.
    pub fn open(dir: &Path) -> Result<AuditLog, StateError> {
        state::private_dir(dir, 0o700)?;
        let path = dir.join("audit.log");
        let head = dir.join("audit.head");
        let torn = truncate_torn_tail(&path)?;
        let mut log = AuditLog {
            path,
            head,
            seq: 0,
            last_hash: GENESIS.to_owned(),
        };
        let mut damage = None;
        let recorded = state::read_json::<Head>(&log.head).unwrap_or_else(|e| {
            damage = Some(e.to_string());
            None
        });
        match log.read_all() {
            Ok(events) => {
                let last = events.last();
                if let Some(l) = last {
                    log.seq = l.seq;
                    log.last_hash = l.hash.clone();
                }
                match (&recorded, last) {
                    (None, None) => {}
                    (Some(h), Some(l)) if h.seq == l.seq && h.hash == l.hash => {}
                    // A crash between appending a line and updating the head
                    // leaves the head exactly one line behind.
                    (Some(h), Some(l)) if h.seq + 1 == l.seq && h.hash == l.prev => log.write_head()?,
                    (None, Some(l)) if l.seq == 1 && damage.is_none() => log.write_head()?,
                    (h, _) => {
                        let at = h.as_ref().map_or(0, |h| h.seq);
                        damage.get_or_insert(format!(
                            "the log ends at event {} but audit.head records event {at}",
                            log.seq
                        ));
                    }
                }
            }
            Err(e) => {
                // Continue the chain from the recorded head; verify names the bad line.
                if let Some(h) = &recorded {
                    log.seq = h.seq;
                    log.last_hash = h.hash.clone();
                }
                damage = Some(e.to_string());
            }
        }
        if torn {
            log.record(
                &SYS_AUDIT_RECOVERED,
                0,
                Outcome::Success,
                "truncated a partial last line",
            )?;
        }
        if let Some(why) = damage {
            log::error!("audit log damaged: {why}");
            log.record(
                &SYS_AUDIT_DAMAGED,
                0,
                Outcome::Failure,
                &format!("audit log damaged: {why}"),
            )?;
        }
        Ok(log)
    }

    /// Sequence number of the last event written.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Append an event and mirror it to the system log.
    pub fn record(
        &mut self,
        kind: &EventKind,
        uid: u32,
        outcome: Outcome,
        message: &str,
    ) -> Result<AuditEvent, StateError> {
        let mut event = AuditEvent {
            seq: self.seq + 1,
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            event: kind.id.to_owned(),
            severity: kind.severity.as_str().to_owned(),
            uid,
            result: outcome.as_str().to_owned(),
            message: message.to_owned(),
            iso27001_2013: kind.iso2013.iter().map(|s| (*s).to_owned()).collect(),
            iso27001_2022: kind.iso2022.iter().map(|s| (*s).to_owned()).collect(),
            prev: self.last_hash.clone(),
            hash: String::new(),
        };
        event.hash = hash(&event);
        let mut line = serde_json::to_vec(&event).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io("open", &self.path))?;
        f.write_all(&line).map_err(io("append to", &self.path))?;
        f.sync_data().map_err(io("fsync", &self.path))?;
        self.seq = event.seq;
        self.last_hash = event.hash.clone();
        self.write_head()?;
        log::log!(
            target: "audit",
            kind.severity.log_level(),
            bulwark_event = kind.id,
            iso27001_2022 = kind.iso2022.join(","),
            iso27001_2013 = kind.iso2013.join(","),
            bulwark_uid = uid,
            bulwark_result = outcome.as_str();
            "{}: {} ({})", kind.id, message, outcome.as_str()
        );
        Ok(event)
    }

    fn write_head(&self) -> Result<(), StateError> {
        state::write_json(
            &self.head,
            &Head {
                seq: self.seq,
                hash: self.last_hash.clone(),
            },
        )
    }

    fn read_all(&self) -> Result<Vec<AuditEvent>, StateError> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("open", &self.path)(e)),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(io("read", &self.path))?;
            let event = serde_json::from_str(&line).map_err(|e| StateError::Corrupt {
                path: self.path.clone(),
                reason: format!("line {}: {e}", i + 1),
            })?;
            out.push(event);
        }
        Ok(out)
    }

    /// The last `n` events, oldest first.
    pub fn tail(&self, n: usize) -> Result<Vec<AuditEvent>, StateError> {
        let mut all = self.read_all()?;
        let skip = all.len().saturating_sub(n);
        Ok(all.split_off(skip))
    }

    /// Check the whole chain and that it ends where `audit.head` says.
    pub fn verify(&self) -> AuditVerify {
        let fail = |events, error: String| AuditVerify {
            ok: false,
            events,
            error: Some(error),
        };
        let events = match self.read_all() {
            Ok(e) => e,
            Err(e) => return fail(0, e.to_string()),
        };
        let mut prev = GENESIS.to_owned();
        for (i, e) in events.iter().enumerate() {
            let line = i + 1;
            if e.seq != line as u64 {
                return fail(
                    line as u64,
                    format!("line {line}: sequence {} where {line} was expected", e.seq),
                );
            }
            if e.prev != prev {
                return fail(line as u64, format!("line {line}: does not follow the line before it"));
            }
            if e.event == SYS_AUDIT_DAMAGED.id {
                return fail(
                    line as u64,
                    format!("line {line} records earlier damage: {}", e.message),
                );
            }
            if hash(e) != e.hash {
                return fail(
                    line as u64,
                    format!("line {line}: content does not match its hash (edited)"),
                );
            }
            prev = e.hash.clone();
        }
        let count = events.len() as u64;
        match state::read_json::<Head>(&self.head) {
            Ok(Some(h)) if h.seq == count && h.hash == prev => AuditVerify {
                ok: true,
                events: count,
                error: None,
            },
            Ok(Some(h)) => fail(
                count,
                format!(
                    "log ends at event {count} but the head records event {} (lines removed)",
                    h.seq
                ),
            ),
            Ok(None) if count == 0 => AuditVerify {
                ok: true,
                events: 0,
                error: None,
            },
            Ok(None) => fail(count, "audit.head is missing".to_owned()),
            Err(e) => fail(count, e.to_string()),
        }
    }
}

fn hash(e: &AuditEvent) -> String {
    let unhashed = AuditEvent {
        hash: String::new(),
        ..e.clone()
    };
    let mut h = Sha256::new();
    // Serialising a struct is deterministic: fields in declaration order.
    h.update(serde_json::to_vec(&unhashed).unwrap_or_default());
    hex::encode(h.finalize())
}

/// Cut a final line without its newline (a crash mid-append). Returns whether it did.
fn truncate_torn_tail(path: &Path) -> Result<bool, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io("read", path)(e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(false);
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new().write(true).open(path).map_err(io("open", path))?;
    f.set_len(keep as u64).map_err(io("truncate", path))?;
    f.sync_all().map_err(io("fsync", path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap();
        for i in 0..n {
            log.record(&CHG_APPLIED, 0, Outcome::Success, &format!("generation {i}"))
                .unwrap();
        }
        (dir, log)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (dir, log) = log_with(3);
        assert!(log.verify().ok, "{:?}", log.verify());
        let reopened = AuditLog::open(dir.path()).unwrap();
        assert_eq!(reopened.tail(10).unwrap().len(), 3);
        assert_eq!(reopened.tail(2).unwrap()[0].seq, 2);
    }

    #[test]
    fn an_edited_line_fails_verification() {
        let (dir, log) = log_with(3);
        let p = dir.path().join("audit.log");
        let text = fs::read_to_string(&p).unwrap().replace("generation 1", "generation 9");
        fs::write(&p, text).unwrap();
        let v = log.verify();
        assert!(!v.ok);
        assert!(v.error.unwrap().contains("line 2"));
    }

    #[test]
    fn a_removed_line_fails_verification_even_the_last() {
        for remove in [0usize, 2] {
            let (dir, log) = log_with(3);
            let p = dir.path().join("audit.log");
            let mut lines: Vec<String> = fs::read_to_string(&p).unwrap().lines().map(String::from).collect();
            lines.remove(remove);
            fs::write(&p, lines.join("\n") + "\n").unwrap();
            assert!(!log.verify().ok, "removing line {remove} went unnoticed");
        }
    }

    #[test]
    fn a_removed_last_line_stays_detected_across_a_restart() {
        let (dir, _log) = log_with(3);
        let p = dir.path().join("audit.log");
        let text = fs::read_to_string(&p).unwrap();
        let kept: Vec<&str> = text.lines().take(2).collect();
        fs::write(&p, kept.join("\n") + "\n").unwrap();
        let reopened = AuditLog::open(dir.path()).unwrap();
        let v = reopened.verify();
        assert!(!v.ok, "{v:?}");
        assert_eq!(reopened.tail(1).unwrap()[0].event, SYS_AUDIT_DAMAGED.id);
    }

    #[test]
    fn a_garbled_line_does_not_stop_the_log_from_opening() {
        let (dir, _log) = log_with(3);
        let p = dir.path().join("audit.log");
        let text = fs::read_to_string(&p).unwrap().replacen("{\"seq\":2", "garbage{", 1);
        fs::write(&p, text).unwrap();
        let reopened = AuditLog::open(dir.path()).unwrap();
        assert!(!reopened.verify().ok);
    }

    #[test]
    fn a_torn_tail_is_cut_and_recorded() {
        let (dir, _log) = log_with(2);
        let p = dir.path().join("audit.log");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":3,\"ti").unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert!(log.verify().ok, "{:?}", log.verify());
        assert_eq!(log.tail(1).unwrap()[0].event, SYS_AUDIT_RECOVERED.id);
    }

    #[test]
    fn identifiers_are_unique_and_well_formed() {
        let mut ids: Vec<&str> = CATALOGUE.iter().map(|k| k.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOGUE.len());
        for k in CATALOGUE {
            let parts: Vec<&str> = k.id.split('-').collect();
            assert!(parts.len() == 3 && parts[0] == "BWK" && parts[2].len() == 4, "{}", k.id);
            assert!(!k.iso2013.is_empty() && !k.iso2022.is_empty());
        }
    }

    #[test]
    fn the_docs_catalogue_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit-events.md");
        if std::env::var_os("BULWARK_REGEN_DOCS").is_some() {
            fs::write(path, catalogue_markdown()).unwrap();
        }
        let doc = fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            doc,
            catalogue_markdown(),
            "docs/audit-events.md is stale: run BULWARK_REGEN_DOCS=1 cargo test -p bulwarkd the_docs_catalogue"
        );
    }
}
