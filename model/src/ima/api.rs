//! Wire types of the IMA module's actions (`/v1/modules/ima/<action>`)
//! and of `bulwarkctl ima scan --json`.

use serde::{Deserialize, Serialize};

/// The module's name in routes, metrics and checks.
pub const MODULE: &str = "ima";

/// A file's label, as a scan judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// A hash label that matches the content.
    Ok,
    /// An imasig signature (verified against `signing_cert` when one is configured).
    Signed,
    /// No label, or a hash where the policy needs a signature.
    Missing,
    /// A label that no longer matches the content (or a signature that does not verify).
    Stale,
    /// The file or its label could not be read.
    Unreadable,
}

impl FileState {
    /// Whether enforce mode would let the file through.
    pub fn passes(self) -> bool {
        matches!(self, FileState::Ok | FileState::Signed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Ok => "ok",
            FileState::Signed => "signed",
            FileState::Missing => "missing",
            FileState::Stale => "stale",
            FileState::Unreadable => "unreadable",
        }
    }
}

/// One file a scan reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanEntry {
    pub path: String,
    pub state: Option<FileState>,
    /// Why, in one line (the hooks that appraise it, the error).
    pub detail: String,
}

/// How many files are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanCounts {
    pub ok: u64,
    pub signed: u64,
    pub missing: u64,
    pub stale: u64,
    pub unreadable: u64,
}

impl ScanCounts {
    pub fn add(&mut self, s: FileState) {
        match s {
            FileState::Ok => self.ok += 1,
            FileState::Signed => self.signed += 1,
            FileState::Missing => self.missing += 1,
            FileState::Stale => self.stale += 1,
            FileState::Unreadable => self.unreadable += 1,
        }
    }

    /// Files enforce mode would deny.
    pub fn failing(&self) -> u64 {
        self.missing + self.stale + self.unreadable
    }

    pub fn total(&self) -> u64 {
        self.ok + self.signed + self.failing()
    }
}

/// A scan's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanReport {
    /// The trees walked.
    pub roots: Vec<String>,
    /// Unix time the scan started.
    pub started: u64,
    pub duration_ms: u64,
    pub counts: ScanCounts,
    /// Every file the policy appraises that enforce mode would deny
    /// (the first `limit` of them in a daemon answer), then the rest.
    pub files: Vec<ScanEntry>,
    /// Files in `files` were cut after this many.
    pub truncated: bool,
    /// Mount points not entered: filesystems the policy never appraises,
    /// and the `scan_skip` directories.
    pub skipped: Vec<String>,
    /// Directories that could not be listed.
    pub errors: Vec<String>,
}

/// `POST /v1/modules/ima/scan`: scan now, as bulwarkd sees the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// Trees to scan; `/` when empty.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Report at most this many failing files (default 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `POST /v1/modules/ima/labelled`: a label run (bulwarkctl or the dpkg
/// hook) reports its counts, for the audit log and a fresh scan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRun {
    /// `bulwarkctl`, `dpkg` or `sign`.
    pub source: String,
    /// Labels written.
    pub labelled: u64,
    /// Files already carrying a current label.
    pub current: u64,
    /// Files that could not be labelled.
    pub failed: u64,
    /// The first failures, one line each.
    #[serde(default)]
    pub failures: Vec<String>,
    /// Debian packages whose files were labelled (dpkg hook).
    #[serde(default)]
    pub packages: Vec<String>,
    pub duration_ms: u64,
}

/// Answer of `labelled`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelRunRecorded {
    /// Audit event identifier recorded.
    pub event: String,
}

/// `status.modules[ima].details` and `GET /v1/modules/ima/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImaState {
    /// The profile's mode (`off`, `measure`, `fix`, `enforce`).
    pub mode_wanted: String,
    /// `ima_appraise=` of this boot: `off`, `log`, `fix`, `enforce`.
    pub mode_in_force: String,
    /// The kernel exposes IMA (`/sys/kernel/security/ima`).
    pub kernel_ima: bool,
    /// `/etc/ima/ima-policy` matches the profile.
    pub policy_file_current: bool,
    /// `loaded` (this boot runs the file), `after-reboot` (the file waits
    /// for the next boot), `reboot-needed` (this boot loaded another
    /// policy), `not-loaded` (no custom policy this boot), `none`.
    pub policy: String,
    /// What remains to do by hand, as commands (`update-grub`, `reboot`).
    pub pending: Vec<String>,
    /// Runtime measurements (`ascii_runtime_measurements` count).
    pub measurements: Option<u64>,
    /// Integrity violations the kernel counted.
    pub violations: Option<u64>,
    /// The last scan, if any.
    pub last_scan: Option<ScanSummary>,
}

/// A scan in one line for health and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanSummary {
    /// Unix time it finished.
    pub finished: u64,
    pub duration_ms: u64,
    pub counts: ScanCounts,
}
