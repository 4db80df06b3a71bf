//! `[firewall]`: ports per source class, admin and cluster networks.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;
use toml::Table;

use super::fields::interface_name;
use super::Checker;
use crate::cidr;

const FIREWALL_KEYS: &[&str] = &[
    "admin_cidrs",
    "public_tcp",
    "admin_tcp",
    "vpn_tcp",
    "public_udp",
    "vpn_udp",
    "cluster_cidrs",
    "cluster_interfaces",
    "log_drops",
];

/// `[firewall]`: the default-deny ruleset of table `inet bulwark`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Firewall {
    /// Admin networks, merged; v4 and v6 kept apart for the two nft sets.
    pub admin_v4: Vec<Ipv4Net>,
    pub admin_v6: Vec<Ipv6Net>,
    /// TCP ports reachable from anywhere.
    pub public_tcp: Vec<u16>,
    /// TCP ports reachable only from the admin networks.
    pub admin_tcp: Vec<u16>,
    /// TCP ports reachable only through the WireGuard interface.
    pub vpn_tcp: Vec<u16>,
    /// UDP ports reachable from anywhere.
    pub public_udp: Vec<u16>,
    /// UDP ports reachable only through the WireGuard interface.
    pub vpn_udp: Vec<u16>,
    /// Pod and service networks, trusted in input and forward.
    pub cluster_v4: Vec<Ipv4Net>,
    pub cluster_v6: Vec<Ipv6Net>,
    /// CNI interfaces, trusted in input and forward.
    pub cluster_interfaces: Vec<String>,
    /// Log dropped packets (rate-limited).
    pub log_drops: bool,
}

impl Firewall {
    /// Whether a new TCP connection from `src` to `port` would be accepted by
    /// this profile's ruleset outside the VPN (used to refuse an apply that
    /// would cut the operator's own SSH session).
    pub fn admits_tcp(&self, src: IpAddr, port: u16) -> bool {
        let admin: Vec<IpNet> = nets(&self.admin_v4, &self.admin_v6);
        let cluster: Vec<IpNet> = nets(&self.cluster_v4, &self.cluster_v6);
        src.is_loopback()
            || self.public_tcp.contains(&port)
            || (self.admin_tcp.contains(&port) && cidr::contains(&admin, src))
            || cidr::contains(&cluster, src)
    }

    /// Number of elements across the named sets (admin and cluster, v4 and v6).
    pub fn set_elements(&self) -> usize {
        self.admin_v4.len() + self.admin_v6.len() + self.cluster_v4.len() + self.cluster_v6.len()
    }
}

fn nets(v4: &[Ipv4Net], v6: &[Ipv6Net]) -> Vec<IpNet> {
    v4.iter()
        .map(|n| IpNet::V4(*n))
        .chain(v6.iter().map(|n| IpNet::V6(*n)))
        .collect()
}

impl Checker<'_> {
    pub(super) fn firewall(&mut self, t: &Table) -> Firewall {
        const P: &str = "firewall";
        self.unknown_keys(P, t, FIREWALL_KEYS);
        let admin = self.cidrs(t, P, "admin_cidrs");
        let cluster = self.cidrs(t, P, "cluster_cidrs");
        let (admin_v4, admin_v6) = cidr::merge(&admin);
        let (cluster_v4, cluster_v6) = cidr::merge(&cluster);
        let fw = Firewall {
            admin_v4,
            admin_v6,
            public_tcp: self.ports(t, P, "public_tcp"),
            admin_tcp: self.ports(t, P, "admin_tcp"),
            vpn_tcp: self.ports(t, P, "vpn_tcp"),
            public_udp: self.ports(t, P, "public_udp"),
            vpn_udp: self.ports(t, P, "vpn_udp"),
            cluster_v4,
            cluster_v6,
            cluster_interfaces: self.array(t, P, "cluster_interfaces", "interface names", |v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("expected an interface name, found {}", v.type_str()))?;
                interface_name(s).map(str::to_owned)
            }),
            log_drops: self.bool(t, P, "log_drops").unwrap_or(false),
        };
        // A port both public and restricted is a contradiction: public wins.
        for (restricted, list) in [("admin_tcp", &fw.admin_tcp), ("vpn_tcp", &fw.vpn_tcp)] {
            for p in list.iter().filter(|p| fw.public_tcp.contains(p)) {
                self.err(
                    format!("{P}.{restricted}"),
                    format!(
                        "port {p} is also in firewall.public_tcp, which opens it to everyone; list it in one place"
                    ),
                );
            }
        }
        for p in fw.vpn_udp.iter().filter(|p| fw.public_udp.contains(p)) {
            self.err(
                format!("{P}.vpn_udp"),
                format!("port {p} is also in firewall.public_udp, which opens it to everyone; list it in one place"),
            );
        }
        fw
    }
}
