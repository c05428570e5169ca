//! Evaluations in `klt-render run`: a container whose env has `KLT_EVALUATION` (a rendered
//! evaluation Job's, see issue 12's contract) runs as its image would, by executing
//! `klt-evaluate` with the container's env. Two ways in: `--pod POD.json --root DIR` (the
//! kubelet stand-in has resolved the pod and written its volumes under DIR), and
//! `klt-render run EVALUATION-DEFINITION [PATH...]` (the input rendered, the evaluation Job
//! for that definition picked by its labels, its provider Secrets taken from the input).
//!
//! The evaluator is found via `--evaluator PATH`, `$KLT_EVALUATE`, next to the klt-render
//! binary, or PATH. Paths inside the pod (each provider's `secretDir`, the termination log) are
//! moved under a local root; everything else of the env is passed as it is, plus PATH and a
//! temporary HOME. Exit status: the evaluator's (0 met, 1 failed, 2 its configuration error);
//! 2 with a `klt-render run:` message when the evaluation cannot be started.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::Value;

use super::prepare::EnvSource;
use super::runtime::{self, TempDir};

/// The container env that makes a container an evaluation.
pub const ENV: &str = "KLT_EVALUATION";
/// Where `klt-evaluate` writes its summary (Kubernetes: the container's terminationMessagePath).
pub const TERMINATION_LOG_ENV: &str = "KLT_TERMINATION_LOG";
const TERMINATION_LOG: &str = "/dev/termination-log";
/// Label of an evaluation Job naming its KeptnEvaluationDefinition.
pub const LABEL_DEFINITION: &str = "klt-render.dev/evaluation-definition";
const BINARY: &str = "klt-evaluate";

/// `--evaluator` (or `$KLT_EVALUATE`, which clap folds into it), else next to this binary,
/// else PATH.
pub fn find_evaluator(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--evaluator {}: no such file", path.display());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(BINARY)));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Ok(path);
    }
    std::env::split_paths(&runtime::caller_path())
        .map(|dir| dir.join(BINARY))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{BINARY} not found (next to klt-render or on PATH); build it with `cargo build -p klt-evaluate` or pass --evaluator PATH (or set KLT_EVALUATE)"
            )
        })
}

/// The evaluation JSON with every provider's `secretDir` moved by `relocate`. Keys keep their
/// order (serde_json's preserve_order), so the evaluator sees the Job's JSON but for the paths.
pub fn relocate_secret_dirs(
    json: &str,
    relocate: &mut dyn FnMut(&str) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let mut evaluation: Value =
        serde_json::from_str(json).with_context(|| format!("env {ENV} is not JSON"))?;
    let objectives = evaluation
        .get_mut("objectives")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
    for objective in objectives {
        if let Some(dir) = objective.pointer_mut("/provider/secretDir")
            && let Some(path) = dir.as_str()
        {
            *dir = Value::String(relocate(path)?);
        }
    }
    Ok(evaluation.to_string())
}

/// A path inside the pod, under `root` on this machine.
pub fn in_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// What to run: the evaluator, its env (the container's, relocated), its extra arguments.
pub struct Launch {
    pub evaluator: PathBuf,
    pub env: Vec<(String, OsString)>,
    pub args: Vec<String>,
    /// Printed before the evaluator's output: what runs, and where.
    pub banner: String,
}

/// Runs it with exactly that env (plus PATH and a temporary HOME), stdout and stderr straight
/// through; the exit code is the evaluator's.
pub fn launch(l: Launch) -> anyhow::Result<ExitCode> {
    let tmp = TempDir::new()?;
    let home = tmp.path.join("home");
    std::fs::create_dir(&home).with_context(|| format!("{}: cannot create", home.display()))?;
    let mut env = l.env;
    env.push(("PATH".into(), runtime::caller_path()));
    env.push(("HOME".into(), home.clone().into_os_string()));
    let mut stage = vec![l.evaluator.display().to_string()];
    stage.extend(l.args);
    if !l.banner.is_empty() {
        eprintln!("klt-render run: {}", l.banner);
    }
    let outcome = runtime::spawn(vec![stage], &env, &home, None)?;
    drop(tmp);
    Ok(runtime::exit_code(&outcome))
}

/// The container env with `KLT_EVALUATION`'s secretDirs moved under `root` and the
/// termination log at `termination_log`; every entry must be a plain value.
pub fn container_env(
    env: &[(String, EnvSource)],
    relocate: &mut dyn FnMut(&str) -> anyhow::Result<String>,
    termination_log: &Path,
) -> anyhow::Result<Vec<(String, OsString)>> {
    let mut out = Vec::new();
    for (name, source) in env {
        let EnvSource::Value(value) = source else {
            bail!("env {name} of the evaluation container is not a plain value");
        };
        let value = if name == ENV {
            relocate_secret_dirs(value, relocate)?
        } else {
            value.clone()
        };
        if name != TERMINATION_LOG_ENV {
            out.push((name.clone(), value.into()));
        }
    }
    out.push((TERMINATION_LOG_ENV.into(), termination_log.into()));
    Ok(out)
}

/// `--pod`: the termination log goes to `<root><terminationMessagePath>` (default
/// /dev/termination-log), where the kubelet stand-in reads the pod's termination message.
pub fn pod_launch(
    evaluator: PathBuf,
    root: &Path,
    container: &Value,
    env: &[(String, EnvSource)],
    who: &str,
) -> anyhow::Result<Launch> {
    let message_path = container["terminationMessagePath"]
        .as_str()
        .unwrap_or(TERMINATION_LOG);
    let log = in_root(root, message_path);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let env = container_env(
        env,
        &mut |dir| Ok(in_root(root, dir).display().to_string()),
        &log,
    )?;
    Ok(Launch {
        banner: format!("{who} (evaluation, {})", evaluator.display()),
        evaluator,
        env,
        args: vec![],
    })
}

/// Which evaluation Job `klt-render run EVALUATION-DEFINITION` means.
pub struct Wanted<'a> {
    pub definition: &'a str,
    pub app: Option<&'a str>,
    pub workload: Option<&'a str>,
    /// `pre` or `post`.
    pub phase: Option<&'a str>,
}

/// A rendered Job: name, namespace, the Job as JSON.
pub type RenderedJob = (String, Option<String>, Value);

/// The evaluation Jobs of `definition` among `jobs` that fit the options: none (None) or
/// exactly one, else an error naming them.
pub fn pick<'j>(jobs: &'j [RenderedJob], w: &Wanted) -> anyhow::Result<Option<&'j RenderedJob>> {
    let label = |j: &Value, key: &str| j["metadata"]["labels"][key].as_str().map(str::to_string);
    let wanted = klt_render::job::label_value(w.definition);
    let of_definition: Vec<&RenderedJob> = jobs
        .iter()
        .filter(|(_, _, j)| wanted.is_some() && label(j, LABEL_DEFINITION) == wanted)
        .collect();
    if of_definition.is_empty() {
        return Ok(None);
    }
    let fits = |j: &Value| {
        let app = label(j, klt_render::job::LABEL_APP);
        let workload = label(j, klt_render::job::LABEL_WORKLOAD);
        let phase = label(j, klt_render::job::LABEL_PHASE).unwrap_or_default();
        w.app.is_none_or(|a| app == klt_render::job::label_value(a))
            && w.workload.is_none_or(|wl| {
                // The label holds the workloadName, `<app>-<workload>`.
                let label = workload.as_deref().unwrap_or_default();
                let short = klt_render::job::label_value(wl).unwrap_or_default();
                let full = w
                    .app
                    .map(|a| format!("{a}-{wl}"))
                    .and_then(|f| klt_render::job::label_value(&f));
                label == short
                    || full.as_deref() == Some(label)
                    || (w.app.is_none() && label.ends_with(&format!("-{short}")))
            })
            && w.phase.is_none_or(|p| phase.ends_with(&format!("-{p}")))
    };
    let fitting: Vec<&RenderedJob> = of_definition
        .iter()
        .copied()
        .filter(|(_, _, j)| fits(j))
        .collect();
    let describe = |jobs: &[&RenderedJob]| {
        jobs.iter()
            .map(|(name, _, j)| {
                format!(
                    "{name} ({})",
                    label(j, klt_render::job::LABEL_PHASE).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match fitting.as_slice() {
        [one] => Ok(Some(one)),
        [] => bail!(
            "no evaluation Job of {} fits the options; there are: {}",
            w.definition,
            describe(&of_definition)
        ),
        many => bail!(
            "{} is evaluated by several Jobs: {}; pass --app, --workload or --phase to pick one",
            w.definition,
            describe(many)
        ),
    }
}

/// A Secret of the input: `data` (base64) and `stringData` keys, by name and namespace.
pub type SecretLookup<'a> = dyn Fn(&str) -> Option<Value> + 'a;

/// `--dry-run`: the env and the command line, one per line (the env holds no secret value:
/// credentials stay files under secretDir).
pub fn print(l: &Launch) -> ExitCode {
    println!("# {}", l.banner);
    for (name, value) in &l.env {
        let value = value.to_string_lossy();
        println!("{name}={}", super::prepare::shell_quote(&value));
    }
    let mut words = vec![super::prepare::shell_quote(
        &l.evaluator.display().to_string(),
    )];
    words.extend(l.args.iter().map(|a| super::prepare::shell_quote(a)));
    println!("{}", words.join(" "));
    ExitCode::SUCCESS
}

/// `run EVALUATION-DEFINITION`: the Job's container with its provider Secrets written under
/// `root` from the input (`secret_of`), the termination log there too.
pub fn local_launch(
    evaluator: PathBuf,
    job: &RenderedJob,
    root: &Path,
    secret_of: &SecretLookup<'_>,
    provider_url: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<Launch> {
    let (name, _, json) = job;
    let pod = &json["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = super::prepare::container_env(container);
    let mut relocate = |dir: &str| -> anyhow::Result<String> {
        if dry_run {
            // Printed as the Job has it; nothing is written.
            return Ok(dir.to_string());
        }
        let local = in_root(root, dir);
        std::fs::create_dir_all(&local)
            .with_context(|| format!("{}: cannot create", local.display()))?;
        let (secret, optional) = mounted_secret(pod, container, dir)
            .with_context(|| format!("the Job mounts no Secret at secretDir {dir}"))?;
        match secret_of(&secret) {
            Some(s) => write_secret(&secret, &s, &local)?,
            None if optional => {}
            None => bail!(
                "provider credentials come from Secret {secret:?}, which is not in the input; add its manifest to the paths (it is read, never printed)"
            ),
        }
        Ok(local.display().to_string())
    };
    let log = if dry_run {
        PathBuf::from(TERMINATION_LOG)
    } else {
        in_root(root, TERMINATION_LOG)
    };
    if !dry_run {
        std::fs::create_dir_all(log.parent().expect("has a parent"))?;
    }
    let env = container_env(&env, &mut relocate, &log)?;
    let against = provider_url.map_or("its providers".to_string(), str::to_string);
    let mut args = vec![];
    if let Some(url) = provider_url {
        args = vec!["--provider-url".to_string(), url.to_string()];
    }
    Ok(Launch {
        banner: format!(
            "evaluation Job {name} against {against} ({})",
            evaluator.display()
        ),
        evaluator,
        env,
        args,
    })
}

/// The Secret volume (name, optional) the container mounts at `dir`.
fn mounted_secret(pod: &Value, container: &Value, dir: &str) -> Option<(String, bool)> {
    let mounts = container["volumeMounts"].as_array()?;
    let mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    let secret = &volume["secret"];
    Some((
        secret["secretName"].as_str()?.to_string(),
        secret["optional"].as_bool().unwrap_or(false),
    ))
}

/// The Secret's keys as files, as a secret volume holds them.
fn write_secret(name: &str, secret: &Value, dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (key, v) in secret["data"].as_object().into_iter().flatten() {
        let bytes = super::prepare::base64_decode(v.as_str().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("Secret {name:?}: data.{key} is {e}"))?;
        files.push((key.clone(), bytes));
    }
    for (key, v) in secret["stringData"].as_object().into_iter().flatten() {
        files.push((
            key.clone(),
            v.as_str().unwrap_or_default().as_bytes().to_vec(),
        ));
    }
    for (key, bytes) in files {
        if key.contains('/') || key.starts_with('.') {
            bail!("Secret {name:?}: key {key:?} cannot be a file name");
        }
        std::fs::write(dir.join(&key), bytes)
            .with_context(|| format!("{}: cannot write", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_dirs_move_and_key_order_stays() {
        let json = r#"{"name":"e","namespace":"n","objectives":[{"name":"a","query":"q","evaluationTarget":">1","provider":{"name":"p","type":"prometheus","targetServer":"http://p","secretDir":"/var/run/klt-evaluate/providers/p","secretKey":"k"}},{"name":"b","query":"q","evaluationTarget":"<1","provider":{"name":"q","type":"prometheus","targetServer":"http://q"}}]}"#;
        let root = Path::new("/tmp/r");
        let moved = relocate_secret_dirs(json, &mut |d| Ok(in_root(root, d).display().to_string()))
            .unwrap();
        assert_eq!(
            moved,
            json.replace(
                "\"/var/run/klt-evaluate/providers/p\"",
                "\"/tmp/r/var/run/klt-evaluate/providers/p\""
            )
        );
        assert!(relocate_secret_dirs("{", &mut |d| Ok(d.into())).is_err());
    }

    fn job(
        name: &str,
        definition: &str,
        app: &str,
        workload: Option<&str>,
        phase: &str,
    ) -> RenderedJob {
        let mut labels = serde_json::json!({
            LABEL_DEFINITION: definition,
            "klt-render.dev/app": app,
            "klt-render.dev/phase": phase,
        });
        if let Some(w) = workload {
            labels["klt-render.dev/workload"] = w.into();
        }
        (
            name.to_string(),
            None,
            serde_json::json!({"metadata": {"labels": labels}}),
        )
    }

    fn wanted<'a>(
        definition: &'a str,
        app: Option<&'a str>,
        workload: Option<&'a str>,
        phase: Option<&'a str>,
    ) -> Wanted<'a> {
        Wanted {
            definition,
            app,
            workload,
            phase,
        }
    }

    #[test]
    fn pick_chooses_the_one_fitting_use() {
        let jobs = vec![
            job("pre-eval-gate-a", "gate", "shop", None, "app-pre"),
            job("post-eval-gate-b", "gate", "shop", None, "app-post"),
            job(
                "pre-eval-gate-c",
                "gate",
                "shop",
                Some("shop-cart"),
                "workload-pre",
            ),
            job("pre-eval-other-d", "other", "shop", None, "app-pre"),
            job("notify-e", "", "shop", None, "app-pre"),
        ];
        let name = |w: Wanted| pick(&jobs, &w).map(|j| j.map(|j| j.0.clone()));
        assert_eq!(
            name(wanted("other", None, None, None)).unwrap().as_deref(),
            Some("pre-eval-other-d")
        );
        assert_eq!(name(wanted("nope", None, None, None)).unwrap(), None);
        assert_eq!(
            name(wanted("gate", None, None, Some("post")))
                .unwrap()
                .as_deref(),
            Some("post-eval-gate-b")
        );
        // A workload by its own name or as <app>-<workload>.
        assert_eq!(
            name(wanted("gate", Some("shop"), Some("cart"), None))
                .unwrap()
                .as_deref(),
            Some("pre-eval-gate-c")
        );
        assert_eq!(
            name(wanted("gate", None, Some("shop-cart"), None))
                .unwrap()
                .as_deref(),
            Some("pre-eval-gate-c")
        );
        assert_eq!(
            name(wanted("gate", None, Some("cart"), None))
                .unwrap()
                .as_deref(),
            Some("pre-eval-gate-c")
        );
        assert_eq!(
            name(wanted("gate", None, None, Some("pre")))
                .unwrap_err()
                .to_string(),
            "gate is evaluated by several Jobs: pre-eval-gate-a (app-pre), pre-eval-gate-c (workload-pre); pass --app, --workload or --phase to pick one"
        );
        assert_eq!(
            name(wanted("gate", Some("billing"), None, None))
                .unwrap_err()
                .to_string(),
            "no evaluation Job of gate fits the options; there are: pre-eval-gate-a (app-pre), post-eval-gate-b (app-post), pre-eval-gate-c (workload-pre)"
        );
    }

    #[test]
    fn the_env_keeps_its_order_and_gets_the_termination_log() {
        let env = vec![
            ("A".to_string(), EnvSource::Value("1".into())),
            (
                ENV.to_string(),
                EnvSource::Value(r#"{"objectives":[]}"#.into()),
            ),
            (
                TERMINATION_LOG_ENV.to_string(),
                EnvSource::Value("/x".into()),
            ),
        ];
        let out = container_env(
            &env,
            &mut |d| Ok(d.into()),
            Path::new("/r/dev/termination-log"),
        )
        .unwrap();
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["A", ENV, TERMINATION_LOG_ENV]);
        assert_eq!(out[2].1, "/r/dev/termination-log");
        let secret = vec![(ENV.to_string(), EnvSource::Secret("s".into(), "k".into()))];
        assert!(container_env(&secret, &mut |d| Ok(d.into()), Path::new("/l")).is_err());
    }
}
