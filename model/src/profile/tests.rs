use super::*;
use crate::cidr;
use ipnet::Ipv4Net;

const GOOD: &str = r#"
[profile]
name = "vps-k3s"
drift = "report"
drift_interval = "45s"
[firewall]
admin_cidrs = ["198.51.100.0/24", "198.51.100.128/25", "2001:db8:10::/48"]
public_tcp = []
admin_tcp = [443, 22, 80, 22]
vpn_tcp = [6443]
public_udp = [51820]
cluster_cidrs = ["10.42.0.0/16", "10.43.0.0/16"]
cluster_interfaces = ["cni0", "flannel.1"]
log_drops = true
"#;

fn errors(text: &str) -> Vec<ProfileError> {
    Profile::parse("p.toml", text)
        .expect_err("profile should be refused")
        .errors
}

#[test]
fn a_complete_profile_parses_with_networks_merged_and_ports_sorted() {
    let p = Profile::parse("p.toml", GOOD).unwrap();
    assert_eq!(p.name, "vps-k3s");
    assert_eq!(p.drift, DriftMode::Report);
    assert_eq!(p.drift_interval, Duration::from_secs(45));
    assert_eq!(p.firewall.admin_v4, vec!["198.51.100.0/24".parse::<Ipv4Net>().unwrap()]);
    assert_eq!(p.firewall.admin_v6.len(), 1);
    assert_eq!(p.firewall.admin_tcp, vec![22, 80, 443]);
    assert_eq!(p.firewall.cluster_interfaces, vec!["cni0", "flannel.1"]);
    assert!(p.firewall.log_drops);
}

#[test]
fn defaults_apply_when_optional_fields_are_absent() {
    let p = Profile::parse("p.toml", "[profile]\nname = \"x\"\n").unwrap();
    assert_eq!(p.drift, DriftMode::Repair);
    assert_eq!(p.drift_interval, Duration::from_secs(30));
    assert_eq!(p.firewall, Firewall::default());
}

/// Each malformed profile is refused, and the error names the field.
#[test]
fn malformed_profiles_are_refused_naming_the_field() {
    let base = "[profile]\nname = \"t\"\n";
    let cases: &[(&str, &str, &str)] = &[
        ("", "profile", "missing"),
        ("[profile]\n", "profile.name", "missing"),
        ("[profile]\nname = 3\n", "profile.name", "expected a string"),
        ("[profile]\nname = \"a b\"\n", "profile.name", "not a valid name"),
        (
            "[profile]\nname = \"t\"\ndrift = \"fix\"\n",
            "profile.drift",
            "not one of",
        ),
        (
            "[profile]\nname = \"t\"\ndrift_interval = \"soon\"\n",
            "profile.drift_interval",
            "not a duration",
        ),
        (
            "[profile]\nname = \"t\"\ndrift_interval = \"0s\"\n",
            "profile.drift_interval",
            "outside",
        ),
        (
            "[profile]\nname = \"t\"\nnmae = \"x\"\n",
            "profile.nmae",
            "did you mean `name`",
        ),
        (
            "[profile]\nname = \"t\"\n[firewal]\n",
            "firewal",
            "did you mean `firewall`",
        ),
        (
            "[firewall]\nadmin_cidrs = [\"198.51.100.0/24\"]\n",
            "profile",
            "missing",
        ),
    ];
    for (text, path, reason) in cases {
        let errs = errors(text);
        assert!(
            errs.iter().any(|e| e.path == *path && e.reason.contains(reason)),
            "{text:?}: expected {path}: {reason}, got {errs:?}"
        );
    }
    let firewall_cases: &[(&str, &str, &str)] = &[
        (
            "admin_cidrs = [\"300.1.1.0/24\"]",
            "firewall.admin_cidrs[0]",
            "not a CIDR",
        ),
        (
            "admin_cidrs = [\"10.0.0.5/24\"]",
            "firewall.admin_cidrs[0]",
            "host bits set; did you mean \"10.0.0.0/24\"",
        ),
        (
            "admin_cidrs = [\"2001:db8::1/32\"]",
            "firewall.admin_cidrs[0]",
            "host bits",
        ),
        (
            "admin_cidrs = \"10.0.0.0/8\"",
            "firewall.admin_cidrs",
            "expected an array",
        ),
        (
            "admin_cidrs = [10]",
            "firewall.admin_cidrs[0]",
            "expected a CIDR string",
        ),
        ("admin_tcp = [70000]", "firewall.admin_tcp[0]", "outside 1-65535"),
        ("admin_tcp = [0]", "firewall.admin_tcp[0]", "outside 1-65535"),
        ("public_udp = [-1]", "firewall.public_udp[0]", "outside 1-65535"),
        ("vpn_tcp = [\"6443\"]", "firewall.vpn_tcp[0]", "expected a port number"),
        ("log_drops = \"yes\"", "firewall.log_drops", "expected true or false"),
        (
            "cluster_interfaces = [\"a/b\"]",
            "firewall.cluster_interfaces[0]",
            "not a valid interface name",
        ),
        (
            "cluster_interfaces = [\"averyveryverylongname\"]",
            "firewall.cluster_interfaces[0]",
            "1-15 bytes",
        ),
        ("admin_tpc = [22]", "firewall.admin_tpc", "did you mean `admin_tcp`"),
        (
            "public_tcp = [22]\nadmin_tcp = [22]",
            "firewall.admin_tcp",
            "also in firewall.public_tcp",
        ),
    ];
    for (body, path, reason) in firewall_cases {
        let text = format!("{base}[firewall]\n{body}\n");
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.path == *path && e.reason.contains(reason)),
            "{body:?}: expected {path}: {reason}, got {errs:?}"
        );
    }
}

#[test]
fn syntax_errors_garbage_and_truncation_are_refused() {
    for text in [
        "[profile\nname = \"t\"",
        "[profile]\nname = \"t",
        "\u{1}\u{2}\u{3}garbage",
    ] {
        let errs = errors(text);
        assert!(errs[0].reason.starts_with("not valid TOML"), "{errs:?}");
    }
    let errs = Profile::parse_bytes("p.toml", &[0xff, 0xfe, 0x00, 0x12])
        .unwrap_err()
        .errors;
    assert!(errs[0].reason.contains("invalid UTF-8"));
}

#[test]
fn all_errors_are_reported_together() {
    let text =
        "[profile]\nname = \"t\"\ndrift = \"x\"\n[firewall]\nadmin_tcp = [70000]\nadmin_cidrs = [\"1.2.3.4/8\"]\n";
    let errs = errors(text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"profile.drift"));
    assert!(paths.contains(&"firewall.admin_tcp[0]"));
    assert!(paths.contains(&"firewall.admin_cidrs[0]"));
    let shown = Profile::parse("p.toml", text).unwrap_err().to_string();
    assert!(
        shown.contains("p.toml: firewall.admin_tcp[0]: port 70000 is outside 1-65535"),
        "{shown}"
    );
}

#[test]
fn admits_tcp_follows_the_port_classes() {
    let p = Profile::parse("p.toml", GOOD).unwrap();
    let admin: IpAddr = "198.51.100.7".parse().unwrap();
    let outsider: IpAddr = "203.0.113.9".parse().unwrap();
    assert!(p.firewall.admits_tcp(admin, 22));
    assert!(!p.firewall.admits_tcp(outsider, 22));
    assert!(!p.firewall.admits_tcp(admin, 6443));
    assert!(p.firewall.admits_tcp("10.42.3.4".parse().unwrap(), 6443));
}

/// `[profile]` plus `body`, which must be refused with an error at `path`
/// whose reason contains `reason`.
#[track_caller]
fn refused(body: &str, path: &str, reason: &str) {
    let text = format!("[profile]\nname = \"t\"\n{body}\n");
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.path == path && e.reason.contains(reason)),
        "{body:?}: expected {path}: …{reason}…, got {errs:#?}"
    );
}

#[track_caller]
fn accepted(body: &str) -> Profile {
    let text = format!("[profile]\nname = \"t\"\n{body}\n");
    Profile::parse("p.toml", &text).unwrap_or_else(|e| panic!("{body:?} refused: {e}"))
}

/// A `[wireguard]` section with `address`, for the overlap checks.
fn wg(address: &str) -> String {
    format!("[wireguard]\naddress = \"{address}\"\nendpoint = \"vps.example.org:51820\"\n")
}

#[test]
fn catch_all_and_internet_wide_networks_are_refused_in_trusted_lists() {
    for (list, net, reason) in [
        ("admin_cidrs", "0.0.0.0/0", "\"0.0.0.0/0\" is every IPv4 address"),
        ("admin_cidrs", "::/0", "\"::/0\" is every IPv6 address"),
        ("admin_cidrs", "0.0.0.0/1", "wider than /8"),
        ("admin_cidrs", "128.0.0.0/7", "wider than /8"),
        ("admin_cidrs", "2000::/3", "wider than /16"),
        ("admin_cidrs", "2a00::/12", "wider than /16"),
        ("cluster_cidrs", "0.0.0.0/0", "\"0.0.0.0/0\" is every IPv4 address"),
        ("cluster_cidrs", "::/0", "\"::/0\" is every IPv6 address"),
    ] {
        refused(
            &format!("[firewall]\n{list} = [\"{net}\"]"),
            &format!("firewall.{list}[0]"),
            reason,
        );
    }
    // The widest accepted: a /8 and a /16.
    accepted("[firewall]\nadmin_cidrs = [\"10.0.0.0/8\", \"2001::/16\"]");
}

#[test]
fn cluster_networks_must_be_private_cgnat_or_ula() {
    for net in [
        "198.51.100.0/24",
        "8.0.0.0/8",
        "10.0.0.0/7",
        "172.0.0.0/8",
        "2001:db8::/32",
        "2001:cafe:42::/56",
    ] {
        refused(
            &format!("[firewall]\ncluster_cidrs = [\"{net}\"]"),
            "firewall.cluster_cidrs[0]",
            "not a private network: cluster networks are trusted on every port, so they must be private; use networks inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918), 100.64.0.0/10 (CGNAT) or fc00::/7 (ULA)",
        );
    }
    let p = accepted(
        "[firewall]\ncluster_cidrs = [\"10.42.0.0/16\", \"172.16.0.0/12\", \"192.168.0.0/16\", \"100.64.0.0/10\", \"fd42:42::/56\"]",
    );
    assert_eq!(p.firewall.cluster_v4.len(), 4);
    assert_eq!(p.firewall.cluster_v6.len(), 1);
}

#[test]
fn leading_zero_octets_are_refused_showing_both_readings() {
    refused(
        "[firewall]\nadmin_cidrs = [\"198.051.100.0/24\"]",
        "firewall.admin_cidrs[0]",
        "the octet \"051\" has a leading zero, which some tools read as octal (41) and others as decimal (51); write \"198.51.100.0/24\" if you mean decimal",
    );
    refused(
        "[firewall]\ncluster_cidrs = [\"010.42.0.0/16\"]",
        "firewall.cluster_cidrs[0]",
        "\"010\" has a leading zero",
    );
    refused(
        "[firewall]\nadmin_cidrs = [\"198.51.100.09/32\"]",
        "firewall.admin_cidrs[0]",
        "octal (invalid)",
    );
    refused(&wg("10.8.0.01/24"), "wireguard.address", "write \"10.8.0.1/24\"");
    refused(
        "[wireguard]\naddress = \"10.8.0.1/24\"\nclient_allowed_ips = [\"10.08.0.0/24\"]\nendpoint = \"vps.example.org:51820\"",
        "wireguard.client_allowed_ips[0]",
        "leading zero",
    );
    refused(
        "[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"198.051.100.1:51820\"",
        "wireguard.endpoint",
        "leading zero",
    );
    refused("[k3s]\nbind = \"10.8.0.01\"", "k3s.bind", "leading zero");
    // A zero on its own is no leading zero.
    accepted("[firewall]\nadmin_cidrs = [\"198.51.0.0/16\", \"10.0.0.0/8\"]");
}

#[test]
fn ipv4_mapped_ipv6_is_refused_with_the_ipv4_form() {
    refused(
        "[firewall]\nadmin_cidrs = [\"::ffff:198.51.100.0/120\"]",
        "firewall.admin_cidrs[0]",
        "IPv4-mapped IPv6 network, which never matches IPv4 packets; write the IPv4 form \"198.51.100.0/24\"",
    );
    refused(
        "[firewall]\ncluster_cidrs = [\"::ffff:a2a:0/112\"]",
        "firewall.cluster_cidrs[0]",
        "write the IPv4 form \"10.42.0.0/16\"",
    );
    refused(
        "[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"[::ffff:198.51.100.1]:51820\"",
        "wireguard.endpoint",
        "write the IPv4 form \"198.51.100.1\"",
    );
    refused(
        "[k3s]\nbind = \"::ffff:10.8.0.1\"",
        "k3s.bind",
        "write the IPv4 form \"10.8.0.1\"",
    );
}

#[test]
fn vpn_cluster_and_admin_networks_must_not_overlap() {
    let fw = |admin: &str, cluster: &str| format!("[firewall]\nadmin_cidrs = [{admin}]\ncluster_cidrs = [{cluster}]\n");
    refused(
        &fw("\"10.0.0.0/8\"", "\"10.42.0.0/16\""),
        "firewall.cluster_cidrs[0]",
        "10.42.0.0/16 overlaps firewall.admin_cidrs[0] (10.0.0.0/8)",
    );
    refused(
        &format!("{}{}", fw("\"198.51.100.0/24\"", "\"10.42.0.0/16\""), wg("10.42.0.1/24")),
        "wireguard.address",
        "the VPN address 10.42.0.1 is inside firewall.cluster_cidrs[0] (10.42.0.0/16): VPN peers would count as cluster sources",
    );
    refused(
        &format!(
            "{}{}",
            fw("\"198.51.100.0/24\"", "\"10.42.0.0/24\""),
            wg("10.42.1.1/16")
        ),
        "wireguard.address",
        "the VPN subnet 10.42.0.0/16 overlaps firewall.cluster_cidrs[0] (10.42.0.0/24)",
    );
    refused(
        &format!("{}{}", fw("\"192.168.0.0/16\"", "\"10.42.0.0/16\""), wg("192.168.8.1/24")),
        "wireguard.address",
        "the VPN address 192.168.8.1 is inside firewall.admin_cidrs[0] (192.168.0.0/16): VPN peers would count as admin sources",
    );
    refused(
        &format!("{}{}", fw("\"10.8.0.128/25\"", "\"10.42.0.0/16\""), wg("10.8.0.1/24")),
        "wireguard.address",
        "the VPN subnet 10.8.0.0/24 overlaps firewall.admin_cidrs[0] (10.8.0.128/25)",
    );
    // Side by side is fine.
    accepted(&format!(
        "{}{}",
        fw("\"198.51.100.0/24\"", "\"10.42.0.0/16\", \"10.43.0.0/16\""),
        wg("10.8.0.1/24")
    ));
}

#[test]
fn interface_names_follow_the_kernel_and_carry_no_nft_syntax() {
    for (name, reason) in [
        ("*", "would trust every interface, the uplink included"),
        ("@admin_v4", "'@' is not allowed (nftables reads @name as a set)"),
        ("$iface", "'$' is not allowed (nftables reads $name as a variable)"),
        ("cni\\\"0", "'\"' is not allowed"),
        ("cni{0}", "'{' is not allowed"),
        ("cni\\\\0", "'\\\\' is not allowed"),
        ("lx*c", "'*' is not allowed (a wildcard is allowed only at the end"),
        ("lxc**", "'*' is not allowed"),
        ("é0", "'é' is not allowed"),
        ("-cni0", "must start with a letter or digit"),
        ("a b", "no '/', ':', whitespace"),
        ("", "1-15 bytes"),
        ("abcdefghijklmno*", "1-15 bytes"),
        (".", "no '/', ':', whitespace, \".\" or \"..\""),
    ] {
        refused(
            &format!("[firewall]\ncluster_interfaces = [\"{name}\"]"),
            "firewall.cluster_interfaces[0]",
            reason,
        );
    }
    refused(
        "[wireguard]\ninterface = \"wg*\"\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"",
        "wireguard.interface",
        "'*' is not allowed",
    );
    refused(
        "[wireguard]\ninterface = \"@wg\"\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"",
        "wireguard.interface",
        "'@' is not allowed",
    );
}

#[test]
fn wildcards_need_a_meaningful_prefix_and_never_match_uplinks() {
    for (name, reason) in [
        ("l*", "a prefix of at least 3 characters"),
        ("lx*", "a prefix of at least 3 characters"),
        ("eth*", "could match uplink interfaces (eth…)"),
        ("eth0*", "(eth…)"),
        ("en*", "a prefix of at least 3"),
        ("enp*", "(en…)"),
        ("wlan*", "(wl…)"),
        ("bon*", "(bond…)"),
        ("bond*", "(bond…)"),
        ("br-*", "(br…)"),
        ("wgx*", "(wg…)"),
    ] {
        refused(
            &format!("[firewall]\ncluster_interfaces = [\"{name}\"]"),
            "firewall.cluster_interfaces[0]",
            reason,
        );
    }
    let p = accepted(
        "[firewall]\ncluster_interfaces = [\"lxc*\", \"cali*\", \"veth*\", \"cilium_host\", \"flannel.1\", \"cni0\", \"eth1\"]",
    );
    assert_eq!(p.firewall.cluster_interfaces.len(), 7);
}

#[test]
fn cluster_interfaces_drop_duplicates_and_names_a_wildcard_covers() {
    let p = accepted("[firewall]\ncluster_interfaces = [\"cni0\", \"lxc1\", \"lxc*\", \"cni0\", \"lxcab*\", \"lxc*\"]");
    assert_eq!(p.firewall.cluster_interfaces, ["cni0", "lxc*"]);
}

#[test]
fn cluster_interfaces_never_match_the_wireguard_interface() {
    for pattern in ["wg0", "wgadm0"] {
        let iface = if pattern == "wg0" { "wg0" } else { "wgadm0" };
        refused(
            &format!(
                "[firewall]\ncluster_interfaces = [\"cni0\", \"{pattern}\"]\n[wireguard]\ninterface = \"{iface}\"\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\""
            ),
            "firewall.cluster_interfaces[1]",
            &format!("{pattern:?} matches wireguard.interface {iface:?}: trusting it opens every port to every VPN peer"),
        );
    }
    refused(
        "[firewall]\ncluster_interfaces = [\"vpnadm*\"]\n[wireguard]\ninterface = \"vpnadm0\"\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"",
        "firewall.cluster_interfaces[0]",
        "\"vpnadm*\" matches wireguard.interface \"vpnadm0\"",
    );
}

#[test]
fn endpoints_are_host_port_with_ipv6_in_brackets() {
    for (endpoint, reason) in [
        (
            "2001:db8::1:51820",
            "an IPv6 endpoint needs brackets around the address, as in \"[2001:db8::1]:51820\"",
        ),
        ("[[[2001:db8::1]:51820", "unbalanced brackets"),
        ("[2001:db8::1]]:51820", "unbalanced brackets"),
        ("2001:db8::1]:51820", "unbalanced brackets"),
        ("[2001:db8::1]", "needs \"]:port\" after it"),
        ("[2001:db8::1]51820", "needs \"]:port\" after it"),
        (
            "[198.51.100.1]:51820",
            "brackets are for IPv6 addresses only; write \"198.51.100.1:51820\"",
        ),
        ("[vps.example.org]:51820", "not an IP address"),
        ("vps.example.org", "is not host:port"),
        ("vps.example.org:0", "port 0 is outside 1-65535"),
        ("vps.example.org:65536", "port 65536 is outside 1-65535"),
        ("vps.example.org:+80", "not a port number"),
        ("vps.example.org:051820", "not a port number"),
        (":51820", "neither a DNS name nor an IP address"),
        ("vps_1.example.org:51820", "neither a DNS name nor an IP address"),
        ("198.51.100.300:51820", "not an IP address"),
    ] {
        refused(
            &format!("[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"{endpoint}\""),
            "wireguard.endpoint",
            reason,
        );
    }
    for endpoint in [
        "vps.example.org:51820",
        "198.51.100.1:51820",
        "[2001:db8::1]:51820",
        "localhost:1",
        "x.y:65535",
    ] {
        accepted(&format!(
            "[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"{endpoint}\""
        ));
    }
}

#[test]
fn ports_are_1_to_65535_everywhere() {
    refused(
        "[monitoring]\nlisten = \"127.0.0.1:0\"",
        "monitoring.listen",
        "port 0 is outside 1-65535",
    );
    refused(
        "[monitoring]\nlisten = \"[::1]:0\"",
        "monitoring.listen",
        "port 0 is outside 1-65535",
    );
    refused(
        "[monitoring]\nlisten = \"127.0.0.1:09469\"",
        "monitoring.listen",
        "not a port number",
    );
    refused(
        "[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"\nlisten_port = 0",
        "wireguard.listen_port",
        "port 0 is outside 1-65535",
    );
    let p = accepted("[monitoring]\nlisten = \"127.0.0.1:9469\"");
    assert_eq!(p.monitoring.listen, Some("127.0.0.1:9469".parse().unwrap()));
}

#[test]
fn vpn_udp_cannot_hold_the_wireguard_port() {
    refused(
        &format!("[firewall]\nvpn_udp = [53, 51820]\n{}", wg("10.8.0.1/24")),
        "firewall.vpn_udp",
        "port 51820 is wireguard.listen_port, which is always open to everyone; remove it from firewall.vpn_udp",
    );
    refused(
        &format!("[firewall]\nvpn_udp = [4500]\n{}listen_port = 4500", wg("10.8.0.1/24")),
        "firewall.vpn_udp",
        "port 4500 is wireguard.listen_port",
    );
    // Reported even when another [wireguard] field is wrong: one round of fixes.
    refused(
        "[firewall]\nvpn_udp = [51820]\n[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"2001:db8::1:51820\"",
        "firewall.vpn_udp",
        "port 51820 is wireguard.listen_port",
    );
    // Listing the WireGuard port as public is what happens anyway: accepted.
    accepted(&format!(
        "[firewall]\npublic_udp = [51820]\nvpn_udp = [53]\n{}",
        wg("10.8.0.1/24")
    ));
}

#[test]
fn numeric_names_are_not_dns_names() {
    refused(
        "[k3s]\nbind = \"10.8.0.1\"\ntls_san = [\"010.8.0.1\"]",
        "k3s.tls_san[0]",
        "neither an IP address nor a DNS name",
    );
    accepted("[k3s]\nbind = \"10.8.0.1\"\ntls_san = [\"10.8.0.1\", \"k3s.vpn.internal\", \"1a.example\"]");
}

#[test]
fn a_full_tunnel_client_route_is_not_a_trusted_network() {
    // client_allowed_ips is what clients route, not what the firewall trusts.
    let p = accepted(
        "[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"\nclient_allowed_ips = [\"0.0.0.0/0\", \"::/0\"]",
    );
    assert_eq!(p.wireguard.unwrap().client_allowed_ips.len(), 2);
}

proptest::proptest! {
    /// The parser never panics, whatever it is fed.
    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = Profile::parse_bytes("fuzz.toml", &bytes);
    }

    /// Any set of valid networks merges into disjoint networks covering the same addresses.
    #[test]
    fn merged_networks_cover_exactly_the_inputs(raw in proptest::collection::vec((proptest::num::u32::ANY, 8u8..=32), 1..40)) {
        let nets: Vec<Ipv4Net> = raw.iter().map(|(a, l)| Ipv4Net::new((*a).into(), *l).unwrap().trunc()).collect();
        let (v4, _) = cidr::merge(&nets.iter().map(|n| IpNet::V4(*n)).collect::<Vec<_>>());
        for w in v4.windows(2) {
            proptest::prop_assert!(w[0].broadcast() < w[1].network());
        }
        for n in &nets {
            proptest::prop_assert!(v4.iter().any(|m| m.contains(n)));
        }
    }
}

#[test]
fn stale_handshake_defaults_to_a_day_and_refuses_less_than_wireguard_rekeys() {
    let w = accepted(&wg("10.8.0.1/24")).wireguard.unwrap();
    assert_eq!(w.stale_handshake, std::time::Duration::from_secs(86400));
    let w = accepted(&format!("{}stale_handshake = \"7d\"\n", wg("10.8.0.1/24")))
        .wireguard
        .unwrap();
    assert_eq!(w.stale_handshake, std::time::Duration::from_secs(7 * 86400));
    refused(
        &format!("{}stale_handshake = \"60s\"\n", wg("10.8.0.1/24")),
        "wireguard.stale_handshake",
        "outside 3m",
    );
    refused(
        &format!("{}stale_handshake = 3600\n", wg("10.8.0.1/24")),
        "wireguard.stale_handshake",
        "expected a duration string",
    );
}
