//! Checks that span sections: the VPN, the cluster and the admin networks
//! must stay apart, and nothing may quietly widen what the firewall trusts.

use std::net::IpAddr;

use ipnet::IpNet;

use super::fields::interface_matches;
use super::firewall::{Firewall, Trusted};
use super::wireguard::VpnParts;
use super::Checker;
use crate::cidr;

impl Checker<'_> {
    pub(super) fn cross_checks(&mut self, fw: &Firewall, trusted: &Trusted, vpn: &VpnParts) {
        // A source in both lists would be trusted on every port as a cluster
        // address, which makes the admin_tcp restriction meaningless.
        for (ci, cnet) in &trusted.cluster {
            for (ai, anet) in trusted.admin.iter().filter(|(_, a)| cidr::overlaps(cnet, a)) {
                let apath = Trusted::admin_path(*ai);
                self.err(
                    Trusted::cluster_path(*ci),
                    format!(
                        "{cnet} overlaps {apath} ({anet}): an admin source there would be trusted on every port; keep the cluster and admin networks apart"
                    ),
                );
            }
        }
        // The VPN subnet inside a trusted network: peers would be trusted as
        // cluster or admin sources from any interface, and routes would clash.
        if let Some(vpn) = vpn.address {
            let (address, subnet) = (vpn.addr(), IpNet::V4(vpn.trunc()));
            for (list, nets) in [("cluster", &trusted.cluster), ("admin", &trusted.admin)] {
                for (i, net) in nets.iter().filter(|(_, n)| cidr::overlaps(&subnet, n)) {
                    let path = if list == "cluster" {
                        Trusted::cluster_path(*i)
                    } else {
                        Trusted::admin_path(*i)
                    };
                    let what = if net.contains(&IpAddr::V4(address)) {
                        format!("the VPN address {address} is inside {path} ({net})")
                    } else {
                        format!("the VPN subnet {subnet} overlaps {path} ({net})")
                    };
                    self.err(
                        "wireguard.address",
                        format!("{what}: VPN peers would count as {list} sources and routes would clash; give the VPN a subnet of its own"),
                    );
                }
            }
        }

        if let Some(port) = vpn.listen_port.filter(|p| fw.vpn_udp.contains(p)) {
            self.err(
                "firewall.vpn_udp",
                format!(
                    "port {port} is wireguard.listen_port, which is always open to everyone; remove it from firewall.vpn_udp"
                ),
            );
        }

        if let Some(iface) = &vpn.interface {
            for (path, pattern) in trusted.interfaces.iter().filter(|(_, p)| interface_matches(p, iface)) {
                self.err(
                    path.as_str(),
                    format!(
                        "{pattern:?} matches wireguard.interface {iface:?}: trusting it opens every port to every VPN peer; open VPN ports with firewall.vpn_tcp and firewall.vpn_udp"
                    ),
                );
            }
        }
    }
}
