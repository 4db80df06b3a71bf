//! Human output: short, aligned, and readable in an 80-column terminal.
//!
//! Every formatter is a pure function from API types (and the current time
//! where relative times are shown) to text, so the layout is unit-tested
//! without a daemon. Machine readers use `--json` instead.
//!
//! Every string that comes from the daemon passes through
//! [`bulwark_model::text::escape`] on its way into a cell or a line (tables
//! and key-value lists do it for their cells), so no answer, whatever a
//! caller once put into it, can break a line or reach the terminal as a
//! control sequence.
//!
//! Colour is added here, after escaping, with [`paint`]; stdout is an
//! `anstream` stream that strips it unless stdout is a colour terminal
//! (`NO_COLOR` set, `TERM=dumb` or a pipe: plain text; `CLICOLOR_FORCE`:
//! colour anyway).

mod diff;
mod show;

pub use diff::{generation, generation_diff};
pub use show::show;

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use anstyle::{AnsiColor, Style};

use bulwark_model::api::{ApplyResponse, AuditEvent, AuditVerify, GenerationInfo, Health, PeerInfo, Status};
use bulwark_model::text::escape;

/// `text` in colour `c` (reset after it).
pub fn paint(text: &str, c: AnsiColor) -> String {
    let style = Style::new().fg_color(Some(c.into()));
    format!("{style}{text}{style:#}")
}

/// The colour of a plan or diff line by its sign.
fn line_colour(line: &str) -> Option<AnsiColor> {
    match line.chars().next() {
        Some('+') => Some(AnsiColor::Green),
        Some('-') => Some(AnsiColor::Red),
        Some('~') | Some('@') => Some(AnsiColor::Yellow),
        _ => None,
    }
}

/// A plan or diff line, coloured by its sign.
pub fn signed(line: &str) -> String {
    match line_colour(line) {
        Some(c) => paint(line, c),
        None => line.to_owned(),
    }
}

/// Traffic in binary units: `0 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// Target terminal width.
pub const WIDTH: usize = 80;
/// Below this the last column is not wrapped: a narrow column of fragments
/// reads worse than a long line.
const MIN_WRAP: usize = 24;
const GAP: &str = "  ";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table whose columns are as wide as their widest cell and whose last
/// column wraps at [`WIDTH`].
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
    header: bool,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
            header: true,
        }
    }

    /// A table printed without its header line (log-like output).
    pub fn headless(columns: &[(&'static str, Align)]) -> Table {
        Table {
            header: false,
            ..Table::new(columns)
        }
    }

    /// Add a row; its cells are escaped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| escape(c).into_owned()).collect());
    }

    pub fn render(&self, wrap_last: bool) -> String {
        let n = self.columns.len();
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|(h, _)| if self.header { h.chars().count() } else { 0 })
            .collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let indent: usize = widths[..n.saturating_sub(1)].iter().map(|w| w + GAP.len()).sum();
        let last_width = WIDTH.saturating_sub(indent);
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        let lines = self.header.then_some(&header).into_iter().chain(&self.rows);
        for row in lines {
            let mut line = String::new();
            for (i, ((_, align), w)) in self.columns.iter().zip(&widths).enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == n && *align == Align::Right {
                    write!(line, "{cell:>w$}").ok();
                } else if i + 1 == n {
                    let parts = if wrap_last && last_width >= MIN_WRAP {
                        wrap(cell, last_width)
                    } else {
                        vec![cell.to_owned()]
                    };
                    let pad = " ".repeat(indent);
                    line.push_str(&parts.join(&format!("\n{pad}")));
                } else {
                    match align {
                        Align::Left => write!(line, "{cell:<w$}{GAP}"),
                        Align::Right => write!(line, "{cell:>w$}{GAP}"),
                    }
                    .ok();
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Split `text` into lines of at most `width` characters at spaces; a word
/// longer than `width` stays whole on its own line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

/// `key: value` lines with the values aligned and escaped; long values wrap
/// under themselves.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    key_values_within(pairs, WIDTH)
}

/// [`key_values`] for lines that will be indented, `width` wide at most.
pub fn key_values_within(pairs: &[(&str, String)], width: usize) -> String {
    let key_width = pairs.iter().map(|(k, _)| k.chars().count() + 1).max().unwrap_or(0);
    let indent = key_width + GAP.len();
    let mut out = String::new();
    for (k, v) in pairs {
        let key = format!("{k}:");
        let v = escape(v);
        let parts = if width.saturating_sub(indent) >= MIN_WRAP {
            wrap(&v, width - indent)
        } else {
            vec![v.into_owned()]
        };
        let value = parts.join(&format!("\n{}", " ".repeat(indent)));
        out.push_str(format!("{key:<key_width$}{GAP}{value}").trim_end());
        out.push('\n');
    }
    out
}

/// Unix seconds as RFC 3339 UTC, e.g. `2024-05-01T10:00:00Z`.
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// A deadline with the time left: `2024-05-01T10:02:00Z (in 2m)`.
pub fn deadline(unix: u64, now: u64) -> String {
    let when = rfc3339(unix);
    match unix.checked_sub(now) {
        Some(left) if left > 0 => format!("{when} (in {})", coarse(left)),
        _ => format!("{when} (passed)"),
    }
}

/// A duration in its two largest units ("1h 5m"): seconds do not matter
/// once hours are involved.
fn coarse(secs: u64) -> String {
    let full = humantime::format_duration(Duration::from_secs(secs)).to_string();
    full.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

pub fn health(h: &Health) -> String {
    // The first line carries the verdict: monitoring systems show only that.
    let mut out = format!("overall: {}\n", h.level);
    if !h.checks.is_empty() {
        let mut t = Table::new(&[("NAME", Align::Left), ("LEVEL", Align::Left), ("REASON", Align::Left)]);
        for c in &h.checks {
            t.row(vec![c.name.clone(), c.level.to_string(), c.reason.clone()]);
        }
        out.push_str(&t.render(true));
    }
    out
}

pub fn generations(gens: &[GenerationInfo]) -> String {
    if gens.is_empty() {
        return "no generations yet\n".to_owned();
    }
    let mut t = Table::new(&[
        ("", Align::Left),
        ("GEN", Align::Right),
        ("CREATED", Align::Left),
        ("PROFILE", Align::Left),
        ("REASON", Align::Left),
        ("UID", Align::Right),
    ]);
    for g in gens {
        t.row(vec![
            if g.current { "*" } else { "" }.to_owned(),
            g.number.to_string(),
            rfc3339(g.created),
            g.profile.clone(),
            g.reason.clone(),
            g.uid.to_string(),
        ]);
    }
    t.render(false)
}

/// Peers: name, address, handshake age, transfer, expiry. Public keys are
/// in `--json`; they would not fit 80 columns.
pub fn peers(peers: &[PeerInfo], now: u64) -> String {
    if peers.is_empty() {
        return "no peers; add one with `bulwarkctl add-peer NAME`\n".to_owned();
    }
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("ADDRESS", Align::Left),
        ("HANDSHAKE", Align::Right),
        ("RX", Align::Right),
        ("TX", Align::Right),
        ("EXPIRES", Align::Left),
    ]);
    for p in peers {
        let ago = match p.last_handshake {
            _ if p.disabled => "disabled".to_owned(),
            None => "never".to_owned(),
            Some(t) => format!("{} ago", coarse(now.saturating_sub(t))),
        };
        t.row(vec![
            p.name.clone(),
            p.address.clone(),
            ago,
            bytes(p.rx_bytes),
            bytes(p.tx_bytes),
            p.expires.map_or_else(|| "never".to_owned(), |e| deadline(e, now)),
        ]);
    }
    t.render(false)
}

pub fn status(s: &Status, now: u64) -> String {
    let none = || "none".to_owned();
    let pending = s.pending_confirm.as_ref().map_or_else(none, |p| {
        let back = p.revert_to.map(|g| format!(" to {g}")).unwrap_or_default();
        format!(
            "generation {} reverts{back} at {}",
            p.generation,
            deadline(p.deadline, now)
        )
    });
    let drift = if s.drift_interval_secs > 0 {
        format!(
            "{}, checked every {}",
            s.drift,
            humantime::format_duration(Duration::from_secs(s.drift_interval_secs))
        )
    } else {
        s.drift.clone()
    };
    let profile = match (&s.profile, &s.digest) {
        (Some(p), Some(d)) if d.len() >= 12 => format!("{p} (sha256 {}…)", &d[..12]),
        (Some(p), _) => p.clone(),
        (None, _) => none(),
    };
    let mut pairs = vec![
        ("version", s.version.clone()),
        ("root", s.root.clone()),
        ("profile", profile),
        ("generation", s.generation.map_or_else(none, |g| g.to_string())),
        ("pending confirm", pending),
        ("drift", drift),
        ("health", s.health.to_string()),
        ("last error", s.last_error.clone().unwrap_or_else(none)),
    ];
    if s.modules.is_empty() {
        // A daemon older than per-module status: its two fixed fields.
        let fw = &s.firewall;
        pairs.push(("firewall", format!("present {}, in sync {}", fw.present, fw.in_sync)));
        if let Some(w) = &s.wireguard {
            pairs.push(("wireguard", format!("{} {} ({})", w.interface, w.address, w.backend)));
        }
    }
    let mut out = key_values(&pairs);
    if !s.modules.is_empty() {
        out.push_str("modules:\n");
        let mut t = Table::headless(&[("", Align::Left), ("", Align::Left), ("", Align::Left)]);
        for m in &s.modules {
            let level = if m.managed { m.level.to_string() } else { "-".to_owned() };
            t.row(vec![format!("  {}", m.module), level, m.summary.clone()]);
        }
        out.push_str(&t.render(true));
    }
    out
}

/// One line per event: time, event, severity, uid, result, message.
pub fn audit(events: &[AuditEvent]) -> String {
    if events.is_empty() {
        return "no audit events\n".to_owned();
    }
    let mut t = Table::headless(&[
        ("TIME", Align::Left),
        ("EVENT", Align::Left),
        ("SEVERITY", Align::Left),
        ("UID", Align::Left),
        ("RESULT", Align::Left),
        ("MESSAGE", Align::Left),
    ]);
    for e in events {
        t.row(vec![
            e.time.clone(),
            e.event.clone(),
            e.severity.clone(),
            format!("uid={}", e.uid),
            e.result.clone(),
            e.message.clone(),
        ]);
    }
    // One event per line, never wrapped, so grep and cut keep working.
    t.render(false)
}

pub fn audit_verify(v: &AuditVerify) -> String {
    if v.ok {
        format!("audit chain ok: {} events verified\n", v.events)
    } else {
        let why = escape(v.error.as_deref().unwrap_or("no reason given"));
        format!("audit chain BROKEN after {} events: {why}\n", v.events)
    }
}

/// What an apply, rollback or confirm did.
pub enum Action {
    Apply,
    Rollback,
    Confirm,
}

pub fn outcome(r: &ApplyResponse, action: Action, now: u64) -> String {
    let mut out = String::new();
    if !matches!(action, Action::Confirm) {
        for c in &r.plan.changes {
            writeln!(out, "{}", signed(&escape(&c.to_string()))).ok();
        }
    }
    let gen = r.generation.map_or_else(|| "?".to_owned(), |g| g.to_string());
    let profile = if r.profile.is_empty() {
        String::new()
    } else {
        format!(" (profile {})", escape(&r.profile))
    };
    let summary = match action {
        _ if r.dry_run => {
            if r.plan.is_empty() {
                out.push_str("no changes\n");
            }
            "dry run: nothing changed".to_owned()
        }
        Action::Confirm => format!("confirmed generation {gen}{profile}"),
        Action::Apply if r.changed => format!("applied generation {gen}{profile}"),
        Action::Rollback if r.changed => {
            format!("rolled back: generation {gen}{profile} is in force")
        }
        Action::Apply | Action::Rollback => "no changes".to_owned(),
    };
    writeln!(out, "{summary}").ok();
    if let Some(d) = r.confirm_deadline {
        writeln!(
            out,
            "reverts at {}; keep it with `bulwarkctl confirm`",
            deadline(d, now)
        )
        .ok();
    }
    for w in &r.warnings {
        let line = format!("warning: {}", escape(w));
        writeln!(out, "{}", paint(&line, AnsiColor::Yellow)).ok();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bulwark_model::api::{Change, ChangeOp, Check, Level, PendingConfirm, Plan};

    #[test]
    fn rfc3339_is_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_714_557_600), "2024-05-01T10:00:00Z");
        assert_eq!(deadline(1_714_557_720, 1_714_557_600), "2024-05-01T10:02:00Z (in 2m)");
        assert_eq!(deadline(1_714_557_600, 1_714_557_700), "2024-05-01T10:00:00Z (passed)");
        assert_eq!(coarse(3 * 3600 + 125), "3h 2m");
        assert_eq!(coarse(59), "59s");
    }

    #[test]
    fn health_puts_the_verdict_first_and_aligns_checks() {
        let h = Health::from_checks(vec![
            Check {
                module: String::new(),
                name: "firewall".into(),
                level: Level::Ok,
                reason: "in sync".into(),
            },
            Check {
                module: String::new(),
                name: "confirm".into(),
                level: Level::Warning,
                reason: "a confirm window is open".into(),
            },
        ]);
        assert_eq!(
            health(&h),
            "overall: WARNING\n\
             NAME      LEVEL    REASON\n\
             firewall  OK       in sync\n\
             confirm   WARNING  a confirm window is open\n"
        );
    }

    #[test]
    fn long_reasons_wrap_under_their_column_within_80() {
        let reason =
            "the live table differs from generation 4: chain input has 3 extra rules and set admin_v4 lost 2 elements";
        let h = Health::from_checks(vec![Check {
            module: String::new(),
            name: "drift".into(),
            level: Level::Critical,
            reason: reason.into(),
        }]);
        let text = health(&h);
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 3);
        assert!(lines[3].starts_with(&" ".repeat("drift  CRITICAL  ".len())), "{text}");
        let rejoined: Vec<&str> = lines[2..].iter().map(|l| l.trim()).collect();
        assert!(rejoined.join(" ").ends_with(reason));
    }

    #[test]
    fn generations_table_marks_current() {
        let gens = vec![
            GenerationInfo {
                number: 1,
                profile: "default".into(),
                created: 1_714_557_600,
                uid: 0,
                reason: "boot".into(),
                current: false,
                digest: String::new(),
            },
            GenerationInfo {
                number: 12,
                profile: "vps-k3s".into(),
                created: 1_714_561_200,
                uid: 1000,
                reason: "apply".into(),
                current: true,
                digest: String::new(),
            },
        ];
        assert_eq!(
            generations(&gens),
            concat!(
                "   GEN  CREATED               PROFILE  REASON   UID\n",
                "     1  2024-05-01T10:00:00Z  default  boot       0\n",
                "*   12  2024-05-01T11:00:00Z  vps-k3s  apply   1000\n",
            )
        );
        assert_eq!(generations(&[]), "no generations yet\n");
    }

    #[test]
    fn status_aligns_keys() {
        let s = Status {
            version: "0.1.0".into(),
            root: "/".into(),
            profile: Some("vps-k3s".into()),
            generation: Some(4),
            drift: "repair".into(),
            drift_interval_secs: 30,
            pending_confirm: Some(PendingConfirm {
                generation: 4,
                revert_to: Some(3),
                deadline: 1_714_557_720,
            }),
            ..Status::default()
        };
        let text = status(&s, 1_714_557_600);
        assert!(
            text.starts_with("version:          0.1.0\nroot:             /\n"),
            "{text}"
        );
        assert!(
            text.contains("\ndrift:            repair, checked every 30s\n"),
            "{text}"
        );
        assert!(
            text.contains("\npending confirm:  generation 4 reverts to 3 at 2024-05-01T10:02:00Z (in 2m)\n"),
            "{text}"
        );
        assert!(text.contains("\nlast error:       none\n"));
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
    }

    #[test]
    fn status_lists_every_module_with_its_level() {
        let module = |name: &str, managed, level, summary: &str| bulwark_model::api::ModuleStatus {
            module: name.into(),
            managed,
            level,
            summary: summary.into(),
            details: serde_json::Value::Null,
        };
        let s = Status {
            modules: vec![
                module("firewall", true, Level::Ok, "default deny"),
                module("wireguard", true, Level::Critical, "cannot load its state"),
                module("k3s", false, Level::Ok, "unmanaged"),
            ],
            ..Status::default()
        };
        let text = status(&s, 0);
        let tail: Vec<&str> = text.lines().skip_while(|l| *l != "modules:").collect();
        assert_eq!(
            tail,
            [
                "modules:",
                "  firewall   OK        default deny",
                "  wireguard  CRITICAL  cannot load its state",
                "  k3s        -         unmanaged",
            ],
            "{text}"
        );
    }

    #[test]
    fn audit_lines_are_aligned_and_whole() {
        let ev = |seq, event: &str, sev: &str, msg: &str| AuditEvent {
            seq,
            time: "2024-05-01T10:00:00Z".into(),
            event: event.into(),
            severity: sev.into(),
            result: "success".into(),
            message: msg.into(),
            ..AuditEvent::default()
        };
        let text = audit(&[
            ev(1, "BWK-SYS-0001", "info", "started"),
            ev(2, "BWK-CHG-0001", "notice", "applied"),
        ]);
        assert_eq!(
            text,
            "2024-05-01T10:00:00Z  BWK-SYS-0001  info    uid=0  success  started\n\
             2024-05-01T10:00:00Z  BWK-CHG-0001  notice  uid=0  success  applied\n"
        );
    }

    #[test]
    fn daemon_strings_never_reach_the_terminal_raw() {
        let evil = "x\nbulwarkctl: forged\u{1b}]0;title\u{7}\u{9b}2J\u{202e}";
        let ev = AuditEvent {
            time: "2024-05-01T10:00:00Z".into(),
            event: "BWK-CHG-0006".into(),
            message: evil.into(),
            ..AuditEvent::default()
        };
        let gens = [GenerationInfo {
            profile: evil.into(),
            reason: evil.into(),
            ..GenerationInfo::default()
        }];
        let s = Status {
            profile: Some(evil.into()),
            last_error: Some(evil.into()),
            ..Status::default()
        };
        let h = Health::from_checks(vec![Check {
            module: String::new(),
            name: evil.into(),
            level: Level::Warning,
            reason: evil.into(),
        }]);
        let r = ApplyResponse {
            profile: evil.into(),
            plan: Plan {
                changes: vec![Change::new(evil, ChangeOp::Add, evil)],
            },
            ..ApplyResponse::default()
        };
        let v = AuditVerify {
            ok: false,
            events: 1,
            error: Some(evil.into()),
        };
        for text in [
            audit(std::slice::from_ref(&ev)),
            generations(&gens),
            status(&s, 0),
            health(&h),
            outcome(&r, Action::Apply, 0),
            audit_verify(&v),
        ] {
            // Our own colours, exactly; anything else would be the daemon's.
            let text = ["\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"]
                .iter()
                .fold(text, |t, code| t.replace(code, ""));
            let unsafe_chars: Vec<char> = text
                .chars()
                .filter(|c| *c != '\n' && bulwark_model::text::is_unsafe(*c))
                .collect();
            assert!(unsafe_chars.is_empty(), "{unsafe_chars:?} in {text:?}");
            assert!(!text.contains("\nbulwarkctl: forged"), "{text:?}");
        }
        assert_eq!(
            audit(&[ev]),
            "2024-05-01T10:00:00Z  BWK-CHG-0006    uid=0    \
             x\\nbulwarkctl: forged\\x1b]0;title\\x07\\u{9b}2J\\u{202e}\n"
        );
    }

    /// What reaches a pipe: the stream strips the colour.
    fn plain(text: &str) -> String {
        anstream::adapter::strip_str(text).to_string()
    }

    #[test]
    fn plan_lines_are_coloured_by_sign_and_warnings_follow() {
        let r = ApplyResponse {
            plan: Plan {
                changes: vec![
                    Change::new("firewall", ChangeOp::Add, "tcp dport 443 accept"),
                    Change::new("firewall", ChangeOp::Remove, "tcp dport 80 accept"),
                ],
            },
            dry_run: true,
            warnings: vec!["firewall: ufw: its rules are loaded".into()],
            ..ApplyResponse::default()
        };
        let text = outcome(&r, Action::Apply, 0);
        assert!(
            text.starts_with("\x1b[32m+ firewall: tcp dport 443 accept\x1b[0m\n"),
            "{text:?}"
        );
        assert!(
            text.contains("\x1b[31m- firewall: tcp dport 80 accept\x1b[0m\n"),
            "{text:?}"
        );
        assert!(plain(&text).ends_with("dry run: nothing changed\nwarning: firewall: ufw: its rules are loaded\n"));
    }

    #[test]
    fn peers_show_traffic_in_binary_units_and_disabled_peers() {
        let p = |name: &str, rx, disabled| PeerInfo {
            name: name.into(),
            address: "10.8.0.2".into(),
            last_handshake: Some(1_000),
            rx_bytes: rx,
            tx_bytes: 2048,
            disabled,
            ..PeerInfo::default()
        };
        let text = peers(&[p("alice", 1_572_864, false), p("bob", 0, true)], 1_100);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME   ADDRESS    HANDSHAKE       RX       TX  EXPIRES");
        assert_eq!(lines[1], "alice  10.8.0.2  1m 40s ago  1.5 MiB  2.0 KiB  never");
        assert_eq!(lines[2], "bob    10.8.0.2    disabled      0 B  2.0 KiB  never");
    }

    #[test]
    fn outcome_lines() {
        let plan = Plan {
            changes: vec![Change::new("firewall", ChangeOp::Add, "tcp dport 443 accept")],
        };
        let applied = ApplyResponse {
            profile: "web".into(),
            generation: Some(5),
            plan: plan.clone(),
            changed: true,
            dry_run: false,
            confirm_deadline: Some(160),
            ..ApplyResponse::default()
        };
        assert_eq!(
            plain(&outcome(&applied, Action::Apply, 100)),
            "+ firewall: tcp dport 443 accept\napplied generation 5 (profile web)\n\
             reverts at 1970-01-01T00:02:40Z (in 1m); keep it with `bulwarkctl confirm`\n"
        );
        let dry = ApplyResponse {
            dry_run: true,
            changed: false,
            confirm_deadline: None,
            ..applied.clone()
        };
        assert_eq!(
            plain(&outcome(&dry, Action::Apply, 0)),
            "+ firewall: tcp dport 443 accept\ndry run: nothing changed\n"
        );
        let empty_dry = ApplyResponse {
            plan: Plan::default(),
            ..dry
        };
        assert_eq!(
            outcome(&empty_dry, Action::Apply, 0),
            "no changes\ndry run: nothing changed\n"
        );
        let same = ApplyResponse {
            plan: Plan::default(),
            changed: false,
            confirm_deadline: None,
            ..applied
        };
        assert_eq!(outcome(&same, Action::Apply, 0), "no changes\n");
        assert_eq!(
            outcome(&same, Action::Confirm, 0),
            "confirmed generation 5 (profile web)\n"
        );
    }

    #[test]
    fn wrap_keeps_long_words_whole() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefgh x", 4), vec!["abcdefgh", "x"]);
        assert_eq!(wrap("", 10), vec![""]);
    }

    #[test]
    fn audit_verify_lines() {
        assert_eq!(
            audit_verify(&AuditVerify {
                ok: true,
                events: 3,
                error: None
            }),
            "audit chain ok: 3 events verified\n"
        );
        let broken = AuditVerify {
            ok: false,
            events: 2,
            error: Some("line 3: hash mismatch".into()),
        };
        assert_eq!(
            audit_verify(&broken),
            "audit chain BROKEN after 2 events: line 3: hash mismatch\n"
        );
    }
}
