//! The off-site copies: an S3-compatible bucket through Apache Arrow's
//! `object_store` (SigV4 signing, retries), driven from a current-thread
//! tokio runtime so the engine thread stays synchronous.
//!
//! The access key and secret live in a 0600 file or a `systemd-creds`
//! file (never in the profile); they are read for each operation, held in
//! memory only, and scrubbed from every error text.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulwark_model::profile::{S3Credentials, S3, S3_CREDENTIAL_NAME};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use sha2::{Digest, Sha256};

use super::client::Secret;
use crate::host::Run;

const CREDS_TIMEOUT: Duration = Duration::from_secs(30);
/// One request (a snapshot of a few MB over a slow link fits).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("vault.snapshots.s3.credentials: cannot read {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    #[error("the S3 server at {endpoint} refused the credentials from {source_file} for bucket {bucket:?} ({reason})")]
    Refused {
        endpoint: String,
        bucket: String,
        source_file: String,
        reason: String,
    },
    #[error("bucket {bucket:?} does not exist at {endpoint}")]
    NoBucket { endpoint: String, bucket: String },
    #[error("cannot reach the S3 server at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("S3 {op} {key} at {endpoint}: {reason}")]
    Failed {
        op: &'static str,
        key: String,
        endpoint: String,
        reason: String,
    },
    #[error("the object {key} read back from the bucket has SHA-256 {actual}, the snapshot has {expected}")]
    Digest {
        key: String,
        expected: String,
        actual: String,
    },
}

impl S3Error {
    /// Worth retrying later (the server or the network), as opposed to a
    /// configuration the operator must fix.
    pub fn transient(&self) -> bool {
        matches!(self, S3Error::Unreachable { .. } | S3Error::Failed { .. })
    }
}

/// The access key and secret, as read from the credentials file.
pub(crate) struct KeyFile {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
}

/// An object in the bucket.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub size: u64,
    pub modified: u64,
}

/// The bucket of one profile, with its credentials loaded.
pub struct Bucket {
    cfg: S3,
    store: AmazonS3,
    /// For scrubbing error texts.
    access_key: Secret,
    secret: Secret,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("endpoint", &self.cfg.endpoint)
            .field("bucket", &self.cfg.bucket)
            .finish_non_exhaustive()
    }
}

pub(crate) fn source_file(c: &S3Credentials) -> &str {
    match c {
        S3Credentials::File(p) | S3Credentials::SystemdCreds(p) => p,
    }
}

/// Read the access key and secret (`host_path` resolves under --root).
pub(crate) fn load(c: &S3Credentials, host_path: impl Fn(&str) -> PathBuf) -> Result<KeyFile, S3Error> {
    let path = host_path(source_file(c));
    let fail = |reason: String| S3Error::Credentials {
        path: path.clone(),
        reason,
    };
    let bytes = match c {
        S3Credentials::File(_) => {
            let meta = fs::metadata(&path).map_err(|e| fail(e.to_string()))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "mode {mode:04o} lets others read it; chmod 600 it (nothing was sent)"
                )));
            }
            fs::read(&path).map_err(|e| fail(e.to_string()))?
        }
        S3Credentials::SystemdCreds(_) => {
            Run::new(super::custody::SYSTEMD_CREDS, CREDS_TIMEOUT)
                .arg("decrypt")
                .arg(format!("--name={S3_CREDENTIAL_NAME}"))
                .arg(&path)
                .arg("-")
                .output()
                .map_err(|e| fail(e.to_string()))?
                .stdout
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8".to_owned()))?;
    // Errors name the key, never quote the line (it may hold the secret).
    let mut keys = KeyFile {
        access_key_id: String::new(),
        secret_access_key: String::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once('=').and_then(|(k, v)| {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            Some((k.trim(), v.to_owned())).filter(|(_, v)| !v.is_empty() && !v.contains(['"', ' ']))
        });
        match parsed {
            Some(("access_key_id", v)) => keys.access_key_id = v,
            Some(("secret_access_key", v)) => keys.secret_access_key = v,
            _ => {
                return Err(fail(format!(
                    "line {}: expected access_key_id = \"…\" or secret_access_key = \"…\"",
                    n + 1
                )))
            }
        }
    }
    if keys.access_key_id.is_empty() || keys.secret_access_key.is_empty() {
        return Err(fail("access_key_id or secret_access_key is missing".to_owned()));
    }
    Ok(keys)
}

impl Bucket {
    pub fn open(cfg: &S3, host_path: impl Fn(&str) -> PathBuf) -> Result<Bucket, S3Error> {
        let keys = load(&cfg.credentials, host_path)?;
        let unreachable = |reason: String| S3Error::Unreachable {
            endpoint: cfg.endpoint.clone(),
            reason,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("no async runtime: {e}")))?;
        super::tls::install_provider();
        let store = AmazonS3Builder::new()
            .with_endpoint(&cfg.endpoint)
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&keys.access_key_id)
            .with_secret_access_key(&keys.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            })
            .with_client_options(
                // http:// only to loopback (validated with the profile).
                ClientOptions::new()
                    .with_allow_http(cfg.endpoint.starts_with("http://"))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(REQUEST_TIMEOUT),
            )
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Bucket {
            cfg: cfg.clone(),
            store,
            access_key: Secret(keys.access_key_id),
            secret: Secret(keys.secret_access_key),
            rt,
        })
    }

    /// `bucket/prefix` at the endpoint, for people.
    pub fn describe(&self) -> String {
        format!("{}/{}/{}", self.cfg.endpoint, self.cfg.bucket, self.cfg.prefix)
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.cfg.prefix)
    }

    /// An error of `object_store`, classified and scrubbed of the keys.
    fn error(&self, op: &'static str, key: &str, e: &object_store::Error) -> S3Error {
        let mut text = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            let more = s.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            src = s.source();
        }
        for secret in [&self.secret, &self.access_key] {
            text = text.replace(secret.expose(), "<redacted>");
        }
        let has = |needle: &str| text.contains(needle);
        let endpoint = self.cfg.endpoint.clone();
        if has("SignatureDoesNotMatch") || has("InvalidAccessKeyId") || has("AccessDenied") || has("403 Forbidden") {
            let reason = ["SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"]
                .into_iter()
                .find(|c| has(c))
                .unwrap_or("403 Forbidden")
                .to_owned();
            return S3Error::Refused {
                endpoint,
                bucket: self.cfg.bucket.clone(),
                source_file: source_file(&self.cfg.credentials).to_owned(),
                reason,
            };
        }
        if has("NoSuchBucket") {
            return S3Error::NoBucket {
                endpoint,
                bucket: self.cfg.bucket.clone(),
            };
        }
        if has("onnect") || has("timed out") || has("dns error") || has("error sending request") {
            return S3Error::Unreachable { endpoint, reason: text };
        }
        S3Error::Failed {
            op,
            key: key.to_owned(),
            endpoint,
            reason: text,
        }
    }

    /// Store `bytes` as `name`, read the object back and compare its
    /// SHA-256 with `sha256`.
    pub fn upload(&self, name: &str, bytes: Vec<u8>, sha256: &str) -> Result<(), S3Error> {
        let key = self.key(name);
        let path = ObjectPath::from(key.as_str());
        self.rt
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map_err(|e| self.error("PUT", &key, &e))?;
        let back = self.download(name)?;
        let actual = hex::encode(Sha256::digest(&back));
        if actual != sha256 {
            return Err(S3Error::Digest {
                key,
                expected: sha256.to_owned(),
                actual,
            });
        }
        Ok(())
    }

    pub fn download(&self, name: &str) -> Result<Vec<u8>, S3Error> {
        let key = self.key(name);
        let path = ObjectPath::from(key.as_str());
        self.rt
            .block_on(async {
                let got = self.store.get(&path).await?;
                got.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| self.error("GET", &key, &e))
    }

    /// The objects directly under the prefix, oldest name first.
    pub fn list(&self) -> Result<Vec<Object>, S3Error> {
        let prefix = self.cfg.prefix.trim_end_matches('/');
        let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        let listed = self
            .rt
            .block_on(self.store.list_with_delimiter(prefix.as_ref()))
            .map_err(|e| self.error("LIST", &self.cfg.prefix, &e))?;
        let mut out: Vec<Object> = listed
            .objects
            .into_iter()
            .map(|o| Object {
                key: o.location.to_string(),
                size: o.size,
                modified: u64::try_from(o.last_modified.timestamp()).unwrap_or(0),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let path = ObjectPath::from(key);
        self.rt
            .block_on(self.store.delete(&path))
            .map_err(|e| self.error("DELETE", key, &e))
    }

    /// The object's name without the prefix.
    pub fn name_of<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(self.cfg.prefix.as_str()).unwrap_or(key)
    }
}

/// Whether `p` names a snapshot file Bulwark wrote.
pub fn is_snapshot_name(p: &str) -> bool {
    Path::new(p)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("vault-") && n.ends_with(".snap"))
}
