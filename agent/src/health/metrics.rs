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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
    module: String,
}

/// The daemon's own metrics. Each module registers its own (with a
/// `module` label) through [`Metrics::module_registry`].
pub struct Metrics {
    registry: Registry,
    check_status: Family<CheckLabel, Gauge>,
    generation: Gauge,
    converge_duration: Histogram,
    drift_repairs: Counter,
    up: Gauge,
    last_change: Gauge,
    last_change_ok: Gauge,
    /// Label values currently exported, so vanished checks are dropped
    /// instead of reporting their last value forever.
    checks_seen: Mutex<Vec<CheckLabel>>,
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
        registry.register(
            "up",
            "1 while the converge engine runs and a generation is in force; 0 when the engine has stopped or \
             hangs, or the host has no generation (the failsafe ruleset)",
            up.clone(),
        );

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

        let last_change = Gauge::default();
        registry.register_with_unit(
            "last_apply_timestamp",
            "Unix time of the last apply, rollback or revert, successful or not (after a start: when the generation \
             in force was made; 0 with none)",
            Unit::Seconds,
            last_change.clone(),
        );
        let last_change_ok = Gauge::default();
        registry.register(
            "last_apply_success",
            "1 when the last apply, rollback or revert succeeded, 0 when it failed",
            last_change_ok.clone(),
        );

        Metrics {
            registry,
            check_status,
            generation,
            converge_duration,
            drift_repairs,
            up,
            last_change,
            last_change_ok,
            checks_seen: Mutex::new(Vec::new()),
        }
    }

    /// Export the level of every check; checks no longer reported disappear.
    pub fn set_checks(&self, checks: &[Check]) {
        let labels: Vec<CheckLabel> = checks
            .iter()
            .map(|c| CheckLabel {
                check: c.name.clone(),
                module: c.module.clone(),
            })
            .collect();
        for (c, label) in checks.iter().zip(&labels) {
            self.check_status.get_or_create(label).set(status_value(c.level));
        }
        let mut seen = self.checks_seen.lock().unwrap_or_else(|p| p.into_inner());
        for old in seen.iter().filter(|n| !labels.contains(n)) {
            self.check_status.remove(old);
        }
        *seen = labels;
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

    /// `bulwark_up`: whether the engine runs and a generation is in force.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// The last apply, rollback or revert: when, and whether it succeeded.
    pub fn set_last_change(&self, unix: u64, ok: bool) {
        self.last_change.set(i64::try_from(unix).unwrap_or(i64::MAX));
        self.last_change_ok.set(i64::from(ok));
    }

    /// Where module `module` registers its own metrics: every series it
    /// adds carries `module="<name>"`.
    pub fn module_registry(&mut self, module: &'static str) -> &mut Registry {
        self.registry
            .sub_registry_with_label((std::borrow::Cow::Borrowed("module"), std::borrow::Cow::Borrowed(module)))
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn check(name: &str, level: Level) -> Check {
        Check {
            module: "m".to_owned(),
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
        m.inc_drift_repairs();
        m.set_checks(&[check("firewall", Level::Ok), check("k3s_bind", Level::Critical)]);
        let text = m.encode();
        let version = format!("bulwark_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
        assert_eq!(sample(&text, &version), Some("1"), "{text}");
        assert_eq!(sample(&text, "bulwark_up"), Some("0"), "no view taken yet");
        m.set_up(true);
        m.set_last_change(1_714_557_600, false);
        let text = m.encode();
        assert_eq!(sample(&text, "bulwark_up"), Some("1"));
        assert_eq!(
            sample(&text, "bulwark_last_apply_timestamp_seconds"),
            Some("1714557600")
        );
        assert_eq!(sample(&text, "bulwark_last_apply_success"), Some("0"));
        assert_eq!(sample(&text, "bulwark_generation"), Some("7"));
        assert_eq!(sample(&text, "bulwark_drift_repairs_total"), Some("1"));
        assert_eq!(
            sample(&text, "bulwark_check_status{check=\"firewall\",module=\"m\"}"),
            Some("0"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "bulwark_check_status{check=\"k3s_bind\",module=\"m\"}"),
            Some("2")
        );
        assert_eq!(sample(&text, "bulwark_converge_duration_seconds_count"), Some("1"));
        assert!(
            text.contains("# TYPE bulwark_converge_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn module_metrics_carry_their_module_label() {
        let mut m = Metrics::new();
        let g = Gauge::<i64>::default();
        m.module_registry("firewall")
            .register("firewall_set_elements", "x", g.clone());
        g.set(12);
        let text = m.encode();
        assert_eq!(
            sample(&text, "bulwark_firewall_set_elements{module=\"firewall\"}"),
            Some("12"),
            "{text}"
        );
    }

    #[test]
    fn vanished_checks_disappear() {
        let m = Metrics::new();
        m.set_checks(&[check("a", Level::Warning)]);
        m.set_checks(&[check("b", Level::Ok)]);
        let text = m.encode();
        assert_eq!(
            sample(&text, "bulwark_check_status{check=\"a\",module=\"m\"}"),
            None,
            "{text}"
        );
        assert_eq!(
            sample(&text, "bulwark_check_status{check=\"b\",module=\"m\"}"),
            Some("0")
        );
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
    fn promtool_accepts_the_exposition() {
        let m = Metrics::new();
        m.set_checks(&[check("firewall", Level::Ok)]);
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (package prometheus; scripts/install-deps installs it)");
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
