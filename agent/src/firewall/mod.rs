//! The host firewall: table `inet bulwark` in nftables.
//!
//! Bulwark owns exactly this one table and never touches another, so K3s,
//! flannel, Cilium and kube-proxy keep theirs. The module is split by concern:
//!
//! - [`ruleset`]: the desired table as data ([`Ruleset`]), stored with every
//!   generation, rendered both as nft text (for people) and as the `nftables`
//!   crate's JSON batch (for `nft -j`).
//! - [`render`](mod@render): profile → [`Ruleset`], pure.
//! - [`plan`](mod@plan): a readable diff between two rulesets, pure.
//! - [`nft`]: the thin part that runs `nft` to apply, check, list and delete.
//! - [`netlink`]: nf_tables over netlink: the ruleset's generation id, and
//!   set-element changes in one transaction.
//! - [`events`]: a watcher of nf_tables announcements that wakes the engine
//!   when anyone touches table inet bulwark.
//! - [`verify`]: reading the table back, and what changed since.
//! - [`coexist`]: other firewall managers on the host (ufw, firewalld, a
//!   `flush ruleset` in nftables.service, legacy iptables).
//! - `module`: the firewall on the module contract (failsafe, drift, health).
//!
//! Every change is one transaction, so a refused ruleset leaves the previous
//! one in force and there is no partial state to reconcile: a change of set
//! elements only is sent as element messages over netlink; anything else
//! (chains, rules, and every change the element path cannot prove safe)
//! replaces the table whole (add, delete, add, then everything in it).

pub mod coexist;
pub mod events;
pub mod interfaces;
mod module;
pub mod netlink;
pub mod nft;
pub mod plan;
pub mod readback;
pub mod render;
pub mod ruleset;
pub mod verify;

#[cfg(test)]
mod testns;

pub use interfaces::{refuse_trusted_uplinks, UplinkError};
pub use module::{desired, failsafe_profile, FirewallModule, FAILSAFE_PROFILE};
pub use nft::{FirewallError, Nft, NftOp, DEFAULT_NFT, DEFAULT_TIMEOUT};
pub use plan::plan;
pub use render::render;
pub use ruleset::Ruleset;
