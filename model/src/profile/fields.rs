//! Value parsers shared by the sections: ports, addresses, CIDRs, names.
//!
//! They are stricter than the standard parsers on purpose: a value that two
//! tools could read two ways (`198.051.100.0`, `::ffff:198.51.100.0`) or that
//! nftables would read as syntax (`@admin_v4`, `*`) is refused with what to
//! write instead, never guessed at.

use std::net::IpAddr;

use ipnet::IpNet;
use toml::Value;

/// Shortest prefix a wildcard interface name may have (`lxc*`, `cali*`).
pub const WILDCARD_MIN_PREFIX: usize = 3;

/// Name families of uplinks: physical, wireless, bonded, bridged, VLAN and
/// tunnel interfaces. A wildcard that could match one of them would trust
/// traffic from the internet, so none may start with (or be the start of) these.
pub const UPLINK_PREFIXES: &[&str] = &[
    "eth", "en", "em", "wl", "ww", "ib", "sl", "bond", "team", "br", "vlan", "ppp", "tun", "tap", "wg",
];

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
/// An all-numeric last label is refused: `198.051.100.1` is a mistyped
/// address, not a name (no top-level domain is numeric).
pub(super) fn dns_name(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    !s.is_empty()
        && s.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !labels.last().is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
}

/// A TCP/UDP port number in 1..=65535.
pub fn port(v: &Value) -> Result<u16, String> {
    match v {
        Value::Integer(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {n} is outside 1-65535")),
        other => Err(format!("expected a port number, found {}", other.type_str())),
    }
}

/// A port written as text (after the colon of `host:port`): decimal digits,
/// no sign or leading zero, 1..=65535.
pub(super) fn port_text(s: &str) -> Result<u16, String> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !(s.len() > 1 && s.starts_with('0'));
    match s.parse::<u32>() {
        Ok(n) if digits && (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) if digits => Err(format!("port {n} is outside 1-65535")),
        _ => Err(format!("{s:?} is not a port number in 1-65535")),
    }
}

/// An IP address, refusing the ambiguous forms: IPv4 octets with a leading
/// zero and IPv4-mapped IPv6 addresses.
pub(super) fn ip_addr(s: &str) -> Result<IpAddr, String> {
    leading_zero(s, s)?;
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address such as \"192.0.2.1\" or \"2001:db8::1\""))?;
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err(format!(
                "{s:?} is an IPv4-mapped IPv6 address; write the IPv4 form \"{v4}\""
            ));
        }
    }
    Ok(ip)
}

/// `address/prefix` with host bits allowed (an interface address such as
/// `10.8.0.1/24`), refusing what [`ip_addr`] refuses and IPv4-mapped
/// networks. `what` describes the expected form for the error.
pub(super) fn ip_net(s: &str, what: &str) -> Result<IpNet, String> {
    let bad = || format!("{s:?} is not {what}");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    leading_zero(s, addr)?;
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = (!len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit()))
        .then(|| len.parse().ok())
        .flatten()
        .ok_or_else(bad)?;
    let net = IpNet::new(ip, len).map_err(|_| bad())?;
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            let hint = IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_err(|_| bad())?;
            return Err(format!(
                "{s:?} is an IPv4-mapped IPv6 network, which never matches IPv4 packets; write the IPv4 form \"{hint}\""
            ));
        }
    }
    Ok(net)
}

/// A network in CIDR notation with no host bits set.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net = ip_net(s, "a CIDR such as \"192.0.2.0/24\" or \"2001:db8::/32\"")?;
    if net.trunc() != net {
        return Err(format!("{s:?} has host bits set; did you mean \"{}\"?", net.trunc()));
    }
    Ok(net)
}

/// Refuses an IPv4 octet with a leading zero in `addr` (the address part of
/// `whole`): inet_aton reads `051` as octal 41, most tools as decimal 51.
fn leading_zero(whole: &str, addr: &str) -> Result<(), String> {
    // The dotted quad is the whole IPv4 address or the tail of an IPv6 one.
    let quad = addr.rsplit(':').next().unwrap_or(addr);
    let leading = |o: &str| o.len() > 1 && o.starts_with('0') && o.bytes().all(|b| b.is_ascii_digit());
    // The common case, every octet fine, allocates nothing.
    if !quad.contains('.') || !quad.split('.').any(leading) {
        return Ok(());
    }
    let octets: Vec<&str> = quad.split('.').collect();
    let Some(bad) = octets.iter().find(|o| leading(o)) else {
        return Ok(());
    };
    let decimal: Vec<String> = octets
        .iter()
        .map(|o| match o.trim_start_matches('0') {
            "" if !o.is_empty() => "0".to_owned(),
            t => t.to_owned(),
        })
        .collect();
    let fixed = whole.replacen(quad, &decimal.join("."), 1);
    let octal = u8::from_str_radix(bad, 8)
        .map(|o| format!("octal ({o})"))
        .unwrap_or_else(|_| "octal (invalid)".to_owned());
    let dec = bad.trim_start_matches('0');
    let dec = if dec.is_empty() { "0" } else { dec };
    Err(format!(
        "{whole:?}: the octet \"{bad}\" has a leading zero, which some tools read as {octal} and others as decimal ({dec}); write \"{fixed}\" if you mean decimal"
    ))
}

/// The characters an interface name may hold beyond the kernel's rules:
/// anything else is nftables syntax (`@set`, `$variable`, `*`, quotes, braces)
/// or hard to tell apart in a terminal.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// An exact network interface name: the kernel's rules (`dev_valid_name`:
/// 1-15 bytes, not `.` or `..`, no `/`, `:` or whitespace) and, so that
/// nftables reads it as a name, only `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit.
pub fn interface_name(s: &str) -> Result<&str, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("{s:?} is not a valid interface name: it must be 1-15 bytes"));
    }
    if s == "."
        || s == ".."
        || s.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{s:?} is not a valid interface name: no '/', ':', whitespace, \".\" or \"..\""
        ));
    }
    if let Some(c) = s.chars().find(|c| !name_char(*c)) {
        let why = match c {
            '*' => " (a wildcard is allowed only at the end of firewall.cluster_interfaces entries)",
            '@' => " (nftables reads @name as a set)",
            '$' => " (nftables reads $name as a variable)",
            _ => "",
        };
        return Err(format!(
            "{s:?} is not a valid interface name: {c:?} is not allowed{why}; use A-Z a-z 0-9 . _ -"
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{s:?} is not a valid interface name: it must start with a letter or digit"
        ));
    }
    Ok(s)
}

/// An exact interface name or a wildcard: a prefix of at least
/// [`WILDCARD_MIN_PREFIX`] characters and a trailing `*` (nftables matches
/// every interface whose name starts with the prefix). A wildcard whose
/// prefix could match an uplink ([`UPLINK_PREFIXES`]) is refused.
pub fn interface_pattern(s: &str) -> Result<&str, String> {
    let Some(prefix) = s.strip_suffix('*') else {
        return interface_name(s);
    };
    if prefix.is_empty() {
        return Err(format!(
            "{s:?} would trust every interface, the uplink included; name the CNI interfaces (\"cni0\") or give a prefix of at least {WILDCARD_MIN_PREFIX} characters (\"lxc*\")"
        ));
    }
    if s.len() > 15 {
        return Err(format!("{s:?} is not a valid interface name: it must be 1-15 bytes"));
    }
    interface_name(prefix).map_err(|r| r.replacen(&format!("{prefix:?}"), &format!("{s:?}"), 1))?;
    if prefix.len() < WILDCARD_MIN_PREFIX {
        return Err(format!(
            "{s:?}: a wildcard needs a prefix of at least {WILDCARD_MIN_PREFIX} characters (\"lxc*\"), or name the interface exactly"
        ));
    }
    if let Some(uplink) = UPLINK_PREFIXES
        .iter()
        .find(|u| prefix.starts_with(*u) || u.starts_with(prefix))
    {
        return Err(format!(
            "{s:?} could match uplink interfaces ({uplink}…), which would trust traffic from the internet on every port; name the interface exactly"
        ));
    }
    Ok(s)
}

/// Whether interface `name` is matched by `pattern` as nftables matches
/// `iifname`: a trailing `*` matches any name starting with the prefix.
pub fn interface_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}
