//! Trusted interfaces against the live host: `cluster_interfaces` must never
//! match an uplink.
//!
//! Validation refuses wildcards whose prefix looks like an uplink (`eth*`),
//! but only the host knows what its interfaces are called: on one VPS the
//! uplink is `ens3`, on another a CNI could have been named like it. So before
//! a ruleset that trusts interfaces is checked or applied, the interfaces of
//! the network namespace bulwarkd runs in are read, and the ruleset is refused
//! when a name or wildcard matches an interface that carries a default route
//! (IPv4 or IPv6) or an address outside the cluster networks: trusting it
//! would open every port to whatever reaches that interface.
//!
//! Link-local addresses (169.254.0.0/16, fe80::/10) do not count: every CNI
//! interface has one and they are never routed. The matching
//! ([`check`]) is pure; [`live_interfaces`] is the thin part that reads the
//! kernel through rtnetlink.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bulwark_model::profile::{interface_matches, Firewall};
use futures_util::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;

/// One interface of the live host, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    pub name: String,
    /// The IPv4 default route leaves through it (in any routing table).
    pub default_v4: bool,
    /// The IPv6 default route leaves through it.
    pub default_v6: bool,
    /// Every address on it, link-local ones included.
    pub addresses: Vec<IpAddr>,
}

/// Why a trusted interface is an uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carries {
    DefaultRoute { family: &'static str },
    Address(IpAddr),
}

/// A `cluster_interfaces` entry that matches an uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The entry as written in the profile (`eth*`, `ens3`).
    pub pattern: String,
    /// The live interface it matches.
    pub interface: String,
    pub carries: Carries,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} matches {}, which ", self.pattern, self.interface)?;
        match &self.carries {
            Carries::DefaultRoute { family } => write!(f, "carries the {family} default route"),
            Carries::Address(ip) => write!(f, "has address {ip}, outside firewall.cluster_cidrs"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("cannot {op} through netlink to check firewall.cluster_interfaces against the host's interfaces")]
    Netlink {
        op: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot open netlink to check firewall.cluster_interfaces against the host's interfaces")]
    Open {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot tell which interface the {family} default route in routing table {table} leaves through (it uses nexthop object {id}), so firewall.cluster_interfaces cannot be checked; nothing was changed"
    )]
    NexthopObject { family: &'static str, table: u32, id: u32 },
    #[error(
        "firewall.cluster_interfaces would trust an uplink and open every port to it: {}; nothing was changed. List only the CNI interfaces (by exact name, or a wildcard that matches nothing else) and their networks in firewall.cluster_cidrs",
        .found.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Trusted { found: Vec<Violation> },
}

/// Refuse a firewall whose `cluster_interfaces` match an uplink of the
/// network namespace this process runs in. Reads nothing when the profile
/// trusts no interface.
pub fn refuse_trusted_uplinks(fw: &Firewall) -> Result<(), UplinkError> {
    if fw.cluster_interfaces.is_empty() {
        return Ok(());
    }
    check(fw, &live_interfaces()?)
}

/// The pure half: every `cluster_interfaces` entry that matches an
/// interface in `live` carrying a default route or a non-cluster address.
pub fn check(fw: &Firewall, live: &[Interface]) -> Result<(), UplinkError> {
    let cluster: Vec<IpNet> = fw
        .cluster_v4
        .iter()
        .map(|n| IpNet::V4(*n))
        .chain(fw.cluster_v6.iter().map(|n| IpNet::V6(*n)))
        .collect();
    let mut found = Vec::new();
    for pattern in &fw.cluster_interfaces {
        for iface in live.iter().filter(|i| interface_matches(pattern, &i.name)) {
            let mut carries = Vec::new();
            if iface.default_v4 {
                carries.push(Carries::DefaultRoute { family: "IPv4" });
            }
            if iface.default_v6 {
                carries.push(Carries::DefaultRoute { family: "IPv6" });
            }
            carries.extend(
                iface
                    .addresses
                    .iter()
                    .filter(|ip| !link_local(ip) && !cluster.iter().any(|n| n.contains(*ip)))
                    .map(|ip| Carries::Address(*ip)),
            );
            found.extend(carries.into_iter().map(|carries| Violation {
                pattern: pattern.clone(),
                interface: iface.name.clone(),
                carries,
            }));
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(UplinkError::Trusted { found })
    }
}

fn link_local(ip: &IpAddr) -> bool {
    const V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16);
    const V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10);
    match ip {
        IpAddr::V4(a) => V4.contains(a),
        IpAddr::V6(a) => V6.contains(a),
    }
}

/// The interfaces of the calling thread's network namespace, with their
/// addresses and whether a default route leaves through them.
///
/// The netlink conversation runs on a thread of its own with a private
/// runtime, so this works from plain and async callers alike; a new thread
/// starts in its creator's network namespace.
pub fn live_interfaces() -> Result<Vec<Interface>, UplinkError> {
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|source| UplinkError::Open { source })?;
            rt.block_on(async {
                let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| UplinkError::Open { source })?;
                let task = tokio::spawn(conn);
                let r = dump(&handle).await;
                task.abort();
                r
            })
        });
        reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

async fn dump(h: &rtnetlink::Handle) -> Result<Vec<Interface>, UplinkError> {
    let nl = |op| move |source| UplinkError::Netlink { op, source };
    let mut ifaces: Vec<(u32, Interface)> = Vec::new();
    let mut links = h.link().get().execute();
    while let Some(msg) = links.try_next().await.map_err(nl("list links"))? {
        let name = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        if let Some(name) = name {
            ifaces.push((
                msg.header.index,
                Interface {
                    name,
                    ..Interface::default()
                },
            ));
        }
    }

    let mut addrs = h.address().get().execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("list addresses"))? {
        // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on a
        // point-to-point link and the address itself elsewhere.
        let local = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let ip = local.or_else(|| {
            msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let (Some(ip), Some((_, iface))) = (ip, ifaces.iter_mut().find(|(i, _)| *i == msg.header.index)) {
            iface.addresses.push(ip);
        }
    }

    // A dump without strict checking covers every routing table.
    for (family, query) in [
        ("IPv4", RouteMessageBuilder::<Ipv4Addr>::new().build()),
        ("IPv6", RouteMessageBuilder::<Ipv6Addr>::new().build()),
    ] {
        let mut routes = h.route().get(query).execute();
        while let Some(route) = routes.try_next().await.map_err(nl("list routes"))? {
            if route.header.destination_prefix_length != 0 || route.header.kind != RouteType::Unicast {
                continue;
            }
            for index in default_route_devices(family, &route)? {
                if let Some((_, iface)) = ifaces.iter_mut().find(|(i, _)| *i == index) {
                    match family {
                        "IPv4" => iface.default_v4 = true,
                        _ => iface.default_v6 = true,
                    }
                }
            }
        }
    }
    Ok(ifaces.into_iter().map(|(_, i)| i).collect())
}

/// The interface indexes a default route leaves through: its device, or
/// each path's device for a multipath route.
fn default_route_devices(family: &'static str, route: &RouteMessage) -> Result<Vec<u32>, UplinkError> {
    let mut out = Vec::new();
    let mut nexthop = None;
    for a in &route.attributes {
        match a {
            RouteAttribute::Oif(i) => out.push(*i),
            RouteAttribute::MultiPath(hops) => out.extend(hops.iter().map(|h| h.interface_index)),
            RouteAttribute::NhId(id) => nexthop = Some(*id),
            _ => {}
        }
    }
    match nexthop {
        // Fail closed: a route whose device is not in the message cannot be
        // told apart from an uplink.
        Some(id) if out.is_empty() => {
            let table = route
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(route.header.table));
            Err(UplinkError::NexthopObject { family, table, id })
        }
        _ => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn firewall(interfaces: &[&str], cluster: &[&str]) -> Firewall {
        let nets: Vec<IpNet> = cluster.iter().map(|c| c.parse().unwrap()).collect();
        let (cluster_v4, cluster_v6) = bulwark_model::cidr::merge(&nets);
        Firewall {
            cluster_interfaces: interfaces.iter().map(|s| (*s).to_owned()).collect(),
            cluster_v4,
            cluster_v6,
            ..Firewall::default()
        }
    }

    fn iface(name: &str, v4: bool, v6: bool, addrs: &[&str]) -> Interface {
        Interface {
            name: name.to_owned(),
            default_v4: v4,
            default_v6: v6,
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    /// A K3s host: uplink ens3, flannel, the CNI bridge and two pod veths.
    fn host() -> Vec<Interface> {
        vec![
            iface("lo", false, false, &["127.0.0.1", "::1"]),
            iface("ens3", true, true, &["203.0.113.7", "2001:db8:20::7", "fe80::1"]),
            iface("ens4", false, false, &["192.0.2.10"]),
            iface("flannel.1", false, false, &["10.42.0.0", "fe80::2"]),
            iface("cni0", false, false, &["10.42.0.1", "fe80::3"]),
            iface("veth1a2b", false, false, &["fe80::4"]),
            iface("veth3c4d", false, false, &["169.254.1.1"]),
        ]
    }

    fn violations(fw: &Firewall) -> Vec<String> {
        match check(fw, &host()) {
            Ok(()) => Vec::new(),
            Err(UplinkError::Trusted { found }) => found.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn cni_interfaces_with_cluster_or_link_local_addresses_pass() {
        let fw = firewall(&["cni0", "flannel.1", "veth*"], &["10.42.0.0/16"]);
        assert_eq!(violations(&fw), Vec::<String>::new());
    }

    #[test]
    fn a_trusted_interface_with_the_default_route_is_refused_for_each_family() {
        let fw = firewall(&["cni0", "ens3"], &["10.42.0.0/16", "203.0.113.0/24", "2001:db8::/32"]);
        assert_eq!(
            violations(&fw),
            [
                "\"ens3\" matches ens3, which carries the IPv4 default route",
                "\"ens3\" matches ens3, which carries the IPv6 default route",
            ]
        );
    }

    #[test]
    fn a_wildcard_matching_the_uplink_is_refused_naming_the_interface() {
        let fw = firewall(&["ens*"], &["10.42.0.0/16"]);
        let found = violations(&fw);
        assert!(
            found.contains(&"\"ens*\" matches ens3, which carries the IPv4 default route".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(
                &"\"ens*\" matches ens4, which has address 192.0.2.10, outside firewall.cluster_cidrs".to_owned()
            ),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|f| f.contains("fe80")),
            "link-local counted: {found:?}"
        );
    }

    #[test]
    fn an_address_outside_the_cluster_networks_is_refused() {
        // cni0 carries 10.42.0.1, but the profile names no cluster network.
        let fw = firewall(&["cni0"], &[]);
        assert_eq!(
            violations(&fw),
            ["\"cni0\" matches cni0, which has address 10.42.0.1, outside firewall.cluster_cidrs"]
        );
    }

    #[test]
    fn a_name_that_matches_nothing_live_passes() {
        // CNI interfaces often appear after the firewall: that is fine.
        let fw = firewall(&["lxc*", "cilium_host"], &["10.0.0.0/8"]);
        assert_eq!(violations(&fw), Vec::<String>::new());
    }

    #[test]
    fn the_error_says_what_to_do_and_that_nothing_changed() {
        let err = check(&firewall(&["ens3"], &[]), &host()).unwrap_err().to_string();
        assert!(
            err.starts_with("firewall.cluster_interfaces would trust an uplink"),
            "{err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        assert!(err.contains("firewall.cluster_cidrs"), "{err}");
    }

    #[test]
    fn a_default_route_through_a_nexthop_object_fails_closed() {
        let mut route = RouteMessage::default();
        route.attributes.push(RouteAttribute::NhId(7));
        route.attributes.push(RouteAttribute::Table(254));
        let err = default_route_devices("IPv4", &route).unwrap_err().to_string();
        assert!(err.contains("nexthop object 7") && err.contains("table 254"), "{err}");
        route.attributes.push(RouteAttribute::Oif(3));
        assert_eq!(default_route_devices("IPv4", &route).unwrap(), [3]);
    }
}
