//! `klt-render run TASK [PATH...]`: runs one task definition's code on this machine the way
//! the runtime image would run the rendered Job.
//!
//! The Job is not rebuilt here: a hand-written `KeptnTask` for TASK (with the context the
//! options describe) is added to the input in memory and the whole input is rendered as
//! `klt-render render` renders it. From the Job made for that KeptnTask come the env (DATA,
//! KEPTN_CONTEXT or CONTEXT, CMD_ARGS, SECURE_DATA, SCRIPT), the code (the mounted ConfigMap's
//! `code`) or the httpRef URL, and the timeout (`activeDeadlineSeconds`). Then the process
//! runs as the entrypoint of deno-runtime (`deno run <flags> "$SCRIPT"`) or python-runtime
//! (`python3 $CMD_ARGS $SCRIPT`) would run it, with only PATH and HOME besides the Job's env.
//!
//! When the options leave the context open, it is taken from the real use of TASK in the
//! input (an app's or a workload's task list) that fits them, if there is exactly one: a run
//! then sees the same KEPTN_CONTEXT (versions, metadata) as the Job that `render` emits.
//!
//! `klt-render run EVALUATION-DEFINITION [PATH...]` runs a rendered evaluation Job instead
//! (its `klt-evaluate` container; [`evaluation`]), optionally against `--provider-url URL`.
//!
//! Exit status: the task's (the evaluator's for an evaluation); 124 when it ran out of time; 128+n when klt-render was
//! interrupted by signal n; 2 when klt-render itself refuses or fails (its messages start with
//! `klt-render run:`).

mod evaluation;
mod pod;
mod prepare;
mod process;
mod runtime;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Arg, ArgAction, ArgMatches, Command};
use klt_render::document::{self, Doc};
use klt_render::model::{self, Lang, Runner, TaskContext};
use klt_render::{Options, OutDoc, SourceFile};
use serde_json::{Value, json};

use super::{EXIT_BAD_INPUT, input, options_from, paths_arg, report};
use prepare::{ContextArgs, EnvSource, ObjectType, Phase};
use runtime::TempDir;

/// Name of the in-memory KeptnTask; the Job made for it is `<this>-<hash>`.
const TASK_NAME: &str = "klt-render-run";
const TASK_FILE: &str = "(klt-render run).json";

pub fn command() -> Command {
    Command::new("run")
        .about("Run one task's code on this machine as the runtime image would")
        .long_about(
            "Run one task definition's code on this machine as the deno-runtime or python-runtime \
             image would run the rendered Job: the same DATA, KEPTN_CONTEXT (CONTEXT in the klt-0.x \
             profiles), CMD_ARGS, SECURE_DATA and SCRIPT, the runtime's deno permission flags or \
             python command line, and nothing else of your environment but PATH and a temporary HOME. \
             Exit status: the task's; 124 when it ran out of time; 2 when klt-render refuses.",
        )
        .arg(
            Arg::new("task")
                .value_name("TASK")
                .required_unless_present("pod")
                .help("Name of the KeptnTaskDefinition to run, or of a KeptnEvaluationDefinition to evaluate"),
        )
        .arg(opt(
            "provider-url",
            "URL",
            "Evaluation: query this URL instead of every provider's targetServer (e.g. a port-forwarded Prometheus)",
        ))
        .arg(
            opt("evaluator", "PATH", "Evaluation: the klt-evaluate binary [default: next to klt-render, else on PATH]")
                .env("KLT_EVALUATE")
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            opt("pod", "POD.json", "Run the container of this pod, its env already resolved, as its runtime image would (kube-testenv's task runner plays the kubelet with it)")
                .value_parser(clap::value_parser!(PathBuf))
                .conflicts_with("task")
                .requires("root")
                .hide(true),
        )
        .arg(
            opt("root", "DIR", "With --pod: the pod's filesystem root (its volumes at their mountPath)")
                .value_parser(clap::value_parser!(PathBuf))
                .requires("pod")
                .hide(true),
        )
        .arg(paths_arg())
        .arg(opt("app", "APP", "appName of the context (default: from the one use of TASK in the input that fits the options)"))
        .arg(opt("app-version", "VERSION", "appVersion of an app task"))
        .arg(opt("workload", "WORKLOAD", "Run as a workload task of this workload (workloadName becomes <app>-<workload>)"))
        .arg(opt("workload-version", "VERSION", "workloadVersion of a workload task"))
        .arg(
            opt("phase", "PHASE", "taskType of the context (default: the phase of the task's one use in the input that fits the other options, else pre)")
                .value_parser(["pre", "post"]),
        )
        .arg(
            opt("object-type", "TYPE", "objectType: App (\"Application\" in the klt-0.x profiles) or Workload [default: Workload with --workload, else App]")
                .value_parser(["App", "Application", "Workload"]),
        )
        .arg(
            opt("param", "KEY=VALUE", "Set a key of DATA (repeatable; the Job's other keys stay)")
                .action(ArgAction::Append),
        )
        .arg(
            opt("secret-file", "FILE", "SECURE_DATA is this file's content (default: key SECURE_DATA of the task's Secret in the input)")
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            Arg::new("allow-net")
                .long("allow-net")
                .action(ArgAction::SetTrue)
                .help("Allow running an httpRef task: its code is fetched from the URL and run"),
        )
        .arg(opt("timeout", "DURATION", "Kill the task after this long, e.g. 30s or 5m; 0: never [default: the definition's timeout]"))
        .arg(
            opt("deno", "PATH", "deno binary [default: deno on PATH]")
                .env("KLT_DENO")
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            opt("python", "PATH", "Python interpreter [default: python3 on PATH]")
                .env("KLT_PYTHON")
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            Arg::new("dry-run")
                .long("dry-run")
                .action(ArgAction::SetTrue)
                .help("Print the environment (SECURE_DATA hidden) and command instead of running; also for container tasks"),
        )
        .arg(
            Arg::new("quiet")
                .long("quiet")
                .short('q')
                .action(ArgAction::SetTrue)
                .help("No klt-render line before the task's output"),
        )
}

fn opt(name: &'static str, value: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).value_name(value).help(help)
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    match execute(m) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("klt-render run: error: {e:#}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
    }
}

/// Everything the command line says besides the render options.
struct RunArgs {
    task: String,
    context: ContextArgs,
    params: Vec<(String, String)>,
    secret_file: Option<PathBuf>,
    allow_net: bool,
    timeout: Option<Option<u64>>,
    deno: Option<PathBuf>,
    python: Option<PathBuf>,
    dry_run: bool,
    quiet: bool,
}

impl RunArgs {
    fn from(m: &ArgMatches) -> anyhow::Result<RunArgs> {
        let s = |name: &str| m.get_one::<String>(name).cloned();
        let params = m
            .get_many::<String>("param")
            .into_iter()
            .flatten()
            .map(|p| prepare::parse_param(p).map_err(|e| anyhow!(e)))
            .collect::<anyhow::Result<_>>()?;
        Ok(RunArgs {
            task: s("task").expect("required"),
            context: ContextArgs {
                app: s("app"),
                app_version: s("app-version"),
                workload: s("workload"),
                workload_version: s("workload-version"),
                phase: s("phase").map(|p| if p == "post" { Phase::Post } else { Phase::Pre }),
                object_type: s("object-type")
                    .map(|t| ObjectType::parse(&t))
                    .transpose()
                    .map_err(|e| anyhow!(e))?,
            },
            params,
            secret_file: m.get_one::<PathBuf>("secret-file").cloned(),
            allow_net: m.get_flag("allow-net"),
            timeout: s("timeout")
                .map(|t| prepare::parse_timeout(&t))
                .transpose()
                .map_err(|e| anyhow!(e))?,
            deno: m.get_one::<PathBuf>("deno").cloned(),
            python: m.get_one::<PathBuf>("python").cloned(),
            dry_run: m.get_flag("dry-run"),
            quiet: m.get_flag("quiet"),
        })
    }
}

/// A Job of the render output, as JSON.
struct JobView {
    namespace: Option<String>,
    json: Value,
}

impl JobView {
    fn container(&self) -> &Value {
        &self.json["spec"]["template"]["spec"]["containers"][0]
    }

    fn context(&self, env_name: &str) -> Option<TaskContext> {
        prepare::container_env(self.container())
            .into_iter()
            .find_map(|(n, s)| match s {
                EnvSource::Value(v) if n == env_name => prepare::context_from_json(&v),
                _ => None,
            })
    }
}

fn parse_out(d: &OutDoc) -> Option<Value> {
    let chunk = klt_render::yaml::split_stream(&d.text).into_iter().next()?;
    klt_render::yaml::parse_document(&chunk)
        .ok()
        .flatten()
        .map(|n| n.to_json())
}

fn jobs_of(docs: &[OutDoc], task: &str) -> Vec<(String, JobView)> {
    let label = klt_render::job::label_value(task);
    docs.iter()
        .filter(|d| d.kind == "Job" && d.generated)
        .filter_map(|d| Some((d.name.clone(), d.namespace.clone(), parse_out(d)?)))
        .filter(|(_, _, j)| {
            j["metadata"]["labels"][klt_render::job::LABEL_DEFINITION].as_str() == label.as_deref()
        })
        .map(|(name, namespace, json)| (name, JobView { namespace, json }))
        .collect()
}

/// Renders like `klt-render render`; errors are shown as it shows them.
fn render_or_report(files: &[SourceFile], opts: &Options) -> Result<Vec<OutDoc>, ExitCode> {
    let out = klt_render::render(files, opts);
    if out.has_errors() {
        let errors: Vec<_> = out
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .cloned()
            .collect();
        report::human(&errors);
        eprintln!(
            "klt-render run: {} error(s) in the input; nothing was run",
            errors.len()
        );
        return Err(ExitCode::from(EXIT_BAD_INPUT));
    }
    Ok(out.documents)
}

fn describe(ctx: &TaskContext) -> String {
    let phase = if ctx.task_type.is_empty() {
        "?"
    } else {
        &ctx.task_type
    };
    let version = |v: &str| {
        if v.is_empty() {
            String::new()
        } else {
            format!(" {v}")
        }
    };
    if ctx.workload_name.is_empty() {
        if ctx.app_name.is_empty() {
            return format!("{phase} task of no app");
        }
        format!(
            "{phase} task of app {}{}",
            ctx.app_name,
            version(&ctx.app_version)
        )
    } else {
        format!(
            "{phase} task of workload {}{} (app {})",
            ctx.workload_name,
            version(&ctx.workload_version),
            ctx.app_name
        )
    }
}

fn execute(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    if let Some(pod_file) = m.get_one::<PathBuf>("pod") {
        return pod::execute(&pod::PodArgs::from(m, pod_file)?);
    }
    let opts = options_from(m)?;
    let args = RunArgs::from(m)?;
    let paths: Vec<PathBuf> = m.get_many("paths").unwrap().cloned().collect();
    let files = input::gather(&paths, None, &opts.limits)?;
    let dest = opts.namespace.as_deref();

    // 1. The input as `render` sees it, and TASK's definitions in it.
    let rendered = match render_or_report(&files, &opts) {
        Ok(docs) => docs,
        Err(code) => return Ok(code),
    };
    let mut scratch = Vec::new();
    let docs = document::load_with(&files, &opts.limits, &mut scratch);
    let is_definition = |d: &&Doc<'_>| d.group() == model::GROUP && d.kind == "KeptnTaskDefinition";
    let definitions: Vec<&Doc<'_>> = docs.iter().filter(is_definition).collect();
    let provider_url = m.get_one::<String>("provider-url");
    if provider_url.is_some() || !definitions.iter().any(|d| d.name == args.task) {
        let evaluator = m.get_one::<PathBuf>("evaluator").map(PathBuf::as_path);
        let url = provider_url.map(String::as_str);
        if let Some(code) = run_evaluation(&args, &rendered, &docs, dest, evaluator, url)? {
            return Ok(code);
        }
        if provider_url.is_some() {
            bail!(
                "--provider-url: no evaluation Job for {:?} in the render of {} (a KeptnEvaluationDefinition used by an app or workload)",
                args.task,
                paths_phrase(&paths)
            );
        }
    }
    let named = definitions_named(&definitions, &args.task, &paths)?;

    // 2. The context: from the one real use of TASK that fits the options, else the options.
    let base = fitting_use(&rendered, &args, &opts.profile);
    let namespace: Option<String> = match &base {
        Some((ns, _)) => ns.clone(),
        None => choose_definition_namespace(&named, dest)?,
    };
    let lookup_ns = namespace
        .clone()
        .or(dest.map(str::to_string))
        .unwrap_or_default();
    let ctx = prepare::build_context(base.as_ref().map(|(_, c)| c), &args.context, &opts.profile)
        .map_err(|e| anyhow!(e))?;

    // 3. Render again with a KeptnTask for TASK; take its Job.
    let definition = find_definition(&definitions, &lookup_ns, &args.task, &opts)
        .or_else(|| named.first().copied())
        .expect("TASK has a definition");
    let (job, rendered) = match task_job(
        &files,
        &opts,
        &args.task,
        namespace.as_deref(),
        &ctx,
        definition,
    )? {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let deadline = job.json["spec"]["activeDeadlineSeconds"].as_u64();
    let timeout = args.timeout.unwrap_or(deadline.filter(|s| *s > 0));

    // 4. The runner: a runtime (deno or python, through functionRef) or a container.
    let lookup = |name: &str| find_definition(&definitions, &lookup_ns, name, &opts);
    let lang = runner_lang(&args.task, definition, &lookup)?;
    let container = job.container().clone();
    let job_env = prepare::container_env(&container);
    let summary = summarize(&args.task, lang, &opts.profile, &ctx, timeout);
    let Some(lang) = lang else {
        return container_task(&args, &summary, &container, &job_env);
    };

    // 5. Code, secret, program; then print or run.
    let code = mounted_code(&job, &rendered, dest)?;
    let task = RuntimeTask::gather(&args, lang, code, &job_env, &docs, &lookup_ns, dest)?;
    if args.dry_run {
        return task.print(&args, &opts.profile, &summary);
    }
    task.run(&args, &opts.profile, &summary, timeout)
}

/// `run EVALUATION-DEFINITION`: its one fitting evaluation Job run locally; `None` when the
/// render has no evaluation Job of that name.
fn run_evaluation(
    args: &RunArgs,
    rendered: &[OutDoc],
    docs: &[Doc<'_>],
    dest: Option<&str>,
    evaluator: Option<&Path>,
    provider_url: Option<&str>,
) -> anyhow::Result<Option<ExitCode>> {
    let jobs: Vec<evaluation::RenderedJob> = rendered
        .iter()
        .filter(|d| d.kind == "Job" && d.generated)
        .filter_map(|d| Some((d.name.clone(), d.namespace.clone(), parse_out(d)?)))
        .collect();
    let c = &args.context;
    let wanted = evaluation::Wanted {
        definition: &args.task,
        app: c.app.as_deref(),
        workload: c.workload.as_deref(),
        phase: c.phase.map(Phase::as_str),
    };
    let Some(job) = evaluation::pick(&jobs, &wanted)? else {
        return Ok(None);
    };
    let evaluator = evaluation::find_evaluator(evaluator)?;
    let ns = job
        .1
        .clone()
        .or(dest.map(str::to_string))
        .unwrap_or_default();
    let secret_of = |name: &str| {
        docs.iter()
            .find(|d| {
                d.group().is_empty()
                    && d.kind == "Secret"
                    && d.name == name
                    && d.effective_namespace(dest) == ns
            })
            .map(|d| d.root.to_json())
    };
    let root = TempDir::new()?;
    let mut launch = evaluation::local_launch(
        evaluator,
        job,
        &root.path,
        &secret_of,
        provider_url,
        args.dry_run,
    )?;
    if args.dry_run {
        return Ok(Some(evaluation::print(&launch)));
    }
    if args.quiet {
        launch.banner.clear();
    }
    let code = evaluation::launch(launch)?;
    drop(root);
    Ok(Some(code))
}

/// TASK's definitions (any namespace); none is an error with a suggestion.
fn definitions_named<'d>(
    definitions: &[&'d Doc<'d>],
    task: &str,
    paths: &[PathBuf],
) -> anyhow::Result<Vec<&'d Doc<'d>>> {
    let named: Vec<&Doc<'_>> = definitions
        .iter()
        .copied()
        .filter(|d| d.name == task)
        .collect();
    if named.is_empty() {
        let hint = klt_render::suggest::closest(task, definitions.iter().map(|d| &*d.name))
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        bail!(
            "no KeptnTaskDefinition {task:?} in {}{hint}{}",
            paths_phrase(paths),
            known_definitions(definitions)
        );
    }
    Ok(named)
}

/// The definitions there are, for an unknown TASK: a newcomer's next step.
fn known_definitions(definitions: &[&Doc<'_>]) -> String {
    const SHOWN: usize = 20;
    let mut names: Vec<&str> = definitions.iter().map(|d| &*d.name).collect();
    names.sort_unstable();
    names.dedup();
    match names.len() {
        0 => "; the paths hold no KeptnTaskDefinition".to_string(),
        n if n <= SHOWN => format!("; the definitions there: {}", names.join(", ")),
        n => format!(
            "; the definitions there: {}, and {} more",
            names[..SHOWN].join(", "),
            n - SHOWN
        ),
    }
}

/// The namespace and context of the one use of TASK in the render output that fits the
/// options; with none or several, a note says why the options alone decide.
fn fitting_use(
    rendered: &[OutDoc],
    args: &RunArgs,
    profile: &klt_render::Profile,
) -> Option<(Option<String>, TaskContext)> {
    let uses = jobs_of(rendered, &args.task);
    let mut fitting: Vec<(Option<String>, TaskContext)> = Vec::new();
    for (_, job) in &uses {
        if let Some(ctx) = job.context(profile.context_env)
            && args.context.matches(&ctx, profile)
            && !fitting
                .iter()
                .any(|(ns, c)| *ns == job.namespace && *c == ctx)
        {
            fitting.push((job.namespace.clone(), ctx));
        }
    }
    let note = match fitting.as_slice() {
        [one] => return Some(one.clone()),
        [] => {
            let others: Vec<String> = uses
                .iter()
                .filter_map(|(_, j)| j.context(profile.context_env))
                .map(|c| describe(&c))
                .collect();
            if others.is_empty() {
                return None;
            }
            format!(
                "no use of {} in the input fits the options (it is the {})",
                args.task,
                join_unique(others)
            )
        }
        many => format!(
            "{} is the {}; pass --app, --workload or --phase to pick one",
            args.task,
            join_unique(many.iter().map(|(_, c)| describe(c)).collect())
        ),
    };
    if !args.quiet {
        eprintln!("klt-render run: note: {note}; the context comes from the options alone");
    }
    None
}

/// The Job the renderer makes for a KeptnTask of TASK with `ctx`, and the output it is in.
fn task_job(
    files: &[SourceFile],
    opts: &Options,
    task: &str,
    namespace: Option<&str>,
    ctx: &TaskContext,
    definition: &Doc<'_>,
) -> anyhow::Result<Result<(JobView, Vec<OutDoc>), ExitCode>> {
    let mut with_task = files.to_vec();
    with_task.push(synthetic_task(task, namespace, ctx, definition));
    let rendered = match render_or_report(&with_task, opts) {
        Ok(docs) => docs,
        Err(code) => return Ok(Err(code)),
    };
    let job = jobs_of(&rendered, task)
        .into_iter()
        .find(|(name, _)| {
            name.strip_prefix(TASK_NAME)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|hash| !hash.contains('-'))
        })
        .map(|(_, j)| j)
        .context("the renderer made no Job for the task (a bug in klt-render)")?;
    Ok(Ok((job, rendered)))
}

/// The runtime TASK runs in (`None`: a container runner); a functionRef runs its target's.
fn runner_lang<'d>(
    task: &str,
    definition: &Doc<'_>,
    lookup: &dyn Fn(&str) -> Option<&'d Doc<'d>>,
) -> anyhow::Result<Option<Lang>> {
    let mut diags = Vec::new();
    let def = model::read_task_definition(definition, &mut diags);
    Ok(match &def.runner {
        Some(Runner::Container(_)) => None,
        Some(Runner::Runtime(lang)) => Some(
            match def.runtime(*lang).and_then(|s| s.function_ref.as_ref()) {
                Some(parent) => {
                    let pdoc = lookup(&parent.value).context("functionRef target vanished")?;
                    let p = model::read_task_definition(pdoc, &mut diags);
                    if p.deno.as_ref().is_some_and(|d| !d.is_empty()) {
                        Lang::Deno
                    } else {
                        Lang::Python
                    }
                }
                None => *lang,
            },
        ),
        None => bail!("{task} has no usable runner"),
    })
}

fn summarize(
    task: &str,
    lang: Option<Lang>,
    profile: &klt_render::Profile,
    ctx: &TaskContext,
    timeout: Option<u64>,
) -> String {
    format!(
        "{task} ({}, profile {}) as the {}; timeout {}",
        match lang {
            Some(Lang::Deno) => "deno",
            Some(Lang::Python) => "python",
            None => "container",
        },
        profile.name,
        describe(ctx),
        timeout.map_or("none".to_string(), |t| format!("{t}s"))
    )
}

/// A runtime task ready to run: its code (or URL), SECURE_DATA and the program.
struct RuntimeTask<'j> {
    lang: Lang,
    job_env: &'j [(String, EnvSource)],
    code: Option<String>,
    script_env: String,
    cmd_args: String,
    secret_name: Option<String>,
    secure: Option<(Vec<u8>, String)>,
    program: anyhow::Result<PathBuf>,
}

impl<'j> RuntimeTask<'j> {
    fn gather(
        args: &RunArgs,
        lang: Lang,
        code: Option<String>,
        job_env: &'j [(String, EnvSource)],
        docs: &[Doc<'_>],
        lookup_ns: &str,
        dest: Option<&str>,
    ) -> anyhow::Result<RuntimeTask<'j>> {
        let value = |name: &str| {
            job_env
                .iter()
                .find_map(|(n, s)| match s {
                    EnvSource::Value(v) if n == name => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let script_env = value("SCRIPT");
        if code.is_none() {
            if script_env.is_empty() {
                bail!("the Job has neither code nor a URL in SCRIPT");
            }
            if !args.allow_net && !args.dry_run {
                bail!(
                    "{} runs code from {script_env}; pass --allow-net to fetch and run it (the runtime image would)",
                    args.task
                );
            }
        }
        let secret_name = job_env.iter().find_map(|(_, s)| match s {
            EnvSource::Secret(name, _) => Some(name.clone()),
            _ => None,
        });
        let secure = match &secret_name {
            None => None,
            Some(name) => match secure_data(args, name, docs, lookup_ns, dest) {
                Ok(v) => Some(v),
                Err(e) if args.dry_run => {
                    eprintln!("klt-render run: warning: {e:#}");
                    None
                }
                Err(e) => return Err(e),
            },
        };
        Ok(RuntimeTask {
            lang,
            job_env,
            code,
            script_env,
            cmd_args: value("CMD_ARGS"),
            secret_name,
            secure,
            program: runtime::program_for(lang, args.deno.as_deref(), args.python.as_deref()),
        })
    }

    fn file_name(&self) -> &'static str {
        match self.lang {
            Lang::Deno => "function.ts",
            Lang::Python => "function.py",
        }
    }

    /// SCRIPT: the local copy of the code in `dir`, or the Job's URL.
    fn script(&self, dir: &Path) -> String {
        match &self.code {
            Some(_) => dir.join(self.file_name()).display().to_string(),
            None => self.script_env.clone(),
        }
    }

    /// --dry-run: the environment (SECURE_DATA hidden) and the command line on stdout.
    fn print(
        &self,
        args: &RunArgs,
        profile: &klt_render::Profile,
        summary: &str,
    ) -> anyhow::Result<ExitCode> {
        let tmp = PathBuf::from("$TMP");
        let script = self.script(&tmp);
        let env = prepare::assemble_env(
            self.job_env,
            &args.params,
            Some(b"".as_slice()),
            &script,
            runtime::caller_path(),
            tmp.join("home").into_os_string(),
        )
        .map_err(|e| anyhow!(e))?;
        let program = match &self.program {
            Ok(p) => p.clone(),
            Err(_) => PathBuf::from(match self.lang {
                Lang::Deno => "deno",
                Lang::Python => "python3",
            }),
        };
        let stages = runtime::command_lines(self.lang, &program, profile, &self.cmd_args, &script);
        let mut out = format!("# klt-render run: {summary}\n");
        for (k, v) in &env {
            let shown = if k == "SECURE_DATA" {
                match (&self.secure, &self.secret_name) {
                    (Some((bytes, from)), _) => {
                        format!("<hidden: {} bytes from {from}>", bytes.len())
                    }
                    (None, Some(name)) => format!("<missing: Secret {name:?}>"),
                    (None, None) => String::new(),
                }
            } else {
                prepare::shell_quote(&v.to_string_lossy())
            };
            out.push_str(&format!("{k}={shown}\n"));
        }
        let line: Vec<String> = stages
            .iter()
            .map(|words| {
                words
                    .iter()
                    .map(|w| prepare::shell_quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push_str(&line.join(" | "));
        out.push('\n');
        super::write_stdout(out.as_bytes())?;
        Ok(ExitCode::SUCCESS)
    }

    /// Runs the code as the runtime image would, in a temporary dir with its own HOME.
    fn run(
        &self,
        args: &RunArgs,
        profile: &klt_render::Profile,
        summary: &str,
        timeout: Option<u64>,
    ) -> anyhow::Result<ExitCode> {
        let program = self.program.as_ref().map_err(|e| anyhow!("{e:#}"))?;
        let tmp = TempDir::new()?;
        let home = tmp.path.join("home");
        std::fs::create_dir(&home).with_context(|| format!("{}: cannot create", home.display()))?;
        let script = self.script(&tmp.path);
        if let Some(code) = &self.code {
            std::fs::write(&script, code).with_context(|| format!("{script}: cannot write"))?;
        }
        let env = prepare::assemble_env(
            self.job_env,
            &args.params,
            self.secure.as_ref().map(|(b, _)| b.as_slice()),
            &script,
            runtime::caller_path(),
            home.clone().into_os_string(),
        )
        .map_err(|e| anyhow!(e))?;
        let stages = runtime::command_lines(self.lang, program, profile, &self.cmd_args, &script);
        if !args.quiet {
            eprintln!("klt-render run: {summary}");
        }
        let outcome = runtime::spawn(stages, &env, &home, timeout.map(Duration::from_secs))?;
        drop(tmp);
        match outcome {
            process::Outcome::TimedOut => eprintln!(
                "klt-render run: {} ran longer than its timeout of {}s and was killed (in the cluster the Job fails with DeadlineExceeded)",
                args.task,
                timeout.unwrap_or_default()
            ),
            process::Outcome::Interrupted(_) => {
                eprintln!("klt-render run: interrupted; {} was stopped", args.task)
            }
            process::Outcome::Exited(_) => {}
        }
        Ok(runtime::exit_code(&outcome))
    }
}

fn paths_phrase(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

fn join_unique(items: Vec<String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for i in items {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen.join("; ")
}

/// The namespace of TASK's definition; among several, the destination's (`-n`).
fn choose_definition_namespace(
    named: &[&Doc<'_>],
    dest: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if let [only] = named {
        return Ok(only.namespace.as_deref().map(str::to_string));
    }
    let wanted = dest.unwrap_or_default();
    let here: Vec<&&Doc<'_>> = named
        .iter()
        .filter(|d| d.effective_namespace(dest) == wanted)
        .collect();
    if let [only] = here.as_slice() {
        return Ok(only.namespace.as_deref().map(str::to_string));
    }
    let spaces: Vec<String> = named
        .iter()
        .map(|d| format!("{:?}", d.effective_namespace(dest)))
        .collect();
    bail!(
        "{} is defined in several namespaces ({}); pick one with --namespace",
        named[0].name,
        spaces.join(", ")
    )
}

/// The definition the renderer uses for `name` in `ns` (Keptn's fallback namespace second).
fn find_definition<'d>(
    definitions: &[&'d Doc<'d>],
    ns: &str,
    name: &str,
    opts: &Options,
) -> Option<&'d Doc<'d>> {
    let dest = opts.namespace.as_deref();
    let at = |space: &str| {
        definitions
            .iter()
            .copied()
            .find(|d| d.name == name && d.effective_namespace(dest) == space)
    };
    at(ns).or_else(|| at(opts.definition_namespace.as_deref()?))
}

/// The hand-written KeptnTask that makes the renderer build TASK's Job with `ctx`.
fn synthetic_task(
    task: &str,
    namespace: Option<&str>,
    ctx: &TaskContext,
    def: &Doc<'_>,
) -> SourceFile {
    let mut metadata = json!({"name": TASK_NAME});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut context = json!({
        "workloadName": ctx.workload_name,
        "appName": ctx.app_name,
        "appVersion": ctx.app_version,
        "workloadVersion": ctx.workload_version,
        "taskType": ctx.task_type,
        "objectType": ctx.object_type,
    });
    if !ctx.metadata.is_empty() {
        context["metadata"] = json!(*ctx.metadata);
    }
    let mut spec = json!({"taskDefinition": task, "context": context, "checkType": ctx.task_type});
    // Keptn copies the definition's timeout into the tasks it creates.
    if let Some(t) = def
        .root
        .path(&["spec", "timeout"])
        .and_then(document::scalar_string)
    {
        spec["timeout"] = json!(t);
    }
    let obj = json!({
        "apiVersion": "lifecycle.keptn.sh/v1",
        "kind": "KeptnTask",
        "metadata": metadata,
        "spec": spec,
    });
    SourceFile {
        path: TASK_FILE.into(),
        text: serde_json::to_string_pretty(&obj).expect("JSON"),
    }
}

/// The `code` of the ConfigMap the Job mounts, `None` without a volume (httpRef).
fn mounted_code(
    job: &JobView,
    rendered: &[OutDoc],
    dest: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let Some(name) =
        job.json["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"].as_str()
    else {
        return Ok(None);
    };
    let job_ns = job.namespace.as_deref().or(dest);
    let cm = rendered
        .iter()
        .filter(|d| {
            d.kind == "ConfigMap" && d.name == name && d.namespace.as_deref().or(dest) == job_ns
        })
        .find_map(parse_out)
        .with_context(|| format!("ConfigMap {name:?} that the Job mounts is not in the output"))?;
    cm["data"]["code"]
        .as_str()
        .map(|s| Some(s.to_string()))
        .with_context(|| format!("ConfigMap {name:?} has no data.code"))
}

/// SECURE_DATA's bytes and where they came from (never the value itself).
fn secure_data(
    args: &RunArgs,
    secret: &str,
    docs: &[Doc<'_>],
    ns: &str,
    dest: Option<&str>,
) -> anyhow::Result<(Vec<u8>, String)> {
    if let Some(file) = &args.secret_file {
        let bytes = std::fs::read(file)
            .with_context(|| format!("--secret-file {}: cannot read", file.display()))?;
        return Ok((bytes, format!("file {}", file.display())));
    }
    let found = docs.iter().find(|d| {
        d.group().is_empty()
            && d.kind == "Secret"
            && d.name == secret
            && d.effective_namespace(dest) == ns
    });
    let where_ = if ns.is_empty() {
        String::new()
    } else {
        format!(" in namespace {ns:?}")
    };
    let Some(doc) = found else {
        bail!(
            "the task reads SECURE_DATA from Secret {secret:?}, which is not in the input{where_}; add its manifest to the paths or pass --secret-file FILE with the value"
        );
    };
    let from = format!("Secret {secret:?}");
    if let Some(v) = doc
        .root
        .path(&["stringData", "SECURE_DATA"])
        .and_then(document::scalar_string)
    {
        return Ok((v.into_bytes(), from));
    }
    if let Some(v) = doc
        .root
        .path(&["data", "SECURE_DATA"])
        .and_then(document::scalar_string)
    {
        let bytes = prepare::base64_decode(&v)
            .map_err(|e| anyhow!("Secret {secret:?}: data.SECURE_DATA is {e}"))?;
        return Ok((bytes, from));
    }
    bail!("Secret {secret:?}{where_} has no key SECURE_DATA (under data or stringData)")
}

/// A container task needs a container runtime: refused, with a `docker run` equivalent
/// (printed to stdout with --dry-run).
fn container_task(
    args: &RunArgs,
    summary: &str,
    container: &Value,
    job_env: &[(String, EnvSource)],
) -> anyhow::Result<ExitCode> {
    let mut words = vec!["docker".to_string(), "run".into(), "--rm".into()];
    let mut unresolved = Vec::new();
    for (name, src) in job_env {
        match src {
            EnvSource::Value(v) => {
                words.push("-e".into());
                words.push(format!("{name}={v}"));
            }
            _ => unresolved.push(name.clone()),
        }
    }
    let command: Vec<String> = container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if let Some(first) = command.first() {
        words.push("--entrypoint".into());
        words.push(first.clone());
    }
    words.push(container["image"].as_str().unwrap_or("IMAGE").to_string());
    words.extend(command.into_iter().skip(1));
    words.extend(
        container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string)),
    );
    let line = words
        .iter()
        .map(|w| prepare::shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let missing = if unresolved.is_empty() {
        String::new()
    } else {
        format!(
            " (set {} yourself: they come from the cluster)",
            unresolved.join(", ")
        )
    };
    if args.dry_run {
        super::write_stdout(format!("# klt-render run: {summary}\n{line}\n").as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "klt-render run: error: {} is a container task: running it needs a container runtime, which klt-render does not drive",
        args.task
    );
    eprintln!("  help: run the same container with the rendered env{missing}:");
    eprintln!("    {line}");
    eprintln!("  or apply its Job: klt-render render ... | kubectl apply -f -");
    Ok(ExitCode::from(EXIT_BAD_INPUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(argv: &[&str]) -> ArgMatches {
        let cmd = Command::new("klt-render").subcommand(super::super::with_options(command()));
        let m = cmd.try_get_matches_from(argv).unwrap();
        m.subcommand_matches("run").unwrap().clone()
    }

    #[test]
    fn arguments_are_parsed() {
        let m = matches(&[
            "klt-render",
            "run",
            "notify",
            "apps/a",
            "apps/b",
            "--app",
            "shop",
            "--workload",
            "api",
            "--phase",
            "post",
            "--param",
            "a=1",
            "--param",
            "b=x=y",
            "--timeout",
            "2s",
            "--allow-net",
            "-n",
            "team",
        ]);
        let a = RunArgs::from(&m).unwrap();
        assert_eq!(a.task, "notify");
        assert_eq!(a.context.app.as_deref(), Some("shop"));
        assert_eq!(a.context.workload.as_deref(), Some("api"));
        assert_eq!(a.context.phase, Some(Phase::Post));
        assert_eq!(
            a.params,
            [("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert_eq!(a.timeout, Some(Some(2)));
        assert!(a.allow_net);
        let paths: Vec<&PathBuf> = m.get_many("paths").unwrap().collect();
        assert_eq!(paths, [&PathBuf::from("apps/a"), &PathBuf::from("apps/b")]);
        assert_eq!(options_from(&m).unwrap().namespace.as_deref(), Some("team"));

        let m = matches(&["klt-render", "run", "t", "--object-type", "Application"]);
        let a = RunArgs::from(&m).unwrap();
        assert_eq!(a.context.object_type, Some(ObjectType::App));
        assert_eq!(a.timeout, None);
        assert!(
            RunArgs::from(&matches(&["klt-render", "run", "t", "--param", "novalue"])).is_err()
        );
        assert!(RunArgs::from(&matches(&["klt-render", "run", "t", "--timeout", "soon"])).is_err());
    }

    #[test]
    fn the_synthetic_task_carries_context_and_timeout() {
        let files = [SourceFile {
            path: "d.yaml".into(),
            text: "apiVersion: lifecycle.keptn.sh/v1\nkind: KeptnTaskDefinition\nmetadata: {name: t, namespace: ns}\nspec:\n  timeout: 2s\n  deno: {inline: {code: x}}\n".into(),
        }];
        let mut diags = Vec::new();
        let docs = document::load(&files, &mut diags);
        let ctx = TaskContext {
            app_name: "shop".into(),
            task_type: "pre".into(),
            object_type: "App".into(),
            metadata: std::rc::Rc::new([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        };
        let f = synthetic_task("t", Some("ns"), &ctx, &docs[0]);
        let v: Value = serde_json::from_str(&f.text).unwrap();
        assert_eq!(v["metadata"]["namespace"], "ns");
        assert_eq!(v["spec"]["timeout"], "2s");
        assert_eq!(v["spec"]["context"]["metadata"]["k"], "v");
        let all = [files[0].clone(), f];
        let out = klt_render::render(&all, &Options::default());
        assert!(!out.has_errors(), "{:?}", out.diagnostics);
        let jobs = jobs_of(&out.documents, "t");
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].0.starts_with("klt-render-run-"));
        assert_eq!(jobs[0].1.json["spec"]["activeDeadlineSeconds"], 2);
        assert_eq!(jobs[0].1.context("KEPTN_CONTEXT").unwrap(), ctx);
    }
}
