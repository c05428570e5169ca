//! The `klt-render` binary: argument parsing and the adapters around the pure renderer.

mod input;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use klt_render::{Diagnostic, Mode, Options, Profile};

#[derive(Parser)]
#[command(
    name = "klt-render",
    version,
    about = "Render Keptn task resources into plain Kubernetes manifests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render manifests: Keptn tasks become Jobs and ConfigMaps, everything else passes through.
    Render {
        #[command(flatten)]
        opts: Box<RenderArgs>,
        /// Files or directories (recursively *.yaml, *.yml, *.json); `-` reads stdin.
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
    },
    /// Parse and re-emit the input without rendering (the benchmark's floor).
    #[command(hide = true)]
    Floor {
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct RenderArgs {
    /// Namespace of objects without metadata.namespace (Argo CD's destination namespace).
    #[arg(long, short = 'n', env = "KLT_NAMESPACE")]
    namespace: Option<String>,
    /// `waves` (Jobs run once per content hash, ordered by sync waves) or `hooks` (PreSync/PostSync hooks).
    #[arg(long, default_value = "waves", env = "KLT_MODE")]
    mode: Mode,
    /// Keptn release whose Jobs to reproduce: keptn-2, klt-0.9 or klt-0.8.
    #[arg(long, default_value = "keptn-2", env = "KLT_PROFILE")]
    profile: Profile,
    /// Image for deno tasks (default: the profile's deno-runtime).
    #[arg(long, env = "KLT_DENO_IMAGE")]
    deno_image: Option<String>,
    /// Image for python tasks (default: the profile's python-runtime).
    #[arg(long, env = "KLT_PYTHON_IMAGE")]
    python_image: Option<String>,
    /// Also emit the consumed Keptn resources.
    #[arg(long, env = "KLT_KEEP_KEPTN")]
    keep_keptn: bool,
    /// Namespace searched for task definitions missing from the task's namespace.
    #[arg(long, env = "KLT_DEFINITION_NAMESPACE")]
    definition_namespace: Option<String>,
    /// Hook delete policy of task Jobs in hooks mode.
    #[arg(
        long,
        default_value = "BeforeHookCreation",
        env = "KLT_HOOK_DELETE_POLICY"
    )]
    hook_delete_policy: String,
}

impl RenderArgs {
    fn into_options(self: Box<Self>) -> Options {
        Options {
            namespace: self.namespace.filter(|s| !s.is_empty()),
            mode: self.mode,
            hook_delete_policy: self.hook_delete_policy,
            profile: self.profile,
            deno_image: self.deno_image,
            python_image: self.python_image,
            keep_keptn: self.keep_keptn,
            definition_namespace: self.definition_namespace.filter(|s| !s.is_empty()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("klt-render: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Render { opts, paths } => {
            let files = input::gather(&paths)?;
            let out = klt_render::render(&files, &opts.into_options());
            report(&out.diagnostics);
            if out.has_errors() {
                let n = out.diagnostics.iter().filter(|d| d.is_error()).count();
                eprintln!("klt-render: {n} error(s); nothing was rendered");
                return Ok(ExitCode::from(2));
            }
            write_stdout(out.to_yaml().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Floor { paths } => {
            let files = input::gather(&paths)?;
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
    }
}

fn report(diags: &[Diagnostic]) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for d in diags {
        let _ = writeln!(err, "{}", d.one_line());
        if let Some(help) = &d.help {
            let _ = writeln!(err, "  help: {help}");
        }
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}
