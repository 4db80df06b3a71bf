//! Shell completion that asks the daemon: peer names and generation
//! numbers, offered by clap_complete's completion engine (the scripts
//! `bulwarkctl completions SHELL` prints call back into bulwarkctl).
//!
//! Completion cannot see `--socket` on the line being completed, so it uses
//! `BULWARK_SOCKET` or the default socket; a daemon that does not answer
//! quickly, or a caller outside group `bulwark`, simply gets no candidates.

use std::path::PathBuf;

use bulwark_model::api::{GenerationInfo, PeerInfo, DEFAULT_SOCKET};
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::Shells;
use serde::de::DeserializeOwned;

use crate::client::Client;

/// The environment variable the completion scripts set.
pub const VAR: &str = "COMPLETE";

fn socket() -> PathBuf {
    std::env::var_os("BULWARK_SOCKET").map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

fn fetch<T: DeserializeOwned>(path: &str) -> Option<T> {
    Client::new(&socket(), false).ok()?.get(path).ok()?.decode().ok()
}

/// Peer names, with their VPN address as the help text.
pub fn peers() -> Vec<CompletionCandidate> {
    fetch::<Vec<PeerInfo>>("/v1/peers")
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let help = if p.disabled {
                format!("{} (disabled)", p.address)
            } else {
                p.address
            };
            CompletionCandidate::new(p.name).help(Some(help.into()))
        })
        .collect()
}

/// Generation numbers, newest first, with their profile and reason.
pub fn generations() -> Vec<CompletionCandidate> {
    let mut gens = fetch::<Vec<GenerationInfo>>("/v1/generations").unwrap_or_default();
    gens.reverse();
    gens.into_iter()
        .map(|g| {
            let mark = if g.current { ", in force" } else { "" };
            CompletionCandidate::new(g.number.to_string())
                .help(Some(format!("{} ({}{mark})", g.profile, g.reason).into()))
        })
        .collect()
}

/// The registration script for `shell`: it calls `bulwarkctl` from `PATH`
/// with [`VAR`] set whenever the shell completes a bulwarkctl command line.
pub fn script(shell: &str) -> std::io::Result<Vec<u8>> {
    let shells = Shells::builtins();
    let completer = shells
        .completer(shell)
        .ok_or_else(|| std::io::Error::other(format!("no completion for shell {shell}")))?;
    let mut buf = Vec::new();
    completer.write_registration(VAR, "bulwarkctl", "bulwarkctl", "bulwarkctl", &mut buf)?;
    Ok(buf)
}
