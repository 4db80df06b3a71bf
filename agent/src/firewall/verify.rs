//! Comparing the table read back with what was sent, and with what it was
//! before.
//!
//! nft lists a table differently from how it was sent (dependencies dropped,
//! prefixes normalised, sets printed in its own order), so the comparison is
//! not of documents but of a [`Summary`] both sides can produce: each set's
//! type and elements, each chain's hook, priority, policy and the verdict of
//! every rule in order. That catches an nft that exits 0 and changed nothing,
//! a table replaced by someone else, a policy turned to `accept`, a rule
//! removed or an element added. Listings of the same table compare exactly, so
//! drift (live listing against the one taken after the apply) also reports
//! rules whose matches changed.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde_json::Value;

use super::ruleset::{sorted_difference, Action, Ruleset};

/// What a table holds, in a form both the sent ruleset and nft's listing give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Set name → (element type, elements sorted).
    pub sets: BTreeMap<String, (String, Vec<IpNet>)>,
    pub chains: BTreeMap<String, ChainSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainSummary {
    pub hook: String,
    pub priority: i64,
    pub policy: String,
    /// `accept`, `drop` or `log` for each rule, in order.
    pub verdicts: Vec<String>,
    /// Each rule as read back, encoded (read-backs only; empty for a sent
    /// ruleset): equal encodings mean equal rules.
    pub rules: Vec<Vec<u8>>,
}

impl Summary {
    pub fn of_ruleset(rs: &Ruleset) -> Summary {
        let sets = rs
            .sets
            .iter()
            .map(|s| {
                let mut elements = s.elements.clone();
                elements.sort();
                (s.name.clone(), (s.family.addr_type().to_owned(), elements))
            })
            .collect();
        let chains = rs
            .chains
            .iter()
            .map(|c| {
                let verdicts = c
                    .rules
                    .iter()
                    .map(|r| match r.action {
                        Action::Accept => "accept",
                        Action::Drop => "drop",
                        Action::Log { .. } => "log",
                    })
                    .map(str::to_owned)
                    .collect();
                let summary = ChainSummary {
                    hook: c.hook.to_string(),
                    priority: i64::from(c.priority),
                    policy: c.policy.to_string(),
                    verdicts,
                    rules: Vec::new(),
                };
                (c.name.clone(), summary)
            })
            .collect();
        Summary { sets, chains }
    }

    /// From `nft -j list table inet bulwark` (canonical or not).
    pub fn of_listing(doc: &Value) -> Result<Summary, String> {
        let items = doc
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or("the listing has no \"nftables\" array")?;
        let mut out = Summary::default();
        for item in items {
            if let Some(set) = item.get("set") {
                let name = str_field(set, "name")?;
                let kind = str_field(set, "type")?;
                let mut elements = Vec::new();
                for e in set.get("elem").and_then(Value::as_array).into_iter().flatten() {
                    elements.push(element(e).ok_or_else(|| format!("set {name}: element {e} is not a network"))?);
                }
                elements.sort();
                out.sets.insert(name.to_owned(), (kind.to_owned(), elements));
            } else if let Some(chain) = item.get("chain") {
                let name = str_field(chain, "name")?;
                let entry = out.chains.entry(name.to_owned()).or_default();
                entry.hook = chain.get("hook").and_then(Value::as_str).unwrap_or("").to_owned();
                entry.priority = chain.get("prio").and_then(Value::as_i64).unwrap_or(0);
                entry.policy = chain
                    .get("policy")
                    .and_then(Value::as_str)
                    .unwrap_or("accept")
                    .to_owned();
            } else if let Some(rule) = item.get("rule") {
                let chain = str_field(rule, "chain")?;
                let expr = rule.get("expr").and_then(Value::as_array).cloned().unwrap_or_default();
                let verdict = expr
                    .last()
                    .and_then(Value::as_object)
                    .and_then(|o| o.keys().next().cloned())
                    .unwrap_or_default();
                let entry = out.chains.entry(chain.to_owned()).or_default();
                entry.verdicts.push(verdict);
                entry.rules.push(serde_json::to_vec(&expr).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

fn str_field<'a>(obj: &'a Value, key: &str) -> Result<&'a str, String> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("an object without \"{key}\": {obj}"))
}

/// A set element as nft lists it: a bare address or `{"prefix": …}`.
fn element(e: &Value) -> Option<IpNet> {
    match e {
        Value::String(s) => s.parse::<std::net::IpAddr>().ok().map(IpNet::from),
        Value::Object(o) => {
            let p = o.get("prefix")?;
            let addr: std::net::IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
            let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
            IpNet::new(addr, len).ok()
        }
        _ => None,
    }
}

/// Every difference between what should be there and what is, one line each;
/// empty when they agree. Rule contents are compared only when both sides
/// are listings.
pub fn differences(want: &Summary, have: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    for (name, (kind, elements)) in &want.sets {
        match have.sets.get(name) {
            None => out.push(format!("set {name} is missing")),
            Some((have_kind, _)) if have_kind != kind => {
                out.push(format!("set {name}: type {have_kind} where {kind} was sent"))
            }
            Some((_, have_elements)) => {
                let (removed, added) = sorted_difference(elements, have_elements);
                if !added.is_empty() || !removed.is_empty() {
                    out.push(format!(
                        "set {name}: {} element(s) added, {} removed",
                        added.len(),
                        removed.len()
                    ));
                }
            }
        }
    }
    for name in have.sets.keys().filter(|n| !want.sets.contains_key(*n)) {
        out.push(format!("set {name} was added"));
    }
    for (name, c) in &want.chains {
        let Some(h) = have.chains.get(name) else {
            out.push(format!("chain {name} is missing"));
            continue;
        };
        if (h.hook.as_str(), h.priority) != (c.hook.as_str(), c.priority) {
            out.push(format!(
                "chain {name}: hook {} priority {} where {} priority {} was sent",
                h.hook, h.priority, c.hook, c.priority
            ));
        }
        if h.policy != c.policy {
            out.push(format!("chain {name}: policy {} where {} was sent", h.policy, c.policy));
        }
        if h.verdicts != c.verdicts {
            out.push(format!(
                "chain {name}: {} rule(s) ({}) where {} ({}) were sent",
                h.verdicts.len(),
                h.verdicts.join(", "),
                c.verdicts.len(),
                c.verdicts.join(", ")
            ));
        } else if !c.rules.is_empty() && h.rules != c.rules {
            let changed = c.rules.iter().zip(&h.rules).filter(|(a, b)| a != b).count();
            out.push(format!("chain {name}: {changed} rule(s) changed"));
        }
    }
    for name in have.chains.keys().filter(|n| !want.chains.contains_key(*n)) {
        out.push(format!("chain {name} was added"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::firewall::render;
    use bulwark_model::profile::Firewall;

    fn listing() -> Value {
        serde_json::json!({"nftables": [
            {"table": {"family": "inet", "name": "bulwark"}},
            {"set": {"family": "inet", "table": "bulwark", "name": "admin_v4", "type": "ipv4_addr",
                     "flags": ["interval"], "elem": ["192.0.2.7", {"prefix": {"addr": "198.51.100.0", "len": 24}}]}},
            {"chain": {"family": "inet", "table": "bulwark", "name": "input", "type": "filter",
                       "hook": "input", "prio": 0, "policy": "drop"}},
            {"rule": {"family": "inet", "table": "bulwark", "chain": "input",
                      "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]}},
        ]})
    }

    #[test]
    fn a_listing_summarises_sets_chains_and_verdicts() {
        let s = Summary::of_listing(&listing()).unwrap();
        let (kind, elements) = &s.sets["admin_v4"];
        assert_eq!(kind, "ipv4_addr");
        assert_eq!(
            elements,
            &vec![
                "192.0.2.7/32".parse::<IpNet>().unwrap(),
                "198.51.100.0/24".parse().unwrap()
            ]
        );
        assert_eq!(s.chains["input"].policy, "drop");
        assert_eq!(s.chains["input"].verdicts, ["accept"]);
    }

    #[test]
    fn the_sent_ruleset_agrees_with_itself_and_differences_are_named() {
        let fw = Firewall {
            admin_v4: vec!["198.51.100.0/24".parse().unwrap()],
            admin_tcp: vec![22],
            public_tcp: vec![443],
            ..Firewall::default()
        };
        let want = Summary::of_ruleset(&render(&fw, None));
        assert!(differences(&want, &want).is_empty());

        let mut open = want.clone();
        if let Some(c) = open.chains.get_mut("input") {
            c.policy = "accept".to_owned();
        }
        assert_eq!(
            differences(&want, &open),
            ["chain input: policy accept where drop was sent"]
        );
        let mut extra = want.clone();
        if let Some((_, e)) = extra.sets.get_mut("admin_v4") {
            e.push("0.0.0.0/0".parse().unwrap());
            e.sort();
        }
        assert_eq!(
            differences(&want, &extra),
            ["set admin_v4: 1 element(s) added, 0 removed"]
        );
        assert_eq!(
            differences(&want, &Summary::default()).len(),
            want.sets.len() + want.chains.len()
        );
    }

    #[test]
    fn listings_of_changed_rules_with_the_same_verdicts_differ() {
        let a = Summary::of_listing(&listing()).unwrap();
        let mut doc = listing();
        doc["nftables"][3]["rule"]["expr"][0]["match"]["right"] = Value::from("eth0");
        let b = Summary::of_listing(&doc).unwrap();
        assert_eq!(differences(&a, &b), ["chain input: 1 rule(s) changed"]);
    }
}
