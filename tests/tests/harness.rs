//! The harness itself: the topology carries packets both ways before any
//! firewall exists, and everything it made is gone afterwards. Without this,
//! a "port unreachable" in the other tests could be a broken topology.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use bulwark_tests::addr::*;
use bulwark_tests::{in_ns, reachable, run_ok, Net};

#[test]
fn topology_carries_v4_and_v6_from_both_neighbours_without_a_firewall() {
    let net = Net::new("harness");
    let _l = net.listen(&net.vps, &[22, 8080]);
    assert_eq!(reachable(&net.admin, VPS_ADMIN_V4, &[22, 8080, 9999]), vec![22, 8080]);
    assert_eq!(reachable(&net.admin, VPS_ADMIN_V6, &[22, 8080, 9999]), vec![22, 8080]);
    assert_eq!(reachable(&net.inet, VPS_INET_V4, &[22, 8080, 9999]), vec![22, 8080]);
    assert_eq!(reachable(&net.inet, VPS_INET_V6, &[22, 8080, 9999]), vec![22, 8080]);
}

#[test]
fn sockets_made_in_ns_live_in_that_namespace() {
    let net = Net::new("harness");
    let addrs = in_ns(&net.admin, || {
        let out = Command::new("ip")
            .args(["-o", "addr", "show", "dev", "bw-vps"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    });
    assert!(addrs.contains("198.51.100.2/24"), "{addrs}");
    assert!(addrs.contains("2001:db8:10::2/64"), "{addrs}");
}

#[test]
fn namespaces_are_deleted_on_drop() {
    let names = {
        let net = Net::new("harness");
        vec![net.vps.clone(), net.admin.clone(), net.inet.clone()]
    };
    let list = run_ok(Command::new("ip").args(["netns", "list"])).stdout;
    for n in names {
        assert!(
            !list.lines().any(|l| l.split_whitespace().next() == Some(n.as_str())),
            "{n} left behind:\n{list}"
        );
    }
}
