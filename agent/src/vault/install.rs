//! The pinned binary: fetch or copy, SHA-256 before anything runs it, one
//! directory per version, and an atomic switch of the `current` link.
//!
//! A download lands in a temporary directory as a non-executable file and
//! is hashed while it streams; only a matching digest makes it executable
//! and renames the directory into place as `<version>-<sha256[..12]>`. The
//! unit and the supervisor run `<lib>/current/bao`, a symlink replaced by a
//! rename, so a switch (upgrade or rollback) is one atomic step and the
//! previous version stays on disk for the way back.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulwark_model::profile::{Location, Source};
use sha2::{Digest, Sha256};

use super::VaultError;
use crate::host::{Host, Run, RunError};
use crate::state;

/// Where versions live (host path).
pub const LIB_DIR: &str = "/usr/local/lib/bulwark/vault";
/// The link the unit runs through.
pub const CURRENT: &str = "current";
/// A download may take this long in total (the engine waits for it).
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `bao version` answers in well under a second.
const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// The installed versions of one host.
#[derive(Debug, Clone)]
pub struct Installer {
    lib: PathBuf,
    /// Files already hashed, by (inode, size, mtime): a 180 MB binary is not
    /// hashed again on every plan unless it changed on disk.
    hashed: HashMap<PathBuf, (u64, u64, i64, String)>,
}

/// Which binary to run, by name of its version directory.
pub fn dir_name(version: &str, sha256: &str) -> String {
    format!("{version}-{}", &sha256[..sha256.len().min(12)])
}

impl Installer {
    pub fn new(host: &Host) -> Installer {
        Installer {
            lib: host.path(LIB_DIR),
            hashed: HashMap::new(),
        }
    }

    pub fn lib(&self) -> &Path {
        &self.lib
    }

    pub fn binary_in(&self, dir_name: &str) -> PathBuf {
        self.lib.join(dir_name).join("bao")
    }

    /// The stable path the unit runs.
    pub fn current_binary(&self) -> PathBuf {
        self.lib.join(CURRENT).join("bao")
    }

    /// The version directory `current` points at.
    pub fn current(&self) -> Option<String> {
        fs::read_link(self.lib.join(CURRENT))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// Whether `dir_name` holds a binary whose digest is `sha256`.
    pub fn verified(&mut self, dir_name: &str, sha256: &str) -> Result<bool, VaultError> {
        let bin = self.binary_in(dir_name);
        let Ok(meta) = fs::symlink_metadata(&bin) else {
            return Ok(false);
        };
        if !meta.is_file() {
            return Ok(false);
        }
        let key = (meta.ino(), meta.len(), meta.mtime());
        let digest = match self.hashed.get(&bin) {
            Some((ino, len, mtime, d)) if (*ino, *len, *mtime) == key => d.clone(),
            _ => {
                let d = sha256_file(&bin)?;
                self.hashed.insert(bin.clone(), (key.0, key.1, key.2, d.clone()));
                d
            }
        };
        Ok(digest == sha256)
    }

    /// Make `<version>-<sha>` present and verified: fetch or copy it when it
    /// is missing (or its bytes no longer match). A wrong digest is refused
    /// with both digests and leaves nothing behind. Returns whether it was
    /// (re)installed.
    pub fn ensure(&mut self, version: &str, source: &Source) -> Result<bool, VaultError> {
        let name = dir_name(version, &source.sha256);
        if self.verified(&name, &source.sha256)? {
            return Ok(false);
        }
        state::private_dir(&self.lib, 0o755).map_err(VaultError::State)?;
        let incoming = self.lib.join(format!(".incoming{}", state::TMP_SUFFIX));
        if incoming.exists() {
            fs::remove_dir_all(&incoming).map_err(io("remove", &incoming))?;
        }
        state::private_dir(&incoming, 0o700).map_err(VaultError::State)?;
        let result = self.receive(&incoming, version, source, &name);
        if incoming.exists() {
            let _ = fs::remove_dir_all(&incoming);
        }
        result.map(|()| true)
    }

    fn receive(&self, incoming: &Path, version: &str, source: &Source, name: &str) -> Result<(), VaultError> {
        let file = incoming.join("bao");
        // 0600 and not executable until the digest matches.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(io("create", &file))?;
        let digest = match &source.location {
            Location::Url(url) => download(url, &mut out, &file)?,
            Location::Path(path) => {
                let src = PathBuf::from(path);
                let mut f = File::open(&src).map_err(io("open", &src))?;
                copy_hashing(&mut f, &mut out, &src, &file)?
            }
        };
        if digest != source.sha256 {
            return Err(VaultError::Digest {
                from: describe(&source.location),
                expected: source.sha256.clone(),
                actual: digest,
            });
        }
        out.sync_all().map_err(io("fsync", &file))?;
        drop(out);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).map_err(io("set mode of", &file))?;
        fs::set_permissions(incoming, fs::Permissions::from_mode(0o755)).map_err(io("set mode of", incoming))?;
        // Verified: now, and only now, it may run.
        let reported = reported_version(&file)?;
        if reported != version {
            return Err(VaultError::WrongVersion {
                from: describe(&source.location),
                expected: version.to_owned(),
                actual: reported,
            });
        }
        let target = self.lib.join(name);
        if target.exists() {
            fs::remove_dir_all(&target).map_err(io("remove", &target))?;
        }
        fs::rename(incoming, &target).map_err(io("rename into", &target))?;
        state::sync_dir(&self.lib).map_err(VaultError::State)
    }

    /// Point `current` at `dir_name` in one rename. Returns the previous target.
    pub fn switch(&self, dir_name: &str) -> Result<Option<String>, VaultError> {
        let previous = self.current();
        if previous.as_deref() == Some(dir_name) {
            return Ok(previous);
        }
        let link = self.lib.join(CURRENT);
        let tmp = state::tmp_path(&link);
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(dir_name, &tmp).map_err(io("create link", &tmp))?;
        fs::rename(&tmp, &link).map_err(io("rename into", &link))?;
        state::sync_dir(&self.lib).map_err(VaultError::State)?;
        Ok(previous)
    }

    /// Remove the `current` link (the section left the profile); versions stay.
    pub fn unlink(&self) -> Result<(), VaultError> {
        state::remove(&self.lib.join(CURRENT)).map_err(VaultError::State)
    }
}

fn describe(l: &Location) -> String {
    match l {
        Location::Url(u) => u.clone(),
        Location::Path(p) => p.clone(),
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VaultError {
    let path = path.to_owned();
    move |source| VaultError::Io { op, path, source }
}

fn download(url: &str, out: &mut File, file: &Path) -> Result<String, VaultError> {
    let fetch = |reason: String| VaultError::Fetch {
        url: url.to_owned(),
        reason,
    };
    super::tls::install_provider();
    let mut builder = reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(FETCH_TIMEOUT);
    if url.starts_with("http://") {
        // No TLS: the host's certificate store (maybe absent) is not needed.
        builder = builder.tls_certs_only(std::iter::empty());
    }
    let client = builder.build().map_err(|e| fetch(e.to_string()))?;
    let mut resp = client.get(url).send().map_err(|e| fetch(chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fetch(format!("HTTP {}", resp.status())));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = resp.read(&mut buf).map_err(|e| fetch(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io("write", file))?;
        super::progress();
    }
    Ok(hex::encode(hasher.finalize()))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn copy_hashing(src: &mut File, out: &mut File, from: &Path, to: &Path) -> Result<String, VaultError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = src.read(&mut buf).map_err(io("read", from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io("write", to))?;
        super::progress();
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, VaultError> {
    let mut f = File::open(path).map_err(io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        super::progress();
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Run `f`, again for a moment while the kernel says the file is busy: a
/// process forked by another thread may still hold the file's write
/// descriptor (until it execs), however briefly, after the binary was written.
pub fn exec_retrying<T>(mut f: impl FnMut() -> Result<T, RunError>) -> Result<T, RunError> {
    let mut tries = 0;
    loop {
        match f() {
            Err(RunError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// `bao version` → `2.7.2` (from "OpenBao v2.7.2 (…)" or "Vault v1.18.0 (…)").
pub fn reported_version(binary: &Path) -> Result<String, VaultError> {
    let out = exec_retrying(|| Run::new(binary, VERSION_TIMEOUT).arg("version").output())
        .map_err(|source| VaultError::Run { source })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .unwrap_or("")
        .to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fake(dir: &Path, version: &str) -> (PathBuf, String) {
        let p = dir.join("bao-src");
        fs::write(&p, format!("#!/bin/sh\necho 'OpenBao v{version} (test)'\n")).unwrap();
        let sha = sha256_file(&p).unwrap();
        (p, sha)
    }

    #[test]
    fn a_wrong_digest_is_refused_with_both_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut inst = Installer::new(&Host::new(dir.path()));
        let (src, sha) = fake(dir.path(), "2.7.2");
        let wrong = "0".repeat(64);
        let e = inst
            .ensure(
                "2.7.2",
                &Source {
                    location: Location::Path(src.display().to_string()),
                    sha256: wrong.clone(),
                },
            )
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&wrong) && msg.contains(&sha), "{msg}");
        let left: Vec<_> = fs::read_dir(inst.lib()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(inst.current(), None);
    }

    #[test]
    fn versions_install_side_by_side_and_switch_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let mut inst = Installer::new(&Host::new(dir.path()));
        let (src, sha) = fake(dir.path(), "2.7.2");
        let source = Source {
            location: Location::Path(src.display().to_string()),
            sha256: sha.clone(),
        };
        assert!(inst.ensure("2.7.2", &source).unwrap());
        assert!(
            !inst.ensure("2.7.2", &source).unwrap(),
            "a verified version is not fetched again"
        );
        let a = dir_name("2.7.2", &sha);
        assert_eq!(inst.switch(&a).unwrap(), None);
        let (src2, sha2) = fake(dir.path(), "2.7.3");
        let b_src = Source {
            location: Location::Path(src2.display().to_string()),
            sha256: sha2.clone(),
        };
        inst.ensure("2.7.3", &b_src).unwrap();
        let b = dir_name("2.7.3", &sha2);
        assert_eq!(inst.switch(&b).unwrap(), Some(a.clone()));
        assert_eq!(inst.current(), Some(b));
        assert_eq!(reported_version(&inst.current_binary()).unwrap(), "2.7.3");
        inst.switch(&a).unwrap();
        assert_eq!(reported_version(&inst.current_binary()).unwrap(), "2.7.2");
        let mode = fs::metadata(inst.binary_in(&a)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn a_binary_reporting_another_version_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let mut inst = Installer::new(&Host::new(dir.path()));
        let (src, sha) = fake(dir.path(), "2.6.0");
        let e = inst
            .ensure(
                "2.7.2",
                &Source {
                    location: Location::Path(src.display().to_string()),
                    sha256: sha,
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("2.6.0"), "{e}");
        assert_eq!(fs::read_dir(inst.lib()).unwrap().count(), 0);
    }
}
