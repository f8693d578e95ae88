//! `hearth`: the command-line client of a Hearth vault.

mod cli;
mod clip;
mod commands;
mod completions;
mod connect;
mod daemon;
mod demo;
mod follow;
mod generate;
mod get;
mod history;
mod invite;
mod join;
mod list;
mod nat_check;
mod rotate;
mod totp;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
