//! Command-line adapters around the pure renderer: argument parsing, one module per command.
//! The render options are not declared here: every command takes them from
//! [`klt_render::options::SPECS`].

mod check;
mod generate;
mod input;
mod krm;
mod plan;
mod render;
mod report;
mod run;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use klt_render::Options;
use klt_render::options::{OptionError, SPECS};

/// Exit code for bad input and I/O problems.
pub const EXIT_BAD_INPUT: u8 = 2;

fn command() -> Command {
    Command::new("klt-render")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Render Keptn task resources into plain Kubernetes manifests")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(with_options(render::command()))
        .subcommand(
            Command::new("generate")
                .about("Argo CD config-management plugin: render the app directory (the working directory), options from the plugin environment")
                .arg(
                    Arg::new("stdin")
                        .value_name("-")
                        .value_parser(["-"])
                        .help("Read a pre-rendered stream (e.g. `kustomize build` output) from stdin instead"),
                ),
        )
        .subcommand(with_options(check::command()))
        .subcommand(with_options(run::command()))
        .subcommand(with_options(plan::command()))
        .subcommand(krm::command())
        .subcommand(
            Command::new("floor")
                .hide(true)
                .about("Parse and re-emit the input without rendering (the benchmark's floor)")
                .arg(paths_arg()),
        )
}

pub(crate) fn paths_arg() -> Arg {
    Arg::new("paths")
        .value_name("PATH")
        .num_args(0..)
        .default_value(".")
        .value_parser(clap::value_parser!(PathBuf))
        .help("Files or directories (recursively *.yaml, *.yml, *.json); `-` reads stdin")
}

/// Adds one argument per render option, named and documented by the option table.
fn with_options(mut cmd: Command) -> Command {
    for spec in SPECS {
        let mut arg = Arg::new(spec.name)
            .long(spec.name)
            .env(spec.env)
            .help(spec.help);
        if spec.flag {
            arg = arg.action(ArgAction::SetTrue);
        } else if !spec.default.is_empty() {
            arg = arg.default_value(spec.default);
        }
        if spec.name == "namespace" {
            arg = arg.short('n');
        }
        if spec.help.starts_with("Limit: ") {
            arg = arg.help_heading("Limits on hostile input");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

pub(crate) fn options_from(m: &ArgMatches) -> Result<Options, OptionError> {
    Options::from_settings(&|name| {
        let spec = SPECS.iter().find(|s| s.name == name)?;
        if spec.flag {
            Some(m.get_flag(name).to_string())
        } else {
            m.get_one::<String>(name).cloned()
        }
    })
}

pub fn main() -> ExitCode {
    let matches = command().get_matches();
    let result = match matches.subcommand() {
        Some(("render", m)) => render::run(m),
        Some(("generate", m)) => generate::run(m),
        Some(("floor", m)) => render::floor(m),
        Some(("check", m)) => check::run(m),
        Some(("run", m)) => run::run(m),
        Some(("plan", m)) => plan::run(m),
        Some(("krm", m)) => krm::run(m),
        _ => unreachable!("clap requires a subcommand"),
    };
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<input::Located>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("klt-render: error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Writes all of stdout at once; a closed pipe (`| head`) is not worth a message.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        super::command().debug_assert();
    }
}
