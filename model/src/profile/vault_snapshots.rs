//! `[vault.snapshots]`: how often the Vault is snapshotted, how many are
//! kept, and the S3-compatible bucket the off-site copies go to.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use toml::{Table, Value};

use super::{humantime_opt, humantime_secs, join, Checker};

const SNAPSHOT_KEYS: &[&str] = &["every", "keep", "dir", "restore_test_every", "s3"];
const S3_KEYS: &[&str] = &["endpoint", "bucket", "prefix", "region", "credentials"];
/// Where snapshots are kept when the profile names no directory.
pub const SNAPSHOT_DIR: &str = "/var/lib/bulwark/vault/snapshots";
/// The name `systemd-creds encrypt --name=` must give the S3 credentials.
pub const S3_CREDENTIAL_NAME: &str = "bulwark-s3";

/// `[vault.snapshots]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshots {
    /// How often a snapshot is taken.
    #[serde(with = "humantime_secs")]
    pub every: Duration,
    /// How many snapshots are kept, locally and remotely each.
    pub keep: u32,
    /// The local directory (0700; each snapshot 0600).
    pub dir: String,
    /// How often the latest snapshot is restored into a throw-away Vault
    /// (`None`: only on demand, `restore_test_every = "off"`).
    #[serde(with = "humantime_opt")]
    pub restore_test_every: Option<Duration>,
    pub s3: Option<S3>,
}

/// `s3 = { … }`: an S3-compatible bucket for the off-site copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3 {
    /// `https://…` (plain `http://` only to a loopback address).
    pub endpoint: String,
    pub bucket: String,
    /// Key prefix inside the bucket: empty or ending in `/`.
    pub prefix: String,
    pub region: String,
    pub credentials: S3Credentials,
}

/// Where the access key and secret are (never in the profile). Either way
/// the content is `access_key_id = "…"` and `secret_access_key = "…"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum S3Credentials {
    /// A 0600 file owned by root.
    File(String),
    /// A `systemd-creds encrypt --name=bulwark-s3` file.
    SystemdCreds(String),
}

impl Checker<'_> {
    pub(super) fn vault_snapshots(&mut self, t: &Table) -> Option<Snapshots> {
        const P: &str = "vault.snapshots";
        self.unknown_keys(P, t, SNAPSHOT_KEYS);
        let every = match t.get("every") {
            None => {
                self.err("vault.snapshots.every", "missing: how often, e.g. \"6h\"");
                None
            }
            Some(_) => self.duration(t, P, "every", Duration::from_secs(10), Duration::from_secs(7 * 86_400)),
        };
        let keep = match t.get("keep") {
            None => Some(14),
            Some(Value::Integer(n)) if (1..=1000).contains(n) => u32::try_from(*n).ok(),
            Some(v) => {
                self.err(
                    "vault.snapshots.keep",
                    format!("expected a number in 1-1000, found {v}"),
                );
                None
            }
        };
        let dir = match t.get("dir") {
            None => Some(SNAPSHOT_DIR.to_owned()),
            Some(_) => self.string(t, P, "dir").and_then(|d| {
                if absolute(&d) && d != "/" {
                    Some(d.trim_end_matches('/').to_owned())
                } else {
                    self.err(
                        "vault.snapshots.dir",
                        format!("{d:?} is not an absolute path without .."),
                    );
                    None
                }
            }),
        };
        let restore_test_every = match t.get("restore_test_every") {
            None => Ok(Some(Duration::from_secs(86_400))),
            Some(Value::String(s)) if s == "off" => Ok(None),
            Some(_) => self
                .duration(
                    t,
                    P,
                    "restore_test_every",
                    Duration::from_secs(10),
                    Duration::from_secs(90 * 86_400),
                )
                .map(Some)
                .ok_or(()),
        };
        let s3 = match t.get("s3") {
            None => Ok(None),
            Some(Value::Table(st)) => self.vault_s3(st).map(Some).ok_or(()),
            Some(v) => {
                self.err(
                    "vault.snapshots.s3",
                    format!("expected a table, found {}", v.type_str()),
                );
                Err(())
            }
        };
        Some(Snapshots {
            every: every?,
            keep: keep?,
            dir: dir?,
            restore_test_every: restore_test_every.ok()?,
            s3: s3.ok()?,
        })
    }

    fn vault_s3(&mut self, t: &Table) -> Option<S3> {
        const P: &str = "vault.snapshots.s3";
        self.unknown_keys(P, t, S3_KEYS);
        let endpoint = self.string(t, P, "endpoint").and_then(|e| {
            let loopback_http = e
                .strip_prefix("http://")
                .and_then(|rest| rest.split('/').next())
                .and_then(|hp| hp.parse::<SocketAddr>().ok())
                .is_some_and(|sa| sa.ip().is_loopback());
            let https = e.strip_prefix("https://").is_some_and(|rest| !rest.is_empty());
            if https || loopback_http {
                Some(e.trim_end_matches('/').to_owned())
            } else {
                self.err(
                    "vault.snapshots.s3.endpoint",
                    format!("{e:?}: use https:// (plain http:// only to a loopback address:port)"),
                );
                None
            }
        });
        let bucket = self.string(t, P, "bucket").and_then(|b| {
            // S3's bucket naming rules (the subset every implementation accepts).
            let ok = (3..=63).contains(&b.len())
                && b.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
                && b.starts_with(|c: char| c.is_ascii_alphanumeric())
                && b.ends_with(|c: char| c.is_ascii_alphanumeric());
            if ok {
                Some(b)
            } else {
                self.err(
                    "vault.snapshots.s3.bucket",
                    format!("{b:?} is not a bucket name: 3-63 of a-z 0-9 . -, starting and ending alphanumeric"),
                );
                None
            }
        });
        let prefix = match t.get("prefix") {
            None => Some(String::new()),
            Some(_) => self.string(t, P, "prefix").and_then(|p| {
                let ok = p.is_empty()
                    || (p.ends_with('/')
                        && !p.starts_with('/')
                        && p.len() <= 256
                        && !p.split('/').any(|c| c == "..")
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')));
                if ok {
                    Some(p)
                } else {
                    self.err(
                        "vault.snapshots.s3.prefix",
                        format!("{p:?}: empty, or like \"hosts/vault1/\" (letters, digits, - _ . /, ending in /)"),
                    );
                    None
                }
            }),
        };
        let region = match t.get("region") {
            None => Some("us-east-1".to_owned()),
            Some(_) => self.string(t, P, "region").and_then(|r| {
                if !r.is_empty() && r.len() <= 64 && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    Some(r)
                } else {
                    self.err(
                        "vault.snapshots.s3.region",
                        format!("{r:?} is not a region such as \"eu-west-1\""),
                    );
                    None
                }
            }),
        };
        let credentials = self.s3_credentials(t);
        Some(S3 {
            endpoint: endpoint?,
            bucket: bucket?,
            prefix: prefix?,
            region: region?,
            credentials: credentials?,
        })
    }

    fn s3_credentials(&mut self, t: &Table) -> Option<S3Credentials> {
        const P: &str = "vault.snapshots.s3.credentials";
        let how = "{ file = \"/etc/bulwark/s3-credentials\" } or { systemd_creds = \"/etc/bulwark/s3.cred\" }";
        let ct = match t.get("credentials") {
            Some(Value::Table(ct)) => ct,
            Some(v) => {
                self.err(
                    P,
                    format!(
                        "expected {how} (the keys never go in the profile), found {}",
                        v.type_str()
                    ),
                );
                return None;
            }
            None => {
                self.err(P, format!("missing: {how}"));
                return None;
            }
        };
        self.unknown_keys(P, ct, &["file", "systemd_creds"]);
        let (key, make): (&str, fn(String) -> S3Credentials) =
            match (ct.contains_key("file"), ct.contains_key("systemd_creds")) {
                (true, false) => ("file", S3Credentials::File),
                (false, true) => ("systemd_creds", S3Credentials::SystemdCreds),
                _ => {
                    self.err(P, format!("give exactly one of {how}"));
                    return None;
                }
            };
        let path = self.string(ct, P, key)?;
        if absolute(&path) {
            Some(make(path))
        } else {
            self.err(join(P, key), format!("{path:?} is not an absolute path without .."));
            None
        }
    }
}

fn absolute(p: &str) -> bool {
    p.starts_with('/') && !p.split('/').any(|c| c == "..")
}
