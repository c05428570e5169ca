//! `klt-render render`: paths in, YAML stream out.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Command};
use klt_render::render::Rendering;

use super::{EXIT_BAD_INPUT, input, options_from, paths_arg, report, write_stdout};

pub fn command() -> Command {
    Command::new("render")
        .about("Render manifests: Keptn tasks become Jobs and ConfigMaps, everything else passes through")
        .arg(
            Arg::new("output")
                .long("output")
                .short('o')
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Write the stream to FILE (replaced atomically, only on success) instead of stdout"),
        )
        .arg(
            Arg::new("check")
                .long("check")
                .action(ArgAction::SetTrue)
                .requires("output")
                .help("Do not write: exit 1 if FILE differs from a fresh render (for committed manifests)"),
        )
        .arg(paths_arg())
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let opts = options_from(m)?;
    let paths: Vec<PathBuf> = m.get_many("paths").unwrap().cloned().collect();
    let mut files = input::gather(&paths, None, &opts.limits)?;
    // A previous render written inside the input tree is not input.
    if let Some(target) = m
        .get_one::<PathBuf>("output")
        .and_then(|o| std::fs::canonicalize(o).ok())
    {
        files.retain(|f| std::fs::canonicalize(&f.path).ok().as_ref() != Some(&target));
    }
    klt_render::render::render_with(&files, &opts, |out| {
        report::human(&out.diagnostics);
        if out.has_errors() {
            let n = out.diagnostics.iter().filter(|d| d.is_error()).count();
            eprintln!("klt-render: {n} error(s); nothing was rendered");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
        match m.get_one::<PathBuf>("output") {
            None => write_stream(&out)?,
            Some(file) if m.get_flag("check") => {
                let current = std::fs::read_to_string(file).unwrap_or_default();
                if current != out.to_yaml() {
                    eprintln!(
                        "klt-render: {} is stale: it differs from a fresh render; rerun without --check to update it",
                        file.display()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            Some(file) => write_atomically(file, &out)?,
        }
        Ok(ExitCode::SUCCESS)
    })
    .inspect(|code| {
        if *code == ExitCode::SUCCESS && std::io::stderr().is_terminal() {
            summarize(&files, &opts);
        }
    })
}

/// A person at a terminal gets one line per app; scripts and Argo CD (stderr not a
/// terminal) get nothing more than before. Rendered once more: only interactive runs pay.
fn summarize(files: &[klt_render::SourceFile], opts: &klt_render::Options) {
    let out = klt_render::render(files, opts);
    for line in klt_render::plan::render_summary(&klt_render::plan::build(
        &out.documents,
        None,
        klt_render::plan::RunnerImages::of(opts),
    )) {
        eprintln!("klt-render: {line}");
    }
}

/// Streams the documents to stdout; a closed pipe (`| head`) is not an error.
fn write_stream(out: &Rendering<'_>) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match out
        .write_yaml(&mut w)
        .and_then(|_| std::io::Write::flush(&mut w))
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Replaces `file` via a temp file in the same directory and a rename, so that readers never
/// see a half-written stream.
fn write_atomically(file: &Path, out: &Rendering<'_>) -> anyhow::Result<()> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file.file_name().context("--output needs a file name")?;
    let tmp = dir.join(format!(".{}.klt-render-tmp", name.to_string_lossy()));
    let written = std::fs::File::create(&tmp).and_then(|f| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
        out.write_yaml(&mut w)?;
        std::io::Write::flush(&mut w)
    });
    written.with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("{}: cannot write", file.display()))?;
    Ok(())
}

pub fn floor(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let paths: Vec<PathBuf> = m.get_many("paths").unwrap().cloned().collect();
    let files = input::gather(&paths, None, &Default::default())?;
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
