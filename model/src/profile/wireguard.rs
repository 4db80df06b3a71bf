//! `[wireguard]`: the admin VPN interface.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;
use toml::{Table, Value};

use super::fields::{dns_name, interface_name, ip_addr, ip_net, port_text};
use super::{humantime_opt, Checker};

/// Shortest and longest peer lifetime, for `peer_expiry` and for
/// `add-peer --expires` alike. Shorter lifetimes are typos ("5s" for "5d")
/// more often than intent.
pub const PEER_EXPIRY_MIN: Duration = Duration::from_secs(60);
pub const PEER_EXPIRY_MAX: Duration = Duration::from_secs(3650 * 86400);

/// How long a peer may go without a handshake before health warns, unless
/// the profile says otherwise: a day, like the alert rule Bulwark ships. An
/// admin's laptop closed overnight is no incident; one silent for longer
/// may be lost, or its key due for revocation.
pub const STALE_HANDSHAKE_DEFAULT: Duration = Duration::from_secs(86400);
/// Below three minutes WireGuard's own rekeying (every two, while traffic
/// flows) would make live peers look stale.
pub const STALE_HANDSHAKE_MIN: Duration = Duration::from_secs(180);

const WIREGUARD_KEYS: &[&str] = &[
    "interface",
    "address",
    "listen_port",
    "endpoint",
    "backend",
    "client_allowed_ips",
    "keepalive",
    "peer_expiry",
    "stale_handshake",
];

/// `[wireguard]`: the interface admins reach the host through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireGuard {
    pub interface: String,
    /// The server's address on the VPN with its prefix, e.g. `10.8.0.1/24`.
    pub address: Ipv4Net,
    /// UDP port; opened to everyone in the firewall automatically.
    pub listen_port: u16,
    /// `host:port` written into client configs.
    pub endpoint: String,
    pub backend: Backend,
    /// What clients route into the tunnel; defaults to the VPN subnet.
    pub client_allowed_ips: Vec<IpNet>,
    /// Persistent keepalive written into client configs (seconds; 0 = off).
    pub keepalive: u16,
    /// Default lifetime of new peers; `None` = no expiry.
    #[serde(with = "humantime_opt")]
    pub peer_expiry: Option<Duration>,
    /// A peer without a handshake for longer than this is a WARNING in
    /// health (`wireguard_handshakes`).
    #[serde(with = "super::humantime_secs")]
    pub stale_handshake: Duration,
}

/// How the WireGuard interface is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The kernel module, through netlink.
    Kernel,
    /// `wireguard-go`, supervised by bulwarkd.
    Userspace,
    /// Kernel when the module is available, else userspace.
    Auto,
}

/// What the checks across sections need from `[wireguard]`, kept even when
/// another of its fields is wrong, so that every error shows in one round.
#[derive(Debug, Default)]
pub(super) struct VpnParts {
    pub interface: Option<String>,
    pub address: Option<Ipv4Net>,
    pub listen_port: Option<u16>,
}

impl Checker<'_> {
    pub(super) fn wireguard(&mut self, t: &Table) -> (Option<WireGuard>, VpnParts) {
        const P: &str = "wireguard";
        self.unknown_keys(P, t, WIREGUARD_KEYS);
        let interface = match t.get("interface") {
            None => Some("wg0".to_owned()),
            Some(Value::String(s)) => interface_name(s)
                .map(str::to_owned)
                .map_err(|r| self.err("wireguard.interface", r))
                .ok(),
            Some(v) => {
                self.err(
                    "wireguard.interface",
                    format!("expected a string, found {}", v.type_str()),
                );
                None
            }
        };
        let address = self
            .string(t, P, "address")
            .and_then(|s| vpn_address(&s).map_err(|r| self.err("wireguard.address", r)).ok());
        let listen_port = match t.get("listen_port") {
            None => Some(51820),
            Some(_) => self.one_port(t, P, "listen_port"),
        };
        let endpoint = self.string(t, P, "endpoint").and_then(|s| {
            endpoint(&s)
                .map(|()| s.clone())
                .map_err(|r| self.err("wireguard.endpoint", r))
                .ok()
        });
        let backend = match self.choice(t, P, "backend", &["kernel", "userspace", "auto"]) {
            Some("kernel") => Backend::Kernel,
            Some("userspace") => Backend::Userspace,
            _ => Backend::Auto,
        };
        let mut client_allowed_ips = self.cidrs(t, P, "client_allowed_ips");
        if !t.contains_key("client_allowed_ips") {
            client_allowed_ips = address.iter().map(|a| IpNet::V4(a.trunc())).collect();
        }
        let keepalive = match t.get("keepalive") {
            None => 25,
            Some(Value::Integer(n)) if (0..=65535).contains(n) => *n as u16,
            Some(v) => {
                self.err("wireguard.keepalive", format!("expected seconds in 0-65535, found {v}"));
                0
            }
        };
        let peer_expiry = self.duration(t, P, "peer_expiry", PEER_EXPIRY_MIN, PEER_EXPIRY_MAX);
        let stale_handshake = self
            .duration(t, P, "stale_handshake", STALE_HANDSHAKE_MIN, PEER_EXPIRY_MAX)
            .unwrap_or(STALE_HANDSHAKE_DEFAULT);
        let parts = VpnParts {
            interface: interface.clone(),
            address,
            listen_port,
        };
        let wg = match (interface, address, listen_port, endpoint) {
            (Some(interface), Some(address), Some(listen_port), Some(endpoint)) => Some(WireGuard {
                interface,
                address,
                listen_port,
                endpoint,
                backend,
                client_allowed_ips,
                keepalive,
                peer_expiry,
                stale_handshake,
            }),
            _ => None,
        };
        (wg, parts)
    }
}

/// The server's VPN address: an IPv4 host address with its prefix.
fn vpn_address(s: &str) -> Result<Ipv4Net, String> {
    let what = "an IPv4 address with prefix such as \"10.8.0.1/24\"";
    let net = match ip_net(s, what)? {
        IpNet::V4(net) => net,
        IpNet::V6(_) => return Err(format!("{s:?} is not {what}")),
    };
    if net.prefix_len() > 30 {
        return Err(format!(
            "{s:?}: a /{} leaves no room for peers; use /30 or shorter",
            net.prefix_len()
        ));
    }
    if net.addr() == net.network() || net.addr() == net.broadcast() {
        return Err(format!(
            "{s:?} is the network or broadcast address; give the server's own address, e.g. \"{}/{}\"",
            std::net::Ipv4Addr::from(u32::from(net.network()) + 1),
            net.prefix_len()
        ));
    }
    Ok(net)
}

/// `host:port` for client configs, copied into them verbatim: a DNS name or
/// an IPv4 address, or an IPv6 address in brackets (`[2001:db8::1]:51820`),
/// then a port in 1-65535.
fn endpoint(s: &str) -> Result<(), String> {
    let form = "\"vps.example.org:51820\", \"198.51.100.1:51820\" or \"[2001:db8::1]:51820\"";
    let unbalanced =
        || format!("{s:?} has unbalanced brackets; write one IPv6 address in one pair: \"[2001:db8::1]:51820\"");
    if let Some(rest) = s.strip_prefix('[') {
        let Some((host, port)) = rest.split_once("]:") else {
            return Err(format!(
                "{s:?}: a bracketed IPv6 address needs \"]:port\" after it, as in \"[2001:db8::1]:51820\""
            ));
        };
        if host.contains(['[', ']']) || port.contains(['[', ']']) {
            return Err(unbalanced());
        }
        port_text(port).map_err(|r| format!("{s:?}: {r}"))?;
        return match ip_addr(host) {
            Ok(IpAddr::V6(_)) => Ok(()),
            Ok(IpAddr::V4(v4)) => Err(format!(
                "{s:?}: brackets are for IPv6 addresses only; write \"{v4}:{port}\""
            )),
            Err(r) => Err(format!("{s:?}: {r}")),
        };
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} is not host:port such as {form}"));
    };
    if host.contains(['[', ']']) {
        return Err(unbalanced());
    }
    if host.contains(':') {
        return Err(format!(
            "{s:?}: an IPv6 endpoint needs brackets around the address, as in \"[{host}]:{port}\""
        ));
    }
    port_text(port).map_err(|r| format!("{s:?}: {r}"))?;
    // All digits and dots is an IPv4 address (perhaps mistyped), never a name.
    if !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return ip_addr(host).map(drop).map_err(|r| format!("{s:?}: {r}"));
    }
    if dns_name(host) {
        Ok(())
    } else {
        Err(format!(
            "{s:?}: {host:?} is neither a DNS name nor an IP address; write host:port such as {form}"
        ))
    }
}
