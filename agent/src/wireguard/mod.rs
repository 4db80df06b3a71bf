//! WireGuard: the interface admins reach the host through, its server key,
//! and the peers onboarded with `bulwarkctl add-peer`.
//!
//! [`WireGuard`] is the one entry point the engine uses. It owns
//! `<state>/wireguard/` (server key, peer store), the choice of backend and
//! the wireguard-go process when the kernel has no WireGuard. The store, not
//! the device, is the truth: it is written before the device changes, and
//! [`WireGuard::apply`] converges the device to it by sending differences
//! only, so re-applies never reset a session.
//!
//! One concern per file: [`keys`], [`peers`] (store, names, addresses),
//! [`config`] (client configs), [`backend`] (kernel/userspace, wireguard-go
//! supervision), [`device`] (diff, configure, rtnetlink).

pub mod backend;
pub mod config;
pub mod device;
pub mod keys;
mod module;
pub mod peers;

pub use module::WireGuardModule;

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bulwark_model::api::{AddPeerRequest, AddPeerResponse, Change, Check, Level, PeerInfo};
use bulwark_model::profile::{Backend as Wanted, WireGuard as Profile};
use ipnet::Ipv4Net;
use wireguard_control::Key;

use crate::host::Host;
use crate::state::{self, StateError};
use backend::{Kind, Userspace};
use device::{Desired, DesiredPeer, Live};
use keys::Secret;
use peers::{PeerStore, StoredPeer};

#[derive(Debug, thiserror::Error)]
pub enum WgError {
    #[error("WireGuard state: {0}")]
    State(#[from] StateError),
    #[error("server key {path}: {reason}")]
    ServerKey { path: PathBuf, reason: String },
    #[error("invalid peer name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error(
        "a peer named {name:?} already exists; pick another name or remove it first (bulwarkctl remove-peer {name})"
    )]
    NameTaken { name: String },
    #[error("no peer named {name:?} (bulwarkctl peers lists them)")]
    PeerNotFound { name: String },
    #[error("invalid public key: {reason}")]
    InvalidPublicKey { reason: String },
    #[error("that public key is already used by {owner}; every admin needs their own key pair")]
    PublicKeyTaken { owner: String },
    #[error("{address} is outside the VPN subnet {subnet}")]
    AddressOutsideSubnet { address: Ipv4Addr, subnet: Ipv4Net },
    #[error("{address} cannot be given to a peer: it is {reason}")]
    AddressReserved { address: Ipv4Addr, reason: &'static str },
    #[error("{address} is already used by another peer; omit --address to get the next free one")]
    AddressTaken { address: Ipv4Addr },
    #[error("no free address in {subnet} ({peers} peers); remove a peer or widen wireguard.address")]
    SubnetExhausted { subnet: Ipv4Net, peers: usize },
    #[error("invalid expiry {value:?}: {reason}")]
    InvalidExpiry { value: String, reason: String },
    #[error("invalid interface name {iface:?}: {reason}")]
    InterfaceName { iface: String, reason: String },
    #[error("wireguard.backend = \"{wanted}\" but {iface} already exists as a {found} WireGuard device; delete it (ip link del {iface}) or change the backend", wanted = wanted_str(*.wanted))]
    BackendMismatch {
        iface: String,
        found: &'static str,
        wanted: Wanted,
    },
    #[error("cannot create kernel WireGuard interface {iface} (is the wireguard module available? backend = \"auto\" falls back to wireguard-go)")]
    KernelUnavailable {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wireguard-go is not installed (looked for {searched}); install the wireguard-go package or use the kernel backend")]
    UserspaceMissing { searched: String },
    #[error("cannot start {binary} for {iface}")]
    Spawn {
        iface: String,
        binary: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("wireguard-go for {iface}: {reason}")]
    Userspace { iface: String, reason: String },
    #[error("{iface} is served by wireguard-go PID {pid} in another network namespace (/var/run/wireguard is shared between namespaces); use another interface name")]
    InterfaceInOtherNamespace { iface: String, pid: u32 },
    #[error("cannot {op} WireGuard device {iface}")]
    Device {
        op: &'static str,
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {op} interface {iface} through netlink: {reason}")]
    Netlink {
        op: &'static str,
        iface: String,
        reason: String,
    },
    #[error("peer {name:?} was removed from the store but may still be on {iface}; the next repair removes it")]
    RevokePending {
        name: String,
        iface: String,
        #[source]
        source: Box<WgError>,
    },
}

fn wanted_str(w: Wanted) -> &'static str {
    match w {
        Wanted::Kernel => "kernel",
        Wanted::Userspace => "userspace",
        Wanted::Auto => "auto",
    }
}

/// How an API should answer a [`WgError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong (400).
    BadRequest,
    /// The request clashes with existing state (409).
    Conflict,
    /// The named peer does not exist (404).
    NotFound,
    /// The host or its state failed (500).
    Internal,
}

impl WgError {
    pub fn class(&self) -> ErrorClass {
        match self {
            WgError::InvalidName { .. }
            | WgError::InvalidPublicKey { .. }
            | WgError::AddressOutsideSubnet { .. }
            | WgError::AddressReserved { .. }
            | WgError::InvalidExpiry { .. } => ErrorClass::BadRequest,
            WgError::NameTaken { .. }
            | WgError::PublicKeyTaken { .. }
            | WgError::AddressTaken { .. }
            | WgError::SubnetExhausted { .. } => ErrorClass::Conflict,
            WgError::PeerNotFound { .. } => ErrorClass::NotFound,
            _ => ErrorClass::Internal,
        }
    }
}

use crate::clock::now_unix;

/// The device (with the backend serving it) and its link, for reports.
type Report = (Option<(Kind, Arc<Live>)>, Option<device::Link>);

/// The WireGuard module: server key, peer store, backend and wireguard-go.
#[derive(Debug)]
pub struct WireGuard {
    server_key: Secret,
    store: PeerStore,
    /// Backend serving the interface since the last apply; `None` before it.
    backend: Option<Kind>,
    /// The wireguard-go this daemon supervises (userspace backend only).
    userspace: Option<Userspace>,
}

impl WireGuard {
    /// Load or create the server key (`<state>/wireguard/server.key`, 0600)
    /// and load the peer store. The flag says whether the key was created.
    pub fn open(host: &Host) -> Result<(WireGuard, bool), WgError> {
        let dir = host.state_dir().join("wireguard");
        state::private_dir(&dir, 0o700)?;
        let (server_key, created) = keys::load_or_create_server_key(&dir.join("server.key"))?;
        let store = PeerStore::load(&dir.join("peers.json"))?;
        Ok((
            WireGuard {
                server_key,
                store,
                backend: None,
                userspace: None,
            },
            created,
        ))
    }

    /// The server's public key (what clients configure as `[Peer] PublicKey`).
    pub fn public_key(&self) -> String {
        self.server_key.public().to_base64()
    }

    /// "kernel" or "userspace" once an apply chose one.
    pub fn backend_in_use(&self) -> Option<&'static str> {
        self.backend.map(Kind::as_str)
    }

    /// PID of the supervised (or adopted) wireguard-go.
    pub fn userspace_pid(&self) -> Option<u32> {
        self.userspace.as_ref().map(Userspace::pid)
    }

    fn desired<'a>(&'a self, p: &'a Profile) -> Desired<'a> {
        let peers = self
            .store
            .all()
            .iter()
            .filter(|s| !s.disabled)
            .filter_map(|s| {
                // The store validated every key when it was loaded or inserted.
                Some(DesiredPeer {
                    name: s.name.clone(),
                    public_key: Key::from_base64(&s.public_key).ok()?,
                    preshared_key: s.preshared()?,
                    address: s.address,
                })
            })
            .collect();
        Desired {
            iface: &p.interface,
            address: p.address,
            listen_port: p.listen_port,
            private_key: &self.server_key,
            peers,
        }
    }

    /// The live device through the backend in use, or (before the first
    /// apply) whichever backend has it.
    fn observe(&self, iface: &str) -> Result<Option<(Kind, Live)>, WgError> {
        if let Some(kind) = self.backend {
            return Ok(device::read(iface, kind)?.map(|l| (kind, l)));
        }
        // The kernel backend fails cleanly where the module is absent.
        if let Ok(Some(l)) = device::read(iface, Kind::Kernel) {
            return Ok(Some((Kind::Kernel, l)));
        }
        Ok(device::read(iface, Kind::Userspace)?.map(|l| (Kind::Userspace, l)))
    }

    /// The device and its link for status and health (a reading shared by
    /// reports close together, see [`device::read_for_report`]).
    fn observe_report(&self, iface: &str) -> Result<Report, WgError> {
        match self.backend {
            Some(kind) => {
                let (live, link) = device::read_for_report(iface, kind)?;
                Ok((live.map(|l| (kind, l)), link))
            }
            None => Ok((
                self.observe(iface)?.map(|(k, l)| (k, Arc::new(l))),
                device::link(iface)?,
            )),
        }
    }

    fn changes(&self, p: &Profile) -> Result<Vec<Change>, WgError> {
        let want = self.desired(p);
        let at = Instant::now();
        let live = self.observe(&p.interface)?.map(|(kind, l)| (kind, Arc::new(l)));
        let link = device::link(&p.interface)?;
        if let Some(kind) = self.backend {
            let reading = live.as_ref().map(|(_, l)| l.clone());
            device::keep_for_report(&p.interface, kind, at, reading, link.clone());
        }
        // Names for live peers to remove, looked up only when there are any.
        let names = OnceCell::new();
        let name_of = |key: &str| {
            let names: &HashMap<&str, &str> = names.get_or_init(|| {
                let all = self.store.all().iter();
                all.map(|s| (s.public_key.as_str(), s.name.as_str())).collect()
            });
            names.get(key).map(|n| format!("peer {n}"))
        };
        let mut out = device::plan(&want, live.as_ref().map(|(_, l)| &**l), link.as_ref(), &name_of);
        if let Some((kind, _)) = live {
            let fits = matches!(
                (kind, p.backend),
                (_, Wanted::Auto) | (Kind::Kernel, Wanted::Kernel) | (Kind::Userspace, Wanted::Userspace)
            );
            if !fits {
                out.push(Change::values(
                    "wireguard",
                    format!("{} backend", p.interface),
                    kind.as_str(),
                    wanted_str(p.backend),
                ));
            }
        }
        Ok(out)
    }

    /// What [`WireGuard::apply`] would change. `None`: the profile has no
    /// `[wireguard]`, nothing is managed (and nothing is torn down).
    pub fn plan(&self, desired: Option<&Profile>) -> Vec<Change> {
        let Some(p) = desired else { return Vec::new() };
        self.changes(p).unwrap_or_else(|e| {
            log::warn!(iface = p.interface.as_str(), error:display = e; "cannot read the WireGuard device; planning from scratch");
            let want = self.desired(p);
            device::plan(&want, None, None, &|_| None)
        })
    }

    /// Converge the interface (created with the chosen backend when
    /// missing), its address and link state, listen port, private key and
    /// peers. Sends differences only: an identical re-apply touches nothing.
    pub fn apply(&mut self, desired: &Profile) -> Result<(), WgError> {
        let iface = desired.interface.as_str();
        let kind = backend::ensure(iface, desired.backend, &mut self.userspace)?;
        if self.backend != Some(kind) {
            log::info!(iface, backend = kind.as_str(); "WireGuard backend in use: {}", kind.as_str());
            self.backend = Some(kind);
        }
        let want = self.desired(desired);
        let live = device::read(iface, kind)?.unwrap_or(Live {
            private_key: None,
            listen_port: None,
            peers: Vec::new(),
        });
        let diff = device::diff(&want, &live);
        if !diff.is_empty() {
            log::info!(
                iface,
                add = diff.add.len(),
                fix = diff.fix.len(),
                remove = diff.remove.len(),
                key = diff.private_key,
                port = diff.listen_port.is_some();
                "configuring WireGuard device"
            );
            device::send(&want, &diff, kind)?;
        }
        device::ensure_link(iface, desired.address)
    }

    /// Whether the live device differs from what `apply` would produce,
    /// with a one-line reason.
    pub fn drift(&self, desired: &Profile) -> Result<Option<String>, WgError> {
        let changes = self.changes(desired)?;
        Ok(changes.first().map(|c| {
            let more = changes.len() - 1;
            let sign = match c.op {
                bulwark_model::api::ChangeOp::Add => "missing",
                bulwark_model::api::ChangeOp::Remove => "unexpected",
                bulwark_model::api::ChangeOp::Change => "differs",
            };
            if more == 0 {
                format!("{sign}: {}", c.describe())
            } else {
                format!("{sign}: {} (and {more} more difference(s))", c.describe())
            }
        }))
    }

    /// Onboard an admin: validate, persist, configure the device, and
    /// return the client config (the only time it exists).
    pub fn add_peer(&mut self, desired: &Profile, req: AddPeerRequest) -> Result<AddPeerResponse, WgError> {
        peers::validate_name(&req.name)?;
        if self.store.get(&req.name).is_some() {
            return Err(WgError::NameTaken { name: req.name });
        }
        let now = now_unix();
        let expires = peers::expiry(req.expires.as_deref(), desired.peer_expiry, now)?;
        let (private, public) = match req.public_key.as_deref() {
            Some(text) => (None, keys::parse_public_key(text)?),
            None => {
                let s = Secret::generate_private();
                let public = s.public();
                (Some(s), public)
            }
        };
        let public_b64 = public.to_base64();
        if public == self.server_key.public() {
            return Err(WgError::PublicKeyTaken {
                owner: "this server".to_owned(),
            });
        }
        if let Some(p) = self.store.by_key(&public_b64) {
            return Err(WgError::PublicKeyTaken {
                owner: format!("peer {:?}", p.name),
            });
        }
        let taken: HashSet<Ipv4Addr> = self.store.addresses().collect();
        let address = peers::allocate(desired.address, &taken, req.address)?;
        let psk = Secret::generate_preshared();
        let stored = StoredPeer {
            name: req.name.clone(),
            public_key: public_b64.clone(),
            preshared_key: psk.to_base64(),
            address,
            created: now,
            expires,
            disabled: false,
        };
        // Persisted before the device: a crash from here on leaves a peer the
        // next start restores, never a device peer the store does not know.
        self.store.insert(stored.clone())?;
        let peer = DesiredPeer {
            name: stored.name.clone(),
            public_key: public.clone(),
            preshared_key: psk.clone(),
            address,
        };
        if let Err(e) = self.install_peer(desired, &peer) {
            if let Some(kind) = self.backend {
                let _ = device::remove_peers(&desired.interface, &[public], kind);
            }
            if let Err(undo) = self.store.remove(&[&stored.name]) {
                log::error!(peer = stored.name.as_str(), error:display = undo; "cannot take a failed peer out of the store");
            }
            return Err(e);
        }
        log::info!(iface = desired.interface.as_str(), peer = stored.name.as_str(), address:display = address; "WireGuard peer added");
        let private_b64 = private.as_ref().map(Secret::to_base64);
        let server_public = self.public_key();
        let client_config = config::ClientConfig {
            name: &stored.name,
            private_key: private_b64.as_deref(),
            address,
            server_public_key: &server_public,
            preshared_key: &stored.preshared_key,
            endpoint: &desired.endpoint,
            allowed_ips: &desired.client_allowed_ips,
            keepalive: desired.keepalive,
        }
        .render();
        Ok(AddPeerResponse {
            peer: stored.info(),
            client_config,
        })
    }

    /// One peer onto a healthy device; a full converge when the device is
    /// missing or not configured yet.
    fn install_peer(&mut self, desired: &Profile, peer: &DesiredPeer) -> Result<(), WgError> {
        if let Some(kind) = self.backend {
            match device::add_peer(&desired.interface, peer, kind) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    log::warn!(iface = desired.interface.as_str(), error:display = e; "adding the peer failed; reconverging the interface")
                }
            }
        }
        self.apply(desired)
    }

    /// Take peers off the device after they left the store; falls back to
    /// a full converge, which removes every peer the store does not know.
    fn revoke(&mut self, desired: &Profile, gone: &[StoredPeer]) -> Result<(), WgError> {
        let Some(kind) = self.backend else { return Ok(()) };
        let keys: Vec<Key> = gone
            .iter()
            .filter_map(|p| Key::from_base64(&p.public_key).ok())
            .collect();
        let first = match device::remove_peers(&desired.interface, &keys, kind) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        log::warn!(iface = desired.interface.as_str(), error:display = first; "removing peers failed; reconverging the interface");
        self.apply(desired).map_err(|e| WgError::RevokePending {
            name: gone.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
            iface: desired.interface.clone(),
            source: Box::new(e),
        })
    }

    pub fn remove_peer(&mut self, desired: &Profile, name: &str) -> Result<PeerInfo, WgError> {
        if self.store.get(name).is_none() {
            return Err(WgError::PeerNotFound { name: name.to_owned() });
        }
        let gone = self.store.remove(&[name])?;
        self.revoke(desired, &gone)?;
        log::info!(iface = desired.interface.as_str(), peer = name; "WireGuard peer removed");
        gone.first()
            .map(StoredPeer::info)
            .ok_or_else(|| WgError::PeerNotFound { name: name.to_owned() })
    }

    /// Give peer `name` a new lifetime from now: `expires` ("90d", "never")
    /// or the profile's `peer_expiry`. Only the store changes; the device
    /// carries no expiry.
    pub fn renew_peer(&mut self, desired: &Profile, name: &str, expires: Option<&str>) -> Result<PeerInfo, WgError> {
        if expires.is_none() && desired.peer_expiry.is_none() {
            return Err(WgError::InvalidExpiry {
                value: String::new(),
                reason: "no lifetime given and wireguard.peer_expiry is not set; pass --expires 90d (or never)"
                    .to_owned(),
            });
        }
        let until = peers::expiry(expires, desired.peer_expiry, now_unix())?;
        let renewed = self
            .store
            .update(name, |p| p.expires = until)?
            .ok_or_else(|| WgError::PeerNotFound { name: name.to_owned() })?;
        log::info!(iface = desired.interface.as_str(), peer = name; "WireGuard peer renewed");
        Ok(renewed.info())
    }

    /// Take peer `name` off the interface (`disabled`) or put it back,
    /// keeping its keys and address, so its config works again once enabled.
    pub fn set_disabled(&mut self, desired: &Profile, name: &str, disabled: bool) -> Result<PeerInfo, WgError> {
        let before = self
            .store
            .get(name)
            .cloned()
            .ok_or_else(|| WgError::PeerNotFound { name: name.to_owned() })?;
        if before.disabled == disabled {
            return Ok(before.info());
        }
        let changed = self
            .store
            .update(name, |p| p.disabled = disabled)?
            .ok_or_else(|| WgError::PeerNotFound { name: name.to_owned() })?;
        let on_device = if disabled {
            self.revoke(desired, std::slice::from_ref(&changed))
        } else {
            match (Key::from_base64(&changed.public_key), changed.preshared()) {
                (Ok(public_key), Some(preshared_key)) => {
                    let peer = DesiredPeer {
                        name: changed.name.clone(),
                        public_key,
                        preshared_key,
                        address: changed.address,
                    };
                    self.install_peer(desired, &peer)
                }
                _ => self.apply(desired),
            }
        };
        if let Err(e) = on_device {
            // Keep the store and the device telling the same story.
            if let Err(undo) = self.store.update(name, |p| p.disabled = before.disabled) {
                log::error!(peer = name, error:display = undo; "cannot undo the peer's state in the store");
            }
            return Err(e);
        }
        let what = if disabled { "disabled" } else { "enabled" };
        log::info!(iface = desired.interface.as_str(), peer = name; "WireGuard peer {what}");
        Ok(changed.info())
    }

    /// Every stored peer, with last handshake and transfer from the live
    /// device when there is one.
    pub fn peers(&self, desired: Option<&Profile>) -> Result<Vec<PeerInfo>, WgError> {
        let mut out: Vec<PeerInfo> = self.store.all().iter().map(StoredPeer::info).collect();
        let live = match desired {
            Some(p) => self
                .observe_report(&p.interface)
                .map(|(live, _)| live)
                .unwrap_or_else(|e| {
                    log::warn!(iface = p.interface.as_str(), error:display = e; "cannot read peer statistics");
                    None
                }),
            None => None,
        };
        if let Some((_, live)) = live {
            let by_key = by_key(&live);
            for info in &mut out {
                if let Some(l) = by_key.get(&info.public_key) {
                    info.last_handshake = l.handshake_unix();
                    info.rx_bytes = l.rx_bytes;
                    info.tx_bytes = l.tx_bytes;
                }
            }
        }
        Ok(out)
    }

    /// Remove peers whose expiry is at or before `now_unix`; returns them
    /// (the engine audits each).
    pub fn expire(&mut self, desired: &Profile, now_unix: u64) -> Result<Vec<PeerInfo>, WgError> {
        let due: Vec<String> = self
            .store
            .all()
            .iter()
            .filter(|p| p.expires.is_some_and(|t| t <= now_unix))
            .map(|p| p.name.clone())
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = due.iter().map(String::as_str).collect();
        let gone = self.store.remove(&names)?;
        self.revoke(desired, &gone)?;
        for p in &gone {
            log::info!(iface = desired.interface.as_str(), peer = p.name.as_str(); "WireGuard peer expired and removed");
        }
        Ok(gone.iter().map(StoredPeer::info).collect())
    }

    /// The earliest expiry of any stored peer (Unix seconds).
    pub fn next_expiry(&self) -> Option<u64> {
        self.store.all().iter().filter_map(|p| p.expires).min()
    }

    /// Stop a supervised wireguard-go (the interface goes with it). The
    /// kernel interface is left as is.
    pub fn shutdown(&mut self) {
        self.userspace = None;
    }

    /// Remove interface `iface` that Bulwark created: stop its wireguard-go,
    /// or delete the kernel device. The peer store stays, so a profile that
    /// brings `[wireguard]` back restores every peer. Returns whether there
    /// was an interface to remove.
    pub fn teardown(&mut self, iface: &str) -> Result<bool, WgError> {
        self.backend = None;
        if let Some(mut u) = self.userspace.take() {
            u.stop();
            return Ok(true);
        }
        if backend::kernel_device_exists(&backend::iface_name(iface)?) {
            device::delete_link(iface)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether interface `iface` exists with either backend.
    pub fn interface_exists(&self, iface: &str) -> bool {
        matches!(self.observe(iface), Ok(Some(_)))
    }

    /// Interface up with the expected address; peer count; stale handshakes.
    pub fn health(&self, desired: &Profile) -> Vec<Check> {
        let iface = desired.interface.as_str();
        let check = |name: &str, level, reason: String| Check {
            module: String::new(),
            name: name.to_owned(),
            level,
            reason,
        };
        let (live, link): (Result<_, String>, Result<_, String>) = match self.observe_report(iface) {
            Ok((live, link)) => (Ok(live), Ok(link)),
            Err(e) => (Err(e.to_string()), Err(e.to_string())),
        };
        let backend = self.backend_in_use().unwrap_or("no");
        let mut checks = vec![match (&live, &link) {
            (Err(e), _) | (_, Err(e)) => check("wireguard", Level::Critical, format!("{iface}: {e}")),
            (Ok(None), _) | (_, Ok(None)) => check("wireguard", Level::Critical, format!("{iface} does not exist")),
            (Ok(Some(_)), Ok(Some(l))) if !l.up => check("wireguard", Level::Critical, format!("{iface} is down")),
            (Ok(Some(_)), Ok(Some(l))) if !l.v4.contains(&desired.address) => check(
                "wireguard",
                Level::Critical,
                format!("{iface} lacks its address {}", desired.address),
            ),
            (Ok(Some(_)), Ok(Some(_))) => check(
                "wireguard",
                Level::Ok,
                format!(
                    "{iface} up with {} ({backend} backend), port {}",
                    desired.address, desired.listen_port
                ),
            ),
        }];
        let Ok(Some((_, live))) = live else { return checks };
        let by_key = by_key(&live);
        let stored: Vec<&StoredPeer> = self.store.all().iter().filter(|p| !p.disabled).collect();
        let disabled = self.store.all().len() - stored.len();
        let missing: Vec<&str> = stored
            .iter()
            .filter(|p| !by_key.contains_key(&p.public_key))
            .map(|p| p.name.as_str())
            .collect();
        let off = if disabled > 0 {
            format!(" ({disabled} disabled, off the interface)")
        } else {
            String::new()
        };
        checks.push(if missing.is_empty() {
            check(
                "wireguard_peers",
                Level::Ok,
                format!("{} peer(s) on {iface}{off}", stored.len()),
            )
        } else {
            check(
                "wireguard_peers",
                Level::Warning,
                format!(
                    "{} peer(s) stored, missing on {iface}: {}",
                    stored.len(),
                    short_list(&missing)
                ),
            )
        });
        let after = humantime::format_duration(desired.stale_handshake);
        let stale = stale_peers(
            &stored,
            |p| by_key.get(&p.public_key).and_then(|l| l.handshake_unix()),
            now_unix(),
            desired.stale_handshake.as_secs(),
        );
        checks.push(if stale.is_empty() {
            check(
                "wireguard_handshakes",
                Level::Ok,
                format!("every enabled peer handshook within {after} (wireguard.stale_handshake)"),
            )
        } else {
            check(
                "wireguard_handshakes",
                Level::Warning,
                format!(
                    "no handshake within {after} (wireguard.stale_handshake): {}",
                    short_list(&stale)
                ),
            )
        });
        checks
    }
}

/// The live peers by public key, for finding stored peers (keyed by their
/// base64 text) on the device.
fn by_key(live: &Live) -> LiveByKey<'_> {
    LiveByKey(live.peers.iter().map(|p| (p.public_key.0, p)).collect())
}

struct LiveByKey<'a>(HashMap<[u8; 32], &'a device::LivePeer>);

impl<'a> LiveByKey<'a> {
    /// Decoding the stored key costs no allocation, unlike encoding every
    /// live one.
    fn get(&self, public_key: &str) -> Option<&'a device::LivePeer> {
        let key = Key::from_base64(public_key).ok()?;
        self.0.get(&key.0).copied()
    }

    fn contains_key(&self, public_key: &str) -> bool {
        self.get(public_key).is_some()
    }
}

/// The peers whose last handshake (or, never having had one, whose
/// creation) is more than `limit` seconds before `now`.
fn stale_peers<'a>(
    stored: &[&'a StoredPeer],
    last_handshake: impl Fn(&StoredPeer) -> Option<u64>,
    now: u64,
    limit: u64,
) -> Vec<&'a str> {
    stored
        .iter()
        .filter(|p| {
            // A peer just added has not had the chance to connect yet.
            let since = last_handshake(p).unwrap_or(p.created);
            now.saturating_sub(since) > limit
        })
        .map(|p| p.name.as_str())
        .collect()
}

fn short_list(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut s = names.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests;
