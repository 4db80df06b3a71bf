//! What the engine publishes for readers.
//!
//! Status, health, generations and peers are computed on the engine thread
//! after every change and refreshed on a short timer, then handed out
//! through a [`tokio::sync::watch`] channel. Readers never queue behind an
//! apply or a drift repair: however many ask, each gets the latest copy at
//! once, and the engine does the work once per refresh, not once per request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bulwark_model::api::{GenerationInfo, Health, PeerInfo, Status};
use tokio::sync::watch;

use crate::module::ActionRole;

/// How often the engine refreshes what it publishes while nothing changes
/// and nobody asks (readers that need it fresher ask, see
/// [`super::task::EngineHandle::fresh`]).
pub const REFRESH: Duration = Duration::from_secs(10);
/// How old a view may be for status, health, metrics, peers and
/// generations: a steady stream of reads costs the engine at most one
/// refresh per this, however many peers it reports on.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// How long a reader waits for a fresh view before answering with the one it has.
pub const PATIENCE: Duration = Duration::from_secs(2);

/// One consistent view of the engine's state.
#[derive(Debug, Clone)]
pub struct Published {
    pub status: Status,
    /// The engine's checks (the host's resource checks are added by readers).
    pub health: Health,
    pub generations: Vec<GenerationInfo>,
    /// Shared with the WireGuard module, which built it for its status.
    pub peers: Arc<Vec<PeerInfo>>,
    /// (module, action) → who may call it: the API authorises from this.
    pub actions: Arc<BTreeMap<(String, String), ActionRole>>,
    /// When this view was taken.
    pub at: SystemTime,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            status: Status::default(),
            health: Health::default(),
            generations: Vec::new(),
            peers: Arc::default(),
            actions: Arc::default(),
            at: SystemTime::UNIX_EPOCH,
        }
    }
}

/// The reading end, cheap to clone; `borrow()` never waits for the engine.
pub type Reader = watch::Receiver<Arc<Published>>;
