//! `klt-render krm`: work in progress.

use std::process::ExitCode;

use clap::{ArgMatches, Command};

pub fn command() -> Command {
    Command::new("krm")
        .about("kustomize KRM function and legacy exec plugin: ResourceList in, ResourceList out")
}

pub fn run(_m: &ArgMatches) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`klt-render krm` is not implemented yet")
}
