//! Reading and checking the audit chain, without writing anything.
//!
//! The writer uses these at start-up, and `GET /v1/audit` and
//! `GET /v1/audit/verify` use them on a blocking thread while the engine
//! keeps appending. Three rules make that safe without a lock: a final line
//! without its newline is an append in progress (or one a crash cut short,
//! which the writer removes at its next start) and is not read; `audit.head`
//! is read before the log, and the writer updates it only after the line is
//! on disk, so a reader never sees a head past the end of the log; and a head
//! that lags behind the log (its write failed, say on a full disk) is not a
//! break, because every line after it is keyed like the rest.
//!
//! Each line's `hash` is HMAC-SHA256 under the host's integrity key
//! ([`crate::integrity`]) over the event with `hash` empty (its `prev`
//! included). Lines written before the chain was
//! keyed carry plain SHA-256 instead; the first keyed line is the
//! `BWK-SYS-0006` event, whose `prev` covers them, so they stay protected.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use bulwark_model::api::{AuditEvent, AuditVerify};
use sha2::{Digest, Sha256};

use super::{SYS_AUDIT_DAMAGED, SYS_AUDIT_KEYED};
use crate::host::Host;
use crate::integrity::IntegrityKey as Key;
use crate::state::{self, io, StateError};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most events one `tail` returns.
pub const MAX_TAIL: usize = 10_000;

/// The log's files, and where the key is.
#[derive(Debug, Clone)]
pub struct Paths {
    pub log: PathBuf,
    pub head: PathBuf,
    /// The state directory, which holds the integrity key.
    pub state: PathBuf,
    pub key: PathBuf,
}

impl Paths {
    pub fn of(host: &Host) -> Paths {
        let dir = host.log_dir();
        Paths {
            log: dir.join("audit.log"),
            head: dir.join("audit.head"),
            key: Key::path(&host.state_dir()),
            state: host.state_dir(),
        }
    }
}

/// What a line's MAC and the head's MAC each cover first, so that neither
/// can stand for the other or for a generation's seal.
const LINE: &[u8] = b"bulwark audit line";
const HEAD: &[u8] = b"bulwark audit head";

/// `audit.head`: the last line written, and a MAC over both so that it
/// cannot be moved back along with the log's end.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    /// Absent in heads written before the chain was keyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Head {
    pub fn new(seq: u64, hash: &str, key: Option<&Key>) -> Head {
        Head {
            seq,
            hash: hash.to_owned(),
            mac: key.map(|k| k.seal(&[HEAD, seq.to_string().as_bytes(), hash.as_bytes()])),
        }
    }

    /// Whether the head carries a valid MAC under `key`.
    pub fn verifies(&self, key: Option<&Key>) -> bool {
        match (&self.mac, key) {
            (Some(mac), Some(k)) => k.verify(&[HEAD, self.seq.to_string().as_bytes(), self.hash.as_bytes()], mac),
            _ => false,
        }
    }

    pub fn read(path: &Path) -> Result<Option<Head>, StateError> {
        state::read_json(path)
    }
}

/// What the chain's `hash` covers: the event with `hash` empty, serialised
/// (deterministically: fields in declaration order).
fn content(event: &AuditEvent) -> Vec<u8> {
    let unhashed = AuditEvent {
        hash: String::new(),
        ..event.clone()
    };
    serde_json::to_vec(&unhashed).unwrap_or_default()
}

/// The `hash` an event gets: HMAC-SHA256 under `key`, or plain SHA-256 for a
/// line before the chain was keyed (`None`).
pub fn seal(event: &AuditEvent, key: Option<&Key>) -> String {
    match key {
        Some(k) => k.seal(&[LINE, &content(event)]),
        None => hex::encode(Sha256::digest(content(event))),
    }
}

/// Where the chain breaks and which check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// `line 3`, `audit.head`, `integrity.key`, `the log`.
    pub place: String,
    /// The field or check: `seq`, `prev`, `hash`, `json`, `mac`, ...
    pub check: &'static str,
    pub why: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}: {}", self.place, self.check, self.why)
    }
}

fn at_line(line: u64, check: &'static str, why: String) -> Break {
    Break {
        place: format!("line {line}"),
        check,
        why,
    }
}

/// The complete lines of a log, numbered from 1. A last line without its
/// newline is left out (see the module docs).
pub struct Lines {
    reader: Option<BufReader<File>>,
    path: PathBuf,
    number: u64,
}

impl Lines {
    pub fn open(path: &Path) -> Result<Lines, StateError> {
        let reader = match File::open(path) {
            Ok(f) => Some(BufReader::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("open", path)(e)),
        };
        Ok(Lines {
            reader,
            path: path.to_owned(),
            number: 0,
        })
    }
}

impl Iterator for Lines {
    type Item = Result<(u64, String), StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.reader.as_mut()?;
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf) {
            Err(e) => Some(Err(io("read", &self.path)(e))),
            Ok(_) if buf.pop() != Some(b'\n') => None,
            Ok(_) => {
                self.number += 1;
                Some(Ok((self.number, String::from_utf8_lossy(&buf).into_owned())))
            }
        }
    }
}

/// The chain checked line by line.
#[derive(Debug)]
pub struct Chain<'k> {
    key: Option<&'k Key>,
    /// Lines checked so far.
    pub count: u64,
    pub last_hash: String,
    /// The line that switched the chain to HMAC, once seen.
    pub keyed_from: Option<u64>,
}

impl<'k> Chain<'k> {
    pub fn new(key: Option<&'k Key>) -> Chain<'k> {
        Chain {
            key,
            count: 0,
            last_hash: GENESIS.to_owned(),
            keyed_from: None,
        }
    }

    /// Check line `line` (the next one); the event, or the first check it fails.
    pub fn push(&mut self, line: u64, text: &str) -> Result<AuditEvent, Break> {
        let event: AuditEvent =
            serde_json::from_str(text).map_err(|e| at_line(line, "json", format!("not an audit event ({e})")))?;
        if event.seq != line {
            return Err(at_line(line, "seq", format!("expected {line}, found {}", event.seq)));
        }
        if event.prev != self.last_hash {
            let expected = if line == 1 {
                "the genesis value".to_owned()
            } else {
                format!("the hash of line {}", line - 1)
            };
            return Err(at_line(
                line,
                "prev",
                format!("expected {} ({expected}), found {}", self.last_hash, event.prev),
            ));
        }
        if self.keyed_from.is_none() && event.event == SYS_AUDIT_KEYED.id {
            self.keyed_from = Some(line);
        }
        if self.keyed_from.is_some() {
            let Some(key) = self.key else {
                return Err(at_line(
                    line,
                    "hash",
                    "the line is keyed with HMAC-SHA256 but there is no integrity key to check it".to_owned(),
                ));
            };
            // The expected MAC is never shown: it would forge this line.
            if !key.verify(&[LINE, &content(&event)], &event.hash) {
                return Err(at_line(
                    line,
                    "hash",
                    format!(
                        "HMAC-SHA256 under this host's integrity key does not match (found {}): the line was \
                         edited, or was not written with this key",
                        event.hash
                    ),
                ));
            }
        } else if seal(&event, None) != event.hash {
            return Err(at_line(
                line,
                "hash",
                format!(
                    "SHA-256 does not match the line's content (found {}): the line was edited",
                    event.hash
                ),
            ));
        }
        if event.event == SYS_AUDIT_DAMAGED.id {
            return Err(at_line(
                line,
                "event",
                format!("records earlier damage: {}", event.message),
            ));
        }
        self.count = line;
        self.last_hash = event.hash.clone();
        Ok(event)
    }
}

/// The last `n` events, oldest first. Only those lines are parsed, so damage
/// further back does not hide the recent past.
pub fn tail(paths: &Paths, n: usize) -> Result<Vec<AuditEvent>, StateError> {
    let n = n.min(MAX_TAIL);
    let mut last: VecDeque<(u64, String)> = VecDeque::with_capacity(n.min(1024));
    for line in Lines::open(&paths.log)? {
        if n == 0 {
            break;
        }
        if last.len() == n {
            last.pop_front();
        }
        last.push_back(line?);
    }
    last.into_iter()
        .map(|(number, text)| {
            serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
                path: paths.log.clone(),
                reason: format!("line {number}: {e}"),
            })
        })
        .collect()
}

/// What [`walk`] found: the verdict, and where the chain stands.
#[derive(Debug, Clone)]
pub struct Walked {
    pub verify: AuditVerify,
    /// Complete lines in the log.
    pub lines: u64,
    /// The last verified line's number and hash.
    pub last: Option<(u64, String)>,
    /// The first line that was not verified (a break there or earlier,
    /// or a key or head that could not be read); `None` when every line
    /// verified, even if the chain as a whole fails afterwards (a head past
    /// the end, no keyed line).
    pub first_unverified: Option<u64>,
}

/// Check the whole chain, its key and its head; the first break found.
pub fn verify(paths: &Paths) -> AuditVerify {
    walk(paths, |_, _| {}).verify
}

/// [`verify`], handing every line's event to `visit` on the way, with
/// whether it verified. Past a break the lines are still read (and visited
/// as unverified), so a report can show what the log holds after it.
pub fn walk(paths: &Paths, mut visit: impl FnMut(&AuditEvent, bool)) -> Walked {
    let file = |path: &Path, check, e: StateError| Break {
        place: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        check,
        why: e.to_string(),
    };
    // The head first: see the module docs.
    let head = Head::read(&paths.head);
    let key = Key::load(&paths.state);
    let mut early = None;
    let (head, key) = match (head, key) {
        (Err(e), _) => {
            early = Some(file(&paths.head, "read", e));
            (None, None)
        }
        (_, Err(e)) => {
            early = Some(file(&paths.key, "read", e));
            (None, None)
        }
        (Ok(h), Ok(k)) => (h, k),
    };
    if early.is_none() && key.is_none() && Lines::open(&paths.log).is_ok_and(|mut l| l.next().is_some()) {
        early = Some(Break {
            place: "integrity.key".to_owned(),
            check: "present",
            why: format!(
                "{} is missing: bulwarkd creates it at start-up, so a log without it cannot be trusted",
                paths.key.display()
            ),
        });
    }
    let mut chain = Chain::new(key.as_ref());
    let mut broken = early;
    let mut first_unverified = broken.as_ref().map(|_| 1);
    let mut at_head = None;
    let mut lines = 0;
    match Lines::open(&paths.log) {
        Err(e) => {
            broken.get_or_insert(file(&paths.log, "read", e));
            first_unverified.get_or_insert(1);
        }
        Ok(all) => {
            for line in all {
                let (number, text) = match line {
                    Ok(l) => l,
                    Err(e) => {
                        broken.get_or_insert(file(&paths.log, "read", e));
                        first_unverified.get_or_insert(lines + 1);
                        break;
                    }
                };
                lines = number;
                if broken.is_none() {
                    match chain.push(number, &text) {
                        Ok(event) => {
                            visit(&event, true);
                            if head.as_ref().is_some_and(|h| h.seq == number) {
                                at_head = Some(chain.last_hash.clone());
                            }
                            continue;
                        }
                        Err(b) => {
                            broken = Some(b);
                            first_unverified = Some(number);
                        }
                    }
                }
                // Past a break: shown as found, never as proven.
                if let Ok(event) = serde_json::from_str::<AuditEvent>(&text) {
                    visit(&event, false);
                }
            }
        }
    }
    let count = chain.count;
    let last = (count > 0).then(|| (count, chain.last_hash.clone()));
    let done = |b: Option<Break>| Walked {
        verify: AuditVerify {
            ok: b.is_none(),
            events: count,
            error: b.map(|b| b.to_string()),
        },
        lines,
        last: last.clone(),
        first_unverified,
    };
    if broken.is_some() || count == 0 {
        return done(broken);
    }
    done(whole_chain(count, chain.keyed_from, head, at_head, key.as_ref()))
}

/// The checks on the chain as a whole, once every line verified: it is
/// keyed, and `audit.head` matches it.
fn whole_chain(
    count: u64,
    keyed_from: Option<u64>,
    head: Option<Head>,
    at_head: Option<String>,
    key: Option<&Key>,
) -> Option<Break> {
    let place = |p: &str| p.to_owned();
    let Some(keyed_from) = keyed_from else {
        return Some(Break {
            place: place("the log"),
            check: "keyed",
            why: "no line is keyed with the integrity key: keyed lines were removed, or the first keyed \
                  event (BWK-SYS-0006) could not be written yet (is the disk full?)"
                .to_owned(),
        });
    };
    let head_break = |check, why| Break {
        place: place("audit.head"),
        check,
        why,
    };
    let Some(head) = head else {
        return Some(head_break("present", "audit.head is missing".to_owned()));
    };
    if head.seq > count {
        return Some(head_break(
            "seq",
            format!(
                "records line {} but the log ends at line {count}: lines were removed from the end",
                head.seq
            ),
        ));
    }
    if let Some(line_hash) = at_head.filter(|h| *h != head.hash) {
        return Some(head_break(
            "hash",
            format!(
                "expected {line_hash} (the hash of line {}), found {}",
                head.seq, head.hash
            ),
        ));
    }
    if (head.seq >= keyed_from || head.mac.is_some()) && !head.verifies(key) {
        return Some(head_break(
            "mac",
            "missing or not valid under this host's integrity key: the head was rewritten".to_owned(),
        ));
    }
    None
}
