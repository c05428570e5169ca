//! Command-line adapters around the pure renderer: argument parsing, one module per command.
//! The render options are not declared here: every command takes them from
//! [`klt_render::options::SPECS`].

mod check;
mod generate;
mod heap;
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
        .subcommand(with_options(render::command()).after_help(RENDER_EXIT))
        .subcommand(
            Command::new("generate")
                .about("Argo CD config-management plugin: render the app directory (the working directory), options from the plugin environment")
                .after_help(GENERATE_ENV)
                .arg(
                    Arg::new("stdin")
                        .value_name("-")
                        .value_parser(["-"])
                        .help("Read a pre-rendered stream (e.g. `kustomize build` output) from stdin instead"),
                ),
        )
        .subcommand(with_options_except(check::command(), &[OUTPUT_ONLY]).after_help(CHECK_EXIT))
        .subcommand(with_options_except(run::command(), &[OUTPUT_ONLY, NOT_FOR_RUN]))
        .subcommand(with_options_except(plan::command(), &[&["hook-delete-policy"]]).after_help(PLAN_EXIT))
        .subcommand(krm::command().after_help(KRM_EXIT))
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

const RENDER_EXIT: &str = "Exit status: 0 rendered (warnings may be on stderr); 1 with --check when FILE is stale; \
2 bad input, input over a limit or an I/O problem, with nothing written to stdout.";

const CHECK_EXIT: &str = "Exit status: 0 clean or only warnings; 1 errors (or warnings, with --deny-warnings); \
2 usage or I/O problems, or input over a limit (not checked).";

const PLAN_EXIT: &str =
    "Exit status: 0 planned; 2 bad input (the findings on stderr, nothing on stdout).";

const KRM_EXIT: &str = "Exit status: 0 rendered (findings as results); 2 an error: the input is no ResourceList, \
or a finding of severity error (then stdout holds the input items unchanged with the results, and kustomize stops).";

const GENERATE_ENV: &str = "Reads, as argocd-cmp-server sets them: ARGOCD_APP_NAME (the \"(app NAME in NAMESPACE)\" prefix of errors), \
ARGOCD_APP_NAMESPACE (default of namespace), ARGOCD_APP_SOURCE_PATH (the repository checkout above the working directory; \
nothing outside it is read), ARGOCD_APP_PARAMETERS or else PARAM_<NAME> (plugin parameters), ARGOCD_ENV_KLT_* (the \
Application's plugin env), KUBE_API_VERSIONS (what the destination serves), and the sidecar's own KLT_* variables.

Exit status: 0 rendered (the manifests on stdout); 2 on any problem, with one line on stderr and nothing on stdout.";

/// Options that only shape the manifests written: no finding depends on them, so the help
/// of commands that write no manifests does not show them. They are still accepted, so that
/// a hook or script can pass `check` the arguments it passes `render`.
const OUTPUT_ONLY: &[&str] = &[
    "deno-image",
    "python-image",
    "records",
    "hook-delete-policy",
];

/// Options that `run` does not use either: it runs one task on this machine.
const NOT_FOR_RUN: &[&str] = &["mode", "keep-keptn"];

/// Adds one argument per render option, named and documented by the option table.
fn with_options(cmd: Command) -> Command {
    with_options_except(cmd, &[])
}

/// [`with_options`] with the named options hidden from `--help`.
fn with_options_except(mut cmd: Command, except: &[&[&str]]) -> Command {
    for spec in SPECS {
        let hidden = except.iter().any(|names| names.contains(&spec.name));
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
        if hidden {
            arg = arg.hide(true);
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

pub(crate) fn options_from(m: &ArgMatches) -> Result<Options, OptionError> {
    Options::from_settings(&|name| {
        let spec = SPECS.iter().find(|s| s.name == name)?;
        if spec.flag {
            m.try_get_one::<bool>(name)
                .ok()
                .flatten()
                .map(|b| b.to_string())
        } else {
            m.try_get_one::<String>(name).ok().flatten().cloned()
        }
    })
}

pub fn main() -> ExitCode {
    heap::fix_mmap_threshold();
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
