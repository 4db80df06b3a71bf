//! `[vault]`: a pinned OpenBao (or Vault) binary, where it listens, and who
//! holds the key that unseals it.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use toml::{Table, Value};

use super::vault_snapshots::Snapshots;
use super::wireguard::WireGuard;
use super::{join, Checker};

const VAULT_KEYS: &[&str] = &[
    "implementation",
    "version",
    "source",
    "listen",
    "tls",
    "custody",
    "shares",
    "threshold",
    "credential_store",
    "transit",
    "revoke_root",
    "snapshots",
];
const SOURCE_KEYS: &[&str] = &["url", "path", "sha256"];
const TRANSIT_KEYS: &[&str] = &["address", "key_name", "mount_path", "token_file"];
/// OpenBao and Vault accept up to 255 shares; more than 16 people holding
/// one is not custody any more, it is a mailing list.
pub const MAX_SHARES: u8 = 16;

/// `[vault]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vault {
    pub implementation: Implementation,
    /// The version the pinned binary must report (`bao version`).
    pub version: String,
    pub source: Source,
    /// The API listener: loopback or the VPN address, nothing else.
    pub listen: SocketAddr,
    pub tls: Tls,
    pub custody: Custody,
    /// Shamir shares (manual custody) or recovery shares (static, transit).
    pub shares: u8,
    pub threshold: u8,
    /// Where Bulwark keeps the keys and tokens it holds for the Vault.
    pub credential_store: CredentialStore,
    /// `custody = "transit"`: the other Vault that unseals this one.
    pub transit: Option<Transit>,
    /// Revoke the root token right after init instead of showing it.
    pub revoke_root: bool,
    /// `[vault.snapshots]`: scheduled raft snapshots, off-site copies, restore tests.
    pub snapshots: Option<Snapshots>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    /// OpenBao: `bao server`; has the static seal and declarative init.
    Openbao,
    /// HashiCorp Vault: the same HTTP API.
    Vault,
}

impl Implementation {
    pub fn as_str(self) -> &'static str {
        match self {
            Implementation::Openbao => "openbao",
            Implementation::Vault => "vault",
        }
    }
}

/// Where the binary comes from; its SHA-256 is checked before it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub location: Location,
    /// Lower-case hex SHA-256 of the binary.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    /// Downloaded over HTTP(S).
    Url(String),
    /// Copied from a file on the host.
    Path(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Plain HTTP: only on loopback.
    Off,
    /// A certificate Bulwark generates for the listen address; Bulwark's
    /// own client trusts exactly that certificate.
    #[serde(rename = "self-signed")]
    SelfSigned,
    /// A certificate and key the operator provides (PEM files on the host).
    Files { cert: String, key: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Custody {
    /// Shamir shares held by people; `bulwarkctl vault unseal` after every start.
    Manual,
    /// OpenBao's `seal "static"` with a key Bulwark generates and keeps encrypted.
    Static,
    /// Another Vault's transit engine unseals this one.
    Transit,
}

impl Custody {
    pub fn as_str(self) -> &'static str {
        match self {
            Custody::Manual => "manual",
            Custody::Static => "static",
            Custody::Transit => "transit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialStore {
    /// `systemd-creds encrypt` (TPM2 when present, else the host key);
    /// handed to the unit with `LoadCredentialEncrypted=`.
    SystemdCreds,
    /// Plain files, 0600 in a 0700 directory (hosts without systemd-creds).
    File,
}

/// `[vault.transit]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transit {
    /// Base URL of the transit Vault, e.g. `https://vault2.example.org:8200`.
    pub address: String,
    pub key_name: String,
    pub mount_path: String,
    /// File holding the token for the transit server (never in the profile).
    pub token_file: String,
}

impl Checker<'_> {
    pub(super) fn vault(&mut self, t: &Table, wireguard: Option<&WireGuard>) -> Option<Vault> {
        const P: &str = "vault";
        self.unknown_keys(P, t, VAULT_KEYS);
        let implementation = match self.choice(t, P, "implementation", &["openbao", "vault"]) {
            Some("vault") => Implementation::Vault,
            _ => Implementation::Openbao,
        };
        let version = self.string(t, P, "version").and_then(|v| {
            let ok = !v.is_empty()
                && v.len() <= 32
                && v.starts_with(|c: char| c.is_ascii_digit())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
            if ok {
                Some(v)
            } else {
                self.err("vault.version", format!("{v:?} is not a version such as \"2.7.2\""));
                None
            }
        });
        let source = self.vault_source(t);
        let listen = self.vault_listen(t, wireguard);
        let tls = self.vault_tls(t, listen);
        let custody = match self.choice(t, P, "custody", &["manual", "static", "transit"]) {
            Some("manual") => Some(Custody::Manual),
            Some("static") => Some(Custody::Static),
            Some("transit") => Some(Custody::Transit),
            Some(_) => None,
            None if !t.contains_key("custody") => {
                self.err("vault.custody", "missing: choose \"manual\", \"static\" or \"transit\"");
                None
            }
            None => None,
        };
        if custody == Some(Custody::Static) && implementation == Implementation::Vault {
            self.err(
                "vault.custody",
                "\"static\" is OpenBao's seal \"static\"; HashiCorp Vault has no such seal: use implementation = \"openbao\"",
            );
        }
        let shares = self.small_count(t, "shares", 5);
        let threshold = self.small_count(t, "threshold", 3);
        if let (Some(s), Some(th)) = (shares, threshold) {
            if th > s {
                self.err(
                    "vault.threshold",
                    format!("{th} is more than the {s} shares: nobody could ever unseal"),
                );
            } else if s > 1 && th < 2 {
                self.err(
                    "vault.threshold",
                    "1 would let any single share holder unseal alone; use at least 2, or shares = 1",
                );
            }
        }
        let credential_store = match self.choice(t, P, "credential_store", &["systemd-creds", "file"]) {
            Some("file") => CredentialStore::File,
            _ => CredentialStore::SystemdCreds,
        };
        let transit = match (t.get("transit"), custody) {
            (Some(Value::Table(tt)), Some(Custody::Transit)) => self.vault_transit(tt),
            (Some(Value::Table(_)), _) => {
                self.err("vault.transit", "only used with custody = \"transit\"; remove it");
                None
            }
            (Some(v), _) => {
                self.err("vault.transit", format!("expected a table, found {}", v.type_str()));
                None
            }
            (None, Some(Custody::Transit)) => {
                self.err(
                    "vault.transit",
                    "missing: custody = \"transit\" needs { address, key_name, token_file }",
                );
                None
            }
            (None, _) => None,
        };
        let revoke_root = self.bool(t, P, "revoke_root").unwrap_or(false);
        let snapshots = match t.get("snapshots") {
            None => Ok(None),
            Some(Value::Table(st)) => self.vault_snapshots(st).map(Some).ok_or(()),
            Some(v) => {
                self.err("vault.snapshots", format!("expected a table, found {}", v.type_str()));
                Err(())
            }
        };
        let custody = custody?;
        if custody == Custody::Transit && transit.is_none() {
            return None;
        }
        Some(Vault {
            implementation,
            version: version?,
            source: source?,
            listen: listen?,
            tls: tls?,
            custody,
            shares: shares?,
            threshold: threshold?,
            credential_store,
            transit,
            revoke_root,
            snapshots: snapshots.ok()?,
        })
    }

    fn small_count(&mut self, t: &Table, key: &str, default: u8) -> Option<u8> {
        match t.get(key) {
            None => Some(default),
            Some(Value::Integer(n)) if (1..=i64::from(MAX_SHARES)).contains(n) => Some(*n as u8),
            Some(v) => {
                self.err(
                    join("vault", key),
                    format!("expected a number in 1-{MAX_SHARES}, found {v}"),
                );
                None
            }
        }
    }

    fn vault_source(&mut self, t: &Table) -> Option<Source> {
        let p = "vault.source";
        let st = match t.get("source") {
            Some(Value::Table(st)) => st,
            Some(v) => {
                self.err(
                    p,
                    format!(
                        "expected {{ url = …, sha256 = … }} or {{ path = …, sha256 = … }}, found {}",
                        v.type_str()
                    ),
                );
                return None;
            }
            None => {
                self.err(
                    p,
                    "missing: { url = \"https://…\", sha256 = \"…\" } or { path = \"/…\", sha256 = \"…\" }",
                );
                return None;
            }
        };
        self.unknown_keys(p, st, SOURCE_KEYS);
        let sha256 = self.string(st, p, "sha256").and_then(|h| {
            if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) {
                Some(h.to_ascii_lowercase())
            } else {
                self.err("vault.source.sha256", format!("{h:?} is not a SHA-256: 64 hex digits"));
                None
            }
        });
        let location = match (st.get("url"), st.get("path")) {
            (Some(_), Some(_)) => {
                self.err(p, "give url or path, not both");
                None
            }
            (Some(Value::String(u)), None) => {
                if u.starts_with("https://") || u.starts_with("http://") {
                    Some(Location::Url(u.clone()))
                } else {
                    self.err("vault.source.url", format!("{u:?} is not an http:// or https:// URL"));
                    None
                }
            }
            (None, Some(Value::String(path))) => {
                if path.starts_with('/') && !path.split('/').any(|c| c == "..") {
                    Some(Location::Path(path.clone()))
                } else {
                    self.err(
                        "vault.source.path",
                        format!("{path:?} is not an absolute path without .."),
                    );
                    None
                }
            }
            (Some(v), None) | (None, Some(v)) => {
                let key = if st.contains_key("url") { "url" } else { "path" };
                self.err(join(p, key), format!("expected a string, found {}", v.type_str()));
                None
            }
            (None, None) => {
                self.err(p, "missing: url or path");
                None
            }
        };
        Some(Source {
            location: location?,
            sha256: sha256?,
        })
    }

    fn vault_listen(&mut self, t: &Table, wireguard: Option<&WireGuard>) -> Option<SocketAddr> {
        let p = "vault.listen";
        let vpn = wireguard.map(|w| IpAddr::V4(w.address.addr()));
        let s = match t.get("listen") {
            None => "127.0.0.1:8200".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                self.err(
                    p,
                    format!("expected \"address:port\" or \"vpn:PORT\", found {}", v.type_str()),
                );
                return None;
            }
        };
        let addr = if let Some(port) = s.strip_prefix("vpn:") {
            let Some(vpn) = vpn else {
                self.err(
                    p,
                    "\"vpn:…\" needs a [wireguard] section; add one or listen on loopback",
                );
                return None;
            };
            match port.parse::<u16>() {
                Ok(port) if port != 0 => SocketAddr::new(vpn, port),
                _ => {
                    self.err(p, format!("{port:?} is not a port in 1-65535"));
                    return None;
                }
            }
        } else {
            match s.parse::<SocketAddr>() {
                Ok(a) if a.port() != 0 => a,
                _ => {
                    self.err(
                        p,
                        format!("{s:?} is not an address:port such as \"127.0.0.1:8200\" or \"vpn:8200\""),
                    );
                    return None;
                }
            }
        };
        if addr.port() > 65533 {
            self.err(
                p,
                format!(
                    "port {} leaves no room for raft's cluster port and the local admin port above it; use 1-65533",
                    addr.port()
                ),
            );
            return None;
        }
        if addr.ip().is_loopback() || Some(addr.ip()) == vpn {
            Some(addr)
        } else {
            let allowed = vpn.map_or("loopback".to_owned(), |v| format!("loopback or the VPN address {v}"));
            self.err(
                p,
                format!("{} is not allowed: Vault listens only on {allowed}", addr.ip()),
            );
            None
        }
    }

    fn vault_tls(&mut self, t: &Table, listen: Option<SocketAddr>) -> Option<Tls> {
        let p = "vault.tls";
        let tls = match t.get("tls") {
            None => {
                self.err(
                    p,
                    "missing: \"self-signed\", { cert = \"/…\", key = \"/…\" } or \"off\" (loopback only)",
                );
                return None;
            }
            Some(Value::String(s)) if s == "off" => Tls::Off,
            Some(Value::String(s)) if s == "self-signed" => Tls::SelfSigned,
            Some(Value::String(s)) => {
                self.err(
                    p,
                    format!("{s:?} is not \"self-signed\", \"off\" or {{ cert = \"/…\", key = \"/…\" }}"),
                );
                return None;
            }
            Some(Value::Table(tt)) => {
                self.unknown_keys(p, tt, &["cert", "key"]);
                let mut file = |key: &str| {
                    self.string(tt, p, key).and_then(|f| {
                        if f.starts_with('/') {
                            Some(f)
                        } else {
                            self.err(join(p, key), format!("{f:?} is not an absolute path"));
                            None
                        }
                    })
                };
                let (cert, key) = (file("cert"), file("key"));
                Tls::Files { cert: cert?, key: key? }
            }
            Some(v) => {
                self.err(p, format!("expected \"off\" or a table, found {}", v.type_str()));
                return None;
            }
        };
        if tls == Tls::Off && listen.is_some_and(|a| !a.ip().is_loopback()) {
            self.err(
                p,
                "\"off\" is allowed only on loopback: the VPN carries tokens in clear otherwise",
            );
            return None;
        }
        Some(tls)
    }

    fn vault_transit(&mut self, t: &Table) -> Option<Transit> {
        let p = "vault.transit";
        self.unknown_keys(p, t, TRANSIT_KEYS);
        let address = self.string(t, p, "address").and_then(|a| {
            let loopback_http = a
                .strip_prefix("http://")
                .and_then(|rest| rest.split('/').next())
                .and_then(|hp| hp.parse::<SocketAddr>().ok())
                .is_some_and(|sa| sa.ip().is_loopback());
            if a.starts_with("https://") || loopback_http {
                Some(a.trim_end_matches('/').to_owned())
            } else {
                self.err(
                    "vault.transit.address",
                    format!("{a:?}: use https:// (plain http:// only to a loopback address)"),
                );
                None
            }
        });
        let name = |c: &mut Checker<'_>, key: &str, default: Option<&str>| -> Option<String> {
            let v = match (t.get(key), default) {
                (None, Some(d)) => d.to_owned(),
                _ => c.string(t, p, key)?,
            };
            if !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '/'))
            {
                Some(v)
            } else {
                c.err(join(p, key), format!("{v:?}: use letters, digits, - _ /"));
                None
            }
        };
        let key_name = name(self, "key_name", None);
        let mount_path = name(self, "mount_path", Some("transit"));
        let token_file = self.string(t, p, "token_file").and_then(|f| {
            if f.starts_with('/') {
                Some(f)
            } else {
                self.err("vault.transit.token_file", format!("{f:?} is not an absolute path"));
                None
            }
        });
        Some(Transit {
            address: address?,
            key_name: key_name?,
            mount_path: mount_path?,
            token_file: token_file?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::Profile;

    const SHA: &str = "9c5f36287c673f386e1533e9c044169a248e4ee50dd54810fa766e95bd41b788";

    fn profile(vault: &str, wireguard: bool) -> String {
        let wg = if wireguard {
            "[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"\n"
        } else {
            ""
        };
        format!("[profile]\nname = \"t\"\n{wg}[vault]\n{vault}\n")
    }

    fn base(extra: &str) -> String {
        format!("version = \"2.7.2\"\nsource = {{ url = \"https://example.org/bao\", sha256 = \"{SHA}\" }}\n{extra}")
    }

    fn snap(extra: &str) -> String {
        let every = if extra.starts_with("every") {
            ""
        } else {
            "every = \"6h\"\n"
        };
        format!("tls = \"off\"\ncustody = \"static\"\n[vault.snapshots]\n{every}{extra}\n")
    }

    #[test]
    fn a_snapshots_section_with_s3_parses_and_the_defaults_hold() {
        let text = profile(
            &base(&snap(
                "keep = 3\n[vault.snapshots.s3]\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"vault-snaps\"\n\
                 prefix = \"hosts/v1/\"\ncredentials = { systemd_creds = \"/etc/bulwark/s3.cred\" }",
            )),
            false,
        );
        let s = Profile::parse("p.toml", &text)
            .unwrap()
            .vault
            .unwrap()
            .snapshots
            .unwrap();
        assert_eq!(s.every, std::time::Duration::from_secs(6 * 3600));
        assert_eq!(s.keep, 3);
        assert_eq!(s.dir, crate::profile::SNAPSHOT_DIR);
        assert_eq!(s.restore_test_every, Some(std::time::Duration::from_secs(86_400)));
        let s3 = s.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str(), s3.region.as_str()),
            ("vault-snaps", "hosts/v1/", "us-east-1")
        );
        assert_eq!(
            s3.credentials,
            crate::profile::S3Credentials::SystemdCreds("/etc/bulwark/s3.cred".to_owned())
        );
        let off = profile(&base(&snap("restore_test_every = \"off\"")), false);
        let s = Profile::parse("p.toml", &off)
            .unwrap()
            .vault
            .unwrap()
            .snapshots
            .unwrap();
        assert_eq!((s.restore_test_every, s.s3), (None, None));
    }

    #[test]
    fn a_static_vault_on_the_vpn_with_its_own_tls_parses() {
        let text = profile(
            &base("listen = \"vpn:8200\"\ntls = { cert = \"/etc/bao/c.pem\", key = \"/etc/bao/k.pem\" }\ncustody = \"static\"\n"),
            true,
        );
        let v = Profile::parse("p.toml", &text).unwrap().vault.unwrap();
        assert_eq!(v.listen, "10.8.0.1:8200".parse().unwrap());
        assert_eq!((v.shares, v.threshold), (5, 3));
        assert_eq!(v.custody, super::Custody::Static);
        assert_eq!(v.credential_store, super::CredentialStore::SystemdCreds);
    }

    /// Each bad `[vault]` is refused naming its field.
    #[test]
    fn bad_vault_sections_are_refused_naming_the_field() {
        let cases: &[(&str, bool, &str, &str)] = &[
            (&base("listen = \"0.0.0.0:8200\"\ntls = \"off\"\ncustody = \"manual\""), false, "vault.listen", "not allowed"),
            (&base("listen = \"192.0.2.1:8200\"\ntls = \"off\"\ncustody = \"manual\""), true, "vault.listen", "loopback or the VPN address 10.8.0.1"),
            (&base("listen = \"vpn:8200\"\ntls = \"off\"\ncustody = \"manual\""), false, "vault.listen", "needs a [wireguard]"),
            (&base("listen = \"vpn:8200\"\ntls = \"off\"\ncustody = \"manual\""), true, "vault.tls", "only on loopback"),
            (&base("tls = \"off\"\ncustody = \"manual\"\nshares = 3\nthreshold = 4"), false, "vault.threshold", "more than the 3 shares"),
            (&base("tls = \"off\"\ncustody = \"manual\"\nshares = 3\nthreshold = 1"), false, "vault.threshold", "at least 2"),
            (&base("tls = \"off\"\ncustody = \"manual\"\nshares = 40"), false, "vault.shares", "1-16"),
            (&base("tls = \"off\"\ncustody = \"sometimes\""), false, "vault.custody", "not one of"),
            (&base("tls = \"off\""), false, "vault.custody", "missing"),
            (&base("tls = \"off\"\ncustody = \"transit\""), false, "vault.transit", "missing"),
            (&base("tls = \"off\"\ncustody = \"static\"\nimplementation = \"vault\""), false, "vault.custody", "HashiCorp Vault has no such seal"),
            ("version = \"2.7.2\"\nsource = { url = \"https://e/bao\", sha256 = \"abc\" }\ntls = \"off\"\ncustody = \"manual\"", false, "vault.source.sha256", "64 hex digits"),
            ("version = \"2.7.2\"\nsource = { url = \"ftp://e/bao\", sha256 = \"9c5f36287c673f386e1533e9c044169a248e4ee50dd54810fa766e95bd41b788\" }\ntls = \"off\"\ncustody = \"manual\"", false, "vault.source.url", "http"),
            ("version = \"latest\"\nsource = { path = \"/opt/bao\", sha256 = \"9c5f36287c673f386e1533e9c044169a248e4ee50dd54810fa766e95bd41b788\" }\ntls = \"off\"\ncustody = \"manual\"", false, "vault.version", "not a version"),
            (&base("tls = \"off\"\ncustody = \"manual\"\nlisten = \"127.0.0.1:65535\""), false, "vault.listen", "1-65533"),
            (&base("tls = \"off\"\ncustody = \"manual\"\nshraes = 5"), false, "vault.shraes", "did you mean `shares`"),
            (&base(&snap("every = \"1s\"")), false, "vault.snapshots.every", "outside"),
            (&base(&snap("keep = 0")), false, "vault.snapshots.keep", "1-1000"),
            (&base(&snap("dir = \"snaps\"")), false, "vault.snapshots.dir", "absolute"),
            (&base(&snap("s3 = { endpoint = \"http://s3.example.org\", bucket = \"b-1\", credentials = { file = \"/etc/s3\" } }")), false, "vault.snapshots.s3.endpoint", "loopback"),
            (&base(&snap("s3 = { endpoint = \"https://s3.example.org\", bucket = \"B_1\", credentials = { file = \"/etc/s3\" } }")), false, "vault.snapshots.s3.bucket", "not a bucket name"),
            (&base(&snap("s3 = { endpoint = \"https://s3.example.org\", bucket = \"b-1\", prefix = \"/x\", credentials = { file = \"/etc/s3\" } }")), false, "vault.snapshots.s3.prefix", "ending in /"),
            (&base(&snap("s3 = { endpoint = \"https://s3.example.org\", bucket = \"b-1\", credentials = \"AKIA:secret\" }")), false, "vault.snapshots.s3.credentials", "never go in the profile"),
            (&base(&snap("s3 = { endpoint = \"https://s3.example.org\", bucket = \"b-1\" }")), false, "vault.snapshots.s3.credentials", "missing"),
            (&base(&snap("s3 = { endpoint = \"https://s3.example.org\", bucket = \"b-1\", credentials = { file = \"/a\", systemd_creds = \"/b\" } }")), false, "vault.snapshots.s3.credentials", "exactly one"),
            (&base(&snap("s3 = { endpoint = \"https://s3.example.org\", bucket = \"b-1\", credentials = { file = \"../s3\" } }")), false, "vault.snapshots.s3.credentials.file", "absolute"),
            (&base(&snap("evrey = \"6h\"")), false, "vault.snapshots.evrey", "did you mean `every`"),
        ];
        for (vault, wg, path, reason) in cases {
            let errors = Profile::parse("p.toml", &profile(vault, *wg)).unwrap_err().errors;
            assert!(
                errors.iter().any(|e| e.path == *path && e.reason.contains(reason)),
                "{vault}: wanted {path}: …{reason}…, got {errors:?}"
            );
        }
    }
}
