//! K3s: the bind drop-ins, the restart that picks them up, and the listener check.
//!
//! Bulwark owns these files and nothing else of K3s: a `config.yaml.d` drop-in
//! that binds the API server, the kubelet and the node address to one address
//! (usually the VPN's) and carries K3s's etcd snapshot settings, a
//! `k3s.service.d` drop-in that starts K3s after bulwarkd, so that address
//! exists before K3s binds, and, when K3s is handed the Vault's bucket, a
//! root-only drop-in with the S3 keys (written from the credentials file, so
//! the keys stay out of generations and plans). K3s itself is installed by its
//! own installer; without it (or without systemd) the files are still written
//! and the outcome carries a note for health instead of an error.

mod listen;
mod render;

mod module;

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulwark_model::api::{Change, ChangeOp, Check, Level};
use bulwark_model::profile::{EtcdSnapshots, K3s as K3sProfile};

use crate::host::run::{Run, RunError};
use crate::host::Host;
use crate::state;
use crate::vault::s3::{self, S3Error};

pub use module::K3sModule;

pub use listen::{check_bind, judge, listeners, parse_endpoint, parse_table, CHECK, K3S_PORTS};
pub use render::{config_yaml, keys_yaml, unit_dropin, CONFIG_DROPIN, KEYS_DROPIN, UNIT_DROPIN};

/// The systemctl used unless bulwarkd is told otherwise (`--systemctl`).
pub const DEFAULT_SYSTEMCTL: &str = "/usr/bin/systemctl";
/// Longest a systemctl call may take; the restart is queued, not awaited.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// The drop-ins are configuration, readable by everyone, like the files beside them.
const FILE_MODE: u32 = 0o644;
/// The S3 keys' drop-in: root only.
const KEYS_MODE: u32 = 0o600;
/// Where K3s keeps its datastore (its default `data-dir`).
const DB_DIR: &str = "/var/lib/rancher/k3s/server/db";
/// In the state directory while drop-ins changed but systemd was not yet told.
const RELOAD_PENDING: &str = "k3s-reload-pending";
const DIR_MODE: u32 = 0o755;
/// Name of the health check carrying an apply's note.
pub const NOTE_CHECK: &str = "k3s";
/// Name of the health check on K3s's own etcd snapshots.
pub const ETCD_CHECK: &str = "k3s_etcd_snapshots";

#[derive(Debug, thiserror::Error)]
pub enum K3sError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("systemctl")]
    Systemctl {
        #[source]
        source: RunError,
    },
    #[error("k3s.etcd_snapshots.s3: {0}")]
    Credentials(#[source] S3Error),
    #[error(transparent)]
    State(#[from] state::StateError),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> K3sError {
    let path = path.to_owned();
    move |source| K3sError::Io { op, path, source }
}

/// What [`K3s::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K3sOutcome {
    /// A drop-in was written or removed.
    pub changed: bool,
    /// K3s's etcd snapshot settings or its S3 keys changed with it.
    pub etcd_changed: bool,
    /// systemd was asked to restart k3s.service.
    pub restarted: bool,
    /// Why K3s did not (or will not) pick the change up: for health.
    pub note: Option<String>,
}

/// What is there to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// `/run/systemd/system` exists: systemd is the init system.
    pub systemd: bool,
    /// A k3s.service unit or the k3s binary exists.
    pub installed: bool,
}

/// Access to the K3s configuration of one host.
#[derive(Debug, Clone)]
pub struct K3s {
    host: Host,
    systemctl: PathBuf,
    timeout: Duration,
}

impl K3s {
    pub fn new(host: Host, systemctl: impl Into<PathBuf>) -> K3s {
        K3s {
            host,
            systemctl: systemctl.into(),
            timeout: SYSTEMCTL_TIMEOUT,
        }
    }

    /// Bound each systemctl call by `timeout` instead of the default.
    pub fn with_timeout(mut self, timeout: Duration) -> K3s {
        self.timeout = timeout;
        self
    }

    /// The files Bulwark wants, as (host path, content); `None` = absent.
    pub fn wanted(desired: Option<&K3sProfile>, bind: Option<IpAddr>) -> [(&'static str, Option<String>); 2] {
        match (desired, bind) {
            (Some(k), Some(ip)) => [
                (CONFIG_DROPIN, Some(config_yaml(k, ip))),
                (UNIT_DROPIN, Some(unit_dropin())),
            ],
            _ => [(CONFIG_DROPIN, None), (UNIT_DROPIN, None)],
        }
    }

    /// [`K3s::wanted`] and the S3 keys' drop-in, rendered from the
    /// credentials file now (an unreadable one is an error naming it).
    pub(crate) fn all_wanted(
        &self,
        desired: Option<&K3sProfile>,
        bind: Option<IpAddr>,
    ) -> Result<[(&'static str, Option<String>); 3], K3sError> {
        let [config, unit] = Self::wanted(desired, bind);
        let s3 = bind
            .and(desired)
            .and_then(|k| k.etcd_snapshots.as_ref())
            .and_then(|e| e.s3.as_ref());
        let keys = match s3 {
            None => None,
            Some(s3) => {
                let k = s3::load(&s3.credentials, |p| self.host.path(p)).map_err(K3sError::Credentials)?;
                let source = s3::source_file(&s3.credentials);
                Some(keys_yaml(source, &k.access_key_id, &k.secret_access_key))
            }
        };
        Ok([config, unit, (KEYS_DROPIN, keys)])
    }

    /// The file's content, and `None` when it is missing. The keys'
    /// drop-in counts as different unless it is root only.
    pub(crate) fn read(&self, host_path: &str) -> Result<Option<String>, K3sError> {
        let path = self.host.path(host_path);
        match fs::read(&path) {
            Ok(_) if host_path == KEYS_DROPIN && !self.root_only(&path)? => Ok(Some(String::new())),
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    fn root_only(&self, path: &Path) -> Result<bool, K3sError> {
        let meta = fs::metadata(path).map_err(io("stat", path))?;
        Ok(meta.permissions().mode() & 0o777 == KEYS_MODE)
    }

    /// The changes [`K3s::apply`] would make. Without `[k3s]`, Bulwark's own
    /// drop-ins are removed (a rollback to such a profile must not leave
    /// them behind) and nothing else of K3s is touched.
    pub fn plan(&self, desired: Option<&K3sProfile>, bind: Option<IpAddr>) -> Result<Vec<Change>, K3sError> {
        let mut changes = Vec::new();
        if desired.is_some() && bind.is_none() {
            // Validation refuses this (bind = "vpn" needs [wireguard]).
            return Ok(changes);
        }
        let etcd = desired.and_then(|d| d.etcd_snapshots.as_ref());
        for (host_path, want) in self.all_wanted(desired, bind)? {
            // An unreadable file is planned as a rewrite; apply reports the error.
            let have = self.read(host_path).unwrap_or(Some(String::new()));
            let op = match (&have, &want) {
                (None, Some(_)) => ChangeOp::Add,
                (Some(_), None) => ChangeOp::Remove,
                (Some(a), Some(b)) if a != b => ChangeOp::Change,
                _ => continue,
            };
            let what = match (host_path, &want) {
                (CONFIG_DROPIN, Some(_)) => {
                    let ip = bind.map(|b| b.to_string()).unwrap_or_default();
                    let sans = desired.map(|d| d.tls_san.join(", ")).unwrap_or_default();
                    let etcd = etcd
                        .map(|e| format!("; etcd snapshots {}", e.describe()))
                        .unwrap_or_default();
                    format!("{host_path} (bind {ip}; tls-san [{sans}]{etcd})")
                }
                (UNIT_DROPIN, Some(_)) => format!("{host_path} (After=bulwarkd.service)"),
                (KEYS_DROPIN, Some(_)) => {
                    let source = etcd
                        .and_then(|e| e.s3.as_ref())
                        .map(|s3| s3::source_file(&s3.credentials));
                    format!("{host_path} (S3 keys from {}, mode 0600)", source.unwrap_or_default())
                }
                _ => host_path.to_owned(),
            };
            changes.push(Change::new("k3s", op, what));
        }
        if !changes.is_empty() && desired.is_some_and(|d| d.restart) {
            changes.push(Change::new("k3s", ChangeOp::Change, "restart k3s.service"));
        }
        Ok(changes)
    }

    /// Whether systemd runs this host and K3s is installed (under the host root).
    pub fn presence(&self) -> Presence {
        let exists = |p: &str| self.host.path(p).exists();
        Presence {
            systemd: self.host.path("/run/systemd/system").is_dir(),
            installed: [
                "/etc/systemd/system/k3s.service",
                "/lib/systemd/system/k3s.service",
                "/usr/lib/systemd/system/k3s.service",
                "/usr/local/bin/k3s",
            ]
            .into_iter()
            .any(exists),
        }
    }

    /// Write (or remove) the drop-ins where they differ; when something
    /// changed and the profile says `restart`, reload systemd and restart K3s.
    pub fn apply(&self, desired: Option<&K3sProfile>, bind: Option<IpAddr>) -> Result<K3sOutcome, K3sError> {
        let mut out = K3sOutcome::default();
        if desired.is_some() && bind.is_none() {
            out.note = Some("[k3s] has no address to bind to; the drop-ins were left as they are".to_owned());
            return Ok(out);
        }
        // Marked before the first file changes and cleared once systemd knows:
        // a daemon killed in between still reloads and restarts on its next
        // apply, although the files then look unchanged.
        let marker = self.host.state_dir().join(RELOAD_PENDING);
        let mut pending = marker.exists();
        for (host_path, want) in self.all_wanted(desired, bind)? {
            let have = self.read(host_path)?;
            let path = self.host.path(host_path);
            let differs = match &want {
                Some(text) => have.as_deref() != Some(text.as_str()),
                None => have.is_some(),
            };
            if !differs {
                continue;
            }
            out.etcd_changed |= host_path == KEYS_DROPIN || etcd_lines(have.as_deref()) != etcd_lines(want.as_deref());
            if !pending {
                state::write_atomic(&marker, b"")?;
                pending = true;
            }
            let mode = if host_path == KEYS_DROPIN { KEYS_MODE } else { FILE_MODE };
            match want {
                Some(text) => write_file(&path, text.as_bytes(), mode)?,
                None => state::remove(&path)?,
            }
            out.changed = true;
        }
        let presence = self.presence();
        out.note = match (desired.is_some(), presence) {
            (false, _) => None,
            (true, Presence { installed: false, .. }) => Some(
                "K3s is not installed (no k3s.service, no /usr/local/bin/k3s); its drop-ins are ready for it"
                    .to_owned(),
            ),
            (true, Presence { systemd: false, .. }) if out.changed => {
                Some("systemd is not running here (no /run/systemd/system): restart K3s yourself to bind it".to_owned())
            }
            (true, _) => None,
        };
        if !pending {
            return Ok(out);
        }
        if !presence.systemd || !presence.installed {
            // Nothing to tell: K3s reads the files whenever it starts.
            state::remove(&marker)?;
            return Ok(out);
        }
        // The unit drop-in only takes effect after a reload.
        self.systemctl(&["daemon-reload"])?;
        match desired {
            Some(k) if k.restart => {
                // Queued, not awaited: K3s can take a minute to come up and the
                // engine serves every request on one thread; the listener check
                // reports the result. try-restart leaves a K3s the operator
                // stopped alone: it reads the new config when started.
                self.systemctl(&["--no-block", "try-restart", "k3s.service"])?;
                out.restarted = true;
            }
            Some(_) => {
                out.note =
                    Some("K3s configuration changed and restart = false: restart k3s.service to bind it".to_owned());
            }
            // Without [k3s] a restart would re-bind K3s to every address.
            None => {}
        }
        state::remove(&marker)?;
        Ok(out)
    }

    /// Health for a profile with `[k3s]`: the listener check, the etcd
    /// snapshots' datastore, and the note of the last apply when there is
    /// one. Not installed is said either way.
    pub fn checks(&self, bind: IpAddr, etcd: Option<&EtcdSnapshots>, note: Option<&str>) -> Vec<Check> {
        let mut bind_check = check_bind(bind);
        if bind_check.level == Level::Warning && !self.presence().installed {
            bind_check.reason.push_str("; K3s is not installed");
        }
        let mut checks = vec![bind_check];
        checks.extend(etcd.and_then(|e| self.etcd_check(e)));
        if let Some(note) = note {
            checks.push(Check {
                module: String::new(),
                name: NOTE_CHECK.to_owned(),
                level: Level::Warning,
                reason: note.to_owned(),
            });
        }
        checks
    }

    /// Whether K3s runs the embedded etcd the settings are for. SQLite (a
    /// single server's default) takes no etcd snapshots; without either
    /// K3s has not started yet and the listener check says so.
    fn etcd_check(&self, etcd: &EtcdSnapshots) -> Option<Check> {
        let db = self.host.path(DB_DIR);
        let (level, reason) = if db.join("etcd").is_dir() {
            (
                Level::Ok,
                format!("K3s runs embedded etcd; snapshots {}", etcd.describe()),
            )
        } else if db.join("state.db").exists() {
            (
                Level::Warning,
                format!(
                    "K3s keeps its datastore in SQLite ({DB_DIR}/state.db), which it does not snapshot: \
                     the etcd snapshot settings take effect once it runs embedded etcd (cluster-init: true)"
                ),
            )
        } else {
            return None;
        };
        Some(Check {
            module: String::new(),
            name: ETCD_CHECK.to_owned(),
            level,
            reason,
        })
    }

    /// Run systemctl with `args`, bounded in time, without systemd's
    /// notification socket (a child must not speak for bulwarkd).
    fn systemctl(&self, args: &[&str]) -> Result<(), K3sError> {
        let run = Run::new(&self.systemctl, self.timeout).args(args.iter().copied());
        let command = run.describe();
        run.output().map_err(|source| K3sError::Systemctl { source })?;
        log::info!(command; "ran systemctl");
        Ok(())
    }
}

/// The `etcd-*` settings of a config drop-in.
fn etcd_lines(text: Option<&str>) -> Vec<&str> {
    text.map_or_else(Vec::new, |t| t.lines().filter(|l| l.starts_with("etcd-")).collect())
}

/// Write `bytes` to `path` atomically with `mode`, creating parent
/// directories (0755, like the configuration beside them) as needed.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), K3sError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io("create directory", dir))?;
    Ok(state::write_atomic_mode(path, bytes, mode)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bulwark_model::profile::K3sBind;
    use std::os::unix::fs::PermissionsExt;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        log: PathBuf,
        k3s: K3s,
    }

    /// A root with systemd and K3s "present" and a systemctl stand-in that
    /// appends its argv to a log.
    fn fixture(systemd: bool, installed: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        // The engine creates the state directory before K3s is touched.
        fs::create_dir_all(root.join("var/lib/bulwark")).unwrap();
        if systemd {
            fs::create_dir_all(root.join("run/systemd/system")).unwrap();
        }
        if installed {
            fs::create_dir_all(root.join("usr/local/bin")).unwrap();
            fs::write(root.join("usr/local/bin/k3s"), "").unwrap();
        }
        let log = root.join("systemctl.log");
        let stand_in = root.join("systemctl");
        fs::write(
            &stand_in,
            format!("#!/bin/sh\n# systemctl stand-in\necho \"$*\" >> {}\n", log.display()),
        )
        .unwrap();
        fs::set_permissions(&stand_in, fs::Permissions::from_mode(0o755)).unwrap();
        let k3s = K3s::new(Host::new(&root), &stand_in);
        Fixture {
            _dir: dir,
            root,
            log,
            k3s,
        }
    }

    fn calls(f: &Fixture) -> Vec<String> {
        fs::read_to_string(&f.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn profile(sans: &[&str], restart: bool) -> K3sProfile {
        K3sProfile {
            bind: K3sBind::Vpn,
            tls_san: sans.iter().map(|s| (*s).to_owned()).collect(),
            restart,
            etcd_snapshots: None,
        }
    }

    fn ip() -> Option<IpAddr> {
        Some("10.8.0.1".parse().unwrap())
    }

    #[test]
    fn first_apply_writes_both_files_0644_and_restarts() {
        let f = fixture(true, true);
        let p = profile(&["k3s.vpn.internal"], true);
        let plan = f.k3s.plan(Some(&p), ip()).unwrap();
        assert_eq!(plan.len(), 3, "{plan:?}");
        assert!(plan[..2].iter().all(|c| c.op == ChangeOp::Add));
        let out = f.k3s.apply(Some(&p), ip()).unwrap();
        assert_eq!(
            out,
            K3sOutcome {
                changed: true,
                etcd_changed: false,
                restarted: true,
                note: None
            }
        );
        assert_eq!(calls(&f), ["daemon-reload", "--no-block try-restart k3s.service"]);
        for p in [CONFIG_DROPIN, UNIT_DROPIN] {
            let meta = fs::metadata(f.root.join(&p[1..])).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o644, "{p}");
        }
        let yaml = fs::read_to_string(f.root.join(&CONFIG_DROPIN[1..])).unwrap();
        assert!(yaml.contains("bind-address: \"10.8.0.1\""));
    }

    #[test]
    fn unchanged_apply_restarts_nothing_and_changed_san_does() {
        let f = fixture(true, true);
        f.k3s.apply(Some(&profile(&["a.example"], true)), ip()).unwrap();
        let again = f.k3s.apply(Some(&profile(&["a.example"], true)), ip()).unwrap();
        assert!(!again.changed && !again.restarted);
        assert!(f
            .k3s
            .plan(Some(&profile(&["a.example"], true)), ip())
            .unwrap()
            .is_empty());
        assert_eq!(calls(&f).len(), 2);
        let plan = f.k3s.plan(Some(&profile(&["b.example"], true)), ip()).unwrap();
        assert_eq!(plan[0].op, ChangeOp::Change);
        assert!(plan[0].what.contains("b.example"), "{plan:?}");
        let out = f.k3s.apply(Some(&profile(&["b.example"], true)), ip()).unwrap();
        assert!(out.changed && out.restarted);
        assert_eq!(calls(&f).len(), 4);
    }

    #[test]
    fn a_restart_interrupted_by_a_crash_happens_on_the_next_apply() {
        let f = fixture(true, true);
        f.k3s.apply(Some(&profile(&["a.example"], true)), ip()).unwrap();
        assert_eq!(calls(&f).len(), 2);
        // Killed after writing the files, before systemctl: the marker stays.
        let marker = f.root.join("var/lib/bulwark").join(RELOAD_PENDING);
        fs::write(&marker, b"").unwrap();
        let out = f.k3s.apply(Some(&profile(&["a.example"], true)), ip()).unwrap();
        assert!(!out.changed && out.restarted);
        assert_eq!(calls(&f)[2..], ["daemon-reload", "--no-block try-restart k3s.service"]);
        assert!(!marker.exists());
    }

    #[test]
    fn restart_false_reloads_and_says_so() {
        let f = fixture(true, true);
        let out = f.k3s.apply(Some(&profile(&[], false)), ip()).unwrap();
        assert!(out.changed && !out.restarted);
        assert!(out.note.unwrap().contains("restart = false"));
        assert_eq!(calls(&f), ["daemon-reload"]);
    }

    #[test]
    fn without_systemd_or_k3s_files_are_written_and_a_note_given() {
        let f = fixture(false, true);
        let out = f.k3s.apply(Some(&profile(&[], true)), ip()).unwrap();
        assert!(out.changed && !out.restarted);
        assert!(out.note.unwrap().contains("systemd is not running"));
        let f = fixture(true, false);
        let out = f.k3s.apply(Some(&profile(&[], true)), ip()).unwrap();
        assert!(out.changed && !out.restarted);
        assert!(out.note.unwrap().contains("not installed"));
        assert!(calls(&f).is_empty());
        assert!(f.root.join(&UNIT_DROPIN[1..]).is_file());
    }

    #[test]
    fn removing_the_section_removes_only_our_files_without_restart() {
        let f = fixture(true, true);
        f.k3s.apply(Some(&profile(&[], true)), ip()).unwrap();
        let other = f.root.join("etc/rancher/k3s/config.yaml.d/10-operator.yaml");
        fs::write(&other, "foo: bar\n").unwrap();
        let plan = f.k3s.plan(None, None).unwrap();
        assert_eq!(plan.len(), 2);
        assert!(plan.iter().all(|c| c.op == ChangeOp::Remove));
        let out = f.k3s.apply(None, None).unwrap();
        assert!(out.changed && !out.restarted && out.note.is_none());
        assert!(!f.root.join(&CONFIG_DROPIN[1..]).exists());
        assert!(other.exists());
        assert_eq!(
            calls(&f),
            ["daemon-reload", "--no-block try-restart k3s.service", "daemon-reload"]
        );
        assert!(f.k3s.plan(None, None).unwrap().is_empty());
    }

    const SECRET: &str = "k3s-s3-secret-9f8e7d";

    /// A profile handing K3s the bucket, and a 0600 credentials file for it.
    fn with_etcd_s3(f: &Fixture) -> K3sProfile {
        use bulwark_model::profile::{EtcdS3, S3Credentials};
        let creds = f.root.join("etc/bulwark/s3-credentials");
        fs::create_dir_all(creds.parent().unwrap()).unwrap();
        fs::write(
            &creds,
            format!("access_key_id = \"AKIAK3S\"\nsecret_access_key = \"{SECRET}\"\n"),
        )
        .unwrap();
        fs::set_permissions(&creds, fs::Permissions::from_mode(0o600)).unwrap();
        let mut p = profile(&[], true);
        p.etcd_snapshots = Some(EtcdSnapshots {
            schedule: None,
            retention: Some(7),
            s3: Some(EtcdS3 {
                endpoint: "s3.example.org".to_owned(),
                insecure: false,
                bucket: "backups".to_owned(),
                folder: "k3s-etcd".to_owned(),
                region: "us-east-1".to_owned(),
                credentials: S3Credentials::File("/etc/bulwark/s3-credentials".to_owned()),
            }),
        });
        p
    }

    #[test]
    fn the_s3_keys_go_to_a_root_only_drop_in_that_no_plan_shows() {
        let f = fixture(true, true);
        let p = with_etcd_s3(&f);
        let plan = f.k3s.plan(Some(&p), ip()).unwrap();
        assert_eq!(plan.len(), 4, "{plan:?}");
        assert!(
            plan[2]
                .what
                .contains("S3 keys from /etc/bulwark/s3-credentials, mode 0600"),
            "{plan:?}"
        );
        assert!(
            plan[0].what.contains("to s3://backups/k3s-etcd at s3.example.org"),
            "{plan:?}"
        );
        assert!(!format!("{plan:?}").contains(SECRET));
        assert!(f.k3s.apply(Some(&p), ip()).unwrap().etcd_changed);
        let keys = f.root.join(&KEYS_DROPIN[1..]);
        assert_eq!(fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&keys).unwrap();
        assert!(text.contains(&format!("etcd-s3-secret-key: \"{SECRET}\"\n")), "{text}");
        let config = fs::read_to_string(f.root.join(&CONFIG_DROPIN[1..])).unwrap();
        assert!(
            config.contains("etcd-s3-bucket: \"backups\"\n") && !config.contains(SECRET),
            "{config}"
        );
        assert!(f.k3s.plan(Some(&p), ip()).unwrap().is_empty());

        // Opened to others behind Bulwark's back: planned and put right.
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o644)).unwrap();
        let plan = f.k3s.plan(Some(&p), ip()).unwrap();
        assert_eq!(plan[0].op, ChangeOp::Change, "{plan:?}");
        f.k3s.apply(Some(&p), ip()).unwrap();
        assert_eq!(fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);

        // A new SAN alone leaves the snapshot settings as they were.
        let mut san = p.clone();
        san.tls_san = vec!["k3s.example.org".to_owned()];
        let out = f.k3s.apply(Some(&san), ip()).unwrap();
        assert!(out.changed && !out.etcd_changed, "{out:?}");

        // Without s3 the keys go and K3s keeps only its local schedule.
        let mut local = p.clone();
        local.etcd_snapshots.as_mut().unwrap().s3 = None;
        assert!(f.k3s.apply(Some(&local), ip()).unwrap().etcd_changed);
        assert!(!keys.exists());
        let config = fs::read_to_string(f.root.join(&CONFIG_DROPIN[1..])).unwrap();
        assert!(
            config.contains("etcd-snapshot-retention: 7\n") && !config.contains("etcd-s3"),
            "{config}"
        );
    }

    #[test]
    fn unreadable_credentials_refuse_the_plan_naming_the_file_and_write_nothing() {
        let f = fixture(true, true);
        let p = with_etcd_s3(&f);
        let creds = f.root.join("etc/bulwark/s3-credentials");
        fs::set_permissions(&creds, fs::Permissions::from_mode(0o644)).unwrap();
        let e = f.k3s.plan(Some(&p), ip()).unwrap_err().to_string();
        assert!(e.contains("k3s.etcd_snapshots.s3") && e.contains("chmod 600"), "{e}");
        assert!(f.k3s.apply(Some(&p), ip()).is_err());
        fs::remove_file(&creds).unwrap();
        let e = format!("{:#}", f.k3s.plan(Some(&p), ip()).unwrap_err());
        assert!(e.contains("s3-credentials"), "{e}");
        assert!(!f.root.join(&CONFIG_DROPIN[1..]).exists() && !f.root.join(&KEYS_DROPIN[1..]).exists());
        assert!(calls(&f).is_empty());
    }

    #[test]
    fn the_etcd_check_tells_sqlite_from_embedded_etcd() {
        let f = fixture(true, true);
        let e = with_etcd_s3(&f).etcd_snapshots.unwrap();
        let bind = "192.0.2.1".parse().unwrap();
        let etcd_check = |k: &K3s| {
            k.checks(bind, Some(&e), None)
                .into_iter()
                .find(|c| c.name == ETCD_CHECK)
        };
        assert!(
            etcd_check(&f.k3s).is_none(),
            "no datastore yet: the listener check speaks"
        );
        let db = f.root.join(&DB_DIR[1..]);
        fs::create_dir_all(&db).unwrap();
        fs::write(db.join("state.db"), "").unwrap();
        let c = etcd_check(&f.k3s).unwrap();
        assert_eq!(c.level, Level::Warning);
        assert!(
            c.reason.contains("SQLite") && c.reason.contains("cluster-init: true"),
            "{c:?}"
        );
        fs::create_dir_all(db.join("etcd")).unwrap();
        let c = etcd_check(&f.k3s).unwrap();
        assert_eq!(c.level, Level::Ok);
        assert!(c.reason.contains("keep 7, to s3://backups/k3s-etcd"), "{c:?}");
    }

    #[test]
    fn failing_or_hanging_systemctl_is_an_error() {
        let f = fixture(true, true);
        let bad = f.root.join("bad-systemctl");
        fs::write(&bad, "#!/bin/sh\necho 'Unit k3s.service not found.' >&2\nexit 5\n").unwrap();
        fs::set_permissions(&bad, fs::Permissions::from_mode(0o755)).unwrap();
        let k = K3s::new(Host::new(&f.root), &bad);
        let e = k.apply(Some(&profile(&[], true)), ip()).unwrap_err();
        let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(chain.contains("Unit k3s.service not found."), "{chain}");

        let slow = f.root.join("slow-systemctl");
        fs::write(&slow, "#!/bin/sh\nexec sleep 30\n").unwrap();
        fs::set_permissions(&slow, fs::Permissions::from_mode(0o755)).unwrap();
        let k = K3s::new(Host::new(&f.root), &slow).with_timeout(Duration::from_millis(200));
        let e = k.apply(Some(&profile(&["x.example"], true)), ip()).unwrap_err();
        assert!(
            matches!(
                e,
                K3sError::Systemctl {
                    source: RunError::Timeout { .. }
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn checks_add_the_note_and_not_installed() {
        let f = fixture(true, false);
        // 192.0.2.1 (TEST-NET-1) is nowhere in this namespace: nothing listens there.
        let checks = f.k3s.checks("192.0.2.1".parse().unwrap(), None, Some("a note"));
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].name, CHECK);
        if checks[0].level == Level::Warning {
            assert!(checks[0].reason.ends_with("K3s is not installed"), "{:?}", checks[0]);
        }
        assert_eq!(checks[1].level, Level::Warning);
        assert_eq!(checks[1].reason, "a note");
    }
}
