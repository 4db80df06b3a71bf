//! Which implementation provides the interface, and supervision of
//! `wireguard-go` when it is the userspace one.
//!
//! The kernel backend is created through netlink by `wireguard-control`.
//! For userspace, bulwarkd runs `wireguard-go -f IFACE` itself rather than
//! letting `wireguard-control` launch it: that launcher daemonises out of
//! reach (no PID to stop, no logs) and hangs forever when `LOG_LEVEL` is set.
//! A `wireguard-go` that outlived a killed bulwarkd is adopted (its PID comes
//! from the UAPI socket's peer credentials), so a daemon restart does not
//! reset the admins' sessions.
//!
//! `/var/run/wireguard` is shared by every network namespace, so a socket is
//! only used after checking that its server lives in our namespace.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use wireguard_control::{Backend as WgBackend, Device, DeviceUpdate, InterfaceName};

use super::WgError;
use bulwark_model::profile::Backend as Wanted;

/// Where wireguard-go (and `wg`) keep the UAPI sockets.
pub const RUN_DIR: &str = "/var/run/wireguard";
/// Where Debian and source installs put wireguard-go.
const USERSPACE_BINARIES: &[&str] = &[
    "/usr/bin/wireguard-go",
    "/usr/local/bin/wireguard-go",
    "/usr/sbin/wireguard-go",
];
/// How long wireguard-go may take to open its UAPI socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping wireguard-go gets before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines of wireguard-go output kept for error messages.
const OUTPUT_LINES: usize = 20;

/// The implementation serving the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kernel,
    Userspace,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kernel => "kernel",
            Kind::Userspace => "userspace",
        }
    }

    pub fn wg(self) -> WgBackend {
        match self {
            Kind::Kernel => WgBackend::Kernel,
            Kind::Userspace => WgBackend::Userspace,
        }
    }

    fn allowed_by(self, wanted: Wanted) -> bool {
        matches!(
            (self, wanted),
            (_, Wanted::Auto) | (Kind::Kernel, Wanted::Kernel) | (Kind::Userspace, Wanted::Userspace)
        )
    }
}

pub fn iface_name(iface: &str) -> Result<InterfaceName, WgError> {
    InterfaceName::from_str(iface).map_err(|e| WgError::InterfaceName {
        iface: iface.to_owned(),
        reason: e.to_string(),
    })
}

pub fn socket_path(iface: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{iface}.sock"))
}

/// A running wireguard-go, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Userspace {
    iface: String,
    pid: u32,
    /// `None` for an adopted process (not our child: polled through kill(0)).
    child: Option<Child>,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl Userspace {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is still running (reaps it when it is our child).
    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => kill(to_pid(self.pid), None).is_ok(),
        }
    }

    fn recent_output(&self) -> String {
        match self.output.lock() {
            Ok(lines) if !lines.is_empty() => lines.iter().cloned().collect::<Vec<_>>().join(" | "),
            _ => "no output".to_owned(),
        }
    }

    /// SIGTERM (wireguard-go then removes its socket and TUN device), SIGKILL after a grace period.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let pid = to_pid(self.pid);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.alive() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if self.alive() {
            log::warn!(iface = self.iface.as_str(), pid = self.pid; "wireguard-go ignored SIGTERM; killing it");
            let _ = kill(pid, Signal::SIGKILL);
            if let Some(c) = &mut self.child {
                let _ = c.wait();
            }
        }
        log::info!(iface = self.iface.as_str(), pid = self.pid; "stopped wireguard-go");
    }
}

impl Drop for Userspace {
    fn drop(&mut self) {
        self.stop();
    }
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// What serves the UAPI socket of `iface`, if anything in our namespace does.
///
/// `Ok(None)`: no socket, or a stale one (its process died). An error when
/// the socket belongs to a wireguard-go in another network namespace.
pub fn socket_owner(iface: &str) -> Result<Option<u32>, WgError> {
    let path = socket_path(iface);
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => {
            return Err(WgError::Userspace {
                iface: iface.to_owned(),
                reason: format!("cannot connect to {}: {e}", path.display()),
            })
        }
    };
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).map_err(|e| {
        WgError::Userspace {
            iface: iface.to_owned(),
            reason: format!("cannot read the owner of {}: {e}", path.display()),
        }
    })?;
    let pid = u32::try_from(cred.pid()).unwrap_or(0);
    let ours = fs::read_link("/proc/thread-self/ns/net").ok();
    let theirs = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    if ours.is_none() || ours != theirs {
        return Err(WgError::InterfaceInOtherNamespace {
            iface: iface.to_owned(),
            pid,
        });
    }
    Ok(Some(pid))
}

/// Whether a kernel WireGuard device named `iface` exists here.
pub fn kernel_device_exists(name: &InterfaceName) -> bool {
    Device::get(name, WgBackend::Kernel).is_ok()
}

/// Make sure `iface` exists with a backend the profile allows; returns the
/// backend now serving it. `running` is the wireguard-go this daemon
/// supervises, replaced when it died.
pub fn ensure(iface: &str, wanted: Wanted, running: &mut Option<Userspace>) -> Result<Kind, WgError> {
    let name = iface_name(iface)?;
    let mismatch = |found: Kind| WgError::BackendMismatch {
        iface: iface.to_owned(),
        found: found.as_str(),
        wanted,
    };
    if kernel_device_exists(&name) {
        if !Kind::Kernel.allowed_by(wanted) {
            return Err(mismatch(Kind::Kernel));
        }
        *running = None;
        return Ok(Kind::Kernel);
    }
    if let Some(u) = running.as_mut() {
        if u.alive() && socket_owner(iface)? == Some(u.pid) {
            if !Kind::Userspace.allowed_by(wanted) {
                return Err(mismatch(Kind::Userspace));
            }
            return Ok(Kind::Userspace);
        }
        log::warn!(iface, pid = u.pid, output = u.recent_output().as_str(); "wireguard-go is gone; starting it again");
        *running = None;
    }
    if let Some(pid) = socket_owner(iface)? {
        if !Kind::Userspace.allowed_by(wanted) {
            return Err(mismatch(Kind::Userspace));
        }
        log::info!(iface, pid; "adopting the running wireguard-go");
        *running = Some(Userspace {
            iface: iface.to_owned(),
            pid,
            child: None,
            output: Arc::default(),
        });
        return Ok(Kind::Userspace);
    }
    match wanted {
        Wanted::Kernel => {
            create_kernel(&name).map_err(|source| WgError::KernelUnavailable {
                iface: iface.to_owned(),
                source,
            })?;
            Ok(Kind::Kernel)
        }
        Wanted::Auto => match create_kernel(&name) {
            Ok(()) => Ok(Kind::Kernel),
            Err(e) => {
                log::info!(iface, reason:display = e; "kernel WireGuard unavailable; using wireguard-go");
                *running = Some(spawn(iface)?);
                Ok(Kind::Userspace)
            }
        },
        Wanted::Userspace => {
            *running = Some(spawn(iface)?);
            Ok(Kind::Userspace)
        }
    }
}

/// Whether [`ensure`] could serve `iface` with a backend `wanted` allows,
/// without creating anything: the dry run of an apply.
pub fn check(iface: &str, wanted: Wanted) -> Result<(), WgError> {
    let name = iface_name(iface)?;
    let mismatch = |found: Kind| WgError::BackendMismatch {
        iface: iface.to_owned(),
        found: found.as_str(),
        wanted,
    };
    if kernel_device_exists(&name) {
        return if Kind::Kernel.allowed_by(wanted) {
            Ok(())
        } else {
            Err(mismatch(Kind::Kernel))
        };
    }
    if socket_owner(iface)?.is_some() {
        return if Kind::Userspace.allowed_by(wanted) {
            Ok(())
        } else {
            Err(mismatch(Kind::Userspace))
        };
    }
    let kernel = kernel_module_available();
    match wanted {
        Wanted::Kernel if !kernel => Err(WgError::KernelUnavailable {
            iface: iface.to_owned(),
            source: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        }),
        Wanted::Userspace => userspace_binary().map(drop),
        Wanted::Auto if !kernel => userspace_binary().map(drop),
        _ => Ok(()),
    }
}

/// The WireGuard module is loaded, or can be loaded on demand.
fn kernel_module_available() -> bool {
    if Path::new("/sys/module/wireguard").exists() {
        return true;
    }
    let Ok(release) = fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let dir = Path::new("/lib/modules")
        .join(release.trim())
        .join("kernel/drivers/net/wireguard");
    fs::read_dir(dir)
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("wireguard.ko"))))
}

/// Create a kernel device (netlink RTM_NEWLINK, then an empty set).
fn create_kernel(name: &InterfaceName) -> std::io::Result<()> {
    DeviceUpdate::new().apply(name, WgBackend::Kernel)
}

fn userspace_binary() -> Result<&'static str, WgError> {
    USERSPACE_BINARIES
        .iter()
        .copied()
        .find(|p| Path::new(p).is_file())
        .ok_or(WgError::UserspaceMissing {
            searched: USERSPACE_BINARIES.join(", "),
        })
}

/// Start `wireguard-go -f IFACE` and wait until its UAPI socket answers.
pub fn spawn(iface: &str) -> Result<Userspace, WgError> {
    let binary = userspace_binary()?;
    // A socket left by a killed wireguard-go makes the new one fail to bind.
    let stale = socket_path(iface);
    if stale.exists() {
        let _ = fs::remove_file(&stale);
    }
    let mut child = Command::new(binary)
        .arg("-f")
        .arg(iface)
        // LOG_LEVEL hangs launchers that wait for pipes; NOTIFY_SOCKET would let it talk to systemd as us;
        // WG_TUN_FD / WG_UAPI_FD would make it use descriptors we never passed.
        .env_remove("LOG_LEVEL")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WG_TUN_FD")
        .env_remove("WG_UAPI_FD")
        .env_remove("WG_PROCESS_FOREGROUND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| WgError::Spawn {
            iface: iface.to_owned(),
            binary,
            source,
        })?;
    let output: Arc<Mutex<VecDeque<String>>> = Arc::default();
    if let Some(out) = child.stdout.take() {
        forward(iface, out, output.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward(iface, err, output.clone());
    }
    let pid = child.id();
    let mut u = Userspace {
        iface: iface.to_owned(),
        pid,
        child: Some(child),
        output,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if !u.alive() {
            return Err(WgError::Userspace {
                iface: iface.to_owned(),
                reason: format!("{binary} exited during start-up: {}", u.recent_output()),
            });
        }
        if let Some(owner) = socket_owner(iface)? {
            if owner == pid {
                break;
            }
        }
        if Instant::now() >= deadline {
            return Err(WgError::Userspace {
                iface: iface.to_owned(),
                reason: format!(
                    "{} did not appear within {START_TIMEOUT:?}: {}",
                    socket_path(iface).display(),
                    u.recent_output()
                ),
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
    log::info!(iface, pid; "started {binary}");
    Ok(u)
}

/// Forward a pipe of wireguard-go into our log, keeping the last lines for errors.
fn forward(iface: &str, pipe: impl Read + Send + 'static, keep: Arc<Mutex<VecDeque<String>>>) {
    let iface = iface.to_owned();
    let spawned = thread::Builder::new().name(format!("wg-go-{iface}")).spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            log::info!(target: "wireguard-go", iface = iface.as_str(); "{line}");
            if let Ok(mut k) = keep.lock() {
                if k.len() == OUTPUT_LINES {
                    k.pop_front();
                }
                k.push_back(line);
            }
        }
    });
    if let Err(e) = spawned {
        log::warn!(error:display = e; "cannot start a thread for wireguard-go output; it is discarded");
    }
}
