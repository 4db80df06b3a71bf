//! bulwarkctl: the operator's command-line client for bulwarkd.
//!
//! This file only parses arguments and turns the outcome into an exit code;
//! the commands live in `cmd`, the socket client in `client`, the human
//! layout in `output`.

use std::process::ExitCode;

use clap::Parser as _;

mod cli;
mod client;
mod cmd;
mod error;
mod evidence_html;
mod output;
mod ssh_guard;

fn main() -> ExitCode {
    // Usage errors exit 2 from inside clap, as the contract expects.
    let cli = cli::Cli::parse();
    ExitCode::from(cmd::run(&cli))
}
