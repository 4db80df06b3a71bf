//! The daemon's scan: on a thread of its own, so a large tree never holds
//! up the engine; results are picked up from [`Scanner::poll`].

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use bulwark_imalabel::{scan, Verifier};
use bulwark_model::ima::api::ScanReport;
use bulwark_model::ima::grammar::Policy;

/// What a scan needs, owned so it can move to the scan thread.
#[derive(Debug, Clone)]
pub struct ScanJob {
    pub roots: Vec<PathBuf>,
    /// Stripped from paths before the policy judges them (the `--root`).
    pub root: PathBuf,
    pub policy: Policy,
    pub skip: Vec<String>,
    pub cert: Option<PathBuf>,
    pub limit: Option<usize>,
}

impl ScanJob {
    /// Run here, on this thread.
    pub fn run(&self) -> ScanReport {
        let verifier = self.cert.as_deref().and_then(|c| Verifier::from_cert_file(c).ok());
        let mut report = scan(
            &self.roots,
            &self.root,
            &self.policy,
            &self.skip,
            verifier.as_ref(),
            self.limit,
            |_| {},
        );
        if self.cert.is_some() && verifier.is_none() {
            report
                .errors
                .push("signing_cert could not be read: signatures were not verified".to_owned());
        }
        report
    }
}

/// The background scan and its schedule.
#[derive(Debug, Default)]
pub struct Scanner {
    running: Option<(Receiver<ScanReport>, Instant)>,
    pub last: Option<ScanReport>,
    /// When the next periodic scan is due.
    pub next: Option<Instant>,
}

/// How often a host is rescanned for health.
pub const INTERVAL: Duration = Duration::from_secs(6 * 3600);

impl Scanner {
    /// Start a scan unless one is running.
    pub fn start(&mut self, job: ScanJob) {
        if self.running.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let spawned = thread::Builder::new().name("ima-scan".to_owned()).spawn(move || {
            let _ = tx.send(job.run());
        });
        match spawned {
            Ok(_) => self.running = Some((rx, Instant::now())),
            Err(e) => log::error!(error:% = e; "cannot start the IMA scan thread"),
        }
    }

    /// A finished scan's report, once.
    pub fn poll(&mut self) -> Option<&ScanReport> {
        let (rx, _) = self.running.as_ref()?;
        match rx.try_recv() {
            Ok(report) => {
                self.running = None;
                self.next = Some(Instant::now() + INTERVAL);
                self.last = Some(report);
                self.last.as_ref()
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.running = None;
                None
            }
        }
    }

    pub fn running(&self) -> bool {
        self.running.is_some()
    }
}
