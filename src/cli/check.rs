//! `klt-render check`: every diagnostic of the renderer plus the lints of
//! [`klt_render::lint`], without printing manifests. For Git hooks and CI.
//!
//! Exit status: 0 clean or only warnings (unless `--deny-warnings`), 1 errors, 2 usage or
//! I/O problems, or input over a limit (KLT050: it was not checked).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::{EXIT_BAD_INPUT, input, options_from, paths_arg, report};

pub fn command() -> Command {
    Command::new("check")
        .about("Check Keptn manifests without printing them (for Git hooks and CI)")
        .arg(
            Arg::new("format")
                .long("format")
                .value_parser(["human", "json", "github"])
                .default_value("human")
                .help("human: path:line:col lines with a source snippet; json: a list of findings; github: workflow annotations"),
        )
        .arg(
            Arg::new("deny-warnings")
                .long("deny-warnings")
                .action(ArgAction::SetTrue)
                .help("Exit 1 on warnings too"),
        )
        .arg(paths_arg())
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let opts = options_from(m)?;
    let paths: Vec<PathBuf> = m.get_many("paths").unwrap().cloned().collect();
    let files = input::gather(&paths, None, &opts.limits)?;
    let diags = klt_render::lint::check(&files, &opts);
    match m.get_one::<String>("format").map(String::as_str) {
        Some("json") => println!("{}", report::json(&diags)),
        Some("github") => {
            for d in &diags {
                println!("{}", report::github(d));
            }
        }
        _ => {
            report::with_snippets(&diags, &files);
            let errors = diags.iter().filter(|d| d.is_error()).count();
            let warnings = diags.len() - errors;
            eprintln!(
                "klt-render check: {} file(s), {errors} error(s), {warnings} warning(s)",
                files.len()
            );
        }
    }
    // Input over a limit was not checked at all: that is bad input, like an unreadable file.
    if diags.iter().any(|d| d.code == "KLT050") {
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    let failed =
        diags.iter().any(|d| d.is_error()) || (m.get_flag("deny-warnings") && !diags.is_empty());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
