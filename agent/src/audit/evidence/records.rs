//! The records some controls need beyond checks and events: the
//! generations of the period with how each was settled, and the access
//! review of the VPN peers with who added each. Both join what the engine
//! publishes with what the audit log says, read in the same walk of the
//! chain as the period's events (the whole log, since a peer added before
//! the period is still in the review).

use std::collections::BTreeMap;
use std::time::SystemTime;

use bulwark_model::api::{AuditEvent, GenerationInfo, PeerInfo};
use bulwark_model::evidence::{GenerationRecord, PeerReview};

use super::{rfc3339_unix, Window};
use crate::audit::{CHG_CONFIRMED, CHG_REVERTED, WG_PEER_ADDED};

/// How a generation's confirmation window ended, from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settled {
    how: &'static str,
    seq: u64,
    uid: u32,
}

/// Who added a key, from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Added {
    seq: u64,
    uid: u32,
}

/// What the whole log says about generations and peers.
#[derive(Debug, Default)]
pub struct History {
    settled: BTreeMap<u64, Settled>,
    /// Public key → the last event that added it.
    added: BTreeMap<String, Added>,
}

/// `N` of a message that starts `generation N `.
fn generation_of(message: &str) -> Option<u64> {
    let rest = message.strip_prefix("generation ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl History {
    /// Take what the event says (the messages are the engine's and the
    /// WireGuard module's own: `generation 7 confirmed`, `generation 7 was
    /// not confirmed by its deadline; …`, `peer alice 10.8.0.2 key K`).
    pub fn note(&mut self, e: &AuditEvent) {
        let settle = |how| Settled {
            how,
            seq: e.seq,
            uid: e.uid,
        };
        if e.event == CHG_CONFIRMED.id {
            if let Some(n) = generation_of(&e.message).filter(|_| e.message.ends_with(" confirmed")) {
                self.settled.insert(n, settle("confirmed"));
            }
        } else if e.event == CHG_REVERTED.id {
            if let Some(n) = generation_of(&e.message).filter(|_| e.message.contains(" was not confirmed")) {
                self.settled.insert(n, settle("reverted"));
            }
        } else if e.event == WG_PEER_ADDED.id {
            if let Some((_, key)) = e.message.rsplit_once(" key ") {
                self.added.insert(key.to_owned(), Added { seq: e.seq, uid: e.uid });
            }
        }
    }
}

/// Account names by uid, looked up once each.
#[derive(Debug, Default)]
pub struct Users(BTreeMap<u32, Option<String>>);

impl Users {
    pub fn name(&mut self, uid: u32) -> Option<String> {
        self.0
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
}

/// The generations created in the period, oldest first.
pub fn generations(
    gens: &[GenerationInfo],
    window: Window,
    pending: Option<u64>,
    history: &History,
    users: &mut Users,
) -> Vec<GenerationRecord> {
    gens.iter()
        .filter(|g| window.contains_unix(g.created))
        .map(|g| {
            let settled = history.settled.get(&g.number);
            let confirmation = match settled {
                Some(s) => s.how,
                None if pending == Some(g.number) => "pending",
                None => "none",
            };
            GenerationRecord {
                number: g.number,
                profile: g.profile.clone(),
                created: rfc3339_unix(g.created),
                uid: g.uid,
                user: users.name(g.uid),
                reason: g.reason.clone(),
                digest: g.digest.clone(),
                current: g.current,
                confirmation: confirmation.to_owned(),
                settled_by: settled.map(|s| s.seq),
                settled_uid: settled.map(|s| s.uid),
            }
        })
        .collect()
}

/// Every peer in force, for an access review.
pub fn peers(peers: &[PeerInfo], history: &History, users: &mut Users, now: SystemTime) -> Vec<PeerReview> {
    let now = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    peers
        .iter()
        .map(|p| {
            let added = history.added.get(&p.public_key);
            let mut notes = Vec::new();
            match p.expires {
                None => notes.push("never expires".to_owned()),
                Some(t) if t <= now => notes.push("expired, not yet removed".to_owned()),
                Some(_) => {}
            }
            if p.disabled {
                notes.push("disabled: off the interface, kept in the store".to_owned());
            }
            if p.last_handshake.is_none() {
                notes.push("no handshake yet".to_owned());
            }
            if added.is_none() {
                notes.push(
                    "no BWK-WG-0001 event for this key in the audit log: who added it is not recorded".to_owned(),
                );
            }
            PeerReview {
                name: p.name.clone(),
                address: p.address.clone(),
                public_key: p.public_key.clone(),
                added: rfc3339_unix(p.created),
                added_by_uid: added.map(|a| a.uid),
                added_by: added.and_then(|a| users.name(a.uid)),
                added_event: added.map(|a| a.seq),
                expires: p.expires.map(rfc3339_unix),
                last_handshake: p.last_handshake.map(rfc3339_unix),
                disabled: p.disabled,
                notes,
            }
        })
        .collect()
}
