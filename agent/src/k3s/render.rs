//! The two drop-ins Bulwark owns for K3s, rendered as text (no system calls).

use std::fmt::Write as _;
use std::net::IpAddr;

use bulwark_model::profile::K3s as K3sProfile;

/// Merged by K3s after its own `config.yaml`, in lexical order: `50-` leaves
/// room for an operator's files on either side.
pub const CONFIG_DROPIN: &str = "/etc/rancher/k3s/config.yaml.d/50-bulwark.yaml";
/// Orders k3s.service after bulwarkd.service.
pub const UNIT_DROPIN: &str = "/etc/systemd/system/k3s.service.d/50-bulwark.conf";

/// YAML double-quoted scalar. Values are validated IPs and DNS names, but
/// quoting keeps an IPv6 address (with its colons) a plain string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `config.yaml.d/50-bulwark.yaml`: every address K3s binds or announces is `bind`.
pub fn config_yaml(desired: &K3sProfile, bind: IpAddr) -> String {
    let ip = quoted(&bind.to_string());
    let mut s = String::from(
        "# Managed by Bulwark from the [k3s] section of its profile; edits are\n\
         # overwritten on the next apply. K3s merges this file over config.yaml.\n",
    );
    let _ = writeln!(s, "bind-address: {ip}");
    let _ = writeln!(s, "advertise-address: {ip}");
    let _ = writeln!(s, "node-ip: {ip}");
    if !desired.tls_san.is_empty() {
        s.push_str("tls-san:\n");
        for san in &desired.tls_san {
            let _ = writeln!(s, "  - {}", quoted(san));
        }
    }
    s
}

/// `k3s.service.d/50-bulwark.conf`: the VPN address K3s binds to exists only
/// once bulwarkd has converged, so K3s starts after it.
pub fn unit_dropin() -> String {
    "# Managed by Bulwark: K3s binds to the VPN address, which exists only once\n\
     # bulwarkd has started.\n\
     [Unit]\n\
     Wants=bulwarkd.service\n\
     After=bulwarkd.service\n"
        .to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bulwark_model::profile::K3sBind;

    fn profile(sans: &[&str]) -> K3sProfile {
        K3sProfile {
            bind: K3sBind::Vpn,
            tls_san: sans.iter().map(|s| (*s).to_owned()).collect(),
            restart: true,
        }
    }

    #[test]
    fn config_names_the_bind_address_everywhere() {
        let text = config_yaml(&profile(&["10.8.0.1", "k3s.vpn.internal"]), "10.8.0.1".parse().unwrap());
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(),
            [
                "bind-address: \"10.8.0.1\"",
                "advertise-address: \"10.8.0.1\"",
                "node-ip: \"10.8.0.1\"",
                "tls-san:",
                "  - \"10.8.0.1\"",
                "  - \"k3s.vpn.internal\"",
            ]
        );
        assert!(text.starts_with("# Managed by Bulwark"));
    }

    #[test]
    fn empty_tls_san_is_left_out_and_ipv6_is_quoted() {
        let text = config_yaml(&profile(&[]), "fd00::1".parse().unwrap());
        assert!(!text.contains("tls-san"));
        assert!(text.contains("bind-address: \"fd00::1\"\n"));
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("a\nb"), "\"a\\u000ab\"");
    }

    #[test]
    fn unit_dropin_orders_after_bulwarkd() {
        let text = unit_dropin();
        assert!(text.contains("[Unit]\nWants=bulwarkd.service\nAfter=bulwarkd.service\n"));
    }
}
