//! The one writer of the audit log.
//!
//! A full disk or an I/O error must never leave the chain in a state that
//! later reads as tampering, so every write is undone or made harmless:
//! - an append that fails part-way (ENOSPC after some bytes, a failed fsync)
//!   is cut back to the length the file had before it, so no partial line
//!   stays for the next event to be glued onto;
//! - `audit.head` is written after the line is on disk and only as a hint:
//!   when its write fails the head lags, which reading treats as harmless
//!   (every later line is keyed), and the next write catches it up. The
//!   engine writes it once per command, after the caller has its answer
//!   ([`AuditLog::catch_up_head`]): a crash in between leaves a head that
//!   lags, like a failed write;
//! - an event that cannot be written still goes to the system journal, and
//!   the next event that can be written is preceded by `BWK-SYS-0007`
//!   saying how many were lost;
//! - at start-up a last line torn by a crash is cut and the cut recorded.
//!
//! None of these stops the daemon: the firewall matters more than the log.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bulwark_model::api::AuditEvent;
use bulwark_model::text::escape;

use super::chain::{self, Chain, Head, Lines, Paths, GENESIS};
use super::{EventKind, Outcome, SYS_AUDIT_DAMAGED, SYS_AUDIT_KEYED, SYS_AUDIT_LOST, SYS_AUDIT_RECOVERED};
use crate::host::Host;
use crate::integrity::IntegrityKey as Key;
use crate::state::{self, io, StateError};

/// Events that could not be written since the last one that was.
#[derive(Debug)]
struct Lost {
    count: u64,
    first: String,
    error: String,
}

/// What reading the existing log at start-up found.
#[derive(Debug, Default)]
struct Found {
    /// The first break, if the chain does not hold.
    broken: Option<String>,
    /// The hash of the line `audit.head` names.
    hash_at_head: Option<String>,
    /// The line that keyed the chain, when it holds.
    keyed_from: Option<u64>,
}

/// The append-only audit log.
#[derive(Debug)]
pub struct AuditLog {
    paths: Paths,
    /// `None` while the key cannot be read or created; lines are then
    /// sealed with plain SHA-256 and verification says why.
    key: Option<Key>,
    /// Whether the log holds the event that switched it to HMAC.
    keyed: bool,
    seq: u64,
    last_hash: String,
    lost: Option<Lost>,
    /// The head's last write failed; logged once per streak.
    head_failing: bool,
    /// Lines were appended since the head was last written.
    head_behind: bool,
}

impl AuditLog {
    /// Open (creating) the host's log. Damage found (an edited or removed
    /// line, a head past the log's end) is recorded as an event of its own,
    /// so verification fails from then on; the log opens anyway, so the
    /// daemon keeps running. Fails only when the log or state directory
    /// cannot be created.
    pub fn open(host: &Host) -> Result<AuditLog, StateError> {
        let dir = host.log_dir();
        state::private_dir(&dir, 0o700)?;
        let paths = Paths::of(host);
        state::private_dir(&host.state_dir(), 0o700)?;
        let mut damage: Vec<String> = Vec::new();
        let mut note = |what: String| {
            log::error!("audit log: {what}");
            damage.push(what);
        };
        if let Err(e) = state::remove_leftovers(&dir) {
            log::warn!(error:display = e; "cannot remove leftovers of interrupted audit writes");
        }
        let torn = truncate_torn_tail(&paths.log).unwrap_or_else(|e| {
            note(format!("cannot cut a torn last line: {e}"));
            false
        });
        let key = match Key::load_or_create(&paths.state) {
            Ok(key) => Some(key),
            Err(e @ StateError::Corrupt { .. }) => {
                note(e.to_string());
                None
            }
            Err(e) => {
                log::error!(error:display = e; "cannot create the integrity key; the audit chain stays unkeyed until it can be");
                None
            }
        };
        let mut log = AuditLog {
            paths,
            key,
            keyed: false,
            seq: 0,
            last_hash: GENESIS.to_owned(),
            lost: None,
            head_failing: false,
            head_behind: false,
        };
        let head = Head::read(&log.paths.head).unwrap_or_else(|e| {
            note(e.to_string());
            None
        });
        let found = log.follow(head.as_ref().map(|h| h.seq));
        if let Some(why) = &found.broken {
            note(why.clone());
        }
        match head.as_ref().and_then(|h| log.head_damage(h, &found)) {
            Some(why) => note(why),
            // A head that lags (its write failed, or a crash came between
            // line and head) or is missing: caught up before `open` returns.
            None => log.head_behind = true,
        }
        // A failed write here is counted as lost and reported with the next
        // event that can be written; it must not keep the daemon from starting.
        if torn {
            let _ = log.record(
                &SYS_AUDIT_RECOVERED,
                0,
                Outcome::Success,
                "truncated a partial last line",
            );
        }
        if !damage.is_empty() {
            let msg = format!("audit log damaged: {}", damage.join("; "));
            let _ = log.record(&SYS_AUDIT_DAMAGED, 0, Outcome::Failure, &msg);
        }
        if !log.keyed {
            // Written now rather than with the first event, so a fresh or
            // upgraded log is keyed from start-up on.
            log.ensure_keyed();
        }
        log.catch_up_head();
        Ok(log)
    }

    /// Read the existing log to continue after its last line, checking the
    /// chain as far as it holds; past a break the lines are followed
    /// loosely, so the next event still goes after the last.
    fn follow(&mut self, head_seq: Option<u64>) -> Found {
        let mut found = Found::default();
        let lines = match Lines::open(&self.paths.log) {
            Ok(l) => l,
            Err(e) => {
                found.broken = Some(e.to_string());
                return found;
            }
        };
        let mut chain = Chain::new(self.key.as_ref());
        for line in lines {
            let (number, text) = match line {
                Ok(l) => l,
                Err(e) => {
                    found.broken.get_or_insert(e.to_string());
                    break;
                }
            };
            let event = match &found.broken {
                None => chain.push(number, &text).map_err(|b| b.to_string()),
                Some(_) => serde_json::from_str::<AuditEvent>(&text).map_err(|e| e.to_string()),
            };
            match event {
                Ok(e) => {
                    self.seq = e.seq;
                    self.last_hash = e.hash.clone();
                    self.keyed |= e.event == SYS_AUDIT_KEYED.id;
                    if head_seq == Some(e.seq) {
                        found.hash_at_head = Some(e.hash);
                    }
                }
                Err(why) => {
                    found.broken.get_or_insert(why);
                    self.seq = self.seq.max(number);
                }
            }
        }
        found.keyed_from = chain.keyed_from.filter(|_| found.broken.is_none());
        found
    }

    /// What is wrong with `head` given the log as found; `None` when it is
    /// where the log ends or behind it (a failed write, not tampering).
    fn head_damage(&self, head: &Head, found: &Found) -> Option<String> {
        if head.seq > self.seq {
            return Some(format!(
                "the log ends at event {} but audit.head records event {}: lines were removed from the end",
                self.seq, head.seq
            ));
        }
        if found.hash_at_head.as_ref().is_some_and(|at| *at != head.hash) {
            return Some(format!("audit.head does not match line {}", head.seq));
        }
        let needs_mac = head.mac.is_some() || found.keyed_from.is_some_and(|k| head.seq >= k);
        (needs_mac && !head.verifies(self.key.as_ref())).then(|| {
            "audit.head's MAC is missing or not valid under the integrity key: the head was rewritten".to_owned()
        })
    }

    /// The last `n` events, read back from the file (see [`chain::tail`]).
    pub fn tail(&self, n: usize) -> Result<Vec<AuditEvent>, StateError> {
        chain::tail(&self.paths, n)
    }

    /// Sequence number of the last event written.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Append an event and send it to the system log. The journal gets it
    /// even when the log file cannot (then it is counted as lost, and the
    /// error returned).
    pub fn record(
        &mut self,
        kind: &EventKind,
        uid: u32,
        outcome: Outcome,
        message: &str,
    ) -> Result<AuditEvent, StateError> {
        let message = escape(message);
        let written = self.prepare().and_then(|()| self.append(kind, uid, outcome, &message));
        match &written {
            Ok(event) => log::log!(
                target: "audit",
                kind.severity.log_level(),
                bulwark_event = kind.id,
                iso27001_2022 = kind.iso2022.join(","),
                iso27001_2013 = kind.iso2013.join(","),
                bulwark_uid = uid,
                bulwark_result = outcome.as_str(),
                bulwark_seq = event.seq,
                bulwark_chain = event.hash.as_str();
                "{}: {} ({})", kind.id, message, outcome.as_str()
            ),
            Err(e) => {
                log::log!(
                    target: "audit",
                    log::Level::Error,
                    bulwark_event = kind.id,
                    iso27001_2022 = kind.iso2022.join(","),
                    iso27001_2013 = kind.iso2013.join(","),
                    bulwark_uid = uid,
                    bulwark_result = outcome.as_str(),
                    bulwark_audit_log = "not written";
                    "{}: {} ({}); not in the audit log: {e}", kind.id, message, outcome.as_str()
                );
                let lost = self.lost.get_or_insert_with(|| Lost {
                    count: 0,
                    first: format!(
                        "{} at {}",
                        kind.id,
                        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    ),
                    error: e.to_string(),
                });
                lost.count += 1;
            }
        }
        written
    }

    /// What must precede the next event: the switch to the keyed chain,
    /// and the count of events lost since the last write.
    fn prepare(&mut self) -> Result<(), StateError> {
        self.ensure_keyed();
        if let Some(lost) = &self.lost {
            let msg = format!(
                "{} audit event(s) could not be written to the log (the first, {}: {}); the system journal has them",
                lost.count, lost.first, lost.error
            );
            self.append(&SYS_AUDIT_LOST, 0, Outcome::Failure, &msg)?;
            self.lost = None;
        }
        Ok(())
    }

    /// Key the chain from here on, if there is a key and it is not keyed yet.
    fn ensure_keyed(&mut self) {
        if self.key.is_none() {
            match Key::load_or_create(&self.paths.state) {
                Ok(key) => self.key = Some(key),
                Err(_) => return,
            }
        }
        if self.keyed {
            return;
        }
        let msg = if self.seq == 0 {
            format!(
                "new audit log, keyed with HMAC-SHA256 under {}",
                self.paths.key.display()
            )
        } else {
            format!(
                "the chain is keyed with HMAC-SHA256 under {} from this event on; the {} earlier event(s) \
                 are chained with plain SHA-256 and covered by this one",
                self.paths.key.display(),
                self.seq
            )
        };
        match self.append(&SYS_AUDIT_KEYED, 0, Outcome::Success, &msg) {
            Ok(_) => self.keyed = true,
            Err(e) => log::error!(error:display = e; "cannot key the audit chain yet; retrying with the next event"),
        }
    }

    /// Append one line (or nothing); the head follows in [`AuditLog::catch_up_head`].
    fn append(
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
        let keyed = self.keyed || kind.id == SYS_AUDIT_KEYED.id;
        event.hash = chain::seal(&event, self.key.as_ref().filter(|_| keyed));
        let mut line = serde_json::to_vec(&event).map_err(|e| StateError::Corrupt {
            path: self.paths.log.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        append_whole(&self.paths.log, &line)?;
        self.seq = event.seq;
        self.last_hash = event.hash.clone();
        self.head_behind = true;
        Ok(event)
    }

    /// Write the head when lines were appended since it was last written:
    /// one write for all the events of a command, off its caller's path.
    pub fn catch_up_head(&mut self) {
        if std::mem::take(&mut self.head_behind) {
            self.write_head();
        }
    }

    /// Best effort: a head that cannot be written only lags.
    fn write_head(&mut self) {
        if self.seq == 0 {
            return;
        }
        let key = self.key.as_ref().filter(|_| self.keyed);
        match state::write_json(&self.paths.head, &Head::new(self.seq, &self.last_hash, key)) {
            Ok(()) => self.head_failing = false,
            Err(e) if !self.head_failing => {
                self.head_failing = true;
                log::error!(error:display = e; "cannot update audit.head; it lags until a write succeeds (the chain stays verifiable)");
            }
            Err(_) => {}
        }
    }
}

impl Drop for AuditLog {
    /// A daemon that stops (or a log reopened) leaves its head caught up.
    fn drop(&mut self) {
        self.catch_up_head();
    }
}

/// Append `line` whole and durably, or leave the file as it was.
fn append_whole(path: &Path, line: &[u8]) -> Result<(), StateError> {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io("open", path))?;
    let before = f.metadata().map_err(io("stat", path))?.len();
    let written = f
        .write_all(line)
        .map_err(io("append to", path))
        .and_then(|()| f.sync_data().map_err(io("fsync", path)));
    if written.is_err() {
        // Shrinking needs no space. Should it fail too, the partial line is
        // cut as a torn tail at the next start-up, or glued onto the next line
        // and reported as damage: loud either way.
        if let Err(e) = f.set_len(before).and_then(|()| f.sync_data()) {
            log::error!(error:display = e; "cannot cut a partial audit line back");
        }
    }
    written
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
