//! Scheduled raft snapshots, their off-site copies and retention.
//!
//! A snapshot is taken through the API with Bulwark's own token (its policy
//! allows `read` on `sys/storage/raft/snapshot` and nothing else of the
//! kind), right after the canary `bulwark/canary` was given a fresh random
//! value, so each snapshot carries a canary whose SHA-256 is recorded with
//! it. The bytes stream into a 0600 temporary file in the 0700 snapshot
//! directory while they are hashed, are fsynced and renamed into place: a
//! crash or a full disk leaves no partial snapshot under a real name.
//!
//! With `s3` each snapshot is uploaded, read back and compared with the
//! recorded SHA-256 before it counts as off-site. An unreachable server
//! keeps the local file, leaves the upload pending and retries it with
//! backoff; refused credentials and a missing bucket are named as such.
//! Retention keeps the newest `keep` locally and, separately, in the bucket.
//!
//! `snapshots.json` (0600, atomic) is the catalogue: name, time, size,
//! digest, the canary's digest, upload state and the last restore test.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulwark_model::api::{Check, Level};
use bulwark_model::profile::{Custody, Snapshots, Vault as VaultProfile};
use bulwark_model::vault::{RemoteObject, RestoreTest, SnapshotEntry, SnapshotsResponse};
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client::Secret;
use super::s3::{self, Bucket};
use super::{custody, render::cred, Vault, VaultError};
use crate::audit::{self, Outcome};
use crate::module::Cx;
use crate::state;

const CATALOGUE: &str = "snapshots.json";
/// The first retry of a failed upload or snapshot; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// One snapshot in the catalogue.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    #[serde(flatten)]
    pub shown: SnapshotEntry,
    /// SHA-256 of the canary value written just before the snapshot.
    pub canary_sha256: String,
    /// Retention removed the off-site copy (never uploaded again).
    pub remote_pruned: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Catalogue {
    /// Oldest first.
    pub snapshots: Vec<Entry>,
    pub last_restore_test: Option<RestoreTest>,
}

impl Catalogue {
    /// The newest snapshot whose bytes exist somewhere.
    pub fn latest(&self) -> Option<&Entry> {
        self.snapshots
            .iter()
            .rev()
            .find(|e| e.shown.local || (e.shown.uploaded.is_some() && !e.remote_pruned))
    }

    fn pending(&self) -> usize {
        self.snapshots
            .iter()
            .filter(|e| e.shown.local && e.shown.uploaded.is_none() && !e.remote_pruned)
            .count()
    }
}

/// What the schedule keeps between ticks, and the gauges.
#[derive(Debug, Default)]
pub struct SnapState {
    /// The leftovers of an interrupted restore test were looked for.
    pub cleaned: bool,
    /// The last snapshot attempt's error (cleared by a success).
    pub last_error: Option<String>,
    /// No snapshot attempt before this (after a failure).
    not_before: Option<Instant>,
    /// No upload retry before this.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// No scheduled restore test before this (after one that could not start).
    test_not_before: Option<Instant>,
    local_ts: Gauge<f64, AtomicU64>,
    remote_ts: Gauge<f64, AtomicU64>,
    test_ts: Gauge<f64, AtomicU64>,
    test_ok: Gauge,
}

impl SnapState {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "vault_snapshot_local_timestamp_seconds",
            "Unix time of the newest Vault snapshot in the local directory (0: none)",
            self.local_ts.clone(),
        );
        registry.register(
            "vault_snapshot_remote_timestamp_seconds",
            "Unix time of the newest Vault snapshot stored off-site and read back with its digest (0: none)",
            self.remote_ts.clone(),
        );
        registry.register(
            "vault_restore_test_timestamp_seconds",
            "Unix time the last Vault restore test finished (0: never)",
            self.test_ts.clone(),
        );
        registry.register(
            "vault_restore_test_success",
            "The last Vault restore test passed (1) or failed (0)",
            self.test_ok.clone(),
        );
    }

    fn export(&self, cat: &Catalogue) {
        let newest = |f: &dyn Fn(&Entry) -> Option<u64>| cat.snapshots.iter().filter_map(f).max().unwrap_or(0) as f64;
        self.local_ts.set(newest(&|e| e.shown.local.then_some(e.shown.taken)));
        self.remote_ts.set(newest(&|e| {
            e.shown.uploaded.filter(|_| !e.remote_pruned).map(|_| e.shown.taken)
        }));
        let t = cat.last_restore_test.as_ref();
        self.test_ts.set(t.map_or(0.0, |t| t.at as f64));
        self.test_ok.set(i64::from(t.is_some_and(|t| t.passed)));
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `vault-20261201T190500.123Z.snap`: sorts by time.
fn snapshot_name() -> String {
    let t = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    format!("vault-{}.snap", t.replace(['-', ':'], ""))
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VaultError + 'a {
    move |source| VaultError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Vault {
    fn catalogue_path(&self) -> PathBuf {
        self.state_dir().join(CATALOGUE)
    }

    pub(super) fn catalogue(&self) -> Result<Catalogue, VaultError> {
        Ok(state::read_json(&self.catalogue_path())
            .map_err(VaultError::State)?
            .unwrap_or_default())
    }

    pub(super) fn save_catalogue(&self, cat: &Catalogue) -> Result<(), VaultError> {
        state::write_json(&self.catalogue_path(), cat).map_err(VaultError::State)?;
        self.snap.export(cat);
        Ok(())
    }

    pub(super) fn snapshot_dir(&self, s: &Snapshots) -> PathBuf {
        self.host.path(&s.dir)
    }

    pub(super) fn bucket(&self, s: &Snapshots) -> Option<Result<Bucket, s3::S3Error>> {
        s.s3.as_ref().map(|cfg| Bucket::open(cfg, |p| self.host.path(p)))
    }

    pub(super) fn bulwark_token(&self, v: &VaultProfile) -> Result<Secret, VaultError> {
        self.store(v)
            .get(cred::BULWARK_TOKEN)?
            .ok_or_else(|| VaultError::Conflict("Bulwark's Vault token is missing from the store".to_owned()))
    }

    /// Take one snapshot now, upload what is pending, apply retention.
    pub(super) fn take_snapshot(
        &mut self,
        cx: &mut Cx<'_>,
        v: &VaultProfile,
        s: &Snapshots,
    ) -> Result<SnapshotEntry, VaultError> {
        let t0 = Instant::now();
        let result = self.write_snapshot(v, s);
        let entry = match result {
            Ok(e) => e,
            Err(e) => {
                cx.event(&audit::VLT_SNAPSHOT_FAILED, Outcome::Failure, format!("snapshot: {e}"));
                self.snap.last_error = Some(e.to_string());
                return Err(e);
            }
        };
        self.snap.last_error = None;
        let mut entry = entry;
        entry.shown.took_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        cx.event(
            &audit::VLT_SNAPSHOT_TAKEN,
            Outcome::Success,
            format!(
                "{} ({} bytes, sha256 {})",
                entry.shown.name, entry.shown.size, entry.shown.sha256
            ),
        );
        let mut cat = self.catalogue()?;
        cat.snapshots.push(entry.clone());
        self.save_catalogue(&cat)?;
        self.snap.retry_at = None;
        self.snap.backoff = Duration::ZERO;
        self.upload_pending(cx, s, &mut cat)?;
        self.prune(cx, s, &mut cat)?;
        Ok(cat
            .snapshots
            .iter()
            .find(|e| e.shown.name == entry.shown.name)
            .map_or(entry.shown, |e| e.shown.clone()))
    }

    /// Canary, then the snapshot into its file: the catalogue entry.
    fn write_snapshot(&mut self, v: &VaultProfile, s: &Snapshots) -> Result<Entry, VaultError> {
        let record = custody::read_record(&self.host)?;
        if record.as_ref().is_none_or(|r| r.initialised.is_none()) {
            return Err(VaultError::Conflict(
                "the Vault is not initialised by Bulwark yet: nothing to snapshot".to_owned(),
            ));
        }
        let token = self.bulwark_token(v)?;
        let client = self.client(v)?;
        let canary = custody::random_hex()?;
        client.write_canary(&token, &canary)?;
        let dir = self.snapshot_dir(s);
        state::private_dir(&dir, 0o700).map_err(VaultError::State)?;
        let name = snapshot_name();
        let path = dir.join(&name);
        let tmp = state::tmp_path(&path);
        let written = (|| {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            let mut w = Hashing {
                inner: std::io::BufWriter::new(f),
                hash: Sha256::new(),
            };
            let size = client.snapshot_into(&token, &mut w).map_err(|e| match e {
                // A full disk shows here as the copy failing: name the file.
                VaultError::Api { reason, .. } if reason.contains("No space") || reason.contains("os error") => {
                    VaultError::Io {
                        op: "write",
                        path: tmp.clone(),
                        source: std::io::Error::other(reason),
                    }
                }
                other => other,
            })?;
            let sha = hex::encode(w.hash.finalize_reset());
            let f = w.inner.into_inner().map_err(|e| io("write", &tmp)(e.into_error()))?;
            f.sync_all().map_err(io("fsync", &tmp))?;
            if size == 0 {
                return Err(VaultError::Api {
                    call: "GET /v1/sys/storage/raft/snapshot".to_owned(),
                    reason: "an empty snapshot".to_owned(),
                });
            }
            Ok((size, sha))
        })();
        let (size, sha256) = match written {
            Ok(x) => x,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, &path).map_err(io("rename into", &path))?;
        state::sync_dir(&dir).map_err(VaultError::State)?;
        Ok(Entry {
            shown: SnapshotEntry {
                name,
                taken: now_unix(),
                size,
                sha256,
                local: true,
                uploaded: None,
                upload_error: None,
                ..SnapshotEntry::default()
            },
            canary_sha256: sha256_hex(canary.as_bytes()),
            remote_pruned: false,
        })
    }

    /// Upload every local snapshot not off-site yet, oldest first.
    fn upload_pending(&mut self, cx: &mut Cx<'_>, s: &Snapshots, cat: &mut Catalogue) -> Result<(), VaultError> {
        if cat.pending() == 0 {
            return Ok(());
        }
        let Some(bucket) = self.bucket(s) else { return Ok(()) };
        let dir = self.snapshot_dir(s);
        let mut failed = false;
        let bucket = match bucket {
            Ok(b) => Ok(b),
            Err(e) => Err(e.to_string()),
        };
        for e in cat
            .snapshots
            .iter_mut()
            .filter(|e| e.shown.local && e.shown.uploaded.is_none() && !e.remote_pruned)
        {
            let t0 = Instant::now();
            let result = bucket.as_ref().map_err(Clone::clone).and_then(|b| {
                let path = dir.join(&e.shown.name);
                let bytes = fs::read(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
                if sha256_hex(&bytes) != e.shown.sha256 {
                    return Err(format!(
                        "{} no longer has the SHA-256 recorded when it was taken; not uploaded",
                        path.display()
                    ));
                }
                b.upload(&e.shown.name, bytes, &e.shown.sha256)
                    .map_err(|err| err.to_string())
            });
            match result {
                Ok(()) => {
                    e.shown.uploaded = Some(now_unix());
                    e.shown.upload_ms = Some(u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX));
                    e.shown.upload_error = None;
                    let where_ = bucket.as_ref().map(|b| b.key(&e.shown.name)).unwrap_or_default();
                    cx.event(
                        &audit::VLT_SNAPSHOT_UPLOADED,
                        Outcome::Success,
                        format!("{} -> {where_} (sha256 {} read back)", e.shown.name, e.shown.sha256),
                    );
                }
                Err(msg) => {
                    failed = true;
                    if e.shown.upload_error.as_deref() != Some(msg.as_str()) {
                        cx.event(
                            &audit::VLT_SNAPSHOT_FAILED,
                            Outcome::Failure,
                            format!("upload of {} (kept locally, retried): {msg}", e.shown.name),
                        );
                        log::warn!(snapshot = e.shown.name.as_str(), error = msg.as_str(); "Vault snapshot not uploaded");
                    }
                    e.shown.upload_error = Some(msg);
                }
            }
        }
        if failed {
            self.snap.backoff = (self.snap.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
            self.snap.retry_at = Some(Instant::now() + self.snap.backoff);
        } else {
            self.snap.backoff = Duration::ZERO;
            self.snap.retry_at = None;
        }
        self.save_catalogue(cat)
    }

    /// Keep the newest `keep` snapshots locally and in the bucket.
    fn prune(&mut self, cx: &mut Cx<'_>, s: &Snapshots, cat: &mut Catalogue) -> Result<(), VaultError> {
        let keep = usize::try_from(s.keep).unwrap_or(usize::MAX);
        let dir = self.snapshot_dir(s);
        let mut removed = Vec::new();
        let local: Vec<usize> = (0..cat.snapshots.len())
            .filter(|i| cat.snapshots[*i].shown.local)
            .collect();
        for i in local.iter().take(local.len().saturating_sub(keep)) {
            let e = &mut cat.snapshots[*i];
            let path = dir.join(&e.shown.name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io("remove", &path)(err)),
            }
            e.shown.local = false;
            removed.push(format!("local {}", e.shown.name));
        }
        if let Some(Ok(bucket)) = self.bucket(s) {
            match bucket.list() {
                Ok(objects) => {
                    let ours: Vec<_> = objects.iter().filter(|o| s3::is_snapshot_name(&o.key)).collect();
                    for o in ours.iter().take(ours.len().saturating_sub(keep)) {
                        if let Err(err) = bucket.delete(&o.key) {
                            log::warn!(error:display = err; "cannot remove an old off-site Vault snapshot");
                            continue;
                        }
                        let name = bucket.name_of(&o.key).to_owned();
                        if let Some(e) = cat.snapshots.iter_mut().find(|e| e.shown.name == name) {
                            e.remote_pruned = true;
                        }
                        removed.push(format!("remote {}", o.key));
                    }
                }
                Err(err) => log::warn!(error:display = err; "cannot list the off-site Vault snapshots"),
            }
        }
        cat.snapshots
            .retain(|e| e.shown.local || (e.shown.uploaded.is_some() && !e.remote_pruned));
        if !removed.is_empty() {
            cx.event(
                &audit::VLT_SNAPSHOT_PRUNED,
                Outcome::Success,
                format!("keep = {}: removed {}", s.keep, removed.join(", ")),
            );
        }
        self.save_catalogue(cat)
    }

    /// The schedule, from the module's tick: a due snapshot, a due upload
    /// retry, a due restore test.
    pub(super) fn snapshot_tick(&mut self, cx: &mut Cx<'_>, v: &VaultProfile) {
        if !self.snap.cleaned {
            self.snap.cleaned = true;
            self.cleanup_restore_test();
        }
        let Some(s) = v.snapshots.clone() else { return };
        // Unsealed, and initialised by Bulwark (its token exists).
        let unsealed = self.watch.last.as_ref().is_some_and(|st| st.initialized && !st.sealed)
            && custody::read_record(&self.host)
                .ok()
                .flatten()
                .is_some_and(|r| r.initialised.is_some());
        let cat = match self.catalogue() {
            Ok(c) => c,
            Err(e) => {
                self.snap.last_error = Some(e.to_string());
                return;
            }
        };
        self.snap.export(&cat);
        let newest = cat.snapshots.iter().map(|e| e.shown.taken).max();
        let due = newest.is_none_or(|t| now_unix() >= t.saturating_add(s.every.as_secs()));
        let allowed = self.snap.not_before.is_none_or(|t| Instant::now() >= t);
        if unsealed && due && allowed {
            if self.take_snapshot(cx, v, &s).is_err() {
                self.snap.backoff = (self.snap.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                self.snap.not_before = Some(Instant::now() + self.snap.backoff);
            } else {
                self.snap.not_before = None;
            }
            return;
        }
        if cat.pending() > 0 && self.snap.retry_at.is_none_or(|t| Instant::now() >= t) {
            let mut cat = cat;
            let result = self
                .upload_pending(cx, &s, &mut cat)
                .and_then(|()| self.prune(cx, &s, &mut cat));
            if let Err(e) = result {
                log::warn!(error:display = e; "Vault snapshot upload retry");
            }
            return;
        }
        let Some(every) = s.restore_test_every else { return };
        // A Shamir snapshot opens only with the operator's shares: on demand.
        if v.custody == Custody::Manual || !unsealed || cat.latest().is_none() {
            return;
        }
        let last = cat.last_restore_test.as_ref().map(|t| t.at);
        let test_due = last.is_none_or(|t| now_unix() >= t.saturating_add(every.as_secs()));
        if test_due && self.snap.test_not_before.is_none_or(|t| Instant::now() >= t) {
            self.snap.test_not_before = Some(Instant::now() + FIRST_BACKOFF);
            let _ = self.restore_test(cx, v, &s, &[]);
        }
    }

    /// `vault snapshots`: the catalogue and what the bucket holds.
    pub(super) fn snapshots_listing(&mut self, s: &Snapshots) -> Result<SnapshotsResponse, VaultError> {
        let cat = self.catalogue()?;
        let mut out = SnapshotsResponse {
            dir: s.dir.clone(),
            snapshots: cat.snapshots.iter().map(|e| e.shown.clone()).collect(),
            last_restore_test: cat.last_restore_test.clone(),
            ..SnapshotsResponse::default()
        };
        match self.bucket(s) {
            None => {}
            Some(Err(e)) => out.remote_error = Some(e.to_string()),
            Some(Ok(b)) => {
                out.remote = Some(b.describe());
                match b.list() {
                    Ok(objects) => {
                        out.objects = objects
                            .into_iter()
                            .map(|o| {
                                let name = b.name_of(&o.key).to_owned();
                                RemoteObject {
                                    sha256: cat
                                        .snapshots
                                        .iter()
                                        .find(|e| e.shown.name == name && e.shown.uploaded.is_some())
                                        .map(|e| e.shown.sha256.clone()),
                                    key: o.key,
                                    size: o.size,
                                    modified: o.modified,
                                }
                            })
                            .collect();
                    }
                    Err(e) => out.remote_error = Some(e.to_string()),
                }
            }
        }
        Ok(out)
    }

    /// The `vault-snapshots` health check.
    pub(super) fn snapshot_check(&mut self, v: &VaultProfile) -> Option<Check> {
        let s = v.snapshots.as_ref()?;
        let mut level = Level::Ok;
        let mut why = Vec::new();
        let mut raise = |l: Level, msg: String| {
            level = level.max(l);
            why.push(msg);
        };
        let cat = match self.catalogue() {
            Ok(c) => c,
            Err(e) => {
                raise(Level::Critical, e.to_string());
                Catalogue::default()
            }
        };
        self.snap.export(&cat);
        let now = now_unix();
        let age = |t: u64| humantime::format_duration(Duration::from_secs(now.saturating_sub(t))).to_string();
        if let Some(e) = &self.snap.last_error {
            raise(Level::Warning, format!("the last snapshot failed: {e}"));
        }
        match cat
            .snapshots
            .iter()
            .filter(|e| e.shown.local)
            .map(|e| e.shown.taken)
            .max()
        {
            Some(t) => raise(Level::Ok, format!("last snapshot {} ago", age(t))),
            None => raise(Level::Ok, "no snapshot yet".to_owned()),
        }
        if s.s3.is_some() {
            let pending: Vec<&Entry> = cat
                .snapshots
                .iter()
                .filter(|e| e.shown.local && e.shown.uploaded.is_none() && !e.remote_pruned)
                .collect();
            if let Some(oldest) = pending.first() {
                raise(
                    Level::Warning,
                    format!(
                        "{} snapshot(s) not off-site yet, the oldest taken {} ago: {}",
                        pending.len(),
                        age(oldest.shown.taken),
                        oldest.shown.upload_error.as_deref().unwrap_or("upload pending")
                    ),
                );
            }
            let remote = cat
                .snapshots
                .iter()
                .filter(|e| e.shown.uploaded.is_some() && !e.remote_pruned)
                .map(|e| e.shown.taken)
                .max();
            let limit = 2 * s.every.as_secs();
            match remote {
                Some(t) if now.saturating_sub(t) > limit => raise(
                    Level::Warning,
                    format!(
                        "the newest off-site snapshot is {} old (more than twice `every`)",
                        age(t)
                    ),
                ),
                Some(t) => raise(Level::Ok, format!("off-site {} ago", age(t))),
                None => {}
            }
        }
        match (&cat.last_restore_test, v.custody) {
            (Some(t), _) if !t.passed => raise(
                Level::Critical,
                format!(
                    "the restore test of {} failed {} ago: {}",
                    t.snapshot,
                    age(t.at),
                    t.reason
                ),
            ),
            // Nothing runs it on its own under manual custody: say when it is overdue.
            (Some(t), Custody::Manual)
                if s.restore_test_every
                    .is_some_and(|every| now.saturating_sub(t.at) > 2 * every.as_secs()) =>
            {
                raise(
                    Level::Warning,
                    format!(
                        "the last restore test passed {} ago, more than twice `restore_test_every`; a manual \
                         (Shamir) snapshot opens only with the original shares: `bulwarkctl vault restore-test \
                         --shares`",
                        age(t.at)
                    ),
                )
            }
            (Some(t), _) => raise(Level::Ok, format!("restore test passed {} ago", age(t.at))),
            (None, Custody::Manual) => raise(
                Level::Ok,
                "no restore test yet: a manual (Shamir) snapshot opens only with the original shares, so \
                 restore tests run on demand: `bulwarkctl vault restore-test --shares`"
                    .to_owned(),
            ),
            (None, _) => {}
        }
        Some(Check {
            name: "vault-snapshots".to_owned(),
            module: String::new(),
            level,
            reason: why.join("; "),
        })
    }
}
