//! `[firewall]`: ports per source class, admin and cluster networks.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;
use toml::Table;

use super::fields::{interface_matches, interface_pattern};
use super::Checker;
use crate::cidr;

/// Widest admin networks accepted: anything wider is a sizeable share of the
/// internet (a /8 is 1/256 of IPv4; no IPv6 allocation to an organisation
/// comes near a /16, a regional registry's whole block is a /12).
pub const ADMIN_MIN_PREFIX_V4: u8 = 8;
pub const ADMIN_MIN_PREFIX_V6: u8 = 16;

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

/// The trusted lists as written, each network with its index in the
/// array ([`Trusted::admin_path`], [`Trusted::cluster_path`]) and each
/// interface with its TOML path, for the checks that compare them with
/// other sections.
#[derive(Debug, Default)]
pub(super) struct Trusted {
    pub admin: Vec<(usize, IpNet)>,
    pub cluster: Vec<(usize, IpNet)>,
    pub interfaces: Vec<(String, String)>,
}

impl Trusted {
    /// `firewall.admin_cidrs[i]`.
    pub fn admin_path(i: usize) -> String {
        format!("firewall.admin_cidrs[{i}]")
    }

    /// `firewall.cluster_cidrs[i]`.
    pub fn cluster_path(i: usize) -> String {
        format!("firewall.cluster_cidrs[{i}]")
    }
}

/// `0.0.0.0/0` and `::/0`: trusting them opens `what` to the whole internet.
fn catch_all(net: &IpNet, s: &str, what: &str) -> Result<(), String> {
    if net.prefix_len() == 0 {
        let family = if matches!(net, IpNet::V4(_)) { "IPv4" } else { "IPv6" };
        return Err(format!(
            "{s:?} is every {family} address: trusting it opens {what} to the whole internet"
        ));
    }
    Ok(())
}

/// Admin networks: no catch-all and nothing near it.
fn admin_net(net: &IpNet, s: &str) -> Result<(), String> {
    let hint = "list the networks you administer from, or put ports meant for everyone in firewall.public_tcp";
    catch_all(net, s, "firewall.admin_tcp").map_err(|r| format!("{r}; {hint}"))?;
    let min = match net {
        IpNet::V4(_) => ADMIN_MIN_PREFIX_V4,
        IpNet::V6(_) => ADMIN_MIN_PREFIX_V6,
    };
    if net.prefix_len() < min {
        return Err(format!(
            "{s:?} is wider than /{min}, a large part of the internet rather than an admin network; {hint}"
        ));
    }
    Ok(())
}

/// Cluster networks are trusted on every port, so they must be ranges the
/// internet cannot route to this host.
fn cluster_net(net: &IpNet, s: &str) -> Result<(), String> {
    let ranges = "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918), 100.64.0.0/10 (CGNAT) or fc00::/7 (ULA)";
    let hint = "cluster networks are trusted on every port, so they must be private";
    catch_all(net, s, "every port")
        .map_err(|r| format!("{r}; {hint}: use the pod and service networks, inside {ranges}"))?;
    match cidr::private_range(net) {
        Some(_) => Ok(()),
        None => Err(format!(
            "{s:?} is not a private network: {hint}; use networks inside {ranges}"
        )),
    }
}

/// Drops duplicates and names a wildcard in the list already covers (nft
/// folds them the same way, and the stored ruleset must match what it lists).
fn normalise(items: Vec<(String, String)>) -> Vec<(String, String)> {
    let keep: Vec<bool> = items
        .iter()
        .enumerate()
        .map(|(i, (_, name))| {
            !items
                .iter()
                .enumerate()
                .any(|(j, (_, other))| j != i && interface_matches(other, name) && (other != name || j < i))
        })
        .collect();
    items
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(x, _)| x)
        .collect()
}

impl Checker<'_> {
    pub(super) fn firewall(&mut self, t: &Table) -> (Firewall, Trusted) {
        const P: &str = "firewall";
        self.unknown_keys(P, t, FIREWALL_KEYS);
        let admin = self.cidrs_at(t, P, "admin_cidrs", admin_net);
        let cluster = self.cidrs_at(t, P, "cluster_cidrs", cluster_net);
        let interfaces = normalise(
            self.array_at(t, P, "cluster_interfaces", "interface names", |v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("expected an interface name, found {}", v.type_str()))?;
                interface_pattern(s).map(str::to_owned)
            })
            .into_iter()
            .map(|(i, name)| (format!("{P}.cluster_interfaces[{i}]"), name))
            .collect(),
        );
        let (admin_v4, admin_v6) = cidr::merge(&admin.iter().map(|(_, n)| *n).collect::<Vec<_>>());
        let (cluster_v4, cluster_v6) = cidr::merge(&cluster.iter().map(|(_, n)| *n).collect::<Vec<_>>());
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
            cluster_interfaces: interfaces.iter().map(|(_, name)| name.clone()).collect(),
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
        let trusted = Trusted {
            admin,
            cluster,
            interfaces,
        };
        (fw, trusted)
    }
}
