//! Generated documentation: shell completions and man pages, both built
//! from the clap definition so they cannot drift from `--help`.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::emit;
use crate::cli::Cli;
use crate::error::OK;

pub fn completions(out: &mut dyn Write, shell: Shell) -> anyhow::Result<u8> {
    // clap_complete panics on write errors, so render into memory and let a
    // closed pipe surface as an ordinary error.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bulwarkctl", &mut buf);
    out.write_all(&buf)?;
    Ok(OK)
}

/// Write `bulwarkctl.1` and one page per subcommand (`bulwarkctl-audit-tail.1`
/// ...) into `dir`, naming each file written.
pub fn man(out: &mut dyn Write, dir: &Path) -> anyhow::Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Help for `help` itself is no manual page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // build() fills in the subcommands' display names (bulwarkctl-apply).
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, dir, &mut written)?;
    let list: String = written.iter().map(|p| format!("{}\n", p.display())).collect();
    emit(out, &list)?;
    Ok(OK)
}

fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .generate_to(dir)
        .with_context(|| format!("cannot write the man page of {} into {}", cmd.get_name(), dir.display()))?;
    written.push(page);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
