//! Health: system resource checks, and the Prometheus metrics ([`metrics`]).
//!
//! The engine owns the checks about what it converged (last apply, firewall,
//! drift, WireGuard, K3s bind); this module adds what the host itself is
//! running out of, read through sysinfo, and turns every check into metrics.

pub mod metrics;

use std::path::{Path, PathBuf};

use bulwark_model::api::{Check, Level};
use sysinfo::{Disks, System};

use crate::host::Host;

pub use metrics::Metrics;

/// K3s's data directory (containerd images, etcd/SQLite): it fills up first.
pub const K3S_DATA_DIR: &str = "/var/lib/rancher/k3s";

/// Free-space thresholds, in percent of the filesystem.
const DISK_WARNING_PCT: f64 = 10.0;
const DISK_CRITICAL_PCT: f64 = 5.0;
/// Available memory below this percentage of the total is a WARNING.
const MEMORY_WARNING_PCT: f64 = 10.0;

/// Space on one filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub mount_point: PathBuf,
    pub available: u64,
    pub total: u64,
}

/// Disk space of the filesystems holding the state directory and, when the
/// profile manages K3s, its data directory; then memory.
pub fn resource_checks(host: &Host, k3s: bool) -> Vec<Check> {
    let disks = Disks::new_with_refreshed_list();
    let mounts: Vec<Space> = disks
        .list()
        .iter()
        .map(|d| Space {
            mount_point: d.mount_point().to_path_buf(),
            available: d.available_space(),
            total: d.total_space(),
        })
        .collect();
    let mut checks = vec![disk_check("disk_state", &host.state_dir(), &mounts)];
    if k3s {
        checks.push(disk_check("disk_k3s", &host.path(K3S_DATA_DIR), &mounts));
    }
    let mut sys = System::new();
    sys.refresh_memory();
    checks.push(memory_check(sys.available_memory(), sys.total_memory()));
    checks
}

/// The filesystem holding `path`: the longest mount point that contains the
/// nearest existing ancestor (K3s's data dir may not exist yet, and would be
/// created on that filesystem).
pub fn filesystem_of<'a>(path: &Path, mounts: &'a [Space]) -> Option<&'a Space> {
    let existing = path
        .ancestors()
        .find_map(|p| p.canonicalize().ok())
        .unwrap_or_else(|| PathBuf::from("/"));
    mounts
        .iter()
        .filter(|m| existing.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    part as f64 * 100.0 / total as f64
}

/// Bytes in the largest binary unit that keeps the number readable.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Free space of the filesystem holding `path`.
pub fn disk_check(name: &str, path: &Path, mounts: &[Space]) -> Check {
    let (level, reason) = match filesystem_of(path, mounts) {
        // sysinfo lists no pseudo filesystems; a state dir on one cannot fill a disk.
        None => (
            Level::Ok,
            format!("{}: not on a disk-backed filesystem", path.display()),
        ),
        Some(fs) if fs.total == 0 => (
            Level::Ok,
            format!("{}: {} reports no size", path.display(), fs.mount_point.display()),
        ),
        Some(fs) => {
            let free = percent(fs.available, fs.total);
            let level = if free < DISK_CRITICAL_PCT {
                Level::Critical
            } else if free < DISK_WARNING_PCT {
                Level::Warning
            } else {
                Level::Ok
            };
            (
                level,
                format!(
                    "{} on {}: {free:.0}% free ({} of {})",
                    path.display(),
                    fs.mount_point.display(),
                    human_bytes(fs.available),
                    human_bytes(fs.total)
                ),
            )
        }
    };
    Check {
        module: String::new(),
        name: name.to_owned(),
        level,
        reason,
    }
}

/// Available memory (what can be allocated without swapping, page cache included).
pub fn memory_check(available: u64, total: u64) -> Check {
    let free = percent(available, total);
    let level = if total > 0 && free < MEMORY_WARNING_PCT {
        Level::Warning
    } else {
        Level::Ok
    };
    Check {
        module: String::new(),
        name: "memory".to_owned(),
        level,
        reason: format!(
            "{free:.0}% available ({} of {})",
            human_bytes(available),
            human_bytes(total)
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn space(mount: &str, available: u64, total: u64) -> Space {
        Space {
            mount_point: PathBuf::from(mount),
            available,
            total,
        }
    }

    #[test]
    fn thresholds() {
        let gib = 1 << 30;
        let at = |avail| disk_check("disk_state", Path::new("/"), &[space("/", avail, 100 * gib)]);
        assert_eq!(at(50 * gib).level, Level::Ok);
        assert_eq!(at(10 * gib).level, Level::Ok);
        assert_eq!(at(9 * gib).level, Level::Warning);
        assert_eq!(at(4 * gib).level, Level::Critical);
        assert_eq!(at(4 * gib).reason, "/ on /: 4% free (4.0 GiB of 100.0 GiB)");
        assert_eq!(memory_check(5, 100).level, Level::Warning);
        assert_eq!(memory_check(50, 100).level, Level::Ok);
        assert_eq!(memory_check(0, 0).level, Level::Ok);
    }

    #[test]
    fn longest_mount_wins_and_missing_dirs_use_their_parent() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let mounts = [
            space("/", 1, 2),
            space(base.to_str().unwrap(), 3, 4),
            space("/nonexistent", 5, 6),
        ];
        let deep = base.join("var/lib/rancher/k3s");
        assert_eq!(filesystem_of(&deep, &mounts), Some(&mounts[1]));
        assert_eq!(filesystem_of(Path::new("/etc"), &mounts), Some(&mounts[0]));
        // `/nonexistentx` must not match the mount `/nonexistent`.
        assert_eq!(filesystem_of(Path::new("/nonexistentx"), &mounts), Some(&mounts[0]));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn real_host_yields_named_checks() {
        let dir = tempfile::tempdir().unwrap();
        let checks = resource_checks(&Host::new(dir.path()), true);
        let names: Vec<_> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["disk_state", "disk_k3s", "memory"]);
        assert!(checks.iter().all(|c| !c.reason.is_empty()));
    }
}
