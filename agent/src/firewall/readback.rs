//! Reading table inet bulwark back from the kernel over netlink.
//!
//! `nft list` of a 50,000-element table takes most of a second (nft loads
//! its whole cache and prints every element), so the read-back after an
//! apply, and every drift check, dump the table directly instead: its sets
//! with their elements, its chains and its rules, exactly as the kernel
//! holds them. Two reads of an unchanged table are equal byte for byte
//! ([`Table`]); [`Table::summary`] turns one into the [`Summary`] a sent
//! ruleset is compared with (each set's type and networks, each chain's
//! hook, priority and policy, and every rule's verdict).
//!
//! The four dumps are one consistent picture only if no commit happened
//! between them: the generation id is read before and after, and a read
//! that straddles a commit is taken again.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::netlink::{
    attribute, string_attr, NetlinkError, NfTables, NFPROTO_INET, NFTA_DATA_VALUE, NFTA_DATA_VERDICT, NFTA_LIST_ELEM,
    NFTA_OBJECT_TABLE, NFTA_SET_ELEM_FLAGS, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_SET_ELEM_LIST_SET,
    NFTA_SET_ELEM_LIST_TABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET, NFT_MSG_GETSETELEM,
    NFT_SET_ELEM_INTERVAL_END,
};
use super::verify::{ChainSummary, Summary};

// linux/netfilter/nf_tables.h
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFT_SET_ANONYMOUS: u32 = 0x1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
// linux/netfilter.h
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
// nft's own datatype ids (src/datatype.h), stored as the set's key type.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;

/// How often a read that straddled a commit is retried.
const ATTEMPTS: usize = 5;

/// One set as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetDump {
    pub key_type: u32,
    pub flags: u32,
    /// Bytes in a key (4 for IPv4, 16 for IPv6).
    pub key_len: usize,
    /// (key as a number, whether it ends an interval), sorted.
    pub elements: Vec<(u128, bool)>,
}

/// One chain as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainDump {
    pub kind: String,
    pub hook: Option<(u32, i32)>,
    pub policy: Option<u32>,
    /// Each rule's expressions, as the kernel encodes them, in order.
    pub rules: Vec<Vec<u8>>,
}

/// Table inet bulwark as the kernel holds it (anonymous sets included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub sets: BTreeMap<String, SetDump>,
    pub chains: BTreeMap<String, ChainDump>,
}

/// Read the table (`None` when it does not exist) and the generation it
/// was read at.
pub fn read(k: &mut NfTables) -> Result<(u32, Option<Table>), NetlinkError> {
    for _ in 0..ATTEMPTS {
        let before = k.generation()?;
        let table = match read_once(k) {
            Err(NetlinkError::Interrupted) => continue,
            other => other?,
        };
        if k.generation()? == before {
            return Ok((before, table));
        }
    }
    Err(NetlinkError::Interrupted)
}

fn read_once(k: &mut NfTables) -> Result<Option<Table>, NetlinkError> {
    let name = k.table_name().to_owned();
    if !k.table_exists(&name)? {
        return Ok(None);
    }
    let ours = |payload: &[u8]| {
        attribute(payload, NFTA_OBJECT_TABLE).is_some_and(|t| t.strip_suffix(&[0]) == Some(name.as_bytes()))
    };
    let filter = [string_attr(NFTA_OBJECT_TABLE, &name)];
    let mut table = Table::default();
    for m in k.dump(NFT_MSG_GETSET, NFPROTO_INET, &filter)? {
        if !ours(&m.payload) {
            continue;
        }
        let set = text(&m.payload, NFTA_SET_NAME);
        let dump = SetDump {
            key_type: be32(&m.payload, NFTA_SET_KEY_TYPE).unwrap_or(0),
            flags: be32(&m.payload, NFTA_SET_FLAGS).unwrap_or(0),
            key_len: be32(&m.payload, NFTA_SET_KEY_LEN).unwrap_or(4) as usize,
            elements: Vec::new(),
        };
        table.sets.insert(set, dump);
    }
    let names: Vec<String> = table.sets.keys().cloned().collect();
    for set in names {
        let attrs = [
            string_attr(NFTA_SET_ELEM_LIST_TABLE, &name),
            string_attr(NFTA_SET_ELEM_LIST_SET, &set),
        ];
        let mut elements = Vec::new();
        for m in k.dump(NFT_MSG_GETSETELEM, NFPROTO_INET, &attrs)? {
            let Some(list) = attribute(&m.payload, NFTA_SET_ELEM_LIST_ELEMENTS) else {
                continue;
            };
            for e in nested_all(&list, NFTA_LIST_ELEM) {
                let key = attribute(&e, NFTA_SET_ELEM_KEY)
                    .and_then(|k| attribute(&k, NFTA_DATA_VALUE))
                    .unwrap_or_default();
                let flags = be32(&e, NFTA_SET_ELEM_FLAGS).unwrap_or(0);
                elements.push((number(&key), flags & NFT_SET_ELEM_INTERVAL_END != 0));
            }
        }
        elements.sort();
        if let Some(s) = table.sets.get_mut(&set) {
            s.elements = elements;
        }
    }
    for m in k.dump(NFT_MSG_GETCHAIN, NFPROTO_INET, &filter)? {
        if !ours(&m.payload) {
            continue;
        }
        let hook = attribute(&m.payload, NFTA_CHAIN_HOOK).map(|h| {
            let num = be32(&h, NFTA_HOOK_HOOKNUM).unwrap_or(u32::MAX);
            let prio = be32(&h, NFTA_HOOK_PRIORITY).unwrap_or(0) as i32;
            (num, prio)
        });
        let chain = table.chains.entry(text(&m.payload, NFTA_CHAIN_NAME)).or_default();
        chain.kind = text(&m.payload, NFTA_CHAIN_TYPE);
        chain.hook = hook;
        chain.policy = be32(&m.payload, NFTA_CHAIN_POLICY);
    }
    for m in k.dump(NFT_MSG_GETRULE, NFPROTO_INET, &filter)? {
        if !ours(&m.payload) {
            continue;
        }
        let chain = table.chains.entry(text(&m.payload, NFTA_RULE_CHAIN)).or_default();
        chain
            .rules
            .push(attribute(&m.payload, NFTA_RULE_EXPRESSIONS).unwrap_or_default());
    }
    Ok(Some(table))
}

impl Table {
    /// The table without the elements of its named sets: what stays the
    /// same while set elements are added and removed.
    pub fn shape(&self) -> Table {
        let mut t = self.clone();
        for set in t.sets.values_mut().filter(|s| s.flags & NFT_SET_ANONYMOUS == 0) {
            set.elements = Vec::new();
        }
        t
    }

    /// What a sent ruleset is compared with.
    pub fn summary(&self) -> Summary {
        let mut out = Summary::default();
        for (name, set) in &self.sets {
            if set.flags & NFT_SET_ANONYMOUS != 0 {
                continue;
            }
            let kind = match set.key_type {
                TYPE_IPADDR => "ipv4_addr".to_owned(),
                TYPE_IP6ADDR => "ipv6_addr".to_owned(),
                other => format!("type {other}"),
            };
            out.sets
                .insert(name.clone(), (kind, intervals(&set.elements, set.key_len)));
        }
        for (name, chain) in &self.chains {
            let (hook, priority) = match chain.hook {
                Some((NF_INET_LOCAL_IN, p)) => ("input".to_owned(), p),
                Some((NF_INET_FORWARD, p)) => ("forward".to_owned(), p),
                Some((n, p)) => (format!("hook {n}"), p),
                None => (String::new(), 0),
            };
            let summary = ChainSummary {
                hook,
                priority: i64::from(priority),
                policy: verdict_name(chain.policy.unwrap_or(NF_ACCEPT)),
                verdicts: chain.rules.iter().map(|r| rule_verdict(r)).collect(),
                rules: chain.rules.clone(),
            };
            out.chains.insert(name.clone(), summary);
        }
        out
    }
}

fn verdict_name(code: u32) -> String {
    match code {
        NF_ACCEPT => "accept".to_owned(),
        NF_DROP => "drop".to_owned(),
        other => format!("verdict {other}"),
    }
}

/// `accept`, `drop` or `log`: what the rule's last expression does.
fn rule_verdict(exprs: &[u8]) -> String {
    let Some(last) = nested_all(exprs, NFTA_LIST_ELEM).pop() else {
        return String::new();
    };
    let name = text(&last, NFTA_EXPR_NAME);
    if name != "immediate" {
        return name;
    }
    attribute(&last, NFTA_EXPR_DATA)
        .and_then(|d| attribute(&d, NFTA_IMMEDIATE_DATA))
        .and_then(|d| attribute(&d, NFTA_DATA_VERDICT))
        .and_then(|v| be32(&v, NFTA_VERDICT_CODE))
        .map_or_else(|| "immediate".to_owned(), verdict_name)
}

/// The networks an interval set holds: each start element opens an
/// interval that the next end element closes (the first address after it);
/// a start right after another start closes the one before (nft leaves out
/// the end element between adjacent intervals); an interval left open runs
/// to the top of the address space.
fn intervals(elements: &[(u128, bool)], width: usize) -> Vec<IpNet> {
    let mut out = Vec::new();
    let mut open: Option<u128> = None;
    let top = if width == 16 { u128::MAX } else { u128::from(u32::MAX) };
    // Ends sort before starts at the same key: one interval ends where the next begins.
    let mut sorted: Vec<(u128, bool)> = elements.iter().map(|(k, end)| (*k, !end)).collect();
    sorted.sort_unstable();
    for (key, start) in sorted {
        if let Some(from) = open.take() {
            if key > from {
                push_range(&mut out, from, key - 1, width);
            }
        }
        if start {
            open = Some(key);
        }
    }
    if let Some(from) = open {
        push_range(&mut out, from, top, width);
    }
    out.sort();
    out
}

fn number(key: &[u8]) -> u128 {
    key.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b))
}

/// `[from, to]` as the fewest prefixes that cover it exactly.
fn push_range(out: &mut Vec<IpNet>, from: u128, to: u128, width: usize) {
    let bits = (width * 8) as u32;
    let mut at = from;
    loop {
        // The largest aligned block starting at `at` that fits before `to`.
        let mut len = if at == 0 { bits } else { at.trailing_zeros().min(bits) };
        while len > 0 && (len >= 128 || at.checked_add((1u128 << len) - 1).is_none_or(|end| end > to)) {
            len -= 1;
        }
        let addr = if width == 16 {
            IpAddr::V6(at.into())
        } else {
            IpAddr::V4((at as u32).into())
        };
        if let Ok(net) = IpNet::new(addr, (bits - len) as u8) {
            out.push(net);
        }
        let size = if len >= 128 { u128::MAX } else { 1u128 << len };
        match at.checked_add(size) {
            Some(next) if next <= to && next > at => at = next,
            _ => return,
        }
    }
}

/// Every attribute `kind` directly inside `attrs`, in order.
fn nested_all(attrs: &[u8], kind: u16) -> Vec<Vec<u8>> {
    netlink_packet_core::NlasIterator::new(attrs)
        .filter_map(Result::ok)
        .filter(|n| n.kind() == kind)
        .map(|n| n.value().to_vec())
        .collect()
}

fn be32(attrs: &[u8], kind: u16) -> Option<u32> {
    attribute(attrs, kind)
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map(u32::from_be_bytes)
}

fn text(attrs: &[u8], kind: u16) -> String {
    let v = attribute(attrs, kind).unwrap_or_default();
    String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(&v)).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v4(a: &str) -> u128 {
        u128::from(u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()))
    }

    #[test]
    fn intervals_become_the_networks_they_were_sent_as() {
        let els = vec![
            (v4("10.0.0.0"), false),
            (v4("10.0.1.0"), true),
            // Adjacent, without the end element between them.
            (v4("10.0.2.0"), false),
            (v4("10.0.3.0"), false),
            (v4("10.0.4.0"), true),
            (v4("192.0.2.7"), false),
            (v4("192.0.2.8"), true),
            // Open to the top of the address space.
            (v4("255.255.255.0"), false),
        ];
        let got: Vec<String> = intervals(&els, 4).iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "10.0.0.0/24",
                "10.0.2.0/24",
                "10.0.3.0/24",
                "192.0.2.7/32",
                "255.255.255.0/24"
            ]
        );
    }

    #[test]
    fn a_range_that_is_no_prefix_is_shown_as_the_prefixes_covering_it() {
        let els = vec![(v4("10.0.0.1"), false), (v4("10.0.0.4"), true)];
        let got: Vec<String> = intervals(&els, 4).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.0.0.1/32", "10.0.0.2/31"]);
    }
}
