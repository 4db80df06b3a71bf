//! The one thread that owns the host.
//!
//! HTTP handlers send [`Command`]s over a channel and await the reply, so
//! applies, rollbacks and drift repairs never interleave. Between commands the
//! thread sleeps until the next timer (confirmation deadline, drift check,
//! watchdog ping); pinging the watchdog from here, not from a side task, means
//! a wedged engine gets the daemon restarted.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use bulwark_model::api::{AddPeerRequest, AddPeerResponse, ApplyRequest, ApplyResponse, GenerationInfo, PeerInfo};
use tokio::sync::{oneshot, watch};

use super::published::{Published, Reader, REFRESH};
use super::{Engine, EngineError};
use crate::audit::{EventKind, Outcome};

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// A request for the engine thread.
#[derive(Debug)]
pub enum Command {
    Apply(ApplyRequest, u32, Reply<ApplyResponse>),
    Confirm(u32, Reply<ApplyResponse>),
    Rollback(Option<u64>, u32, Reply<ApplyResponse>),
    AddPeer(AddPeerRequest, u32, Reply<AddPeerResponse>),
    RemovePeer(String, u32, Reply<PeerInfo>),
    /// Readers are served from what the engine publishes; the API also
    /// sends this after a change, as a barrier: its answer means the
    /// change's publication is out.
    Generations(Reply<Vec<GenerationInfo>>),
    /// Record an event that happened outside the engine (a refused request).
    Record(&'static EventKind, u32, Outcome, String),
}

/// Cheap, cloneable access to the engine thread.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
}

#[derive(Debug, thiserror::Error)]
#[error("the converge engine has stopped")]
pub struct EngineGone;

impl EngineHandle {
    /// Send a command built around a reply channel and await the answer.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<Result<T, EngineError>, EngineGone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| EngineGone)?;
        rx.await.map_err(|_| EngineGone)
    }

    /// A handle whose engine is gone: every call answers [`EngineGone`].
    #[cfg(test)]
    pub fn detached() -> EngineHandle {
        EngineHandle { tx: mpsc::channel().0 }
    }

    pub fn record(&self, kind: &'static EventKind, uid: u32, outcome: Outcome, message: String) {
        // A stopped engine is reported by the next call; nothing to add here.
        let _ = self.tx.send(Command::Record(kind, uid, outcome, message));
    }
}

/// Run `engine` on its own thread; `watchdog` is systemd's WatchdogSec/2.
/// Also returns the reader of what the engine publishes.
pub fn spawn(mut engine: Engine, watchdog: Option<Duration>) -> std::io::Result<(EngineHandle, Reader)> {
    let (tx, rx) = mpsc::channel::<Command>();
    let (publish, reader) = watch::channel(Arc::new(engine.published()));
    std::thread::Builder::new().name("converge".to_owned()).spawn(move || {
        let mut next_ping = Instant::now();
        let mut next_publish = Instant::now() + REFRESH;
        let mut timer_fired = false;
        loop {
            let mut wait = engine.tick();
            // A timer may have changed the host (a revert, a drift repair,
            // an expired peer): readers see it now, not at the next refresh.
            if timer_fired || Instant::now() >= next_publish {
                publish.send_replace(Arc::new(engine.published()));
                next_publish = Instant::now() + REFRESH;
            }
            wait = wait.min(next_publish.saturating_duration_since(Instant::now()));
            if let Some(interval) = watchdog {
                if Instant::now() >= next_ping {
                    crate::notify::watchdog();
                    next_ping = Instant::now() + interval;
                }
                wait = wait.min(next_ping.saturating_duration_since(Instant::now()));
            }
            match rx.recv_timeout(wait) {
                Ok(cmd) => {
                    handle(&mut engine, cmd);
                    // Whatever the command changed is visible to readers at once.
                    publish.send_replace(Arc::new(engine.published()));
                    next_publish = Instant::now() + REFRESH;
                    timer_fired = false;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => timer_fired = true,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    })?;
    Ok((EngineHandle { tx }, reader))
}

impl Engine {
    /// The view readers get until the next change or refresh.
    pub fn published(&self) -> Published {
        Published {
            status: self.status(),
            health: self.health(),
            generations: self.generations().unwrap_or_else(|e| {
                log::error!(error:display = e; "cannot list generations");
                Vec::new()
            }),
            peers: self.peers().unwrap_or_default(),
            at: SystemTime::now(),
        }
    }
}

fn handle(engine: &mut Engine, cmd: Command) {
    // A caller that went away does not care about its reply.
    match cmd {
        Command::Apply(req, uid, reply) => drop(reply.send(engine.apply(req, uid))),
        Command::Confirm(uid, reply) => drop(reply.send(engine.confirm(uid))),
        Command::Rollback(target, uid, reply) => drop(reply.send(engine.rollback(target, uid))),
        Command::AddPeer(req, uid, reply) => drop(reply.send(engine.add_peer(req, uid))),
        Command::RemovePeer(name, uid, reply) => drop(reply.send(engine.remove_peer(&name, uid))),
        Command::Generations(reply) => drop(reply.send(engine.generations())),
        Command::Record(kind, uid, outcome, message) => {
            if let Err(e) = engine.audit_mut().record(kind, uid, outcome, &message) {
                log::error!(error:display = e; "could not write audit event {}", kind.id);
            }
        }
    }
}
