//! Bulwark's shared model: the profile (what a host must look like), its
//! validation, and the API's wire types.
//!
//! Both `bulwarkd` and `bulwarkctl` depend on this crate, so it stays pure:
//! serde, TOML and address arithmetic only, no system calls. That is what lets
//! `bulwarkctl validate` check a profile offline, exactly as the daemon would.

pub mod api;
pub mod cidr;
pub mod coexist;
pub mod evidence;
pub mod ima;
pub mod profile;
pub mod text;
pub mod vault;

pub use profile::{Profile, ProfileError, ValidationErrors};
