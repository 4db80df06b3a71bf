//! Running `nft`: the only place the firewall module touches the host.
//!
//! nft is run as a child process with the `nftables` crate's JSON on stdin.
//! The crate's own helper drops nft's stderr, which is where the reason for a
//! rejected ruleset is, so the process is run through the daemon's bounded
//! runner ([`crate::host::run`]): absolute path, stderr kept, killed after a
//! timeout. Every command names table
//! `inet bulwark` and nothing else; there is no `flush ruleset` here.
//!
//! Calls block (up to the timeout); async callers run them on a blocking thread.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::ruleset::{delete_batch, Ruleset, FAMILY, TABLE};
use crate::host::run::{Run, RunError};

/// Where Debian installs nft.
pub const DEFAULT_NFT: &str = "/usr/sbin/nft";
/// A 50,000-element replace takes about a second; this is for a hung nft.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What nft was asked to do, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NftOp {
    Apply,
    Check,
    List,
    Delete,
}

impl fmt::Display for NftOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NftOp::Apply => "apply",
            NftOp::Check => "check",
            NftOp::List => "list",
            NftOp::Delete => "delete",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("could not run {} to {op} table inet bulwark (is the nftables package installed?)", .nft.display())]
    Spawn {
        nft: PathBuf,
        op: NftOp,
        #[source]
        source: io::Error,
    },
    #[error("could not wait for {} to {op} table inet bulwark", .nft.display())]
    Wait {
        nft: PathBuf,
        op: NftOp,
        #[source]
        source: io::Error,
    },
    #[error("{} could not {op} table inet bulwark ({status}): {stderr}", .nft.display())]
    Failed {
        nft: PathBuf,
        op: NftOp,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{} did not {op} table inet bulwark within {}; it was killed", .nft.display(), humantime::format_duration(*.timeout))]
    Timeout { nft: PathBuf, op: NftOp, timeout: Duration },
    #[error("could not encode the nftables batch as JSON")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    #[error("nft listed table inet bulwark as JSON that does not parse")]
    Listing {
        #[source]
        source: serde_json::Error,
    },
    #[error("nft reported success, but table inet bulwark in the kernel is not what was sent: {what}")]
    Mismatch { what: String },
    #[error("cannot read or change table inet bulwark over netlink")]
    Netlink(#[from] super::netlink::NetlinkError),
}

/// The `nft` binary Bulwark drives.
#[derive(Debug, Clone)]
pub struct Nft {
    path: PathBuf,
    timeout: Duration,
}

impl Default for Nft {
    fn default() -> Self {
        Nft::new(DEFAULT_NFT)
    }
}

impl Nft {
    /// `path` should be absolute: the daemon does not trust `$PATH`.
    pub fn new(path: impl Into<PathBuf>) -> Nft {
        Nft {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Nft {
        self.timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replace table `inet bulwark` with `rs` in one transaction. On failure
    /// the old table is still in force and the error carries nft's reason.
    pub fn apply(&self, rs: &Ruleset) -> Result<(), FirewallError> {
        let batch = encode(rs)?;
        self.run(NftOp::Apply, &["-j", "-f", "-"], Some(batch)).map(drop)
    }

    /// Dry run of [`Nft::apply`]: nft and the kernel validate the whole
    /// transaction, then it is aborted.
    pub fn check(&self, rs: &Ruleset) -> Result<(), FirewallError> {
        let batch = encode(rs)?;
        self.run(NftOp::Check, &["-c", "-j", "-f", "-"], Some(batch)).map(drop)
    }

    /// `nft list table inet bulwark` as text, or `None` when the table does
    /// not exist. The text is stable for an unchanged table, so a snapshot
    /// taken right after an apply detects drift by plain comparison.
    pub fn list(&self) -> Result<Option<String>, FirewallError> {
        match self.run(NftOp::List, &["list", "table", FAMILY, TABLE], None) {
            Ok(text) => Ok(Some(text)),
            Err(FirewallError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remove table `inet bulwark`; Ok when it is already gone.
    pub fn delete(&self) -> Result<(), FirewallError> {
        // add + delete in one batch never fails on a missing table, so there
        // is no error text to interpret.
        let batch = serde_json::to_vec(&delete_batch()).map_err(|source| FirewallError::Encode { source })?;
        self.run(NftOp::Delete, &["-j", "-f", "-"], Some(batch)).map(drop)
    }

    /// `nft -j list table inet bulwark` in canonical form (no handles, no
    /// metainfo), or `None` when the table does not exist. Two listings of
    /// an unchanged table are equal, so a listing taken right after an apply
    /// detects drift by comparison.
    pub fn list_json(&self) -> Result<Option<serde_json::Value>, FirewallError> {
        match self.run(NftOp::List, &["-j", "list", "table", FAMILY, TABLE], None) {
            Ok(text) => {
                let mut doc: serde_json::Value =
                    serde_json::from_str(&text).map_err(|source| FirewallError::Listing { source })?;
                canonical(&mut doc);
                Ok(Some(doc))
            }
            Err(FirewallError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `nft -j list chains`: every chain of every table, without their
    /// rules (cheap whatever the size of the sets).
    pub fn list_chains(&self) -> Result<serde_json::Value, FirewallError> {
        let text = self.run(NftOp::List, &["-j", "list", "chains"], None)?;
        serde_json::from_str(&text).map_err(|source| FirewallError::Listing { source })
    }

    /// `nft -j list table FAMILY NAME` of another manager's table, read only
    /// to tell whether its rules are in force.
    pub fn list_other_table(&self, family: &str, name: &str) -> Result<serde_json::Value, FirewallError> {
        let text = self.run(NftOp::List, &["-j", "list", "table", family, name], None)?;
        serde_json::from_str(&text).map_err(|source| FirewallError::Listing { source })
    }

    /// Run nft with `args`, feeding `input` on stdin; stdout on success.
    fn run(&self, op: NftOp, args: &[&str], input: Option<Vec<u8>>) -> Result<String, FirewallError> {
        let mut run = Run::new(&self.path, self.timeout).args(args.iter().copied());
        if let Some(bytes) = input {
            run = run.stdin(bytes);
        }
        let nft = self.path.clone();
        match run.output() {
            Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            Err(RunError::Spawn { source, .. }) => Err(FirewallError::Spawn { nft, op, source }),
            Err(RunError::Wait { source, .. }) => Err(FirewallError::Wait { nft, op, source }),
            Err(RunError::Timeout { timeout, .. }) => Err(FirewallError::Timeout { nft, op, timeout }),
            Err(RunError::Failed { status, stderr, .. }) => Err(FirewallError::Failed {
                nft,
                op,
                status,
                stderr,
            }),
        }
    }
}

/// Drop what changes on every replace although the table does not: object
/// handles and nft's version banner.
fn canonical(doc: &mut serde_json::Value) {
    match doc {
        serde_json::Value::Object(map) => {
            map.remove("handle");
            for v in map.values_mut() {
                canonical(v);
            }
        }
        serde_json::Value::Array(items) => {
            items.retain(|i| i.get("metainfo").is_none());
            for v in items {
                canonical(v);
            }
        }
        _ => {}
    }
}

fn encode(rs: &Ruleset) -> Result<Vec<u8>, FirewallError> {
    serde_json::to_vec(&rs.to_nftables()).map_err(|source| FirewallError::Encode { source })
}

#[cfg(test)]
mod tests;
