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
