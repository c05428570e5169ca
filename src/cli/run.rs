//! `klt-render run`: work in progress.

use std::process::ExitCode;

use clap::{ArgMatches, Command};

pub fn command() -> Command {
    Command::new("run").about("Run one task's code on this machine as the runtime image would")
}

pub fn run(_m: &ArgMatches) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`klt-render run` is not implemented yet")
}
