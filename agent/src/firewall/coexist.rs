//! What else manages the firewall on this host, observed for
//! [`bulwark_model::coexist::findings`]: files under the host root, the
//! chains nftables holds, and the legacy iptables tables of bulwarkd's own
//! network namespace. Read at every plan (apply, dry run, rollback) and at
//! most every [`EVERY`] in the drift loop; health reports the last result.

use std::time::{Duration, Instant};

use bulwark_model::coexist::{self, Finding, Observed};

use super::Nft;
use crate::host::Host;

/// Longest interval between two looks from the drift loop.
pub const EVERY: Duration = Duration::from_secs(60);

/// The last look and when it was taken.
#[derive(Debug, Default)]
pub struct Coexistence {
    pub findings: Vec<Finding>,
    at: Option<Instant>,
    /// What nftables held at a ruleset generation id: the chains, and the
    /// rules in ufw's tables. The id moves with every commit by anyone, so
    /// an equal id needs no `nft` run to know it again.
    nft: Option<(u32, NftSeen)>,
}

#[derive(Debug, Clone)]
struct NftSeen {
    chains: Vec<(String, String, String)>,
    ufw_rules: usize,
}

impl Coexistence {
    /// Look again now; `generation` is the nftables generation id now,
    /// when it could be read.
    pub fn refresh(&mut self, host: &Host, nft: &Nft, generation: Option<u32>) -> &[Finding] {
        let seen = match (&self.nft, generation) {
            (Some((at, seen)), Some(now)) if *at == now => seen.clone(),
            _ => {
                let seen = nft_seen(nft);
                // An id read before the listing: a commit in between makes
                // the next look list again, never trust a stale listing.
                self.nft = generation.zip(seen.clone());
                seen.unwrap_or_else(|| NftSeen {
                    chains: Vec::new(),
                    ufw_rules: 0,
                })
            }
        };
        self.findings = coexist::findings(&observe(host, seen));
        self.at = Some(Instant::now());
        &self.findings
    }

    /// This daemon's own commit, which touches table inet bulwark only,
    /// moved the generation id from `before` to `after`. When it was the
    /// only commit since the last listing (`after` is the id after
    /// `before`), that listing still holds: the next plan runs no `nft`.
    pub fn own_commit(&mut self, before: u32, after: u32) {
        if let Some((at, _)) = &mut self.nft {
            if *at == before && after == before.wrapping_add(1) {
                *at = after;
            }
        }
    }

    /// Whether the last look is older than [`EVERY`] (or there was none).
    pub fn due(&self) -> bool {
        self.at.is_none_or(|t| t.elapsed() >= EVERY)
    }
}

/// The chains nftables holds and the rules in ufw's tables; `None` when
/// they cannot be listed.
fn nft_seen(nft: &Nft) -> Option<NftSeen> {
    let chains = match nft.list_chains() {
        Ok(listing) => coexist::chains_of_listing(&listing),
        Err(e) => {
            log::warn!(error:display = e; "cannot list nftables chains to look for other firewall managers");
            return None;
        }
    };
    // Only the tables ufw uses, and only when it has chains: small listings.
    let ufw_rules = coexist::ufw_tables(&chains)
        .iter()
        .filter_map(|(family, table)| nft.list_other_table(family, table).ok())
        .map(|listing| coexist::ufw_rules_of_listing(&listing))
        .sum();
    Some(NftSeen { chains, ufw_rules })
}

fn observe(host: &Host, seen: NftSeen) -> Observed {
    let read = |p: &str| std::fs::read_to_string(host.path(p)).ok();
    let NftSeen { chains, ufw_rules } = seen;
    // Per network namespace, like the rules: not under the host root.
    let legacy_tables = ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    Observed {
        ufw_conf: read("/etc/ufw/ufw.conf"),
        nftables_conf: read("/etc/nftables.conf"),
        nftables_enabled: host
            .path("/etc/systemd/system/sysinit.target.wants/nftables.service")
            .exists(),
        firewalld_enabled: host
            .path("/etc/systemd/system/multi-user.target.wants/firewalld.service")
            .exists(),
        chains,
        ufw_rules,
        legacy_tables,
    }
}
