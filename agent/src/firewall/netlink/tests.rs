//! Every message against the real kernel, in a private network namespace,
//! and checked against what `nft` lists afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use bulwark_model::profile::Firewall;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::*;
use crate::converge::task::{Command as EngineCommand, Waker};
use crate::firewall::events::{Since, Watch};
use crate::firewall::render::render;
use crate::firewall::testns::Netns;
use crate::firewall::Nft;

fn root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates a network namespace and loads nftables rules: run it as root"
    );
}

fn nft(args: &[&str]) -> String {
    let out = Command::new("/usr/sbin/nft").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// The elements of `set` as nft lists them, one network per entry, sorted.
fn listed(set: &str) -> Vec<IpNet> {
    let doc: serde_json::Value = serde_json::from_str(&nft(&["-j", "list", "set", "inet", "bulwark", set])).unwrap();
    let s = crate::firewall::verify::Summary::of_listing(&doc).unwrap();
    s.sets[set].1.clone()
}

fn table_with(admin_v4: &[&str], admin_v6: &[&str]) -> crate::firewall::Ruleset {
    let fw = Firewall {
        admin_v4: admin_v4.iter().map(|n| n.parse::<Ipv4Net>().unwrap()).collect(),
        admin_v6: admin_v6.iter().map(|n| n.parse::<Ipv6Net>().unwrap()).collect(),
        admin_tcp: vec![22],
        ..Firewall::default()
    };
    render(&fw, None)
}

#[test]
fn the_generation_moves_with_every_commit_and_only_then() {
    root();
    Netns::create().run(|| {
        let mut k = NfTables::open().unwrap();
        let g0 = k.generation().unwrap();
        assert_eq!(k.generation().unwrap(), g0, "no commit, same generation");
        nft(&["add", "table", "ip", "someone"]);
        let g1 = k.generation().unwrap();
        assert_eq!(g1, next_generation(g0));
        nft(&["list", "ruleset"]);
        assert_eq!(k.generation().unwrap(), g1, "a listing is no commit");
        assert!(later(g1, g0) && !later(g0, g1) && later(1, u32::MAX));
    });
}

#[test]
fn element_pairs_add_and_remove_networks_in_one_commit() {
    root();
    Netns::create().run(|| {
        Nft::default()
            .apply(&table_with(&["192.0.2.0/24", "198.51.100.7/32"], &["2001:db8::/48"]))
            .unwrap();
        let mut k = NfTables::open().unwrap();
        let g = k.generation().unwrap();
        let changes = [
            SetChange {
                set: "admin_v4".into(),
                add: vec![net("10.9.0.0/16"), net("203.0.113.9/32")],
                remove: vec![net("198.51.100.7/32")],
            },
            SetChange {
                set: "admin_v6".into(),
                add: vec![net("2001:db8:ffff::1/128")],
                remove: vec![net("2001:db8::/48")],
            },
        ];
        let after = k.change_elements(g, &changes).unwrap();
        assert_eq!(after, next_generation(g), "one commit");
        assert_eq!(
            listed("admin_v4"),
            [net("10.9.0.0/16"), net("192.0.2.0/24"), net("203.0.113.9/32")]
        );
        assert_eq!(listed("admin_v6"), [net("2001:db8:ffff::1/128")]);
        // The kernel matches packets by these intervals: nft's own view of
        // the set is exactly what a full apply of the same networks lists.
        let text = nft(&["list", "set", "inet", "bulwark", "admin_v4"]);
        Nft::default()
            .apply(&table_with(
                &["10.9.0.0/16", "192.0.2.0/24", "203.0.113.9/32"],
                &["2001:db8:ffff::1/128"],
            ))
            .unwrap();
        assert_eq!(nft(&["list", "set", "inet", "bulwark", "admin_v4"]), text);
    });
}

#[test]
fn a_refused_element_change_changes_nothing() {
    root();
    Netns::create().run(|| {
        Nft::default().apply(&table_with(&["192.0.2.0/24"], &[])).unwrap();
        let before = nft(&["list", "table", "inet", "bulwark"]);
        let mut k = NfTables::open().unwrap();
        let g = k.generation().unwrap();
        // The add would succeed alone; the remove of an absent network
        // fails, and the whole transaction with it.
        let err = k
            .change_elements(
                g,
                &[SetChange {
                    set: "admin_v4".into(),
                    add: vec![net("10.1.0.0/16")],
                    remove: vec![net("203.0.113.0/24")],
                }],
            )
            .unwrap_err();
        assert!(matches!(err, NetlinkError::Refused { .. }), "{err:?}");
        assert!(err.to_string().contains("remove from set admin_v4"), "{err}");
        assert_eq!(nft(&["list", "table", "inet", "bulwark"]), before);
        assert_eq!(k.generation().unwrap(), g);

        // An element that already exists is refused too (NLM_F_EXCL).
        let dup = SetChange {
            set: "admin_v4".into(),
            add: vec![net("192.0.2.0/24")],
            remove: vec![],
        };
        assert!(k.change_elements(g, &[dup]).is_err());
        assert_eq!(nft(&["list", "table", "inet", "bulwark"]), before);
    });
}

#[test]
fn a_change_planned_against_an_old_generation_is_refused_whole() {
    root();
    Netns::create().run(|| {
        Nft::default().apply(&table_with(&["192.0.2.0/24"], &[])).unwrap();
        let mut k = NfTables::open().unwrap();
        let planned = k.generation().unwrap();
        nft(&["add", "table", "ip", "someone"]);
        let before = nft(&["list", "table", "inet", "bulwark"]);
        let add = SetChange {
            set: "admin_v4".into(),
            add: vec![net("10.1.0.0/16")],
            remove: vec![],
        };
        let err = k.change_elements(planned, &[add]).unwrap_err();
        assert!(matches!(err, NetlinkError::Moved { .. }), "{err:?}");
        assert_eq!(nft(&["list", "table", "inet", "bulwark"]), before);
    });
}

#[test]
fn large_changes_are_split_into_messages_of_one_transaction() {
    root();
    Netns::create().run(|| {
        Nft::default().apply(&table_with(&[], &[])).unwrap();
        let mut k = NfTables::open().unwrap();
        let g = k.generation().unwrap();
        let add: Vec<IpNet> = (0..3000u32)
            .map(|i| IpNet::V4(Ipv4Net::new((0x0a00_0000 + (i << 8)).into(), 24).unwrap()))
            .step_by(2)
            .collect();
        let change = SetChange {
            set: "admin_v4".into(),
            add: add.clone(),
            remove: vec![],
        };
        assert_eq!(k.change_elements(g, &[change]).unwrap(), next_generation(g));
        assert_eq!(listed("admin_v4"), add);
    });
}

#[test]
fn the_watcher_sees_who_touched_table_inet_bulwark() {
    root();
    Netns::create().run(|| {
        Nft::default().apply(&table_with(&["192.0.2.0/24"], &[])).unwrap();
        let (waker, woken) = Waker::for_test();
        let watch = Watch::start(waker).unwrap();
        let mut k = NfTables::open().unwrap();
        let g = k.generation().unwrap();
        assert_eq!(watch.since(g, g, Duration::ZERO), Since::Unchanged);

        nft(&["add", "table", "ip", "someone"]);
        let other = k.generation().unwrap();
        assert_eq!(watch.since(g, other, Duration::from_secs(2)), Since::Unchanged);
        assert!(woken.try_recv().is_err(), "another table's commit woke the engine");

        nft(&["add", "element", "inet", "bulwark", "admin_v4", "{ 10.0.0.0/8 }"]);
        let touched = k.generation().unwrap();
        assert_eq!(watch.since(other, touched, Duration::from_secs(2)), Since::Touched);
        assert!(matches!(
            woken.recv_timeout(Duration::from_secs(2)),
            Ok(EngineCommand::Wake)
        ));
        assert!(watch.touched_after(other));
        assert!(!watch.touched_after(touched));

        // `nft flush ruleset` deletes the table: a touch, like any other.
        nft(&["flush", "ruleset"]);
        let flushed = k.generation().unwrap();
        assert_eq!(watch.since(touched, flushed, Duration::from_secs(2)), Since::Touched);
    });
}

#[test]
fn the_read_back_is_what_was_sent_and_sees_every_change() {
    use crate::firewall::readback;
    use crate::firewall::verify::{differences, Summary};
    root();
    Netns::create().run(|| {
        let mut k = NfTables::open().unwrap();
        assert!(readback::read(&mut k).unwrap().1.is_none(), "no table yet");
        // Adjacent networks that do not merge, a host, the top of the
        // address space, and IPv6.
        let rs = table_with(
            &["10.0.1.0/24", "10.0.2.0/24", "192.0.2.7/32", "255.255.255.0/24"],
            &["2001:db8::/48", "2001:db8:1::/48"],
        );
        Nft::default().apply(&rs).unwrap();
        let (g, table) = readback::read(&mut k).unwrap();
        assert_eq!(g, k.generation().unwrap());
        let table = table.unwrap();
        let diffs = differences(&Summary::of_ruleset(&rs), &table.summary());
        assert!(diffs.is_empty(), "{diffs:?}\n{table:#?}");
        assert_eq!(
            readback::read(&mut k).unwrap().1.as_ref(),
            Some(&table),
            "two reads differ"
        );

        // A rule with the same verdict but another match is a change.
        nft(&["flush", "chain", "inet", "bulwark", "input"]);
        let changed = readback::read(&mut k).unwrap().1.unwrap();
        assert!(!differences(&Summary::of_ruleset(&rs), &changed.summary()).is_empty());
        Nft::default().apply(&rs).unwrap();
        let again = readback::read(&mut k).unwrap().1.unwrap();
        assert_eq!(
            again.shape(),
            table.shape(),
            "a replace by the same ruleset reads the same"
        );
        nft(&[
            "add", "rule", "inet", "bulwark", "input", "tcp", "dport", "23", "accept",
        ]);
        let extra = readback::read(&mut k).unwrap().1.unwrap();
        assert_ne!(extra.shape(), table.shape());
        let mut swapped = rs.clone();
        swapped.chains[0].rules.swap(5, 6);
        Nft::default().apply(&swapped).unwrap();
        let other = readback::read(&mut k).unwrap().1.unwrap();
        let mut want = Summary::of_ruleset(&rs);
        for (name, c) in &mut want.chains {
            c.rules = table.summary().chains[name].rules.clone();
        }
        assert!(
            !differences(&want, &other.summary()).is_empty(),
            "reordered rules read the same"
        );
    });
}
