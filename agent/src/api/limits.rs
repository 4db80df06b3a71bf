//! Who gets served: budgets per caller, so that no local user can crowd out
//! root, the admins or another user.
//!
//! Every accepted connection is charged to a budget: one per uid for callers
//! who are not admins, one shared by root and the admin group. A budget
//! holds up to `held` connections; one beyond that is closed at once. An
//! idle connection costs its budget nothing else (the header timeout ends
//! it). Requests take a turn from their budget while they are handled: up to
//! `active` at once, the rest wait in arrival order, and one that waited
//! [`QUEUE_WAIT`] is answered `503`. All non-admin budgets together hold at
//! most [`READERS_HELD`] connections.
//!
//! So a reader who holds hundreds of idle connections, or reconnects in a
//! loop, or fires hundreds of requests at once, waits behind nobody but
//! itself, and everyone else's budget is untouched. Bursts (500 concurrent
//! `status` calls) queue and are answered instead of reset.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Role;

/// Requests of root and the admin group handled at once, and connections held.
pub const ADMIN_ACTIVE: usize = 128;
pub const ADMIN_HELD: usize = 2048;
/// Requests of one non-admin uid handled at once, and connections held.
pub const READER_ACTIVE: usize = 32;
pub const READER_HELD: usize = 640;
/// Connections of all non-admin uids together.
pub const READERS_HELD: usize = 1536;
/// Longest a request waits for its turn.
pub const QUEUE_WAIT: Duration = Duration::from_secs(30);
/// File descriptors the budgets need, with room for the daemon's own.
pub const FILES_NEEDED: u64 = (ADMIN_HELD + READERS_HELD + 512) as u64;

/// Whose budget a connection is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Admins,
    Uid(u32),
}

#[derive(Debug)]
struct Budget {
    active: Arc<Semaphore>,
    held: usize,
    max_held: usize,
}

impl Budget {
    fn new(active: usize, max_held: usize) -> Budget {
        Budget {
            active: Arc::new(Semaphore::new(active)),
            held: 0,
            max_held,
        }
    }
}

#[derive(Debug)]
struct Books {
    budgets: HashMap<Owner, Budget>,
    readers_held: usize,
    /// Connections closed over budget since the last warning, and when it was.
    closed: u64,
    warned: Option<Instant>,
}

/// The connection budgets of one listener.
#[derive(Debug)]
pub struct Limits {
    books: Mutex<Books>,
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The caller's own budget is full.
    Caller(usize),
    /// All non-admin budgets together are full.
    Readers(usize),
}

/// A connection charged to a budget; the charge ends when this is dropped.
#[derive(Debug)]
pub struct Ticket {
    limits: Arc<Limits>,
    owner: Owner,
    turns: Turns,
}

/// The turns of a connection's budget, for its requests.
#[derive(Debug, Clone)]
pub struct Turns(Arc<Semaphore>);

impl Limits {
    pub fn new() -> Arc<Limits> {
        let mut budgets = HashMap::new();
        budgets.insert(Owner::Admins, Budget::new(ADMIN_ACTIVE, ADMIN_HELD));
        Arc::new(Limits {
            books: Mutex::new(Books {
                budgets,
                readers_held: 0,
                closed: 0,
                warned: None,
            }),
        })
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        // The books stay consistent under every panic point (plain counters).
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Charge a new connection of `uid` (with `role`) to its budget.
    pub fn admit(self: &Arc<Self>, uid: u32, role: Role) -> Result<Ticket, Closed> {
        let owner = if role == Role::Admin {
            Owner::Admins
        } else {
            Owner::Uid(uid)
        };
        let mut books = self.books();
        if owner != Owner::Admins && books.readers_held >= READERS_HELD {
            return Err(Closed::Readers(READERS_HELD));
        }
        let budget = books
            .budgets
            .entry(owner)
            .or_insert_with(|| Budget::new(READER_ACTIVE, READER_HELD));
        if budget.held >= budget.max_held {
            return Err(Closed::Caller(budget.max_held));
        }
        budget.held += 1;
        let turns = Turns(budget.active.clone());
        if owner != Owner::Admins {
            books.readers_held += 1;
        }
        Ok(Ticket {
            limits: self.clone(),
            owner,
            turns,
        })
    }

    /// Count a connection closed over budget; returns how many to report
    /// now (at most one warning every 10 s), or `None` to stay quiet.
    pub fn closed(&self) -> Option<u64> {
        let mut books = self.books();
        books.closed += 1;
        let due = books.warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if !due {
            return None;
        }
        books.warned = Some(Instant::now());
        Some(std::mem::take(&mut books.closed))
    }
}

impl Ticket {
    pub fn turns(&self) -> Turns {
        self.turns.clone()
    }
}

impl Turns {
    /// Wait for a request's turn; `None` when it waited [`QUEUE_WAIT`] in vain.
    pub async fn take(&self) -> Option<OwnedSemaphorePermit> {
        match tokio::time::timeout(QUEUE_WAIT, self.0.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut books = self.limits.books();
        if let Some(b) = books.budgets.get_mut(&self.owner) {
            b.held = b.held.saturating_sub(1);
            if b.held == 0 && self.owner != Owner::Admins {
                books.budgets.remove(&self.owner);
            }
        }
        if self.owner != Owner::Admins {
            books.readers_held = books.readers_held.saturating_sub(1);
        }
    }
}

/// Raise the soft limit on open files to what the budgets need (systemd
/// starts services with 1024), within the hard limit.
pub fn raise_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let want = FILES_NEEDED.min(hard);
    if limit.current.is_some_and(|soft| soft >= want) {
        return;
    }
    limit.current = Some(want);
    if let Err(e) = setrlimit(Resource::Nofile, limit) {
        log::warn!(error:display = e; "cannot raise the open-file limit to {want}");
    }
    if want < FILES_NEEDED {
        log::warn!(hard; "the open-file limit {hard} is below the {FILES_NEEDED} the connection budgets need; connections may fail to be accepted under load");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_full_reader_budget_leaves_admins_and_other_readers_room() {
        let limits = Limits::new();
        let mine: Vec<Ticket> = (0..READER_HELD)
            .map(|_| limits.admit(1000, Role::Read).unwrap())
            .collect();
        assert_eq!(limits.admit(1000, Role::Read).unwrap_err(), Closed::Caller(READER_HELD));
        let other = limits.admit(1001, Role::Read).unwrap();
        let root = limits.admit(0, Role::Admin).unwrap();
        // The reader's first READER_ACTIVE requests are handled, the rest wait.
        let mut permits = Vec::new();
        for t in &mine[..READER_ACTIVE] {
            permits.push(t.turns().take().await.unwrap());
        }
        assert!(root.turns().take().await.is_some());
        assert!(other.turns().take().await.is_some());
        let waiting = mine[READER_ACTIVE].turns();
        assert!(tokio::time::timeout(Duration::from_millis(50), waiting.take())
            .await
            .is_err());
        permits.pop();
        assert!(
            waiting.take().await.is_some(),
            "a waiting request gets its turn when one ends"
        );
        drop(permits);
        drop(mine);
        let again = limits.admit(1000, Role::Read);
        assert!(again.is_ok(), "closing connections frees the budget");
        assert_eq!(limits.books().readers_held, 2);
    }

    #[test]
    fn all_readers_together_are_capped_but_admins_are_not() {
        let limits = Limits::new();
        let held: Vec<Ticket> = (0..READERS_HELD)
            .map(|i| limits.admit(2000 + (i / READER_HELD) as u32, Role::Read).unwrap())
            .collect();
        assert_eq!(
            limits.admit(5000, Role::None).unwrap_err(),
            Closed::Readers(READERS_HELD)
        );
        assert!(limits.admit(0, Role::Admin).is_ok());
        drop(held);
        assert_eq!(limits.books().budgets.len(), 1, "empty reader budgets are removed");
    }
}
