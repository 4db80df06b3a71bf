//! Monitoring: the metrics exposition on the Unix socket passes promtool, a
//! real Prometheus scrapes the TCP listener on the VPN address, and a public
//! `[monitoring] listen` is refused before anything runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../k3s-standin/lab.rs"]
mod lab;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bulwark_tests::{bin, poll, run, run_with_stdin, Daemon, Lab};
use lab::{fake_systemd_with_k3s, profile, wg_name, Bulwarkd, K3sStandIn, SystemctlStandIn, VPN_IP};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn lab_with(tag: &str, listen: &str) -> (Lab, SystemctlStandIn, Bulwarkd) {
    let lab = Lab::new(tag);
    fake_systemd_with_k3s(&lab.daemon.root);
    let systemctl = SystemctlStandIn::new(&lab.daemon.root);
    let text = profile(&wg_name(), &[], Some(listen));
    let running = Bulwarkd::start(&lab.daemon, &lab.net.vps, &text, &systemctl.path);
    (lab, systemctl, running)
}

/// `GET /v1/metrics` on the Unix socket: (content type, body).
fn metrics_over_socket(d: &Daemon, accept: Option<&str>) -> (String, String) {
    let headers = d.root.join("metrics.headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--max-time", "15", "--unix-socket"])
        .arg(d.socket())
        .arg("-D")
        .arg(&headers);
    if let Some(a) = accept {
        cmd.args(["-H", &format!("Accept: {a}")]);
    }
    cmd.arg("http://localhost/v1/metrics");
    let r = run(&mut cmd);
    assert!(r.ok(), "GET /v1/metrics failed:\n{r}\n{}", d.logs());
    let content_type = fs::read_to_string(&headers)
        .unwrap()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type").then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (content_type, r.stdout)
}

#[test]
fn metrics_on_the_socket_pass_promtool() {
    let (lab, _systemctl, _running) = lab_with("mon-promtool", "127.0.0.1:9469");
    let d = &lab.daemon;
    let _k3s = K3sStandIn::start(&lab.net.vps, &d.root, None);
    // Reads answer from a view at most 1 s old: wait until it has K3s listening.
    let bound = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        metrics_over_socket(d, None)
            .1
            .contains("bulwark_check_status{check=\"k3s_bind\",module=\"k3s\"} 0")
            .then_some(())
    });
    assert!(bound.is_some(), "the stand-in's listener never showed in the metrics");

    // Prometheus asks for OpenMetrics and gets it.
    let (ct, om) = metrics_over_socket(d, Some("application/openmetrics-text;version=1.0.0"));
    assert_eq!(ct, OPENMETRICS);
    assert!(om.ends_with("# EOF\n"), "{om}");

    // Plain clients get the classic text format, which promtool lints.
    let (ct, text) = metrics_over_socket(d, None);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    for family in [
        "bulwark_build_info{version=",
        "bulwark_up 1",
        "bulwark_check_status{check=\"k3s_bind\",module=\"k3s\"} 0",
        "bulwark_generation 1",
        "bulwark_converge_duration_seconds_count",
        "bulwark_drift_repairs_total",
        "bulwark_firewall_set_elements{module=\"firewall\"}",
        "bulwark_wireguard_peers{module=\"wireguard\"} 0",
        "bulwark_k3s_bind_ok{module=\"k3s\"} 1",
    ] {
        assert!(text.contains(family), "{family} missing from the exposition:\n{text}");
    }
    let r = run_with_stdin(Command::new("promtool").args(["check", "metrics"]), text.as_bytes());
    assert!(r.code.is_some(), "promtool did not run:\n{r}");
    assert!(r.ok(), "promtool check metrics rejects the exposition:\n{r}\n{text}");
}

/// A Prometheus server in the vps namespace; killed by PID on drop.
struct Prometheus {
    child: Child,
    ns: String,
}

impl Prometheus {
    fn start(ns: &str, dir: &Path, target: &str) -> Prometheus {
        fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: bulwark\n    scrape_timeout: 1s\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus) must be installed");
        Prometheus {
            child,
            ns: ns.to_owned(),
        }
    }

    /// `/api/v1/query?query=EXPR` results, or `None` while Prometheus is not up.
    fn query(&self, expr: &str) -> Option<Vec<serde_json::Value>> {
        let r = run(Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sS", "--max-time", "5", "-G"])
            .args([
                "--data-urlencode",
                &format!("query={expr}"),
                "http://127.0.0.1:9090/api/v1/query",
            ]));
        let v: serde_json::Value = serde_json::from_str(&r.stdout).ok()?;
        v["data"]["result"].as_array().cloned()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        if poll(Duration::from_secs(10), Duration::from_millis(100), || {
            self.child.try_wait().ok().flatten()
        })
        .is_none()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn prometheus_scrapes_the_tcp_listener_on_the_vpn_address() {
    let target = format!("{VPN_IP}:9469");
    let (lab, _systemctl, _running) = lab_with("mon-prom", &target);
    let d = &lab.daemon;
    let prom_dir = d.root.join("prometheus");
    let prom = Prometheus::start(&lab.net.vps, &prom_dir, &target);
    let plog = || fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default();

    let up = poll(Duration::from_secs(60), Duration::from_millis(500), || {
        let result = prom.query("up{job=\"bulwark\"}")?;
        let value = result.first()?["value"][1].as_str()?.to_owned();
        (value == "1").then_some(value)
    });
    assert!(
        up.is_some(),
        "Prometheus never saw up == 1 for {target}: {:?}\n--- prometheus log ---\n{}\n{}",
        prom.query("up"),
        plog(),
        d.logs()
    );

    let checks = poll(Duration::from_secs(30), Duration::from_millis(500), || {
        let result = prom.query("bulwark_check_status")?;
        (!result.is_empty()).then_some(result)
    })
    .unwrap_or_else(|| panic!("no bulwark_check_status series in Prometheus\n{}", plog()));
    let names: Vec<&str> = checks.iter().filter_map(|s| s["metric"]["check"].as_str()).collect();
    assert!(names.contains(&"firewall"), "{checks:#?}");
    assert!(names.contains(&"k3s_bind"), "{checks:#?}");
    let build = prom.query("bulwark_build_info").unwrap_or_default();
    assert_eq!(build.len(), 1, "{build:#?}");
}

#[test]
fn a_public_monitoring_listen_is_refused_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let validate = |listen: &str| {
        let file = dir.path().join("p.toml");
        fs::write(&file, profile("wg0", &[], Some(listen))).unwrap();
        run(Command::new(bin("bulwarkctl")).arg("validate").arg(&file))
    };
    let r = validate("203.0.113.1:9469");
    assert_eq!(r.code, Some(4), "a public listen address must be refused:\n{r}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("monitoring.listen") && all.contains("203.0.113.1"), "{r}");
    let r = validate("0.0.0.0:9469");
    assert_eq!(r.code, Some(4), "the wildcard address must be refused:\n{r}");
    for ok in [
        format!("{VPN_IP}:9469"),
        "127.0.0.1:9469".to_owned(),
        "[::1]:9469".to_owned(),
    ] {
        let r = validate(&ok);
        assert!(r.ok(), "{ok} is allowed:\n{r}");
    }
}
