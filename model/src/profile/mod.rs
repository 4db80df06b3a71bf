//! The profile: a declarative description of what a host must look like.
//!
//! Profiles are TOML. [`Profile::parse`] checks the whole document before
//! anything is built from it and reports every problem at once, each with the
//! file, the TOML path (`firewall.admin_cidrs[2]`) and the reason, so an
//! operator fixes a profile in one round instead of one error per run.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;
use toml::{Table, Value};

mod cross;
mod fields;
mod firewall;
mod ima;
mod k3s;
mod monitoring;
mod vault;
mod vault_snapshots;
mod wireguard;

pub use fields::{
    interface_matches, interface_name, interface_pattern, parse_cidr, port, UPLINK_PREFIXES, WILDCARD_MIN_PREFIX,
};
pub use firewall::Firewall;
pub use ima::{Ima, ImaMode, DEFAULT_SIGNING_CERT};
pub use k3s::{EtcdS3, EtcdSnapshots, K3s, K3sBind};
pub use monitoring::Monitoring;
pub use vault::{CredentialStore, Custody, Implementation, Location, Source, Tls, Transit, Vault};
pub use vault_snapshots::{S3Credentials, Snapshots, S3, S3_CREDENTIAL_NAME, SNAPSHOT_DIR};
pub use wireguard::{
    Backend, WireGuard, PEER_EXPIRY_MAX, PEER_EXPIRY_MIN, STALE_HANDSHAKE_DEFAULT, STALE_HANDSHAKE_MIN,
};

/// Top-level tables a profile may contain.
const SECTIONS: &[&str] = &["profile", "firewall", "wireguard", "k3s", "monitoring", "ima", "vault"];
const PROFILE_KEYS: &[&str] = &["name", "drift", "drift_interval", "keep_generations"];
/// Generations kept on disk unless the profile says otherwise.
pub const KEEP_GENERATIONS: usize = 50;
/// Fewest generations a profile may keep: the one in force and one to roll back to.
const KEEP_GENERATIONS_MIN: i64 = 2;
const KEEP_GENERATIONS_MAX: i64 = 10_000;

/// Shortest and longest drift interval a profile may ask for.
const DRIFT_INTERVAL_MIN: Duration = Duration::from_secs(1);
const DRIFT_INTERVAL_MAX: Duration = Duration::from_secs(24 * 3600);

/// A validated profile. Every field has been checked; networks are merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// `[profile] name`: identifies the profile in status, audit and generations.
    pub name: String,
    /// What the drift loop does when the host no longer matches.
    pub drift: DriftMode,
    /// How often the drift loop re-observes the host.
    #[serde(with = "humantime_secs")]
    pub drift_interval: Duration,
    /// How many generations stay on disk (the newest; plus any a pending
    /// confirmation still needs).
    pub keep_generations: usize,
    pub firewall: Firewall,
    /// `[wireguard]`: the admin VPN; absent means no VPN is managed.
    pub wireguard: Option<WireGuard>,
    /// `[k3s]`: bind the K3s API to the VPN; absent means K3s is left alone.
    pub k3s: Option<K3s>,
    /// `[monitoring]`: optional TCP listener for Prometheus.
    pub monitoring: Monitoring,
    /// `[ima]`: IMA appraisal; absent means Bulwark leaves IMA alone.
    pub ima: Option<Ima>,
    /// `[vault]`: a pinned, hardened Vault on the host; absent means unmanaged.
    pub vault: Option<Vault>,
}

impl Profile {
    /// The address K3s binds to, when the profile manages K3s.
    pub fn k3s_bind_ip(&self) -> Option<IpAddr> {
        match self.k3s.as_ref()?.bind {
            K3sBind::Vpn => self.wireguard.as_ref().map(|w| IpAddr::V4(w.address.addr())),
            K3sBind::Ip(ip) => Some(ip),
        }
    }
}

/// What to do when the host drifts from the applied generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    /// Re-converge and record an audit event.
    Repair,
    /// Only raise health and metrics.
    Report,
}

/// One problem found in a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProfileError {
    /// The profile's file name as given by the caller.
    pub file: String,
    /// The TOML path of the offending value, e.g. `firewall.admin_cidrs[2]`;
    /// empty for document-level problems such as a syntax error.
    pub path: String,
    /// What is wrong and, where it helps, what to write instead.
    pub reason: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.reason)
        }
    }
}

/// Every problem found in a profile, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} has {} error(s):\n  {}", .file, .errors.len(), .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
pub struct ValidationErrors {
    pub file: String,
    pub errors: Vec<ProfileError>,
}

impl ValidationErrors {
    /// The one error of a file that is not UTF-8.
    pub fn not_text(file: &str, e: std::str::Utf8Error) -> ValidationErrors {
        ValidationErrors {
            file: file.to_owned(),
            errors: vec![ProfileError {
                file: file.to_owned(),
                path: String::new(),
                reason: format!("not a text file: invalid UTF-8 at byte {}", e.valid_up_to()),
            }],
        }
    }
}

impl Profile {
    /// Parse and validate profile bytes. `file` only labels the errors.
    pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Profile, ValidationErrors> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Profile::parse(file, text),
            Err(e) => Err(ValidationErrors::not_text(file, e)),
        }
    }

    /// Parse and validate a profile. `file` only labels the errors.
    pub fn parse(file: &str, text: &str) -> Result<Profile, ValidationErrors> {
        let mut c = Checker {
            file,
            errors: Vec::new(),
        };
        let profile = match text.parse::<Table>() {
            Ok(doc) => c.profile(&doc),
            Err(e) => {
                c.err(
                    "",
                    format!("not valid TOML: {}", e.to_string().trim_end().replace('\n', " ")),
                );
                None
            }
        };
        match profile {
            Some(p) if c.errors.is_empty() => Ok(p),
            _ => Err(ValidationErrors {
                file: file.to_owned(),
                errors: c.errors,
            }),
        }
    }
}

/// Walks a parsed document, collecting errors instead of stopping at the first.
struct Checker<'a> {
    file: &'a str,
    errors: Vec<ProfileError>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ProfileError {
            file: self.file.to_owned(),
            path: path.into(),
            reason: reason.into(),
        });
    }

    fn profile(&mut self, doc: &Table) -> Option<Profile> {
        self.unknown_keys("", doc, SECTIONS);
        let meta = self.section(doc, "profile", true);
        let name = meta.and_then(|t| self.name(t));
        let drift = match meta.and_then(|t| self.choice(t, "profile", "drift", &["repair", "report"])) {
            Some("report") => DriftMode::Report,
            _ => DriftMode::Repair,
        };
        let drift_interval = meta
            .and_then(|t| self.duration(t, "profile", "drift_interval", DRIFT_INTERVAL_MIN, DRIFT_INTERVAL_MAX))
            .unwrap_or(Duration::from_secs(30));
        let keep_generations = meta.and_then(|t| self.keep_generations(t)).unwrap_or(KEEP_GENERATIONS);
        let (mut firewall, trusted) = self
            .section(doc, "firewall", false)
            .map(|t| self.firewall(t))
            .unwrap_or_default();
        let (wireguard, vpn) = match self.section(doc, "wireguard", false) {
            Some(t) => self.wireguard(t),
            None => (None, Default::default()),
        };
        self.cross_checks(&firewall, &trusted, &vpn);
        if let Some(wg) = &wireguard {
            // The VPN must be reachable to be useful: open its port to everyone.
            if !firewall.public_udp.contains(&wg.listen_port) {
                firewall.public_udp.push(wg.listen_port);
                firewall.public_udp.sort_unstable();
            }
        }
        let monitoring = self
            .section(doc, "monitoring", false)
            .map(|t| self.monitoring(t, wireguard.as_ref()))
            .unwrap_or_default();
        let ima = self.section(doc, "ima", false).and_then(|t| self.ima(t));
        let vault = self
            .section(doc, "vault", false)
            .and_then(|t| self.vault(t, wireguard.as_ref()));
        // After [vault]: K3s may be handed its snapshot bucket.
        let vault_s3 = match (&vault, doc.contains_key("vault")) {
            (None, true) => Err(()),
            _ => Ok(vault.as_ref().and_then(|v| v.snapshots.as_ref()?.s3.as_ref())),
        };
        let k3s = self
            .section(doc, "k3s", false)
            .and_then(|t| self.k3s(t, wireguard.as_ref(), vault_s3));
        Some(Profile {
            name: name?,
            drift,
            drift_interval,
            keep_generations,
            firewall,
            wireguard,
            k3s,
            monitoring,
            ima,
            vault,
        })
    }

    /// A top-level table; `required` ones are reported when missing.
    fn section<'v>(&mut self, doc: &'v Table, key: &str, required: bool) -> Option<&'v Table> {
        match doc.get(key) {
            None if required => {
                self.err(key, format!("missing: every profile needs a [{key}] table"));
                None
            }
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(v) => {
                self.err(key, format!("expected a table, found {}", v.type_str()));
                None
            }
        }
    }

    fn unknown_keys(&mut self, prefix: &str, t: &Table, known: &[&str]) {
        for key in t.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            let hint = known
                .iter()
                .map(|k| (strsim::jaro_winkler(k, key), k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            let what = if prefix.is_empty() { "table" } else { "key" };
            self.err(join(prefix, key), format!("unknown {what}{hint}"));
        }
    }

    fn keep_generations(&mut self, t: &Table) -> Option<usize> {
        let v = t.get("keep_generations")?;
        match v.as_integer() {
            Some(n) if (KEEP_GENERATIONS_MIN..=KEEP_GENERATIONS_MAX).contains(&n) => usize::try_from(n).ok(),
            _ => {
                self.err(
                    "profile.keep_generations",
                    format!("expected a number in {KEEP_GENERATIONS_MIN}-{KEEP_GENERATIONS_MAX}, found {v}"),
                );
                None
            }
        }
    }

    fn name(&mut self, t: &Table) -> Option<String> {
        self.unknown_keys("profile", t, PROFILE_KEYS);
        let Some(v) = t.get("name") else {
            self.err("profile.name", "missing: a profile needs a name");
            return None;
        };
        let Some(name) = v.as_str() else {
            self.err("profile.name", format!("expected a string, found {}", v.type_str()));
            return None;
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.err(
                "profile.name",
                format!("{name:?} is not a valid name: use 1-64 of A-Z a-z 0-9 . _ -"),
            );
            return None;
        }
        Some(name.to_owned())
    }

    fn choice<'v>(&mut self, t: &'v Table, prefix: &str, key: &str, allowed: &[&str]) -> Option<&'v str> {
        let path = join(prefix, key);
        let v = t.get(key)?;
        let Some(s) = v.as_str() else {
            self.err(path, format!("expected a string, found {}", v.type_str()));
            return None;
        };
        if allowed.contains(&s) {
            Some(s)
        } else {
            self.err(path, format!("{s:?} is not one of: {}", allowed.join(", ")));
            None
        }
    }

    fn duration(&mut self, t: &Table, prefix: &str, key: &str, min: Duration, max: Duration) -> Option<Duration> {
        let path = join(prefix, key);
        let v = t.get(key)?;
        let Some(s) = v.as_str() else {
            self.err(
                path,
                format!("expected a duration string such as \"30s\", found {}", v.type_str()),
            );
            return None;
        };
        match humantime::parse_duration(s) {
            Ok(d) if d >= min && d <= max => Some(d),
            Ok(_) => {
                let (lo, hi) = (humantime::format_duration(min), humantime::format_duration(max));
                self.err(path, format!("{s:?} is outside {lo}..{hi}"));
                None
            }
            Err(e) => {
                self.err(
                    path,
                    format!("{s:?} is not a duration ({e}); write e.g. \"30s\", \"5m\", \"90d\""),
                );
                None
            }
        }
    }

    fn bool(&mut self, t: &Table, prefix: &str, key: &str) -> Option<bool> {
        let v = t.get(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.err(
                    join(prefix, key),
                    format!("expected true or false, found {}", v.type_str()),
                );
                None
            }
        }
    }

    /// An optional array; each element goes through `item`, which returns
    /// `Err(reason)` for a bad one.
    fn array<T>(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
        what: &str,
        item: impl FnMut(&Value) -> Result<T, String>,
    ) -> Vec<T> {
        self.array_at(t, prefix, key, what, item)
            .into_iter()
            .map(|(_, x)| x)
            .collect()
    }

    /// [`Checker::array`], keeping each good element's index in the array
    /// for checks that compare elements: its TOML path
    /// (`firewall.cluster_cidrs[1]`) is only spelled out for an error, not
    /// for each of 200,000 networks.
    fn array_at<T>(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
        what: &str,
        mut item: impl FnMut(&Value) -> Result<T, String>,
    ) -> Vec<(usize, T)> {
        let path = join(prefix, key);
        let Some(v) = t.get(key) else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.err(path, format!("expected an array of {what}, found {}", v.type_str()));
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match item(v) {
                Ok(x) => out.push((i, x)),
                Err(reason) => self.err(format!("{path}[{i}]"), reason),
            }
        }
        out
    }

    fn ports(&mut self, t: &Table, prefix: &str, key: &str) -> Vec<u16> {
        let mut ports = self.array(t, prefix, key, "port numbers", port);
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    fn cidrs(&mut self, t: &Table, prefix: &str, key: &str) -> Vec<IpNet> {
        self.cidrs_at(t, prefix, key, |_, _| Ok(()))
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }

    /// CIDRs with their indices in the array; `allow` refuses networks a
    /// list must not hold, given the network and the string as written.
    fn cidrs_at(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
        allow: impl Fn(&IpNet, &str) -> Result<(), String>,
    ) -> Vec<(usize, IpNet)> {
        self.array_at(t, prefix, key, "CIDR strings", |v| {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a CIDR string, found {}", v.type_str()))?;
            let net = parse_cidr(s)?;
            allow(&net, s)?;
            Ok(net)
        })
    }
}

impl Checker<'_> {
    /// A required string field.
    fn string(&mut self, t: &Table, prefix: &str, key: &str) -> Option<String> {
        let path = join(prefix, key);
        match t.get(key) {
            None => {
                self.err(path, "missing");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                self.err(path, format!("expected a string, found {}", v.type_str()));
                None
            }
        }
    }

    fn one_port(&mut self, t: &Table, prefix: &str, key: &str) -> Option<u16> {
        let v = t.get(key)?;
        port(v).map_err(|reason| self.err(join(prefix, key), reason)).ok()
    }
}

mod humantime_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

/// Serialise durations as humantime strings ("30s") for JSON output.
mod humantime_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests;
