//! What readers see: the state the engine publishes, plus the host's
//! resource checks, which run on a timer and never per request.
//!
//! The engine publishes after every command, every timer that changed
//! something and every [`REFRESH`](crate::converge::published::REFRESH)
//! ([`crate::converge::published`]). A read gets a view at most
//! [`MAX_AGE`] old, and the evidence report one taken after it arrived:
//! readers that need a newer view than there is share one refresh, so a
//! burst of any size costs the engine one, and a reader waits at most
//! [`PATIENCE`] while the engine is busy (a long apply), then gets the
//! newest view there is. A command publishes before its caller hears back,
//! so a reader always sees its own changes.
//! The resource checks (disk, memory: sysinfo) run here every
//! [`RESOURCES_REFRESH`] on a blocking thread. Metrics scrapes set the check
//! gauges from the same view, so a scrape never reports a check older than
//! the view (resource checks aside).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;

use bulwark_model::api::{Check, Health, Status};
use tokio::sync::watch;

use crate::converge::published::{Published, Reader, MAX_AGE, PATIENCE};
use crate::converge::task::EngineHandle;
use crate::health::Metrics;
use crate::host::Host;
use crate::module::ActionRole;

/// How often the host's resource checks are taken.
pub const RESOURCES_REFRESH: Duration = Duration::from_secs(10);

/// The latest published state and resource checks; cheap to clone.
#[derive(Debug, Clone)]
pub struct View {
    engine: EngineHandle,
    published: Reader,
    resources: watch::Receiver<Arc<Vec<Check>>>,
    metrics: Arc<Metrics>,
    status_json: Arc<Mutex<Option<StatusJson>>>,
}

/// `GET /v1/status`'s body as sent, with the view and resource checks it
/// was made from: with 1,000 peers the status is hundreds of kilobytes of
/// JSON, which each of a stream of reads would otherwise serialise again.
#[derive(Debug)]
struct StatusJson {
    view: Arc<Published>,
    resources: Arc<Vec<Check>>,
    body: Bytes,
}

impl View {
    /// Take the first resource checks, then keep them fresh (and the
    /// metrics' check gauges with every published view) on a task of the
    /// current runtime.
    pub async fn start(host: Host, engine: EngineHandle, published: Reader, metrics: Arc<Metrics>) -> View {
        // Cloned out first: the guard must not be held across the await.
        let latest = published.borrow().clone();
        let first = resource_checks(&host, &latest).await;
        let (tx, resources) = watch::channel(Arc::new(first));
        let view = View {
            engine,
            published,
            resources,
            metrics,
            status_json: Arc::default(),
        };
        view.metrics.set_checks(&view.health_of(&latest).checks);
        tokio::spawn(view.clone().refresh(host, tx));
        view
    }

    async fn refresh(mut self, host: Host, tx: watch::Sender<Arc<Vec<Check>>>) {
        let mut timer = tokio::time::interval(RESOURCES_REFRESH);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.tick().await;
        let mut engine_running = true;
        loop {
            tokio::select! {
                _ = timer.tick() => {
                    let latest = self.latest();
                    tx.send_replace(Arc::new(resource_checks(&host, &latest).await));
                }
                changed = self.published.changed(), if engine_running => {
                    // A stopped engine leaves its last view; resources go on.
                    engine_running = changed.is_ok();
                }
            }
            self.metrics.set_checks(&self.health_of(&self.latest()).checks);
        }
    }

    fn latest(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// A published view at most [`MAX_AGE`] old (see the module docs).
    pub async fn current(&self) -> Arc<Published> {
        self.engine.fresh(&self.published, MAX_AGE, PATIENCE).await
    }

    /// A published view taken after this call began: for the evidence
    /// report, which states the host as it was when asked.
    pub async fn newest(&self) -> Arc<Published> {
        self.engine.fresh(&self.published, Duration::ZERO, PATIENCE).await
    }

    /// The metrics, their check gauges set from a view taken for this scrape.
    pub async fn scrape(&self) -> &Metrics {
        let view = self.current().await;
        self.metrics.set_checks(&self.health_of(&view).checks);
        self.metrics.set_up(up(&view));
        &self.metrics
    }

    /// Status, its health level from the full report, as JSON.
    pub async fn status_json(&self) -> Bytes {
        let view = self.current().await;
        let resources = self.resources.borrow().clone();
        let mut cached = self.status_json.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached.as_ref() {
            if Arc::ptr_eq(&c.view, &view) && Arc::ptr_eq(&c.resources, &resources) {
                return c.body.clone();
            }
        }
        let status = Status {
            health: self.health_of(&view).level,
            ..view.status.clone()
        };
        let body = Bytes::from(serde_json::to_vec(&status).unwrap_or_default());
        *cached = Some(StatusJson {
            view,
            resources,
            body: body.clone(),
        });
        body
    }

    /// The engine's checks and the host's resource checks.
    pub async fn health(&self) -> Health {
        let view = self.current().await;
        self.health_of(&view)
    }

    /// The health of `view`: its engine checks and the latest resource checks.
    pub fn health_of(&self, view: &Published) -> Health {
        let mut checks = view.health.checks.clone();
        checks.extend(self.resources.borrow().iter().cloned());
        Health::from_checks(checks)
    }

    /// Who may call `action` of `module`; `None` when there is no such action.
    pub fn action_role(&self, module: &str, action: &str) -> Option<ActionRole> {
        self.published
            .borrow()
            .actions
            .get(&(module.to_owned(), action.to_owned()))
            .copied()
    }
}

/// `bulwark_up`: the engine published within [`ENGINE_SILENT`] (it runs and
/// is not stuck) and a generation is in force (not the failsafe).
fn up(view: &Published) -> bool {
    let fresh = view.at.elapsed().is_ok_and(|age| age <= ENGINE_SILENT);
    fresh && view.status.generation.is_some()
}

/// An engine that has published nothing for this long (it refreshes every
/// 10 s, and applies of 50,000 CIDRs take about a second) is stuck or gone.
const ENGINE_SILENT: Duration = Duration::from_secs(60);

/// The resource checks, on a blocking thread (sysinfo reads /proc and
/// statfs); the K3s ones only when the profile manages K3s.
async fn resource_checks(host: &Host, published: &Published) -> Vec<Check> {
    let k3s = published.status.modules.iter().any(|m| m.module == "k3s" && m.managed);
    let host = host.clone();
    match tokio::task::spawn_blocking(move || crate::health::resource_checks(&host, k3s)).await {
        Ok(checks) => checks,
        Err(e) => {
            log::error!(error:display = e; "resource checks failed");
            Vec::new()
        }
    }
}
