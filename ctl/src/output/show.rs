//! `bulwarkctl show`: what the host enforces, in words, the way
//! `ufw status verbose` and `firewall-cmd --list-all` say it.
//!
//! Read from the profile of the generation in force (parsed here exactly as
//! the daemon parsed it) and the live status, so drift and a module's own
//! state show beside the rules. Modules this version does not describe
//! itself get their status line.

use std::fmt::Write as _;

use bulwark_model::api::{ModuleStatus, Status};
use bulwark_model::profile::{K3sBind, Profile};
use bulwark_model::text::escape;

use super::{key_values, key_values_within, rfc3339, WIDTH};

/// Modules whose profile section is described below.
const DESCRIBED: &[&str] = &["firewall", "wireguard", "k3s"];

fn ports(proto: &str, list: &[u16]) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    let joined: Vec<String> = list.iter().map(u16::to_string).collect();
    Some(format!("{proto} {}", joined.join(", ")))
}

fn both(tcp: Option<String>, udp: Option<String>) -> Option<String> {
    match (tcp, udp) {
        (None, None) => None,
        (Some(t), None) => Some(t),
        (None, Some(u)) => Some(u),
        (Some(t), Some(u)) => Some(format!("{t}; {u}")),
    }
}

/// A profile duration as an operator writes it: `90d`, `12h`, else
/// humantime's words.
fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        _ if s % 86400 == 0 => format!("{}d", s / 86400),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => humantime::format_duration(d).to_string(),
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn module<'a>(status: &'a Status, name: &str) -> Option<&'a ModuleStatus> {
    status.modules.iter().find(|m| m.module == name)
}

/// A section: its title line, then aligned `key: value` lines indented.
fn section(out: &mut String, title: &str, pairs: &[(&str, String)]) {
    out.push('\n');
    out.push_str(&escape(title));
    out.push('\n');
    for line in key_values_within(pairs, WIDTH - 2).lines() {
        writeln!(out, "  {line}").ok();
    }
}

/// The whole description. `created` is when the generation was made.
pub fn show(profile: &Profile, status: &Status, created: u64) -> String {
    let mut out = String::new();
    let generation = status.generation.map_or_else(|| "none".to_owned(), |g| g.to_string());
    writeln!(
        out,
        "bulwarkd {}: generation {generation}, profile {}, applied {}",
        escape(&status.version),
        escape(&profile.name),
        rfc3339(created)
    )
    .ok();
    let confirm = match &status.pending_confirm {
        Some(p) => format!(
            "generation {} reverts{} at {} unless confirmed",
            p.generation,
            p.revert_to.map(|g| format!(" to {g}")).unwrap_or_default(),
            rfc3339(p.deadline)
        ),
        None => "none pending".to_owned(),
    };
    let drift = format!(
        "{}, checked every {}",
        format!("{:?}", profile.drift).to_lowercase(),
        span(profile.drift_interval)
    );
    for line in key_values(&[
        ("health", status.health.to_string()),
        ("confirm", confirm),
        ("drift", drift),
    ])
    .lines()
    {
        writeln!(out, "{line}").ok();
    }

    firewall(&mut out, profile, status);
    wireguard(&mut out, profile, status);
    k3s(&mut out, profile, status);
    monitoring(&mut out, profile);
    for m in status
        .modules
        .iter()
        .filter(|m| !DESCRIBED.contains(&m.module.as_str()))
    {
        let state = if m.managed {
            format!("{}: {}", m.level, m.summary)
        } else {
            "not managed by this profile".to_owned()
        };
        section(&mut out, &m.module, &[("state", state)]);
    }
    out
}

fn firewall(out: &mut String, profile: &Profile, status: &Status) {
    let fw = &profile.firewall;
    let vpn_if = profile.wireguard.as_ref().map(|w| w.interface.as_str());
    let wg_port = profile.wireguard.as_ref().map(|w| w.listen_port);
    let state = match module(status, "firewall") {
        Some(m) if m.details["failsafe"].as_bool() == Some(true) => "the failsafe ruleset is in force".to_owned(),
        Some(m) if m.details["in_sync"].as_bool() == Some(true) => {
            "table inet bulwark in force, matches the generation".to_owned()
        }
        Some(m) => format!("{}: {}", m.level, m.summary),
        None => "unknown (the daemon reported no firewall status)".to_owned(),
    };
    let mut pairs = vec![
        ("state", state),
        (
            "default",
            "incoming and forwarded traffic dropped; outgoing allowed".to_owned(),
        ),
        (
            "always",
            "established and related traffic, loopback, essential ICMP and ICMPv6 (ping, errors, neighbour \
             discovery)"
                .to_owned(),
        ),
    ];
    let public_udp: Vec<String> = fw
        .public_udp
        .iter()
        .map(|p| {
            if Some(*p) == wg_port {
                format!("{p} (WireGuard)")
            } else {
                p.to_string()
            }
        })
        .collect();
    let udp = (!public_udp.is_empty()).then(|| format!("udp {}", public_udp.join(", ")));
    pairs.push((
        "public",
        match both(ports("tcp", &fw.public_tcp), udp) {
            Some(p) => format!("{p}, from anywhere"),
            None => "nothing".to_owned(),
        },
    ));
    let admin_nets: Vec<String> = fw
        .admin_v4
        .iter()
        .map(ToString::to_string)
        .chain(fw.admin_v6.iter().map(ToString::to_string))
        .collect();
    pairs.push((
        "admin",
        match (ports("tcp", &fw.admin_tcp), admin_nets.is_empty()) {
            (None, _) => "nothing".to_owned(),
            (Some(p), true) => format!("{p}, but admin_cidrs is empty: closed to everyone"),
            (Some(p), false) => format!("{p}, from {}", admin_nets.join(", ")),
        },
    ));
    pairs.push((
        "vpn",
        match (both(ports("tcp", &fw.vpn_tcp), ports("udp", &fw.vpn_udp)), vpn_if) {
            (None, _) => "nothing".to_owned(),
            (Some(p), Some(iface)) => format!("{p}, only through {iface}"),
            (Some(p), None) => format!("{p} listed, but closed: the profile has no [wireguard]"),
        },
    ));
    let cluster_nets: Vec<String> = fw
        .cluster_v4
        .iter()
        .map(ToString::to_string)
        .chain(fw.cluster_v6.iter().map(ToString::to_string))
        .collect();
    let mut cluster = Vec::new();
    if !cluster_nets.is_empty() {
        cluster.push(format!("from {}", cluster_nets.join(", ")));
    }
    if !fw.cluster_interfaces.is_empty() {
        cluster.push(format!("on {}", list(&fw.cluster_interfaces)));
    }
    pairs.push((
        "cluster",
        if cluster.is_empty() {
            "nothing".to_owned()
        } else {
            format!("every port, incoming and forwarded, {}", cluster.join("; "))
        },
    ));
    pairs.push((
        "drop log",
        if fw.log_drops {
            "on, 5 per minute: prefixes \"bulwark drop: \" (incoming) and \"bulwark forward drop: \"".to_owned()
        } else {
            "off".to_owned()
        },
    ));
    section(out, "firewall", &pairs);
}

fn wireguard(out: &mut String, profile: &Profile, status: &Status) {
    let Some(w) = &profile.wireguard else {
        section(out, "wireguard", &[("state", "not managed by this profile".to_owned())]);
        return;
    };
    let live = module(status, "wireguard");
    let backend = live
        .and_then(|m| m.details["backend"].as_str())
        .unwrap_or("unknown")
        .to_owned();
    let count = |field: &str| live.and_then(|m| m.details[field].as_u64());
    let peers = match (count("peers"), count("disabled_peers").unwrap_or(0)) {
        (Some(all), 0) => all.to_string(),
        (Some(all), disabled) => format!("{all} ({disabled} disabled)"),
        (None, _) => "unknown".to_owned(),
    };
    let expiry = w.peer_expiry.map_or_else(
        || "new peers never expire unless given --expires".to_owned(),
        |d| format!("new peers expire after {}", span(d)),
    );
    let mut pairs = vec![
        (
            "interface",
            format!(
                "{} {}, port {}/udp, {backend} backend",
                w.interface, w.address, w.listen_port
            ),
        ),
        ("endpoint", format!("{} (in client configs)", w.endpoint)),
        ("clients route", list(&w.client_allowed_ips)),
        ("peers", format!("{peers}; {expiry}")),
        (
            "stale after",
            format!("{} without a handshake (health warns)", span(w.stale_handshake)),
        ),
    ];
    if let Some(m) = live {
        pairs.insert(0, ("state", format!("{}: {}", m.level, m.summary)));
    }
    section(out, "wireguard", &pairs);
}

fn k3s(out: &mut String, profile: &Profile, status: &Status) {
    let Some(k) = &profile.k3s else {
        section(out, "k3s", &[("state", "not managed by this profile".to_owned())]);
        return;
    };
    let ip = profile
        .k3s_bind_ip()
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let bind = match k.bind {
        K3sBind::Vpn => format!("{ip} (the VPN address): bind-address, advertise-address, node-ip"),
        K3sBind::Ip(_) => format!("{ip}: bind-address, advertise-address, node-ip"),
    };
    let mut pairs = vec![("bind", bind)];
    if !k.tls_san.is_empty() {
        pairs.push(("tls-san", list(&k.tls_san)));
    }
    if let Some(e) = &k.etcd_snapshots {
        pairs.push(("etcd snapshots", format!("K3s's own, {}", e.describe())));
    }
    pairs.push((
        "restart",
        if k.restart {
            "k3s.service when its drop-ins change".to_owned()
        } else {
            "never (restart = false)".to_owned()
        },
    ));
    if let Some(m) = module(status, "k3s") {
        pairs.insert(0, ("state", format!("{}: {}", m.level, m.summary)));
    }
    section(out, "k3s", &pairs);
}

fn monitoring(out: &mut String, profile: &Profile) {
    let metrics = match profile.monitoring.listen {
        Some(addr) => format!("http://{addr}/metrics (no authentication: keep it on loopback or the VPN)"),
        None => "only on the API socket (GET /v1/metrics); no TCP listener".to_owned(),
    };
    section(out, "monitoring", &[("metrics", metrics)]);
}
