//! Value parsers shared by the sections: ports, CIDRs, names.

use ipnet::IpNet;
use toml::Value;

pub(super) fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
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

/// A network in CIDR notation with no host bits set.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is not a CIDR such as \"192.0.2.0/24\" or \"2001:db8::/32\""))?;
    if net.trunc() != net {
        return Err(format!("{s:?} has host bits set; did you mean \"{}\"?", net.trunc()));
    }
    Ok(net)
}

/// A name Linux accepts for a network interface (`dev_valid_name`).
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
    Ok(s)
}
