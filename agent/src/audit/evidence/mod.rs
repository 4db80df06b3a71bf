//! The evidence report (`GET /v1/evidence`): per control of the
//! architecture's table ([`super::controls`]), the live checks at export
//! time, the audit events of the period, and the records the control needs.
//!
//! It is assembled off the engine thread from one published view (status,
//! health, generations, peers) and one read of the audit log, which
//! verifies the chain from its first line while it collects the period's
//! events: an audit period can only be trusted from the genesis on, so
//! where the period starts mid-chain the report says where, and that every
//! line before it verified too. A broken chain is never hidden: the
//! logging control fails, the summary says so first, and events from the
//! first unverified line on are listed as found, with the line named.

mod records;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_model::api::{AuditEvent, Check, GenerationInfo, Health, Level, PeerInfo, Status};
use bulwark_model::evidence::{
    Backups, ChainEvidence, ChainPoint, Control, ControlStatus, Evidence, HostFacts, Period, Summary, MAX_EVENTS,
    SCHEMA, VERSION,
};

use super::chain::{self, Paths, Walked};
use super::controls::{self, ControlDef, CHAIN_CHECK, CONTROLS};
use crate::host::Host;
use records::{History, Users};

/// What the engine published, as one view.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub status: &'a Status,
    /// The engine's checks and the host's resource checks.
    pub health: &'a Health,
    pub generations: &'a [GenerationInfo],
    pub peers: &'a [PeerInfo],
}

/// The audit period: `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

/// A period that cannot be read: which bound, and why.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("{field}: {value:?} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")]
    Date {
        field: &'static str,
        value: String,
        #[source]
        source: humantime::TimestampError,
    },
    #[error("until: {until} is not after since: {since}: the period would be empty")]
    Empty { since: String, until: String },
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time in UTC.
fn parse_bound(field: &'static str, value: &str) -> Result<SystemTime, WindowError> {
    let full = if value.len() == 10 {
        format!("{value}T00:00:00Z")
    } else {
        value.to_owned()
    };
    humantime::parse_rfc3339(&full).map_err(|source| WindowError::Date {
        field,
        value: value.to_owned(),
        source,
    })
}

impl Window {
    /// The period from the request's `since` and `until`.
    pub fn parse(since: Option<&str>, until: Option<&str>) -> Result<Window, WindowError> {
        let window = Window {
            since: since.map(|s| parse_bound("since", s)).transpose()?,
            until: until.map(|u| parse_bound("until", u)).transpose()?,
        };
        if let (Some(s), Some(u)) = (window.since, window.until) {
            if u <= s {
                return Err(WindowError::Empty {
                    since: rfc3339(s),
                    until: rfc3339(u),
                });
            }
        }
        Ok(window)
    }

    pub fn contains(&self, t: SystemTime) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    fn contains_unix(&self, secs: u64) -> bool {
        self.contains(UNIX_EPOCH + Duration::from_secs(secs))
    }
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn rfc3339_unix(secs: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

/// An event's time; `None` when it cannot be read (only an edited line).
fn event_time(e: &AuditEvent) -> Option<SystemTime> {
    humantime::parse_rfc3339(&e.time).ok()
}

/// The period's events and what the whole log says about generations and
/// peers, collected in one walk of the chain.
struct Read {
    walked: Walked,
    events: Vec<AuditEvent>,
    omitted: u64,
    first: Option<u64>,
    last: Option<u64>,
    history: History,
}

fn read_log(host: &Host, window: Window) -> Read {
    let mut events = Vec::new();
    let (mut omitted, mut first, mut last) = (0, None, None);
    let mut history = History::default();
    let walked = chain::walk(&Paths::of(host), |e, _verified| {
        history.note(e);
        if !event_time(e).is_some_and(|t| window.contains(t)) {
            return;
        }
        first.get_or_insert(e.seq);
        last = Some(e.seq);
        if events.len() < MAX_EVENTS {
            events.push(e.clone());
        } else {
            omitted += 1;
        }
    });
    Read {
        walked,
        events,
        omitted,
        first,
        last,
        history,
    }
}

fn chain_evidence(read: &Read) -> ChainEvidence {
    let w = &read.walked;
    let span = match (read.first, read.last) {
        (Some(a), Some(b)) if a == 1 => format!("the period's events are lines {a} to {b}"),
        (Some(a), Some(b)) => format!(
            "the period's events are lines {a} to {b}: the period starts mid-chain, at line {a}, and the \
             lines before it were verified too"
        ),
        _ => "no event falls in the period".to_owned(),
    };
    let note = if w.verify.ok {
        match &w.last {
            Some((seq, _)) => format!("verified from line 1 (the genesis) to line {seq}, the chain head; {span}"),
            None => "the audit log is empty".to_owned(),
        }
    } else {
        let error = w.verify.error.clone().unwrap_or_default();
        match w.first_unverified {
            Some(n) => format!(
                "{error}; lines 1 to {} verified; lines {n} to {} are listed as found and are not proven; {span}",
                w.verify.events, w.lines
            ),
            None => format!(
                "{error}; each of the {} lines verified, but the chain as a whole does not; {span}",
                w.lines
            ),
        }
    };
    ChainEvidence {
        ok: w.verify.ok,
        verified: w.verify.events,
        lines: w.lines,
        error: w.verify.error.clone(),
        first_unverified: w.first_unverified,
        head: w.last.clone().map(|(seq, hash)| ChainPoint { seq, hash }),
        period_first: read.first,
        period_last: read.last,
        note,
    }
}

/// The live check the report adds for the audit chain.
fn chain_check(chain: &ChainEvidence) -> Check {
    let (level, reason) = match (&chain.error, &chain.head) {
        (Some(e), _) => (Level::Critical, format!("audit chain broken: {e}")),
        (None, Some(h)) => (
            Level::Ok,
            format!(
                "{} line(s) verified from line 1; head line {} {}",
                chain.verified, h.seq, h.hash
            ),
        ),
        (None, None) => (Level::Ok, "the audit log is empty".to_owned()),
    };
    Check {
        name: CHAIN_CHECK.1.to_owned(),
        module: CHAIN_CHECK.0.to_owned(),
        level,
        reason,
    }
}

/// Status and reason from a control's checks alone.
fn judge(checks: &[Check]) -> (ControlStatus, String) {
    let Some(worst) = checks.iter().map(|c| c.level).max() else {
        return (ControlStatus::NoEvidence, "no live check evidences it".to_owned());
    };
    let status = match worst {
        Level::Ok => ControlStatus::Pass,
        Level::Warning => ControlStatus::Warning,
        Level::Critical | Level::Unknown => ControlStatus::Fail,
    };
    let reason = if worst == Level::Ok {
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        format!("every check OK ({})", names.join(", "))
    } else {
        let bad: Vec<String> = checks
            .iter()
            .filter(|c| c.level == worst)
            .map(|c| format!("{}: {} {}", c.name, c.level, c.reason))
            .collect();
        bad.join("; ")
    };
    (status, reason)
}

fn managed(status: &Status, module: &str) -> bool {
    status.modules.iter().any(|m| m.module == module && m.managed)
}

fn details<T: serde::de::DeserializeOwned>(status: &Status, module: &str) -> Option<T> {
    let m = status.modules.iter().find(|m| m.module == module && m.managed)?;
    serde_json::from_value(m.details.clone()).ok()
}

fn read_trimmed(host: &Host, path: &str) -> Option<String> {
    let text = std::fs::read_to_string(host.path(path)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Assemble the report. Only reads: the log (beside its writer, as
/// `audit verify` does), the kernel's hostname and `/etc/machine-id`
/// under the root.
pub fn assemble(host: &Host, inputs: Inputs<'_>, window: Window, now: SystemTime) -> Evidence {
    let read = read_log(host, window);
    let chain = chain_evidence(&read);
    let mut checks = inputs.health.checks.clone();
    checks.push(chain_check(&chain));
    let mut users = Users::default();
    let mut other_checks = Vec::new();
    let mut claimed: Vec<Vec<Check>> = vec![Vec::new(); CONTROLS.len()];
    for c in checks {
        match controls::control_of(&c).and_then(|d| CONTROLS.iter().position(|x| x.id == d.id)) {
            Some(i) => claimed[i].push(c),
            None => other_checks.push(c),
        }
    }
    let controls: Vec<Control> = CONTROLS
        .iter()
        .zip(claimed)
        .map(|(def, checks)| control(def, checks, &inputs, window, &read, &mut users, now))
        .collect();
    let summary = summary(&controls, &chain, &other_checks, read.omitted);
    let status = inputs.status;
    Evidence {
        schema: SCHEMA.to_owned(),
        version: VERSION,
        generated: rfc3339(now),
        period: Period {
            since: window.since.map(rfc3339),
            until: window.until.map(rfc3339),
        },
        host: HostFacts {
            // The kernel's name for the host (its UTS namespace), whatever --root is.
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty()),
            machine_id: read_trimmed(host, "/etc/machine-id"),
            bulwarkd_version: env!("CARGO_PKG_VERSION").to_owned(),
            root: host.root().display().to_string(),
            profile: status.profile.clone(),
            generation: status.generation,
            digest: status.digest.clone(),
        },
        summary,
        chain,
        controls,
        other_checks,
        events: read.events,
        events_omitted: read.omitted,
    }
}

fn control(
    def: &ControlDef,
    checks: Vec<Check>,
    inputs: &Inputs<'_>,
    window: Window,
    read: &Read,
    users: &mut Users,
    now: SystemTime,
) -> Control {
    let (mut status, mut reason) = judge(&checks);
    let status_in = inputs.status;
    let unmanaged: Vec<&str> = def.modules.iter().copied().filter(|m| !managed(status_in, m)).collect();
    if !def.modules.is_empty() && unmanaged.len() == def.modules.len() && checks.is_empty() {
        status = ControlStatus::NotManaged;
        reason = format!(
            "the profile in force has no [{}] section: Bulwark does not manage this control on this host",
            unmanaged.join("], [")
        );
    } else if !unmanaged.is_empty() && !def.modules.is_empty() {
        reason.push_str(&format!(" ({} not managed)", unmanaged.join(", ")));
    }
    let mut out = Control {
        id: def.id.to_owned(),
        title: def.title.to_owned(),
        iso2013: def.iso2013.iter().map(|s| (*s).to_owned()).collect(),
        iso2022: def.iso2022.iter().map(|s| (*s).to_owned()).collect(),
        evidence: def.evidence.to_owned(),
        status,
        reason,
        checks,
        events: read
            .events
            .iter()
            .filter(|e| def.covers(&e.iso27001_2013))
            .map(|e| e.seq)
            .collect(),
        ..Control::default()
    };
    match def.id {
        "access" if managed(status_in, "wireguard") => {
            out.peers = Some(records::peers(inputs.peers, &read.history, users, now));
        }
        "change" => {
            let pending = status_in.pending_confirm.as_ref().map(|p| p.generation);
            let gens = records::generations(inputs.generations, window, pending, &read.history, users);
            let pruned = read.events.iter().filter(|e| e.event == super::CHG_PRUNED.id).count();
            if pruned > 0 {
                out.reason.push_str(&format!(
                    "; retention removed generations in the period ({pruned} BWK-CHG-0010 event(s)): their \
                     BWK-CHG-0001 events remain listed"
                ));
            }
            out.generations = Some(gens);
        }
        "backup" => backups(&mut out, status_in, &read.events),
        "integrity" => out.ima = details(status_in, "ima"),
        "secrets" => out.vault = details(status_in, "vault"),
        _ => {}
    }
    out
}

/// Backups are the Vault's snapshots: without a Vault there is nothing to
/// back up, and without `[vault.snapshots]` (no `vault-snapshots` check)
/// none are taken. With them, a failed snapshot or restore test in the
/// period fails the control, and a period without a snapshot warns.
fn backups(out: &mut Control, status: &Status, events: &[AuditEvent]) {
    if !managed(status, "vault") {
        out.status = ControlStatus::NotManaged;
        out.reason =
            "not configured: Bulwark backs up the Vault it manages, and the profile in force has no [vault] section"
                .to_owned();
        return;
    }
    let of = |ids: &[&str]| -> Vec<&AuditEvent> {
        events
            .iter()
            .filter(|e| out.events.contains(&e.seq) && ids.contains(&e.event.as_str()))
            .collect()
    };
    let (snapshots, tests) = (of(controls::SNAPSHOT_EVENTS), of(controls::RESTORE_TEST_EVENTS));
    let configured = out
        .checks
        .iter()
        .any(|c| c.module == "vault" && c.name == controls::SNAPSHOT_CHECK);
    let failed: Vec<String> = snapshots
        .iter()
        .chain(&tests)
        .filter(|e| e.result != "success")
        .map(|e| format!("line {} {} {}: {}", e.seq, e.event, e.result, e.message))
        .collect();
    out.backups = Some(Backups {
        configured,
        snapshots: snapshots.iter().map(|e| e.seq).collect(),
        restore_tests: tests.iter().map(|e| e.seq).collect(),
    });
    if !configured {
        out.status = ControlStatus::NoEvidence;
        out.reason = "not configured: the profile in force has no [vault.snapshots] section, so this host \
                      takes no Vault snapshots and runs no restore tests"
            .to_owned();
    } else if !failed.is_empty() {
        out.status = ControlStatus::Fail;
        out.reason = format!("failed in the period: {}", failed.join("; "));
    } else if snapshots.is_empty() {
        out.status = out.status.max(ControlStatus::Warning);
        out.reason = "no Vault snapshot was recorded in the period".to_owned();
    } else if out.status <= ControlStatus::NoEvidence {
        out.status = ControlStatus::Pass;
        out.reason = format!(
            "{} snapshot event(s) and {} restore test(s) in the period, none failed",
            snapshots.len(),
            tests.len()
        );
    }
}

fn summary(controls: &[Control], chain: &ChainEvidence, other: &[Check], omitted: u64) -> Summary {
    let mut problems = Vec::new();
    if !chain.ok {
        problems.push(format!("audit chain BROKEN: {}", chain.note));
    }
    for c in controls {
        if matches!(
            c.status,
            ControlStatus::Fail | ControlStatus::Warning | ControlStatus::NoEvidence
        ) {
            problems.push(format!(
                "{} ({}): {}: {}",
                c.title,
                c.iso2013.join(", "),
                c.status.as_str(),
                c.reason
            ));
        }
    }
    for c in other.iter().filter(|c| c.level != Level::Ok) {
        let name = [c.module.as_str(), c.name.as_str()].join(" ");
        problems.push(format!("check {}: {} {}", name.trim(), c.level, c.reason));
    }
    if omitted > 0 {
        problems.push(format!(
            "{omitted} event(s) of the period are not listed (a report lists at most {MAX_EVENTS}): narrow the period"
        ));
    }
    let worst = controls.iter().map(|c| c.status).max().unwrap_or_default();
    Summary {
        status: if chain.ok { worst } else { ControlStatus::Fail },
        chain_ok: chain.ok,
        problems,
    }
}

#[cfg(test)]
mod tests;
