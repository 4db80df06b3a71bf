//! Running `nft`: the only place the firewall module touches the host.
//!
//! nft is run as a child process with the `nftables` crate's JSON on stdin.
//! The crate's own helper drops nft's stderr, which is where the reason for a
//! rejected ruleset is, so the process is run here: absolute path, stdin,
//! stdout and stderr piped, killed after a timeout. Every command names table
//! `inet bulwark` and nothing else; there is no `flush ruleset` here.
//!
//! Calls block (up to the timeout); async callers run them on a blocking thread.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::ruleset::{delete_batch, Ruleset, FAMILY, TABLE};

/// Where Debian installs nft.
pub const DEFAULT_NFT: &str = "/usr/sbin/nft";
/// A 50,000-element replace takes about a second; this is for a hung nft.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep at most this much of nft's stderr in an error.
const STDERR_LIMIT: usize = 16 * 1024;

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

    /// Run nft with `args`, feeding `input` on stdin; stdout on success.
    fn run(&self, op: NftOp, args: &[&str], input: Option<Vec<u8>>) -> Result<String, FirewallError> {
        let mut child = Command::new(&self.path)
            .args(args)
            // "No such file or directory" is matched in list(): keep strerror untranslated.
            .env("LC_ALL", "C")
            // nft is no systemd service: it must not inherit our notify socket.
            .env_remove("NOTIFY_SOCKET")
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FirewallError::Spawn {
                nft: self.path.clone(),
                op,
                source,
            })?;

        // Feed and drain on threads: a 50k-element batch is megabytes, far
        // more than a pipe buffers, and the timeout must hold even if nft
        // stops reading.
        let writer = child.stdin.take().zip(input).map(|(mut stdin, data)| {
            thread::spawn(move || match stdin.write_all(&data) {
                // nft exiting early (bad arguments) closes the pipe; its exit status says why.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            })
        });
        let stdout = child.stdout.take().map(|r| drain(r, usize::MAX));
        let stderr = child.stderr.take().map(|r| drain(r, STDERR_LIMIT));

        let status = match self.wait(&mut child, op)? {
            Some(status) => status,
            None => {
                // The pipe threads end once the killed process's pipes close;
                // do not wait for them.
                return Err(FirewallError::Timeout {
                    nft: self.path.clone(),
                    op,
                    timeout: self.timeout,
                });
            }
        };
        // Write errors other than a closed pipe are rare and the exit status
        // is the better report, so only the status decides.
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = collect(stdout);
        let stderr = collect(stderr);
        if status.success() {
            Ok(String::from_utf8_lossy(&stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
            Err(FirewallError::Failed {
                nft: self.path.clone(),
                op,
                status,
                stderr,
            })
        }
    }

    /// Wait for `child` until the timeout; `None` when it was killed for it.
    fn wait(&self, child: &mut Child, op: NftOp) -> Result<Option<ExitStatus>, FirewallError> {
        let deadline = Instant::now() + self.timeout;
        // Short polls first: most runs finish within a few milliseconds.
        let mut pause = Duration::from_millis(1);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(Some(status)),
                Ok(None) => {}
                Err(source) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(FirewallError::Wait {
                        nft: self.path.clone(),
                        op,
                        source,
                    });
                }
            }
            let now = Instant::now();
            if now >= deadline {
                // kill() fails only if the child already exited; reap it either way.
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

fn encode(rs: &Ruleset) -> Result<Vec<u8>, FirewallError> {
    serde_json::to_vec(&rs.to_nftables()).map_err(|source| FirewallError::Encode { source })
}

/// Read `r` to its end on a thread, keeping at most `limit` bytes.
fn drain(mut r: impl Read + Send + 'static, limit: usize) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = limit.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        kept
    })
}

fn collect(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
