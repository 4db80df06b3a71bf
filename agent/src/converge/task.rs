//! The one thread that owns the host.
//!
//! HTTP handlers send [`Command`]s over a channel and await the reply, so
//! applies, rollbacks and drift repairs never interleave. Between commands the
//! thread sleeps until the next timer (confirmation deadline, drift check,
//! watchdog ping); pinging the watchdog from here, not from a side task, means
//! a wedged engine gets the daemon restarted.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bulwark_model::api::{
    AddPeerRequest, AddPeerResponse, ApplyRequest, ApplyResponse, AuditEvent, AuditVerify, GenerationInfo, Health,
    PeerInfo, Status,
};
use tokio::sync::oneshot;

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
    Peers(Reply<Vec<PeerInfo>>),
    Status(Reply<Status>),
    Health(Reply<Health>),
    Generations(Reply<Vec<GenerationInfo>>),
    AuditTail(usize, Reply<Vec<AuditEvent>>),
    AuditVerify(Reply<AuditVerify>),
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
pub fn spawn(mut engine: Engine, watchdog: Option<Duration>) -> std::io::Result<EngineHandle> {
    let (tx, rx) = mpsc::channel::<Command>();
    std::thread::Builder::new().name("converge".to_owned()).spawn(move || {
        let mut next_ping = Instant::now();
        loop {
            let mut wait = engine.tick();
            if let Some(interval) = watchdog {
                if Instant::now() >= next_ping {
                    crate::notify::watchdog();
                    next_ping = Instant::now() + interval;
                }
                wait = wait.min(next_ping.saturating_duration_since(Instant::now()));
            }
            match rx.recv_timeout(wait) {
                Ok(cmd) => handle(&mut engine, cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    })?;
    Ok(EngineHandle { tx })
}

fn handle(engine: &mut Engine, cmd: Command) {
    // A caller that went away does not care about its reply.
    match cmd {
        Command::Apply(req, uid, reply) => drop(reply.send(engine.apply(req, uid))),
        Command::Confirm(uid, reply) => drop(reply.send(engine.confirm(uid))),
        Command::Rollback(target, uid, reply) => drop(reply.send(engine.rollback(target, uid))),
        Command::AddPeer(req, uid, reply) => drop(reply.send(engine.add_peer(req, uid))),
        Command::RemovePeer(name, uid, reply) => drop(reply.send(engine.remove_peer(&name, uid))),
        Command::Peers(reply) => drop(reply.send(engine.peers())),
        Command::Status(reply) => drop(reply.send(Ok(engine.status()))),
        Command::Health(reply) => drop(reply.send(Ok(engine.health()))),
        Command::Generations(reply) => drop(reply.send(engine.generations())),
        Command::AuditTail(n, reply) => drop(reply.send(engine.audit().tail(n).map_err(EngineError::from))),
        Command::AuditVerify(reply) => drop(reply.send(Ok(engine.audit().verify()))),
        Command::Record(kind, uid, outcome, message) => {
            if let Err(e) = engine.audit_mut().record(kind, uid, outcome, &message) {
                log::error!(error:display = e; "could not write audit event {}", kind.id);
            }
        }
    }
}
