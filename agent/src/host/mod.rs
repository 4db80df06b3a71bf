//! Every path bulwarkd touches, resolved under one root.
//!
//! Production runs with root `/`; tests and the demo pass a temporary
//! directory, so nothing they do reaches the machine's real `/etc` or `/var`.

use std::path::{Path, PathBuf};

pub mod run;

pub use run::{Run, RunError};

/// The filesystem view of the host.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolve an absolute host path (`/etc/bulwark`) under the root.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// State: generations, keys, pending confirmations (mode 0700).
    pub fn state_dir(&self) -> PathBuf {
        self.path("/var/lib/bulwark")
    }

    /// The hash-chained audit log lives here (mode 0700).
    pub fn log_dir(&self) -> PathBuf {
        self.path("/var/log/bulwark")
    }

    pub fn default_socket(&self) -> PathBuf {
        self.path(bulwark_model::api::DEFAULT_SOCKET)
    }

    pub fn default_profile(&self) -> PathBuf {
        self.path("/etc/bulwark/profile.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_root() {
        let h = Host::new("/tmp/r");
        assert_eq!(h.state_dir(), PathBuf::from("/tmp/r/var/lib/bulwark"));
        assert_eq!(h.default_socket(), PathBuf::from("/tmp/r/run/bulwark/bulwarkd.sock"));
        assert_eq!(
            Host::new("/").default_profile(),
            PathBuf::from("/etc/bulwark/profile.toml")
        );
    }
}
