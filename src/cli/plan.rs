//! `klt-render plan`: renders the input as `render` does and prints what Argo CD will run,
//! app by app and wave by wave ([`klt_render::plan`]), instead of the manifests.
//!
//! The terminal decides the table's look: colour only when stdout is a terminal and
//! `NO_COLOR` is unset; width from `COLUMNS` (100 on a terminal without it, unlimited when
//! piped).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Arg, ArgMatches, Command};
use klt_render::plan::{self, Style};

use super::{EXIT_BAD_INPUT, input, options_from, paths_arg, report, write_stdout};

/// Table width on a terminal that does not say its width.
const DEFAULT_COLUMNS: usize = 100;

pub fn command() -> Command {
    Command::new("plan")
        .about("Show what Argo CD will run: per app version, each sync wave with its task Jobs and objects")
        .arg(
            Arg::new("format")
                .long("format")
                .value_parser(["table", "json", "mermaid"])
                .default_value("table")
                .help("table: for a terminal; json: for tools; mermaid: a flowchart for a pull request comment"),
        )
        .arg(
            Arg::new("against")
                .long("against")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("A previous render (e.g. of the target branch): mark which task Jobs run again on this commit"),
        )
        .arg(paths_arg())
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let opts = options_from(m)?;
    let paths: Vec<PathBuf> = m.get_many("paths").unwrap().cloned().collect();
    let files = input::gather(&paths, None, &opts.limits)?;
    let previous = match m.get_one::<PathBuf>("against") {
        None => None,
        Some(file) => Some(previous_jobs(file, &opts.limits)?),
    };
    let out = klt_render::render(&files, &opts);
    report::human(&out.diagnostics);
    if out.has_errors() {
        let n = out.diagnostics.iter().filter(|d| d.is_error()).count();
        eprintln!("klt-render: {n} error(s); nothing was planned");
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    let plan = plan::build(
        &out.documents,
        previous.as_ref(),
        plan::RunnerImages::of(&opts),
    );
    let text = match m.get_one::<String>("format").map(String::as_str) {
        Some("json") => format!("{:#}\n", plan::to_json(&plan)),
        Some("mermaid") => plan::mermaid(&plan),
        _ => plan::table(&plan, terminal_style()),
    };
    write_stdout(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn previous_jobs(
    file: &PathBuf,
    limits: &klt_render::limits::Limits,
) -> anyhow::Result<std::collections::BTreeSet<(String, String)>> {
    let files = input::gather(std::slice::from_ref(file), None, limits)
        .with_context(|| format!("--against {}", file.display()))?;
    let text: String = files.iter().map(|f| format!("---\n{}\n", f.text)).collect();
    Ok(plan::job_names(&text))
}

fn terminal_style() -> Style {
    let tty = std::io::stdout().is_terminal();
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    Style {
        width: columns.or(tty.then_some(DEFAULT_COLUMNS)),
        color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}
