//! bulwarkd: converges declarative profiles into host state (nftables today;
//! WireGuard, K3s, IMA and Vault plug into the same engine), proves the result,
//! audits every change and watches for drift.

pub mod api;
pub mod audit;
pub mod converge;
pub mod daemon;
pub mod firewall;
pub mod health;
pub mod host;
pub mod k3s;
pub mod logging;
pub mod module;
pub mod notify;
pub mod state;
pub mod vault;
pub mod wireguard;
