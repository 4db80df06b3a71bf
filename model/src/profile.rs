//! The profile: a declarative description of what a host must look like.
//!
//! Profiles are TOML. [`Profile::parse`] checks the whole document before
//! anything is built from it and reports every problem at once, each with the
//! file, the TOML path (`firewall.admin_cidrs[2]`) and the reason, so an
//! operator fixes a profile in one round instead of one error per run.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;
use toml::{Table, Value};

use crate::cidr;

/// Top-level tables a profile may contain.
const SECTIONS: &[&str] = &["profile", "firewall", "wireguard", "k3s", "monitoring"];
const PROFILE_KEYS: &[&str] = &["name", "drift", "drift_interval"];
const FIREWALL_KEYS: &[&str] = &[
    "admin_cidrs",
    "public_tcp",
    "admin_tcp",
    "vpn_tcp",
    "public_udp",
    "vpn_udp",
    "cluster_cidrs",
    "cluster_interfaces",
    "log_drops",
];

const WIREGUARD_KEYS: &[&str] = &[
    "interface",
    "address",
    "listen_port",
    "endpoint",
    "backend",
    "client_allowed_ips",
    "keepalive",
    "peer_expiry",
];
const K3S_KEYS: &[&str] = &["bind", "tls_san", "restart"];
const MONITORING_KEYS: &[&str] = &["listen"];

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
    pub firewall: Firewall,
    /// `[wireguard]`: the admin VPN; absent means no VPN is managed.
    pub wireguard: Option<WireGuard>,
    /// `[k3s]`: bind the K3s API to the VPN; absent means K3s is left alone.
    pub k3s: Option<K3s>,
    /// `[monitoring]`: optional TCP listener for Prometheus.
    pub monitoring: Monitoring,
}

/// `[wireguard]`: the interface admins reach the host through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireGuard {
    pub interface: String,
    /// The server's address on the VPN with its prefix, e.g. `10.8.0.1/24`.
    pub address: Ipv4Net,
    /// UDP port; opened to everyone in the firewall automatically.
    pub listen_port: u16,
    /// `host:port` written into client configs.
    pub endpoint: String,
    pub backend: Backend,
    /// What clients route into the tunnel; defaults to the VPN subnet.
    pub client_allowed_ips: Vec<IpNet>,
    /// Persistent keepalive written into client configs (seconds; 0 = off).
    pub keepalive: u16,
    /// Default lifetime of new peers; `None` = no expiry.
    #[serde(with = "humantime_opt")]
    pub peer_expiry: Option<Duration>,
}

/// How the WireGuard interface is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The kernel module, through netlink.
    Kernel,
    /// `wireguard-go`, supervised by bulwarkd.
    Userspace,
    /// Kernel when the module is available, else userspace.
    Auto,
}

/// `[k3s]`: where the K3s API server binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K3s {
    /// bind-address, advertise-address and node-ip.
    pub bind: K3sBind,
    /// Extra subject alternative names for the API server certificate.
    pub tls_san: Vec<String>,
    /// Restart k3s.service when Bulwark's drop-in changed.
    pub restart: bool,
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

/// `[monitoring]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Monitoring {
    /// TCP address of the Prometheus listener: loopback or the VPN address only.
    pub listen: Option<std::net::SocketAddr>,
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

/// `[firewall]`: the default-deny ruleset of table `inet bulwark`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Firewall {
    /// Admin networks, merged; v4 and v6 kept apart for the two nft sets.
    pub admin_v4: Vec<Ipv4Net>,
    pub admin_v6: Vec<Ipv6Net>,
    /// TCP ports reachable from anywhere.
    pub public_tcp: Vec<u16>,
    /// TCP ports reachable only from the admin networks.
    pub admin_tcp: Vec<u16>,
    /// TCP ports reachable only through the WireGuard interface.
    pub vpn_tcp: Vec<u16>,
    /// UDP ports reachable from anywhere.
    pub public_udp: Vec<u16>,
    /// UDP ports reachable only through the WireGuard interface.
    pub vpn_udp: Vec<u16>,
    /// Pod and service networks, trusted in input and forward.
    pub cluster_v4: Vec<Ipv4Net>,
    pub cluster_v6: Vec<Ipv6Net>,
    /// CNI interfaces, trusted in input and forward.
    pub cluster_interfaces: Vec<String>,
    /// Log dropped packets (rate-limited).
    pub log_drops: bool,
}

impl Firewall {
    /// Whether a new TCP connection from `src` to `port` would be accepted by
    /// this profile's ruleset outside the VPN (used to refuse an apply that
    /// would cut the operator's own SSH session).
    pub fn admits_tcp(&self, src: IpAddr, port: u16) -> bool {
        let admin: Vec<IpNet> = nets(&self.admin_v4, &self.admin_v6);
        let cluster: Vec<IpNet> = nets(&self.cluster_v4, &self.cluster_v6);
        src.is_loopback()
            || self.public_tcp.contains(&port)
            || (self.admin_tcp.contains(&port) && cidr::contains(&admin, src))
            || cidr::contains(&cluster, src)
    }

    /// Number of elements across the named sets (admin and cluster, v4 and v6).
    pub fn set_elements(&self) -> usize {
        self.admin_v4.len() + self.admin_v6.len() + self.cluster_v4.len() + self.cluster_v6.len()
    }
}

fn nets(v4: &[Ipv4Net], v6: &[Ipv6Net]) -> Vec<IpNet> {
    v4.iter()
        .map(|n| IpNet::V4(*n))
        .chain(v6.iter().map(|n| IpNet::V6(*n)))
        .collect()
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

impl Profile {
    /// Parse and validate profile bytes. `file` only labels the errors.
    pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Profile, ValidationErrors> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Profile::parse(file, text),
            Err(e) => Err(ValidationErrors {
                file: file.to_owned(),
                errors: vec![ProfileError {
                    file: file.to_owned(),
                    path: String::new(),
                    reason: format!("not a text file: invalid UTF-8 at byte {}", e.valid_up_to()),
                }],
            }),
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
        let mut firewall = self
            .section(doc, "firewall", false)
            .map(|t| self.firewall(t))
            .unwrap_or_default();
        let wireguard = self.section(doc, "wireguard", false).and_then(|t| self.wireguard(t));
        if let Some(wg) = &wireguard {
            // The VPN must be reachable to be useful: open its port to everyone.
            if !firewall.public_udp.contains(&wg.listen_port) {
                firewall.public_udp.push(wg.listen_port);
                firewall.public_udp.sort_unstable();
            }
        }
        let k3s = self
            .section(doc, "k3s", false)
            .and_then(|t| self.k3s(t, wireguard.as_ref()));
        let monitoring = self
            .section(doc, "monitoring", false)
            .map(|t| self.monitoring(t, wireguard.as_ref()))
            .unwrap_or_default();
        Some(Profile {
            name: name?,
            drift,
            drift_interval,
            firewall,
            wireguard,
            k3s,
            monitoring,
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
        mut item: impl FnMut(&Value) -> Result<T, String>,
    ) -> Vec<T> {
        let path = join(prefix, key);
        let Some(v) = t.get(key) else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.err(path, format!("expected an array of {what}, found {}", v.type_str()));
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match item(v) {
                Ok(x) => out.push(x),
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
        self.array(t, prefix, key, "CIDR strings", |v| {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected a CIDR string, found {}", v.type_str()))?;
            parse_cidr(s)
        })
    }

    fn firewall(&mut self, t: &Table) -> Firewall {
        const P: &str = "firewall";
        self.unknown_keys(P, t, FIREWALL_KEYS);
        let admin = self.cidrs(t, P, "admin_cidrs");
        let cluster = self.cidrs(t, P, "cluster_cidrs");
        let (admin_v4, admin_v6) = cidr::merge(&admin);
        let (cluster_v4, cluster_v6) = cidr::merge(&cluster);
        let fw = Firewall {
            admin_v4,
            admin_v6,
            public_tcp: self.ports(t, P, "public_tcp"),
            admin_tcp: self.ports(t, P, "admin_tcp"),
            vpn_tcp: self.ports(t, P, "vpn_tcp"),
            public_udp: self.ports(t, P, "public_udp"),
            vpn_udp: self.ports(t, P, "vpn_udp"),
            cluster_v4,
            cluster_v6,
            cluster_interfaces: self.array(t, P, "cluster_interfaces", "interface names", |v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("expected an interface name, found {}", v.type_str()))?;
                interface_name(s).map(str::to_owned)
            }),
            log_drops: self.bool(t, P, "log_drops").unwrap_or(false),
        };
        // A port both public and restricted is a contradiction: public wins.
        for (restricted, list) in [("admin_tcp", &fw.admin_tcp), ("vpn_tcp", &fw.vpn_tcp)] {
            for p in list.iter().filter(|p| fw.public_tcp.contains(p)) {
                self.err(
                    format!("{P}.{restricted}"),
                    format!(
                        "port {p} is also in firewall.public_tcp, which opens it to everyone; list it in one place"
                    ),
                );
            }
        }
        for p in fw.vpn_udp.iter().filter(|p| fw.public_udp.contains(p)) {
            self.err(
                format!("{P}.vpn_udp"),
                format!("port {p} is also in firewall.public_udp, which opens it to everyone; list it in one place"),
            );
        }
        fw
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

    fn wireguard(&mut self, t: &Table) -> Option<WireGuard> {
        const P: &str = "wireguard";
        self.unknown_keys(P, t, WIREGUARD_KEYS);
        let interface = match t.get("interface") {
            None => Some("wg0".to_owned()),
            Some(Value::String(s)) => interface_name(s)
                .map(str::to_owned)
                .map_err(|r| self.err("wireguard.interface", r))
                .ok(),
            Some(v) => {
                self.err(
                    "wireguard.interface",
                    format!("expected a string, found {}", v.type_str()),
                );
                None
            }
        };
        let address = self
            .string(t, P, "address")
            .and_then(|s| vpn_address(&s).map_err(|r| self.err("wireguard.address", r)).ok());
        let listen_port = self.one_port(t, P, "listen_port").unwrap_or(51820);
        let endpoint = self.string(t, P, "endpoint").and_then(|s| {
            endpoint(&s)
                .map(|()| s.clone())
                .map_err(|r| self.err("wireguard.endpoint", r))
                .ok()
        });
        let backend = match self.choice(t, P, "backend", &["kernel", "userspace", "auto"]) {
            Some("kernel") => Backend::Kernel,
            Some("userspace") => Backend::Userspace,
            _ => Backend::Auto,
        };
        let mut client_allowed_ips = self.cidrs(t, P, "client_allowed_ips");
        if !t.contains_key("client_allowed_ips") {
            client_allowed_ips = address.iter().map(|a| IpNet::V4(a.trunc())).collect();
        }
        let keepalive = match t.get("keepalive") {
            None => 25,
            Some(Value::Integer(n)) if (0..=65535).contains(n) => *n as u16,
            Some(v) => {
                self.err("wireguard.keepalive", format!("expected seconds in 0-65535, found {v}"));
                0
            }
        };
        let peer_expiry = self.duration(
            t,
            P,
            "peer_expiry",
            Duration::from_secs(60),
            Duration::from_secs(3650 * 86400),
        );
        Some(WireGuard {
            interface: interface?,
            address: address?,
            listen_port,
            endpoint: endpoint?,
            backend,
            client_allowed_ips,
            keepalive,
            peer_expiry,
        })
    }

    fn k3s(&mut self, t: &Table, wireguard: Option<&WireGuard>) -> Option<K3s> {
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
            Some((_, Some(s))) => match s.parse::<IpAddr>() {
                Ok(ip) if !ip.is_unspecified() => Some(K3sBind::Ip(ip)),
                Ok(ip) => {
                    self.err(
                        "k3s.bind",
                        format!("{ip} would expose the API on every interface; use \"vpn\" or one address"),
                    );
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
        Some(K3s {
            bind: bind?,
            tls_san,
            restart,
        })
    }

    fn monitoring(&mut self, t: &Table, wireguard: Option<&WireGuard>) -> Monitoring {
        self.unknown_keys("monitoring", t, MONITORING_KEYS);
        let Some(v) = t.get("listen") else {
            return Monitoring::default();
        };
        let Some(s) = v.as_str() else {
            self.err(
                "monitoring.listen",
                format!("expected \"address:port\", found {}", v.type_str()),
            );
            return Monitoring::default();
        };
        let addr = match s.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    "monitoring.listen",
                    format!("{s:?} is not an address:port such as \"127.0.0.1:9469\""),
                );
                return Monitoring::default();
            }
        };
        let vpn = wireguard.map(|w| IpAddr::V4(w.address.addr()));
        if !(addr.ip().is_loopback() || Some(addr.ip()) == vpn) {
            let allowed = vpn.map_or("loopback".to_owned(), |v| format!("loopback or the VPN address {v}"));
            self.err(
                "monitoring.listen",
                format!("{} is not allowed: metrics listen only on {allowed}", addr.ip()),
            );
            return Monitoring::default();
        }
        Monitoring { listen: Some(addr) }
    }
}

/// The server's VPN address: an IPv4 host address with its prefix.
fn vpn_address(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address with prefix such as \"10.8.0.1/24\""))?;
    if net.prefix_len() > 30 {
        return Err(format!(
            "{s:?}: a /{} leaves no room for peers; use /30 or shorter",
            net.prefix_len()
        ));
    }
    if net.addr() == net.network() || net.addr() == net.broadcast() {
        return Err(format!(
            "{s:?} is the network or broadcast address; give the server's own address, e.g. \"{}/{}\"",
            std::net::Ipv4Addr::from(u32::from(net.network()) + 1),
            net.prefix_len()
        ));
    }
    Ok(net)
}

/// `host:port` for client configs.
fn endpoint(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not host:port such as \"vps.example.org:51820\" or \"[2001:db8::1]:51820\"");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() || dns_name(host) {
        Ok(())
    } else {
        Err(bad())
    }
}

fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A subject alternative name: an IP address or a DNS name.
fn san(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() || dns_name(s) {
        Ok(())
    } else {
        Err(format!("{s:?} is neither an IP address nor a DNS name"))
    }
}

/// A TCP/UDP port number in 1..=65535.
pub fn port(v: &Value) -> Result<u16, String> {
    match v {
        Value::Integer(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {n} is outside 1-65535")),
        other => Err(format!("expected a port number, found {}", other.type_str())),
    }
}

/// A network in CIDR notation with no host bits set.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is not a CIDR such as \"192.0.2.0/24\" or \"2001:db8::/32\""))?;
    if net.trunc() != net {
        return Err(format!("{s:?} has host bits set; did you mean \"{}\"?", net.trunc()));
    }
    Ok(net)
}

/// A name Linux accepts for a network interface (`dev_valid_name`).
pub fn interface_name(s: &str) -> Result<&str, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("{s:?} is not a valid interface name: it must be 1-15 bytes"));
    }
    if s == "."
        || s == ".."
        || s.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{s:?} is not a valid interface name: no '/', ':', whitespace, \".\" or \"..\""
        ));
    }
    Ok(s)
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
