//! Trusted interfaces against the live host: a `cluster_interfaces` name or
//! wildcard that matches an interface carrying a default route or an address
//! outside the cluster networks is refused.
//!
//! The interfaces are veth pairs inside namespaces these tests create (the
//! kernel here has no dummy driver); the host's own namespace is never read
//! or changed: the reader runs on a thread moved into the test namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::process::Command;

use bulwark_agent::firewall::interfaces::{live_interfaces, Interface};
use bulwark_agent::firewall::{refuse_trusted_uplinks, UplinkError};
use bulwark_model::api::ErrorBody;
use bulwark_model::Profile;
use bulwark_tests::{addr, connects, in_ns, require_root, run, run_ok, Lab};

/// A namespace of the test's own, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        require_root();
        let name = format!("bwk-{tag}-{}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        Ns(name)
    }

    fn ip(&self, args: &str) {
        run_ok(Command::new("ip").arg("-n").arg(&self.0).args(args.split_whitespace()));
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let r = run(Command::new("ip").args(["netns", "del", &self.0]));
        if !r.ok() {
            eprintln!("warning: could not delete namespace {}:\n{r}", self.0);
        }
    }
}

/// A host in miniature: uplink `upl0` with both default routes, `upl1` with
/// an IPv4 default route in routing table 100 only, and a CNI-like `cnix0`
/// with a pod-network address.
fn host(tag: &str) -> Ns {
    let ns = Ns::new(tag);
    ns.ip("link set lo up");
    ns.ip("link add upl0 type veth peer name upl1");
    ns.ip("link add cnix0 type veth peer name cnix1");
    ns.ip("addr add 192.0.2.10/24 dev upl0");
    ns.ip("addr add 2001:db8:99::10/64 dev upl0 nodad");
    ns.ip("addr add 10.42.0.1/24 dev cnix0");
    for dev in ["upl0", "upl1", "cnix0", "cnix1"] {
        ns.ip(&format!("link set {dev} up"));
    }
    ns.ip("route add default via 192.0.2.1 dev upl0");
    ns.ip("-6 route add default via 2001:db8:99::1 dev upl0");
    ns.ip("route add default dev upl1 table 100");
    ns
}

fn find<'a>(live: &'a [Interface], name: &str) -> &'a Interface {
    live.iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{name} not read: {live:#?}"))
}

fn profile(firewall: &str) -> Profile {
    Profile::parse("t.toml", &format!("[profile]\nname = \"t\"\n[firewall]\n{firewall}\n")).unwrap()
}

/// The check as bulwarkd runs it, inside `ns`.
fn check_in(ns: &Ns, firewall: &str) -> Result<(), String> {
    let p = profile(firewall);
    in_ns(&ns.0, move || {
        refuse_trusted_uplinks(&p.firewall).map_err(|e| e.to_string())
    })
}

#[test]
fn the_live_reader_sees_default_routes_in_every_table_and_addresses() {
    let ns = host("upl-read");
    let live = in_ns(&ns.0, || live_interfaces().unwrap());

    let upl0 = find(&live, "upl0");
    assert!(upl0.default_v4 && upl0.default_v6, "{upl0:?}");
    for ip in ["192.0.2.10", "2001:db8:99::10"] {
        assert!(
            upl0.addresses.contains(&ip.parse::<IpAddr>().unwrap()),
            "{ip} missing: {upl0:?}"
        );
    }
    let upl1 = find(&live, "upl1");
    assert!(
        upl1.default_v4 && !upl1.default_v6,
        "table 100's default route missed: {upl1:?}"
    );
    let cni = find(&live, "cnix0");
    assert!(!cni.default_v4 && !cni.default_v6, "{cni:?}");
    assert!(cni.addresses.contains(&"10.42.0.1".parse().unwrap()), "{cni:?}");
    // Only what the test made: the host's interfaces are not visible here.
    let names: Vec<&str> = live.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
}

#[test]
fn trusting_an_interface_with_a_default_route_is_refused() {
    let ns = host("upl-route");
    let err = check_in(
        &ns,
        "cluster_interfaces = [\"upl0\"]\ncluster_cidrs = [\"10.42.0.0/16\"]",
    )
    .unwrap_err();
    for want in [
        "\"upl0\" matches upl0, which carries the IPv4 default route",
        "\"upl0\" matches upl0, which carries the IPv6 default route",
        "\"upl0\" matches upl0, which has address 192.0.2.10, outside firewall.cluster_cidrs",
        "nothing was changed",
    ] {
        assert!(err.contains(want), "{want:?} missing:\n{err}");
    }
    // upl1 has no address: only the route in table 100 gives it away.
    let err = check_in(&ns, "cluster_interfaces = [\"upl1\"]").unwrap_err();
    assert!(
        err.contains("\"upl1\" matches upl1, which carries the IPv4 default route"),
        "{err}"
    );
}

#[test]
fn a_wildcard_matching_the_uplink_is_refused() {
    let ns = host("upl-wild");
    // "upl*" passes validation (no uplink-like prefix); only the host shows it is one.
    let err = check_in(
        &ns,
        "cluster_interfaces = [\"cnix0\", \"upl*\"]\ncluster_cidrs = [\"10.42.0.0/16\"]",
    )
    .unwrap_err();
    assert!(err.contains("\"upl*\" matches upl0"), "{err}");
    assert!(err.contains("\"upl*\" matches upl1"), "{err}");
    assert!(!err.contains("cnix0"), "cnix0 is a cluster interface:\n{err}");
}

#[test]
fn cni_interfaces_with_cluster_addresses_pass_and_others_do_not() {
    let ns = host("upl-cni");
    assert_eq!(
        check_in(
            &ns,
            "cluster_interfaces = [\"cnix*\", \"lxc*\"]\ncluster_cidrs = [\"10.42.0.0/16\"]"
        ),
        Ok(())
    );
    // The same interface without its network in cluster_cidrs is not a cluster interface.
    let err = check_in(
        &ns,
        "cluster_interfaces = [\"cnix0\"]\ncluster_cidrs = [\"10.43.0.0/16\"]",
    )
    .unwrap_err();
    assert!(
        err.contains("\"cnix0\" matches cnix0, which has address 10.42.0.1, outside firewall.cluster_cidrs"),
        "{err}"
    );
}

#[test]
fn the_error_is_a_typed_refusal_listing_every_match() {
    let ns = host("upl-typed");
    let p = profile("cluster_interfaces = [\"upl*\"]");
    let err = in_ns(&ns.0, move || refuse_trusted_uplinks(&p.firewall)).unwrap_err();
    let UplinkError::Trusted { found } = err else {
        panic!("expected a refusal, got {err}")
    };
    let mut pairs: Vec<(String, String)> = found.iter().map(|v| (v.pattern.clone(), v.interface.clone())).collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(
        pairs,
        [
            ("upl*".to_owned(), "upl0".to_owned()),
            ("upl*".to_owned(), "upl1".to_owned())
        ]
    );
}

/// A profile that trusts `interfaces` (and the K3s pod network) and opens
/// nothing else to the internet.
fn trusting(interfaces: &str) -> String {
    format!(
        "[profile]\nname = \"trust\"\n[firewall]\npublic_tcp = [22]\ncluster_cidrs = [\"10.42.0.0/16\"]\ncluster_interfaces = [{interfaces}]\n"
    )
}

/// bulwarkd itself refuses an apply, and a dry run, whose cluster_interfaces
/// match the uplink of the namespace it runs in: before nft runs, with the
/// reason, an audit event, and the firewall in force unchanged, as seen by
/// packets from the internet namespace.
#[test]
fn bulwarkd_refuses_an_apply_that_trusts_its_uplink_and_keeps_the_firewall() {
    let mut lab = Lab::new("upl-apply");
    // As on a VPS: the default route leaves through the internet-facing leg.
    run_ok(Command::new("ip").args([
        "-n",
        &lab.net.vps,
        "route",
        "add",
        "default",
        "via",
        "203.0.113.2",
        "dev",
        "bw-inet",
    ]));
    lab.daemon.start(None);
    let _listening = lab.net.listen(&lab.net.vps, &[8080]);
    let d = &lab.daemon;
    let rules = d.ruleset_present();
    let gens = d.generations().len();
    assert!(
        !connects(&lab.net.inet, addr::VPS_INET_V4, 8080),
        "8080 open before the test"
    );

    for (name, interfaces, want) in [
        (
            "exact",
            "\"cni0\", \"bw-inet\"",
            vec![
                "\"bw-inet\" matches bw-inet, which carries the IPv4 default route",
                "\"bw-inet\" matches bw-inet, which has address 203.0.113.1, outside firewall.cluster_cidrs",
            ],
        ),
        (
            "wildcard",
            "\"bw-*\"",
            vec![
                "\"bw-*\" matches bw-inet, which carries the IPv4 default route",
                "\"bw-*\" matches bw-admin, which has address 198.51.100.1, outside firewall.cluster_cidrs",
            ],
        ),
    ] {
        let file = d.write_profile(name, trusting(interfaces));
        let file = file.to_str().unwrap();
        // Valid as a profile: only the live host shows what it would trust.
        assert!(d.ctl(&["validate", file]).ok(), "{name}: the profile itself is valid");
        for args in [vec!["apply", file], vec!["apply", "--dry-run", file]] {
            let r = d.ctl(&args);
            assert_eq!(r.code, Some(6), "{name}: {args:?} must be refused (409, exit 6):\n{r}");
            for w in &want {
                assert!(r.stderr.contains(w), "{name}: {args:?}: {w:?} missing:\n{r}");
            }
            assert!(r.stderr.contains("nothing was changed"), "{r}");
        }
        // Straight to the API: a 409, the host's state clashing with the request.
        let req = serde_json::json!({ "profile": trusting(interfaces), "source": format!("{name}.toml") });
        let body_file = d.root.join(format!("{name}.json"));
        std::fs::write(&body_file, req.to_string()).unwrap();
        let (code, body) = d.http("POST", "/v1/apply", Some(&body_file));
        let err: ErrorBody = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!((code, err.kind.as_str()), (409, "conflict"), "{body}");
        assert!(err.error.contains(want[0]), "{body}");
        assert_eq!(
            d.ruleset().as_deref(),
            Some(rules.as_str()),
            "{name}: the refused apply changed the ruleset"
        );
        assert!(
            !connects(&lab.net.inet, addr::VPS_INET_V4, 8080),
            "{name}: 8080 reachable from the internet"
        );
    }
    assert_eq!(d.generations().len(), gens, "a refused apply recorded a generation");
    let events = d.audit_tail(10);
    assert!(
        events
            .iter()
            .any(|e| e.event == "BWK-CHG-0006" && e.message.contains("bw-inet")),
        "no BWK-CHG-0006 audit event naming bw-inet: {events:#?}"
    );

    // The same profile trusting only interfaces that are not uplinks applies.
    let file = d.write_profile("cni", trusting("\"cni0\", \"lxc*\""));
    d.apply(&file, &[]);
    assert_eq!(d.generations().len(), gens + 1);
    assert!(d.ruleset_present().contains("\"lxc*\""), "{}", d.ruleset_present());
}
