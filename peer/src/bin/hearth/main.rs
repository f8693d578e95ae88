//! `hearth`: the command-line client of a Hearth vault.

mod ask;
mod cli;
mod clip;
mod commands;
mod completions;
mod config;
mod connect;
mod daemon;
mod demo;
mod devices;
mod follow;
mod generate;
mod get;
mod history;
mod invite;
mod join;
mod list;
mod lock;
mod nat_check;
mod rotate;
mod totp;
mod transfer;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    if let Err(e) = config::load(cli::Cli::command) {
        eprintln!("hearth: {e:#}");
        return ExitCode::from(2);
    }
    // Built after the config file is read: clap reads each flag's environment variable when
    // the command is built, and the file may have just set some.
    let cmd = cli::Cli::command();
    let footer = config::footer(&cmd);
    let matches = cmd.after_long_help(footer).get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = commands::exit_code(&e);
            if json {
                eprintln!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            } else {
                eprintln!("hearth: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}
