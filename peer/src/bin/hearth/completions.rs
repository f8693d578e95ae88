//! `hearth completions SHELL` and `hearth man`: generated from the CLI's own definition, so
//! they never fall behind a flag.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;

pub(crate) fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hearth", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}

pub(crate) fn man() -> anyhow::Result<()> {
    let mut out = Vec::new();
    let cmd = Cli::command();
    let footer = crate::config::footer(&cmd);
    clap_mangen::Man::new(cmd.after_long_help(footer)).render(&mut out)?;
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}
