//! The ISO/IEC 27001 controls of the architecture's table, and what on a
//! Bulwark host evidences each: which live checks, which audit events,
//! which records. `bulwarkctl evidence` reports per control from this map;
//! docs/controls.md is rendered from it.
//!
//! An audit event belongs to every control whose ISO 27001:2013 identifier
//! it carries (the catalogue in [`super::CATALOGUE`] gives each event its
//! identifiers), so the map and the catalogue cannot disagree. A live check
//! belongs to the control that names it, else to the control of its module;
//! a check no control claims (disk space, memory) is still reported, under
//! "other checks".

use bulwark_model::api::Check;

use super::{EventKind, CATALOGUE};

/// One control of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlDef {
    /// Stable key in the report (`Control::id`).
    pub id: &'static str,
    pub title: &'static str,
    pub iso2013: &'static [&'static str],
    pub iso2022: &'static [&'static str],
    /// Modules whose health checks evidence it.
    pub modules: &'static [&'static str],
    /// Checks of other modules it claims, as (module, check name).
    pub named: &'static [(&'static str, &'static str)],
    /// What evidences it, in one sentence, for the report and the docs.
    pub evidence: &'static str,
}

/// The check the report adds for the audit chain.
pub const CHAIN_CHECK: (&str, &str) = ("bulwarkd", "audit-chain");

pub const ACCESS: ControlDef = ControlDef {
    id: "access",
    title: "WireGuard admin access",
    iso2013: &["A.9.2.1"],
    iso2022: &["A.5.16", "A.5.18"],
    modules: &["wireguard"],
    named: &[],
    evidence: "the WireGuard interface and its peers as configured; an access review of every peer \
               (added when and by whom, expiry, last handshake)",
};

pub const NETWORK: ControlDef = ControlDef {
    id: "network",
    title: "Firewall and network controls",
    iso2013: &["A.13.1.1"],
    iso2022: &["A.8.20", "A.8.22"],
    modules: &["firewall", "k3s"],
    named: &[],
    evidence: "table inet bulwark read back from the kernel and compared with the generation in force; \
               the K3s ports listening only on the VPN address and loopback",
};

pub const SECRETS: ControlDef = ControlDef {
    id: "secrets",
    title: "Vault and secrets",
    iso2013: &["A.9.4", "A.10.1"],
    iso2022: &["A.8.3", "A.8.5", "A.8.24"],
    modules: &["vault"],
    named: &[],
    evidence: "the Vault's pinned binary, its seal state and unseal-key custody, as its API reports them",
};

pub const CHANGE: ControlDef = ControlDef {
    id: "change",
    title: "Profile changes and generations",
    iso2013: &["A.12.1.2"],
    iso2022: &["A.8.32", "A.8.9"],
    modules: &[],
    named: &[
        ("bulwarkd", "last_apply"),
        ("bulwarkd", "confirm"),
        ("bulwarkd", "drift"),
        ("bulwarkd", "generation"),
        ("bulwarkd", "boot_profile"),
    ],
    evidence: "sealed generations (who, when, the profile's SHA-256, confirmed or reverted), the last \
               change, open confirmation windows and drift",
};

pub const BACKUP: ControlDef = ControlDef {
    id: "backup",
    title: "Backups and restore tests",
    iso2013: &["A.17.1.2", "A.12.3.1"],
    iso2022: &["A.8.13", "A.8.14"],
    modules: &[],
    named: &[("vault", SNAPSHOT_CHECK), ("k3s", crate::k3s::ETCD_CHECK)],
    evidence: "the Vault's snapshots and restore tests of the period, from their audit events, the \
               health of its snapshot schedule, and whether K3s runs the embedded etcd its snapshot \
               settings are for",
};

/// The Vault module's health check of its snapshots; present exactly when
/// the profile in force has a `[vault.snapshots]` section.
pub const SNAPSHOT_CHECK: &str = "vault-snapshots";

/// Backup events that record a snapshot (taken, uploaded, failed), and a
/// restore test (passed, failed).
pub const SNAPSHOT_EVENTS: &[&str] = &["BWK-VLT-0201", "BWK-VLT-0202", "BWK-VLT-0203"];
pub const RESTORE_TEST_EVENTS: &[&str] = &["BWK-VLT-0205", "BWK-VLT-0206"];

pub const LOGGING: ControlDef = ControlDef {
    id: "logging",
    title: "Logging and monitoring",
    iso2013: &["A.12.4.1"],
    iso2022: &["A.8.15", "A.8.16"],
    modules: &[],
    named: &[CHAIN_CHECK],
    evidence: "the keyed hash chain of the audit log, verified from its first line, and its head",
};

pub const INTEGRITY: ControlDef = ControlDef {
    id: "integrity",
    title: "IMA integrity",
    iso2013: &["A.12.5.1", "A.12.2.1"],
    iso2022: &["A.8.19", "A.8.7"],
    modules: &["ima"],
    named: &[],
    evidence: "the IMA appraisal mode in force, the policy loaded, and the last scan of labels",
};

/// Every control of the architecture's table, in its order.
pub const CONTROLS: &[ControlDef] = &[ACCESS, NETWORK, SECRETS, CHANGE, BACKUP, LOGGING, INTEGRITY];

impl ControlDef {
    /// Whether an event with these ISO 27001:2013 identifiers evidences it.
    pub fn covers(&self, iso2013: &[impl AsRef<str>]) -> bool {
        iso2013.iter().any(|id| self.iso2013.contains(&id.as_ref()))
    }

    /// The catalogue's events that evidence it.
    pub fn catalogue_events(&self) -> impl Iterator<Item = &'static EventKind> + '_ {
        CATALOGUE.iter().filter(|k| self.covers(k.iso2013))
    }
}

/// The control a live check evidences; `None` when no control claims it.
pub fn control_of(check: &Check) -> Option<&'static ControlDef> {
    CONTROLS
        .iter()
        .find(|c| c.named.iter().any(|(m, n)| *m == check.module && *n == check.name))
        .or_else(|| CONTROLS.iter().find(|c| c.modules.contains(&check.module.as_str())))
}

/// The map as Markdown (docs/controls.md is this output).
pub fn controls_markdown() -> String {
    let mut out = String::from(
        "# ISO 27001 controls and their evidence\n\n\
         Generated from `agent/src/audit/controls.rs`; a unit test keeps this file in step.\n\
         `bulwarkctl evidence` reports each control with these live checks, events and records\n\
         (see [evidence.md](evidence.md)).\n\n\
         | Control | ISO 27001:2013 | ISO 27001:2022 | Live checks | Evidence |\n|---|---|---|---|---|\n",
    );
    for c in CONTROLS {
        let mut checks: Vec<String> = c.modules.iter().map(|m| format!("module `{m}`")).collect();
        checks.extend(c.named.iter().map(|(m, n)| format!("`{m}` `{n}`")));
        let checks = if checks.is_empty() {
            "none".to_owned()
        } else {
            checks.join(", ")
        };
        out.push_str(&format!(
            "| `{}` {} | {} | {} | {} | {} |\n",
            c.id,
            c.title,
            c.iso2013.join(", "),
            c.iso2022.join(", "),
            checks,
            c.evidence
        ));
    }
    out.push_str(
        "\nAn audit event evidences every control whose ISO 27001:2013 identifier it carries\n\
         (see [audit-events.md](audit-events.md)):\n\n| Control | Events |\n|---|---|\n",
    );
    for c in CONTROLS {
        let ids: Vec<String> = c.catalogue_events().map(|k| format!("`{}`", k.id)).collect();
        out.push_str(&format!(
            "| `{}` | {} |\n",
            c.id,
            if ids.is_empty() {
                "none yet".to_owned()
            } else {
                ids.join(", ")
            }
        ));
    }
    out
}
