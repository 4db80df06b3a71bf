//! Network arithmetic: merging, overlap and the private ranges.
//!
//! nftables interval sets reject overlapping elements, so every list of
//! networks is merged into the smallest covering set first.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Networks that are never routed on the internet and so may be trusted as
/// cluster networks: RFC 1918, shared address space for CGNAT (RFC 6598)
/// and unique local IPv6 addresses (RFC 4193).
pub const PRIVATE: &[(IpNet, &str)] = &[
    (v4(10, 0, 0, 0, 8), "RFC 1918"),
    (v4(172, 16, 0, 0, 12), "RFC 1918"),
    (v4(192, 168, 0, 0, 16), "RFC 1918"),
    (v4(100, 64, 0, 0, 10), "CGNAT, RFC 6598"),
    (
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7)),
        "ULA, RFC 4193",
    ),
];

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

/// The private range that contains all of `net`, if any.
pub fn private_range(net: &IpNet) -> Option<IpNet> {
    PRIVATE.iter().map(|(r, _)| *r).find(|r| r.contains(net))
}

/// Whether two networks share at least one address (never across families).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Split `nets` by family and merge overlapping or adjacent networks.
/// The result is sorted and contains no network inside another.
pub fn merge(nets: &[IpNet]) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let v4: Vec<Ipv4Net> = nets
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        })
        .collect();
    let v6: Vec<Ipv6Net> = nets
        .iter()
        .filter_map(|n| match n {
            IpNet::V6(n) => Some(*n),
            IpNet::V4(_) => None,
        })
        .collect();
    (Ipv4Net::aggregate(&v4), Ipv6Net::aggregate(&v6))
}

/// Whether any network in `nets` contains `addr`.
pub fn contains(nets: &[IpNet], addr: std::net::IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn nested_networks_collapse_into_the_outer_one() {
        let (v4, v6) = merge(&nets(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "2001:db8::/32",
            "2001:db8:1::/48",
        ]));
        assert_eq!(v4, vec!["10.0.0.0/8".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(v6, vec!["2001:db8::/32".parse::<Ipv6Net>().unwrap()]);
    }

    #[test]
    fn adjacent_networks_merge_and_disjoint_ones_stay() {
        let (v4, _) = merge(&nets(&["192.0.2.0/25", "192.0.2.128/25", "198.51.100.0/24"]));
        let want: Vec<Ipv4Net> = vec!["192.0.2.0/24".parse().unwrap(), "198.51.100.0/24".parse().unwrap()];
        assert_eq!(v4, want);
    }

    #[test]
    fn private_ranges_contain_only_whole_networks_inside_them() {
        for inside in [
            "10.42.0.0/16",
            "172.16.0.0/12",
            "192.168.1.0/24",
            "100.64.0.0/10",
            "fd00:42::/48",
        ] {
            assert!(private_range(&inside.parse().unwrap()).is_some(), "{inside}");
        }
        for outside in [
            "0.0.0.0/0",
            "10.0.0.0/7",
            "172.0.0.0/8",
            "100.0.0.0/8",
            "198.51.100.0/24",
            "2001:db8::/32",
            "fc00::/6",
        ] {
            assert!(private_range(&outside.parse().unwrap()).is_none(), "{outside}");
        }
    }

    #[test]
    fn overlap_is_symmetric_and_needs_a_shared_address() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(overlaps(&n("10.0.0.0/8"), &n("10.8.0.0/24")));
        assert!(overlaps(&n("10.8.0.0/24"), &n("10.0.0.0/8")));
        assert!(overlaps(&n("10.8.0.0/24"), &n("10.8.0.0/24")));
        assert!(!overlaps(&n("10.8.0.0/24"), &n("10.8.1.0/24")));
        assert!(!overlaps(&n("0.0.0.0/0"), &n("::/0")));
    }

    #[test]
    fn duplicates_are_removed() {
        let (v4, v6) = merge(&nets(&["203.0.113.0/24", "203.0.113.0/24"]));
        assert_eq!(v4.len(), 1);
        assert!(v6.is_empty());
    }
}
