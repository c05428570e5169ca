//! What Keptn would not read of the keys on a workload object (Deployment, StatefulSet,
//! DaemonSet, Rollout), said in located diagnostics instead of passing in silence:
//!
//! - KLT032: a Keptn key on the metadata Keptn does not read (the object's own while the pod
//!   template carries the workload name, or the pod template's where the object's replaces it);
//! - KLT033: Keptn keys in an `annotations`/`labels` map outside any metadata;
//! - KLT034: an unknown `keptn.sh/` key, with a did-you-mean against Keptn's real key list;
//! - KLT035: a Keptn key as a label that the API server rejects, or that an annotation overrides;
//! - KLT036: task lists on an object that Keptn does not see as a workload at all.
//!
//! Each is an error when listed tasks would certainly never run, a warning otherwise. Which
//! metadata Keptn reads is [`crate::workload`]'s rule.

use crate::diag::{Diagnostic, Severity};
use crate::document::{Doc, scalar_string};
use crate::model::Spanned;
use crate::workload::{
    self, APP, CONTAINER, K8S_NAME, K8S_PART_OF, K8S_VERSION, METADATA, Meta, OTHER_KEPTN_KEYS,
    POST_EVALUATIONS, POST_TASKS, PRE_EVALUATIONS, PRE_TASKS, VERSION, WORKLOAD, WORKLOAD_KEYS,
};
use std::borrow::Cow;

/// Every finding about the Keptn keys of `doc`; nothing for objects that are no workload kind.
pub fn check(doc: &Doc<'_>, diags: &mut Vec<Diagnostic>) {
    if !workload::is_workload_kind(doc) {
        return;
    }
    outside_metadata(doc, diags);
    let (pod, obj) = workload::metas(doc);
    for meta in [&obj, &pod] {
        unknown_keys(doc, meta, diags);
        labels(doc, meta, diags);
    }
    match (pod.workload(), obj.workload()) {
        (Some(name), _) => ignored_object_keys(doc, &pod, &obj, &name, diags),
        (None, Some(_)) => ignored_pod_keys(doc, &pod, &obj, diags),
        (None, None) => tasks_without_workload(doc, &pod, &obj, diags),
    }
}

/// Keys whose loss changes what Keptn runs: the values it reads besides the task lists.
const SETTINGS: &[&str] = &[PRE_EVALUATIONS, POST_EVALUATIONS, CONTAINER, METADATA];

fn is_task_list(key: &str) -> bool {
    key == PRE_TASKS || key == POST_TASKS
}

/// Items of `ignored` that `used` does not list, quoted and joined.
fn lost_tasks(ignored: &Spanned<String>, used: Option<&Spanned<String>>) -> Option<String> {
    // A set: hostile lists can be long on both sides.
    let used: std::collections::HashSet<&str> =
        used.map_or_else(Default::default, |u| u.value.split(',').collect());
    let lost: Vec<String> = ignored
        .value
        .split(',')
        .filter(|t| !t.is_empty() && !used.contains(t))
        .map(|t| format!("{t:?}"))
        .collect();
    (!lost.is_empty()).then(|| lost.join(", "))
}

/// The pod template carries the workload name: the object's own Keptn keys are not read.
fn ignored_object_keys(
    doc: &Doc<'_>,
    pod: &Meta<'_>,
    obj: &Meta<'_>,
    name: &Spanned<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let kind = &doc.kind;
    let why = format!(
        "Keptn reads the pod template's metadata, which carries the workload name ({})",
        name.field
    );
    let mut report = |at: &Spanned<String>, severity, consequence: String| {
        let map = if at.field.contains(".labels.") {
            "labels"
        } else {
            "annotations"
        };
        let help = format!(
            "move it to spec.template.metadata.{map}; Keptn reads a {kind}'s own metadata only when the pod template has neither {WORKLOAD} nor {K8S_NAME}"
        );
        diags.push(doc.diag(
            "KLT032",
            severity,
            at.pos,
            Some(at.field.clone()),
            format!(
                "{} on the {kind}'s own metadata is ignored: {why}{consequence}",
                key_of(at)
            ),
            Some(Cow::from(help.clone())),
        ));
    };
    for key in [PRE_TASKS, POST_TASKS] {
        if let Some(v) = obj.one(key)
            && let Some(lost) = lost_tasks(&v, pod.one(key).as_ref())
        {
            report(&v, Severity::Error, format!("; {lost} would never run"));
        }
    }
    for key in SETTINGS {
        if let Some(v) = obj.one(key)
            && pod.one(key).is_none_or(|p| p.value != v.value)
        {
            report(&v, Severity::Warning, String::new());
        }
    }
    if let Some(v) = obj.one(WORKLOAD).filter(|v| v.value != name.value) {
        let used = format!("; the workload is {:?}", name.value);
        report(&v, Severity::Warning, used);
    }
    for (v, used) in ignored_identity(pod, obj, name) {
        report(&v, Severity::Warning, used);
    }
}

/// The object's app and version values that differ from what Keptn uses, with what it uses.
fn ignored_identity(
    pod: &Meta<'_>,
    obj: &Meta<'_>,
    name: &Spanned<String>,
) -> Vec<(Spanned<String>, String)> {
    let mut out = Vec::new();
    if let Some(v) = obj.get(APP, K8S_PART_OF) {
        let used = pod.get(APP, K8S_PART_OF);
        let app = used.as_ref().map_or(&name.value, |u| &u.value);
        if *app != v.value {
            let what = format!("; the app is {app:?}");
            out.push((v, what));
        }
    }
    if let Some(v) = obj.get(VERSION, K8S_VERSION) {
        match pod.get(VERSION, K8S_VERSION) {
            Some(p) if p.value == v.value => {}
            Some(p) => out.push((v, format!("; the version is {:?}", p.value))),
            None => out.push((
                v,
                "; the pod template has no version, so Keptn computes one from its containers"
                    .into(),
            )),
        }
    }
    out
}

/// The pod template has no workload name, the object has: Keptn copies the object's non-empty
/// values onto the pod, replacing the pod template's, and always sets the version.
fn ignored_pod_keys(doc: &Doc<'_>, pod: &Meta<'_>, obj: &Meta<'_>, diags: &mut Vec<Diagnostic>) {
    let kind = &doc.kind;
    let help = format!(
        "keep one value, on the {kind}'s metadata; or give the pod template the workload name ({K8S_NAME}) so that Keptn reads the pod template's keys instead"
    );
    let mut report = |at: &Spanned<String>, by: &str, severity, consequence: String| {
        diags.push(doc.diag(
            "KLT032",
            severity,
            at.pos,
            Some(at.field.clone()),
            format!(
                "{} on the pod template is ignored: the pod template has no workload name, so Keptn copies the {kind}'s keys onto the pod and {by} replaces it{consequence}",
                key_of(at)
            ),
            Some(Cow::from(help.clone())),
        ));
    };
    for key in [PRE_TASKS, POST_TASKS] {
        if let (Some(p), Some(o)) = (pod.one(key), obj.one(key))
            && let Some(lost) = lost_tasks(&p, Some(&o))
        {
            let by = o.field.clone();
            report(
                &p,
                &by,
                Severity::Error,
                format!("; {lost} would never run"),
            );
        }
    }
    for key in [PRE_EVALUATIONS, POST_EVALUATIONS, METADATA] {
        if let (Some(p), Some(o)) = (pod.one(key), obj.one(key))
            && p.value != o.value
        {
            report(&p, &o.field.clone(), Severity::Warning, String::new());
        }
    }
    if let (Some(p), Some(o)) = (pod.get(APP, K8S_PART_OF), obj.get(APP, K8S_PART_OF))
        && p.value != o.value
    {
        report(&p, &o.field.clone(), Severity::Warning, String::new());
    }
    if let Some(p) = pod.one(CONTAINER)
        && obj.one(CONTAINER).is_none_or(|o| o.value != p.value)
    {
        let by = format!("the {kind}'s {CONTAINER} (or none)");
        report(&p, &by, Severity::Warning, String::new());
    }
    if let Some(p) = pod.get(VERSION, K8S_VERSION) {
        let by = match obj.get(VERSION, K8S_VERSION) {
            Some(o) if o.value == p.value => return,
            Some(o) => o.field,
            None => "the version computed from the containers".to_string(),
        };
        report(&p, &by, Severity::Warning, String::new());
    }
}

/// Task lists where Keptn finds no workload name: Keptn does not handle the object at all.
fn tasks_without_workload(
    doc: &Doc<'_>,
    pod: &Meta<'_>,
    obj: &Meta<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    let first = [pod, obj]
        .into_iter()
        .flat_map(|m| [m.one(PRE_TASKS), m.one(POST_TASKS)])
        .flatten()
        .next();
    if let Some(v) = first {
        diags.push(doc.diag(
            "KLT036",
            Severity::Error,
            v.pos,
            Some(v.field.clone()),
            format!(
                "the {} lists Keptn tasks, but neither its pod template nor its own metadata has a workload name, so Keptn ignores it and the tasks never run",
                doc.kind
            ),
            Some(Cow::from(format!(
                "add {K8S_NAME} (or {WORKLOAD}) to spec.template.metadata.labels"
            ))),
        ));
    }
}

/// The key of a value read by [`Meta::one`]: the last part of its field, after the map name.
fn key_of(v: &Spanned<String>) -> &str {
    ["annotations.", "labels."]
        .iter()
        .find_map(|m| v.field.rfind(m).map(|i| &v.field[i + m.len()..]))
        .unwrap_or(&v.field)
}

/// `keptn.sh/` keys that Keptn does not know.
fn unknown_keys(doc: &Doc<'_>, meta: &Meta<'_>, diags: &mut Vec<Diagnostic>) {
    for which in ["annotations", "labels"] {
        for e in meta.entries(which) {
            let key = e.key.as_ref();
            if !key.starts_with("keptn.sh/") || WORKLOAD_KEYS.contains(&key) {
                continue;
            }
            let field = Some(format!("{}.{which}.{key}", meta.field()));
            if key == "keptn.sh/lifecycle-toolkit" {
                diags.push(doc.diag(
                    "KLT034",
                    Severity::Warning,
                    e.key_pos,
                    field,
                    format!("{key} is read on the Namespace, not on a {}", doc.kind),
                    Some("annotate the Namespace with it for Keptn (klt-render renders every namespace)".into()),
                ));
                continue;
            }
            if OTHER_KEPTN_KEYS.contains(&key) {
                continue;
            }
            let near = crate::suggest::closest(key, WORKLOAD_KEYS.iter().copied());
            let severity = if near.is_some_and(is_task_list) {
                Severity::Error
            } else {
                Severity::Warning
            };
            let help = match near {
                Some(k) => format!("did you mean {k:?}?"),
                None => format!(
                    "Keptn reads these keys on workloads: {}",
                    WORKLOAD_KEYS.join(", ")
                ),
            };
            diags.push(doc.diag(
                "KLT034",
                severity,
                e.key_pos,
                field,
                format!("unknown Keptn key {key}: Keptn ignores it"),
                Some(Cow::from(help)),
            ));
        }
    }
}

/// Keptn keys written as labels: values the API server refuses as labels, and labels an
/// annotation of the same key overrides (Keptn reads the annotation first).
fn labels(doc: &Doc<'_>, meta: &Meta<'_>, diags: &mut Vec<Diagnostic>) {
    let annotations = meta.entries("annotations");
    for e in meta.entries("labels") {
        let key = e.key.as_ref();
        let read =
            WORKLOAD_KEYS.contains(&key) || [K8S_NAME, K8S_PART_OF, K8S_VERSION].contains(&key);
        let Some(value) = scalar_string(&e.value).filter(|v| read && !v.is_empty()) else {
            continue;
        };
        let field = Some(format!("{}.labels.{key}", meta.field()));
        if key.starts_with("keptn.sh/") && !is_label_value(&value) {
            diags.push(doc.diag(
                "KLT035",
                Severity::Error,
                e.value.pos,
                field,
                format!(
                    "{key} is a label, and {value:?} is not a valid label value: the API server rejects the {}",
                    doc.kind
                ),
                Some(Cow::from(format!(
                    "make it an annotation ({}.annotations): label values are at most 63 letters, digits, `-`, `_` or `.`, so lists need an annotation",
                    meta.field()
                ))),
            ));
            continue;
        }
        let overriding = annotations
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| scalar_string(&a.value))
            .filter(|a| !a.is_empty() && *a != value);
        if let Some(a) = overriding {
            diags.push(doc.diag(
                "KLT035",
                Severity::Warning,
                e.value.pos,
                field,
                format!("label {key} ({value:?}) is ignored: the annotation of the same key ({a:?}) wins"),
                Some("keep one of them; Keptn reads the annotation first".into()),
            ));
        }
    }
}

/// A Kubernetes label value: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    v.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(inner))
}

/// `annotations`/`labels` maps where no metadata is, with the place they belong.
const MISPLACED: &[(&[&str], &str)] = &[
    (&[], "metadata"),
    (&["spec"], "spec.template.metadata"),
    (&["spec", "metadata"], "spec.template.metadata"),
    (&["spec", "template"], "spec.template.metadata"),
    (&["spec", "template", "spec"], "spec.template.metadata"),
    (
        &["spec", "template", "spec", "metadata"],
        "spec.template.metadata",
    ),
];

/// Keptn keys in a map Kubernetes does not know there (`spec.template.annotations`).
fn outside_metadata(doc: &Doc<'_>, diags: &mut Vec<Diagnostic>) {
    for (path, home) in MISPLACED {
        let Some(parent) = doc.root.path(path) else {
            continue;
        };
        for which in ["annotations", "labels"] {
            let Some(entry) = parent.entry(which) else {
                continue;
            };
            let keys: Vec<&str> = entry
                .value
                .as_map()
                .unwrap_or_default()
                .iter()
                .map(|e| e.key.as_ref())
                .filter(|k| {
                    k.starts_with("keptn.sh/") || [K8S_NAME, K8S_PART_OF, K8S_VERSION].contains(k)
                })
                .collect();
            if keys.is_empty() {
                continue;
            }
            let at = if path.is_empty() {
                which.to_string()
            } else {
                format!("{}.{which}", path.join("."))
            };
            let severity = if keys.iter().any(|k| is_task_list(k)) {
                Severity::Error
            } else {
                Severity::Warning
            };
            let verb = if *home == "metadata" || path == &["spec", "template"] {
                "indent it under"
            } else {
                "move it under"
            };
            diags.push(doc.diag(
                "KLT033",
                severity,
                entry.key_pos,
                Some(at.clone()),
                format!(
                    "{at} is not a field of a {}: the API server rejects the object (and without field validation drops the field), so Keptn never sees {}",
                    doc.kind,
                    keys.join(", ")
                ),
                Some(Cow::from(format!("{verb} `{home}` ({home}.{which})"))),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values() {
        for ok in ["", "a", "smoke-test", "v1.2_3", &"a".repeat(63)] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["a,b", "-a", "a-", "k=v", "a b", &"a".repeat(64), "é"] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    #[test]
    fn lost_tasks_are_those_not_listed_where_keptn_reads() {
        let s = |v: &str| Spanned {
            value: v.to_string(),
            pos: Default::default(),
            field: String::new(),
        };
        assert_eq!(
            lost_tasks(&s("a,b"), Some(&s("b"))).as_deref(),
            Some("\"a\"")
        );
        assert_eq!(lost_tasks(&s("a"), None).as_deref(), Some("\"a\""));
        assert_eq!(lost_tasks(&s("a"), Some(&s("b,a"))), None);
    }
}
