//! Start-up: flags, the boot converge, the socket, READY, serving.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use tokio::sync::watch;

use clap::Parser;

use crate::api::{self, Ctx, Policy};
use crate::converge::registry::{self, Tools};
use crate::converge::{failsafe_first, task, Engine, EngineError, Parts, DEFAULT_PROFILE};
use crate::health::Metrics;
use crate::host::Host;

/// bulwarkd: converge this host to its Bulwark profile and keep it there.
///
/// On start it restores the current generation (or, on a host without one,
/// applies the boot profile), then serves the API on a Unix socket for
/// bulwarkctl. Normally started by systemd (bulwarkd.service).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Args {
    /// Resolve every host path under DIR (tests and demos use a temporary root).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// API socket [default: <root>/run/bulwark/bulwarkd.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Boot profile, used only while the host has no generation
    /// [default: <root>/etc/bulwark/profile.toml, else the built-in default].
    #[arg(long, value_name = "PATH")]
    pub profile: Option<PathBuf>,
    /// The nft binary.
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/nft")]
    pub nft: PathBuf,
    /// Group (name or gid) whose members may read status, health and audit.
    #[arg(long, value_name = "GROUP", default_value = "bulwark")]
    pub read_group: String,
    /// Group (name or gid) whose members may change the host, like root.
    #[arg(long, value_name = "GROUP", default_value = "bulwark-admin")]
    pub admin_group: String,
    /// The systemctl binary, used to reload systemd and restart K3s.
    #[arg(long, value_name = "PATH", default_value = crate::k3s::DEFAULT_SYSTEMCTL)]
    pub systemctl: PathBuf,
    /// Log debug detail.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "another bulwarkd (PID {pid}) runs on root {root}; it keeps the host protected, so this one changed \
         nothing: stop that one first"
    )]
    Running { root: PathBuf, pid: String },
    #[error("start-up converge failed: {0}")]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Socket(#[from] api::SocketError),
    #[error("cannot start {what}: {source}")]
    Runtime {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Held from start to exit. In the state directory, which outlives the
/// daemon: systemd removes `/run/bulwark` whenever the unit stops, lock and
/// all, even when it stops because this lock refused it.
const LOCK: &str = "/var/lib/bulwark/bulwarkd.lock";

/// The exit status of a daemon that found another on its root
/// (`RestartPreventExitStatus=` in bulwarkd.service).
pub const EXIT_RUNNING: u8 = 3;

/// One bulwarkd per root: a second one would fight the first over the
/// table, the generations and the audit chain. So before anything else, a
/// daemon takes an exclusive lock, and refuses to start while another holds
/// it. The kernel drops the lock when the process ends, however it ends, and
/// no child inherits it (the file is opened close-on-exec). A lock that
/// cannot be taken for another reason is logged, and start-up goes on: the
/// failsafe must not wait for it.
fn hold_root(host: &Host) -> Result<Option<Flock<File>>, StartError> {
    let path = host.path(LOCK);
    let opened = crate::state::private_dir(&host.state_dir(), 0o700)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false).mode(0o600);
            options.open(&path).map_err(|e| e.to_string())
        });
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            log::error!(path:display = path.display(), error = e; "cannot open the lock file; a second bulwarkd on this root would go unnoticed");
            return Ok(None);
        }
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            let pid = format!("{}\n", std::process::id());
            if let Err(e) = lock.set_len(0).and_then(|()| (&*lock).write_all(pid.as_bytes())) {
                log::warn!(path:display = path.display(), error:display = e; "cannot write this daemon's PID into the lock file");
            }
            Ok(Some(lock))
        }
        Err((_, Errno::EWOULDBLOCK)) => Err(StartError::Running {
            root: host.root().to_owned(),
            // Empty while the holder is still writing it.
            pid: std::fs::read_to_string(&path)
                .ok()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "unknown".to_owned()),
        }),
        Err((_, e)) => {
            log::error!(path:display = path.display(), error:display = e; "cannot lock the lock file; a second bulwarkd on this root would go unnoticed");
            Ok(None)
        }
    }
}

/// A group given by name or number; `None` when no such group exists.
fn resolve_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Some(g.gid.as_raw()),
        _ => {
            log::warn!(group; "group {group} does not exist; its members' access is disabled");
            None
        }
    }
}

/// The boot profile's (source name, text). One that cannot be read is
/// given to the engine as text that says so: validation refuses it, and the
/// engine applies the built-in default instead and records why.
fn boot_profile(args: &Args, host: &Host) -> (String, String) {
    let explicit = args.profile.is_some();
    let path = args.profile.clone().unwrap_or_else(|| host.default_profile());
    match std::fs::read(&path) {
        Ok(bytes) => (path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            ("built-in default profile".to_owned(), DEFAULT_PROFILE.to_owned())
        }
        Err(e) => {
            log::error!(path:display = path.display(), error:display = e; "cannot read the boot profile");
            (path.display().to_string(), format!("cannot read this file: {e}"))
        }
    }
}

/// Run the daemon. Returns on a start-up failure, or on SIGTERM or SIGINT
/// once the engine has stopped what the modules supervise.
pub fn run(args: Args) -> Result<(), StartError> {
    let host = Host::new(&args.root);
    let _one = hold_root(&host)?;
    let tools = Tools {
        nft: args.nft.clone(),
        systemctl: args.systemctl.clone(),
    };
    let mut modules = registry::modules(&host, &tools);
    // Before anything that can fail: a host whose table is gone (a reboot)
    // gets the failsafe ruleset at once.
    let failsafe = failsafe_first(&host, &mut modules);
    let policy = Policy {
        read_gid: resolve_group(&args.read_group),
        admin_gid: resolve_group(&args.admin_group),
    };
    let (source, text) = boot_profile(&args, &host);

    // Everything up to spawning the engine thread runs single-threaded, so the
    // umask juggling in `api::listen` affects nothing else.
    let mut metrics = Metrics::new();
    for m in &mut modules {
        m.register_metrics(metrics.module_registry(m.name()));
    }
    let metrics = Arc::new(metrics);
    let (monitor, monitor_rx) = watch::channel(None);
    let parts = Parts {
        modules,
        failsafe,
        metrics: metrics.clone(),
        monitor,
    };
    let mut engine = Engine::new(host.clone(), parts)?;
    engine.start((&source, &text))?;
    let socket = args.socket.clone().unwrap_or_else(|| host.default_socket());
    let listener = api::listen(&socket, policy)?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Runtime { what: "socket", source })?;
    let status = engine.status();
    let status_line = format!(
        "generation {} ({}) in force",
        status.generation.unwrap_or(0),
        status.profile.as_deref().unwrap_or("failsafe")
    );
    let (handle, published, engine_thread) =
        task::spawn(engine, crate::notify::watchdog_interval()).map_err(|source| StartError::Runtime {
            what: "engine thread",
            source,
        })?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| StartError::Runtime {
            what: "async runtime",
            source,
        })?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|source| StartError::Runtime {
            what: "listener",
            source,
        })?;
        log::info!(socket:display = socket.display(); "ready: {status_line}");
        crate::notify::ready(&status_line);
        let view = api::view::View::start(host.clone(), handle.clone(), published, metrics.clone()).await;
        tokio::spawn(serve_monitoring(monitor_rx, view.clone()));
        let app = api::router(Ctx::new(handle, policy, host, view));
        tokio::select! {
            () = api::serve(listener, app, policy) => {}
            () = shutdown() => log::info!("stopping"),
        }
        Ok(())
    });
    engine_thread.stop();
    log::info!("stopped");
    served
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Serve Prometheus metrics on the profile's `[monitoring] listen` address,
/// moving the listener whenever an apply changes it. A bind that fails (the
/// VPN address not there yet) is retried every few seconds; only the first
/// failure of a streak is logged as an error.
async fn serve_monitoring(mut listen: watch::Receiver<Option<SocketAddr>>, view: api::view::View) {
    const RETRY: std::time::Duration = std::time::Duration::from_secs(5);
    let mut failures = 0u32;
    loop {
        let addr = *listen.borrow_and_update();
        if let Some(addr) = addr {
            let mut changed = listen.clone();
            let stop = async move {
                let _ = changed.changed().await;
            };
            match api::metrics::serve_tcp(addr, view.clone(), stop).await {
                // Stopped because the address changed: serve the new one.
                Ok(()) => {
                    failures = 0;
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        log::error!(listen:display = addr, error:display = e; "metrics listener failed; retrying every {}s", RETRY.as_secs());
                    } else {
                        log::debug!(listen:display = addr, error:display = e; "metrics listener retry failed");
                    }
                    tokio::select! {
                        r = listen.changed() => if r.is_err() { return },
                        () = tokio::time::sleep(RETRY) => {}
                    }
                    continue;
                }
            }
        }
        if listen.changed().await.is_err() {
            return;
        }
    }
}
