//! Keys: the server's private key on disk, peers' keys in memory.
//!
//! The server key is the only long-lived secret this module writes: base64 in
//! `<state>/wireguard/server.key`, mode 0600, created atomically on first
//! start. Secrets are wrapped in [`Secret`], whose `Debug` is redacted, so no
//! `{:?}` of a struct holding one can put a key into a log line.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use wireguard_control::Key;

use super::WgError;
use crate::state;

/// A private or preshared key. Printing it with `{:?}` shows nothing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Key);

impl Secret {
    pub fn generate_private() -> Secret {
        Secret(Key::generate_private())
    }

    pub fn generate_preshared() -> Secret {
        Secret(Key::generate_preshared())
    }

    pub fn from_key(key: Key) -> Secret {
        Secret(key)
    }

    pub fn from_base64(text: &str) -> Option<Secret> {
        Key::from_base64(text.trim()).ok().map(Secret)
    }

    /// The public half (meaningful for private keys only).
    pub fn public(&self) -> Key {
        self.0.get_public()
    }

    /// For the device and the client config; never for logs.
    pub fn key(&self) -> &Key {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        self.0.to_base64()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Load the server key, creating it on first start. Returns whether it was
/// created (the engine audits that).
pub fn load_or_create_server_key(path: &Path) -> Result<(Secret, bool), WgError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let key = Secret::from_base64(&text).ok_or_else(|| WgError::ServerKey {
                path: path.to_owned(),
                reason: "not a base64 WireGuard key; restore it from a backup, or delete it to generate a new \
                         one (every client config then needs the new server public key)"
                    .to_owned(),
            })?;
            // A key made readable by hand (cp, restore from backup) is tightened, not trusted as is.
            let mode = fs::metadata(path)
                .map_err(state::io("stat", path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                log::warn!(path:display = path.display(); "server key was readable by others (mode {:o}); setting 0600", mode & 0o777);
                fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(state::io("set mode of", path))?;
            }
            Ok((key, false))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let key = Secret::generate_private();
            let mut text = key.to_base64();
            text.push('\n');
            state::write_atomic(path, text.as_bytes())?;
            Ok((key, true))
        }
        Err(e) => Err(state::io("read", path)(e).into()),
    }
}

/// Parse a public key given by an admin.
pub fn parse_public_key(text: &str) -> Result<Key, WgError> {
    let invalid = |reason: &str| WgError::InvalidPublicKey {
        reason: reason.to_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("it is empty"));
    }
    let key = Key::from_base64(text)
        .map_err(|_| invalid("it is not 44 characters of base64 encoding 32 bytes (the output of `wg pubkey`)"))?;
    if key.0 == [0u8; 32] {
        return Err(invalid("it is all zeros"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn server_key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        let (k1, created) = load_or_create_server_key(&path).unwrap();
        assert!(created);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (k2, created) = load_or_create_server_key(&path).unwrap();
        assert!(!created);
        assert_eq!(k1, k2);
    }

    #[test]
    fn a_loose_server_key_is_tightened_and_a_corrupt_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        load_or_create_server_key(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create_server_key(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::write(&path, "garbage").unwrap();
        let err = load_or_create_server_key(&path).unwrap_err().to_string();
        assert!(err.contains("server.key") && err.contains("base64"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Secret::generate_private();
        let shown = format!("{s:?}");
        assert!(!shown.contains(&s.to_base64()));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn public_keys_are_checked() {
        let good = Key::generate_private().get_public().to_base64();
        assert!(parse_public_key(&good).is_ok());
        assert!(parse_public_key(&format!(" {good}\n")).is_ok());
        for bad in ["", "abc", "AAAA", &good[..40], &"A".repeat(44)] {
            assert!(parse_public_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
