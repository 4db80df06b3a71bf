//! The host's integrity key, and seals made with it.
//!
//! What Bulwark must trust after a restart (a generation before it is
//! installed again) carries an HMAC-SHA256 seal made with a key only root can
//! read: 32 random bytes in `<state>/integrity.key`, 0600 in the 0700 state
//! directory, created once. A file writer who edits a stored ruleset to
//! `policy accept` cannot make a seal that verifies without that key. Seals
//! are computed over length-prefixed parts, so no two part lists collide.

use std::fs;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::state::{self, StateError};

const KEY_FILE: &str = "integrity.key";
const KEY_LEN: usize = 32;

/// The key; never printed (its Debug is redacted).
pub struct IntegrityKey {
    key: [u8; KEY_LEN],
    path: PathBuf,
}

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IntegrityKey({}, <redacted>)", self.path.display())
    }
}

impl IntegrityKey {
    /// Where the key of the state directory `state_dir` lives.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(KEY_FILE)
    }

    /// The key, if there is one; never creates it (for read-only checks
    /// such as `audit verify`).
    pub fn load(state_dir: &Path) -> Result<Option<IntegrityKey>, StateError> {
        let path = IntegrityKey::path(state_dir);
        match fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| StateError::Corrupt {
                    path: path.clone(),
                    reason: format!(
                        "{} bytes where {KEY_LEN} were expected; restore it from a backup (without it no \
                         generation or audit chain sealed by it verifies)",
                        bytes.len()
                    ),
                })?;
                Ok(Some(IntegrityKey { key, path }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state::io("read", &path)(e)),
        }
    }

    /// Load the key, creating it on first start. A key file of the wrong
    /// size is an error: silently replacing it would bless whatever the
    /// old one sealed.
    pub fn load_or_create(state_dir: &Path) -> Result<IntegrityKey, StateError> {
        let path = IntegrityKey::path(state_dir);
        match IntegrityKey::load(state_dir)? {
            Some(key) => Ok(key),
            None => {
                let mut key = [0u8; KEY_LEN];
                getrandom::getrandom(&mut key).map_err(|e| StateError::Corrupt {
                    path: path.clone(),
                    reason: format!("no randomness for a new key: {e}"),
                })?;
                state::write_atomic(&path, &key)?;
                log::info!(path:display = path.display(); "created the integrity key");
                Ok(IntegrityKey { key, path })
            }
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        // A key of any length is valid for HMAC; this one is always 32 bytes.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The seal of `parts`, as lowercase hex.
    pub fn seal(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    /// Whether `seal` is the seal of `parts` (compared in constant time).
    pub fn verify(&self, parts: &[&[u8]], seal: &str) -> bool {
        match hex::decode(seal) {
            Ok(bytes) => self.mac(parts).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_created_once_0600_and_seals_verify_only_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let k = IntegrityKey::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let seal = k.seal(&[b"profile", b"ruleset"]);
        let again = IntegrityKey::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&[b"profile", b"ruleset"], &seal));
        assert!(!again.verify(&[b"profile", b"ruleset policy accept"], &seal));
        // Length prefixes: moving bytes between parts changes the seal.
        assert!(!again.verify(&[b"profiler", b"uleset"], &seal));
        assert!(!again.verify(&[b"profile", b"ruleset"], "not hex"));
        assert!(!format!("{again:?}").contains(&hex::encode(again.key)));
    }

    #[test]
    fn a_truncated_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let e = IntegrityKey::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("5 bytes where 32"), "{e}");
        assert_eq!(fs::read(dir.path().join(KEY_FILE)).unwrap(), b"short");
    }
}
