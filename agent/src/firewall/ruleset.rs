//! The desired content of table `inet bulwark`, as plain data.
//!
//! [`Ruleset`] is the one intermediate form between a profile and the kernel.
//! It is stored in every generation (JSON) and re-applied on rollback, so its
//! shape is deliberately small: named sets, chains, and rules made of a few
//! match kinds and one action. Each piece renders two ways from the same data:
//! nft syntax for people (plans, logs) and the `nftables` crate's JSON schema
//! for `nft -j`. Adding a match kind means adding both renderings side by side
//! here, so the two cannot drift apart.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem, CT};
use nftables::schema::{self, NfListObject, Nftables, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{self, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::{Deserialize, Serialize};

/// The only table Bulwark creates, replaces or deletes.
pub const TABLE: &str = "bulwark";
/// Family of [`TABLE`]: `inet` sees IPv4 and IPv6 in one chain.
pub const FAMILY: &str = "inet";

/// Everything table `inet bulwark` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub sets: Vec<NamedSet>,
    pub chains: Vec<Chain>,
}

/// A named interval set of networks, referenced from rules as `@name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedSet {
    pub name: String,
    pub family: IpFamily,
    /// Non-overlapping networks of `family` (nft rejects overlapping intervals).
    #[serde(serialize_with = "networks")]
    pub elements: Vec<IpNet>,
}

/// Networks as CIDR strings, the IPv4 ones written without `core::fmt`:
/// every generation stores its ruleset, and formatting 50,000 addresses
/// through it took longer than the kernel's commit of a one-network change.
fn networks<S: serde::Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(nets.len()))?;
    let mut buf = String::with_capacity(43);
    for net in nets {
        buf.clear();
        match net {
            IpNet::V4(v4) => {
                for (i, octet) in v4.addr().octets().into_iter().enumerate() {
                    if i > 0 {
                        buf.push('.');
                    }
                    push_decimal(&mut buf, octet);
                }
                buf.push('/');
                push_decimal(&mut buf, v4.prefix_len());
            }
            IpNet::V6(v6) => {
                use std::fmt::Write;
                let _ = write!(buf, "{v6}");
            }
        }
        seq.serialize_element(buf.as_str())?;
    }
    seq.end()
}

fn push_decimal(buf: &mut String, n: u8) {
    if n >= 100 {
        buf.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        buf.push(char::from(b'0' + n / 10 % 10));
    }
    buf.push(char::from(b'0' + n % 10));
}

/// The networks only in `a` and those only in `b`, both sorted (as
/// [`Ord`] sorts them), in one pass over each: a plan at 50,000 networks
/// does this a few times, and binary searches cost it milliseconds.
pub fn sorted_difference(a: &[IpNet], b: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    use std::cmp::Ordering;
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                only_a.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                only_b.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    only_a.extend_from_slice(&a[i..]);
    only_b.extend_from_slice(&b[j..]);
    (only_a, only_b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

/// A base chain of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub name: String,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Policy,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Input,
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Accept,
    Drop,
}

/// One rule: every match must hold, then the action runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
}

/// A condition on a packet. Lists hold at least one item; the renderer
/// leaves out rules that would have none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// `ct state established,related`
    CtState(Vec<String>),
    /// `iif "lo"` (by index: only for interfaces that always exist)
    Iif(String),
    /// `iifname "wg0"` or `iifname { "cni0", "flannel.1" }`
    Iifname(Vec<String>),
    /// `oifname ...`
    Oifname(Vec<String>),
    /// `icmp type { echo-request, ... }`
    IcmpType(Vec<String>),
    /// `icmpv6 type { ... }`
    Icmpv6Type(Vec<String>),
    /// `tcp dport { 22, 443 }`
    Dport { proto: L4Proto, ports: Vec<u16> },
    /// `ip saddr @admin_v4`
    Saddr { family: IpFamily, set: String },
    /// `ip daddr @cluster_v4`
    Daddr { family: IpFamily, set: String },
    /// `limit rate 5/minute`: holds while under the rate.
    Limit { rate: u32, per: TimeUnit },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Second,
    Minute,
    Hour,
}

/// What a rule does once its matches hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Accept,
    Drop,
    /// Log and fall through to the next rule (or the chain's policy).
    Log {
        prefix: String,
    },
}

impl Ruleset {
    /// Number of elements across all named sets.
    pub fn set_elements(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum()
    }

    /// The batch that replaces table `inet bulwark` in one transaction.
    ///
    /// `add table` first makes the `delete` succeed when the table is absent;
    /// the delete then drops every old set, chain and rule, so the result is
    /// exactly this ruleset (a plain `add` would append duplicate rules). If
    /// nft or the kernel rejects any part, the whole batch is rolled back and
    /// the old table stays in force. No other table is named.
    pub fn to_nftables(&self) -> Nftables<'static> {
        let mut batch = Batch::new();
        batch.add(NfListObject::Table(table()));
        batch.delete(NfListObject::Table(table()));
        batch.add(NfListObject::Table(table()));
        for set in &self.sets {
            batch.add(NfListObject::Set(Box::new(set.to_nft())));
        }
        for chain in &self.chains {
            batch.add(NfListObject::Chain(chain.to_nft()));
            for rule in &chain.rules {
                batch.add(NfListObject::Rule(rule.to_nft(&chain.name)));
            }
        }
        batch.to_nftables()
    }
}

/// The batch that removes table `inet bulwark` and succeeds when it is absent.
pub(crate) fn delete_batch() -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.to_nftables()
}

fn table() -> schema::Table<'static> {
    schema::Table {
        family: NfFamily::INet,
        name: Cow::Borrowed(TABLE),
        handle: None,
    }
}

impl IpFamily {
    /// nft's element type: `ipv4_addr` / `ipv6_addr`.
    pub fn addr_type(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "ipv4_addr",
            IpFamily::Ipv6 => "ipv6_addr",
        }
    }

    /// nft's header name for address matches: `ip` / `ip6`.
    fn protocol(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "ip",
            IpFamily::Ipv6 => "ip6",
        }
    }

    fn set_type(self) -> SetType {
        match self {
            IpFamily::Ipv4 => SetType::Ipv4Addr,
            IpFamily::Ipv6 => SetType::Ipv6Addr,
        }
    }
}

impl NamedSet {
    fn to_nft(&self) -> schema::Set<'static> {
        // Omit an empty element list rather than send `"elem": []`.
        let elem = (!self.elements.is_empty()).then(|| Cow::Owned(self.elements.iter().map(element).collect()));
        schema::Set {
            family: NfFamily::INet,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(self.name.clone()),
            handle: None,
            set_type: SetTypeValue::Single(self.family.set_type()),
            policy: None,
            flags: Some(HashSet::from([SetFlag::Interval])),
            elem,
            timeout: None,
            gc_interval: None,
            size: None,
            comment: None,
        }
    }
}

/// A set element: a bare address for a host network, else a prefix.
fn element(net: &IpNet) -> Expression<'static> {
    let addr = Expression::String(Cow::Owned(net.addr().to_string()));
    if net.prefix_len() == net.max_prefix_len() {
        addr
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(addr),
            len: u32::from(net.prefix_len()),
        }))
    }
}

impl Chain {
    /// The chain's declaration in nft syntax, e.g.
    /// `type filter hook input priority 0; policy drop;`.
    pub fn header(&self) -> String {
        format!(
            "type filter hook {} priority {}; policy {};",
            self.hook, self.priority, self.policy
        )
    }

    fn to_nft(&self) -> schema::Chain<'static> {
        schema::Chain {
            family: NfFamily::INet,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(self.name.clone()),
            newname: None,
            handle: None,
            _type: Some(NfChainType::Filter),
            hook: Some(match self.hook {
                Hook::Input => NfHook::Input,
                Hook::Forward => NfHook::Forward,
            }),
            prio: Some(self.priority),
            dev: None,
            policy: Some(match self.policy {
                Policy::Accept => NfChainPolicy::Accept,
                Policy::Drop => NfChainPolicy::Drop,
            }),
        }
    }
}

impl Rule {
    fn to_nft(&self, chain: &str) -> schema::Rule<'static> {
        let mut expr: Vec<Statement<'static>> = self.matches.iter().map(Match::to_nft).collect();
        expr.push(self.action.to_nft());
        schema::Rule {
            family: NfFamily::INet,
            table: Cow::Borrowed(TABLE),
            chain: Cow::Owned(chain.to_owned()),
            expr: Cow::Owned(expr),
            handle: None,
            index: None,
            comment: None,
        }
    }
}

impl Match {
    fn to_nft(&self) -> Statement<'static> {
        match self {
            Match::CtState(states) => {
                let ct = Expression::Named(NamedExpression::CT(CT {
                    key: "state".into(),
                    family: None,
                    dir: None,
                }));
                // ct state is a bit mask: `in` tests whether any listed bit is set.
                matches(
                    ct,
                    Operator::IN,
                    Expression::List(states.iter().map(String::as_str).map(string).collect()),
                )
            }
            Match::Iif(name) => matches(meta(MetaKey::Iif), Operator::EQ, string(name)),
            Match::Iifname(names) => matches(
                meta(MetaKey::Iifname),
                Operator::EQ,
                one_or_set(names.iter().map(String::as_str).map(string).collect()),
            ),
            Match::Oifname(names) => matches(
                meta(MetaKey::Oifname),
                Operator::EQ,
                one_or_set(names.iter().map(String::as_str).map(string).collect()),
            ),
            Match::IcmpType(types) => matches(
                payload("icmp", "type"),
                Operator::EQ,
                set(types.iter().map(String::as_str).map(string)),
            ),
            Match::Icmpv6Type(types) => matches(
                payload("icmpv6", "type"),
                Operator::EQ,
                set(types.iter().map(String::as_str).map(string)),
            ),
            Match::Dport { proto, ports } => {
                let ports = ports.iter().map(|p| Expression::Number(u32::from(*p))).collect();
                matches(payload(proto.name(), "dport"), Operator::EQ, one_or_set(ports))
            }
            Match::Saddr { family, set } => matches(
                payload(family.protocol(), "saddr"),
                Operator::EQ,
                Expression::String(format!("@{set}").into()),
            ),
            Match::Daddr { family, set } => matches(
                payload(family.protocol(), "daddr"),
                Operator::EQ,
                Expression::String(format!("@{set}").into()),
            ),
            Match::Limit { rate, per } => Statement::Limit(stmt::Limit {
                rate: *rate,
                rate_unit: None,
                per: Some(Cow::Borrowed(per.name())),
                burst: None,
                burst_unit: None,
                inv: None,
            }),
        }
    }
}

impl Action {
    fn to_nft(&self) -> Statement<'static> {
        match self {
            Action::Accept => Statement::Accept(None),
            Action::Drop => Statement::Drop(None),
            Action::Log { prefix } => Statement::Log(Some(stmt::Log {
                prefix: Some(Cow::Owned(prefix.clone())),
                group: None,
                snaplen: None,
                queue_threshold: None,
                level: None,
                flags: None,
            })),
        }
    }
}

impl L4Proto {
    fn name(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        }
    }
}

impl TimeUnit {
    fn name(self) -> &'static str {
        match self {
            TimeUnit::Second => "second",
            TimeUnit::Minute => "minute",
            TimeUnit::Hour => "hour",
        }
    }
}

fn matches(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(stmt::Match { left, right, op })
}

fn string(s: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(s.to_owned()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: Cow::Borrowed(protocol),
        field: Cow::Borrowed(field),
    })))
}

fn set(items: impl Iterator<Item = Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(items.map(SetItem::Element).collect()))
}

/// A single value as itself, several as an anonymous set (as nft lists them).
fn one_or_set(mut values: Vec<Expression<'static>>) -> Expression<'static> {
    if values.len() == 1 {
        values.remove(0)
    } else {
        set(values.into_iter())
    }
}

// Text rendering: nft syntax, for people. It follows what `nft list` prints
// closely enough to read side by side, but it is not fed to nft.

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.addr_type())
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Input => "input",
            Hook::Forward => "forward",
        })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            write!(f, "{m} ")?;
        }
        write!(f, "{}", self.action)
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::CtState(states) => write!(f, "ct state {}", states.join(",")),
            Match::Iif(name) => write!(f, "iif \"{name}\""),
            Match::Iifname(names) => write!(f, "iifname {}", list(names.iter().map(|n| format!("\"{n}\"")))),
            Match::Oifname(names) => write!(f, "oifname {}", list(names.iter().map(|n| format!("\"{n}\"")))),
            Match::IcmpType(types) => write!(f, "icmp type {{ {} }}", types.join(", ")),
            Match::Icmpv6Type(types) => write!(f, "icmpv6 type {{ {} }}", types.join(", ")),
            Match::Dport { proto, ports } => write!(f, "{} dport {}", proto.name(), list(ports.iter())),
            Match::Saddr { family, set } => write!(f, "{} saddr @{set}", family.protocol()),
            Match::Daddr { family, set } => write!(f, "{} daddr @{set}", family.protocol()),
            Match::Limit { rate, per } => write!(f, "limit rate {rate}/{}", per.name()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Accept => f.write_str("accept"),
            Action::Drop => f.write_str("drop"),
            Action::Log { prefix } => write!(f, "log prefix \"{prefix}\""),
        }
    }
}

/// `x` for one item, `{ x, y }` for several.
fn list<T: fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let many = items.len() > 1;
    let joined = items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    if many {
        format!("{{ {joined} }}")
    } else {
        joined
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn set_elements_are_written_as_display_writes_them_and_read_back() {
        let elements: Vec<IpNet> = [
            "0.0.0.0/0",
            "9.8.7.6/31",
            "10.0.0.1/32",
            "100.64.10.0/24",
            "255.255.255.255/32",
            "2001:db8::/32",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let set = NamedSet {
            name: "admin_v4".to_owned(),
            family: IpFamily::Ipv4,
            elements: elements.clone(),
        };
        let json = serde_json::to_value(&set).unwrap();
        let written: Vec<String> = elements.iter().map(ToString::to_string).collect();
        assert_eq!(json["elements"], serde_json::json!(written));
        let back: NamedSet = serde_json::from_value(json).unwrap();
        assert_eq!(back, set);
    }
}
