//! The ordered registry of modules: the one place that names them.
//!
//! Order is dependency order: the firewall first (nothing else may come up
//! unprotected), then WireGuard (its address must exist before K3s binds to
//! it), then K3s, then IMA, then Vault (its `vpn:` listener needs the VPN address). Every engine operation iterates this list; adding a module
//! is one line here (see docs/design.md, "Adding a module").

use std::path::PathBuf;

use crate::firewall::{FirewallModule, Nft};
use crate::host::Host;
use crate::ima::Ima;
use crate::k3s::{K3s, K3sModule};
use crate::module::Module;
use crate::vault::Vault;
use crate::wireguard::WireGuardModule;

/// The host programs modules drive, as the daemon was told.
#[derive(Debug, Clone)]
pub struct Tools {
    pub nft: PathBuf,
    pub systemctl: PathBuf,
}

/// Every module, in converge order.
pub fn modules(host: &Host, tools: &Tools) -> Vec<Box<dyn Module>> {
    vec![
        Box::new(FirewallModule::new(Nft::new(&tools.nft))),
        Box::new(WireGuardModule::new()),
        Box::new(K3sModule::new(K3s::new(host.clone(), &tools.systemctl))),
        Box::new(Ima::new()),
        Box::new(Vault::new(host.clone(), &tools.systemctl)),
    ]
}
