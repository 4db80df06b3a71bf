//! What replacing the table would change, for people to review.
//!
//! The table is always replaced whole, so the plan is not a list of nft
//! commands: it is a readable diff between two [`Ruleset`]s. Set elements are
//! diffed per set; rules per chain by their nft text. Sets with many changes
//! (50,000 admin networks are possible) are summarised so a plan stays short.

use std::collections::HashSet;

use bulwark_model::api::{Change, ChangeOp};
use ipnet::IpNet;

use super::ruleset::{sorted_difference, Chain, NamedSet, Rule, Ruleset, FAMILY, TABLE};

/// Module name in every [`Change`].
pub const MODULE: &str = "firewall";
/// More element changes than this in one set are summarised.
const LIST_LIMIT: usize = 20;
/// How many added and how many removed elements a summary still names.
const SAMPLE: usize = 5;

/// The changes that turn `previous` (the table as last applied; `None` when
/// it does not exist yet) into `desired`. Empty when they are identical.
pub fn plan(desired: &Ruleset, previous: Option<&Ruleset>) -> Vec<Change> {
    let mut out = Vec::new();
    let empty = Ruleset::default();
    let previous = match previous {
        Some(p) => p,
        None => {
            out.push(change(ChangeOp::Add, format!("table {FAMILY} {TABLE}")));
            &empty
        }
    };
    sets(&mut out, &desired.sets, &previous.sets);
    chains(&mut out, &desired.chains, &previous.chains);
    out
}

fn change(op: ChangeOp, what: String) -> Change {
    Change::new(MODULE, op, what)
}

/// An item (a set element, a rule, a chain header) added to or removed
/// from `what`: the item is the value.
fn item(op: ChangeOp, what: String, item: String) -> Change {
    let value = Some(serde_json::Value::String(item));
    match op {
        ChangeOp::Remove => Change {
            before: value,
            ..change(op, what)
        },
        _ => Change {
            after: value,
            ..change(op, what)
        },
    }
}

fn values(what: String, before: String, after: String) -> Change {
    Change::values(MODULE, what, before, after)
}

fn sets(out: &mut Vec<Change>, desired: &[NamedSet], previous: &[NamedSet]) {
    for set in desired {
        match previous.iter().find(|p| p.name == set.name) {
            None => {
                let what = format!(
                    "set {} ({}, interval, {} elements)",
                    set.name,
                    set.family,
                    set.elements.len()
                );
                out.push(change(ChangeOp::Add, what));
                elements(out, &set.name, &set.elements, &[]);
            }
            Some(old) => {
                if old.family != set.family {
                    let what = format!("set {} type", set.name);
                    out.push(values(what, old.family.to_string(), set.family.to_string()));
                }
                elements(out, &set.name, &set.elements, &old.elements);
            }
        }
    }
    for old in previous.iter().filter(|p| !desired.iter().any(|d| d.name == p.name)) {
        out.push(change(
            ChangeOp::Remove,
            format!("set {} ({} elements)", old.name, old.elements.len()),
        ));
    }
}

fn sorted(nets: &[IpNet]) -> bool {
    nets.windows(2).all(|w| w[0] < w[1])
}

/// Element changes of one set, in the sets' own order.
fn elements(out: &mut Vec<Change>, set: &str, desired: &[IpNet], previous: &[IpNet]) {
    if desired == previous {
        return;
    }
    let (added, removed) = if sorted(desired) && sorted(previous) {
        // Profiles hold their networks merged and sorted: no hashing needed.
        sorted_difference(desired, previous)
    } else {
        let (old, new): (HashSet<&IpNet>, HashSet<&IpNet>) = (previous.iter().collect(), desired.iter().collect());
        (
            desired.iter().filter(|n| !old.contains(n)).copied().collect(),
            previous.iter().filter(|n| !new.contains(n)).copied().collect(),
        )
    };
    let total = added.len() + removed.len();
    let shown = if total > LIST_LIMIT {
        let what = format!(
            "set {set}: {} elements added, {} removed (first {SAMPLE} of each listed)",
            added.len(),
            removed.len()
        );
        out.push(change(ChangeOp::Change, what));
        SAMPLE
    } else {
        total
    };
    for net in added.iter().take(shown) {
        out.push(item(ChangeOp::Add, format!("set {set}"), net.to_string()));
    }
    for net in removed.iter().take(shown) {
        out.push(item(ChangeOp::Remove, format!("set {set}"), net.to_string()));
    }
}

fn chains(out: &mut Vec<Change>, desired: &[Chain], previous: &[Chain]) {
    for chain in desired {
        match previous.iter().find(|p| p.name == chain.name) {
            None => {
                out.push(item(ChangeOp::Add, format!("chain {}", chain.name), chain.header()));
                rules(out, &chain.name, &chain.rules, &[]);
            }
            Some(old) => {
                if (old.hook, old.priority) != (chain.hook, chain.priority) {
                    out.push(values(format!("chain {}", chain.name), old.header(), chain.header()));
                } else if old.policy != chain.policy {
                    let what = format!("chain {} policy", chain.name);
                    out.push(values(what, old.policy.to_string(), chain.policy.to_string()));
                }
                rules(out, &chain.name, &chain.rules, &old.rules);
            }
        }
    }
    for old in previous.iter().filter(|p| !desired.iter().any(|d| d.name == p.name)) {
        out.push(change(
            ChangeOp::Remove,
            format!("chain {} ({} rules)", old.name, old.rules.len()),
        ));
    }
}

/// Rules are matched as a multiset (a chain has a few dozen at most); a chain
/// whose rules are the same but in another order is reported as reordered,
/// since order decides which rule wins.
fn rules(out: &mut Vec<Change>, chain: &str, desired: &[Rule], previous: &[Rule]) {
    let mut unmatched: Vec<Option<&Rule>> = desired.iter().map(Some).collect();
    let mut removed = Vec::new();
    for old in previous {
        match unmatched.iter_mut().find(|r| **r == Some(old)) {
            Some(slot) => *slot = None,
            None => removed.push(old),
        }
    }
    for rule in &removed {
        out.push(item(ChangeOp::Remove, format!("chain {chain}"), rule.to_string()));
    }
    let added: Vec<&Rule> = unmatched.into_iter().flatten().collect();
    for rule in &added {
        out.push(item(ChangeOp::Add, format!("chain {chain}"), rule.to_string()));
    }
    if added.is_empty() && removed.is_empty() && desired != previous {
        out.push(change(ChangeOp::Change, format!("chain {chain}: rules reordered")));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use bulwark_model::profile::Firewall;

    use super::super::render::render;
    use super::super::ruleset::Policy;
    use super::*;

    fn firewall() -> Firewall {
        Firewall {
            admin_v4: vec!["192.0.2.0/24".parse().unwrap()],
            public_tcp: vec![80, 443],
            admin_tcp: vec![22],
            ..Firewall::default()
        }
    }

    fn lines(changes: &[Change]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn identical_rulesets_plan_nothing() {
        let rs = render(&firewall(), Some("wg0"));
        assert!(plan(&rs, Some(&rs.clone())).is_empty());
    }

    #[test]
    fn an_added_network_is_one_element_change() {
        let before = render(&firewall(), None);
        let mut fw = firewall();
        fw.admin_v4.push("198.51.100.0/24".parse().unwrap());
        let changes = plan(&render(&fw, None), Some(&before));
        assert_eq!(lines(&changes), ["+ firewall: set admin_v4: 198.51.100.0/24"]);
    }

    #[test]
    fn a_changed_port_removes_one_rule_and_adds_another() {
        let before = render(&firewall(), None);
        let after = render(
            &Firewall {
                public_tcp: vec![80, 8443],
                ..firewall()
            },
            None,
        );
        assert_eq!(
            lines(&plan(&after, Some(&before))),
            [
                "- firewall: chain input: tcp dport { 80, 443 } accept",
                "+ firewall: chain input: tcp dport { 80, 8443 } accept"
            ]
        );
    }

    #[test]
    fn first_admin_network_adds_its_element_and_the_rule_using_it() {
        let before = render(
            &Firewall {
                admin_v4: vec![],
                ..firewall()
            },
            None,
        );
        let changes = plan(&render(&firewall(), None), Some(&before));
        assert_eq!(
            lines(&changes),
            [
                "+ firewall: set admin_v4: 192.0.2.0/24",
                "+ firewall: chain input: tcp dport 22 ip saddr @admin_v4 accept"
            ]
        );
    }

    #[test]
    fn policy_change_is_reported() {
        let before = render(&firewall(), None);
        let mut after = before.clone();
        after.chains[0].policy = Policy::Accept;
        assert_eq!(
            lines(&plan(&after, Some(&before))),
            ["~ firewall: chain input policy: drop -> accept"]
        );
    }

    #[test]
    fn reordered_rules_are_reported() {
        let before = render(&firewall(), None);
        let mut after = before.clone();
        after.chains[0].rules.swap(0, 1);
        assert_eq!(
            lines(&plan(&after, Some(&before))),
            ["~ firewall: chain input: rules reordered"]
        );
    }

    #[test]
    fn big_set_changes_are_summarised() {
        let nets = |range: std::ops::Range<u32>| {
            range
                .map(|i| ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
                .collect()
        };
        let before = render(
            &Firewall {
                admin_v4: nets(0..100),
                ..firewall()
            },
            None,
        );
        let after = render(
            &Firewall {
                admin_v4: nets(3..1003),
                ..firewall()
            },
            None,
        );
        let changes = plan(&after, Some(&before));
        assert_eq!(
            changes[0].to_string(),
            "~ firewall: set admin_v4: 903 elements added, 3 removed (first 5 of each listed)"
        );
        assert_eq!(changes[1].to_string(), "+ firewall: set admin_v4: 10.0.100.0/24");
        assert_eq!(changes.len(), 1 + 5 + 3);
        assert_eq!(changes[6].to_string(), "- firewall: set admin_v4: 10.0.0.0/24");
    }

    #[test]
    fn a_new_table_lists_everything_that_will_exist() {
        let rs = render(&firewall(), None);
        let changes = plan(&rs, None);
        assert!(changes.iter().all(|c| c.op == ChangeOp::Add));
        let text = lines(&changes);
        assert_eq!(text[0], "+ firewall: table inet bulwark");
        assert_eq!(text[1], "+ firewall: set admin_v4 (ipv4_addr, interval, 1 elements)");
        assert_eq!(text[2], "+ firewall: set admin_v4: 192.0.2.0/24");
        assert!(text.contains(&"+ firewall: chain input: type filter hook input priority 0; policy drop;".to_owned()));
        assert!(text.contains(&"+ firewall: chain input: tcp dport 22 ip saddr @admin_v4 accept".to_owned()));
        let rules = rs.chains.iter().map(|c| c.rules.len()).sum::<usize>();
        assert_eq!(changes.len(), 1 + rs.sets.len() + 1 + rs.chains.len() + rules);
    }

    #[test]
    fn removed_sets_and_chains_are_reported() {
        let before = render(&firewall(), None);
        let mut after = before.clone();
        after.sets.pop();
        after.chains.pop();
        let text = lines(&plan(&after, Some(&before)));
        assert_eq!(
            text,
            [
                "- firewall: set cluster_v6 (0 elements)",
                "- firewall: chain forward (2 rules)"
            ]
        );
    }
}
