//! The peer store, peer names and VPN address allocation.
//!
//! Peers are Bulwark state, not profile: a snapshot,
//! `<state>/wireguard/peers.json`, and the changes since it, one JSON line
//! each in `peers.journal` (both 0600: they hold the preshared keys). A
//! change appends one line and fsyncs it before it counts, so its cost does
//! not grow with the number of peers; once the journal holds as many lines
//! as there are peers (at least [`COMPACT_MIN`]), it is folded into a new
//! snapshot, written atomically, and emptied. Each line carries a sequence
//! number and the snapshot the last one it holds, so a crash between the
//! two steps replays nothing twice; a last line cut short by a crash was
//! never acknowledged and is dropped.
//!
//! The store is written before the device is touched, so after a crash the
//! store is the truth and the next apply converges the device to it.
//! Everything here is pure apart from [`PeerStore::load`] and the writes.

use std::collections::HashSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::keys::Secret;
use super::WgError;
use crate::state::{self, StateError};

/// Longest peer name; keeps `peers` output within 80 columns.
pub const NAME_MAX: usize = 32;

/// Shortest and longest lifetime `--expires` accepts: the bounds of the
/// profile's `wireguard.peer_expiry`, shared so the two cannot drift apart.
pub use bulwark_model::profile::{PEER_EXPIRY_MAX, PEER_EXPIRY_MIN};

/// One peer as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPeer {
    pub name: String,
    /// Base64, as `wg` prints it.
    pub public_key: String,
    /// Base64; secret.
    pub preshared_key: String,
    pub address: Ipv4Addr,
    /// Unix times.
    pub created: u64,
    pub expires: Option<u64>,
    /// Kept here but taken off the interface (`disable-peer`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl fmt::Debug for StoredPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPeer")
            .field("name", &self.name)
            .field("public_key", &self.public_key)
            .field("preshared_key", &"<redacted>")
            .field("address", &self.address)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl StoredPeer {
    pub fn preshared(&self) -> Option<Secret> {
        Secret::from_base64(&self.preshared_key)
    }

    pub fn info(&self) -> bulwark_model::api::PeerInfo {
        bulwark_model::api::PeerInfo {
            name: self.name.clone(),
            address: self.address.to_string(),
            public_key: self.public_key.clone(),
            created: self.created,
            expires: self.expires,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            disabled: self.disabled,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    /// Sequence number of the last journal line folded in.
    #[serde(default)]
    seq: u64,
    peers: Vec<StoredPeer>,
}

const STORE_VERSION: u32 = 1;
/// The journal beside the snapshot.
const JOURNAL: &str = "peers.journal";
/// Fewest journal lines that trigger a compaction.
pub const COMPACT_MIN: usize = 256;

/// One change, as a journal line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    change: Change,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Change {
    Add(StoredPeer),
    Remove(Vec<String>),
}

/// All peers, in the order they were added.
#[derive(Debug)]
pub struct PeerStore {
    path: PathBuf,
    journal: PathBuf,
    peers: Vec<StoredPeer>,
    /// Sequence number of the last change.
    seq: u64,
    /// Lines in the journal now.
    pending: usize,
    /// The journal, open for appending once written to.
    writer: Option<File>,
}

impl PeerStore {
    /// Load the snapshot and replay the journal; missing files are an empty
    /// store. A store that breaks its own invariants (duplicate names, keys
    /// or addresses, a gap in the journal) is refused rather than
    /// half-applied.
    pub fn load(path: &Path) -> Result<PeerStore, WgError> {
        let file: StoreFile = state::read_json(path)?.unwrap_or(StoreFile {
            version: STORE_VERSION,
            seq: 0,
            peers: Vec::new(),
        });
        let corrupt = |path: &Path, reason: String| StateError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        if file.version != STORE_VERSION {
            return Err(corrupt(
                path,
                format!("unsupported version {} (expected {STORE_VERSION})", file.version),
            )
            .into());
        }
        let journal = path.with_file_name(JOURNAL);
        let mut store = PeerStore {
            path: path.to_owned(),
            journal: journal.clone(),
            peers: file.peers,
            seq: file.seq,
            pending: 0,
            writer: None,
        };
        store.replay().map_err(|reason| corrupt(&journal, reason))?;
        let (mut names, mut keys, mut addrs) = (HashSet::new(), HashSet::new(), HashSet::new());
        for p in &store.peers {
            let bad = |reason: String| WgError::from(corrupt(path, reason));
            validate_name(&p.name).map_err(|e| bad(e.to_string()))?;
            if !names.insert(p.name.as_str()) {
                return Err(bad(format!("peer name {:?} appears twice", p.name)));
            }
            if !keys.insert(p.public_key.as_str()) {
                return Err(bad(format!("public key of {:?} appears twice", p.name)));
            }
            if !addrs.insert(p.address) {
                return Err(bad(format!("address {} appears twice", p.address)));
            }
            super::keys::parse_public_key(&p.public_key).map_err(|e| bad(format!("peer {:?}: {e}", p.name)))?;
            if p.preshared().is_none() {
                return Err(bad(format!("peer {:?}: bad preshared key", p.name)));
            }
        }
        Ok(store)
    }

    /// Apply the journal's lines after the snapshot's; cut off a last line
    /// a crash left unfinished (it was never acknowledged).
    fn replay(&mut self) -> Result<(), String> {
        let bytes = match std::fs::read(&self.journal) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot read it: {e}")),
        };
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            log::warn!(path:display = self.journal.display(); "dropping an unfinished last line of the peer journal (a crash while it was written)");
            let f = OpenOptions::new().write(true).open(&self.journal);
            f.and_then(|f| f.set_len(complete as u64).and_then(|()| f.sync_all()))
                .map_err(|e| format!("cannot cut off the unfinished last line: {e}"))?;
        }
        for (n, text) in bytes[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let line: Line = serde_json::from_slice(text).map_err(|e| format!("line {}: {e}", n + 1))?;
            self.pending += 1;
            if line.seq <= self.seq {
                continue; // folded into the snapshot before a crash emptied the journal
            }
            if line.seq != self.seq + 1 {
                return Err(format!(
                    "line {}: change {} follows change {}",
                    n + 1,
                    line.seq,
                    self.seq
                ));
            }
            self.seq = line.seq;
            match line.change {
                Change::Add(p) => self.peers.push(p),
                Change::Remove(names) => self.peers.retain(|p| !names.contains(&p.name)),
            }
        }
        Ok(())
    }

    /// Append one change and fsync it.
    fn append(&mut self, change: Change) -> Result<(), WgError> {
        let line = Line {
            seq: self.seq + 1,
            change,
        };
        let mut text = serde_json::to_vec(&line).map_err(|e| StateError::Corrupt {
            path: self.journal.clone(),
            reason: format!("cannot encode a change: {e}"),
        })?;
        text.push(b'\n');
        let journal = self.journal.clone();
        if self.writer.is_none() {
            let created = !journal.exists();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&journal)
                .map_err(state::io("open", &journal))?;
            if created {
                state::sync_dir(journal.parent().unwrap_or(Path::new("/")))?;
            }
            self.writer = Some(f);
        }
        let f = self.writer.as_mut().ok_or_else(|| StateError::Corrupt {
            path: journal.clone(),
            reason: "journal not open".to_owned(),
        })?;
        let before = f.metadata().map_err(state::io("stat", &journal))?.len();
        if let Err(e) = f.write_all(&text).and_then(|()| f.sync_data()) {
            // Part of the line may be there: cut it off, so the next append
            // starts a line of its own (failing that, the next load refuses
            // the journal loudly rather than guess).
            let _ = f.set_len(before);
            self.writer = None;
            return Err(state::io("append to", &journal)(e).into());
        }
        self.seq = line.seq;
        self.pending += 1;
        Ok(())
    }

    /// Fold the journal into the snapshot once it is as long as the store.
    fn maybe_compact(&mut self) {
        if self.pending >= self.peers.len().max(COMPACT_MIN) {
            if let Err(e) = self.save() {
                log::error!(error:display = e; "could not compact the peer journal; changes stay in it");
            }
        }
    }

    /// Write the whole store as a new snapshot (atomically, 0600), then
    /// empty the journal.
    pub fn save(&mut self) -> Result<(), WgError> {
        let file = StoreFile {
            version: STORE_VERSION,
            seq: self.seq,
            peers: self.peers.clone(),
        };
        state::write_json(&self.path, &file)?;
        self.writer = None;
        let emptied = match File::options().write(true).open(&self.journal) {
            Ok(f) => f.set_len(0).and_then(|()| f.sync_all()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        emptied.map_err(state::io("empty", &self.journal))?;
        self.pending = 0;
        Ok(())
    }

    pub fn all(&self) -> &[StoredPeer] {
        &self.peers
    }

    pub fn get(&self, name: &str) -> Option<&StoredPeer> {
        self.peers.iter().find(|p| p.name == name)
    }

    pub fn by_key(&self, public_key: &str) -> Option<&StoredPeer> {
        self.peers.iter().find(|p| p.public_key == public_key)
    }

    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.peers.iter().map(|p| p.address)
    }

    /// Add and persist (durable when this returns); on a write failure
    /// the store is unchanged.
    pub fn insert(&mut self, peer: StoredPeer) -> Result<(), WgError> {
        self.append(Change::Add(peer.clone()))?;
        self.peers.push(peer);
        self.maybe_compact();
        Ok(())
    }

    /// Change the named peer and persist; on a write failure the store is
    /// unchanged. Returns the peer as changed, or `None` when there is none
    /// of that name.
    pub fn update(&mut self, name: &str, change: impl FnOnce(&mut StoredPeer)) -> Result<Option<StoredPeer>, WgError> {
        let Some(i) = self.peers.iter().position(|p| p.name == name) else {
            return Ok(None);
        };
        let before = self.peers[i].clone();
        change(&mut self.peers[i]);
        if let Err(e) = self.save() {
            self.peers[i] = before;
            return Err(e);
        }
        Ok(Some(self.peers[i].clone()))
    }

    /// Remove the named peers and persist once; returns the removed ones.
    pub fn remove(&mut self, names: &[&str]) -> Result<Vec<StoredPeer>, WgError> {
        let gone: Vec<StoredPeer> = self
            .peers
            .iter()
            .filter(|p| names.contains(&p.name.as_str()))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        self.append(Change::Remove(gone.iter().map(|p| p.name.clone()).collect()))?;
        self.peers.retain(|p| !names.contains(&p.name.as_str()));
        self.maybe_compact();
        Ok(gone)
    }
}

/// 1-32 of `a-z A-Z 0-9 . _ -`, starting with a letter or digit: safe in
/// file names, shell words, URLs and config comments.
pub fn validate_name(name: &str) -> Result<(), WgError> {
    let bad = |reason: &str| WgError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > NAME_MAX {
        return Err(bad("it is longer than 32 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(bad("it must start with a letter or digit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(bad(&format!(
            "{c:?} is not allowed; use letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// The subnet of the server's address and the host addresses peers may use.
fn hosts(server: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let server_ip = server.addr();
    // The profile validates /30 or shorter, so network and broadcast are never hosts.
    server.trunc().hosts().filter(move |a| *a != server_ip)
}

/// Pick a peer address: `requested` when it is a free host address of the
/// server's subnet, else the lowest free one.
pub fn allocate(server: Ipv4Net, taken: &HashSet<Ipv4Addr>, requested: Option<Ipv4Addr>) -> Result<Ipv4Addr, WgError> {
    let subnet = server.trunc();
    match requested {
        Some(a) => {
            if !subnet.contains(&a) {
                return Err(WgError::AddressOutsideSubnet { address: a, subnet });
            }
            let reserved = if a == server.addr() {
                Some("the server's own VPN address")
            } else if a == subnet.network() {
                Some("the network address")
            } else if a == subnet.broadcast() {
                Some("the broadcast address")
            } else {
                None
            };
            if let Some(reason) = reserved {
                return Err(WgError::AddressReserved { address: a, reason });
            }
            if taken.contains(&a) {
                return Err(WgError::AddressTaken { address: a });
            }
            Ok(a)
        }
        None => hosts(server)
            .find(|a| !taken.contains(a))
            .ok_or(WgError::SubnetExhausted {
                subnet,
                peers: taken.len(),
            }),
    }
}

/// Expiry time for a new peer: the request's duration ("90d", "12h"), else
/// the profile's default, else none.
pub fn expiry(requested: Option<&str>, default: Option<std::time::Duration>, now: u64) -> Result<Option<u64>, WgError> {
    let lifetime = match requested.map(str::trim) {
        Some("never") => None,
        Some(text) => {
            let d = humantime::parse_duration(text).map_err(|e| WgError::InvalidExpiry {
                value: text.to_owned(),
                reason: format!("{e}; use a duration such as \"90d\", \"12h\" or \"30m\""),
            })?;
            if !(PEER_EXPIRY_MIN..=PEER_EXPIRY_MAX).contains(&d) {
                return Err(WgError::InvalidExpiry {
                    value: text.to_owned(),
                    reason: format!(
                        "outside {}s..{}d, the bounds of wireguard.peer_expiry",
                        PEER_EXPIRY_MIN.as_secs(),
                        PEER_EXPIRY_MAX.as_secs() / 86400
                    ),
                });
            }
            Some(d)
        }
        None => default,
    };
    Ok(lifetime.map(|d| now.saturating_add(d.as_secs())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn set(addrs: &[&str]) -> HashSet<Ipv4Addr> {
        addrs.iter().map(|a| ip(a)).collect()
    }

    #[test]
    fn next_free_address_skips_the_server_and_taken_ones() {
        let server = net("10.8.0.1/24");
        assert_eq!(allocate(server, &set(&[]), None).unwrap(), ip("10.8.0.2"));
        assert_eq!(
            allocate(server, &set(&["10.8.0.2", "10.8.0.3"]), None).unwrap(),
            ip("10.8.0.4")
        );
        // A hole left by a removed peer is reused.
        assert_eq!(allocate(server, &set(&["10.8.0.3"]), None).unwrap(), ip("10.8.0.2"));
        // A server that is not .1 leaves .1 to peers.
        assert_eq!(allocate(net("10.8.0.5/24"), &set(&[]), None).unwrap(), ip("10.8.0.1"));
    }

    #[test]
    fn explicit_addresses_are_checked() {
        let server = net("10.8.0.1/24");
        assert_eq!(
            allocate(server, &set(&[]), Some(ip("10.8.0.77"))).unwrap(),
            ip("10.8.0.77")
        );
        let err = |a: &str, taken: &[&str]| allocate(server, &set(taken), Some(ip(a))).unwrap_err().to_string();
        assert!(err("10.9.0.7", &[]).contains("outside the VPN subnet 10.8.0.0/24"));
        assert!(err("10.8.0.1", &[]).contains("server's own"));
        assert!(err("10.8.0.0", &[]).contains("network address"));
        assert!(err("10.8.0.255", &[]).contains("broadcast"));
        assert!(err("10.8.0.9", &["10.8.0.9"]).contains("already used"));
    }

    #[test]
    fn a_slash_30_holds_one_peer_then_is_exhausted() {
        let server = net("10.8.0.1/30");
        let first = allocate(server, &set(&[]), None).unwrap();
        assert_eq!(first, ip("10.8.0.2"));
        let err = allocate(server, &set(&["10.8.0.2"]), None).unwrap_err().to_string();
        assert!(err.contains("no free address in 10.8.0.0/30"), "{err}");
    }

    #[test]
    fn names_are_restricted_to_a_safe_charset() {
        for ok in ["alice", "a", "bob.laptop", "ops_1-x", "9lives", &"x".repeat(32)] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "a b",
            "a/b",
            "ålice",
            "a;rm",
            "a\n",
            &"x".repeat(33),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        let msg = validate_name("a b").unwrap_err().to_string();
        assert!(msg.contains("' ' is not allowed"), "{msg}");
    }

    #[test]
    fn expiry_uses_the_request_then_the_default() {
        let d = Some(std::time::Duration::from_secs(3600));
        assert_eq!(expiry(None, None, 100).unwrap(), None);
        assert_eq!(expiry(None, d, 100).unwrap(), Some(3700));
        assert_eq!(expiry(Some("2d"), d, 100).unwrap(), Some(100 + 2 * 86400));
        assert!(expiry(Some("soon"), d, 100)
            .unwrap_err()
            .to_string()
            .contains("\"soon\""));
    }

    #[test]
    fn expiry_obeys_the_bounds_of_peer_expiry() {
        let d = Some(std::time::Duration::from_secs(3600));
        for outside in ["10s", "59s", "3651d", "10years"] {
            let err = expiry(Some(outside), d, 100).unwrap_err().to_string();
            assert!(
                err.contains("outside 60s..3650d, the bounds of wireguard.peer_expiry"),
                "{outside}: {err}"
            );
        }
        assert_eq!(expiry(Some("60s"), d, 100).unwrap(), Some(160));
        assert_eq!(expiry(Some("3650d"), d, 100).unwrap(), Some(100 + 3650 * 86400));
        // The same bounds as the profile's field, so a valid default always fits.
        assert_eq!(PEER_EXPIRY_MIN, std::time::Duration::from_secs(60));
        assert_eq!(PEER_EXPIRY_MAX, std::time::Duration::from_secs(3650 * 86400));
    }

    fn peer(name: &str, addr: &str) -> StoredPeer {
        StoredPeer {
            name: name.to_owned(),
            public_key: wireguard_control::Key::generate_private().get_public().to_base64(),
            preshared_key: Secret::generate_preshared().to_base64(),
            address: ip(addr),
            created: 1,
            expires: None,
            disabled: false,
        }
    }

    #[test]
    fn store_round_trips_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let mut s = PeerStore::load(&path).unwrap();
        s.insert(peer("alice", "10.8.0.2")).unwrap();
        s.insert(peer("bob", "10.8.0.3")).unwrap();
        let s2 = PeerStore::load(&path).unwrap();
        assert_eq!(s2.all(), s.all());
        assert_eq!(s.remove(&["alice"]).unwrap().len(), 1);
        assert_eq!(PeerStore::load(&path).unwrap().all().len(), 1);
        // Hand-edited duplicates are refused, not half-applied.
        let mut dup = PeerStore::load(&path).unwrap();
        dup.peers.push(peer("bob", "10.8.0.9"));
        dup.save().unwrap();
        let err = PeerStore::load(&path).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    fn journal_lines(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join(JOURNAL)).map_or(0, |t| t.lines().count())
    }

    #[test]
    fn a_change_appends_one_line_and_compaction_folds_the_journal_into_the_snapshot() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let mut s = PeerStore::load(&path).unwrap();
        s.insert(peer("alice", "10.8.0.2")).unwrap();
        assert!(!path.exists(), "the first change rewrote the snapshot");
        assert_eq!(journal_lines(dir.path()), 1);
        let mode = std::fs::metadata(dir.path().join(JOURNAL))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        s.remove(&["alice"]).unwrap();
        assert_eq!(journal_lines(dir.path()), 2);
        assert!(PeerStore::load(&path).unwrap().all().is_empty());

        for i in 0..COMPACT_MIN {
            s.insert(peer(&format!("p{i}"), &format!("10.8.{}.{}", i / 200, i % 200 + 2)))
                .unwrap();
        }
        assert!(
            journal_lines(dir.path()) < COMPACT_MIN,
            "the journal was never compacted"
        );
        let loaded = PeerStore::load(&path).unwrap();
        assert_eq!(loaded.all(), s.all());
        assert_eq!(loaded.all().len(), COMPACT_MIN);
    }

    #[test]
    fn a_crash_between_snapshot_and_emptying_the_journal_replays_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let mut s = PeerStore::load(&path).unwrap();
        s.insert(peer("alice", "10.8.0.2")).unwrap();
        s.insert(peer("bob", "10.8.0.3")).unwrap();
        let journal = std::fs::read(dir.path().join(JOURNAL)).unwrap();
        s.save().unwrap();
        // As if the crash came after the snapshot's rename, before the truncate.
        std::fs::write(dir.path().join(JOURNAL), &journal).unwrap();
        let loaded = PeerStore::load(&path).unwrap();
        assert_eq!(loaded.all(), s.all());
        // And the next change follows on.
        let mut loaded = loaded;
        loaded.insert(peer("carol", "10.8.0.4")).unwrap();
        assert_eq!(PeerStore::load(&path).unwrap().all().len(), 3);
    }

    #[test]
    fn an_unfinished_last_line_is_dropped_and_a_broken_journal_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let mut s = PeerStore::load(&path).unwrap();
        s.insert(peer("alice", "10.8.0.2")).unwrap();
        let jpath = dir.path().join(JOURNAL);
        let whole = std::fs::read(&jpath).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(&whole[..whole.len() / 2]);
        std::fs::write(&jpath, &torn).unwrap();
        let mut loaded = PeerStore::load(&path).unwrap();
        assert_eq!(loaded.all().len(), 1);
        assert_eq!(std::fs::read(&jpath).unwrap(), whole, "the torn line was not cut off");
        loaded.insert(peer("bob", "10.8.0.3")).unwrap();
        assert_eq!(PeerStore::load(&path).unwrap().all().len(), 2);

        // A complete line that does not parse, or a gap, is corruption.
        let mut bad = std::fs::read(&jpath).unwrap();
        bad.splice(0..0, b"{not json}\n".iter().copied());
        std::fs::write(&jpath, &bad).unwrap();
        let err = PeerStore::load(&path).unwrap_err().to_string();
        assert!(err.contains("peers.journal") && err.contains("line 1"), "{err}");
        let text = String::from_utf8(whole).unwrap().replace("\"seq\":1", "\"seq\":7");
        std::fs::write(&jpath, text).unwrap();
        let err = PeerStore::load(&path).unwrap_err().to_string();
        assert!(err.contains("change 7 follows change 0"), "{err}");
    }

    #[test]
    fn stored_peer_debug_hides_the_preshared_key() {
        let p = peer("alice", "10.8.0.2");
        assert!(!format!("{p:?}").contains(&p.preshared_key));
    }
}
