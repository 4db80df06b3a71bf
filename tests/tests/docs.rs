//! The documentation the package ships reads the same installed as in the
//! repository: every relative link in README.md and docs/*.md points at a
//! file that exists here and is shipped at the same relative place under
//! /usr/share/doc/bulwark (README.md there, docs/*.md in docs/, the IMA
//! templates' ima/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Relative link targets `[text](target)` of a Markdown file.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or("").to_owned();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target);
        }
        rest = &rest[end..];
    }
    out
}

/// What the package installs under /usr/share/doc/bulwark, as paths
/// relative to it: README.md, docs/*.md and the IMA templates' ima/README.md.
fn shipped(root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let s = rel.to_string_lossy();
    s == "README.md" || s == "ima/README.md" || (s.starts_with("docs/") && s.ends_with(".md") && !s[5..].contains('/'))
}

#[test]
fn relative_links_resolve_in_the_repository_and_where_the_package_installs_them() {
    let root = repo().canonicalize().unwrap();
    let mut files = vec![root.join("README.md")];
    for e in fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let mut broken = Vec::new();
    for f in &files {
        for target in links(&fs::read_to_string(f).unwrap()) {
            let resolved = f.parent().unwrap().join(&target);
            let ok = resolved
                .canonicalize()
                .is_ok_and(|r| r.starts_with(&root) && shipped(&root, &r));
            if !ok {
                broken.push(format!("{}: {target}", f.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that break in the repository or once installed: {broken:#?}"
    );
}

#[test]
fn the_package_installs_the_docs_where_their_links_expect_them() {
    let manifest = fs::read_to_string(repo().join("agent/Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"["../README.md", "usr/share/doc/bulwark/", "644"]"#));
    assert!(manifest.contains(r#"["../docs/*.md", "usr/share/doc/bulwark/docs/", "644"]"#));
    assert!(manifest.contains(r#"["../ima/README.md", "usr/share/doc/bulwark/ima/README.md", "644"]"#));
}

/// debian/copyright names exactly the crates the binaries link, so a new
/// or updated dependency cannot ship without its licence.
#[test]
fn the_package_copyright_names_every_crate_the_binaries_link() {
    let out = std::process::Command::new(repo().join("scripts/gen-copyright"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
