//! `klt-render render`: paths in, YAML stream out.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ArgMatches;

use super::{EXIT_BAD_INPUT, input, options_from, report, write_stdout};

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let opts = options_from(m)?;
    let paths: Vec<PathBuf> = m.get_many("paths").unwrap().cloned().collect();
    let files = input::gather(&paths, None)?;
    let out = klt_render::render(&files, &opts);
    report::human(&out.diagnostics);
    if out.has_errors() {
        let n = out.diagnostics.iter().filter(|d| d.is_error()).count();
        eprintln!("klt-render: {n} error(s); nothing was rendered");
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    write_stdout(out.to_yaml().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn floor(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let paths: Vec<PathBuf> = m.get_many("paths").unwrap().cloned().collect();
    let files = input::gather(&paths, None)?;
    let mut out = String::new();
    for f in &files {
        for chunk in klt_render::yaml::split_stream(&f.text) {
            if let Ok(Some(node)) = klt_render::yaml::parse_document(&chunk) {
                // Touch the tree so the parse is not optimised away, then re-emit.
                if node.get("kind").is_some() {
                    out.push_str("---\n");
                    out.push_str(chunk.body);
                }
            }
        }
    }
    write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
