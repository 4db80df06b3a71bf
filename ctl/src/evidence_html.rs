//! evidence.html: the evidence report as one self-contained page (inline
//! style, no scripts, no external assets), readable offline and printable.
//! It shows what evidence.json holds and nothing else, in the same order:
//! the status and every problem first, then the chain, one section per
//! control, the checks no control claims, and the period's events.

use std::fmt::Write as _;

use bulwark_model::api::{AuditEvent, Check};
use bulwark_model::evidence::{Control, ControlStatus, Evidence};

const STYLE: &str = "
body { font: 11pt/1.4 system-ui, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 18pt; margin-bottom: .2em; }
h2 { font-size: 14pt; margin-top: 1.6em; border-bottom: 1px solid #999; page-break-after: avoid; }
h3 { font-size: 11pt; margin-bottom: .3em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; font-size: 9.5pt; }
th, td { border: 1px solid #bbb; padding: 2px 5px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.mono, span.mono { font-family: ui-monospace, monospace; word-break: break-all; }
.banner { padding: .6em 1em; border: 2px solid; margin: 1em 0; }
.pass { background: #e6f4e6; border-color: #2a7a2a; }
.warning, .no_evidence { background: #fff5d6; border-color: #a07800; }
.fail { background: #fde2e2; border-color: #b00000; }
.not_managed { background: #eef; border-color: #669; }
td.status { font-weight: bold; }
section.control { page-break-inside: avoid; }
@media print { body { margin: 0; } a { color: inherit; text-decoration: none; } }
";

/// Text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn status_class(s: ControlStatus) -> &'static str {
    s.as_str()
}

/// A table with a header row; every cell is escaped here.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>], mono: &[usize]) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if mono.contains(&i) { " class=\"mono\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn checks_table(out: &mut String, checks: &[Check]) {
    if checks.is_empty() {
        out.push_str("<p>No live check evidences this control.</p>\n");
        return;
    }
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| vec![c.module.clone(), c.name.clone(), c.level.to_string(), c.reason.clone()])
        .collect();
    table(out, &["Module", "Check", "Level", "Reason"], &rows, &[]);
}

fn events_table(out: &mut String, events: &[&AuditEvent], first_unverified: Option<u64>) {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let proven = if first_unverified.is_some_and(|n| e.seq >= n) {
                "NOT VERIFIED"
            } else {
                "verified"
            };
            vec![
                e.seq.to_string(),
                e.time.clone(),
                e.event.clone(),
                e.severity.clone(),
                e.uid.to_string(),
                e.result.clone(),
                e.message.clone(),
                proven.to_owned(),
            ]
        })
        .collect();
    table(
        out,
        &["Line", "Time", "Event", "Severity", "uid", "Result", "Message", "Chain"],
        &rows,
        &[],
    );
}

/// A record the daemon sends as a JSON object (Vault, IMA), as key and value.
fn object_table(out: &mut String, value: &impl serde::Serialize) {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(value) else {
        return;
    };
    let rows: Vec<Vec<String>> = map
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            vec![k.clone(), v]
        })
        .collect();
    table(out, &["Field", "Value"], &rows, &[1]);
}

fn records(out: &mut String, c: &Control) {
    if let Some(gens) = &c.generations {
        out.push_str("<h3>Generations created in the period</h3>\n");
        let rows: Vec<Vec<String>> = gens
            .iter()
            .map(|g| {
                vec![
                    g.number.to_string(),
                    g.created.clone(),
                    format!("{} ({})", g.uid, g.user.as_deref().unwrap_or("no account")),
                    g.reason.clone(),
                    g.profile.clone(),
                    g.digest.clone(),
                    g.confirmation.clone(),
                    if g.current { "yes" } else { "" }.to_owned(),
                ]
            })
            .collect();
        table(
            out,
            &[
                "Generation",
                "Created",
                "By uid",
                "Reason",
                "Profile",
                "SHA-256",
                "Confirmation",
                "In force",
            ],
            &rows,
            &[5],
        );
    }
    if let Some(peers) = &c.peers {
        out.push_str("<h3>Access review: every VPN peer in force</h3>\n");
        let rows: Vec<Vec<String>> = peers
            .iter()
            .map(|p| {
                let by = match (p.added_by_uid, &p.added_by) {
                    (Some(uid), Some(name)) => format!("{uid} ({name})"),
                    (Some(uid), None) => uid.to_string(),
                    _ => "not recorded".to_owned(),
                };
                vec![
                    p.name.clone(),
                    p.address.clone(),
                    p.public_key.clone(),
                    p.added.clone(),
                    by,
                    opt(&p.expires),
                    opt(&p.last_handshake),
                    if p.disabled { "disabled" } else { "enabled" }.to_owned(),
                    p.notes.join("; "),
                ]
            })
            .collect();
        table(
            out,
            &[
                "Peer",
                "Address",
                "Public key",
                "Added",
                "Added by",
                "Expires",
                "Last handshake",
                "State",
                "Review notes",
            ],
            &rows,
            &[2],
        );
    }
    if let Some(b) = &c.backups {
        out.push_str("<h3>Backups of the period</h3>\n");
        let seqs = |v: &[u64]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.iter().map(|s| format!("line {s}")).collect::<Vec<_>>().join(", ")
            }
        };
        let rows = vec![
            vec!["configured".to_owned(), b.configured.to_string()],
            vec!["snapshots".to_owned(), seqs(&b.snapshots)],
            vec!["restore tests".to_owned(), seqs(&b.restore_tests)],
        ];
        table(out, &["Field", "Value"], &rows, &[]);
    }
    if let Some(ima) = &c.ima {
        out.push_str("<h3>IMA in force</h3>\n");
        object_table(out, ima);
    }
    if let Some(vault) = &c.vault {
        out.push_str("<h3>Vault in force</h3>\n");
        object_table(out, vault);
    }
}

/// The page for `e`; `json_sha256` is evidence.json's digest, named in the
/// page so that a printout points at the file it came from.
pub fn render(e: &Evidence, json_sha256: &str) -> String {
    let mut out = String::new();
    let host = e.host.hostname.as_deref().unwrap_or("(unnamed host)");
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Bulwark evidence: {}</title><style>{STYLE}</style></head><body>\n",
        escape(host)
    );
    let _ = writeln!(out, "<h1>ISO 27001 evidence: {}</h1>", escape(host));
    let period = format!(
        "Period {} to {} (since inclusive, until exclusive); generated {}; bulwarkd {}; root {}; \
         profile {} generation {} SHA-256 {}; machine-id {}.",
        e.period.since.as_deref().unwrap_or("the start of the log"),
        e.period.until.as_deref().unwrap_or("now"),
        e.generated,
        e.host.bulwarkd_version,
        e.host.root,
        opt(&e.host.profile),
        opt(&e.host.generation),
        opt(&e.host.digest),
        opt(&e.host.machine_id),
    );
    let _ = writeln!(out, "<p>{}</p>", escape(&period));

    // The top: status, chain and every problem, never below the fold.
    let _ = writeln!(
        out,
        "<div class=\"banner {}\" id=\"summary\"><strong>Status: {}</strong> &mdash; audit chain: {}",
        status_class(e.summary.status),
        escape(e.summary.status.as_str()),
        if e.chain.ok { "verified" } else { "BROKEN" }
    );
    if !e.summary.problems.is_empty() {
        out.push_str("<ul>");
        for p in &e.summary.problems {
            let _ = write!(out, "<li>{}</li>", escape(p));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>\n");

    let _ = writeln!(
        out,
        "<div class=\"banner {}\" id=\"chain\"><strong>Audit chain {}</strong>: {}<br>Head: {}</div>",
        if e.chain.ok { "pass" } else { "fail" },
        if e.chain.ok { "verified" } else { "BROKEN" },
        escape(&e.chain.note),
        e.chain.head.as_ref().map_or_else(
            || "none (empty log)".to_owned(),
            |h| format!("line {} <span class=\"mono\">{}</span>", h.seq, escape(&h.hash))
        )
    );

    out.push_str(
        "<h2 id=\"controls\">Controls</h2>\n<table><tr><th>Control</th><th>ISO 27001:2013</th>\
                  <th>ISO 27001:2022</th><th>Status</th><th>Reason</th><th>Events</th></tr>\n",
    );
    for c in &e.controls {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#control-{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"status {}\">{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&c.id),
            escape(&c.title),
            escape(&c.iso2013.join(", ")),
            escape(&c.iso2022.join(", ")),
            status_class(c.status),
            escape(c.status.as_str()),
            escape(&c.reason),
            c.events.len()
        );
    }
    out.push_str("</table>\n");

    for c in &e.controls {
        let _ = writeln!(
            out,
            "<section class=\"control\"><h2 id=\"control-{}\">{} ({} / {})</h2>",
            escape(&c.id),
            escape(&c.title),
            escape(&c.iso2013.join(", ")),
            escape(&c.iso2022.join(", "))
        );
        let _ = writeln!(
            out,
            "<div class=\"banner {}\"><strong>{}</strong>: {}</div><p>Evidenced by {}.</p>",
            status_class(c.status),
            escape(c.status.as_str()),
            escape(&c.reason),
            escape(&c.evidence)
        );
        out.push_str("<h3>Live checks at export time</h3>\n");
        checks_table(&mut out, &c.checks);
        records(&mut out, c);
        let _ = writeln!(out, "<h3>Audit events of the period ({})</h3>", c.events.len());
        let events: Vec<&AuditEvent> = e.events.iter().filter(|ev| c.events.contains(&ev.seq)).collect();
        if events.is_empty() {
            out.push_str("<p>None in the period.</p>\n");
        } else {
            events_table(&mut out, &events, e.chain.first_unverified);
        }
        out.push_str("</section>\n");
    }

    out.push_str("<h2 id=\"other-checks\">Other checks</h2>\n");
    checks_table(&mut out, &e.other_checks);
    let _ = writeln!(
        out,
        "<h2 id=\"events\">Every event of the period ({})</h2>",
        e.events.len()
    );
    if e.events_omitted > 0 {
        let _ = writeln!(
            out,
            "<p class=\"banner fail\">{} more event(s) of the period are not listed.</p>",
            e.events_omitted
        );
    }
    let all: Vec<&AuditEvent> = e.events.iter().collect();
    events_table(&mut out, &all, e.chain.first_unverified);
    let _ = writeln!(
        out,
        "<p>Rendered by bulwarkctl from evidence.json, SHA-256 <span class=\"mono\">{}</span>.</p>\n</body></html>",
        escape(json_sha256)
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bulwark_model::evidence::{ChainEvidence, Summary};

    #[test]
    fn text_from_the_host_cannot_become_markup() {
        let e = Evidence {
            summary: Summary {
                problems: vec!["<script>alert(1)</script>".to_owned()],
                ..Summary::default()
            },
            chain: ChainEvidence {
                note: "a & b".to_owned(),
                ..ChainEvidence::default()
            },
            ..Evidence::default()
        };
        let page = render(&e, "00");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a &amp; b"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external assets"
        );
    }
}
