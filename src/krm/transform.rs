//! Items in, items out: the renderer run over a kustomize/kpt resource list.
//!
//! Each item becomes one [`SourceFile`] (`items[N]`) holding the item without the
//! orchestrator's bookkeeping annotations (`config.kubernetes.io/*`,
//! `internal.config.kubernetes.io/*`, `config.k8s.io/*`, `kustomize.config.k8s.io/*`): they
//! must neither reach generated Jobs (a definition's annotations are copied onto its Jobs) nor
//! their content hashes (kustomize's ids and indexes change when unrelated resources do).
//! Items the renderer passes through unchanged are returned as they came in, bookkeeping
//! included; items it changed (an input Secret moved to its task's sync wave) get their
//! bookkeeping annotations back.
//!
//! ConfigMaps and Secrets that kustomize will rename with a content-hash suffix after all
//! transformers ran (`configMapGenerator`/`secretGenerator`, marked
//! `internal.config.kubernetes.io/needsHashSuffix: enabled`) are rendered under the name they
//! will get, with the Keptn references to them rewritten the way kustomize's name references
//! would: so a task's Job name covers the Secret or code ConfigMap it runs with, exactly as when
//! `klt-render render` reads `kustomize build` output. The generated Jobs are returned
//! referring to the unhashed names, which kustomize then rewrites to the final ones (its
//! built-in name references cover Job pod templates).

use std::collections::BTreeMap;

use crate::{Diagnostic, Options, SourceFile, gojson, hash, yaml};
use serde_json::{Map, Value};

use super::config::{self, ConfigError};
use super::wire::{FileRef, Finding, ResourceRef};

const KEPTN_GROUP: &str = "lifecycle.keptn.sh";
const DEFINITION: &str = "KeptnTaskDefinition";

/// What a run gives back: the output items, or `None` when there are errors (the caller then
/// returns the input unchanged), and every finding.
#[derive(Debug)]
pub struct Outcome {
    pub items: Option<Vec<Value>>,
    pub findings: Vec<Finding>,
}

impl Outcome {
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.error).count()
    }
}

/// Annotations that belong to the orchestrator, not to the object.
pub fn is_bookkeeping(key: &str) -> bool {
    [
        "config.kubernetes.io/",
        "internal.config.kubernetes.io/",
        "config.k8s.io/",
        "kustomize.config.k8s.io/",
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

struct Input<'a> {
    original: &'a Value,
    /// What the renderer sees.
    render: Value,
    source: String,
    /// The generator object's own name, when `render` carries its future hashed name.
    unhashed_name: Option<String>,
}

/// Runs the renderer over `items`. `source` names items in messages (`items` → `items[3]`).
pub fn transform(items: &[Value], function_config: Option<&Value>, source: &str) -> Outcome {
    let opts = match config::options(function_config) {
        Ok(o) => o,
        Err(e) => {
            return Outcome {
                items: None,
                findings: vec![config_finding(e, function_config)],
            };
        }
    };
    let own: Vec<bool> = items
        .iter()
        .map(|i| is_own_config(i, function_config))
        .collect();
    let resources = own.iter().filter(|o| !**o).count();

    let names = Names::new(
        items.iter().zip(&own).filter(|(_, o)| !**o).map(|(i, _)| i),
        &opts,
    );

    let mut inputs = Vec::new();
    for (n, (item, _)) in items
        .iter()
        .zip(&own)
        .enumerate()
        .filter(|(_, (_, o))| !**o)
    {
        let mut render = strip_bookkeeping(item);
        let ns = effective_namespace(item, &opts);
        let mut unhashed_name = None;
        if let Some(r) = ResourceRef::of(item)
            && let Some(h) = names
                .hashed
                .get(&(r.kind.clone(), ns.clone(), r.name.clone()))
            && let Some(meta) = render.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("name".into(), Value::from(h.clone()));
            unhashed_name = Some(r.name);
        }
        if is_keptn(item)
            && let Some(spec) = render.get_mut("spec")
        {
            rewrite_refs(spec, &|kind, name| names.resolve(kind, &ns, name));
        }
        inputs.push(Input {
            original: item,
            render,
            source: format!("{source}[{n}]"),
            unhashed_name,
        });
    }
    let files: Vec<SourceFile> = inputs
        .iter()
        .map(|i| SourceFile {
            path: i.source.clone(),
            text: yaml::emit(&i.render),
        })
        .collect();

    let out = crate::render(&files, &opts);
    let mut findings: Vec<Finding> = out
        .diagnostics
        .iter()
        .map(|d| finding(d, &inputs))
        .collect();
    if out.has_errors() {
        return Outcome {
            items: None,
            findings,
        };
    }

    // Map the render's documents back to items.
    let mut by_identity: BTreeMap<Identity, Vec<usize>> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        by_identity
            .entry(identity(&input.render))
            .or_default()
            .push(i);
    }
    let mut passed: Vec<Option<Value>> = vec![None; inputs.len()];
    let (mut head, mut tail, mut unmatched) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen_input = false;
    for doc in &out.documents {
        let mut value = match super::wire::parse_stream(&doc.text) {
            Ok(mut docs) if docs.len() == 1 => docs.remove(0),
            // The renderer's own output always parses back; never return a partial list.
            _ => {
                findings.push(Finding::general(
                    true,
                    format!(
                        "internal error: the rendered {} {} does not read back as one YAML document; please report this",
                        doc.kind, doc.name
                    ),
                    None,
                ));
                return Outcome {
                    items: None,
                    findings,
                };
            }
        };
        if doc.generated {
            let ns = effective_namespace(&value, &opts);
            if let Some(spec) = value.get_mut("spec") {
                rewrite_refs(spec, &|kind, name| names.unhash(kind, &ns, name));
            }
            if seen_input { &mut tail } else { &mut head }.push(value);
            continue;
        }
        seen_input = true;
        let candidates = by_identity
            .get(&identity(&value))
            .cloned()
            .unwrap_or_default();
        let free: Vec<usize> = candidates
            .into_iter()
            .filter(|c| passed[*c].is_none())
            .collect();
        let pick = free
            .iter()
            .copied()
            .find(|c| inputs[*c].render == value)
            .or_else(|| free.first().copied());
        match pick {
            Some(c) if inputs[c].render == value => passed[c] = Some(inputs[c].original.clone()),
            Some(c) => passed[c] = Some(restore(value, &inputs[c])),
            // Items of a `kind: List` come out one by one.
            None => unmatched.push(value),
        }
    }
    let mut result = head;
    result.extend(passed.into_iter().flatten());
    result.extend(unmatched);
    result.extend(tail);

    if result.is_empty() && resources > 0 {
        findings.push(Finding::general(
            true,
            format!(
                "all {resources} input resource(s) are Keptn resources that render to no objects; refusing to return an empty list, which kustomize takes as \"delete every resource\""
            ),
            Some(
                "add the workloads, KeptnApp or KeptnAppContext that use these task definitions to the same build, or set keep-keptn: true".into(),
            ),
        ));
        return Outcome {
            items: None,
            findings,
        };
    }
    if resources == 0 && own.iter().any(|o| *o) {
        findings.push(Finding::general(
            false,
            "no resources to render: a generator sees only its own config; list the KltRender config under transformers: instead".into(),
            None,
        ));
    }
    Outcome {
        items: Some(result),
        findings,
    }
}

/// kustomize hands a generator its own config as the only item (marked local-config); it is
/// not a resource to render or return.
pub fn is_own_config(item: &Value, config: Option<&Value>) -> bool {
    let Some(config) = config else { return false };
    let local = item
        .pointer("/metadata/annotations/config.kubernetes.io~1local-config")
        .and_then(Value::as_str)
        == Some("true");
    local && ResourceRef::of(item).is_some() && ResourceRef::of(item) == ResourceRef::of(config)
}

fn is_keptn(item: &Value) -> bool {
    item.get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.split_once('/'))
        .is_some_and(|(g, _)| g == KEPTN_GROUP)
}

/// Kinds that Keptn objects refer to by name.
const REFERENCED_KINDS: &[&str] = &[
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "KeptnTaskDefinition",
];

type Key = (String, String, String);

/// Names as kustomize will leave them, for the references in Keptn objects: what its name
/// references (deploy/kustomize/keptn-name-references.yaml) would make of them after the build.
struct Names {
    /// Generator objects' future names: (kind, namespace, current name) → `name-<suffix>`.
    hashed: BTreeMap<Key, String>,
    /// Every object that can be referred to, by current name.
    current: std::collections::BTreeSet<Key>,
    /// Earlier names (kustomize's `internal.config.kubernetes.io/previousNames`, set by
    /// namePrefix/nameSuffix and renaming patches) → current names.
    previous: BTreeMap<Key, Vec<String>>,
}

impl Names {
    fn new<'a>(items: impl Iterator<Item = &'a Value>, opts: &Options) -> Names {
        let mut names = Names {
            hashed: BTreeMap::new(),
            current: Default::default(),
            previous: BTreeMap::new(),
        };
        for item in items {
            let Some(r) = ResourceRef::of(item) else {
                continue;
            };
            if !REFERENCED_KINDS.contains(&r.kind.as_str()) {
                continue;
            }
            let ns = effective_namespace(item, opts);
            if let Some(suffix) = needs_hash_suffix(item) {
                names.hashed.insert(
                    (r.kind.clone(), ns.clone(), r.name.clone()),
                    format!("{}-{suffix}", r.name),
                );
            }
            let earlier = item
                .pointer("/metadata/annotations/internal.config.kubernetes.io~1previousNames")
                .and_then(Value::as_str)
                .unwrap_or("");
            for p in earlier.split(',').map(str::trim) {
                if !p.is_empty() && p != r.name {
                    let list = names
                        .previous
                        .entry((r.kind.clone(), ns.clone(), p.to_string()))
                        .or_default();
                    if !list.contains(&r.name) {
                        list.push(r.name.clone());
                    }
                }
            }
            names.current.insert((r.kind, ns, r.name));
        }
        names
    }

    /// The final name a reference from namespace `ns` resolves to, if known.
    fn resolve(&self, kind: &str, ns: &str, name: &str) -> Option<String> {
        let key = (kind.to_string(), ns.to_string(), name.to_string());
        let current = if self.current.contains(&key) {
            name.to_string()
        } else {
            match self.previous.get(&key).map(Vec::as_slice) {
                Some([only]) => only.clone(),
                _ => return None,
            }
        };
        let hashed = self
            .hashed
            .get(&(kind.to_string(), ns.to_string(), current.clone()));
        Some(hashed.cloned().unwrap_or(current))
    }

    /// The current name of a generator object from its future hashed name: what generated
    /// Jobs refer to, so that kustomize's own hashing step rewrites it.
    fn unhash(&self, kind: &str, ns: &str, name: &str) -> Option<String> {
        self.hashed
            .iter()
            .find(|((k, n, _), h)| k == kind && n == ns && h.as_str() == name)
            .map(|((_, _, current), _)| current.clone())
    }
}

fn effective_namespace(item: &Value, opts: &Options) -> String {
    item.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| opts.namespace.clone())
        .unwrap_or_default()
}

type Identity = (String, String, String, String);

fn identity(item: &Value) -> Identity {
    match ResourceRef::of(item) {
        Some(r) => (
            r.api_version,
            r.kind,
            r.namespace.unwrap_or_default(),
            r.name,
        ),
        None => Default::default(),
    }
}

/// The item without bookkeeping annotations (and without `annotations` if nothing is left).
pub fn strip_bookkeeping(item: &Value) -> Value {
    let mut v = item.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut)
        && let Some(Value::Object(ann)) = meta.get_mut("annotations")
    {
        let before = ann.len();
        ann.retain(|k, _| !is_bookkeeping(k));
        if ann.is_empty() && before > 0 {
            meta.remove("annotations");
        }
    }
    v
}

/// A changed pass-through item: its own name and the orchestrator's annotations back.
fn restore(mut value: Value, input: &Input<'_>) -> Value {
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return value;
    };
    if let Some(name) = &input.unhashed_name {
        meta.insert("name".into(), Value::from(name.clone()));
    }
    let kept: Vec<(String, Value)> = input
        .original
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .filter(|(k, _)| is_bookkeeping(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if !kept.is_empty() {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(ann) = ann.as_object_mut() {
            for (k, v) in kept {
                ann.entry(k).or_insert(v);
            }
        }
    }
    value
}

/// The suffix kustomize will append to a generated ConfigMap or Secret (`hasher.go`: Go JSON
/// of data/binaryData or type/data/stringData with an empty name), or `None` when the object
/// is not marked for hashing.
pub fn needs_hash_suffix(item: &Value) -> Option<String> {
    let ann = item.pointer("/metadata/annotations")?.as_object()?;
    let marked = ann
        .get("internal.config.kubernetes.io/needsHashSuffix")
        .and_then(Value::as_str)
        == Some("enabled")
        || ann
            .get("kustomize.config.k8s.io/needs-hash")
            .and_then(Value::as_str)
            == Some("true");
    if !marked || item.get("apiVersion").and_then(Value::as_str) != Some("v1") {
        return None;
    }
    let map_or_empty = |key: &str| match item.get(key) {
        Some(v @ Value::Object(_)) => v.clone(),
        _ => Value::from(""),
    };
    let mut m = Map::new();
    match item.get("kind").and_then(Value::as_str)? {
        "ConfigMap" => {
            if let Some(b @ Value::Object(_)) = item.get("binaryData") {
                m.insert("binaryData".into(), b.clone());
            }
            m.insert("data".into(), map_or_empty("data"));
            m.insert("kind".into(), Value::from("ConfigMap"));
        }
        "Secret" => {
            m.insert("data".into(), map_or_empty("data"));
            m.insert("kind".into(), Value::from("Secret"));
            if let Some(s @ Value::Object(_)) = item.get("stringData") {
                m.insert("stringData".into(), s.clone());
            }
            let t = item.get("type").and_then(Value::as_str).unwrap_or("");
            m.insert("type".into(), Value::from(t));
        }
        _ => return None,
    }
    m.insert("name".into(), Value::from(""));
    Some(hash::short(gojson::value(&Value::Object(m)).as_bytes()))
}

/// Rewrites the names referenced under a `spec` through `map(kind, name)`: ConfigMaps and
/// Secrets (Keptn runners' `secureParameters.secret` and `configMapRef.name`, container
/// env/envFrom refs, `imagePullSecrets`, pod volumes), `serviceAccount.name`, and task
/// definitions (`functionRef.name`, a KeptnTask's `taskDefinition`, the task lists of
/// KeptnAppContexts and v1alpha KeptnApps): the fields of keptn-name-references.yaml.
fn rewrite_refs(v: &mut Value, map: &dyn Fn(&str, &str) -> Option<String>) {
    fn set(
        o: &mut Map<String, Value>,
        key: &str,
        kind: &str,
        map: &dyn Fn(&str, &str) -> Option<String>,
    ) {
        if let Some(Value::String(name)) = o.get(key)
            && let Some(new) = map(kind, name)
        {
            o.insert(key.into(), Value::from(new));
        }
    }
    match v {
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                match (key.as_str(), &mut *child) {
                    ("secureParameters", Value::Object(o)) => set(o, "secret", "Secret", map),
                    ("configMapRef" | "configMapKeyRef" | "configMap", Value::Object(o)) => {
                        set(o, "name", "ConfigMap", map)
                    }
                    ("secretRef" | "secretKeyRef", Value::Object(o)) => {
                        set(o, "name", "Secret", map)
                    }
                    ("secret", Value::Object(o)) => {
                        set(o, "secretName", "Secret", map);
                        set(o, "name", "Secret", map);
                    }
                    ("serviceAccount", Value::Object(o)) => set(o, "name", "ServiceAccount", map),
                    ("functionRef", Value::Object(o)) => set(o, "name", DEFINITION, map),
                    ("taskDefinition", Value::String(name)) => {
                        if let Some(new) = map(DEFINITION, name) {
                            *name = new;
                        }
                    }
                    (
                        "preDeploymentTasks" | "postDeploymentTasks" | "promotionTasks",
                        Value::Array(list),
                    ) => {
                        for e in list.iter_mut() {
                            if let Value::String(name) = e
                                && let Some(new) = map(DEFINITION, name)
                            {
                                *name = new;
                            }
                        }
                    }
                    ("imagePullSecrets", Value::Array(list)) => {
                        for e in list.iter_mut() {
                            if let Value::Object(o) = e {
                                set(o, "name", "Secret", map);
                            }
                        }
                    }
                    _ => {}
                }
                rewrite_refs(child, map);
            }
        }
        Value::Array(list) => {
            for e in list {
                rewrite_refs(e, map);
            }
        }
        _ => {}
    }
}

fn finding(d: &Diagnostic, inputs: &[Input<'_>]) -> Finding {
    let input = inputs.iter().find(|i| i.source == d.file);
    Finding {
        error: d.is_error(),
        code: Some(d.code),
        message: d.message.clone(),
        help: d.help.as_deref().map(str::to_string),
        resource: input.and_then(|i| ResourceRef::of(i.original)),
        object: d.object.clone(),
        field: d.field.clone(),
        file: input.and_then(|i| FileRef::of(i.original)),
    }
}

fn config_finding(e: ConfigError, config: Option<&Value>) -> Finding {
    let resource = config.and_then(ResourceRef::of);
    Finding {
        error: true,
        code: None,
        message: format!("functionConfig: {}", e.message),
        help: None,
        object: resource.as_ref().map(|r| format!("{} {}", r.kind, r.name)),
        resource,
        field: e.field,
        file: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(spec: Value) -> Value {
        json!({"apiVersion": config::API_VERSION, "kind": config::KIND, "metadata": {"name": "klt"}, "spec": spec})
    }

    fn definition(name: &str, ann: Value) -> Value {
        json!({
            "apiVersion": "lifecycle.keptn.sh/v1", "kind": "KeptnTaskDefinition",
            "metadata": {"name": name, "annotations": ann},
            "spec": {"deno": {"inline": {"code": "console.log(1)"}, "secureParameters": {"secret": "sec"}}},
        })
    }

    fn task(name: &str, def: &str) -> Value {
        json!({"apiVersion": "lifecycle.keptn.sh/v1", "kind": "KeptnTask", "metadata": {"name": name},
               "spec": {"taskDefinition": def, "context": {"appName": "a", "appVersion": "1", "objectType": "", "taskType": "", "workloadName": "", "workloadVersion": ""}}})
    }

    fn service(ann: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "annotations": ann},
               "spec": {"ports": [{"port": 80}]}})
    }

    fn kinds(items: &[Value]) -> Vec<String> {
        items
            .iter()
            .map(|i| i["kind"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn keptn_consumed_jobs_added_the_rest_untouched() {
        let ann = json!({"foo": "bar", "kustomize.config.k8s.io/id": "kind: Service\nname: svc\nversion: v1\n",
                         "config.kubernetes.io/index": "0", "internal.config.kubernetes.io/previousNames": "svc"});
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "data": {"SECURE_DATA": "eA=="}});
        let items = vec![
            service(ann.clone()),
            definition(
                "hello",
                json!({"kustomize.config.k8s.io/id": "x", "owner": "team-a"}),
            ),
            task("run-hello", "hello"),
            secret.clone(),
        ];
        let out = transform(&items, Some(&cfg(json!({"namespace": "demo"}))), "items");
        assert_eq!(out.errors(), 0, "{:?}", out.findings);
        let got = out.items.unwrap();
        assert_eq!(kinds(&got), ["ConfigMap", "Job", "Service", "Secret"]);
        assert_eq!(got[2], items[0], "pass-through keeps every annotation");
        let job = &got[1];
        let job_ann = job["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(job_ann["owner"], "team-a");
        assert!(!job_ann.keys().any(|k| is_bookkeeping(k)), "{job_ann:?}");
        // The Secret was moved to the task's wave: changed, so rebuilt, bookkeeping kept.
        assert!(
            got[3]["metadata"]["annotations"]
                .get("argocd.argoproj.io/sync-wave")
                .is_some()
        );
    }

    #[test]
    fn job_names_ignore_bookkeeping() {
        let plain = transform(
            &[definition("hello", json!({})), task("t", "hello")],
            None,
            "items",
        );
        let annotated = transform(
            &[
                definition(
                    "hello",
                    json!({"config.kubernetes.io/index": "7", "internal.config.kubernetes.io/id": "9"}),
                ),
                task("t", "hello"),
            ],
            None,
            "items",
        );
        let names = |o: &Outcome| -> Vec<Value> {
            o.items
                .as_ref()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].clone())
                .collect()
        };
        assert_eq!(names(&plain), names(&annotated));
    }

    #[test]
    fn errors_give_no_items_and_findings_with_refs() {
        let mut ctx = task("t", "helo");
        ctx["metadata"]["annotations"] =
            json!({"config.kubernetes.io/path": "tasks.yaml", "config.kubernetes.io/index": "1"});
        let out = transform(&[definition("hello", json!({})), ctx], None, "items");
        assert!(out.items.is_none());
        let f = out.findings.iter().find(|f| f.error).unwrap();
        assert_eq!(f.code, Some("KLT020"));
        assert_eq!(f.resource.as_ref().unwrap().kind, "KeptnTask");
        assert_eq!(
            f.file,
            Some(FileRef {
                path: "tasks.yaml".into(),
                index: Some(1)
            })
        );
        let r = f.to_result();
        assert!(
            r["message"].as_str().unwrap().starts_with("[KLT020] "),
            "{r}"
        );
    }

    #[test]
    fn config_errors_point_at_the_config() {
        let out = transform(
            &[service(json!({}))],
            Some(&cfg(json!({"mdoe": "hooks"}))),
            "items",
        );
        assert!(out.items.is_none());
        let f = &out.findings[0];
        assert_eq!(f.field.as_deref(), Some("spec.mdoe"));
        assert_eq!(f.resource.as_ref().unwrap().kind, "KltRender");
        assert!(f.message.contains("did you mean \"mode\""), "{f:?}");
    }

    #[test]
    fn empty_in_empty_out_but_never_everything_to_nothing() {
        let out = transform(&[], None, "items");
        assert_eq!(out.items, Some(vec![]));
        assert!(out.findings.is_empty());
        // Only definitions: they are consumed and nothing is generated.
        let out = transform(&[definition("hello", json!({}))], None, "items");
        assert!(out.items.is_none());
        assert!(
            out.findings
                .iter()
                .any(|f| f.error && f.message.contains("delete every resource"))
        );
        // keep-keptn returns them.
        let out = transform(
            &[definition("hello", json!({}))],
            Some(&cfg(json!({"keep-keptn": true}))),
            "items",
        );
        assert_eq!(out.items.unwrap().len(), 1);
    }

    #[test]
    fn a_generator_sees_only_its_own_config() {
        let mut own = cfg(json!({}));
        own["metadata"]["annotations"] =
            json!({"config.kubernetes.io/local-config": "true", "config.kubernetes.io/index": "0"});
        let out = transform(std::slice::from_ref(&own), Some(&cfg(json!({}))), "items");
        assert_eq!(out.items, Some(vec![]));
        assert!(
            out.findings
                .iter()
                .any(|f| !f.error && f.message.contains("transformers:"))
        );
    }

    #[test]
    fn kustomize_hash_suffixes() {
        // Vectors from real kubectl kustomize (kustomize-krm-validation.md §1.5).
        let mark = json!({"internal.config.kubernetes.io/needsHashSuffix": "enabled"});
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "annotations": mark},
                        "data": {"FOO": "bar", "hello": "world"}});
        assert_eq!(needs_hash_suffix(&cm).as_deref(), Some("k9h8bf29t7"));
        let empty = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e", "annotations": mark}});
        assert_eq!(needs_hash_suffix(&empty).as_deref(), Some("6ct58987ht"));
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": "s", "annotations": {"kustomize.config.k8s.io/needs-hash": "true"}},
                            "data": {"user": "YWRtaW4=", "pass": "czNjcjN0"}});
        assert_eq!(needs_hash_suffix(&secret).as_deref(), Some("27b7dg5m6t"));
        let unmarked = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}});
        assert_eq!(needs_hash_suffix(&unmarked), None);
    }

    #[test]
    fn generator_names_are_rendered_hashed_and_returned_unhashed() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "sec", "annotations": {"internal.config.kubernetes.io/needsHashSuffix": "enabled"}},
            "data": {"SECURE_DATA": "eA=="}});
        let suffix = needs_hash_suffix(&secret).unwrap();
        let run = |s: &Value| {
            transform(
                &[
                    definition("hello", json!({})),
                    task("t", "hello"),
                    s.clone(),
                ],
                None,
                "items",
            )
        };
        let out = run(&secret);
        assert_eq!(out.errors(), 0, "{:?}", out.findings);
        let items = out.items.unwrap();
        let job = items.iter().find(|i| i["kind"] == "Job").unwrap();
        let text = serde_json::to_string(job).unwrap();
        assert!(text.contains("\"name\":\"sec\""), "{text}");
        assert!(!text.contains(&suffix), "{text}");
        let back = items.iter().find(|i| i["kind"] == "Secret").unwrap();
        assert_eq!(back["metadata"]["name"], "sec");
        assert_eq!(
            back["metadata"]["annotations"]["internal.config.kubernetes.io/needsHashSuffix"],
            "enabled"
        );
        // Other secret data: another future name, so another Job name.
        let mut other = secret.clone();
        other["data"]["SECURE_DATA"] = json!("eQ==");
        let job2 = run(&other)
            .items
            .unwrap()
            .into_iter()
            .find(|i| i["kind"] == "Job")
            .unwrap();
        assert_ne!(job["metadata"]["name"], job2["metadata"]["name"]);
    }

    #[test]
    fn rewrite_refs_covers_keptn_and_pod_fields() {
        let mut spec = json!({
            "deno": {"secureParameters": {"secret": "s"}, "configMapRef": {"name": "c"}, "parameters": {"map": {"secret": "s"}}},
            "container": {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                                  {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
                          "envFrom": [{"secretRef": {"name": "s"}}, {"configMapRef": {"name": "c"}}]},
            "imagePullSecrets": [{"name": "s"}],
            "volumes": [{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "configMap": {"name": "c"}}],
        });
        rewrite_refs(&mut spec, &|kind, name| {
            Some(format!("{name}-{}", kind.to_lowercase()))
        });
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(text.matches("\"s-secret\"").count(), 5, "{text}");
        assert_eq!(text.matches("\"c-configmap\"").count(), 4, "{text}");
        assert_eq!(
            spec["deno"]["parameters"]["map"]["secret"], "s",
            "parameters are data, not references"
        );
    }

    #[test]
    fn rewrite_refs_covers_task_definition_references() {
        let mut spec = json!({
            "deno": {"functionRef": {"name": "d"}},
            "serviceAccount": {"name": "sa"},
            "taskDefinition": "d",
            "preDeploymentTasks": ["d", "other"],
            "postDeploymentTasks": ["d"],
            "promotionTasks": ["d"],
        });
        rewrite_refs(&mut spec, &|kind, name| match (kind, name) {
            ("KeptnTaskDefinition", "d") => Some("p-d".into()),
            ("ServiceAccount", "sa") => Some("p-sa".into()),
            _ => None,
        });
        assert_eq!(
            spec,
            json!({
                "deno": {"functionRef": {"name": "p-d"}},
                "serviceAccount": {"name": "p-sa"},
                "taskDefinition": "p-d",
                "preDeploymentTasks": ["p-d", "other"],
                "postDeploymentTasks": ["p-d"],
                "promotionTasks": ["p-d"],
            })
        );
    }

    #[test]
    fn names_follow_previous_names_and_hashes() {
        let prefixed = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p-sec", "namespace": "ns",
            "annotations": {"internal.config.kubernetes.io/previousNames": "sec,p-sec",
                            "internal.config.kubernetes.io/needsHashSuffix": "enabled"}},
            "data": {"SECURE_DATA": "eA=="}});
        let plain = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"code": "x"}});
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sec", "namespace": "ns"}});
        let items = [prefixed.clone(), plain, service];
        let names = Names::new(items.iter(), &Options::default());
        let hashed = format!("p-sec-{}", needs_hash_suffix(&prefixed).unwrap());
        assert_eq!(
            names.resolve("Secret", "ns", "sec").as_deref(),
            Some(hashed.as_str())
        );
        assert_eq!(
            names.resolve("Secret", "ns", "p-sec").as_deref(),
            Some(hashed.as_str())
        );
        assert_eq!(
            names.resolve("Secret", "other", "sec"),
            None,
            "namespaces must match"
        );
        assert_eq!(names.resolve("ConfigMap", "", "cm").as_deref(), Some("cm"));
        assert_eq!(names.resolve("ConfigMap", "", "missing"), None);
        assert_eq!(
            names.resolve("Service", "ns", "sec"),
            None,
            "only referenced kinds"
        );
        assert_eq!(
            names.unhash("Secret", "ns", &hashed).as_deref(),
            Some("p-sec")
        );
        assert_eq!(names.unhash("ConfigMap", "ns", &hashed), None);
    }

    #[test]
    fn strip_and_restore() {
        let item = service(json!({"kustomize.config.k8s.io/id": "x"}));
        let stripped = strip_bookkeeping(&item);
        assert!(stripped["metadata"].get("annotations").is_none());
        let item = service(json!({}));
        assert_eq!(
            strip_bookkeeping(&item),
            item,
            "an explicit empty map stays"
        );
        let orig = service(json!({"a": "1", "config.kubernetes.io/index": "4"}));
        let input = Input {
            original: &orig,
            render: strip_bookkeeping(&orig),
            source: "items[0]".into(),
            unhashed_name: None,
        };
        let mut changed = input.render.clone();
        changed["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] = json!("-1");
        let back = restore(changed, &input);
        assert_eq!(
            back["metadata"]["annotations"]["config.kubernetes.io/index"],
            "4"
        );
        assert_eq!(
            back["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
            "-1"
        );
    }
}
