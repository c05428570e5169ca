//! One evaluation use becomes one Job that runs `klt-evaluate` (the Job contract of issue
//! 12): named `<pre|post>-eval-<definition>-<hash>`, labelled like task Jobs but with the
//! evaluation definition and `klt-render.dev/kind: evaluation`, its input in
//! `KLT_EVALUATION` and each provider's Secret mounted by reference, never by value.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::diag::{Diagnostic, Severity};
use crate::evaluation::{Resolved, secret_dir};
use crate::hash;
use crate::job::{self, TaskRun};
use crate::model::Phase;
use crate::options::Options;
use crate::waves::Placement;

pub const LABEL_EVALUATION: &str = "klt-render.dev/evaluation-definition";
pub const LABEL_KIND: &str = "klt-render.dev/kind";
pub const ENV_EVALUATION: &str = "KLT_EVALUATION";

/// A rendered evaluation Job; its text is written from `object` with the ordering
/// annotations already set.
#[derive(Debug)]
pub struct EvaluationJob {
    pub phase: Phase,
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
    /// The provider Secrets the Job mounts: `(kind, lookup namespace, name)`, as task uses.
    pub uses: Vec<(&'static str, String, String)>,
}

/// The labels of an evaluation Job: a task Job's, with the evaluation definition instead of
/// the task definition.
pub fn labels(run: &TaskRun<'_>) -> BTreeMap<&'static str, String> {
    let mut l = job::own_labels(run);
    l.remove(job::LABEL_DEFINITION);
    if let Some(v) = job::label_value(&run.definition.value) {
        l.insert(LABEL_EVALUATION, v);
    }
    l.insert(LABEL_KIND, "evaluation".into());
    l
}

/// Builds the Job of one evaluation use (`run.name_base()` is `<pre|post>-eval-<definition>`).
pub fn render(
    run: &TaskRun<'_>,
    resolved: &Resolved<'_>,
    opts: &Options,
    placement: &Placement,
    diags: &mut Vec<Diagnostic>,
) -> Option<EvaluationJob> {
    let labels = json!(labels(run));
    let ctx = &run.context;
    let mut annotations = serde_json::Map::new();
    annotations.insert("keptn.sh/app".into(), json!(&*ctx.app_name));
    if ctx.workload_name.is_empty() {
        annotations.insert("keptn.sh/version".into(), json!(&*ctx.app_version));
    } else {
        annotations.insert("keptn.sh/workload".into(), json!(&*ctx.workload_name));
        annotations.insert("keptn.sh/version".into(), json!(&*ctx.workload_version));
    }
    if !secrets_in_reach(run, resolved, diags) {
        return None;
    }
    let secrets = resolved.secrets();
    let mut container = json!({
        "name": "evaluator",
        "image": opts.evaluator_image(),
        "env": [{"name": ENV_EVALUATION, "value": resolved.to_json()}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut uses = Vec::new();
    for (provider, (secret, optional)) in &secrets {
        let name = volume_name(provider);
        let mut source = json!({"secretName": secret});
        if let Some(o) = optional {
            source["optional"] = json!(o);
        }
        volumes.push(json!({"name": name, "secret": source}));
        mounts.push(json!({"name": name, "mountPath": secret_dir(provider), "readOnly": true}));
        uses.push(("Secret", run.lookup_namespace.clone(), secret.to_string()));
    }
    if !mounts.is_empty() {
        container["volumeMounts"] = Value::Array(mounts);
    }
    let mut pod = serde_json::Map::new();
    pod.insert("restartPolicy".into(), json!("Never"));
    if !volumes.is_empty() {
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    pod.insert("containers".into(), json!([container]));
    let mut metadata = serde_json::Map::new();
    if let Some(ns) = &run.namespace {
        metadata.insert("namespace".into(), json!(ns));
    }
    metadata.insert("labels".into(), labels.clone());
    metadata.insert("annotations".into(), Value::Object(annotations));
    let mut object = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    });
    let name = job_name(run, &object);
    if !job::is_dns_label(&name) {
        diags.push(invalid_name(run, &name));
        return None;
    }
    name_and_place(&mut object, &name, run.phase, placement);
    Some(EvaluationJob {
        phase: run.phase,
        namespace: run.namespace.clone(),
        name,
        object,
        uses,
    })
}

/// The name hashes the whole Job (with its `KLT_EVALUATION`) and, for app-level
/// evaluations, the app revision, as task Job names do.
fn job_name(run: &TaskRun<'_>, object: &Value) -> String {
    let mut digest_input = crate::gojson::value(object);
    if let Some(spec) = &run.app_spec {
        digest_input.push_str("\napp=");
        digest_input.push_str(spec);
    }
    format!(
        "{}-{}",
        job::truncate_name(&run.name_base(), 63 - 11),
        hash::short(digest_input.as_bytes())
    )
}

/// The name first in metadata (as task Jobs have it), `keptn.sh/evaluation-name` and the
/// ordering annotations.
fn name_and_place(object: &mut Value, name: &str, phase: Phase, placement: &Placement) {
    let Some(meta) = object["metadata"].as_object_mut() else {
        return;
    };
    let mut named = serde_json::Map::new();
    named.insert("name".into(), json!(name));
    named.extend(std::mem::take(meta));
    if let Some(ann) = named["annotations"].as_object_mut() {
        ann.insert("keptn.sh/evaluation-name".into(), json!(name));
        let wave = placement.evaluation_wave(phase);
        for (k, v) in placement.ordering_annotations_at(wave, phase, true) {
            ann.insert(k.into(), json!(v));
        }
    }
    *meta = named;
}

/// A pod mounts Secrets of its own namespace only: a provider with a `secretKeyRef` in
/// another namespace than the evaluation's could never start the Job (Keptn's metrics
/// operator reads the Secret in the provider's namespace instead).
fn secrets_in_reach(
    run: &TaskRun<'_>,
    resolved: &Resolved<'_>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let mut ok = true;
    for o in &resolved.objectives {
        let p = o.provider;
        let (Some((secret, _, _)), Some(ns)) = (&p.secret, p.doc.namespace.as_deref()) else {
            continue;
        };
        if run.lookup_namespace.is_empty() || ns == run.lookup_namespace {
            continue;
        }
        ok = false;
        let pos = p.secret_pos;
        diags.push(p.doc.diag(
            "KLT067",
            Severity::Error,
            pos,
            Some("spec.secretKeyRef".into()),
            format!(
                "the evaluation Job of {:?} runs in namespace {:?} and cannot mount Secret {secret:?} of namespace {ns:?}",
                run.definition.value, run.lookup_namespace
            ),
            Some("put the KeptnMetricsProvider and its Secret in the evaluation's namespace (a pod mounts Secrets of its own namespace only)".into()),
        ));
    }
    ok
}

/// A volume name is a DNS label: the provider's name when it is one, else a hash of it.
fn volume_name(provider: &str) -> String {
    let name = format!("provider-{provider}");
    if name.len() <= 63 && !name.contains('.') {
        name
    } else {
        format!("provider-{}", hash::short(provider.as_bytes()))
    }
}

fn invalid_name(run: &TaskRun<'_>, name: &str) -> Diagnostic {
    run.source.diag(
        "KLT027",
        Severity::Error,
        run.definition.pos,
        Some(run.definition.field.clone()),
        format!(
            "the Job name {name:?} derived from {:?} is not a valid Kubernetes name",
            run.name_base()
        ),
        Some("use lowercase letters, digits, '-' and '.' in evaluation definition names".into()),
    )
}
