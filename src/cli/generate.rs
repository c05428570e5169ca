//! `klt-render generate`: the Argo CD config-management plugin command.
//!
//! argocd-cmp-server runs it with the app directory as working directory and the request in
//! the environment (argocd-cmp.md §1.5). Options come, in this order, from the Application's
//! plugin parameters (`ARGOCD_APP_PARAMETERS`, else `PARAM_*`), its plugin env
//! (`ARGOCD_ENV_KLT_*`), the sidecar's own env (`KLT_*`) and, for the namespace, the
//! destination namespace (`ARGOCD_APP_NAMESPACE`). On failure stdout stays empty and stderr
//! gets one short line, because Argo CD shows stderr verbatim in its UI.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::ArgMatches;
use klt_render::Options;
use klt_render::options::SPECS;

use super::{EXIT_BAD_INPUT, input, report, write_stdout};

/// The request environment, as a lookup (tests pass a map; `run` passes the process env).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let app = app_label(&env);
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    let outcome = unknown_plugin_env(&names).and_then(|()| generate(m.contains_id("stdin"), &env));
    match outcome {
        Ok(Outcome::Rendered(yaml)) => {
            write_stdout(yaml.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(Outcome::Failed(line)) => {
            eprintln!("klt-render{app}: {line}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
        Err(e) => {
            eprintln!("klt-render{app}: {e:#}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
    }
}

pub enum Outcome {
    Rendered(String),
    Failed(String),
}

pub fn generate(from_stdin: bool, env: Env<'_>) -> anyhow::Result<Outcome> {
    let opts = plugin_options(env)?;
    check_cluster(&opts, env)?;
    let files = if from_stdin {
        input::gather(&[PathBuf::from("-")], None, &opts.limits)?
    } else {
        let cwd = std::env::current_dir().context("no working directory")?;
        let root = repo_root(&cwd, env)?;
        input::gather(
            &[PathBuf::from(".")],
            Some((&root, "the repository checkout")),
            &opts.limits,
        )?
    };
    Ok(klt_render::render::render_with(&files, &opts, |out| {
        if out.has_errors() {
            return Outcome::Failed(report::single_line(&out.diagnostics));
        }
        // Argo CD takes an empty render as "the app has no resources" and prunes them all.
        if out.is_empty() {
            return Outcome::Failed(format!(
                "no Kubernetes objects in {} ({} file(s) read); refusing an empty render, which would make Argo CD prune the app",
                if from_stdin {
                    "stdin"
                } else {
                    "the app directory"
                },
                files.len()
            ));
        }
        // Warnings are not shown by Argo CD on success, but they reach the sidecar log.
        report::human(&out.diagnostics);
        Outcome::Rendered(out.to_yaml())
    }))
}

/// ` (app NAME in NAMESPACE)` for messages; apps outside Argo CD's namespace arrive as
/// `<namespace>_<name>`.
fn app_label(env: Env<'_>) -> String {
    match env("ARGOCD_APP_NAME").filter(|s| !s.is_empty()) {
        Some(full) => match full.split_once('_') {
            Some((ns, name)) => format!(" (app {name} in {ns})"),
            None => format!(" (app {full})"),
        },
        None => String::new(),
    }
}

/// The repository checkout: the working directory minus `ARGOCD_APP_SOURCE_PATH`. Reads are
/// confined to it; a source path with `..` is refused.
fn repo_root(cwd: &Path, env: Env<'_>) -> anyhow::Result<PathBuf> {
    let source = env("ARGOCD_APP_SOURCE_PATH").unwrap_or_default();
    let source = Path::new(&source);
    let mut depth = 0;
    for c in source.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => bail!(
                "ARGOCD_APP_SOURCE_PATH {:?} leaves the repository; use a path inside it",
                source.display()
            ),
        }
    }
    let mut root = cwd.to_path_buf();
    for _ in 0..depth {
        root = root
            .parent()
            .map(Path::to_path_buf)
            .context("ARGOCD_APP_SOURCE_PATH is deeper than the working directory")?;
    }
    Ok(root)
}

/// `PARAM_<NAME>` as Argo CD escapes it: upper case, anything outside `[A-Z0-9_]` -> `_`.
fn param_env_name(name: &str) -> String {
    let escaped: String = name
        .to_ascii_uppercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("PARAM_{escaped}")
}

/// Reads options from the plugin environment.
pub fn plugin_options(env: Env<'_>) -> anyhow::Result<Options> {
    let params = parameters(env)?;
    let get = |name: &str| -> Option<String> {
        let spec = SPECS.iter().find(|s| s.name == name)?;
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let from_params = match &params {
            Some(list) => list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()),
            None => env(&param_env_name(name)),
        };
        nonempty(from_params)
            .or_else(|| nonempty(env(&format!("ARGOCD_ENV_{}", spec.env))))
            .or_else(|| nonempty(env(spec.env)))
            .or_else(|| {
                (name == "namespace")
                    .then(|| env("ARGOCD_APP_NAMESPACE"))
                    .flatten()
            })
    };
    Ok(Options::from_settings(&get)?)
}

/// An Application's plugin env (`spec.source.plugin.env`) reaches the plugin as
/// `ARGOCD_ENV_<NAME>`: a `KLT_` name that is no option is a typo, refused like an unknown
/// plugin parameter rather than ignored.
fn unknown_plugin_env(names: &[String]) -> anyhow::Result<()> {
    let known: Vec<String> = SPECS
        .iter()
        .map(|s| format!("ARGOCD_ENV_{}", s.env))
        .collect();
    let mut unknown: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("ARGOCD_ENV_KLT_") && !known.contains(n))
        .collect();
    unknown.sort();
    let Some(name) = unknown.first() else {
        return Ok(());
    };
    let hint = klt_render::suggest::closest(name, known.iter().map(String::as_str))
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_else(|| "; see the README's option table for the KLT_* names".to_string());
    let env_name = name.trim_start_matches("ARGOCD_ENV_");
    bail!(
        "unknown plugin env {env_name:?} (as {name}){hint} (plugin env names are the KLT_* variables of the option table)"
    )
}

/// The Application's plugin parameters from `ARGOCD_APP_PARAMETERS` (`None` when absent or
/// `null`, so that `PARAM_*` are used). Only string parameters exist; unknown names are
/// refused with a suggestion rather than ignored.
fn parameters(env: Env<'_>) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let Some(raw) = env("ARGOCD_APP_PARAMETERS").filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_str(&raw)
        .context("ARGOCD_APP_PARAMETERS is not JSON (Argo CD writes a list of {name, string})")?;
    let Some(list) = value.as_array() else {
        if value.is_null() {
            return Ok(None);
        }
        bail!("ARGOCD_APP_PARAMETERS is not a list of parameters");
    };
    let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
    let mut out = Vec::new();
    for p in list {
        let name = p["name"].as_str().unwrap_or_default();
        if !names.contains(&name) {
            let hint = klt_render::suggest::closest(name, names.iter().copied())
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_else(|| format!("; known parameters: {}", names.join(", ")));
            bail!("unknown plugin parameter {name:?}{hint}");
        }
        let Some(v) = p["string"].as_str() else {
            bail!("plugin parameter {name:?} must be a string (not an array or map)");
        };
        out.push((name.to_string(), v.to_string()));
    }
    Ok(Some(out))
}

/// Checks what the destination cluster offers (`KUBE_API_VERSIONS`), where it matters.
fn check_cluster(opts: &Options, env: Env<'_>) -> anyhow::Result<()> {
    let Some(apis) = env("KUBE_API_VERSIONS").filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let has = |gv: &str| apis.split(',').any(|a| a == gv);
    if !has("batch/v1") {
        bail!(
            "the destination cluster does not serve batch/v1 (KUBE_API_VERSIONS); task Jobs cannot be applied"
        );
    }
    if opts.keep_keptn && !has("lifecycle.keptn.sh/v1") {
        bail!(
            "keep-keptn is set but the destination cluster has no Keptn CRDs (lifecycle.keptn.sh/v1 is not in KUBE_API_VERSIONS); unset keep-keptn"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn opts(pairs: &[(&str, &str)]) -> anyhow::Result<Options> {
        let map = env(pairs);
        plugin_options(&|k| map.get(k).cloned())
    }

    #[test]
    fn precedence_parameters_env_sidecar_destination() {
        let o = opts(&[
            ("ARGOCD_APP_NAMESPACE", "dest"),
            ("KLT_MODE", "hooks"),
            ("ARGOCD_ENV_KLT_PROFILE", "klt-0.9"),
            (
                "ARGOCD_APP_PARAMETERS",
                r#"[{"name":"profile","string":"klt-0.8"}]"#,
            ),
        ])
        .unwrap();
        assert_eq!(o.namespace.as_deref(), Some("dest"));
        assert_eq!(o.mode.to_string(), "hooks");
        assert_eq!(o.profile.name, "klt-0.8");
    }

    #[test]
    fn literal_null_parameters_fall_back_to_param_vars() {
        let o = opts(&[
            ("ARGOCD_APP_PARAMETERS", "null"),
            ("PARAM_DENO_IMAGE", "mirror/deno:3"),
        ])
        .unwrap();
        assert_eq!(o.deno_image.as_deref(), Some("mirror/deno:3"));
        assert_eq!(
            param_env_name("hook-delete-policy"),
            "PARAM_HOOK_DELETE_POLICY"
        );
    }

    #[test]
    fn unknown_klt_plugin_env_is_refused_with_a_suggestion() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            unknown_plugin_env(&names(&["ARGOCD_ENV_KLT_PROFILE", "ARGOCD_ENV_OTHER"])).is_ok()
        );
        let err = unknown_plugin_env(&names(&["ARGOCD_ENV_KLT_PROFLE"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown plugin env \"KLT_PROFLE\" (as ARGOCD_ENV_KLT_PROFLE); did you mean \"ARGOCD_ENV_KLT_PROFILE\"? (plugin env names are the KLT_* variables of the option table)"
        );
    }

    #[test]
    fn unknown_or_non_string_parameters_are_refused() {
        let e =
            opts(&[("ARGOCD_APP_PARAMETERS", r#"[{"name":"mdoe","string":"x"}]"#)]).unwrap_err();
        assert!(e.to_string().contains("did you mean \"mode\""), "{e}");
        let e = opts(&[(
            "ARGOCD_APP_PARAMETERS",
            r#"[{"name":"mode","array":["x"]}]"#,
        )])
        .unwrap_err();
        assert!(e.to_string().contains("must be a string"), "{e}");
        let e = opts(&[(
            "ARGOCD_APP_PARAMETERS",
            r#"[{"name":"mode","string":"wave"}]"#,
        )])
        .unwrap_err();
        assert!(e.to_string().contains("option mode"), "{e}");
    }

    /// plugin.yaml's parameter announcements are the option table, in order.
    #[test]
    fn plugin_yaml_announces_the_option_table() {
        let text = include_str!("../../plugin.yaml");
        let chunk = &klt_render::yaml::split_stream(text)[0];
        let doc = klt_render::yaml::parse_document(chunk)
            .unwrap()
            .unwrap()
            .to_json();
        assert_eq!(doc["kind"], "ConfigManagementPlugin");
        assert_eq!(doc["metadata"]["name"], "klt-render");
        assert!(doc["spec"].get("version").is_none(), "no spec.version");
        assert_eq!(
            doc["spec"]["generate"]["command"],
            serde_json::json!(["klt-render", "generate"])
        );
        let announced = doc["spec"]["parameters"]["static"].as_array().unwrap();
        assert_eq!(announced.len(), SPECS.len());
        for (a, spec) in announced.iter().zip(SPECS) {
            assert_eq!(a["name"], spec.name);
            assert_eq!(a["tooltip"], spec.help, "{}", spec.name);
            assert_eq!(a["string"], spec.default, "{}", spec.name);
        }
    }

    #[test]
    fn app_names_in_any_namespace() {
        let map = env(&[("ARGOCD_APP_NAME", "team-a_checkout")]);
        assert_eq!(
            app_label(&|k| map.get(k).cloned()),
            " (app checkout in team-a)"
        );
    }

    #[test]
    fn source_path_must_stay_inside() {
        let map = env(&[("ARGOCD_APP_SOURCE_PATH", "apps/../../etc")]);
        assert!(repo_root(Path::new("/tmp/x/apps"), &|k| map.get(k).cloned()).is_err());
        let map = env(&[("ARGOCD_APP_SOURCE_PATH", "apps/checkout")]);
        assert_eq!(
            repo_root(Path::new("/tmp/r/apps/checkout"), &|k| map.get(k).cloned()).unwrap(),
            Path::new("/tmp/r")
        );
    }
}
