//! The host side of IMA: the policy file, securityfs, the kernel command
//! line and the GRUB drop-in, every path through [`Host`].
//!
//! Debian's 6.1 kernel takes one custom policy per boot
//! (`CONFIG_IMA_WRITE_POLICY` off: the securityfs `policy` file disappears
//! after the first load) and cannot read it back (`CONFIG_IMA_READ_POLICY`
//! off). So what this boot runs is known only from who loaded it: Bulwark
//! records the digest of every policy it loads, and on the first look in a
//! new boot takes a policy file older than the boot as what systemd loaded.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bulwark_model::ima::cmdline::{ImaCmdline, GRUB_DROPIN};
use bulwark_model::ima::templates::POLICY_HEADER;
use sha2::{Digest, Sha256};

use super::ImaError;
use crate::host::Host;
use crate::state;

/// Where systemd looks for the custom policy at boot.
pub const POLICY_FILE: &str = "/etc/ima/ima-policy";
pub const SECURITYFS: &str = "/sys/kernel/security/ima";
pub const CMDLINE: &str = "/proc/cmdline";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
const PROC_STAT: &str = "/proc/stat";
const GRUB_CFG: &str = "/boot/grub/grub.cfg";
/// Public configuration, like the rest of /etc.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Whether and what this boot loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kernel {
    /// No /sys/kernel/security/ima: the kernel has no IMA (or securityfs is not mounted).
    NoIma,
    /// The securityfs policy file is there: no custom policy this boot yet.
    NotLoaded,
    /// A custom policy was loaded this boot; its SHA-256 when known.
    Loaded(Option<String>),
}

/// Who loaded this boot's policy, kept in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct BootRecord {
    boot_id: String,
    /// SHA-256 of the policy text this boot runs, when known.
    sha256: Option<String>,
    /// `bulwark` or `boot` (systemd, from the file).
    by: String,
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The IMA files of one host.
#[derive(Debug, Clone)]
pub struct ImaHost {
    host: Host,
}

fn read_opt(path: &Path) -> Result<Option<String>, ImaError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ImaError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

impl ImaHost {
    pub fn new(host: Host) -> ImaHost {
        ImaHost { host }
    }

    pub fn path(&self, host_path: &str) -> PathBuf {
        self.host.path(host_path)
    }

    fn record_path(&self) -> PathBuf {
        self.host.state_dir().join("ima-boot.json")
    }

    pub fn policy_file(&self) -> Result<Option<String>, ImaError> {
        read_opt(&self.path(POLICY_FILE))
    }

    pub fn dropin(&self) -> Result<Option<String>, ImaError> {
        read_opt(&self.path(GRUB_DROPIN))
    }

    pub fn cmdline(&self) -> ImaCmdline {
        ImaCmdline::parse(&read_opt(&self.path(CMDLINE)).ok().flatten().unwrap_or_default())
    }

    /// A policy file Bulwark did not write is never replaced or removed.
    pub fn policy_is_ours(text: &str) -> bool {
        text.starts_with(POLICY_HEADER)
    }

    /// Write a configuration file atomically (0644, parents 0755).
    pub fn write(&self, host_path: &str, text: &str) -> Result<(), ImaError> {
        let path = self.path(host_path);
        let dir = path.parent().unwrap_or(Path::new("/"));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|source| ImaError::Io {
                op: "create directory",
                path: dir.to_owned(),
                source,
            })?;
        Ok(state::write_atomic_mode(&path, text.as_bytes(), FILE_MODE)?)
    }

    pub fn remove(&self, host_path: &str) -> Result<(), ImaError> {
        Ok(state::remove(&self.path(host_path))?)
    }

    fn boot_id(&self) -> String {
        read_opt(&self.path(BOOT_ID))
            .ok()
            .flatten()
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// Unix time of this boot (`btime` in /proc/stat).
    fn boot_time(&self) -> Option<u64> {
        let text = read_opt(&self.path(PROC_STAT)).ok().flatten()?;
        text.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// What this boot runs. A first look in a new boot with the policy
    /// already loaded takes a policy file older than the boot as what
    /// systemd loaded, and records that.
    pub fn kernel(&self) -> Result<Kernel, ImaError> {
        let dir = self.path(SECURITYFS);
        if !dir.is_dir() {
            return Ok(Kernel::NoIma);
        }
        // Recorded first: a kernel with CONFIG_IMA_WRITE_POLICY keeps the
        // policy file after a load, and a second load would append rules.
        let boot_id = self.boot_id();
        let record = state::read_json::<BootRecord>(&self.record_path()).unwrap_or(None);
        if let Some(r) = record.filter(|r| !boot_id.is_empty() && r.boot_id == boot_id) {
            return Ok(Kernel::Loaded(r.sha256));
        }
        if dir.join("policy").exists() {
            return Ok(Kernel::NotLoaded);
        }
        let file = self.path(POLICY_FILE);
        let older_than_boot = match (fs::metadata(&file), self.boot_time()) {
            (Ok(m), Some(btime)) => u64::try_from(m.mtime()).is_ok_and(|t| t < btime),
            _ => false,
        };
        let sha256 = if older_than_boot {
            self.policy_file()?.map(|t| sha256_hex(&t))
        } else {
            None
        };
        self.record(&boot_id, sha256.clone(), "boot")?;
        Ok(Kernel::Loaded(sha256))
    }

    fn record(&self, boot_id: &str, sha256: Option<String>, by: &str) -> Result<(), ImaError> {
        if boot_id.is_empty() {
            return Ok(());
        }
        let r = BootRecord {
            boot_id: boot_id.to_owned(),
            sha256,
            by: by.to_owned(),
        };
        Ok(state::write_json(&self.record_path(), &r)?)
    }

    /// Load `text` into the running kernel: one rule per write(2), so a
    /// refusal names its line; closing the file makes the policy take
    /// effect, and a refused rule discards the whole session.
    pub fn load(&self, text: &str) -> Result<(), ImaError> {
        let path = self.path(SECURITYFS).join("policy");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| ImaError::Io {
                op: "open",
                path: path.clone(),
                source,
            })?;
        for (i, line) in text.lines().enumerate() {
            let rule = line.trim();
            if rule.is_empty() || rule.starts_with('#') {
                continue;
            }
            f.write_all(format!("{rule}\n").as_bytes())
                .map_err(|source| ImaError::Load {
                    line: i + 1,
                    rule: rule.to_owned(),
                    source,
                })?;
        }
        // The kernel checks the whole policy when the file is closed.
        f.sync_all().ok();
        drop(f);
        self.record(&self.boot_id(), Some(sha256_hex(text)), "bulwark")
    }

    /// A number from securityfs (`runtime_measurements_count`, `violations`).
    pub fn counter(&self, name: &str) -> Option<u64> {
        read_opt(&self.path(SECURITYFS).join(name))
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Whether GRUB's generated config has `word` on its kernel lines:
    /// `None` when this host has no /boot/grub/grub.cfg.
    pub fn grub_cfg_has(&self, word: &str) -> Option<bool> {
        let text = read_opt(&self.path(GRUB_CFG)).ok().flatten()?;
        Some(
            text.lines()
                .filter(|l| l.trim_start().starts_with("linux"))
                .any(|l| l.split_ascii_whitespace().any(|w| w == word)),
        )
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
