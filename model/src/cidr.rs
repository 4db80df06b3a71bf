//! CIDR normalisation: nftables interval sets reject overlapping elements, so
//! every list of networks is merged into the smallest covering set first.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

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
    fn duplicates_are_removed() {
        let (v4, v6) = merge(&nets(&["203.0.113.0/24", "203.0.113.0/24"]));
        assert_eq!(v4.len(), 1);
        assert!(v6.is_empty());
    }
}
