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
mod output;
mod ssh_guard;

fn main() -> ExitCode {
    // Usage errors exit 2 from inside clap, as the contract expects; with
    // --json they also print their JSON body first, like every failure.
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if e.exit_code() == i32::from(error::USAGE) && json_requested() {
                print!("{}", error::usage_json(&e));
            }
            e.exit()
        }
    };
    ExitCode::from(cmd::run(&cli))
}

/// `--json` among the arguments (before a `--`), for errors clap finds
/// before it has parsed them.
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}
