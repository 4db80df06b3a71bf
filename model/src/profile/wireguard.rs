//! `[wireguard]`: the admin VPN interface.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;
use toml::{Table, Value};

use super::fields::{dns_name, interface_name};
use super::{humantime_opt, Checker};

const WIREGUARD_KEYS: &[&str] = &[
    "interface",
    "address",
    "listen_port",
    "endpoint",
    "backend",
    "client_allowed_ips",
    "keepalive",
    "peer_expiry",
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

impl Checker<'_> {
    pub(super) fn wireguard(&mut self, t: &Table) -> Option<WireGuard> {
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
        let listen_port = self.one_port(t, P, "listen_port").unwrap_or(51820);
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
        let peer_expiry = self.duration(
            t,
            P,
            "peer_expiry",
            Duration::from_secs(60),
            Duration::from_secs(3650 * 86400),
        );
        Some(WireGuard {
            interface: interface?,
            address: address?,
            listen_port,
            endpoint: endpoint?,
            backend,
            client_allowed_ips,
            keepalive,
            peer_expiry,
        })
    }
}

/// The server's VPN address: an IPv4 host address with its prefix.
fn vpn_address(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address with prefix such as \"10.8.0.1/24\""))?;
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

/// `host:port` for client configs.
fn endpoint(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not host:port such as \"vps.example.org:51820\" or \"[2001:db8::1]:51820\"");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() || dns_name(host) {
        Ok(())
    } else {
        Err(bad())
    }
}
