//! Prometheus metrics, exposed as OpenMetrics text.
//!
//! One [`Metrics`] per daemon, shared through an `Arc`: the engine writes to
//! it as things happen (cheap atomic stores), the HTTP handlers only encode.
//! Names are stable: dashboards and alert rules depend on them
//! (docs/monitoring.md lists them).

use std::sync::Mutex;
use std::time::Duration;

use bulwark_model::api::{Check, Level};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::k3s;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// Every metric bulwarkd exports.
pub struct Metrics {
    registry: Registry,
    check_status: Family<CheckLabel, Gauge>,
    generation: Gauge,
    converge_duration: Histogram,
    drift_repairs: Counter,
    firewall_set_elements: Gauge,
    wireguard_peers: Gauge,
    handshake_age: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    k3s_bind_ok: Gauge,
    /// Label values currently exported, so vanished checks and peers are
    /// dropped instead of reporting their last value forever.
    checks_seen: Mutex<Vec<String>>,
    peers_seen: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `bulwark_check_status`: the monitoring plug-in convention, like `bulwarkctl health`.
fn status_value(level: Level) -> i64 {
    i64::from(level.exit_code())
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bulwark");

        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        // A gauge, not OpenMetrics' info type, so the classic Prometheus text
        // parsers (promtool among them) accept it too.
        registry.register("build_info", "bulwarkd version (always 1)", build_info);

        let up = Gauge::<i64>::default();
        up.set(1);
        registry.register("up", "1 while bulwarkd serves metrics", up);

        let check_status = Family::<CheckLabel, Gauge>::default();
        registry.register(
            "check_status",
            "Health check level: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
            check_status.clone(),
        );

        let generation = Gauge::default();
        registry.register(
            "generation",
            "Generation in force (0 before the first apply)",
            generation.clone(),
        );

        // 5 ms .. ~20 s: an empty plan takes milliseconds, a full apply with
        // a K3s restart queued still well under the top bucket.
        let converge_duration = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register_with_unit(
            "converge_duration",
            "Duration of applies, rollbacks and drift repairs",
            Unit::Seconds,
            converge_duration.clone(),
        );

        let drift_repairs = Counter::default();
        registry.register(
            "drift_repairs",
            "Drift repairs since bulwarkd started",
            drift_repairs.clone(),
        );

        let firewall_set_elements = Gauge::default();
        registry.register(
            "firewall_set_elements",
            "Elements in the allow-list sets of table inet bulwark",
            firewall_set_elements.clone(),
        );

        let wireguard_peers = Gauge::default();
        registry.register("wireguard_peers", "WireGuard admin peers", wireguard_peers.clone());

        let handshake_age = Family::<PeerLabel, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "wireguard_peer_last_handshake_age",
            "Time since the peer's last WireGuard handshake (absent: none yet)",
            Unit::Seconds,
            handshake_age.clone(),
        );

        let k3s_bind_ok = Gauge::default();
        k3s_bind_ok.set(1);
        registry.register(
            "k3s_bind_ok",
            "0 while a K3s port listens outside the bind address and loopback, else 1",
            k3s_bind_ok.clone(),
        );

        Metrics {
            registry,
            check_status,
            generation,
            converge_duration,
            drift_repairs,
            firewall_set_elements,
            wireguard_peers,
            handshake_age,
            k3s_bind_ok,
            checks_seen: Mutex::new(Vec::new()),
            peers_seen: Mutex::new(Vec::new()),
        }
    }

    /// Export the level of every check; checks no longer reported disappear.
    /// The K3s bind gauge follows the `k3s_bind` check (1 when absent).
    pub fn set_checks(&self, checks: &[Check]) {
        let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
        for c in checks {
            self.check_status
                .get_or_create(&CheckLabel { check: c.name.clone() })
                .set(status_value(c.level));
        }
        let exposed = checks
            .iter()
            .any(|c| c.name == k3s::CHECK && c.level == Level::Critical);
        self.k3s_bind_ok.set(i64::from(!exposed));
        let mut seen = self.checks_seen.lock().unwrap_or_else(|p| p.into_inner());
        for old in seen.iter().filter(|n| !names.contains(n)) {
            self.check_status.remove(&CheckLabel { check: old.clone() });
        }
        *seen = names;
    }

    pub fn observe_converge(&self, took: Duration) {
        self.converge_duration.observe(took.as_secs_f64());
    }

    pub fn set_generation(&self, generation: u64) {
        self.generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    pub fn inc_drift_repairs(&self) {
        self.drift_repairs.inc();
    }

    /// Bring the counter up to `total` repairs since start-up (for callers
    /// that keep their own count); never goes down.
    pub fn set_drift_repairs(&self, total: u64) {
        let now = self.drift_repairs.get();
        if total > now {
            self.drift_repairs.inc_by(total - now);
        }
    }

    pub fn set_firewall_set_elements(&self, n: usize) {
        self.firewall_set_elements.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// WireGuard peers as (name, time since last handshake; `None` = never).
    /// Sets `bulwark_wireguard_peers`; a peer without a handshake has no age
    /// series (OpenMetrics has no portable infinity for it), and removed
    /// peers disappear.
    pub fn set_wireguard_peers(&self, peers: &[(String, Option<Duration>)]) {
        self.wireguard_peers.set(i64::try_from(peers.len()).unwrap_or(i64::MAX));
        let names: Vec<String> = peers
            .iter()
            .filter(|(_, age)| age.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for (name, age) in peers {
            if let Some(age) = age {
                self.handshake_age
                    .get_or_create(&PeerLabel { peer: name.clone() })
                    .set(age.as_secs_f64());
            }
        }
        let mut seen = self.peers_seen.lock().unwrap_or_else(|p| p.into_inner());
        for old in seen.iter().filter(|n| !names.contains(n)) {
            self.handshake_age.remove(&PeerLabel { peer: old.clone() });
        }
        *seen = names;
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Only a failing fmt::Write can fail, and a String never does.
            log::error!(error:display = e; "cannot encode metrics");
        }
        out
    }

    /// The same samples in the classic Prometheus text format (0.0.4), for
    /// clients that do not ask for OpenMetrics: curl, promtool, older agents.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }
}

/// Classic text format from OpenMetrics text, for what this registry emits
/// (counters, gauges, histograms). The differences that matter: a counter
/// family is named with its `_total` suffix, and there is no `# UNIT` or
/// `# EOF` line.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: Vec<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(name, tail)| (p, name, tail))) {
            Some((p, name, tail)) if counters.contains(&name) => {
                out.push_str(p);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn check(name: &str, level: Level) -> Check {
        Check {
            module: String::new(),
            name: name.to_owned(),
            level,
            reason: String::new(),
        }
    }

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
    }

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        m.set_generation(7);
        m.observe_converge(Duration::from_millis(30));
        m.set_firewall_set_elements(12);
        m.set_drift_repairs(2);
        m.set_drift_repairs(1);
        m.inc_drift_repairs();
        m.set_wireguard_peers(&[
            ("alice".to_owned(), Some(Duration::from_secs(42))),
            ("bob".to_owned(), None),
        ]);
        m.set_checks(&[check("firewall", Level::Ok), check("k3s_bind", Level::Critical)]);
        let text = m.encode();
        let version = format!("bulwark_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
        assert_eq!(sample(&text, &version), Some("1"), "{text}");
        assert_eq!(sample(&text, "bulwark_up"), Some("1"));
        assert_eq!(sample(&text, "bulwark_generation"), Some("7"));
        assert_eq!(sample(&text, "bulwark_firewall_set_elements"), Some("12"));
        assert_eq!(sample(&text, "bulwark_drift_repairs_total"), Some("3"));
        assert_eq!(sample(&text, "bulwark_wireguard_peers"), Some("2"));
        assert_eq!(
            sample(
                &text,
                "bulwark_wireguard_peer_last_handshake_age_seconds{peer=\"alice\"}"
            ),
            Some("42.0")
        );
        assert!(!text.contains("peer=\"bob\""), "{text}");
        assert_eq!(sample(&text, "bulwark_check_status{check=\"firewall\"}"), Some("0"));
        assert_eq!(sample(&text, "bulwark_check_status{check=\"k3s_bind\"}"), Some("2"));
        assert_eq!(sample(&text, "bulwark_k3s_bind_ok"), Some("0"));
        assert_eq!(sample(&text, "bulwark_converge_duration_seconds_count"), Some("1"));
        assert!(
            text.contains("# TYPE bulwark_converge_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn vanished_checks_and_peers_disappear() {
        let m = Metrics::new();
        m.set_checks(&[check("a", Level::Warning), check("k3s_bind", Level::Critical)]);
        m.set_wireguard_peers(&[("alice".to_owned(), None)]);
        m.set_checks(&[check("b", Level::Ok)]);
        m.set_wireguard_peers(&[]);
        let text = m.encode();
        assert_eq!(sample(&text, "bulwark_check_status{check=\"a\"}"), None, "{text}");
        assert_eq!(sample(&text, "bulwark_check_status{check=\"b\"}"), Some("0"));
        assert_eq!(sample(&text, "bulwark_k3s_bind_ok"), Some("1"));
        assert!(!text.contains("alice"));
        assert_eq!(sample(&text, "bulwark_wireguard_peers"), Some("0"));
    }

    #[test]
    fn classic_text_names_counters_with_total() {
        let m = Metrics::new();
        m.inc_drift_repairs();
        let text = m.encode_text();
        assert!(
            text.contains("# TYPE bulwark_drift_repairs_total counter\nbulwark_drift_repairs_total 1\n"),
            "{text}"
        );
        assert!(text.contains("# HELP bulwark_drift_repairs_total "), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(
            text.contains("# TYPE bulwark_converge_duration_seconds histogram\n"),
            "{text}"
        );
    }

    #[test]
    fn promtool_accepts_the_exposition_when_installed() {
        // The namespace tests require promtool; here it is a bonus check.
        let m = Metrics::new();
        m.set_checks(&[check("firewall", Level::Ok)]);
        m.set_wireguard_peers(&[("alice".to_owned(), Some(Duration::from_secs(1)))]);
        let mut child = match std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => return,
        };
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(m.encode_text().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
