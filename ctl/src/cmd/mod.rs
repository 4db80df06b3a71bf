//! Command dispatch and what every command shares: the socket client, the
//! `--json` switch and writing to stdout.

use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cli::{AuditCommand, Cli, Command};
use crate::client::{Client, ClientError};
use crate::error;

mod docs;
mod evidence;
mod ima;
mod peers;
mod profile;
mod query;
mod vault;

/// Settings every command sees.
pub struct Ctx<'a> {
    pub socket: &'a Path,
    pub json: bool,
    pub verbose: bool,
}

impl Ctx<'_> {
    fn client(&self) -> Result<Client, ClientError> {
        Client::new(self.socket, self.verbose)
    }
}

/// Run the command and return the process exit code; errors are reported
/// here so each command only has to say what went wrong.
pub fn run(cli: &Cli) -> u8 {
    let ctx = Ctx {
        socket: &cli.socket,
        json: cli.json,
        verbose: cli.verbose,
    };
    let mut out = io::stdout().lock();
    let result = match &cli.command {
        // health maps its own errors: every failure there is UNKNOWN.
        Command::Health => return query::health(&ctx, &mut out),
        Command::Validate { file } => profile::validate(&ctx, &mut out, file),
        Command::Apply(args) => profile::apply(&ctx, &mut out, args),
        Command::Confirm => profile::confirm(&ctx, &mut out),
        Command::Rollback { generation } => profile::rollback(&ctx, &mut out, *generation),
        Command::AddPeer(args) => peers::add(&ctx, &mut out, args),
        Command::RemovePeer { name, yes } => peers::remove(&ctx, &mut out, name, *yes),
        Command::Peers => peers::list(&ctx, &mut out),
        Command::Generations => query::generations(&ctx, &mut out),
        Command::Status => query::status(&ctx, &mut out),
        Command::Audit {
            command: AuditCommand::Tail { n },
        } => query::audit_tail(&ctx, &mut out, *n),
        Command::Audit {
            command: AuditCommand::Verify,
        } => query::audit_verify(&ctx, &mut out),
        Command::Ima { command } => ima::run(&ctx, &mut out, command),
        Command::Vault { command } => vault::run(&ctx, &mut out, command),
        Command::Evidence(args) => evidence::run(&ctx, &mut out, args),
        Command::Completions { shell } => docs::completions(&mut out, *shell),
        Command::Man { dir } => docs::man(&mut out, dir),
    };
    let result = result.and_then(|code| out.flush().map(|()| code).map_err(Into::into));
    match result {
        Ok(code) => code,
        Err(err) => {
            error::report(&err, ctx.json);
            error::exit_code(&err)
        }
    }
}

/// Write text to stdout; a failure (a closed pipe) surfaces as an error
/// that `error` knows how to treat.
fn emit(out: &mut dyn Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())
}

/// Pretty-print JSON, as `--json` promises.
fn emit_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(out, &text)?;
    Ok(())
}

/// Current Unix time, for "in 2m" next to deadlines.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
