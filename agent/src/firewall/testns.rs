//! A private network namespace for tests that load nftables rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::thread;

/// A network namespace that exists for as long as the guard does, so a
/// failing test never leaves it behind.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create() -> Netns {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("bwk-fwtest-{}-{n}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(status.success(), "ip netns add {name} failed: {status}");
        Netns { name }
    }

    /// Run `f` on a thread that has entered the namespace; the nft processes
    /// it starts inherit the thread's namespace, the rest of the test process
    /// (and the host's ruleset) is untouched.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::scope(|s| {
            let handle = s.spawn(|| {
                let ns = File::open(&path).expect("open namespace");
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                let own = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
                let process = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
                assert_ne!(own, process, "thread is still in the host's network namespace");
                f()
            });
            match handle.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
