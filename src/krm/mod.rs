//! klt-render inside a kustomize (or kpt) build: the pure side of `klt-render krm`.
//!
//! Two wire formats, one transformation ([`transform`]):
//!
//! - **KRM function** (`klt-render krm`): a `config.kubernetes.io/v1` ResourceList (YAML or
//!   JSON) on stdin, a ResourceList on stdout, written the way the input was. Options come
//!   from `functionConfig` ([`config`]). kustomize runs it as a container function (or, in the
//!   standalone kustomize with `--enable-exec`, as an exec function).
//! - **Legacy exec plugin** (`klt-render krm --legacy-config FILE`): kustomize runs the plugin
//!   executable `<plugin home>/klt-render.dev/v1alpha1/kltrender/KltRender` with the config
//!   file as its first argument and the resources as a plain YAML stream on stdin, and reads a
//!   plain YAML stream back. The executable is a small wrapper script
//!   (`deploy/kustomize/plugin/...`) that execs this command. kubectl's built-in kustomize runs
//!   these under `--enable-alpha-plugins`.
//!
//! Keptn resources are consumed, the generated Jobs and ConfigMaps are added, every other item
//! is returned as it came, with the orchestrator's annotations.
//!
//! On errors the exit status is 2 and stderr says what is wrong (kustomize shows a function's
//! stderr, never its `results`). A ResourceList run still writes a ResourceList to stdout, as
//! kyaml's function framework does: the input items unchanged, plus `results`, for
//! orchestrators such as kpt that read them; kustomize discards it. A legacy plugin run writes
//! nothing to stdout. When stdin cannot be read as a ResourceList at all, stdout stays empty.
//! An input without Keptn resources comes back unchanged, an empty one comes back empty, and a
//! non-empty input never comes back empty (kustomize would delete every resource).

//!
//! Everything here is text in, text out, so that tests and fuzz targets reach the whole KRM
//! path without a process; the binary's `cli::krm` only reads stdin and the config file and
//! turns the outcome into an exit status.

pub mod config;
pub mod transform;
pub mod wire;

use serde_json::Value;

use transform::Outcome;
use wire::Finding;

/// A KRM function run: `(stdout, stderr, success)`.
pub fn resource_list(stdin: &str) -> (Option<String>, String, bool) {
    let rl = match wire::parse_resource_list(stdin) {
        Ok(rl) => rl,
        Err(e) => return (None, format!("klt-render krm: error: {e}\n"), false),
    };
    let outcome = transform::transform(&rl.items, rl.function_config.as_ref(), "items");
    let results: Vec<Value> = outcome.findings.iter().map(Finding::to_result).collect();
    let stderr = human(
        &outcome,
        "nothing was rendered (stdout holds the input items unchanged, with the results)",
    );
    match &outcome.items {
        Some(items) => (
            Some(wire::write_resource_list(&rl, items, &results)),
            stderr,
            true,
        ),
        None => (
            Some(wire::write_resource_list(&rl, &rl.items, &results)),
            stderr,
            false,
        ),
    }
}

/// A legacy exec plugin run: config file text and stdin stream → `(stdout, stderr, success)`.
pub fn legacy(config_text: &str, stdin: &str) -> (Option<String>, String, bool) {
    let config = match wire::parse_stream(config_text) {
        Ok(mut docs) if docs.len() == 1 => docs.remove(0),
        Ok(docs) => {
            return (
                None,
                format!(
                    "klt-render krm: error: the plugin config holds {} documents; expected one KltRender\n",
                    docs.len()
                ),
                false,
            );
        }
        Err(e) => {
            return (
                None,
                format!(
                    "klt-render krm: error: plugin config: {}\n",
                    e.replacen("stdin", "config", 1)
                ),
                false,
            );
        }
    };
    let items = match wire::parse_stream(stdin) {
        Ok(items) => items,
        Err(e) => return (None, format!("klt-render krm: error: {e}\n"), false),
    };
    if items.is_empty() {
        // kustomize runs a legacy generator with empty stdin.
        return (
            Some(String::new()),
            "klt-render krm: warning: no resources on stdin: a generator sees none; list the KltRender config under transformers: instead\n".into(),
            true,
        );
    }
    let outcome = transform::transform(&items, Some(&config), "resources");
    let stderr = human(&outcome, "nothing was rendered");
    match &outcome.items {
        Some(out) => (Some(wire::write_stream(out)), stderr, true),
        None => (None, stderr, false),
    }
}

fn human(outcome: &Outcome, on_error: &str) -> String {
    let mut s: String = outcome.findings.iter().map(Finding::human).collect();
    let errors = outcome.errors();
    if errors > 0 {
        s.push_str(&format!("klt-render krm: {errors} error(s); {on_error}\n"));
        if outcome
            .findings
            .iter()
            .any(|f| f.code.is_some() && f.object.is_some() && f.file.is_none())
        {
            s.push_str(ORIGIN_NOTE);
        }
    }
    s
}

/// kustomize tells a function where an object came from only when the kustomization asks it
/// to; without that, a finding names the object but no file.
const ORIGIN_NOTE: &str = "klt-render krm: note: for file names in these messages, add `buildMetadata: [originAnnotations]` to the kustomization\n";

#[cfg(test)]
mod tests {
    use super::*;

    const DEFINITION: &str = "apiVersion: lifecycle.keptn.sh/v1
  kind: KeptnTaskDefinition
  metadata:
    name: hello
    annotations:
      config.kubernetes.io/index: '1'
  spec:
    deno:
      inline:
        code: console.log(1)";

    fn rl(items: &[&str], function_config: &str) -> String {
        let mut s =
            String::from("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n");
        for i in items {
            s.push_str("- ");
            s.push_str(i);
            s.push('\n');
        }
        s.push_str(function_config);
        s
    }

    const SERVICE: &str = "apiVersion: v1
  kind: Service
  metadata:
    name: svc
    annotations:
      kustomize.config.k8s.io/id: |
        kind: Service
        name: svc
        version: v1
      config.kubernetes.io/index: '0'
  spec:
    ports:
    - port: 80";

    const TASK: &str = "apiVersion: lifecycle.keptn.sh/v1
  kind: KeptnTask
  metadata:
    name: run
  spec:
    taskDefinition: hello
    context: {appName: a, appVersion: '1', objectType: '', taskType: '', workloadName: '', workloadVersion: ''}";

    const CONFIG: &str = "functionConfig:
  apiVersion: klt-render.dev/v1alpha1
  kind: KltRender
  metadata:
    name: klt
  spec:
    namespace: demo
";

    #[test]
    fn resource_list_success() {
        let (out, err, ok) = resource_list(&rl(&[SERVICE, DEFINITION, TASK], CONFIG));
        assert!(ok, "{err}");
        assert_eq!(err, "");
        let back = wire::parse_resource_list(&out.unwrap()).unwrap();
        let input = wire::parse_resource_list(&rl(&[SERVICE], "")).unwrap();
        let kinds: Vec<&str> = back
            .items
            .iter()
            .map(|i| i["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["ConfigMap", "Job", "Service"]);
        assert_eq!(back.items[2], input.items[0]);
    }

    #[test]
    fn resource_list_errors_return_the_input_and_results() {
        let text = rl(&[SERVICE, TASK], CONFIG);
        let (out, err, ok) = resource_list(&text);
        assert!(!ok);
        assert!(err.contains("error[KLT020]"), "{err}");
        assert!(
            err.ends_with(&format!("1 error(s); nothing was rendered (stdout holds the input items unchanged, with the results)\n{ORIGIN_NOTE}")),
            "{err}"
        );
        // With kustomize's origin annotation the finding names the file, and the note goes.
        let with_origin = TASK.replace(
            "  metadata:\n",
            "  metadata:\n    annotations:\n      config.kubernetes.io/origin: |\n        path: base/tasks.yaml\n",
        );
        let (_, err2, _) = resource_list(&rl(&[SERVICE, &with_origin], CONFIG));
        assert!(err2.contains("(from base/tasks.yaml)"), "{err2}");
        assert!(!err2.contains("buildMetadata"), "{err2}");
        let out = out.unwrap();
        let back = wire::parse_resource_list(&out).unwrap();
        assert_eq!(back.items, wire::parse_resource_list(&text).unwrap().items);
        let raw = wire::parse_stream(&out).unwrap().remove(0);
        let results = raw["results"].as_array().unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0]["severity"], "error");
        assert_eq!(results[0]["resourceRef"]["kind"], "KeptnTask");
        assert_eq!(results[0]["field"]["path"], "spec.taskDefinition");
    }

    #[test]
    fn unreadable_stdin_writes_nothing() {
        let (out, err, ok) = resource_list("kind: [\n");
        assert!(!ok && out.is_none());
        assert!(err.starts_with("klt-render krm: error: stdin:"), "{err}");
    }

    #[test]
    fn legacy_plugin_streams() {
        let config = "apiVersion: klt-render.dev/v1alpha1\nkind: KltRender\nmetadata:\n  name: klt\nspec:\n  namespace: demo\n";
        let unindent = |s: &str| s.replace("\n  ", "\n");
        let stdin = format!(
            "{}\n---\n{}\n---\n{}\n",
            unindent(SERVICE),
            unindent(DEFINITION),
            unindent(TASK)
        );
        let (out, err, ok) = legacy(config, &stdin);
        assert!(ok, "{err}");
        let docs = wire::parse_stream(&out.unwrap()).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[2], wire::parse_stream(&unindent(SERVICE)).unwrap()[0]);
        // Errors: nothing on stdout.
        let stdin = format!("{}\n---\n{}\n", unindent(SERVICE), unindent(TASK));
        let (out, err, ok) = legacy(config, &stdin);
        assert!(!ok && out.is_none());
        assert!(
            err.contains("error[KLT020]") && err.contains("nothing was rendered"),
            "{err}"
        );
        // A generator gets empty stdin and gives nothing back.
        let (out, err, ok) = legacy(config, "");
        assert!(ok);
        assert_eq!(out.as_deref(), Some(""));
        assert!(err.contains("transformers:"), "{err}");
        // A bad config.
        let (out, err, ok) = legacy(
            "apiVersion: klt-render.dev/v1alpha1\nkind: KltRender\nspec: {mdoe: x}\n",
            &stdin,
        );
        assert!(!ok && out.is_none());
        assert!(err.contains("did you mean \"mode\""), "{err}");
    }
}
