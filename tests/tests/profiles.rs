//! Malformed profiles are refused before anything is touched: by
//! `bulwarkctl apply` (exit 1, the field named on stderr) with the live
//! ruleset byte-identical afterwards, by the daemon itself (422 with
//! `profile_errors`), and offline by `bulwarkctl validate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bulwark_model::api::ErrorBody;
use bulwark_tests::{bin, run, Lab};

const GOOD: &str = include_str!("../fixtures/firewall.toml");

/// A malformed profile and what stderr must mention: the TOML path of the
/// offending field or, for documents that are not TOML at all, the location.
struct Bad {
    name: &'static str,
    text: &'static [u8],
    names: &'static str,
}

const fn bad(name: &'static str, text: &'static str, names: &'static str) -> Bad {
    Bad {
        name,
        text: text.as_bytes(),
        names,
    }
}

/// Builds a profile from the valid head plus a `[firewall]` body at compile time.
macro_rules! fw {
    ($body:expr) => {
        concat!("[profile]\nname = \"bad\"\n[firewall]\n", $body)
    };
}

/// A `[firewall]` body and a `[wireguard]` section with its interface
/// (a name no other test uses, should one of these ever be applied).
macro_rules! wg {
    ($fw:expr, $iface:expr) => {
        concat!(
            "[profile]\nname = \"bad\"\n[firewall]\n",
            $fw,
            "[wireguard]\naddress = \"10.8.0.1/24\"\nendpoint = \"vps.example.org:51820\"\ninterface = \"",
            $iface,
            "\"\n"
        )
    };
}

const BAD: &[Bad] = &[
    bad(
        "cidr-prefix-too-long",
        fw!("admin_cidrs = [\"198.51.100.0/33\"]\n"),
        "firewall.admin_cidrs[0]",
    ),
    bad(
        "cidr-not-an-address",
        fw!("admin_cidrs = [\"198.51.100.0/24\", \"not-a-cidr\"]\n"),
        "firewall.admin_cidrs[1]",
    ),
    bad(
        "cidr-host-bits-v4",
        fw!("admin_cidrs = [\"198.51.100.1/24\"]\n"),
        "firewall.admin_cidrs[0]",
    ),
    bad(
        "cidr-host-bits-v6",
        fw!("admin_cidrs = [\"2001:db8:10::1/64\"]\n"),
        "firewall.admin_cidrs[0]",
    ),
    bad(
        "cidr-not-a-string",
        fw!("cluster_cidrs = [10]\n"),
        "firewall.cluster_cidrs[0]",
    ),
    bad("port-70000", fw!("public_tcp = [70000]\n"), "firewall.public_tcp[0]"),
    bad("port-zero", fw!("admin_tcp = [22, 0]\n"), "firewall.admin_tcp[1]"),
    bad("port-negative", fw!("public_udp = [-1]\n"), "firewall.public_udp[0]"),
    bad("port-as-string", fw!("vpn_tcp = [\"6443\"]\n"), "firewall.vpn_tcp[0]"),
    bad("ports-not-an-array", fw!("public_tcp = 8080\n"), "firewall.public_tcp"),
    bad(
        "port-public-and-admin",
        fw!("public_tcp = [22]\nadmin_tcp = [22]\n"),
        "firewall.admin_tcp",
    ),
    bad(
        "unknown-firewall-key",
        fw!("admin_cidr = [\"198.51.100.0/24\"]\n"),
        "firewall.admin_cidr",
    ),
    bad(
        "unknown-profile-key",
        "[profile]\nname = \"bad\"\ndrfit = \"repair\"\n",
        "profile.drfit",
    ),
    bad(
        "unknown-table",
        "[profile]\nname = \"bad\"\n[wireguardd]\n",
        "wireguardd",
    ),
    bad("bool-as-string", fw!("log_drops = \"yes\"\n"), "firewall.log_drops"),
    bad(
        "section-not-a-table",
        "firewall = 5\n[profile]\nname = \"bad\"\n",
        "firewall",
    ),
    bad(
        "drift-bad-enum",
        "[profile]\nname = \"bad\"\ndrift = \"fix\"\n",
        "profile.drift",
    ),
    bad(
        "drift-interval-not-a-duration",
        "[profile]\nname = \"bad\"\ndrift_interval = \"soon\"\n",
        "profile.drift_interval",
    ),
    bad(
        "drift-interval-too-short",
        "[profile]\nname = \"bad\"\ndrift_interval = \"100ms\"\n",
        "profile.drift_interval",
    ),
    bad(
        "drift-interval-a-number",
        "[profile]\nname = \"bad\"\ndrift_interval = 30\n",
        "profile.drift_interval",
    ),
    bad("name-missing", "[profile]\ndrift = \"repair\"\n", "profile.name"),
    bad("name-invalid", "[profile]\nname = \"bad name!\"\n", "profile.name"),
    bad("name-not-a-string", "[profile]\nname = 5\n", "profile.name"),
    bad(
        "interface-too-long",
        fw!("cluster_interfaces = [\"averyveryverylongname\"]\n"),
        "firewall.cluster_interfaces[0]",
    ),
    bad(
        "interface-with-slash",
        fw!("cluster_interfaces = [\"cni0\", \"eth/0\"]\n"),
        "firewall.cluster_interfaces[1]",
    ),
    // Profiles that would open the firewall, or that nft would refuse.
    bad(
        "cidr-catch-all-admin-v4",
        fw!("admin_cidrs = [\"0.0.0.0/0\"]\nadmin_tcp = [22]\n"),
        "firewall.admin_cidrs[0]",
    ),
    bad(
        "cidr-catch-all-admin-v6",
        fw!("admin_cidrs = [\"198.51.100.0/24\", \"::/0\"]\n"),
        "firewall.admin_cidrs[1]",
    ),
    bad(
        "cidr-internet-wide-admin",
        fw!("admin_cidrs = [\"128.0.0.0/2\"]\n"),
        "firewall.admin_cidrs[0]",
    ),
    bad(
        "cidr-catch-all-cluster",
        fw!("cluster_cidrs = [\"0.0.0.0/0\"]\n"),
        "firewall.cluster_cidrs[0]",
    ),
    bad(
        "cidr-cluster-public",
        fw!("cluster_cidrs = [\"10.42.0.0/16\", \"198.51.100.0/24\"]\n"),
        "firewall.cluster_cidrs[1]",
    ),
    bad(
        "cidr-leading-zero",
        fw!("admin_cidrs = [\"198.051.100.0/24\"]\n"),
        "firewall.admin_cidrs[0]",
    ),
    bad(
        "cidr-ipv4-mapped",
        fw!("admin_cidrs = [\"::ffff:198.51.100.0/120\"]\n"),
        "firewall.admin_cidrs[0]",
    ),
    bad(
        "cidr-cluster-overlaps-admin",
        fw!("admin_cidrs = [\"10.0.0.0/8\"]\ncluster_cidrs = [\"10.42.0.0/16\"]\n"),
        "firewall.cluster_cidrs[0]",
    ),
    bad(
        "vpn-inside-cluster",
        wg!("cluster_cidrs = [\"10.8.0.0/16\"]\n", "wgbadprof0"),
        "wireguard.address",
    ),
    bad(
        "vpn-inside-admin",
        wg!("admin_cidrs = [\"10.0.0.0/8\"]\n", "wgbadprof0"),
        "wireguard.address",
    ),
    bad(
        "vpn-udp-wireguard-port",
        wg!("vpn_udp = [51820]\n", "wgbadprof0"),
        "firewall.vpn_udp",
    ),
    bad(
        "interface-star",
        fw!("cluster_interfaces = [\"*\"]\n"),
        "firewall.cluster_interfaces[0]",
    ),
    bad(
        "interface-set-reference",
        fw!("cluster_interfaces = [\"cni0\", \"@admin_v4\"]\n"),
        "firewall.cluster_interfaces[1]",
    ),
    bad(
        "interface-uplink-wildcard",
        fw!("cluster_interfaces = [\"eth*\"]\n"),
        "firewall.cluster_interfaces[0]",
    ),
    bad(
        "interface-short-wildcard",
        fw!("cluster_interfaces = [\"l*\"]\n"),
        "firewall.cluster_interfaces[0]",
    ),
    bad(
        "interface-is-the-vpn",
        wg!("cluster_interfaces = [\"wgbadprof0\"]\n", "wgbadprof0"),
        "firewall.cluster_interfaces[0]",
    ),
    bad(
        "wireguard-interface-wildcard",
        wg!("", "wgbadprof*"),
        "wireguard.interface",
    ),
    bad(
        "endpoint-unbracketed-ipv6",
        concat!(
            "[profile]\nname = \"bad\"\n[wireguard]\ninterface = \"wgbadprof0\"\n",
            "address = \"10.8.0.1/24\"\nendpoint = \"2001:db8::1:51820\"\n"
        ),
        "wireguard.endpoint",
    ),
    bad(
        "endpoint-malformed-brackets",
        concat!(
            "[profile]\nname = \"bad\"\n[wireguard]\ninterface = \"wgbadprof0\"\n",
            "address = \"10.8.0.1/24\"\nendpoint = \"[[[2001:db8::1]:51820\"\n"
        ),
        "wireguard.endpoint",
    ),
    bad(
        "monitoring-port-zero",
        "[profile]\nname = \"bad\"\n[monitoring]\nlisten = \"127.0.0.1:0\"\n",
        "monitoring.listen",
    ),
    bad("empty-file", "", "profile"),
    bad("only-comments", "# nothing here\n", "profile"),
    bad("truncated-string", "[profile]\nname = \"trunc", "line 2"),
    bad("truncated-table-header", "[profile]\nname = \"bad\"\n[firew", "line 3"),
    bad("duplicate-key", "[profile]\nname = \"a\"\nname = \"b\"\n", "line 3"),
    Bad {
        name: "binary-garbage",
        text: b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00\x00[profile]\x80\x81",
        names: "utf-8",
    },
];

/// Whether `stderr` mentions `field` as a whole token: `profile` in
/// `.../profiles/x.toml` or `profile.name` does not count.
fn names(stderr: &str, field: &str) -> bool {
    let (text, field) = (stderr.to_lowercase(), field.to_lowercase());
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(&field).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let rest = &text[i + field.len()..];
        let mut after = rest.chars();
        let (a1, a2) = (after.next(), after.next());
        let starts = !before.is_some_and(|c| word(c) || c == '/' || c == '.');
        let ends = !(a1.is_some_and(word) || (a1 == Some('.') && a2.is_some_and(word)));
        starts && ends
    })
}

fn write_all(lab: &Lab) -> Vec<(std::path::PathBuf, &'static Bad)> {
    BAD.iter()
        .map(|b| (lab.daemon.write_profile(b.name, b.text), b))
        .collect()
}

#[test]
fn malformed_profiles_are_refused_with_the_field_named_and_the_ruleset_untouched() {
    assert!(BAD.len() >= 20);
    let mut lab = Lab::new("bad-apply");
    lab.daemon.start(None);
    let d = &lab.daemon;
    d.apply(&d.write_profile("good", GOOD), &[]);
    let rules = d.ruleset_present();
    let gens = d.generations();

    let mut failures = Vec::new();
    for (file, b) in write_all(&lab) {
        let r = d.ctl(&["apply", file.to_str().unwrap()]);
        if r.code != Some(4) || !names(&r.stderr, b.names) {
            failures.push(format!(
                "[{}] expected exit 4 (invalid input) and stderr naming `{}`:\n{r}",
                b.name, b.names
            ));
        }
        if d.ruleset().as_deref() != Some(rules.as_str()) {
            failures.push(format!("[{}] the refused apply changed the ruleset", b.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed profiles mishandled:\n\n{}",
        failures.len(),
        BAD.len(),
        failures.join("\n\n")
    );
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules.as_str()),
        "ruleset changed by refused applies"
    );
    assert_eq!(
        d.generations().len(),
        gens.len(),
        "refused applies recorded generations"
    );
}

#[test]
fn the_daemon_itself_refuses_malformed_profiles_with_422_and_profile_errors() {
    // bulwarkctl may validate before sending; the daemon must not rely on it.
    let mut lab = Lab::new("bad-422");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let rules = d.ruleset_present();

    let mut failures = Vec::new();
    // Documents that are not TOML (or not text) have no field to name.
    let fields = BAD
        .iter()
        .filter(|b| std::str::from_utf8(b.text).is_ok() && !b.names.starts_with("line ") && b.names != "utf-8");
    for b in fields {
        let req = serde_json::json!({ "profile": std::str::from_utf8(b.text).unwrap(), "source": format!("{}.toml", b.name) });
        let path = d.root.join(format!("{}.json", b.name));
        std::fs::write(&path, req.to_string()).unwrap();
        let (code, body) = d.http("POST", "/v1/apply", Some(&path));
        let err: Option<ErrorBody> = serde_json::from_str(&body).ok();
        let named = err
            .as_ref()
            .is_some_and(|e| e.kind == "invalid_profile" && e.profile_errors.iter().any(|pe| pe.path == b.names));
        if code != 422 || !named {
            failures.push(format!(
                "[{}] expected 422 invalid_profile with path `{}`, got {code}: {body}",
                b.name, b.names
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        d.ruleset().as_deref(),
        Some(rules.as_str()),
        "ruleset changed by refused applies"
    );
}

#[test]
fn all_errors_of_a_profile_are_reported_together() {
    let mut lab = Lab::new("bad-many");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let file = d.write_profile(
        "many",
        "[profile]\nname = \"many\"\ndrift = \"sometimes\"\n[firewall]\nadmin_cidrs = [\"10.0.0.1/8\"]\npublic_tcp = [70000]\nlog_drop = true\n",
    );
    let want = [
        "profile.drift",
        "firewall.admin_cidrs[0]",
        "firewall.public_tcp[0]",
        "firewall.log_drop",
    ];
    for r in [
        d.ctl(&["apply", file.to_str().unwrap()]),
        d.ctl(&["validate", file.to_str().unwrap()]),
    ] {
        assert_eq!(r.code, Some(4), "{r}");
        for w in want {
            assert!(r.stderr.contains(w), "`{w}` missing from the errors:\n{r}");
        }
        assert!(r.stderr.contains("many.toml"), "the errors name the file:\n{r}");
    }
}

#[test]
fn validate_refuses_malformed_profiles_offline() {
    // No namespaces or daemon needed: a socket path that cannot exist proves
    // validate never talks to bulwarkd.
    bulwark_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let ctl = |file: &std::path::Path| {
        run(std::process::Command::new(bin("bulwarkctl"))
            .args(["--socket", "/nonexistent/bulwarkd.sock", "validate"])
            .arg(file))
    };

    let good = dir.path().join("good.toml");
    std::fs::write(&good, GOOD).unwrap();
    let r = ctl(&good);
    assert_eq!(r.code, Some(0), "a valid profile validates offline:\n{r}");
    for shipped in ["default.toml", "vps-k3s.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../profiles")
            .join(shipped);
        let r = ctl(&path);
        assert_eq!(r.code, Some(0), "shipped profile {shipped} validates:\n{r}");
    }

    let mut failures = Vec::new();
    for b in BAD {
        let file = dir.path().join(format!("{}.toml", b.name));
        std::fs::write(&file, b.text).unwrap();
        let r = ctl(&file);
        if r.code != Some(4) || !names(&r.stderr, b.names) {
            failures.push(format!(
                "[{}] expected exit 4 (invalid input) and stderr naming `{}`:\n{r}",
                b.name, b.names
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed profiles mishandled offline:\n\n{}",
        failures.len(),
        BAD.len(),
        failures.join("\n\n")
    );
}
