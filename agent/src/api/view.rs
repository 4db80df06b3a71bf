//! What readers see: the state the engine publishes, plus the host's
//! resource checks, refreshed on timers and never computed per request.
//!
//! The engine publishes after every command and every few seconds
//! ([`crate::converge::published`]); the resource checks (disk, memory,
//! load: sysinfo) run here every [`RESOURCES_REFRESH`] on a blocking thread.
//! A read request only copies the latest of both, so any number of readers
//! costs the engine nothing and never waits behind an apply.

use std::sync::Arc;
use std::time::Duration;

use bulwark_model::api::{Check, GenerationInfo, Health, PeerInfo, Status};
use tokio::sync::watch;

use crate::converge::published::{Published, Reader};
use crate::health::Metrics;
use crate::host::Host;

/// How often the host's resource checks are taken.
pub const RESOURCES_REFRESH: Duration = Duration::from_secs(10);

/// The latest published state and resource checks; cheap to clone.
#[derive(Debug, Clone)]
pub struct View {
    published: Reader,
    resources: watch::Receiver<Arc<Vec<Check>>>,
}

impl View {
    /// Take the first resource checks, then keep both halves fresh (and the
    /// metrics' check gauges with them) on a task of the current runtime.
    pub async fn start(host: Host, published: Reader, metrics: Arc<Metrics>) -> View {
        // Cloned out first: the guard must not be held across the await.
        let latest = published.borrow().clone();
        let first = resource_checks(&host, &latest).await;
        let (tx, resources) = watch::channel(Arc::new(first));
        let view = View { published, resources };
        metrics.set_checks(&view.health().checks);
        tokio::spawn(view.clone().refresh(host, tx, metrics));
        view
    }

    async fn refresh(mut self, host: Host, tx: watch::Sender<Arc<Vec<Check>>>, metrics: Arc<Metrics>) {
        let mut timer = tokio::time::interval(RESOURCES_REFRESH);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.tick().await;
        let mut engine_running = true;
        loop {
            tokio::select! {
                _ = timer.tick() => {
                    let checks = resource_checks(&host, &self.published()).await;
                    tx.send_replace(Arc::new(checks));
                }
                changed = self.published.changed(), if engine_running => {
                    // A stopped engine leaves its last view; resources go on.
                    engine_running = changed.is_ok();
                }
            }
            metrics.set_checks(&self.health().checks);
        }
    }

    fn published(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// Status, its health level from the full report.
    pub fn status(&self) -> Status {
        Status {
            health: self.health().level,
            ..self.published().status.clone()
        }
    }

    /// The engine's checks and the host's resource checks.
    pub fn health(&self) -> Health {
        let mut checks = self.published().health.checks.clone();
        checks.extend(self.resources.borrow().iter().cloned());
        Health::from_checks(checks)
    }

    pub fn generations(&self) -> Vec<GenerationInfo> {
        self.published().generations.clone()
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        self.published().peers.clone()
    }
}

/// The resource checks, on a blocking thread (sysinfo reads /proc and
/// statfs); the K3s ones only when the engine checks K3s.
async fn resource_checks(host: &Host, published: &Published) -> Vec<Check> {
    let k3s = published.health.checks.iter().any(|c| c.name.starts_with("k3s"));
    let host = host.clone();
    match tokio::task::spawn_blocking(move || crate::health::resource_checks(&host, k3s)).await {
        Ok(checks) => checks,
        Err(e) => {
            log::error!(error:display = e; "resource checks failed");
            Vec::new()
        }
    }
}
