//! The peer store, peer names and VPN address allocation.
//!
//! Peers are Bulwark state, not profile: `<state>/wireguard/peers.json`
//! (0600: it holds the preshared keys), rewritten atomically on every change.
//! The store is written before the device is touched, so after a crash the
//! store is the truth and the next apply converges the device to it.
//! Everything here is pure apart from [`PeerStore::load`] and [`PeerStore::save`].

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
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
    peers: Vec<StoredPeer>,
}

const STORE_VERSION: u32 = 1;

/// All peers, in the order they were added.
#[derive(Debug)]
pub struct PeerStore {
    path: PathBuf,
    peers: Vec<StoredPeer>,
}

impl PeerStore {
    /// Load the store; a missing file is an empty store. A store that breaks
    /// its own invariants (duplicate names, keys or addresses) is refused
    /// rather than half-applied.
    pub fn load(path: &Path) -> Result<PeerStore, WgError> {
        let file: StoreFile = state::read_json(path)?.unwrap_or(StoreFile {
            version: STORE_VERSION,
            peers: Vec::new(),
        });
        let corrupt = |reason: String| StateError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        if file.version != STORE_VERSION {
            return Err(corrupt(format!(
                "unsupported version {} (expected {STORE_VERSION})",
                file.version
            ))
            .into());
        }
        let (mut names, mut keys, mut addrs) = (HashSet::new(), HashSet::new(), HashSet::new());
        for p in &file.peers {
            validate_name(&p.name).map_err(|e| corrupt(e.to_string()))?;
            if !names.insert(p.name.as_str()) {
                return Err(corrupt(format!("peer name {:?} appears twice", p.name)).into());
            }
            if !keys.insert(p.public_key.as_str()) {
                return Err(corrupt(format!("public key of {:?} appears twice", p.name)).into());
            }
            if !addrs.insert(p.address) {
                return Err(corrupt(format!("address {} appears twice", p.address)).into());
            }
            super::keys::parse_public_key(&p.public_key).map_err(|e| corrupt(format!("peer {:?}: {e}", p.name)))?;
            if p.preshared().is_none() {
                return Err(corrupt(format!("peer {:?}: bad preshared key", p.name)).into());
            }
        }
        Ok(PeerStore {
            path: path.to_owned(),
            peers: file.peers,
        })
    }

    /// Write the whole store atomically (0600).
    pub fn save(&self) -> Result<(), WgError> {
        let file = StoreFile {
            version: STORE_VERSION,
            peers: self.peers.clone(),
        };
        Ok(state::write_json(&self.path, &file)?)
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

    /// Add and persist; on a write failure the in-memory store is unchanged.
    pub fn insert(&mut self, peer: StoredPeer) -> Result<(), WgError> {
        self.peers.push(peer);
        if let Err(e) = self.save() {
            self.peers.pop();
            return Err(e);
        }
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
        let before = self.peers.clone();
        let (gone, kept): (Vec<_>, Vec<_>) = before.iter().cloned().partition(|p| names.contains(&p.name.as_str()));
        if gone.is_empty() {
            return Ok(gone);
        }
        self.peers = kept;
        if let Err(e) = self.save() {
            self.peers = before;
            return Err(e);
        }
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

    #[test]
    fn stored_peer_debug_hides_the_preshared_key() {
        let p = peer("alice", "10.8.0.2");
        assert!(!format!("{p:?}").contains(&p.preshared_key));
    }
}
