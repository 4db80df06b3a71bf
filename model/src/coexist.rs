//! Other firewall managers on the same host, and what to do about them.
//!
//! Bulwark owns table `inet bulwark` and never touches anyone else's. A
//! packet the kernel drops in any table is dropped, so another manager's
//! rules can close what the profile opens, and one that flushes the whole
//! ruleset deletes Bulwark's table. bulwarkd (at every apply and in health)
//! and `bulwarkctl doctor` both judge the same observations here; each
//! gathers them its own way (files under its root, `nft -j list chains`,
//! `/proc/net/ip_tables_names`). Pure: no system calls.

/// What was observed on the host; `None` / empty where nothing was found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `/etc/ufw/ufw.conf`.
    pub ufw_conf: Option<String>,
    /// `/etc/nftables.conf`.
    pub nftables_conf: Option<String>,
    /// `nftables.service` is enabled (`sysinit.target.wants`).
    pub nftables_enabled: bool,
    /// `firewalld.service` is enabled (`multi-user.target.wants`).
    pub firewalld_enabled: bool,
    /// Every nftables chain as (family, table, chain).
    pub chains: Vec<(String, String, String)>,
    /// Rules inside ufw's chains, in the tables holding them (see
    /// [`ufw_tables`]): `ufw disable` leaves its chains, and the jumps into
    /// them, but empty.
    pub ufw_rules: usize,
    /// Tables of the legacy (x_tables) iptables: the lines of
    /// `/proc/net/ip_tables_names` and `/proc/net/ip6_tables_names`.
    pub legacy_tables: Vec<String>,
}

/// One other manager at work, with how to resolve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `ufw`, `firewalld`, `nftables.service` or `iptables-legacy`.
    pub manager: &'static str,
    /// What was found, for people.
    pub what: String,
    /// What to do.
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; {}", self.manager, self.what, self.fix)
    }
}

/// Whether a config line, comments and blanks aside, says `key=value`.
fn conf_says(text: &str, key: &str, value: &str) -> bool {
    text.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("").trim();
        l.split_once('=')
            .is_some_and(|(k, v)| k.trim() == key && v.trim().trim_matches('"').eq_ignore_ascii_case(value))
    })
}

/// Whether an nftables script flushes the whole ruleset (not one table).
pub fn flushes_ruleset(script: &str) -> bool {
    script.lines().any(|l| {
        let words: Vec<&str> = l.split('#').next().unwrap_or("").split_whitespace().collect();
        words.windows(2).any(|w| w == ["flush", "ruleset"])
    })
}

fn is_ufw(chain: &str) -> bool {
    chain.starts_with("ufw-") || chain.starts_with("ufw6-")
}

/// The tables holding ufw's chains, as (family, table), to be listed for
/// [`Observed::ufw_rules`].
pub fn ufw_tables(chains: &[(String, String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = chains
        .iter()
        .filter(|(_, _, c)| is_ufw(c))
        .map(|(f, t, _)| (f.clone(), t.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn tables_with(chains: &[(String, String, String)], pick: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = chains
        .iter()
        .filter(|(_, t, c)| pick(t, c))
        .map(|(f, t, _)| format!("{f} {t}"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What else manages the firewall here, in a fixed order.
pub fn findings(o: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    let ufw_tables = if o.ufw_rules > 0 {
        tables_with(&o.chains, |_, c| is_ufw(c))
    } else {
        Vec::new()
    };
    let ufw_enabled = o.ufw_conf.as_deref().is_some_and(|t| conf_says(t, "ENABLED", "yes"));
    if !ufw_tables.is_empty() || ufw_enabled {
        let mut what = Vec::new();
        if !ufw_tables.is_empty() {
            what.push(format!("its rules are loaded (table {})", ufw_tables.join(", table ")));
        }
        if ufw_enabled {
            what.push("it is enabled at boot (ENABLED=yes in /etc/ufw/ufw.conf)".to_owned());
        }
        out.push(Finding {
            manager: "ufw",
            what: what.join(" and "),
            fix: "every packet must pass both rule sets, so ufw can close what the profile opens; run `ufw disable` \
                  and keep the ports in the Bulwark profile"
                .to_owned(),
        });
    }
    let firewalld_tables = tables_with(&o.chains, |t, _| t == "firewalld");
    if !firewalld_tables.is_empty() || o.firewalld_enabled {
        let mut what = Vec::new();
        if !firewalld_tables.is_empty() {
            what.push(format!("it is running (table {})", firewalld_tables.join(", table ")));
        }
        if o.firewalld_enabled {
            what.push("firewalld.service is enabled at boot".to_owned());
        }
        out.push(Finding {
            manager: "firewalld",
            what: what.join(" and "),
            fix: "its zones drop what they do not allow, whatever the profile opens, and a `firewall-cmd --reload` \
                  rebuilds its rules; run `systemctl disable --now firewalld`"
                .to_owned(),
        });
    }
    if o.nftables_enabled && o.nftables_conf.as_deref().is_some_and(flushes_ruleset) {
        out.push(Finding {
            manager: "nftables.service",
            what: "it is enabled and /etc/nftables.conf runs `flush ruleset`".to_owned(),
            fix: "bulwarkd starts after it at boot, but every `systemctl restart nftables` or `reload` deletes table \
                  inet bulwark until the next drift check puts it back; flush only your own tables in \
                  /etc/nftables.conf (`flush table inet filter`), or `systemctl disable nftables` when Bulwark \
                  is the host's firewall"
                .to_owned(),
        });
    }
    if !o.legacy_tables.is_empty() {
        let mut tables = o.legacy_tables.clone();
        tables.sort();
        tables.dedup();
        out.push(Finding {
            manager: "iptables-legacy",
            what: format!("legacy iptables tables are loaded ({})", tables.join(", ")),
            fix: "packets pass them as well as nftables, and nothing shows them in `nft list ruleset`; list them \
                  with `iptables-legacy-save` and `ip6tables-legacy-save`, then move what is needed into the \
                  profile and flush them"
                .to_owned(),
        });
    }
    out
}

/// How many rules an `nft -j list table` listing holds inside ufw's chains.
pub fn ufw_rules_of_listing(json: &serde_json::Value) -> usize {
    json.get("nftables").and_then(|v| v.as_array()).map_or(0, |items| {
        items
            .iter()
            .filter_map(|i| i.get("rule")?.get("chain")?.as_str())
            .filter(|c| is_ufw(c))
            .count()
    })
}

/// The chains of an `nft -j list chains` listing as (family, table, chain).
pub fn chains_of_listing(json: &serde_json::Value) -> Vec<(String, String, String)> {
    let Some(items) = json.get("nftables").and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| {
            let c = i.get("chain")?;
            let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            Some((s("family")?, s("table")?, s("name")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(f: &str, t: &str, c: &str) -> (String, String, String) {
        (f.to_owned(), t.to_owned(), c.to_owned())
    }

    #[test]
    fn a_quiet_host_has_no_findings() {
        let o = Observed {
            ufw_conf: Some("# ufw\nENABLED=no\n".to_owned()),
            nftables_conf: Some("#!/usr/sbin/nft -f\n# flush ruleset\ntable inet filter {}\n".to_owned()),
            nftables_enabled: true,
            chains: vec![chain("inet", "bulwark", "input"), chain("ip", "nat", "KUBE-SERVICES")],
            ..Observed::default()
        };
        assert_eq!(findings(&o), []);
    }

    #[test]
    fn each_manager_is_named_with_a_fix() {
        let o = Observed {
            ufw_conf: Some("ENABLED=yes\n".to_owned()),
            nftables_conf: Some("#!/usr/sbin/nft -f\n\nflush ruleset\n".to_owned()),
            nftables_enabled: true,
            firewalld_enabled: false,
            chains: vec![
                chain("ip", "filter", "ufw-before-input"),
                chain("ip6", "filter", "ufw6-before-input"),
                chain("inet", "firewalld", "filter_INPUT"),
            ],
            ufw_rules: 42,
            legacy_tables: vec!["filter".to_owned(), "nat".to_owned(), "filter".to_owned()],
        };
        let f = findings(&o);
        let managers: Vec<&str> = f.iter().map(|f| f.manager).collect();
        assert_eq!(managers, ["ufw", "firewalld", "nftables.service", "iptables-legacy"]);
        assert!(f[0].what.contains("table ip filter, table ip6 filter"), "{}", f[0]);
        assert!(f[0].what.contains("ENABLED=yes"), "{}", f[0]);
        assert!(f[0].fix.contains("ufw disable"));
        assert!(f[1].what.contains("inet firewalld") && f[1].fix.contains("systemctl disable --now firewalld"));
        assert!(f[2].fix.contains("flush table inet filter"));
        assert!(f[3].what.contains("(filter, nat)"), "{}", f[3]);
    }

    #[test]
    fn empty_ufw_chains_left_by_ufw_disable_are_not_rules_in_force() {
        let chains = vec![
            chain("ip", "filter", "INPUT"),
            chain("ip", "filter", "ufw-before-input"),
        ];
        assert_eq!(ufw_tables(&chains), [("ip".to_owned(), "filter".to_owned())]);
        let o = Observed {
            chains,
            ufw_rules: 0,
            ..Observed::default()
        };
        assert_eq!(findings(&o), []);
        let listing = serde_json::json!({"nftables": [
            {"rule": {"family": "ip", "table": "filter", "chain": "INPUT",
                "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "ufw-before-input"}}]}},
            {"rule": {"family": "ip", "table": "filter", "chain": "ufw-before-input",
                "expr": [{"jump": {"target": "ufw-user-input"}}]}},
        ]});
        assert_eq!(ufw_rules_of_listing(&listing), 1);
    }

    #[test]
    fn flush_ruleset_only_counts_outside_comments_and_when_the_service_is_enabled() {
        assert!(flushes_ruleset("  flush   ruleset  # start clean\n"));
        assert!(!flushes_ruleset("flush table inet filter\n# flush ruleset\n"));
        let o = Observed {
            nftables_conf: Some("flush ruleset\n".to_owned()),
            nftables_enabled: false,
            ..Observed::default()
        };
        assert_eq!(findings(&o), []);
    }

    #[test]
    fn chains_come_out_of_an_nft_listing() {
        let listing = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"chain": {"family": "ip", "table": "filter", "name": "ufw-user-input", "handle": 3}},
        ]});
        assert_eq!(chains_of_listing(&listing), [chain("ip", "filter", "ufw-user-input")]);
    }
}
