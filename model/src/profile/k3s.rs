//! `[k3s]`: where the K3s API server binds, and where its own etcd
//! snapshots go.

use std::net::IpAddr;

use serde::Serialize;
use toml::{Table, Value};

use super::fields::{dns_name, ip_addr};
use super::wireguard::WireGuard;
use super::{Checker, S3Credentials, S3};

const K3S_KEYS: &[&str] = &["bind", "tls_san", "restart", "etcd_snapshots"];
const ETCD_KEYS: &[&str] = &["schedule", "retention", "s3", "folder"];
/// Where K3s's snapshots go under the Vault's prefix unless `folder` says otherwise.
const ETCD_FOLDER: &str = "k3s-etcd";
const FOLDER_FORM: &str = "like \"hosts/vps1/k3s-etcd\" (letters, digits, - _ . /, no leading or trailing /)";
const CRON_DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// `[k3s]`: where the K3s API server binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K3s {
    /// bind-address, advertise-address and node-ip.
    pub bind: K3sBind,
    /// Extra subject alternative names for the API server certificate.
    pub tls_san: Vec<String>,
    /// Restart k3s.service when Bulwark's drop-in changed.
    pub restart: bool,
    /// `[k3s.etcd_snapshots]`: K3s's own etcd snapshot settings.
    pub etcd_snapshots: Option<EtcdSnapshots>,
}

/// `[k3s.etcd_snapshots]`: handed to K3s, which takes and prunes the
/// snapshots of its embedded etcd itself; Bulwark never copies K3s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdSnapshots {
    /// `etcd-snapshot-schedule-cron`; `None` leaves K3s's own (every 12 hours).
    pub schedule: Option<String>,
    /// `etcd-snapshot-retention`; `None` leaves K3s's own (5).
    pub retention: Option<u32>,
    /// `s3 = true`: the `[vault.snapshots.s3]` bucket, under its own folder.
    pub s3: Option<EtcdS3>,
}

impl EtcdSnapshots {
    /// `every 12 h (K3s's default), keep 5 (K3s's default), to s3://bucket/folder at host`,
    /// for plans, health and `bulwarkctl show`.
    pub fn describe(&self) -> String {
        let mut s = match &self.schedule {
            Some(cron) => format!("at \"{cron}\""),
            None => "every 12 h (K3s's default)".to_owned(),
        };
        match self.retention {
            Some(n) => s.push_str(&format!(", keep {n}")),
            None => s.push_str(", keep 5 (K3s's default)"),
        }
        if let Some(s3) = &self.s3 {
            s.push_str(&format!(", to s3://{}/{} at {}", s3.bucket, s3.folder, s3.endpoint));
        }
        s
    }
}

/// The Vault's off-site bucket as K3s's `etcd-s3-*` settings want it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdS3 {
    /// `host[:port]`: K3s takes no scheme.
    pub endpoint: String,
    /// Plain HTTP (a loopback endpoint): `etcd-s3-insecure`.
    pub insecure: bool,
    pub bucket: String,
    /// A folder of its own, so that neither retention sees the other's objects.
    pub folder: String,
    pub region: String,
    /// The Vault's credentials: K3s gets the keys in a 0600 drop-in.
    pub credentials: S3Credentials,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum K3sBind {
    /// The WireGuard address (requires `[wireguard]`).
    Vpn,
    /// An explicit address.
    #[serde(untagged)]
    Ip(IpAddr),
}

impl Checker<'_> {
    /// `vault_s3`: the `[vault.snapshots.s3]` bucket, `Err` when `[vault]`
    /// was refused (its own errors say why).
    pub(super) fn k3s(
        &mut self,
        t: &Table,
        wireguard: Option<&WireGuard>,
        vault_s3: Result<Option<&S3>, ()>,
    ) -> Option<K3s> {
        const P: &str = "k3s";
        self.unknown_keys(P, t, K3S_KEYS);
        let bind = match t.get("bind").map(|v| (v, v.as_str())) {
            None | Some((_, Some("vpn"))) => {
                if wireguard.is_none() {
                    self.err(
                        "k3s.bind",
                        "\"vpn\" needs a [wireguard] section; add one or give an IP address",
                    );
                }
                Some(K3sBind::Vpn)
            }
            Some((_, Some(s))) => match ip_addr(s) {
                Ok(ip) if !ip.is_unspecified() => Some(K3sBind::Ip(ip)),
                Ok(ip) => {
                    self.err(
                        "k3s.bind",
                        format!("{ip} would expose the API on every interface; use \"vpn\" or one address"),
                    );
                    None
                }
                // An address in an ambiguous form: say which and what to write.
                Err(reason) if s.parse::<IpAddr>().is_ok() || s.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                    self.err("k3s.bind", reason);
                    None
                }
                Err(_) => {
                    self.err("k3s.bind", format!("{s:?} is neither \"vpn\" nor an IP address"));
                    None
                }
            },
            Some((v, None)) => {
                self.err(
                    "k3s.bind",
                    format!("expected \"vpn\" or an IP address, found {}", v.type_str()),
                );
                None
            }
        };
        let tls_san = self.array(t, P, "tls_san", "IP addresses or DNS names", |v| {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a string, found {}", v.type_str()))?;
            san(s).map(|()| s.to_owned())
        });
        let restart = self.bool(t, P, "restart").unwrap_or(true);
        let etcd_snapshots = match t.get("etcd_snapshots") {
            None => Ok(None),
            Some(Value::Table(et)) => self.etcd_snapshots(et, vault_s3).map(Some).ok_or(()),
            Some(v) => {
                self.err(
                    "k3s.etcd_snapshots",
                    format!("expected a table, found {}", v.type_str()),
                );
                Err(())
            }
        };
        Some(K3s {
            bind: bind?,
            tls_san,
            restart,
            etcd_snapshots: etcd_snapshots.ok()?,
        })
    }

    fn etcd_snapshots(&mut self, t: &Table, vault_s3: Result<Option<&S3>, ()>) -> Option<EtcdSnapshots> {
        const P: &str = "k3s.etcd_snapshots";
        self.unknown_keys(P, t, ETCD_KEYS);
        let schedule = match t.get("schedule") {
            None => Ok(None),
            Some(_) => self
                .string(t, P, "schedule")
                .and_then(|s| match cron(&s) {
                    Ok(()) => Some(Some(s)),
                    Err(reason) => {
                        self.err("k3s.etcd_snapshots.schedule", reason);
                        None
                    }
                })
                .ok_or(()),
        };
        let retention = match t.get("retention") {
            None => Ok(None),
            Some(Value::Integer(n)) if (1..=1000).contains(n) => Ok(u32::try_from(*n).ok()),
            Some(v) => {
                self.err(
                    "k3s.etcd_snapshots.retention",
                    format!("expected a number in 1-1000, found {v}"),
                );
                Err(())
            }
        };
        let folder = match t.get("folder") {
            None => None,
            Some(_) => match self.string(t, P, "folder") {
                Some(f) if folder_ok(&f) => Some(f),
                Some(f) => {
                    self.err("k3s.etcd_snapshots.folder", format!("{f:?}: {FOLDER_FORM}"));
                    return None;
                }
                None => return None,
            },
        };
        let s3 = match (self.bool(t, P, "s3"), vault_s3) {
            (None | Some(false), _) => {
                if folder.is_some() {
                    self.err("k3s.etcd_snapshots.folder", "only with s3 = true");
                }
                Ok(None)
            }
            (Some(true), Ok(Some(s3))) => self.etcd_s3(s3, folder).map(Some).ok_or(()),
            (Some(true), Ok(None)) => {
                self.err(
                    "k3s.etcd_snapshots.s3",
                    "true hands K3s the [vault.snapshots.s3] bucket, and there is none; add one or leave s3 out",
                );
                Err(())
            }
            (Some(true), Err(())) => Err(()),
        };
        Some(EtcdSnapshots {
            schedule: schedule.ok()?,
            retention: retention.ok()?,
            s3: s3.ok()?,
        })
    }

    fn etcd_s3(&mut self, s3: &S3, folder: Option<String>) -> Option<EtcdS3> {
        let (insecure, rest) = match s3.endpoint.strip_prefix("http://") {
            Some(rest) => (true, rest),
            None => (false, s3.endpoint.strip_prefix("https://").unwrap_or(&s3.endpoint)),
        };
        if rest.contains('/') {
            self.err(
                "k3s.etcd_snapshots.s3",
                format!(
                    "K3s takes an S3 endpoint as host[:port] only, and vault.snapshots.s3.endpoint {:?} has a path",
                    s3.endpoint
                ),
            );
            return None;
        }
        let folder = folder.unwrap_or_else(|| format!("{}{ETCD_FOLDER}", s3.prefix));
        if format!("{folder}/") == s3.prefix {
            self.err(
                "k3s.etcd_snapshots.folder",
                format!("{folder:?} is vault.snapshots.s3.prefix: give K3s a folder of its own"),
            );
            return None;
        }
        Some(EtcdS3 {
            endpoint: rest.to_owned(),
            insecure,
            bucket: s3.bucket.clone(),
            folder,
            region: s3.region.clone(),
            credentials: s3.credentials.clone(),
        })
    }
}

fn folder_ok(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 256
        && !f.starts_with('/')
        && !f.ends_with('/')
        && !f.split('/').any(|c| c.is_empty() || c == "..")
        && f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A cron expression as K3s's scheduler takes it: five fields of digits,
/// `*`, `/`, `,`, `-`, or one of its `@` descriptors.
fn cron(s: &str) -> Result<(), String> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    let ok = CRON_DESCRIPTORS.contains(&s)
        || (fields.len() == 5
            && fields.iter().all(|f| {
                f.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '*' | '/' | ',' | '-'))
            }));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a cron schedule: five fields such as \"0 */6 * * *\", or one of {}",
            CRON_DESCRIPTORS.join(" ")
        ))
    }
}

/// A subject alternative name: an IP address or a DNS name.
fn san(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() || dns_name(s) {
        Ok(())
    } else {
        Err(format!("{s:?} is neither an IP address nor a DNS name"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Profile;

    const SHA: &str = "9c5f36287c673f386e1533e9c044169a248e4ee50dd54810fa766e95bd41b788";

    /// A profile with K3s on an explicit address and, when `s3` is given,
    /// a Vault whose snapshots go to that `[vault.snapshots.s3]` table.
    fn profile(etcd: &str, s3: Option<&str>) -> String {
        let vault = s3.map_or(String::new(), |s3| {
            format!(
                "[vault]\nversion = \"2.7.2\"\nsource = {{ url = \"https://example.org/bao\", sha256 = \"{SHA}\" }}\n\
                 tls = \"off\"\ncustody = \"static\"\n[vault.snapshots]\nevery = \"6h\"\n[vault.snapshots.s3]\n{s3}\n"
            )
        });
        format!("[profile]\nname = \"t\"\n[k3s]\nbind = \"192.0.2.10\"\n[k3s.etcd_snapshots]\n{etcd}\n{vault}")
    }

    const S3_HTTPS: &str = "endpoint = \"https://s3.example.org\"\nbucket = \"backups\"\nprefix = \"hosts/vps1/\"\n\
                            region = \"eu-west-1\"\ncredentials = { file = \"/etc/bulwark/s3-credentials\" }";

    fn etcd(text: &str) -> EtcdSnapshots {
        Profile::parse("p.toml", text)
            .unwrap()
            .k3s
            .unwrap()
            .etcd_snapshots
            .unwrap()
    }

    #[test]
    fn s3_true_hands_k3s_the_vault_bucket_under_a_folder_of_its_own() {
        let e = etcd(&profile(
            "schedule = \"0 */6 * * *\"\nretention = 14\ns3 = true",
            Some(S3_HTTPS),
        ));
        assert_eq!((e.schedule.as_deref(), e.retention), (Some("0 */6 * * *"), Some(14)));
        assert_eq!(
            e.s3.unwrap(),
            EtcdS3 {
                endpoint: "s3.example.org".to_owned(),
                insecure: false,
                bucket: "backups".to_owned(),
                folder: "hosts/vps1/k3s-etcd".to_owned(),
                region: "eu-west-1".to_owned(),
                credentials: S3Credentials::File("/etc/bulwark/s3-credentials".to_owned()),
            }
        );
        let loopback = S3_HTTPS.replace("https://s3.example.org", "http://127.0.0.1:9000");
        let e = etcd(&profile("s3 = true\nfolder = \"etcd\"", Some(&loopback)));
        let s3 = e.s3.unwrap();
        assert_eq!(
            (s3.endpoint.as_str(), s3.insecure, s3.folder.as_str()),
            ("127.0.0.1:9000", true, "etcd")
        );
        // Without s3 the section only sets K3s's local schedule.
        let e = etcd(&profile("schedule = \"@daily\"", None));
        assert_eq!((e.schedule.as_deref(), e.retention, e.s3), (Some("@daily"), None, None));
    }

    #[test]
    fn bad_etcd_snapshot_sections_are_refused_naming_the_field() {
        let with_path = S3_HTTPS.replace("https://s3.example.org", "https://s3.example.org/store");
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            ("s3 = true", None, "k3s.etcd_snapshots.s3", "there is none"),
            (
                "s3 = \"vault\"",
                Some(S3_HTTPS),
                "k3s.etcd_snapshots.s3",
                "true or false",
            ),
            (
                "s3 = true",
                Some(&with_path),
                "k3s.etcd_snapshots.s3",
                "host[:port] only",
            ),
            (
                "s3 = true\nfolder = \"hosts/vps1\"",
                Some(S3_HTTPS),
                "k3s.etcd_snapshots.folder",
                "folder of its own",
            ),
            (
                "s3 = true\nfolder = \"/etcd/\"",
                Some(S3_HTTPS),
                "k3s.etcd_snapshots.folder",
                "no leading or trailing",
            ),
            (
                "s3 = true\nfolder = \"a/../b\"",
                Some(S3_HTTPS),
                "k3s.etcd_snapshots.folder",
                "no leading or trailing",
            ),
            (
                "folder = \"etcd\"",
                None,
                "k3s.etcd_snapshots.folder",
                "only with s3 = true",
            ),
            (
                "schedule = \"every 6h\"",
                None,
                "k3s.etcd_snapshots.schedule",
                "not a cron schedule",
            ),
            (
                "schedule = \"0 */6 * *\"",
                None,
                "k3s.etcd_snapshots.schedule",
                "five fields",
            ),
            (
                "schedule = \"0 0 * * * ; rm\"",
                None,
                "k3s.etcd_snapshots.schedule",
                "not a cron schedule",
            ),
            ("retention = 0", None, "k3s.etcd_snapshots.retention", "1-1000"),
            (
                "retension = 3",
                None,
                "k3s.etcd_snapshots.retension",
                "did you mean `retention`",
            ),
        ];
        for (etcd, s3, path, reason) in cases {
            let errors = Profile::parse("p.toml", &profile(etcd, *s3)).unwrap_err().errors;
            assert!(
                errors.iter().any(|e| e.path == *path && e.reason.contains(reason)),
                "{etcd}: wanted {path}: …{reason}…, got {errors:?}"
            );
        }
        // A refused [vault] is reported once, not again as a missing bucket.
        let bad_vault = S3_HTTPS.replace("backups", "B_1");
        let errors = Profile::parse("p.toml", &profile("s3 = true", Some(&bad_vault)))
            .unwrap_err()
            .errors;
        assert!(errors.iter().all(|e| !e.path.starts_with("k3s")), "{errors:?}");
    }
}
