//! Watching nf_tables for changes to table inet bulwark, as they happen.
//!
//! A thread of the firewall module's own listens on the nf_tables multicast
//! group (`NFNLGRP_NFTABLES`): every commit by anyone is announced there as
//! the objects it changed followed by `NFT_MSG_NEWGEN` with the commit's
//! generation id. The thread remembers the last generation that touched the
//! table and wakes the engine, which then asks the module for a drift check:
//! `nft flush ruleset` by another process is repaired within moments instead
//! of at the next `drift_interval`.
//!
//! When the socket overflows (`ENOBUFS`: a burst bigger than its buffer),
//! announcements were lost; the next generation seen is then marked
//! uncertain, which counts as a touch. Before the thread started nothing was
//! watched, so the generation current at start is uncertain too. A watcher
//! that dies says so; the module then lists the table whenever the
//! generation moved.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::Socket;

use super::netlink::{
    attribute, gen_id, later, messages, receive, NetlinkError, NfTables, NFNLGRP_NFTABLES, NFNL_SUBSYS_NFTABLES,
    NFPROTO_INET, NFTA_OBJECT_TABLE, NFT_MSG_MAX, NFT_MSG_NEWGEN,
};
use super::ruleset::TABLE;
use crate::module::Waker;

/// Receive buffer asked for: a 200,000-element replace announces 400,000
/// elements (about 40 MB); smaller bursts fit, bigger ones count as uncertain.
const RECEIVE_BUFFER: usize = 32 << 20;

/// What a drift check needs to know about the generations since a known one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// No commit after it touched table inet bulwark.
    Unchanged,
    /// One did, or may have (announcements were lost).
    Touched,
    /// The watcher has not caught up with the kernel yet, or stopped.
    Unknown,
}

#[derive(Debug, Default)]
struct State {
    /// Newest generation announced.
    seen: Option<u32>,
    /// Newest generation that touched the table, or may have.
    touched: Option<u32>,
    alive: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a generation is announced.
    announced: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the three fields inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The module's handle on its watcher thread.
#[derive(Debug, Clone)]
pub struct Watch {
    shared: Arc<Shared>,
    socket: Arc<Socket>,
}

impl Watch {
    /// Subscribe in the calling thread's network namespace and start the
    /// thread; `waker` wakes the engine when the table was touched.
    pub fn start(waker: Waker) -> Result<Watch, NetlinkError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket.add_membership(NFNLGRP_NFTABLES).map_err(NetlinkError::Open)?;
        grow_buffer(&socket);
        // Subscribed first, then read: whatever committed before this
        // generation was not watched and counts as a touch.
        let now = NfTables::open()?.generation()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                seen: Some(now),
                touched: Some(now),
                alive: true,
            }),
            announced: Condvar::new(),
        });
        let socket = Arc::new(socket);
        let (theirs, sock) = (shared.clone(), socket.clone());
        std::thread::Builder::new()
            .name("nft-events".to_owned())
            .spawn(move || run(&sock, &theirs, &waker))
            .map_err(NetlinkError::Open)?;
        Ok(Watch { shared, socket })
    }

    /// Stop listening while this daemon replaces the table whole: with a
    /// listener, the kernel builds an announcement for every one of the
    /// commit's elements, which makes a 50,000-element commit take
    /// markedly longer. The read-back after the apply covers the gap.
    pub fn pause(&self) {
        if let Err(e) = self.socket.drop_membership(NFNLGRP_NFTABLES) {
            log::warn!(error:display = e; "cannot pause the nf_tables event watcher");
        }
    }

    /// Listen again after [`Watch::pause`]; whatever committed in between
    /// counts as a touch, up to generation `now`.
    pub fn resume(&self, now: u32) {
        if let Err(e) = self.socket.add_membership(NFNLGRP_NFTABLES) {
            log::error!(error:display = e; "cannot resume the nf_tables event watcher; drift is found by the periodic check only");
            self.shared.lock().alive = false;
            return;
        }
        let mut s = self.shared.lock();
        advance(&mut s.seen, now);
        advance(&mut s.touched, now);
        drop(s);
        self.shared.announced.notify_all();
    }

    /// Whether table inet bulwark may have changed after generation
    /// `verified`, given that the kernel is at generation `now`. Waits up
    /// to `patience` for the watcher to have read the announcements up to
    /// `now` (they are queued before the commit returns, but the thread may
    /// not have read them yet).
    pub fn since(&self, verified: u32, now: u32, patience: Duration) -> Since {
        let deadline = Instant::now() + patience;
        let mut s = self.shared.lock();
        loop {
            match s.seen {
                _ if !s.alive => return Since::Unknown,
                Some(seen) if !later(now, seen) => {
                    return match s.touched.is_some_and(|t| later(t, verified)) {
                        true => Since::Touched,
                        false => Since::Unchanged,
                    }
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Since::Unknown;
            }
            s = match self.shared.announced.wait_timeout(s, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// A commit after generation `verified` touched the table (as far as
    /// announced so far), or the watcher stopped: a drift check is due.
    pub fn touched_after(&self, verified: u32) -> bool {
        let s = self.shared.lock();
        !s.alive || s.touched.is_some_and(|t| later(t, verified))
    }
}

/// Move `slot` forward to `generation`, never back (announcements queued
/// before a pause arrive after the resume).
fn advance(slot: &mut Option<u32>, generation: u32) {
    if slot.is_none_or(|g| later(generation, g)) {
        *slot = Some(generation);
    }
}

fn grow_buffer(socket: &Socket) {
    use nix::sys::socket::{setsockopt, sockopt};
    // RcvBufForce passes the system limit (bulwarkd runs as root).
    if setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &RECEIVE_BUFFER);
    }
}

fn run(socket: &Socket, shared: &Shared, waker: &Waker) {
    let table = {
        let mut t = TABLE.as_bytes().to_vec();
        t.push(0);
        t
    };
    // The current commit touched the table / announcements were lost.
    let (mut touching, mut lost) = (false, false);
    let mut data = Vec::new();
    loop {
        match receive(socket, &mut data) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                lost = true;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!(error:display = e; "nf_tables event watcher stopped; drift is found by the periodic check only");
                shared.lock().alive = false;
                shared.announced.notify_all();
                waker.wake();
                return;
            }
        };
        let Ok(msgs) = messages(&data) else {
            lost = true;
            continue;
        };
        for msg in msgs {
            if msg.kind >> 8 != NFNL_SUBSYS_NFTABLES {
                continue;
            }
            let kind = msg.kind & 0xff;
            if kind == NFT_MSG_NEWGEN {
                let Ok(generation) = gen_id(&msg.payload) else {
                    lost = true;
                    continue;
                };
                let wake = touching || lost;
                {
                    let mut s = shared.lock();
                    advance(&mut s.seen, generation);
                    if wake {
                        advance(&mut s.touched, generation);
                    }
                }
                shared.announced.notify_all();
                if wake {
                    waker.wake();
                }
                (touching, lost) = (false, false);
            } else if kind < NFT_MSG_MAX
                && msg.family == NFPROTO_INET
                && attribute(&msg.payload, NFTA_OBJECT_TABLE).as_deref() == Some(table.as_slice())
            {
                touching = true;
            }
        }
    }
}
