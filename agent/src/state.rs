//! Persistent state on disk: private directories and crash-safe writes.
//!
//! Every file is written to a temporary name, fsynced, renamed over the
//! target and the directory fsynced, so a reader (or a daemon restarted after
//! `kill -9`) sees either the old content or the new, never a torn file. A
//! directory built under a temporary name (a generation) has its files
//! written in place instead, and becomes visible whole by one rename.
//! Modes are set explicitly at creation, so the result does not depend on the
//! umask, even umask 000.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Suffix of temporary files and directories; leftovers are removed at start-up.
pub const TMP_SUFFIX: &str = ".bwk-tmp";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_owned();
    move |source| StateError::Io { op, path, source }
}

/// Create `dir` (and parents) and force its mode to `mode`.
pub fn private_dir(dir: &Path, mode: u32) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(io("create directory", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io("set mode of", dir))
}

/// Write `bytes` to `path` atomically with mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_atomic_mode(path, bytes, 0o600)
}

/// Write `bytes` to `path` atomically with exactly `mode` (umask ignored).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let tmp = tmp_path(path);
    write_synced(&tmp, bytes, mode)?;
    fs::rename(&tmp, path).map_err(io("rename into", path))?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// Write `bytes` to `path` (0600) and fsync it, in place: for a file inside
/// a temporary directory that becomes visible only by a rename once all of
/// it is written (fsync that directory before the rename).
pub fn write_in_new_dir(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_synced(path, bytes, 0o600)
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io("create", path))?;
    // The mode argument is filtered by the umask; set it outright.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("set mode of", path))?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("fsync", path))
}

/// Write JSON atomically (0600).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    write_atomic(path, &json_text(path, value)?)
}

/// `value` as the pretty JSON text, with a final newline, of file `path`.
pub fn json_text<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, StateError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Read JSON; `Ok(None)` when the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Remove a file; absent is fine.
pub fn remove(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("/"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

/// fsync a directory so a rename or unlink in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Remove temporary files and directories a crash left behind under `dir`.
pub fn remove_leftovers(dir: &Path) -> Result<usize, StateError> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if path.to_string_lossy().ends_with(TMP_SUFFIX) {
            if is_dir {
                fs::remove_dir_all(&path).map_err(io("remove", &path))?;
            } else {
                fs::remove_file(&path).map_err(io("remove", &path))?;
            }
            removed += 1;
        } else if is_dir {
            removed += remove_leftovers(&path)?;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn atomic_writes_are_0600_even_with_umask_000() {
        let dir = tempfile::tempdir().unwrap();
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let path = dir.path().join("f.json");
        write_json(&path, &vec![1, 2, 3]).unwrap();
        nix::sys::stat::umask(old);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_json::<Vec<u8>>(&path).unwrap(), Some(vec![1, 2, 3]));
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn private_dirs_get_exactly_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        private_dir(&d, 0o700).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn leftovers_of_a_crash_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("x{TMP_SUFFIX}")), b"half").unwrap();
        fs::create_dir_all(dir.path().join(format!("g/000002{TMP_SUFFIX}"))).unwrap();
        fs::write(dir.path().join("keep"), b"ok").unwrap();
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 2);
        assert!(dir.path().join("keep").exists());
    }
}
