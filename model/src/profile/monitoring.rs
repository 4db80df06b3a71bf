//! `[monitoring]`: the optional Prometheus listener.

use std::net::IpAddr;

use serde::Serialize;
use toml::Table;

use super::fields::port_text;
use super::wireguard::WireGuard;
use super::Checker;

const MONITORING_KEYS: &[&str] = &["listen"];

/// `[monitoring]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Monitoring {
    /// TCP address of the Prometheus listener: loopback or the VPN address only.
    pub listen: Option<std::net::SocketAddr>,
}

impl Checker<'_> {
    pub(super) fn monitoring(&mut self, t: &Table, wireguard: Option<&WireGuard>) -> Monitoring {
        self.unknown_keys("monitoring", t, MONITORING_KEYS);
        let Some(v) = t.get("listen") else {
            return Monitoring::default();
        };
        let Some(s) = v.as_str() else {
            self.err(
                "monitoring.listen",
                format!("expected \"address:port\", found {}", v.type_str()),
            );
            return Monitoring::default();
        };
        let addr = match s.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    "monitoring.listen",
                    format!("{s:?} is not an address:port such as \"127.0.0.1:9469\""),
                );
                return Monitoring::default();
            }
        };
        // The standard parser takes port 0 ("any free port") and "080".
        if let Err(reason) = port_text(s.rsplit(':').next().unwrap_or_default()) {
            self.err("monitoring.listen", format!("{s:?}: {reason}"));
            return Monitoring::default();
        }
        let vpn = wireguard.map(|w| IpAddr::V4(w.address.addr()));
        if !(addr.ip().is_loopback() || Some(addr.ip()) == vpn) {
            let allowed = vpn.map_or("loopback".to_owned(), |v| format!("loopback or the VPN address {v}"));
            self.err(
                "monitoring.listen",
                format!("{} is not allowed: metrics listen only on {allowed}", addr.ip()),
            );
            return Monitoring::default();
        }
        Monitoring { listen: Some(addr) }
    }
}
