//! A whole scan: walk, judge every appraised file, count.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bulwark_model::ima::api::{ScanEntry, ScanReport};
use bulwark_model::ima::grammar::Policy;

use crate::file::judge;
use crate::sign::Verifier;
use crate::walk::{walk, Item};

/// Progress of a running scan, for a terminal display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub files_seen: u64,
    pub appraised: u64,
    pub failing: u64,
    pub bytes: u64,
}

/// Scan `roots` of a host whose `/` is at `root`; report at most `limit`
/// failing files (all when `None`), by host path.
pub fn scan(
    roots: &[PathBuf],
    root: &Path,
    policy: &Policy,
    skip: &[String],
    verifier: Option<&Verifier>,
    limit: Option<usize>,
    mut progress: impl FnMut(&Progress),
) -> ScanReport {
    let t0 = Instant::now();
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut report = ScanReport {
        roots: roots.iter().map(|r| crate::walk::host_path(root, r)).collect(),
        started,
        ..ScanReport::default()
    };
    let mut p = Progress::default();
    let stats = walk(roots, root, policy, skip, |item| match item {
        Item::Progress(n) => {
            p.files_seen = n;
            progress(&p);
        }
        Item::Candidate(c) => {
            let j = judge(&c.path, c.verdict.signature, verifier);
            p.appraised += 1;
            p.bytes += j.bytes;
            report.counts.add(j.state);
            if !j.state.passes() {
                p.failing += 1;
                if limit.is_none_or(|l| report.files.len() < l) {
                    let hooks: Vec<&str> = c.verdict.funcs.iter().map(|f| f.name()).collect();
                    report.files.push(ScanEntry {
                        path: c.host_path.clone(),
                        state: Some(j.state),
                        detail: format!("{} ({})", j.detail, hooks.join(", ")),
                    });
                } else {
                    report.truncated = true;
                }
            }
        }
    });
    p.files_seen = stats.files;
    progress(&p);
    report.skipped = stats.skipped;
    report.errors = stats.errors;
    report.duration_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}
