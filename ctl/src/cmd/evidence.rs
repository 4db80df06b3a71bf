//! `bulwarkctl evidence`: fetch the report, write evidence.json exactly as
//! the daemon sent it (indented), render evidence.html from the same bytes,
//! and record the SHA-256 of both in SHA256SUMS.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bulwark_model::evidence::{ControlStatus, Evidence, SCHEMA, VERSION};
use bulwark_model::text::escape;
use sha2::{Digest, Sha256};

use super::{emit, Ctx};
use crate::cli::EvidenceArgs;
use crate::error::{FAILED, OK};
use crate::evidence_html;
use crate::output::wrap;

/// The three files a report is, in the order SHA256SUMS lists the first two.
pub const JSON: &str = "evidence.json";
pub const HTML: &str = "evidence.html";
pub const SUMS: &str = "SHA256SUMS";

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("the daemon answered schema {schema:?} version {version}; this bulwarkctl reads {SCHEMA:?} version {VERSION}: use the bulwarkctl of the same release")]
    Schema { schema: String, version: u32 },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn run(ctx: &Ctx<'_>, out: &mut dyn Write, args: &EvidenceArgs) -> anyhow::Result<u8> {
    let mut query = Vec::new();
    if let Some(s) = &args.since {
        query.push(format!("since={}", crate::client::segment(s)));
    }
    if let Some(u) = &args.until {
        query.push(format!("until={}", crate::client::segment(u)));
    }
    let path = if query.is_empty() {
        "/v1/evidence".to_owned()
    } else {
        format!("/v1/evidence?{}", query.join("&"))
    };
    let answer = ctx.client()?.get(&path)?;
    let report: Evidence = answer.decode()?;
    if report.schema != SCHEMA || report.version != VERSION {
        return Err(EvidenceError::Schema {
            schema: report.schema,
            version: report.version,
        }
        .into());
    }
    let json = answer.pretty();
    let json_sha = hex::encode(Sha256::digest(json.as_bytes()));
    let html = evidence_html::render(&report, &json_sha);
    let html_sha = hex::encode(Sha256::digest(html.as_bytes()));
    fs::create_dir_all(&args.out).map_err(|source| EvidenceError::Write {
        path: args.out.clone(),
        source,
    })?;
    write(&args.out, JSON, json.as_bytes())?;
    write(&args.out, HTML, html.as_bytes())?;
    let sums = format!("{json_sha}  {JSON}\n{html_sha}  {HTML}\n");
    write(&args.out, SUMS, sums.as_bytes())?;
    if ctx.json {
        emit(out, &json)?;
    } else {
        emit(out, &summary_table(&report))?;
        emit(
            out,
            &format!(
                "\nwritten to {}:\n  {JSON}  sha256 {json_sha}\n  {HTML}  sha256 {html_sha}\n  {SUMS}\n",
                args.out.display()
            ),
        )?;
    }
    Ok(if report.summary.status == ControlStatus::Fail {
        FAILED
    } else {
        OK
    })
}

/// Write `name` in `dir` through a temporary file, so a reader never sees
/// half a report.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let err = |source| EvidenceError::Write {
        path: path.clone(),
        source,
    };
    fs::write(&tmp, bytes).map_err(err)?;
    fs::rename(&tmp, &path).map_err(err)?;
    Ok(())
}

/// The top of the report as text: status, chain, problems, one row per control.
pub fn summary_table(e: &Evidence) -> String {
    let mut text = format!(
        "evidence: {}  chain: {}\n",
        e.summary.status.as_str(),
        if e.chain.ok { "verified" } else { "BROKEN" }
    );
    text.push_str(&format!(
        "period: {} .. {}  generated {}\n",
        e.period.since.as_deref().unwrap_or("(start of log)"),
        e.period.until.as_deref().unwrap_or("(now)"),
        e.generated
    ));
    text.push_str(&format!("chain: {}\n", escape(&e.chain.note)));
    if let Some(h) = &e.chain.head {
        text.push_str(&format!("chain head: line {} {}\n", h.seq, h.hash));
    }
    for p in &e.summary.problems {
        text.push_str(&format!("problem: {}\n", escape(p)));
    }
    let rows: Vec<[String; 5]> = e
        .controls
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.iso2013.join(","),
                c.iso2022.join(","),
                c.status.as_str().to_owned(),
                c.events.len().to_string(),
            ]
        })
        .collect();
    let head = ["CONTROL", "ISO 2013", "ISO 2022", "STATUS", "EVENTS"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            l.push_str(&format!("{cell:<w$}  "));
        }
        l.trim_end().to_owned() + "\n"
    };
    text.push('\n');
    text.push_str(&line(&head));
    for (r, c) in rows.iter().zip(&e.controls) {
        text.push_str(&line(&r.each_ref().map(String::as_str)));
        for l in wrap(&escape(&c.reason), 72) {
            text.push_str(&format!("    {l}\n"));
        }
    }
    text
}
