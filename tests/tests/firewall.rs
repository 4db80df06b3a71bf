//! The firewall module, proven with packets: which ports answer from which
//! source, that tables Bulwark does not own stay untouched, and that an
//! identical re-apply changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bulwark_tests::addr::*;
use bulwark_tests::{reachable, Lab};

const FIREWALL: &str = include_str!("../fixtures/firewall.toml");
const A: &str = include_str!("../fixtures/a.toml");
const B: &str = include_str!("../fixtures/b.toml");

/// Every port the profile mentions, plus one it does not.
const PORTS: [u16; 5] = [8080, 22, 443, 6443, 9999];

/// A table as K3s or kube-proxy would leave one: its own base chain and set.
const FOREIGN: &str = "table inet k3s_foreign {
    chain c { type filter hook input priority 10; }
    set s { type ipv4_addr; elements = { 10.9.9.9 } }
}
";

#[test]
fn only_declared_ports_answer_from_each_source_v4_and_v6() {
    let mut lab = Lab::new("fw-ports");
    let (net, d) = (&lab.net, &lab.daemon);
    let _listeners = net.listen(&net.vps, &PORTS);

    // Without a firewall every listener answers: a closed port below is the
    // firewall's doing, not the topology's.
    for (ns, dst) in [
        (&net.inet, VPS_INET_V4),
        (&net.inet, VPS_INET_V6),
        (&net.admin, VPS_ADMIN_V4),
        (&net.admin, VPS_ADMIN_V6),
    ] {
        assert_eq!(
            reachable(ns, dst, &PORTS),
            PORTS.to_vec(),
            "baseline from {ns} to {dst}"
        );
    }

    let file = d.write_profile("firewall", FIREWALL);
    lab.daemon.start(None);
    let d = &lab.daemon;
    d.apply(&file, &[]);

    assert_eq!(
        reachable(&net.inet, VPS_INET_V4, &PORTS),
        vec![8080],
        "internet -> vps over IPv4"
    );
    assert_eq!(
        reachable(&net.inet, VPS_INET_V6, &PORTS),
        vec![8080],
        "internet -> vps over IPv6"
    );
    assert_eq!(
        reachable(&net.admin, VPS_ADMIN_V4, &PORTS),
        vec![8080, 22, 443],
        "admin -> vps over IPv4"
    );
    assert_eq!(
        reachable(&net.admin, VPS_ADMIN_V6, &PORTS),
        vec![8080, 22, 443],
        "admin -> vps over IPv6"
    );
}

#[test]
fn foreign_table_is_untouched_by_applies_drift_repair_and_restart() {
    let mut lab = Lab::new("fw-foreign");
    let r = lab.daemon.nft_script(FOREIGN);
    assert!(r.ok(), "cannot create the foreign table:\n{r}");
    let foreign = lab.daemon.table("inet", "k3s_foreign").expect("foreign table exists");

    lab.daemon.start(None);
    let d = &lab.daemon;
    let same = |when: &str| {
        assert_eq!(
            d.table("inet", "k3s_foreign").as_deref(),
            Some(foreign.as_str()),
            "foreign table changed {when}"
        );
    };
    same("by the boot converge");

    for (name, text) in [("a", A), ("b", B), ("firewall", FIREWALL)] {
        d.apply(&d.write_profile(name, text), &[]);
        same(&format!("by applying {name}"));
    }

    // The firewall fixture repairs drift every second.
    let ours = d.ruleset_present();
    let r = d.nft(&["delete", "table", "inet", "bulwark"]);
    assert!(r.ok(), "{r}");
    if let Err(last) = d.wait_ruleset(Some(&ours), Duration::from_secs(10)) {
        panic!(
            "table inet bulwark was not repaired within 10 s; last seen:\n{last:?}\n{}",
            d.logs()
        );
    }
    same("by a drift repair");

    lab.daemon.kill9();
    lab.daemon.restart();
    let d = &lab.daemon;
    if let Err(last) = d.wait_ruleset(Some(&ours), Duration::from_secs(5)) {
        panic!(
            "after a restart the ruleset is not the last generation's; last seen:\n{last:?}\n{}",
            d.logs()
        );
    }
    assert_eq!(
        d.table("inet", "k3s_foreign").as_deref(),
        Some(foreign.as_str()),
        "foreign table changed by a restart"
    );
}

#[test]
fn identical_reapply_has_an_empty_plan_and_leaves_the_ruleset_byte_identical() {
    let mut lab = Lab::new("fw-noop");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let file = d.write_profile("firewall", FIREWALL);
    let first = d.apply(&file, &[]);
    assert!(
        first.changed,
        "the first apply of a new profile changes the host: {first:?}"
    );
    let before = d.ruleset_present();
    let generations = d.generations().len();

    // Human output says so.
    let r = d.ctl_ok(&["apply", file.to_str().unwrap()]);
    let said = format!("{}{}", r.stdout, r.stderr).to_lowercase();
    assert!(
        said.contains("no change") || said.contains("unchanged") || said.contains("nothing to"),
        "a no-op apply should say there are no changes:\n{r}"
    );
    assert_eq!(
        d.ruleset().as_deref(),
        Some(before.as_str()),
        "ruleset changed by a no-op apply"
    );

    // And so does the API's own answer.
    let again = d.apply(&file, &[]);
    assert!(
        again.plan.is_empty(),
        "plan of an identical re-apply is not empty: {:?}",
        again.plan
    );
    assert!(!again.changed, "identical re-apply reports a change: {again:?}");
    assert_eq!(
        again.generation, first.generation,
        "identical re-apply made a new generation"
    );
    assert_eq!(
        d.ruleset().as_deref(),
        Some(before.as_str()),
        "ruleset changed by a no-op apply"
    );
    assert_eq!(
        d.generations().len(),
        generations,
        "a no-op apply recorded a generation"
    );
}
