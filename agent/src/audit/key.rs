//! The audit key: 32 random bytes that key the chain's HMAC-SHA256.
//!
//! It lives in the state directory (`<state>/audit.key`, mode 0600 in the
//! 0700 directory), apart from the log it protects, so a copy of
//! `/var/log/bulwark` (a backup, a log shipper) cannot forge a chain. It is
//! created once and never replaced: a new key would leave every line written
//! under the old one unverifiable. Creation writes a temporary file, fsyncs
//! it and hard-links it into place, so the key appears whole or not at all
//! and an existing one is never overwritten. The bytes never leave the file:
//! not in logs, events, errors or `Debug` output.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::host::Host;
use crate::state::{self, io, StateError};

const KEY_LEN: usize = 32;

/// The key, ready to compute MACs.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Where the host's audit key lives.
    pub fn path(host: &Host) -> PathBuf {
        host.state_dir().join("audit.key")
    }

    fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Key, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        if bytes.len() != KEY_LEN {
            return Err(corrupt(format!(
                "{} bytes where {KEY_LEN} were expected; the audit chain cannot be checked without the original key",
                bytes.len()
            )));
        }
        Hmac::<Sha256>::new_from_slice(bytes)
            .map(Key)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// The key at `path`; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<Key>, StateError> {
        match fs::read(path) {
            Ok(bytes) => Key::from_bytes(path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", path)(e)),
        }
    }

    /// The key at `path`, created first when there is none. Also says
    /// whether this call created it.
    pub fn load_or_create(path: &Path) -> Result<(Key, bool), StateError> {
        if let Some(key) = Key::load(path)? {
            return Ok((key, false));
        }
        let mut bytes = [0u8; KEY_LEN];
        let mut filled = 0;
        while filled < KEY_LEN {
            filled += rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| io("generate random bytes for", path)(e.into()))?;
        }
        let tmp = state::tmp_path(path);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io("set mode of", &tmp))?;
        let written = f.write_all(&bytes).and_then(|()| f.sync_all());
        drop(f);
        let linked = written.and_then(|()| fs::hard_link(&tmp, path));
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                state::sync_dir(path.parent().unwrap_or(Path::new("/")))?;
                Ok((Key::from_bytes(path, &bytes)?, true))
            }
            // Someone else created it first: theirs is the key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match Key::load(path)? {
                Some(key) => Ok((key, false)),
                None => Err(io("create", path)(e)),
            },
            Err(e) => Err(io("create", path)(e)),
        }
    }

    fn mac(&self, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(bytes);
        mac
    }

    /// HMAC-SHA256 of `bytes`, as lowercase hex.
    pub fn seal(&self, bytes: &[u8]) -> String {
        hex::encode(self.mac(bytes).finalize().into_bytes())
    }

    /// Whether `hex_mac` is the HMAC of `bytes` (compared in constant time).
    pub fn verifies(&self, bytes: &[u8], hex_mac: &str) -> bool {
        hex::decode(hex_mac).is_ok_and(|tag| self.mac(bytes).verify_slice(&tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_key_is_created_once_0600_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let (first, created) = Key::load_or_create(&path).unwrap();
        nix::sys::stat::umask(old);
        assert!(created);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert!(!state::tmp_path(&path).exists());
        let bytes = fs::read(&path).unwrap();

        let (again, created) = Key::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(fs::read(&path).unwrap(), bytes, "an existing key was replaced");
        assert_eq!(first.seal(b"x"), again.seal(b"x"));
        assert!(first.verifies(b"x", &again.seal(b"x")));
        assert!(!first.verifies(b"y", &again.seal(b"x")));
        assert!(!first.verifies(b"x", "not hex"));
        assert_eq!(format!("{first:?}"), "Key(..)");
    }

    #[test]
    fn a_key_of_the_wrong_size_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        fs::write(&path, b"short").unwrap();
        let err = Key::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("audit.key") && err.contains("5 bytes"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"short");
    }
}
