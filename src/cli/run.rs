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
//! Exit status: the task's; 124 when it ran out of time; 128+n when klt-render was
//! interrupted by signal n; 2 when klt-render itself refuses or fails (its messages start with
//! `klt-render run:`).

mod prepare;
mod process;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Arg, ArgAction, ArgMatches, Command};
use klt_render::document::{self, Doc};
use klt_render::model::{self, Lang, Runner, TaskContext};
use klt_render::{Options, OutDoc, SourceFile};
use serde_json::{Value, json};

use super::{EXIT_BAD_INPUT, input, options_from, paths_arg, report};
use prepare::{ContextArgs, EnvSource, ObjectType, Phase};

/// Exit status of a task that ran out of time (as `timeout(1)`).
const EXIT_TIMEOUT: u8 = 124;
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
                .required(true)
                .help("Name of the KeptnTaskDefinition to run"),
        )
        .arg(paths_arg())
        .arg(opt("app", "APP", "appName of the context (default: from the one use of TASK in the input that fits the options)"))
        .arg(opt("app-version", "VERSION", "appVersion of an app task"))
        .arg(opt("workload", "WORKLOAD", "Run as a workload task of this workload (workloadName becomes <app>-<workload>)"))
        .arg(opt("workload-version", "VERSION", "workloadVersion of a workload task"))
        .arg(
            opt("phase", "PHASE", "taskType of the context [default: pre]")
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
    let opts = options_from(m)?;
    let args = RunArgs::from(m)?;
    let paths: Vec<PathBuf> = m.get_many("paths").unwrap().cloned().collect();
    let files = input::gather(&paths, None, &opts.limits)?;
    let dest = opts.namespace.as_deref();
    let profile = &opts.profile;

    // 1. The input as `render` sees it, and the uses of TASK in it.
    let rendered = match render_or_report(&files, &opts) {
        Ok(docs) => docs,
        Err(code) => return Ok(code),
    };
    let mut scratch = Vec::new();
    let docs = document::load_with(&files, &opts.limits, &mut scratch);
    let is_definition = |d: &&Doc<'_>| d.group() == model::GROUP && d.kind == "KeptnTaskDefinition";
    let definitions: Vec<&Doc<'_>> = docs.iter().filter(is_definition).collect();
    let named: Vec<&Doc<'_>> = definitions
        .iter()
        .copied()
        .filter(|d| d.name == args.task)
        .collect();
    if named.is_empty() {
        let hint = klt_render::suggest::closest(&args.task, definitions.iter().map(|d| &*d.name))
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        bail!(
            "no KeptnTaskDefinition {:?} in {}{hint}",
            args.task,
            paths_phrase(&paths)
        );
    }

    let uses = jobs_of(&rendered, &args.task);
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
    let base = match fitting.as_slice() {
        [one] => Some(one.clone()),
        [] => {
            let others: Vec<String> = uses
                .iter()
                .filter_map(|(_, j)| j.context(profile.context_env))
                .map(|c| describe(&c))
                .collect();
            if !others.is_empty() && !args.quiet {
                eprintln!(
                    "klt-render run: note: no use of {} in the input fits the options (it is the {}); the context comes from the options alone",
                    args.task,
                    join_unique(others)
                );
            }
            None
        }
        many => {
            if !args.quiet {
                eprintln!(
                    "klt-render run: note: {} is the {}; pass --app, --workload or --phase to pick one; the context comes from the options alone",
                    args.task,
                    join_unique(many.iter().map(|(_, c)| describe(c)).collect())
                );
            }
            None
        }
    };

    // 2. Where the task runs: where its real use runs, else where its definition is.
    let namespace: Option<String> = match &base {
        Some((ns, _)) => ns.clone(),
        None => choose_definition_namespace(&named, dest)?,
    };
    let lookup_ns = namespace
        .clone()
        .or(dest.map(str::to_string))
        .unwrap_or_default();
    let ctx = prepare::build_context(base.as_ref().map(|(_, c)| c), &args.context, profile)
        .map_err(|e| anyhow!(e))?;

    // 3. Render again with a KeptnTask for TASK; take its Job.
    let definition = find_definition(&definitions, &lookup_ns, &args.task, &opts)
        .or_else(|| named.first().copied())
        .expect("TASK has a definition");
    let mut with_task = files.clone();
    with_task.push(synthetic_task(
        &args.task,
        namespace.as_deref(),
        &ctx,
        definition,
    ));
    let rendered = match render_or_report(&with_task, &opts) {
        Ok(docs) => docs,
        Err(code) => return Ok(code),
    };
    let job = jobs_of(&rendered, &args.task)
        .into_iter()
        .find(|(name, _)| {
            name.strip_prefix(TASK_NAME)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|hash| !hash.contains('-'))
        })
        .map(|(_, j)| j)
        .context("the renderer made no Job for the task (a bug in klt-render)")?;
    let deadline = job.json["spec"]["activeDeadlineSeconds"].as_u64();
    let timeout = args.timeout.unwrap_or(deadline.filter(|s| *s > 0));

    let mut diags = Vec::new();
    let def = model::read_task_definition(definition, &mut diags);
    let lang = match &def.runner {
        Some(Runner::Container(_)) => None,
        Some(Runner::Runtime(lang)) => Some(
            match def.runtime(*lang).and_then(|s| s.function_ref.as_ref()) {
                Some(parent) => {
                    let pdoc = find_definition(&definitions, &lookup_ns, &parent.value, &opts)
                        .context("functionRef target vanished")?;
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
        None => bail!("{} has no usable runner", args.task),
    };
    let container = job.container().clone();
    let job_env = prepare::container_env(&container);
    let summary = format!(
        "{} ({}, profile {}) as the {}; timeout {}",
        args.task,
        match lang {
            Some(Lang::Deno) => "deno",
            Some(Lang::Python) => "python",
            None => "container",
        },
        profile.name,
        describe(&ctx),
        timeout.map_or("none".to_string(), |t| format!("{t}s"))
    );

    let Some(lang) = lang else {
        return container_task(&args, &summary, &container, &job_env);
    };

    // 4. Code, secret, program.
    let code = mounted_code(&job, &rendered, dest)?;
    let script_env = job_env
        .iter()
        .find_map(|(n, s)| match s {
            EnvSource::Value(v) if n == "SCRIPT" => Some(v.clone()),
            _ => None,
        })
        .unwrap_or_default();
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
        Some(name) => match secure_data(&args, name, &docs, &lookup_ns, dest) {
            Ok(v) => Some(v),
            Err(e) if args.dry_run => {
                eprintln!("klt-render run: warning: {e:#}");
                None
            }
            Err(e) => return Err(e),
        },
    };

    let file_name = match lang {
        Lang::Deno => "function.ts",
        Lang::Python => "function.py",
    };
    let program = match lang {
        Lang::Deno => find_program(args.deno.as_deref(), "deno", "--deno", "KLT_DENO"),
        Lang::Python => find_program(args.python.as_deref(), "python3", "--python", "KLT_PYTHON"),
    };
    let caller_path = std::env::var_os("PATH").unwrap_or_else(|| {
        OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    });
    let cmd_args = job_env
        .iter()
        .find_map(|(n, s)| match s {
            EnvSource::Value(v) if n == "CMD_ARGS" => Some(v.clone()),
            _ => None,
        })
        .unwrap_or_default();

    if args.dry_run {
        let tmp = PathBuf::from("$TMP");
        let script = match &code {
            Some(_) => tmp.join(file_name).display().to_string(),
            None => script_env.clone(),
        };
        let env = prepare::assemble_env(
            &job_env,
            &args.params,
            Some(b"".as_slice()),
            &script,
            caller_path,
            tmp.join("home").into_os_string(),
        )
        .map_err(|e| anyhow!(e))?;
        let program = program.unwrap_or_else(|_| {
            PathBuf::from(if lang == Lang::Deno {
                "deno"
            } else {
                "python3"
            })
        });
        let stages = command_lines(lang, &program, profile, &cmd_args, &script);
        let mut out = format!("# klt-render run: {summary}\n");
        for (k, v) in &env {
            let shown = if k == "SECURE_DATA" {
                match (&secure, &secret_name) {
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
        return Ok(ExitCode::SUCCESS);
    }

    let program = program?;
    let tmp = TempDir::new()?;
    let home = tmp.path.join("home");
    std::fs::create_dir(&home).with_context(|| format!("{}: cannot create", home.display()))?;
    let script = match &code {
        Some(code) => {
            let file = tmp.path.join(file_name);
            std::fs::write(&file, code)
                .with_context(|| format!("{}: cannot write", file.display()))?;
            file.display().to_string()
        }
        None => script_env.clone(),
    };
    let env = prepare::assemble_env(
        &job_env,
        &args.params,
        secure.as_ref().map(|(b, _)| b.as_slice()),
        &script,
        caller_path,
        home.clone().into_os_string(),
    )
    .map_err(|e| anyhow!(e))?;
    let stages: Vec<Process> = command_lines(lang, &program, profile, &cmd_args, &script)
        .into_iter()
        .map(|words| {
            let mut p = Process::new(&words[0]);
            p.args(&words[1..]).env_clear().current_dir(&home);
            for (k, v) in &env {
                p.env(k, v);
            }
            p
        })
        .collect();
    if !args.quiet {
        eprintln!("klt-render run: {summary}");
    }
    let outcome = process::run_pipeline(stages, timeout.map(Duration::from_secs))
        .with_context(|| format!("{}: cannot run", program.display()))?;
    drop(tmp);
    Ok(match outcome {
        process::Outcome::Exited(code) => ExitCode::from(code),
        process::Outcome::TimedOut => {
            eprintln!(
                "klt-render run: {} ran longer than its timeout of {}s and was killed (in the cluster the Job fails with DeadlineExceeded)",
                args.task,
                timeout.unwrap_or_default()
            );
            ExitCode::from(EXIT_TIMEOUT)
        }
        process::Outcome::Interrupted(sig) => {
            eprintln!("klt-render run: interrupted; {} was stopped", args.task);
            ExitCode::from((128 + sig).clamp(0, 255) as u8)
        }
    })
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

/// The runtime image's command line(s); a python URL becomes `fetch | python3 ... -` as the
/// entrypoint's `curl -s $SCRIPT | python3 $CMD_ARGS -`.
fn command_lines(
    lang: Lang,
    program: &Path,
    profile: &klt_render::Profile,
    cmd_args: &str,
    script: &str,
) -> Vec<Vec<String>> {
    let program = program.display().to_string();
    match lang {
        Lang::Deno => {
            let mut words = vec![program, "run".into()];
            words.extend(prepare::deno_flags(profile));
            words.push(script.into());
            vec![words]
        }
        Lang::Python => {
            let mut words = vec![program.clone()];
            words.extend(prepare::split_cmd_args(cmd_args));
            if prepare::python_sees_url(script) {
                words.push("-".into());
                vec![
                    vec![program, "-c".into(), FETCH.into(), script.into()],
                    words,
                ]
            } else {
                words.push(script.into());
                vec![words]
            }
        }
    }
}

/// What `curl -s URL` does for python-runtime: the body of any response (no redirects
/// followed), nothing on a network error. klt-render says why on stderr.
const FETCH: &str = r#"import sys, urllib.request, urllib.error
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
try:
    sys.stdout.buffer.write(urllib.request.build_opener(Stay).open(sys.argv[1]).read())
except urllib.error.HTTPError as e:
    sys.stdout.buffer.write(e.read())
except Exception as e:
    sys.stderr.write("klt-render run: cannot fetch %s: %s\n" % (sys.argv[1], e))
"#;

/// A program by explicit path, or by name on PATH.
fn find_program(
    explicit: Option<&Path>,
    name: &str,
    flag: &str,
    env: &str,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.components().count() > 1 {
            if p.is_file() {
                return Ok(p.to_path_buf());
            }
            bail!("{flag} {}: no such file", p.display());
        }
        return search_path(&p.to_string_lossy())
            .with_context(|| format!("{flag} {}: not found on PATH", p.display()));
    }
    search_path(name).with_context(|| {
        let install = if name == "deno" {
            " (e.g. `pip install deno`, which puts it into the environment's bin directory)"
        } else {
            ""
        };
        format!("{name} not found on PATH; install it{install} or pass {flag} PATH (or set {env})")
    })
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
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

/// A private temporary directory, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        for attempt in 0..100u32 {
            let path = base.join(format!(
                "klt-render-run-{}-{nanos:x}-{attempt}",
                std::process::id()
            ));
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: cannot create", path.display()));
                }
            }
        }
        bail!("cannot create a temporary directory in {}", base.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
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
