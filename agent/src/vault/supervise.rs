//! Running `bao server` without systemd: on hosts whose PID 1 is not
//! systemd (containers, the namespace tests) bulwarkd owns the process.
//!
//! The server gets no systemd notification socket, no inherited stdin, and
//! its output goes to a 0600 log beside Bulwark's state. Its PID is kept in
//! a file, so a bulwarkd restarted after `kill -9` adopts the server it left
//! running (checked through `/proc/PID/cmdline`) instead of starting a
//! second one on the same raft directory. Stopping is SIGTERM, then SIGKILL
//! after a grace period; dropping the handle stops it.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::VaultError;
use crate::host::run::SCRUBBED_ENV;
use crate::state;

/// How long a stopping server gets before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `bao server` this daemon started or adopted.
#[derive(Debug)]
pub struct Server {
    pid: u32,
    /// `None` when adopted: not our child, watched through kill(pid, 0).
    child: Option<Child>,
    pidfile: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => kill(to_pid(self.pid), None).is_ok() && !zombie(self.pid),
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; removes the PID file.
    pub fn stop(&mut self) {
        if self.alive() {
            let _ = kill(to_pid(self.pid), Signal::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while self.alive() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            if self.alive() {
                log::warn!(pid = self.pid; "bao ignored SIGTERM; killing it");
                let _ = kill(to_pid(self.pid), Signal::SIGKILL);
            }
            if let Some(c) = &mut self.child {
                let _ = c.wait();
            }
            log::info!(pid = self.pid; "stopped bao");
        }
        let _ = state::remove(&self.pidfile);
    }
}

impl Server {
    /// SIGKILL at once (a throw-away server whose data is discarded).
    pub fn kill(&mut self) {
        if self.alive() {
            let _ = kill(to_pid(self.pid), Signal::SIGKILL);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while self.alive() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if let Some(c) = &mut self.child {
                let _ = c.wait();
            }
        }
        let _ = state::remove(&self.pidfile);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// A process that exited but was not reaped (adopted ones never are by us).
fn zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Whether process `pid` runs `server -config=CONFIG` (and is not a zombie).
fn runs(pid: u32, config: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = format!("-config={}", config.display());
    cmdline.split(|b| *b == 0).any(|arg| arg == want.as_bytes()) && !zombie(pid)
}

/// The server a previous bulwarkd left running with `config`, if any: the
/// PID file's, else any process running that configuration (a crash
/// between the spawn and the PID file must not start a second server on the
/// same raft directory).
pub fn adopt(pidfile: &Path, config: &Path) -> Option<Server> {
    let recorded: Option<u32> = fs::read_to_string(pidfile).ok().and_then(|s| s.trim().parse().ok());
    let pid = match recorded.filter(|p| runs(*p, config)) {
        Some(p) => p,
        None => {
            let found = fs::read_dir("/proc")
                .ok()?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .find(|p| *p != std::process::id() && runs(*p, config));
            match found {
                Some(p) => {
                    let _ = state::write_atomic(pidfile, p.to_string().as_bytes());
                    p
                }
                None => {
                    let _ = state::remove(pidfile);
                    return None;
                }
            }
        }
    };
    log::info!(pid; "adopting the running bao server");
    Some(Server {
        pid,
        child: None,
        pidfile: pidfile.to_owned(),
    })
}

/// Start `binary server -config=CONFIG`, output appended to `log` (0600).
pub fn spawn(binary: &Path, config: &Path, log: &Path, pidfile: &Path) -> Result<Server, VaultError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(|source| VaultError::Io {
            op: "open",
            path: log.to_owned(),
            source,
        })?;
    let err = out.try_clone().map_err(|source| VaultError::Io {
        op: "open",
        path: log.to_owned(),
        source,
    })?;
    let mut cmd = Command::new(binary);
    cmd.arg("server")
        .arg(format!("-config={}", config.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }
    // The server must not pick up a token or address meant for a CLI.
    for key in ["VAULT_TOKEN", "BAO_TOKEN", "VAULT_ADDR", "BAO_ADDR"] {
        cmd.env_remove(key);
    }
    // ETXTBSY: a process another thread forked may briefly still hold the
    // just-installed binary's write descriptor (see install::exec_retrying).
    let mut tries = 0;
    let child = loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                thread::sleep(Duration::from_millis(50));
            }
            other => {
                break other.map_err(|source| VaultError::Spawn {
                    binary: binary.to_owned(),
                    source,
                })?
            }
        }
    };
    let pid = child.id();
    state::write_atomic(pidfile, pid.to_string().as_bytes()).map_err(VaultError::State)?;
    log::info!(pid, binary:display = binary.display(); "started bao server");
    Ok(Server {
        pid,
        child: Some(child),
        pidfile: pidfile.to_owned(),
    })
}
