//! Profile → [`Ruleset`]: the default-deny policy of table `inet bulwark`.
//!
//! Pure: the same profile always renders the same ruleset, which is what lets
//! plans be diffed and generations be re-applied byte for byte.

use bulwark_model::profile::Firewall;
use ipnet::IpNet;

use super::ruleset::{Action, Chain, Hook, IpFamily, L4Proto, Match, NamedSet, Policy, Rule, Ruleset, TimeUnit};

pub const ADMIN_V4: &str = "admin_v4";
pub const ADMIN_V6: &str = "admin_v6";
pub const CLUSTER_V4: &str = "cluster_v4";
pub const CLUSTER_V6: &str = "cluster_v6";

/// Log prefixes; the trailing space separates them from the kernel's fields.
pub const INPUT_LOG_PREFIX: &str = "bulwark drop: ";
pub const FORWARD_LOG_PREFIX: &str = "bulwark forward drop: ";

/// Enough to see what is being dropped without letting a flood fill the journal.
const LOG_RATE: Match = Match::Limit {
    rate: 5,
    per: TimeUnit::Minute,
};

/// ICMP a host needs to stay reachable and debuggable: ping, and the errors
/// that path MTU discovery and traceroute depend on.
const ICMP_TYPES: &[&str] = &[
    "echo-request",
    "destination-unreachable",
    "time-exceeded",
    "parameter-problem",
];

/// ICMPv6 is not optional for IPv6 (RFC 4890): without packet-too-big PMTU
/// discovery breaks, without neighbour discovery there is no link layer
/// address resolution or SLAAC, and without MLD reports multicast-snooping
/// switches stop delivering the solicited-node groups that ND relies on.
/// Redirects and router renumbering are left out on purpose.
const ICMPV6_TYPES: &[&str] = &[
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
    "echo-request",
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "mld-listener-query",
    "mld-listener-report",
    "mld-listener-done",
    "mld2-listener-report",
];

/// Render the firewall section of a profile.
///
/// `vpn_interface` is the WireGuard interface when one is configured; without
/// it `vpn_tcp`/`vpn_udp` open nothing. Rules whose port list, interface list
/// or set would be empty are left out, but the four named sets always exist
/// (possibly empty) so the table keeps one shape.
pub fn render(fw: &Firewall, vpn_interface: Option<&str>) -> Ruleset {
    let sets = vec![
        named_set(ADMIN_V4, IpFamily::Ipv4, fw.admin_v4.iter().map(|n| IpNet::V4(*n))),
        named_set(ADMIN_V6, IpFamily::Ipv6, fw.admin_v6.iter().map(|n| IpNet::V6(*n))),
        named_set(CLUSTER_V4, IpFamily::Ipv4, fw.cluster_v4.iter().map(|n| IpNet::V4(*n))),
        named_set(CLUSTER_V6, IpFamily::Ipv6, fw.cluster_v6.iter().map(|n| IpNet::V6(*n))),
    ];
    let chains = vec![input(fw, vpn_interface), forward(fw)];
    Ruleset { sets, chains }
}

/// The failsafe (see `failsafe_profile`) is default-deny input and forward
/// with only what an operator needs to get in and repair: established and
/// related, loopback, essential ICMP and ICMPv6, SSH from anywhere, and the
/// WireGuard port.
pub const FAILSAFE_SSH: u16 = 22;
/// The WireGuard port of the failsafe when no profile says otherwise.
pub const FAILSAFE_WIREGUARD: u16 = 51820;

fn named_set(name: &str, family: IpFamily, elements: impl Iterator<Item = IpNet>) -> NamedSet {
    NamedSet {
        name: name.to_owned(),
        family,
        elements: elements.collect(),
    }
}

fn input(fw: &Firewall, vpn_interface: Option<&str>) -> Chain {
    let mut rules = conntrack();
    rules.push(rule(vec![Match::Iif("lo".to_owned())], Action::Accept));
    rules.push(rule(vec![Match::IcmpType(strings(ICMP_TYPES))], Action::Accept));
    rules.push(rule(vec![Match::Icmpv6Type(strings(ICMPV6_TYPES))], Action::Accept));

    for (proto, ports) in [(L4Proto::Tcp, &fw.public_tcp), (L4Proto::Udp, &fw.public_udp)] {
        if !ports.is_empty() {
            rules.push(rule(vec![dport(proto, ports)], Action::Accept));
        }
    }

    if !fw.admin_tcp.is_empty() {
        for (family, set, empty) in [
            (IpFamily::Ipv4, ADMIN_V4, fw.admin_v4.is_empty()),
            (IpFamily::Ipv6, ADMIN_V6, fw.admin_v6.is_empty()),
        ] {
            if !empty {
                let from = Match::Saddr {
                    family,
                    set: set.to_owned(),
                };
                rules.push(rule(vec![dport(L4Proto::Tcp, &fw.admin_tcp), from], Action::Accept));
            }
        }
    }

    if let Some(vpn) = vpn_interface {
        for (proto, ports) in [(L4Proto::Tcp, &fw.vpn_tcp), (L4Proto::Udp, &fw.vpn_udp)] {
            if !ports.is_empty() {
                rules.push(rule(
                    vec![Match::Iifname(vec![vpn.to_owned()]), dport(proto, ports)],
                    Action::Accept,
                ));
            }
        }
    }

    cluster(fw, &mut rules, false);
    log(fw, &mut rules, INPUT_LOG_PREFIX);
    Chain {
        name: "input".to_owned(),
        hook: Hook::Input,
        priority: 0,
        policy: Policy::Drop,
        rules,
    }
}

fn forward(fw: &Firewall) -> Chain {
    let mut rules = conntrack();
    cluster(fw, &mut rules, true);
    log(fw, &mut rules, FORWARD_LOG_PREFIX);
    Chain {
        name: "forward".to_owned(),
        hook: Hook::Forward,
        priority: 0,
        policy: Policy::Drop,
        rules,
    }
}

/// Replies to accepted traffic pass; packets conntrack cannot place are dropped
/// before any accept rule can let them through.
fn conntrack() -> Vec<Rule> {
    vec![
        rule(
            vec![Match::CtState(strings(&["established", "related"]))],
            Action::Accept,
        ),
        rule(vec![Match::CtState(strings(&["invalid"]))], Action::Drop),
    ]
}

/// Pod and service networks and CNI interfaces are trusted: K3s breaks
/// otherwise. In forward both directions count (pod → pod crosses the host).
fn cluster(fw: &Firewall, rules: &mut Vec<Rule>, both_directions: bool) {
    for (family, set, empty) in [
        (IpFamily::Ipv4, CLUSTER_V4, fw.cluster_v4.is_empty()),
        (IpFamily::Ipv6, CLUSTER_V6, fw.cluster_v6.is_empty()),
    ] {
        if empty {
            continue;
        }
        rules.push(rule(
            vec![Match::Saddr {
                family,
                set: set.to_owned(),
            }],
            Action::Accept,
        ));
        if both_directions {
            rules.push(rule(
                vec![Match::Daddr {
                    family,
                    set: set.to_owned(),
                }],
                Action::Accept,
            ));
        }
    }
    if !fw.cluster_interfaces.is_empty() {
        rules.push(rule(
            vec![Match::Iifname(fw.cluster_interfaces.clone())],
            Action::Accept,
        ));
        if both_directions {
            rules.push(rule(
                vec![Match::Oifname(fw.cluster_interfaces.clone())],
                Action::Accept,
            ));
        }
    }
}

/// Last rule before the policy drop, so only dropped packets are logged.
fn log(fw: &Firewall, rules: &mut Vec<Rule>, prefix: &str) {
    if fw.log_drops {
        rules.push(rule(
            vec![LOG_RATE],
            Action::Log {
                prefix: prefix.to_owned(),
            },
        ));
    }
}

fn rule(matches: Vec<Match>, action: Action) -> Rule {
    Rule { matches, action }
}

fn dport(proto: L4Proto, ports: &[u16]) -> Match {
    Match::Dport {
        proto,
        ports: ports.to_vec(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn firewall() -> Firewall {
        Firewall {
            admin_v4: vec!["198.51.100.0/24".parse().unwrap()],
            admin_v6: vec!["2001:db8::/32".parse().unwrap()],
            public_tcp: vec![80, 443],
            admin_tcp: vec![22],
            vpn_tcp: vec![6443],
            public_udp: vec![51820],
            vpn_udp: vec![53],
            cluster_v4: vec!["10.42.0.0/16".parse().unwrap(), "10.43.0.0/16".parse().unwrap()],
            cluster_v6: vec![],
            cluster_interfaces: vec!["cni0".to_owned(), "flannel.1".to_owned()],
            log_drops: true,
        }
    }

    fn lines(rs: &Ruleset, chain: &str) -> Vec<String> {
        let chain = rs.chains.iter().find(|c| c.name == chain).unwrap();
        chain.rules.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn input_rules_come_in_order_from_conntrack_to_log() {
        let rs = render(&firewall(), Some("wg0"));
        assert_eq!(
            lines(&rs, "input"),
            [
                "ct state established,related accept",
                "ct state invalid drop",
                "iif \"lo\" accept",
                "icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept",
                &format!("icmpv6 type {{ {} }} accept", ICMPV6_TYPES.join(", ")),
                "tcp dport { 80, 443 } accept",
                "udp dport 51820 accept",
                "tcp dport 22 ip saddr @admin_v4 accept",
                "tcp dport 22 ip6 saddr @admin_v6 accept",
                "iifname \"wg0\" tcp dport 6443 accept",
                "iifname \"wg0\" udp dport 53 accept",
                "ip saddr @cluster_v4 accept",
                "iifname { \"cni0\", \"flannel.1\" } accept",
                "limit rate 5/minute log prefix \"bulwark drop: \"",
            ]
        );
    }

    #[test]
    fn forward_trusts_cluster_networks_in_both_directions() {
        let rs = render(&firewall(), None);
        assert_eq!(
            lines(&rs, "forward"),
            [
                "ct state established,related accept",
                "ct state invalid drop",
                "ip saddr @cluster_v4 accept",
                "ip daddr @cluster_v4 accept",
                "iifname { \"cni0\", \"flannel.1\" } accept",
                "oifname { \"cni0\", \"flannel.1\" } accept",
                "limit rate 5/minute log prefix \"bulwark forward drop: \"",
            ]
        );
    }

    #[test]
    fn both_chains_are_filter_base_chains_with_policy_drop() {
        let rs = render(&Firewall::default(), None);
        let headers: Vec<_> = rs.chains.iter().map(|c| (c.name.as_str(), c.header())).collect();
        assert_eq!(
            headers,
            [
                ("input", "type filter hook input priority 0; policy drop;".to_owned()),
                (
                    "forward",
                    "type filter hook forward priority 0; policy drop;".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn vpn_ports_open_nothing_without_a_vpn_interface() {
        let rs = render(&firewall(), None);
        assert!(lines(&rs, "input")
            .iter()
            .all(|l| !l.contains("6443") && !l.contains("dport 53 ")));
    }

    #[test]
    fn empty_lists_leave_out_rules_but_keep_all_four_sets() {
        let rs = render(
            &Firewall {
                admin_tcp: vec![22],
                ..Firewall::default()
            },
            Some("wg0"),
        );
        assert_eq!(
            lines(&rs, "input"),
            [
                "ct state established,related accept",
                "ct state invalid drop",
                "iif \"lo\" accept",
                "icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept",
                &format!("icmpv6 type {{ {} }} accept", ICMPV6_TYPES.join(", ")),
            ]
        );
        assert_eq!(
            lines(&rs, "forward"),
            ["ct state established,related accept", "ct state invalid drop"]
        );
        let sets: Vec<_> = rs
            .sets
            .iter()
            .map(|s| (s.name.as_str(), s.family, s.elements.len()))
            .collect();
        assert_eq!(
            sets,
            [
                (ADMIN_V4, IpFamily::Ipv4, 0),
                (ADMIN_V6, IpFamily::Ipv6, 0),
                (CLUSTER_V4, IpFamily::Ipv4, 0),
                (CLUSTER_V6, IpFamily::Ipv6, 0),
            ]
        );
    }

    #[test]
    fn admin_rule_needs_both_ports_and_networks() {
        let only_v6 = Firewall {
            admin_v4: vec![],
            ..firewall()
        };
        let input = lines(&render(&only_v6, None), "input");
        assert!(!input.iter().any(|l| l.contains("@admin_v4")));
        assert!(input.iter().any(|l| l.contains("@admin_v6")));

        let no_ports = Firewall {
            admin_tcp: vec![],
            ..firewall()
        };
        assert!(!lines(&render(&no_ports, None), "input")
            .iter()
            .any(|l| l.contains("@admin_")));
    }

    #[test]
    fn log_drops_off_means_no_log_rule() {
        let rs = render(
            &Firewall {
                log_drops: false,
                ..firewall()
            },
            None,
        );
        for chain in &rs.chains {
            assert!(
                chain.rules.iter().all(|r| !matches!(r.action, Action::Log { .. })),
                "{}",
                chain.name
            );
        }
    }

    #[test]
    fn set_elements_counts_every_named_set() {
        assert_eq!(render(&firewall(), None).set_elements(), 4);
    }

    #[test]
    fn ruleset_round_trips_through_json() {
        let rs = render(&firewall(), Some("wg0"));
        let json = serde_json::to_string(&rs).unwrap();
        assert_eq!(serde_json::from_str::<Ruleset>(&json).unwrap(), rs);
    }

    #[test]
    fn batch_replaces_only_table_inet_bulwark() {
        let rs = render(&firewall(), Some("wg0"));
        let doc = serde_json::to_value(rs.to_nftables()).unwrap();
        let cmds = doc["nftables"].as_array().unwrap();
        let table = serde_json::json!({"family": "inet", "name": "bulwark"});
        assert_eq!(cmds[0], serde_json::json!({"add": {"table": table}}));
        assert_eq!(cmds[1], serde_json::json!({"delete": {"table": table}}));
        assert_eq!(cmds[2], serde_json::json!({"add": {"table": table}}));
        // Every later command adds to our table and nothing else.
        for cmd in &cmds[3..] {
            let (verb, obj) = cmd.as_object().unwrap().iter().next().unwrap();
            assert_eq!(verb, "add");
            let (_, body) = obj.as_object().unwrap().iter().next().unwrap();
            assert_eq!(
                (body["family"].as_str(), body["table"].as_str()),
                (Some("inet"), Some("bulwark"))
            );
        }
        let rules = rs.chains.iter().map(|c| c.rules.len()).sum::<usize>();
        assert_eq!(cmds.len(), 3 + rs.sets.len() + rs.chains.len() + rules);
    }

    #[test]
    fn batch_uses_nft_json_shapes() {
        let rs = render(&firewall(), Some("wg0"));
        let doc = serde_json::to_value(rs.to_nftables()).unwrap();
        let cmds = doc["nftables"].as_array().unwrap();
        let set = &cmds[3]["add"]["set"];
        assert_eq!(set["name"], "admin_v4");
        assert_eq!(set["type"], "ipv4_addr");
        assert_eq!(set["flags"], serde_json::json!(["interval"]));
        assert_eq!(
            set["elem"],
            serde_json::json!([{"prefix": {"addr": "198.51.100.0", "len": 24}}])
        );
        // Empty sets carry no element list at all.
        assert!(cmds[6]["add"]["set"].get("elem").is_none());

        let admin = cmds
            .iter()
            .map(|c| &c["add"]["rule"])
            .find(|r| r["expr"].to_string().contains("@admin_v4"))
            .unwrap();
        assert_eq!(
            admin["expr"],
            serde_json::json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@admin_v4"}},
                {"accept": null},
            ])
        );
    }

    #[test]
    fn host_networks_are_sent_as_bare_addresses() {
        let fw = Firewall {
            admin_v4: vec!["192.0.2.7/32".parse().unwrap()],
            ..Firewall::default()
        };
        let doc = serde_json::to_value(render(&fw, None).to_nftables()).unwrap();
        assert_eq!(
            doc["nftables"][3]["add"]["set"]["elem"],
            serde_json::json!(["192.0.2.7"])
        );
    }

    #[test]
    fn fifty_thousand_elements_render_quickly() {
        let admin_v4 = (0..50_000u32)
            .map(|i| ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
            .collect();
        let fw = Firewall {
            admin_v4,
            admin_tcp: vec![22],
            ..Firewall::default()
        };
        let start = std::time::Instant::now();
        let rs = render(&fw, None);
        let json = serde_json::to_vec(&rs.to_nftables()).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(rs.set_elements(), 50_000);
        assert!(json.len() > 50_000);
        // Generous even for an unoptimised build on a slow runner; nft itself takes ~1 s.
        assert!(elapsed < std::time::Duration::from_secs(2), "render took {elapsed:?}");
    }
}
