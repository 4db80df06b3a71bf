//! The live device: read it, diff it against what the store wants, send
//! only the differences; addresses and link state through rtnetlink.
//!
//! Peers are never replaced wholesale (`replace_peers` resets every
//! session); a re-apply with nothing to change sends nothing at all, so
//! handshakes and counters survive. Endpoints and keepalive of server-side
//! peers are left alone: WireGuard learns endpoints as clients roam.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulwark_model::api::{Change, ChangeOp};
use futures_util::stream::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkFlags;
use rtnetlink::packet_route::AddressFamily;
use wireguard_control::{Device, DeviceUpdate, Key, PeerConfigBuilder};

use super::backend::{self, Kind};
use super::keys::Secret;
use super::WgError;

/// One peer as the store wants it on the device.
#[derive(Clone)]
pub struct DesiredPeer {
    pub name: String,
    pub public_key: Key,
    pub preshared_key: Secret,
    pub address: Ipv4Addr,
}

impl fmt::Debug for DesiredPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredPeer")
            .field("name", &self.name)
            .field("public_key", &self.public_key.to_base64())
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The device as the profile and the store want it.
#[derive(Debug)]
pub struct Desired<'a> {
    pub iface: &'a str,
    pub address: Ipv4Net,
    pub listen_port: u16,
    pub private_key: &'a Secret,
    pub peers: Vec<DesiredPeer>,
}

/// One peer as read from the device.
#[derive(Clone, PartialEq, Eq)]
pub struct LivePeer {
    pub public_key: Key,
    pub preshared_key: Option<Secret>,
    pub allowed_ips: BTreeSet<(IpAddr, u8)>,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl fmt::Debug for LivePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LivePeer")
            .field("public_key", &self.public_key.to_base64())
            .field("allowed_ips", &self.allowed_ips)
            .field("last_handshake", &self.last_handshake)
            .finish_non_exhaustive()
    }
}

impl LivePeer {
    pub fn handshake_unix(&self) -> Option<u64> {
        self.last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .filter(|s| *s > 0)
    }
}

/// The WireGuard part of the live device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub private_key: Option<Secret>,
    pub listen_port: Option<u16>,
    pub peers: Vec<LivePeer>,
}

impl From<Device> for Live {
    fn from(d: Device) -> Live {
        Live {
            private_key: d.private_key.map(Secret::from_key),
            listen_port: d.listen_port,
            peers: d
                .peers
                .into_iter()
                .map(|p| LivePeer {
                    public_key: p.config.public_key,
                    // wireguard-go reports an unset key as zeros.
                    preshared_key: p.config.preshared_key.filter(|k| k.0 != [0; 32]).map(Secret::from_key),
                    allowed_ips: p.config.allowed_ips.iter().map(|a| (a.address, a.cidr)).collect(),
                    last_handshake: p.stats.last_handshake_time,
                    rx_bytes: p.stats.rx_bytes,
                    tx_bytes: p.stats.tx_bytes,
                })
                .collect(),
        }
    }
}

/// Read the device through `kind`; `Ok(None)` when it does not exist.
pub fn read(iface: &str, kind: Kind) -> Result<Option<Live>, WgError> {
    let name = backend::iface_name(iface)?;
    if kind == Kind::Userspace && backend::socket_owner(iface)?.is_none() {
        return Ok(None);
    }
    match Device::get(&name, kind.wg()) {
        Ok(d) => Ok(Some(d.into())),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENOENT)) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(WgError::Device {
            op: "read",
            iface: iface.to_owned(),
            source,
        }),
    }
}

/// Reads for status, health and metrics this close together share one:
/// the engine publishes after every command, and reading 5,000 peers over
/// the UAPI socket each time would cost more than the command.
const REPORT_TTL: Duration = Duration::from_secs(1);

type Reading = (String, Kind, Instant, Option<Arc<Live>>, Option<Link>);

/// The last reading for reports: dropped by every change this daemon makes
/// (add-peer and remove-peer update it instead), replaced by a plan's.
static REPORT: Mutex<Option<Reading>> = Mutex::new(None);

fn forget_report() {
    *REPORT.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// The device and its link for status and health: a reading at most
/// [`REPORT_TTL`] old, taken after this daemon's last change to it. Plans,
/// drift checks and applies read the device itself ([`read`], [`link`]).
/// Shared, not copied: a reading of 5,000 peers is costly to clone.
pub fn read_for_report(iface: &str, kind: Kind) -> Result<(Option<Arc<Live>>, Option<Link>), WgError> {
    {
        let cached = REPORT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((i, k, at, live, link)) = cached.as_ref() {
            if i == iface && *k == kind && at.elapsed() < REPORT_TTL {
                return Ok((live.clone(), link.clone()));
            }
        }
    }
    let at = Instant::now();
    let live = read(iface, kind)?.map(Arc::new);
    let link = link(iface)?;
    keep_for_report(iface, kind, at, live.clone(), link.clone());
    Ok((live, link))
}

/// Keep a reading this daemon has just taken (a report's or a plan's) for
/// the reports that follow: a no-op apply then reads the device once, not
/// twice. `at` is when the reading began.
pub fn keep_for_report(iface: &str, kind: Kind, at: Instant, live: Option<Arc<Live>>, link: Option<Link>) {
    *REPORT.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((iface.to_owned(), kind, at, live, link));
}

/// Differences between the desired and the live device.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub private_key: bool,
    /// (live, desired)
    pub listen_port: Option<(Option<u16>, u16)>,
    /// Indexes into `Desired::peers`.
    pub add: Vec<usize>,
    /// Indexes into `Desired::peers`, with what differs.
    pub fix: Vec<(usize, &'static str)>,
    /// Live peers the store does not know.
    pub remove: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        *self == Diff::default()
    }
}

/// Pure: what to send so that `live` becomes `desired`.
pub fn diff(desired: &Desired<'_>, live: &Live) -> Diff {
    let mut d = Diff {
        private_key: live.private_key.as_ref() != Some(desired.private_key),
        ..Diff::default()
    };
    if live.listen_port != Some(desired.listen_port) {
        d.listen_port = Some((live.listen_port, desired.listen_port));
    }
    let by_key: HashMap<&[u8; 32], &LivePeer> = live.peers.iter().map(|p| (&p.public_key.0, p)).collect();
    for (i, want) in desired.peers.iter().enumerate() {
        match by_key.get(&want.public_key.0) {
            None => d.add.push(i),
            Some(have) => {
                let ips = BTreeSet::from([(IpAddr::V4(want.address), 32)]);
                if have.allowed_ips != ips {
                    d.fix.push((i, "allowed IPs"));
                } else if have.preshared_key.as_ref() != Some(&want.preshared_key) {
                    d.fix.push((i, "preshared key"));
                }
            }
        }
    }
    let wanted: BTreeSet<&[u8; 32]> = desired.peers.iter().map(|p| &p.public_key.0).collect();
    d.remove = live
        .peers
        .iter()
        .filter(|p| !wanted.contains(&p.public_key.0))
        .map(|p| p.public_key.to_base64())
        .collect();
    d
}

fn peer_builder(p: &DesiredPeer) -> PeerConfigBuilder {
    PeerConfigBuilder::new(&p.public_key)
        .set_preshared_key(p.preshared_key.key().clone())
        .replace_allowed_ips()
        .add_allowed_ip(IpAddr::V4(p.address), 32)
}

/// Send the differences (nothing at all when there are none).
pub fn send(desired: &Desired<'_>, d: &Diff, kind: Kind) -> Result<(), WgError> {
    if d.is_empty() {
        return Ok(());
    }
    let mut update = DeviceUpdate::new();
    if d.private_key {
        update = update.set_private_key(desired.private_key.key().clone());
    }
    if let Some((_, port)) = d.listen_port {
        update = update.set_listen_port(port);
    }
    // Removals first: a new peer may take over an address a removed one held.
    for key in &d.remove {
        if let Ok(k) = Key::from_base64(key) {
            update = update.remove_peer_by_key(&k);
        }
    }
    for (i, _) in &d.fix {
        update = update.add_peer(peer_builder(&desired.peers[*i]));
    }
    for i in &d.add {
        update = update.add_peer(peer_builder(&desired.peers[*i]));
    }
    apply_update(desired.iface, update, kind)
}

/// Add one peer, or remove peers by key, without reading the device first.
pub fn add_peer(iface: &str, peer: &DesiredPeer, kind: Kind) -> Result<(), WgError> {
    let reading = take_report(iface, kind);
    apply_update(iface, DeviceUpdate::new().add_peer(peer_builder(peer)), kind)?;
    // The device took exactly this peer: the reading for reports stays
    // true with it added, and is not read again for 5,000 peers.
    put_report(reading, |live| {
        live.peers.push(LivePeer {
            public_key: peer.public_key.clone(),
            preshared_key: Some(peer.preshared_key.clone()),
            allowed_ips: BTreeSet::from([(IpAddr::V4(peer.address), 32)]),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        })
    });
    Ok(())
}

pub fn remove_peers(iface: &str, keys: &[Key], kind: Kind) -> Result<(), WgError> {
    let reading = take_report(iface, kind);
    let update = keys.iter().fold(DeviceUpdate::new(), |u, k| u.remove_peer_by_key(k));
    apply_update(iface, update, kind)?;
    put_report(reading, |live| live.peers.retain(|p| !keys.contains(&p.public_key)));
    Ok(())
}

/// The reading for reports of `iface`, taken out (a failed change leaves
/// none, so the next report reads the device).
fn take_report(iface: &str, kind: Kind) -> Option<Reading> {
    let mut cached = REPORT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    cached.take().filter(|(i, k, ..)| i == iface && *k == kind)
}

fn put_report(reading: Option<Reading>, change: impl FnOnce(&mut Live)) {
    if let Some((iface, kind, at, Some(mut live), link)) = reading {
        // Copied only when a report still holds this reading.
        change(Arc::make_mut(&mut live));
        *REPORT.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((iface, kind, at, Some(live), link));
    }
}

fn apply_update(iface: &str, update: DeviceUpdate, kind: Kind) -> Result<(), WgError> {
    forget_report();
    let name = backend::iface_name(iface)?;
    // With no socket, wireguard-control would launch a wireguard-go of its
    // own that nobody supervises; refuse instead.
    if kind == Kind::Userspace && backend::socket_owner(iface)?.is_none() {
        return Err(WgError::Userspace {
            iface: iface.to_owned(),
            reason: "wireguard-go is not running".to_owned(),
        });
    }
    update.apply(&name, kind.wg()).map_err(|source| WgError::Device {
        op: "configure",
        iface: iface.to_owned(),
        source,
    })
}

/// Link state and IPv4 addresses of the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub v4: Vec<Ipv4Net>,
}

/// Pure: the plan for the WireGuard part of the host.
pub fn plan(
    desired: &Desired<'_>,
    live: Option<&Live>,
    link: Option<&Link>,
    name_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<Change> {
    let iface = desired.iface;
    let ch = |op, what: String| Change::new("wireguard", op, what);
    let mut out = Vec::new();
    if live.is_none() || link.is_none() {
        out.push(ch(ChangeOp::Add, format!("interface {iface}")));
    }
    let empty = Link {
        up: false,
        v4: Vec::new(),
    };
    let link = link.unwrap_or(&empty);
    if !link.v4.contains(&desired.address) {
        out.push(ch(ChangeOp::Add, format!("{iface} address {}", desired.address)));
    }
    for other in link.v4.iter().filter(|a| **a != desired.address) {
        out.push(ch(ChangeOp::Remove, format!("{iface} address {other}")));
    }
    if !link.up {
        out.push(ch(ChangeOp::Change, format!("{iface} link up")));
    }
    let none = Live {
        private_key: None,
        listen_port: None,
        peers: Vec::new(),
    };
    let d = diff(desired, live.unwrap_or(&none));
    if let Some((from, to)) = d.listen_port {
        out.push(Change::values(
            "wireguard",
            format!("{iface} listen port"),
            from.map_or(serde_json::Value::Null, Into::into),
            to,
        ));
    }
    if d.private_key {
        out.push(ch(
            ChangeOp::Change,
            format!(
                "{iface} private key (public key {})",
                desired.private_key.public().to_base64()
            ),
        ));
    }
    for k in &d.remove {
        let who = name_of(k).unwrap_or_else(|| "unknown peer".to_owned());
        out.push(ch(ChangeOp::Remove, format!("{iface} {who} {k}")));
    }
    for (i, what) in &d.fix {
        let p = &desired.peers[*i];
        out.push(ch(ChangeOp::Change, format!("{iface} peer {} {what}", p.name)));
    }
    for i in &d.add {
        let p = &desired.peers[*i];
        out.push(ch(
            ChangeOp::Add,
            format!("{iface} peer {} {}/32 {}", p.name, p.address, p.public_key.to_base64()),
        ));
    }
    out
}

/// Run an rtnetlink conversation on a private current-thread runtime. The
/// netlink socket is opened here, so it lives in the calling thread's
/// network namespace.
fn netlink<T, F>(iface: &str, op: &'static str, f: impl FnOnce(rtnetlink::Handle) -> F) -> Result<T, WgError>
where
    F: std::future::Future<Output = Result<T, rtnetlink::Error>>,
{
    let err = |reason: String| WgError::Netlink {
        op,
        iface: iface.to_owned(),
        reason,
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(err(
            "called from inside an async runtime; call it from the engine thread".to_owned(),
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| err(format!("cannot start a runtime: {e}")))?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| err(format!("cannot open netlink: {e}")))?;
        let task = tokio::spawn(conn);
        let r = f(handle).await;
        task.abort();
        r.map_err(|e| err(e.to_string()))
    })
}

fn is_enodev(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

/// Index, state and IPv4 addresses of `iface`; `None` when it does not exist.
async fn query(handle: &rtnetlink::Handle, iface: &str) -> Result<Option<(u32, Link)>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(iface.to_owned()).execute();
    let msg = match links.try_next().await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(e) if is_enodev(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let index = msg.header.index;
    let up = msg.header.flags.contains(LinkFlags::Up);
    let mut v4 = Vec::new();
    let mut addrs = handle.address().get().set_link_index_filter(index).execute();
    while let Some(a) = addrs.try_next().await? {
        if a.header.index != index || a.header.family != AddressFamily::Inet {
            continue;
        }
        let ip = a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let ip = ip.or_else(|| {
            a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
        });
        if let Some(net) = ip.and_then(|ip| Ipv4Net::new(ip, a.header.prefix_len).ok()) {
            v4.push(net);
        }
    }
    Ok(Some((index, Link { up, v4 })))
}

pub fn link(iface: &str) -> Result<Option<Link>, WgError> {
    netlink(
        iface,
        "read",
        |h| async move { Ok(query(&h, iface).await?.map(|(_, l)| l)) },
    )
}

/// Delete interface `iface` (a kernel WireGuard device); Ok when it is gone.
pub fn delete_link(iface: &str) -> Result<(), WgError> {
    forget_report();
    netlink(iface, "delete", |h| async move {
        if let Some((index, _)) = query(&h, iface).await? {
            h.link().del(index).execute().await?;
        }
        Ok(())
    })
}

/// Give `iface` exactly `address` (IPv4; other IPv4 addresses go) and set it up.
/// The kernel adds the subnet route with the address.
pub fn ensure_link(iface: &str, address: Ipv4Net) -> Result<(), WgError> {
    forget_report();
    let found = netlink(iface, "configure", |h| async move {
        let Some((index, link)) = query(&h, iface).await? else {
            return Ok(false);
        };
        if !link.v4.contains(&address) {
            h.address()
                .add(index, IpAddr::V4(address.addr()), address.prefix_len())
                .execute()
                .await?;
        }
        let stale: Vec<Ipv4Net> = link.v4.iter().copied().filter(|a| *a != address).collect();
        if !stale.is_empty() {
            let mut addrs = h.address().get().set_link_index_filter(index).execute();
            let mut doomed = Vec::new();
            while let Some(a) = addrs.try_next().await? {
                let hit = a.header.index == index
                    && a.header.family == AddressFamily::Inet
                    && a.attributes.iter().any(|at| {
                        matches!(at, AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip))
                            if stale.iter().any(|s| s.addr() == *ip && s.prefix_len() == a.header.prefix_len))
                    });
                if hit {
                    doomed.push(a);
                }
            }
            for a in doomed {
                h.address().del(a).execute().await?;
            }
        }
        if !link.up {
            h.link()
                .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await?;
        }
        Ok(true)
    })?;
    if found {
        Ok(())
    } else {
        Err(WgError::Netlink {
            op: "configure",
            iface: iface.to_owned(),
            reason: "the interface does not exist".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn peer(name: &str, last: u8) -> DesiredPeer {
        DesiredPeer {
            name: name.to_owned(),
            public_key: Key::generate_private().get_public(),
            preshared_key: Secret::generate_preshared(),
            address: Ipv4Addr::new(10, 8, 0, last),
        }
    }

    fn live_of(d: &Desired<'_>) -> Live {
        Live {
            private_key: Some(d.private_key.clone()),
            listen_port: Some(d.listen_port),
            peers: d
                .peers
                .iter()
                .map(|p| LivePeer {
                    public_key: p.public_key.clone(),
                    preshared_key: Some(p.preshared_key.clone()),
                    allowed_ips: BTreeSet::from([(IpAddr::V4(p.address), 32)]),
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn identical_device_means_empty_diff_and_plan() {
        let key = Secret::generate_private();
        let d = Desired {
            iface: "wg0",
            address: "10.8.0.1/24".parse().unwrap(),
            listen_port: 51820,
            private_key: &key,
            peers: vec![peer("alice", 2), peer("bob", 3)],
        };
        let live = live_of(&d);
        assert!(diff(&d, &live).is_empty());
        let link = Link {
            up: true,
            v4: vec![d.address],
        };
        assert_eq!(plan(&d, Some(&live), Some(&link), &|_| None), vec![]);
    }

    #[test]
    fn diff_adds_fixes_and_removes_only_what_differs() {
        let key = Secret::generate_private();
        let d = Desired {
            iface: "wg0",
            address: "10.8.0.1/24".parse().unwrap(),
            listen_port: 51820,
            private_key: &key,
            peers: vec![peer("alice", 2), peer("bob", 3), peer("carol", 4)],
        };
        let mut live = live_of(&d);
        live.peers.remove(2); // carol missing
        live.peers[0].allowed_ips = BTreeSet::from([(IpAddr::V4(Ipv4Addr::new(10, 8, 0, 9)), 32)]);
        live.peers[1].preshared_key = None;
        let stranger = Key::generate_private().get_public();
        live.peers.push(LivePeer {
            public_key: stranger.clone(),
            preshared_key: None,
            allowed_ips: BTreeSet::new(),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        });
        live.listen_port = Some(51821);
        let got = diff(&d, &live);
        assert_eq!(got.add, vec![2]);
        assert_eq!(got.fix, vec![(0, "allowed IPs"), (1, "preshared key")]);
        assert_eq!(got.remove, vec![stranger.to_base64()]);
        assert_eq!(got.listen_port, Some((Some(51821), 51820)));
        assert!(!got.private_key);
    }

    #[test]
    fn plan_for_a_missing_interface_lists_everything_without_secrets() {
        let key = Secret::generate_private();
        let d = Desired {
            iface: "wg0",
            address: "10.8.0.1/24".parse().unwrap(),
            listen_port: 51820,
            private_key: &key,
            peers: vec![peer("alice", 2)],
        };
        let lines: Vec<String> = plan(&d, None, None, &|_| None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines[0], "+ wireguard: interface wg0");
        assert_eq!(lines[1], "+ wireguard: wg0 address 10.8.0.1/24");
        assert_eq!(lines[2], "~ wireguard: wg0 link up");
        assert_eq!(lines[3], "~ wireguard: wg0 listen port: (none) -> 51820");
        assert!(lines[4].starts_with("~ wireguard: wg0 private key (public key "));
        assert!(lines[5].starts_with("+ wireguard: wg0 peer alice 10.8.0.2/32 "));
        assert_eq!(lines.len(), 6);
        let all = lines.join("\n");
        assert!(!all.contains(&key.to_base64()));
        assert!(!all.contains(&d.peers[0].preshared_key.to_base64()));
    }

    #[test]
    fn plan_names_known_peers_and_flags_stray_addresses() {
        let key = Secret::generate_private();
        let d = Desired {
            iface: "wg0",
            address: "10.8.0.1/24".parse().unwrap(),
            listen_port: 51820,
            private_key: &key,
            peers: vec![],
        };
        let mut live = live_of(&d);
        let gone = Key::generate_private().get_public();
        live.peers.push(LivePeer {
            public_key: gone.clone(),
            preshared_key: None,
            allowed_ips: BTreeSet::new(),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        });
        let link = Link {
            up: true,
            v4: vec![d.address, "10.9.0.1/24".parse().unwrap()],
        };
        let names = HashMap::from([(gone.to_base64(), "peer dave".to_owned())]);
        let lines: Vec<String> = plan(&d, Some(&live), Some(&link), &|k| names.get(k).cloned())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            vec![
                "- wireguard: wg0 address 10.9.0.1/24".to_owned(),
                format!("- wireguard: wg0 peer dave {}", gone.to_base64()),
            ]
        );
    }
}
