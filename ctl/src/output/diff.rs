//! `generations show N` and `generations diff A B`.
//!
//! Profiles and artifacts are text the daemon rendered or the operator
//! wrote; they are escaped line by line like everything else, so a
//! generation edited on disk cannot put control sequences on a terminal.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anstyle::AnsiColor;
use bulwark_model::api::GenerationDetail;
use bulwark_model::text::escape;
use similar::TextDiff;

use super::{key_values, paint, rfc3339, signed};

/// Text escaped line by line, ending in a newline.
fn lines(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines() {
        out.push_str(&escape(l));
        out.push('\n');
    }
    out
}

fn seal(g: &GenerationDetail) -> String {
    if g.sealed {
        "verified with this host's integrity key".to_owned()
    } else {
        paint(
            "DOES NOT VERIFY: edited or damaged on disk since it was applied; bulwarkd will not install it",
            AnsiColor::Red,
        )
    }
}

/// One generation: its metadata, its profile, and its artifacts by name
/// and size.
pub fn generation(g: &GenerationDetail) -> String {
    let i = &g.info;
    let mut out = key_values(&[
        (
            "generation",
            format!("{}{}", i.number, if i.current { " (in force)" } else { "" }),
        ),
        ("created", rfc3339(i.created)),
        ("reason", i.reason.clone()),
        ("uid", i.uid.to_string()),
        ("profile", format!("{} from {}", i.profile, g.source)),
        ("sha256", i.digest.clone()),
        ("written by", format!("bulwarkd {}", g.version)),
    ]);
    // The seal line may carry colour: added after the escaping above.
    writeln!(out, "seal:        {}", seal(g)).ok();
    out.push_str("\nprofile:\n");
    for l in lines(&g.profile).lines() {
        writeln!(out, "  {l}").ok();
    }
    out.push_str("\nartifacts (bulwarkctl generations show N --artifact MODULE/FILE prints one):\n");
    for (module, files) in &g.artifacts {
        for (name, content) in files {
            writeln!(out, "  {}/{}  {} bytes", escape(module), escape(name), content.len()).ok();
        }
    }
    out
}

/// A unified diff of `old` → `new` labelled `what`, empty when equal.
fn unified(what: &str, a: u64, b: u64, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let diff = TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("generation {a}: {what}"), &format!("generation {b}: {what}"))
        .to_string();
    let mut out = String::new();
    for l in text.lines() {
        writeln!(out, "{}", signed(&escape(l))).ok();
    }
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// What changed from generation `a` to `b`: the profile, then every
/// artifact, in module order; a file only one of them has is diffed
/// against nothing.
pub fn generation_diff(a: &GenerationDetail, b: &GenerationDetail) -> String {
    let (na, nb) = (a.info.number, b.info.number);
    let mut out = String::new();
    for g in [a, b] {
        if !g.sealed {
            writeln!(
                out,
                "{}",
                paint(
                    &format!("warning: generation {}'s seal does not verify", g.info.number),
                    AnsiColor::Red
                )
            )
            .ok();
        }
    }
    out.push_str(&unified("profile.toml", na, nb, &a.profile, &b.profile));
    let names: BTreeSet<(String, String)> = [a, b]
        .iter()
        .flat_map(|g| {
            g.artifacts
                .iter()
                .flat_map(|(m, files)| files.keys().map(move |f| (m.clone(), f.clone())))
        })
        .collect();
    for (module, file) in names {
        let get = |g: &GenerationDetail| {
            g.artifacts
                .get(&module)
                .and_then(|f| f.get(&file))
                .cloned()
                .unwrap_or_default()
        };
        out.push_str(&unified(&format!("{module}/{file}"), na, nb, &get(a), &get(b)));
    }
    if out.is_empty() {
        writeln!(
            out,
            "generations {na} and {nb} are the same: same profile, same artifacts"
        )
        .ok();
    }
    out
}
