//! The KRM wire format: `config.kubernetes.io/v1` ResourceLists (YAML or JSON) and their
//! `results`, plus the plain YAML streams of kustomize's legacy exec plugins.

use crate::limits::{Limit, Limits};
use crate::yaml;
use serde_json::{Map, Value};

/// How the input was written; the output is written the same way (the KRM spec's "should").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResourceList {
    /// `config.kubernetes.io/v1` (or `v1beta1`), or `v1` for a plain `List`; echoed back.
    pub api_version: String,
    /// `ResourceList`, or `List` (which the spec also allows as input); echoed back.
    pub kind: String,
    pub items: Vec<Value>,
    pub function_config: Option<Value>,
    pub format: Format,
}

const API_VERSIONS: &[&str] = &["config.kubernetes.io/v1", "config.kubernetes.io/v1beta1"];

/// Parses stdin as one ResourceList (or `v1` List).
pub fn parse_resource_list(text: &str) -> Result<ResourceList, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let (value, format) = if trimmed.starts_with('{') {
        let v: Value =
            serde_json::from_str(trimmed).map_err(|e| format!("stdin is not valid JSON: {e}"))?;
        (v, Format::Json)
    } else {
        let mut docs = parse_stream(text)?;
        match docs.len() {
            0 => {
                return Err(
                    "stdin is empty; expected a ResourceList (config.kubernetes.io/v1)".into(),
                );
            }
            1 => (docs.remove(0), Format::Yaml),
            n => {
                return Err(format!(
                    "stdin holds {n} YAML documents, not one ResourceList; kustomize's legacy exec plugins send a plain stream: run `klt-render krm --legacy-config FILE` for those"
                ));
            }
        }
    };
    let Some(obj) = value.as_object() else {
        return Err("stdin is not a ResourceList: not a map".into());
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let list_ok = (kind == "ResourceList" && API_VERSIONS.contains(&api_version))
        || (kind == "List" && api_version == "v1");
    if !list_ok {
        return Err(format!(
            "stdin is not a ResourceList: found apiVersion {api_version:?}, kind {kind:?}; expected apiVersion config.kubernetes.io/v1, kind ResourceList"
        ));
    }
    let items = match obj.get("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err("ResourceList items must be a list".into()),
    };
    let function_config = obj.get("functionConfig").filter(|v| !v.is_null()).cloned();
    Ok(ResourceList {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        items,
        function_config,
        format,
    })
}

/// The limits of the wire. A ResourceList is one document that holds the whole input, so the
/// document-size limit is the input-size limit; the functionConfig's limits apply to the items
/// when they are rendered, since the list must be read before its functionConfig is known.
pub fn wire_limits() -> Limits {
    let d = Limits::default();
    Limits {
        max_document_bytes: d.max_input_bytes,
        ..d
    }
}

/// Every non-empty document of a YAML stream, as JSON (Kubernetes' YAML 1.1 typing), read
/// under [`wire_limits`].
pub fn parse_stream(text: &str) -> Result<Vec<Value>, String> {
    let limits = wire_limits();
    if text.len() as u64 > limits.max_input_bytes {
        return Err(format!(
            "stdin:1:1: input limit {}: the input is larger than {} bytes",
            Limit::InputBytes,
            limits.max_input_bytes
        ));
    }
    let mut budget = yaml::Budget::new(limits);
    let mut out = Vec::new();
    for (n, chunk) in yaml::chunks(text).enumerate() {
        if n as u64 >= limits.max_documents {
            return Err(format!(
                "stdin:{}:1: input limit {}: more than {} YAML documents",
                chunk.first_line,
                Limit::Documents,
                limits.max_documents
            ));
        }
        match yaml::parse_document_with(&chunk, &mut budget) {
            Ok(Some(node)) => out.push(node.to_json()),
            Ok(None) => {}
            Err(e) => return Err(wire_error(text, e, &limits)),
        }
    }
    Ok(out)
}

/// A parse error of the wire as one line. Inside a Secret's data the parser's message may
/// quote the value (a duplicate key, an unexpected character): such quotes are emptied.
fn wire_error(text: &str, e: yaml::YamlError, limits: &Limits) -> String {
    let (line, col) = (e.pos.line, e.pos.col);
    match e.limit {
        Some(limit) => format!(
            "stdin:{line}:{col}: input limit {limit}: {} (limit {limit} = {}); limits keep hostile input from taking down the build; the ResourceList itself is read under the default limits, which no honest kustomization reaches",
            e.message,
            limit.value(limits)
        ),
        None => {
            let message = if crate::diag::SecretSpans::of("stdin", text).covers_line(line) {
                crate::diag::blank_quotes(&e.message)
            } else {
                e.message
            };
            format!("stdin:{line}:{col}: YAML: {message}")
        }
    }
}

/// The output ResourceList: `items` always present (an empty list is a real answer), `results`
/// only when there are any.
pub fn write_resource_list(input: &ResourceList, items: &[Value], results: &[Value]) -> String {
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::from(input.api_version.clone()));
    obj.insert("kind".into(), Value::from(input.kind.clone()));
    obj.insert("items".into(), Value::Array(items.to_vec()));
    if !results.is_empty() {
        obj.insert("results".into(), Value::Array(results.to_vec()));
    }
    let value = Value::Object(obj);
    match input.format {
        Format::Yaml => yaml::emit(&value),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&value).expect("JSON values serialize");
            s.push('\n');
            s
        }
    }
}

/// A plain YAML stream (legacy exec plugins): one `---`-separated document per item.
pub fn write_stream(items: &[Value]) -> String {
    let mut out = String::new();
    for item in items {
        out.push_str("---\n");
        out.push_str(&yaml::emit(item));
    }
    out
}

/// `results[].resourceRef`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl ResourceRef {
    /// The identity of an item as written (`None` when it lacks apiVersion, kind or name).
    pub fn of(item: &Value) -> Option<ResourceRef> {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let meta = item.get("metadata");
        Some(ResourceRef {
            api_version: s(item.get("apiVersion"))?,
            kind: s(item.get("kind"))?,
            name: s(meta.and_then(|m| m.get("name")))
                .or_else(|| s(meta.and_then(|m| m.get("generateName"))))?,
            namespace: s(meta.and_then(|m| m.get("namespace"))).filter(|n| !n.is_empty()),
        })
    }
}

/// `results[].file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub path: String,
    pub index: Option<i64>,
}

impl FileRef {
    /// Where an item came from, from the orchestrator's annotations: kpt's (and kustomize's
    /// for generated objects) `internal.config.kubernetes.io/path` + `index` (or their legacy
    /// `config.kubernetes.io/` spellings), else kustomize's `config.kubernetes.io/origin`
    /// (`buildMetadata: [originAnnotations]`).
    pub fn of(item: &Value) -> Option<FileRef> {
        let ann = item.pointer("/metadata/annotations")?.as_object()?;
        let get = |k: &str| ann.get(k).and_then(Value::as_str);
        let path =
            get("internal.config.kubernetes.io/path").or_else(|| get("config.kubernetes.io/path"));
        if let Some(path) = path.filter(|p| !p.is_empty()) {
            let index = get("internal.config.kubernetes.io/index")
                .or_else(|| get("config.kubernetes.io/index"))
                .and_then(|i| i.trim().parse().ok());
            return Some(FileRef {
                path: path.to_string(),
                index,
            });
        }
        // origin is a small YAML map such as `path: base/tasks.yaml` (plus repo/ref for remote
        // bases, or configuredIn/configuredBy for generated objects).
        let origin = get("config.kubernetes.io/origin")?;
        let docs = parse_stream(origin).ok()?;
        let path = docs.first()?.get("path")?.as_str()?;
        Some(FileRef {
            path: path.to_string(),
            index: None,
        })
    }
}

/// One finding as the orchestrator and the user see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub error: bool,
    pub code: Option<&'static str>,
    pub message: String,
    pub help: Option<String>,
    pub resource: Option<ResourceRef>,
    /// `Kind namespace/name` for stderr.
    pub object: Option<String>,
    pub field: Option<String>,
    pub file: Option<FileRef>,
}

impl Finding {
    /// A finding about the run as a whole, not one resource.
    pub fn general(error: bool, message: String, help: Option<String>) -> Finding {
        Finding {
            error,
            code: None,
            message,
            help,
            resource: None,
            object: None,
            field: None,
            file: None,
        }
    }

    /// A `results` entry (KRM functions spec v1): message, severity, resourceRef, field, file.
    pub fn to_result(&self) -> Value {
        let mut r = Map::new();
        let mut message = match self.code {
            Some(code) => format!("[{code}] {}", self.message),
            None => self.message.clone(),
        };
        if let Some(help) = &self.help {
            message.push_str("; help: ");
            message.push_str(help);
        }
        r.insert("message".into(), Value::from(message));
        r.insert(
            "severity".into(),
            Value::from(if self.error { "error" } else { "warning" }),
        );
        if let Some(rr) = &self.resource {
            let mut m = Map::new();
            m.insert("apiVersion".into(), Value::from(rr.api_version.clone()));
            m.insert("kind".into(), Value::from(rr.kind.clone()));
            m.insert("name".into(), Value::from(rr.name.clone()));
            if let Some(ns) = &rr.namespace {
                m.insert("namespace".into(), Value::from(ns.clone()));
            }
            r.insert("resourceRef".into(), Value::Object(m));
            // The spec ties field to resourceRef.
            if let Some(field) = &self.field {
                let mut f = Map::new();
                f.insert("path".into(), Value::from(field.clone()));
                r.insert("field".into(), Value::Object(f));
            }
        }
        if let Some(file) = &self.file {
            let mut f = Map::new();
            f.insert("path".into(), Value::from(file.path.clone()));
            if let Some(i) = file.index {
                f.insert("index".into(), Value::from(i));
            }
            r.insert("file".into(), Value::Object(f));
        }
        Value::Object(r)
    }

    /// Two lines for stderr (kustomize shows a function's stderr, never its results):
    /// `klt-render krm: error[KLT020]: message [Kind ns/name, field f] (file)` and help.
    pub fn human(&self) -> String {
        let sev = if self.error { "error" } else { "warning" };
        let mut s = match self.code {
            Some(code) => format!("klt-render krm: {sev}[{code}]: {}", self.message),
            None => format!("klt-render krm: {sev}: {}", self.message),
        };
        match (&self.object, &self.field) {
            (Some(o), Some(f)) => s.push_str(&format!(" [{o}, field {f}]")),
            (Some(o), None) => s.push_str(&format!(" [{o}]")),
            (None, Some(f)) => s.push_str(&format!(" [field {f}]")),
            (None, None) => {}
        }
        if let Some(file) = &self.file {
            s.push_str(&format!(" (from {})", file.path));
        }
        s.push('\n');
        if let Some(help) = &self.help {
            s.push_str(&format!("  help: {help}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KUSTOMIZE_INPUT: &str = r#"apiVersion: config.kubernetes.io/v1
kind: ResourceList
items:
- apiVersion: v1
  kind: Service
  metadata:
    annotations:
      foo: bar
      kustomize.config.k8s.io/id: |
        kind: Service
        name: p-svc
        version: v1
      config.kubernetes.io/index: '0'
      internal.config.kubernetes.io/index: '0'
    name: p-svc
  spec:
    ports:
    - port: 80
functionConfig:
  apiVersion: klt-render.dev/v1alpha1
  kind: KltRender
  metadata:
    name: klt
  spec:
    namespace: demo"#;

    #[test]
    fn yaml_resource_list_as_kustomize_writes_it() {
        let rl = parse_resource_list(KUSTOMIZE_INPUT).unwrap();
        assert_eq!(rl.format, Format::Yaml);
        assert_eq!(rl.api_version, "config.kubernetes.io/v1");
        assert_eq!(rl.items.len(), 1);
        assert_eq!(rl.items[0]["spec"]["ports"][0]["port"], 80);
        assert_eq!(
            rl.items[0]["metadata"]["annotations"]["config.kubernetes.io/index"],
            "0"
        );
        assert_eq!(
            rl.function_config.as_ref().unwrap()["spec"]["namespace"],
            "demo"
        );
    }

    #[test]
    fn json_in_json_out_and_round_trip() {
        let text = r#"{"apiVersion":"config.kubernetes.io/v1beta1","kind":"ResourceList",
            "items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"on","b":"0644"}}]}"#;
        let rl = parse_resource_list(text).unwrap();
        assert_eq!(rl.format, Format::Json);
        assert_eq!(rl.function_config, None);
        let out = write_resource_list(&rl, &rl.items, &[]);
        let back = parse_resource_list(&out).unwrap();
        assert_eq!(back.items, rl.items);
        assert_eq!(back.api_version, "config.kubernetes.io/v1beta1");
        assert!(!out.contains("results"));
        // The YAML output quotes what YAML 1.1 would retype.
        let yaml_rl = ResourceList {
            format: Format::Yaml,
            ..rl.clone()
        };
        let out = write_resource_list(&yaml_rl, &rl.items, &[]);
        assert_eq!(parse_resource_list(&out).unwrap().items, rl.items);
    }

    #[test]
    fn empty_lists_and_missing_items() {
        let rl = parse_resource_list("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\n")
            .unwrap();
        assert!(rl.items.is_empty());
        let out = write_resource_list(&rl, &[], &[]);
        assert!(out.contains("items: []"), "{out}");
        let rl = parse_resource_list("apiVersion: v1\nkind: List\nitems: []\n").unwrap();
        assert_eq!(rl.kind, "List");
    }

    #[test]
    fn not_a_resource_list() {
        let e = parse_resource_list("").unwrap_err();
        assert!(e.contains("stdin is empty"), "{e}");
        let e = parse_resource_list("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
            .unwrap_err();
        assert!(e.contains("not a ResourceList"), "{e}");
        let e = parse_resource_list("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.contains("--legacy-config"), "{e}");
        let e = parse_resource_list("kind: [\n").unwrap_err();
        assert!(e.contains("YAML"), "{e}");
        let e = parse_resource_list("{\"kind\": ").unwrap_err();
        assert!(e.contains("JSON"), "{e}");
        let e = parse_resource_list(
            "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: {}\n",
        )
        .unwrap_err();
        assert!(e.contains("items must be a list"), "{e}");
    }

    #[test]
    fn results_entries() {
        let f = Finding {
            error: true,
            code: Some("KLT020"),
            message: "task list names \"chek\", which is not defined".into(),
            help: Some("did you mean \"check\"?".into()),
            resource: Some(ResourceRef {
                api_version: "lifecycle.keptn.sh/v1".into(),
                kind: "KeptnAppContext".into(),
                name: "shop".into(),
                namespace: Some("demo".into()),
            }),
            object: Some("KeptnAppContext demo/shop".into()),
            field: Some("spec.preDeploymentTasks".into()),
            file: Some(FileRef {
                path: "app.yaml".into(),
                index: Some(2),
            }),
        };
        assert_eq!(
            f.to_result(),
            json!({
                "message": "[KLT020] task list names \"chek\", which is not defined; help: did you mean \"check\"?",
                "severity": "error",
                "resourceRef": {"apiVersion": "lifecycle.keptn.sh/v1", "kind": "KeptnAppContext", "name": "shop", "namespace": "demo"},
                "field": {"path": "spec.preDeploymentTasks"},
                "file": {"path": "app.yaml", "index": 2},
            })
        );
        assert_eq!(
            f.human(),
            "klt-render krm: error[KLT020]: task list names \"chek\", which is not defined [KeptnAppContext demo/shop, field spec.preDeploymentTasks] (from app.yaml)\n  help: did you mean \"check\"?\n"
        );
        // No resourceRef: no field either (the spec ties them together).
        let bare = Finding {
            resource: None,
            file: None,
            code: None,
            help: None,
            error: false,
            ..f
        };
        assert_eq!(
            bare.to_result(),
            json!({"message": "task list names \"chek\", which is not defined", "severity": "warning"})
        );
    }

    #[test]
    fn file_refs_from_annotations() {
        let item = |ann: Value| json!({"metadata": {"name": "x", "annotations": ann}});
        assert_eq!(
            FileRef::of(&item(
                json!({"internal.config.kubernetes.io/path": "a/b.yaml", "internal.config.kubernetes.io/index": "3"})
            )),
            Some(FileRef {
                path: "a/b.yaml".into(),
                index: Some(3)
            })
        );
        assert_eq!(
            FileRef::of(&item(json!({"config.kubernetes.io/path": "c.yaml"}))),
            Some(FileRef {
                path: "c.yaml".into(),
                index: None
            })
        );
        assert_eq!(
            FileRef::of(&item(
                json!({"config.kubernetes.io/origin": "path: base/tasks.yaml\n"})
            )),
            Some(FileRef {
                path: "base/tasks.yaml".into(),
                index: None
            })
        );
        assert_eq!(
            FileRef::of(&item(json!({"config.kubernetes.io/index": "0"}))),
            None
        );
        assert_eq!(FileRef::of(&json!({"kind": "X"})), None);
    }

    #[test]
    fn resource_refs() {
        assert_eq!(
            ResourceRef::of(
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": ""}})
            ),
            Some(ResourceRef {
                api_version: "v1".into(),
                kind: "Secret".into(),
                name: "s".into(),
                namespace: None
            })
        );
        assert_eq!(ResourceRef::of(&json!({"kind": "Secret"})), None);
        assert_eq!(ResourceRef::of(&json!(42)), None);
    }
}
