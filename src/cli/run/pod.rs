//! `klt-render run --pod POD.json --root DIR` (hidden): runs the container of a pod whose env
//! a kubelet stand-in (kube-testenv's task runner) has already resolved to plain values and
//! whose volumes it has written under DIR at their mountPath. A deno-runtime or
//! python-runtime container runs as that image's entrypoint would (`deno run <flags>
//! $SCRIPT`, `python3 $CMD_ARGS $SCRIPT`), through the same [`runtime`](super::runtime)
//! code as `klt-render run TASK`, without a timeout: `activeDeadlineSeconds` is the Job
//! controller's to enforce. Any other image (a container task) cannot run here: its outcome
//! is the test's choice, read from the pod's annotations or the container's env
//! ([`ContainerOutcome`]).
//!
//! A container with env `KLT_EVALUATION` (an evaluation Job's) runs `klt-evaluate`
//! ([`evaluation`](super::evaluation)), its termination message written under DIR.
//!
//! Exit status: the task's (128+n after signal n, e.g. 143 when the kubelet stopped it); 2
//! when the pod cannot be run (messages start with `klt-render run:`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::ArgMatches;
use klt_render::Profile;
use klt_render::model::Lang;
use klt_render::options::{KEPTN_2, KLT_0_9, PROFILES};
use serde_json::Value;

use super::evaluation;
use super::prepare::{self, EnvSource};
use super::runtime::{self, TempDir};

/// Annotation (on the pod or, copied by the runner, on its Job) with a container task's exit code.
pub const EXIT_ANNOTATION: &str = "testenv.klt-render.dev/exit-code";
/// Annotation with how many seconds a container task runs before it exits.
pub const SLEEP_ANNOTATION: &str = "testenv.klt-render.dev/sleep-seconds";
/// The same two as container env (settable in the KeptnTaskDefinition's container spec).
pub const EXIT_ENV: &str = "TESTENV_EXIT_CODE";
pub const SLEEP_ENV: &str = "TESTENV_SLEEP_SECONDS";

pub struct PodArgs {
    pod: PathBuf,
    root: PathBuf,
    deno: Option<PathBuf>,
    python: Option<PathBuf>,
    evaluator: Option<PathBuf>,
}

impl PodArgs {
    pub fn from(m: &ArgMatches, pod: &Path) -> anyhow::Result<PodArgs> {
        let path = |name: &str| m.get_one::<PathBuf>(name).cloned();
        let root = path("root").context("--pod needs --root")?;
        // The task runs in a HOME of its own: SCRIPT must not depend on the caller's cwd.
        let root = std::path::absolute(&root)
            .with_context(|| format!("--root {}: cannot resolve", root.display()))?;
        Ok(PodArgs {
            pod: pod.to_path_buf(),
            root,
            deno: path("deno"),
            python: path("python"),
            evaluator: path("evaluator"),
        })
    }
}

pub fn execute(args: &PodArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.pod)
        .with_context(|| format!("--pod {}: cannot read", args.pod.display()))?;
    let pod: Value = serde_json::from_str(&text)
        .with_context(|| format!("--pod {}: not JSON", args.pod.display()))?;
    let container = &pod["spec"]["containers"][0];
    if !container.is_object() {
        bail!("--pod {}: the pod has no container", args.pod.display());
    }
    let env = prepare::container_env(container);
    if let Some((name, _)) = env.iter().find(|(_, s)| !matches!(s, EnvSource::Value(_))) {
        bail!(
            "env {name} is not resolved: --pod takes a pod whose valueFrom entries the kubelet stand-in replaced by values"
        );
    }
    let image = container["image"].as_str().unwrap_or_default();
    let who = format!(
        "pod {}/{} container {}",
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod["metadata"]["name"].as_str().unwrap_or_default(),
        container["name"].as_str().unwrap_or_default()
    );
    if env_value(&env, evaluation::ENV).is_some() {
        let evaluator = evaluation::find_evaluator(args.evaluator.as_deref())?;
        return evaluation::launch(evaluation::pod_launch(
            evaluator, &args.root, container, &env, &who,
        )?);
    }
    match runtime_of(image, &env) {
        Some((lang, profile)) => run_runtime(args, &who, lang, profile, &env),
        None => {
            let outcome = ContainerOutcome::of(&pod, &env).map_err(|e| anyhow!(e))?;
            simulate_container(&who, image, &outcome)
        }
    }
}

fn env_value<'e>(env: &'e [(String, EnvSource)], name: &str) -> Option<&'e str> {
    env.iter().find_map(|(n, s)| match s {
        EnvSource::Value(v) if n == name => Some(v.as_str()),
        _ => None,
    })
}

/// The runtime an image is, and the profile whose env it reads: an image some profile
/// renders decides both; otherwise the repository name (`…/deno-runtime:TAG`) the runtime
/// and the context variable in the env the profile.
fn runtime_of(image: &str, env: &[(String, EnvSource)]) -> Option<(Lang, &'static Profile)> {
    for p in PROFILES {
        if image == p.deno_image {
            return Some((Lang::Deno, p));
        }
        if image == p.python_image {
            return Some((Lang::Python, p));
        }
    }
    let lang = match repository_name(image) {
        "deno-runtime" => Lang::Deno,
        "python-runtime" => Lang::Python,
        _ => return None,
    };
    let profile = if env_value(env, KEPTN_2.context_env).is_none()
        && env_value(env, KLT_0_9.context_env).is_some()
    {
        &KLT_0_9
    } else {
        &KEPTN_2
    };
    Some((lang, profile))
}

/// `registry:5000/keptn/deno-runtime:v1@sha256:…` → `deno-runtime`.
fn repository_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or_default();
    let last = no_digest.rsplit('/').next().unwrap_or_default();
    last.split(':').next().unwrap_or_default()
}

/// Where SCRIPT is on this machine: a path inside the pod is under `root`; a URL stays.
fn script_in_root(root: &Path, script: &str) -> String {
    if script.contains("://") {
        return script.to_string();
    }
    root.join(script.trim_start_matches('/'))
        .display()
        .to_string()
}

fn run_runtime(
    args: &PodArgs,
    who: &str,
    lang: Lang,
    profile: &Profile,
    job_env: &[(String, EnvSource)],
) -> anyhow::Result<ExitCode> {
    let script = script_in_root(&args.root, env_value(job_env, "SCRIPT").unwrap_or_default());
    let program = runtime::program_for(lang, args.deno.as_deref(), args.python.as_deref())?;
    let tmp = TempDir::new()?;
    let home = tmp.path.join("home");
    std::fs::create_dir(&home).with_context(|| format!("{}: cannot create", home.display()))?;
    let env = prepare::assemble_env(
        job_env,
        &[],
        None,
        &script,
        runtime::caller_path(),
        home.clone().into_os_string(),
    )
    .map_err(|e| anyhow!(e))?;
    let cmd_args = env_value(job_env, "CMD_ARGS").unwrap_or_default();
    let stages = runtime::command_lines(lang, &program, profile, cmd_args, &script);
    eprintln!(
        "klt-render run: {who} ({}, profile {})",
        if lang == Lang::Deno { "deno" } else { "python" },
        profile.name
    );
    let outcome = runtime::spawn(stages, &env, &home, None)?;
    drop(tmp);
    Ok(runtime::exit_code(&outcome))
}

/// What a container task "does" here: sleep, then exit with a code.
#[derive(Debug, PartialEq, Eq)]
struct ContainerOutcome {
    exit: u8,
    sleep_seconds: u64,
    /// Where the values came from, for the log.
    source: String,
}

impl ContainerOutcome {
    /// The pod's annotations win over the container's env; both default to 0.
    fn of(pod: &Value, env: &[(String, EnvSource)]) -> Result<ContainerOutcome, String> {
        let pick = |annotation: &str, var: &str| -> Option<(String, String)> {
            if let Some(v) = pod["metadata"]["annotations"][annotation].as_str() {
                return Some((v.to_string(), format!("annotation {annotation}")));
            }
            env_value(env, var).map(|v| (v.to_string(), format!("env {var}")))
        };
        let mut sources = Vec::new();
        let mut number = |annotation: &str, var: &str| -> Result<u64, String> {
            let Some((v, from)) = pick(annotation, var) else {
                return Ok(0);
            };
            let n = v
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{from} is {v:?}, not a whole number"))?;
            sources.push(from);
            Ok(n)
        };
        let exit = number(EXIT_ANNOTATION, EXIT_ENV)?;
        let sleep_seconds = number(SLEEP_ANNOTATION, SLEEP_ENV)?;
        let exit = u8::try_from(exit).map_err(|_| format!("exit code {exit} is above 255"))?;
        let source = if sources.is_empty() {
            "the default".to_string()
        } else {
            sources.join(", ")
        };
        Ok(ContainerOutcome {
            exit,
            sleep_seconds,
            source,
        })
    }
}

/// A container task: no container runtime here, so it sleeps and exits as the test says,
/// as a process (a deletion stops it like any task).
fn simulate_container(who: &str, image: &str, o: &ContainerOutcome) -> anyhow::Result<ExitCode> {
    println!(
        "klt-render run: {who}: container task {image} is not run here; it exits {} after {}s ({})",
        o.exit, o.sleep_seconds, o.source
    );
    let tmp = TempDir::new()?;
    let stage = vec![
        "sh".to_string(),
        "-c".into(),
        r#"sleep "$1"; exit "$2""#.into(),
        "sh".into(),
        o.sleep_seconds.to_string(),
        o.exit.to_string(),
    ];
    let env = [("PATH".to_string(), runtime::caller_path())];
    let outcome = runtime::spawn(vec![stage], &env, &tmp.path, None)?;
    Ok(runtime::exit_code(&outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, EnvSource)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), EnvSource::Value(v.to_string())))
            .collect()
    }

    #[test]
    fn images_decide_the_runtime_and_the_profile() {
        let e = env(&[]);
        assert_eq!(
            runtime_of("ghcr.io/keptn/deno-runtime:v3.0.1", &e),
            Some((Lang::Deno, &KEPTN_2))
        );
        assert_eq!(
            runtime_of("ghcr.io/keptn/python-runtime:v1.0.1", &e),
            Some((Lang::Python, &KLT_0_9))
        );
        let old = env(&[("CONTEXT", "{}")]);
        assert_eq!(
            runtime_of("mirror:5000/deno-runtime:dev@sha256:ab", &old),
            Some((Lang::Deno, &KLT_0_9))
        );
        assert_eq!(runtime_of("curlimages/curl:8.11.1", &e), None);
        assert_eq!(runtime_of("deno-runtimes/x:1", &e), None);
    }

    #[test]
    fn script_paths_are_under_the_root_and_urls_stay() {
        let root = Path::new("/tmp/pod/root");
        assert_eq!(
            script_in_root(root, "/var/data/function.ts"),
            "/tmp/pod/root/var/data/function.ts"
        );
        assert_eq!(script_in_root(root, "https://x/f.ts"), "https://x/f.ts");
    }

    #[test]
    fn container_outcomes_come_from_annotations_then_env() {
        let pod = json!({"metadata": {"annotations": {EXIT_ANNOTATION: "3"}}});
        let e = env(&[(EXIT_ENV, "1"), (SLEEP_ENV, "2")]);
        let o = ContainerOutcome::of(&pod, &e).unwrap();
        assert_eq!((o.exit, o.sleep_seconds), (3, 2));
        assert_eq!(
            o.source,
            format!("annotation {EXIT_ANNOTATION}, env {SLEEP_ENV}")
        );
        let o = ContainerOutcome::of(&json!({}), &env(&[])).unwrap();
        assert_eq!((o.exit, o.sleep_seconds), (0, 0));
        assert!(ContainerOutcome::of(&json!({}), &env(&[(EXIT_ENV, "x")])).is_err());
        assert!(ContainerOutcome::of(&json!({}), &env(&[(EXIT_ENV, "256")])).is_err());
    }
}
