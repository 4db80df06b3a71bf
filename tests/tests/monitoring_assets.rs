//! The monitoring assets Bulwark ships (monitoring/): the Prometheus rules
//! pass `promtool check rules` and their own `promtool test rules`, the
//! Grafana dashboard is well-formed, every query in it is PromQL that
//! promtool parses, and every metric the rules and the dashboard name is one
//! a real bulwarkd exports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use bulwark_tests::wg::{names, Client, Reaper};
use bulwark_tests::{poll, run, Lab};

#[path = "../k3s-standin/lab.rs"]
mod lab;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

fn promtool(args: &[&str], dir: &std::path::Path) -> bulwark_tests::Ran {
    let r = run(Command::new("promtool").args(args).current_dir(dir));
    assert!(r.code.is_some(), "promtool (package prometheus) did not run:\n{r}");
    r
}

#[test]
fn the_prometheus_rules_pass_promtool_and_their_unit_tests() {
    let dir = assets();
    let check = promtool(&["check", "rules", "bulwark.rules.yml"], &dir);
    assert!(check.ok(), "{check}");
    assert!(check.stdout.contains("SUCCESS: 8 rules found"), "{check}");
    let test = promtool(&["test", "rules", "bulwark.rules.test.yml"], &dir);
    assert!(test.ok() && test.stdout.contains("SUCCESS"), "{test}");
    // Every alert is unit-tested.
    let rules = fs::read_to_string(dir.join("bulwark.rules.yml")).unwrap();
    let tests = fs::read_to_string(dir.join("bulwark.rules.test.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no unit test"
        );
    }
}

/// The `bulwark_*` metric names in `text`, with histogram and counter
/// suffixes taken off to leave the family name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("bulwark_") {
        let start = i + at;
        let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if !preceded {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// Family names in a classic-text exposition (its `# TYPE` lines).
fn families(exposition: &str) -> HashSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn exported(name: &str, families: &HashSet<String>) -> bool {
    families.contains(name)
        || ["_bucket", "_count", "_sum"]
            .iter()
            .any(|s| name.strip_suffix(s).is_some_and(|f| families.contains(f)))
}

#[test]
fn the_dashboard_is_well_formed_and_queries_only_what_bulwarkd_exports() {
    let dir = assets();
    let text = fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    for key in ["uid", "title", "schemaVersion", "panels", "templating"] {
        assert!(dash.get(key).is_some(), "dashboard lacks {key}");
    }
    assert!(
        dash["schemaVersion"].as_u64().unwrap() >= 36,
        "schemaVersion too old for Grafana 9+"
    );
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "instance"]);
    let mut ids = HashSet::new();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id of {title} repeats");
        assert!(
            ["stat", "table", "timeseries"].contains(&p["type"].as_str().unwrap()),
            "{title}: panel type"
        );
        let g = &p["gridPos"];
        let (x, w, h) = (
            g["x"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: gridPos {g}");
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: datasource is not the variable"
        );
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let e = t["expr"].as_str().unwrap();
            assert!(
                e.contains("instance=~\"$instance\""),
                "{title}: {e} ignores the host selector"
            );
            exprs.push((title.to_owned(), e.to_owned()));
        }
    }

    // promtool parses every query (Grafana's variables substituted).
    let work = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, e)) in exprs.iter().enumerate() {
        let e = e.replace("$__rate_interval", "5m").replace("$instance", ".*");
        rules.push_str(&format!("      - record: dashboard:query{i}\n        expr: '{e}'\n"));
    }
    fs::write(work.path().join("dashboard.rules.yml"), &rules).unwrap();
    let check = promtool(&["check", "rules", "dashboard.rules.yml"], work.path());
    assert!(check.ok(), "a dashboard query is not PromQL:\n{check}\n{rules}");

    // Every metric named by the rules or the dashboard is one bulwarkd has,
    // on a host with every module managed and a peer that handshook (some
    // series only exist then).
    let lab = Lab::new("mon-assets");
    let d = &lab.daemon;
    lab::fake_systemd_with_k3s(&d.root);
    let systemctl = lab::SystemctlStandIn::new(&d.root);
    let wg = lab::wg_name();
    let _reaper = Reaper(wg.clone());
    let _running = lab::Bulwarkd::start(d, &lab.net.vps, &lab::profile(&wg, &[], None), &systemctl.path);
    let config = d.ctl_ok(&["add-peer", "prom"]).stdout;
    let (_, cli) = names("ma");
    let client = Client::new(&lab.net.inet, &cli);
    client.up(&config);
    let scrape = || {
        let r = run(Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "15", "--unix-socket"])
            .arg(d.socket())
            .arg("http://localhost/v1/metrics"));
        assert!(r.ok(), "{r}");
        r.stdout
    };
    let handshook = poll(
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(250),
        || {
            // Traffic into the tunnel makes the handshake happen.
            let _ = bulwark_tests::connects(&lab.net.inet, lab::VPN_IP.parse().unwrap(), 6443);
            let m = scrape();
            m.contains("bulwark_wireguard_peer_last_handshake_timestamp_seconds{")
                .then_some(m)
        },
    );
    let exposition = handshook.unwrap_or_else(|| panic!("no handshake from the test peer\n{}", d.logs()));
    let have = families(&exposition);
    let rules_text = fs::read_to_string(dir.join("bulwark.rules.yml")).unwrap();
    let used: BTreeSet<String> = metric_names(&text)
        .into_iter()
        .chain(metric_names(&rules_text))
        .collect();
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !exported(n, &have)).collect();
    assert!(
        missing.is_empty(),
        "not exported by bulwarkd: {missing:?}\n{exposition}"
    );
}
