//! What the engine publishes for readers.
//!
//! Status, health, generations and peers are computed on the engine thread
//! after every change and refreshed on a short timer, then handed out
//! through a [`tokio::sync::watch`] channel. Readers never queue behind an
//! apply or a drift repair: however many ask, each gets the latest copy at
//! once, and the engine does the work once per refresh, not once per request.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bulwark_model::api::{GenerationInfo, Health, PeerInfo, Status};
use tokio::sync::watch;

/// How often the engine refreshes what it publishes while nothing changes
/// (handshake times, listeners, drift seen by the last check).
pub const REFRESH: Duration = Duration::from_secs(5);

/// One consistent view of the engine's state.
#[derive(Debug, Clone)]
pub struct Published {
    pub status: Status,
    /// The engine's checks (the host's resource checks are added by readers).
    pub health: Health,
    pub generations: Vec<GenerationInfo>,
    pub peers: Vec<PeerInfo>,
    /// When this view was taken.
    pub at: SystemTime,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            status: Status::default(),
            health: Health::default(),
            generations: Vec::new(),
            peers: Vec::new(),
            at: SystemTime::UNIX_EPOCH,
        }
    }
}

/// The reading end, cheap to clone; `borrow()` never waits for the engine.
pub type Reader = watch::Receiver<Arc<Published>>;
