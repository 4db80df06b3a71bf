//! `[k3s]`: where the K3s API server binds.

use std::net::IpAddr;

use serde::Serialize;
use toml::Table;

use super::fields::{dns_name, ip_addr};
use super::wireguard::WireGuard;
use super::Checker;

const K3S_KEYS: &[&str] = &["bind", "tls_san", "restart"];

/// `[k3s]`: where the K3s API server binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K3s {
    /// bind-address, advertise-address and node-ip.
    pub bind: K3sBind,
    /// Extra subject alternative names for the API server certificate.
    pub tls_san: Vec<String>,
    /// Restart k3s.service when Bulwark's drop-in changed.
    pub restart: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum K3sBind {
    /// The WireGuard address (requires `[wireguard]`).
    Vpn,
    /// An explicit address.
    #[serde(untagged)]
    Ip(IpAddr),
}

impl Checker<'_> {
    pub(super) fn k3s(&mut self, t: &Table, wireguard: Option<&WireGuard>) -> Option<K3s> {
        const P: &str = "k3s";
        self.unknown_keys(P, t, K3S_KEYS);
        let bind = match t.get("bind").map(|v| (v, v.as_str())) {
            None | Some((_, Some("vpn"))) => {
                if wireguard.is_none() {
                    self.err(
                        "k3s.bind",
                        "\"vpn\" needs a [wireguard] section; add one or give an IP address",
                    );
                }
                Some(K3sBind::Vpn)
            }
            Some((_, Some(s))) => match ip_addr(s) {
                Ok(ip) if !ip.is_unspecified() => Some(K3sBind::Ip(ip)),
                Ok(ip) => {
                    self.err(
                        "k3s.bind",
                        format!("{ip} would expose the API on every interface; use \"vpn\" or one address"),
                    );
                    None
                }
                // An address in an ambiguous form: say which and what to write.
                Err(reason) if s.parse::<IpAddr>().is_ok() || s.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                    self.err("k3s.bind", reason);
                    None
                }
                Err(_) => {
                    self.err("k3s.bind", format!("{s:?} is neither \"vpn\" nor an IP address"));
                    None
                }
            },
            Some((v, None)) => {
                self.err(
                    "k3s.bind",
                    format!("expected \"vpn\" or an IP address, found {}", v.type_str()),
                );
                None
            }
        };
        let tls_san = self.array(t, P, "tls_san", "IP addresses or DNS names", |v| {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a string, found {}", v.type_str()))?;
            san(s).map(|()| s.to_owned())
        });
        let restart = self.bool(t, P, "restart").unwrap_or(true);
        Some(K3s {
            bind: bind?,
            tls_san,
            restart,
        })
    }
}

/// A subject alternative name: an IP address or a DNS name.
fn san(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() || dns_name(s) {
        Ok(())
    } else {
        Err(format!("{s:?} is neither an IP address nor a DNS name"))
    }
}
