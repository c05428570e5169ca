//! The `klt-evaluate` binary: reads the evaluation (`KLT_EVALUATION` or `--evaluation FILE`),
//! runs it, prints one line per objective per attempt on stdout, and exits 0 (all objectives
//! met), 1 (some objective failing or without a value after the last attempt) or 2
//! (configuration error, no attempt made). On 1 and 2 the one-line summary is also the last
//! stderr line and the content of the termination log (`$KLT_TERMINATION_LOG`, default
//! `/dev/termination-log`), which Kubernetes shows as the pod's termination message.

use std::io::Write;
use std::process::ExitCode;

use klt_evaluate::evaluate;
use klt_evaluate::provider::Providers;
use klt_evaluate::spec::{self, ConfigError};

const USAGE: &str = "usage: klt-evaluate [--evaluation FILE] [--provider-url URL]

Runs the evaluation in $KLT_EVALUATION (or FILE) against its providers (or URL for all of them).
Exit: 0 all objectives met, 1 an objective failed after the last attempt, 2 configuration error.";

struct Args {
    evaluation: Option<String>,
    provider_url: Option<String>,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return finish(2, &format!("klt-evaluate: {e}\n{USAGE}")),
    };
    let evaluation = match load(&args) {
        Ok(e) => e,
        Err(e) => return finish(2, &format!("evaluation configuration error: {e}")),
    };
    let providers = match Providers::new(&evaluation) {
        Ok(p) => p,
        Err(e) => {
            return finish(
                2,
                &format!("evaluation {} configuration error: {e}", evaluation.name),
            );
        }
    };
    let stdout = std::io::stdout();
    let verdict = evaluate::run(
        &evaluation,
        &mut |o| providers.fetch(o),
        &mut std::thread::sleep,
        &mut |line| {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        },
    );
    if verdict.passed {
        println!("{}", verdict.summary);
        ExitCode::SUCCESS
    } else {
        finish(1, &verdict.summary)
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        evaluation: None,
        provider_url: None,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--evaluation" => args.evaluation = Some(value("--evaluation")?),
            "--provider-url" => args.provider_url = Some(value("--provider-url")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("klt-evaluate {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Some(args))
}

fn load(args: &Args) -> Result<spec::Evaluation, ConfigError> {
    let (json, source) = match &args.evaluation {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read {path}: {e}")))?,
            path.clone(),
        ),
        None => (
            std::env::var("KLT_EVALUATION").map_err(|_| {
                ConfigError("KLT_EVALUATION is not set (and no --evaluation FILE)".into())
            })?,
            "KLT_EVALUATION".to_string(),
        ),
    };
    spec::parse(&json, &source, args.provider_url.as_deref())
}

/// The summary as the last stderr line and the termination message; write errors are ignored
/// (outside Kubernetes /dev/termination-log usually does not exist).
fn finish(code: u8, summary: &str) -> ExitCode {
    eprintln!("{summary}");
    let path =
        std::env::var("KLT_TERMINATION_LOG").unwrap_or_else(|_| "/dev/termination-log".into());
    let last = summary.lines().next().unwrap_or_default();
    let _ = std::fs::write(path, format!("{last}\n"));
    ExitCode::from(code)
}
