//! The one thread that owns the host.
//!
//! HTTP handlers send [`Command`]s over a channel and await the reply, so
//! applies, rollbacks, module actions and drift repairs never interleave.
//! Reads do not queue here at all: after every command, and every
//! [`REFRESH`], the thread publishes status, health, generations and peers
//! ([`super::published`]). Between commands the thread sleeps until the next
//! timer (confirmation deadline, drift check, module ticks, watchdog ping);
//! pinging the watchdog from here, not from a side task, means a wedged
//! engine gets the daemon restarted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use bulwark_model::api::{ApplyRequest, ApplyResponse};
use tokio::sync::{oneshot, watch};

use super::published::{Published, Reader, REFRESH};
use super::{Engine, EngineError};
use crate::audit::{EventKind, Outcome};
use crate::wireguard::WireGuardModule;

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// A request for the engine thread.
#[derive(Debug)]
pub enum Command {
    Apply(ApplyRequest, u32, Reply<ApplyResponse>),
    /// The caller's uid and the generation they expect to be pending.
    Confirm(u32, Option<u64>, Reply<ApplyResponse>),
    Rollback(Option<u64>, u32, Reply<ApplyResponse>),
    /// `module`, `action`, its JSON body, the caller's uid.
    Action(String, String, serde_json::Value, u32, Reply<serde_json::Value>),
    /// Publish a fresh view now (a reader found the last one too old).
    Refresh,
    /// Record an event that happened outside the engine (a refused request).
    Record(&'static EventKind, u32, Outcome, String),
    /// Run the timers and the modules' ticks now (see [`Waker`]).
    Wake,
    /// Stop what the modules supervise and end the thread (the daemon is
    /// exiting); commands queued before it run first.
    Stop,
}

/// Wakes the engine thread from another thread, typically a module's own
/// watcher: the engine then runs its timers and every module's tick at
/// once. Wake-ups that arrive while one is pending are merged.
#[derive(Debug, Clone)]
pub struct Waker {
    tx: mpsc::Sender<Command>,
    pending: Arc<AtomicBool>,
}

impl Waker {
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // An engine that stopped has nothing left to wake.
            let _ = self.tx.send(Command::Wake);
        }
    }

    /// A waker and the channel it sends to (tests of a module on its own).
    #[cfg(test)]
    pub fn for_test() -> (Waker, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        (
            Waker {
                tx,
                pending: Arc::default(),
            },
            rx,
        )
    }

    /// A waker whose engine is gone (tests of a module on its own).
    pub fn detached() -> Waker {
        Waker {
            tx: mpsc::channel().0,
            pending: Arc::default(),
        }
    }
}

/// Cheap, cloneable access to the engine thread.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    /// A refresh is on its way: readers that find the view stale wait for
    /// it instead of asking again, so a crowd costs one refresh.
    refreshing: Arc<AtomicBool>,
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
        EngineHandle {
            tx: mpsc::channel().0,
            refreshing: Arc::default(),
        }
    }

    /// A published view taken at most `max_age` before this call began
    /// (every command publishes before its caller hears back, so a reader
    /// always sees its own changes). An older one is refreshed: readers that
    /// ask together share one refresh. Waits at most `patience` (the engine
    /// may be busy with an apply); then answers with the newest view it has.
    pub async fn fresh(&self, reader: &Reader, max_age: Duration, patience: Duration) -> Arc<Published> {
        let asked = SystemTime::now();
        let oldest = asked.checked_sub(max_age).unwrap_or(asked);
        let mut reader = reader.clone();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let view = reader.borrow_and_update().clone();
            if view.at >= oldest {
                return view;
            }
            if !self.refreshing.swap(true, Ordering::AcqRel) && self.tx.send(Command::Refresh).is_err() {
                return view;
            }
            match tokio::time::timeout_at(deadline, reader.changed()).await {
                Ok(Ok(())) => {}
                _ => return reader.borrow().clone(),
            }
        }
    }

    pub fn record(&self, kind: &'static EventKind, uid: u32, outcome: Outcome, message: String) {
        // A stopped engine is reported by the next call; nothing to add here.
        let _ = self.tx.send(Command::Record(kind, uid, outcome, message));
    }
}

/// The engine thread, to stop and wait for when the daemon exits.
#[derive(Debug)]
pub struct Running {
    tx: mpsc::Sender<Command>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Finish the queued commands, stop what the modules supervise
    /// (wireguard-go, bao), and wait for the thread to end. Modules' wakers
    /// keep the channel open, so the thread never sees it close by itself.
    pub fn stop(self) {
        let _ = self.tx.send(Command::Stop);
        if self.thread.join().is_err() {
            log::error!("the converge thread panicked while stopping");
        }
    }
}

/// Run `engine` on its own thread; `watchdog` is systemd's WatchdogSec/2.
/// Also returns the reader of what the engine publishes, and the thread to
/// stop on exit.
pub fn spawn(mut engine: Engine, watchdog: Option<Duration>) -> std::io::Result<(EngineHandle, Reader, Running)> {
    let (tx, rx) = mpsc::channel::<Command>();
    let (publish, reader) = watch::channel(Arc::new(engine.published()));
    let refreshing = Arc::new(AtomicBool::new(false));
    let flag = refreshing.clone();
    let waker = Waker {
        tx: tx.clone(),
        pending: Arc::default(),
    };
    let woken = waker.pending.clone();
    let thread = std::thread::Builder::new().name("converge".to_owned()).spawn(move || {
        engine.hand_waker(&waker);
        drop(waker);
        let mut next_ping = Instant::now();
        let mut next_publish = Instant::now() + REFRESH;
        let publish_now = |engine: &mut Engine| {
            flag.store(false, Ordering::Release);
            publish.send_replace(Arc::new(engine.published()));
            Instant::now() + REFRESH
        };
        loop {
            let events = engine.audit().seq();
            let mut wait = engine.tick();
            // A timer that changed something (a revert, a repair) is
            // visible at once, like a command.
            if Instant::now() >= next_publish || engine.audit().seq() != events {
                next_publish = publish_now(&mut engine);
            }
            wait = wait.min(next_publish.saturating_duration_since(Instant::now()));
            if let Some(interval) = watchdog {
                if Instant::now() >= next_ping {
                    crate::notify::watchdog();
                    next_ping = Instant::now() + interval;
                }
                wait = wait.min(next_ping.saturating_duration_since(Instant::now()));
            }
            // A timer's events reach audit.head before the loop waits; a
            // command's right after its caller has the answer (below).
            engine.audit_mut().catch_up_head();
            match rx.recv_timeout(wait) {
                // The loop's next turn runs the timers and ticks.
                Ok(Command::Wake) => woken.store(false, Ordering::Release),
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    engine.shutdown();
                    return;
                }
                Ok(cmd) => {
                    // Whatever a command changed is published before its caller
                    // hears back, so its next read already sees it.
                    let big = matches!(cmd, Command::Apply(..) | Command::Rollback(..));
                    if let Some(reply) = handle(&mut engine, cmd) {
                        next_publish = publish_now(&mut engine);
                        reply();
                        engine.audit_mut().catch_up_head();
                    }
                    if big {
                        // A profile of 200,000 networks is tens of megabytes
                        // while it is parsed, planned and rendered; give
                        // them back once the request is done.
                        crate::memory::trim();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    })?;
    let running = Running { tx: tx.clone(), thread };
    Ok((EngineHandle { tx, refreshing }, reader, running))
}

impl Engine {
    /// Give every module the engine thread's waker.
    fn hand_waker(&mut self, waker: &Waker) {
        for slot in &mut self.slots {
            slot.module.watch(waker.clone());
        }
    }

    /// The view readers get until the next change or refresh.
    pub fn published(&mut self) -> Published {
        let (status, health) = self.report();
        let peers = self
            .module_mut::<WireGuardModule>()
            .map(|m| m.peer_list())
            .unwrap_or_default();
        Published {
            status,
            health,
            generations: self.generations().unwrap_or_else(|e| {
                log::error!(error:display = e; "cannot list generations");
                Vec::new()
            }),
            peers,
            actions: Arc::new(self.actions()),
            at: SystemTime::now(),
        }
    }
}

/// A reply to send once the view is published.
type Deliver = Box<dyn FnOnce() + Send>;

fn deliver<T: Send + 'static>(reply: Reply<T>, result: Result<T, EngineError>) -> Option<Deliver> {
    // A caller that went away does not care about its reply.
    Some(Box::new(move || drop(reply.send(result))))
}

/// Run one command. What changes nothing readers see (a recorded
/// refusal) is answered at once and returns `None`; everything else
/// returns its reply, sent after publishing.
fn handle(engine: &mut Engine, cmd: Command) -> Option<Deliver> {
    match cmd {
        Command::Apply(req, uid, reply) => deliver(reply, engine.apply(req, uid)),
        Command::Confirm(uid, expected, reply) => deliver(reply, engine.confirm(uid, expected)),
        Command::Rollback(target, uid, reply) => deliver(reply, engine.rollback(target, uid)),
        Command::Action(module, action, body, uid, reply) => deliver(reply, engine.action(&module, &action, body, uid)),
        Command::Refresh => Some(Box::new(|| {})),
        Command::Wake | Command::Stop => None,
        Command::Record(kind, uid, outcome, message) => {
            if let Err(e) = engine.audit_mut().record(kind, uid, outcome, &message) {
                log::error!(error:display = e; "could not write audit event {}", kind.id);
            }
            None
        }
    }
}
