//! `klt-render krm`: the adapter around [`klt_render::krm`]: arguments, stdin, the legacy
//! plugin's config file and the exit status. The wire formats and the transformation are in
//! the library, where tests and fuzz targets reach them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_BAD_INPUT, input, write_stdout};
use anyhow::Context;
use clap::{Arg, ArgMatches, Command};
use klt_render::krm::{legacy, resource_list};

pub fn command() -> Command {
    Command::new("krm")
        .about("kustomize KRM function and legacy exec plugin: ResourceList in, ResourceList out")
        .long_about(
            "kustomize KRM function: reads a config.kubernetes.io/v1 ResourceList (YAML or JSON) on stdin and writes one to stdout. \
             Options come from its functionConfig: apiVersion klt-render.dev/v1alpha1, kind KltRender, with the option names \
             (namespace, mode, profile, ...) under spec (or a ConfigMap with them under data). \
             With --legacy-config it is a legacy kustomize exec plugin instead: plain YAML streams on stdin and stdout.",
        )
        .arg(
            Arg::new("legacy-config")
                .long("legacy-config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Run as a legacy kustomize exec plugin: FILE is the KltRender config kustomize passes as the plugin's first argument; stdin and stdout are plain YAML streams"),
        )
        .arg(
            Arg::new("plugin-args")
                .value_name("ARG")
                .num_args(0..)
                .hide(true)
                .help("Arguments kustomize adds from argsOneLiner/argsFromFile (refused)"),
        )
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    if let Some(extra) = m.get_many::<String>("plugin-args") {
        let extra: Vec<&str> = extra.map(String::as_str).collect();
        eprintln!(
            "klt-render krm: unexpected arguments {extra:?}: klt-render reads its options from the config's spec; remove argsOneLiner/argsFromFile from the KltRender config"
        );
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    // Read under the wire's limits: the list must be read before its functionConfig is known.
    let limits = klt_render::krm::wire::wire_limits();
    let stdin = input::gather(&[PathBuf::from("-")], None, &limits)?
        .pop()
        .map(|f| f.text)
        .unwrap_or_default();
    let (stdout, stderr, ok) = match m.get_one::<PathBuf>("legacy-config") {
        Some(path) => {
            let config = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the plugin config", path.display()))?;
            legacy(&config, &stdin)
        }
        None => resource_list(&stdin),
    };
    {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(stderr.as_bytes());
    }
    if let Some(out) = stdout {
        write_stdout(out.as_bytes())?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BAD_INPUT)
    })
}
