//! bulwarkd: converges declarative profiles into host state, proves the
//! result, audits every change and watches for drift.
//!
//! Each host concern (firewall, WireGuard, K3s, ...) is a [`module::Module`]
//! in the engine's ordered registry ([`converge::registry`]); the engine
//! ([`converge`]) is the only code that changes the host, on one thread.

pub mod api;
pub mod audit;
pub mod clock;
pub mod converge;
pub mod daemon;
pub mod firewall;
pub mod health;
pub mod host;
pub mod ima;
pub mod integrity;
pub mod k3s;
pub mod logging;
pub mod memory;
pub mod module;
pub mod notify;
pub mod state;
pub mod vault;
pub mod wireguard;
