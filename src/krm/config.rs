//! The function's configuration: a `KltRender` object (or a ConfigMap) → render [`Options`].
//!
//! ```yaml
//! apiVersion: klt-render.dev/v1alpha1
//! kind: KltRender
//! metadata:
//!   name: klt-render
//! spec:              # the option table's names; every key is optional
//!   namespace: checkout
//!   mode: waves
//! ```
//!
//! A ConfigMap with the same keys under `data` is accepted too. Unknown keys are refused
//! (with a suggestion), never ignored: a misspelled `mdoe: hooks` would otherwise render waves.

use crate::Options;
use crate::options::SPECS;
use serde_json::Value;

pub const API_VERSION: &str = "klt-render.dev/v1alpha1";
pub const KIND: &str = "KltRender";
const GROUP: &str = "klt-render.dev";

/// Why the configuration cannot be used; `field` is a path inside the config object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn new(field: Option<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field,
            message: message.into(),
        }
    }
}

/// Top-level fields of a KltRender besides `spec`. `argsOneLiner`/`argsFromFile` belong to
/// kustomize's legacy plugin loader, which turns them into arguments (refused separately).
const KLTRENDER_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "argsOneLiner",
    "argsFromFile",
];

/// Options from a function config; `None` (no functionConfig) gives the defaults.
pub fn options(config: Option<&Value>) -> Result<Options, ConfigError> {
    let Some(config) = config.filter(|c| !c.is_null()) else {
        return Options::from_settings(&|_| None)
            .map_err(|e| ConfigError::new(None, e.to_string()));
    };
    let Some(obj) = config.as_object() else {
        return Err(ConfigError::new(
            None,
            format!(
                "functionConfig must be an object, not {}",
                type_name(config)
            ),
        ));
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let (section, settings) = match (api_version, kind) {
        (API_VERSION, KIND) => {
            for key in obj.keys() {
                if !KLTRENDER_FIELDS.contains(&key.as_str()) {
                    let hint = if SPECS.iter().any(|s| s.name == key) {
                        format!("; options go under spec: `spec: {{{key}: ...}}`")
                    } else {
                        String::new()
                    };
                    return Err(ConfigError::new(
                        Some(key.clone()),
                        format!("unknown field {key:?} in {KIND}{hint}"),
                    ));
                }
            }
            ("spec", obj.get("spec"))
        }
        (v, KIND) if v.split('/').next() == Some(GROUP) => {
            return Err(ConfigError::new(
                Some("apiVersion".into()),
                format!("{KIND} is not served as {v}; use {API_VERSION}"),
            ));
        }
        ("v1", "ConfigMap") => ("data", obj.get("data")),
        _ => {
            return Err(ConfigError::new(
                None,
                format!(
                    "functionConfig {} {} is not supported; use kind {KIND} (apiVersion {API_VERSION}) with the options under spec, or a ConfigMap with them under data",
                    if api_version.is_empty() {
                        "<no apiVersion>"
                    } else {
                        api_version
                    },
                    if kind.is_empty() { "<no kind>" } else { kind },
                ),
            ));
        }
    };
    let settings = settings_of(section, settings)?;
    let get = |name: &str| {
        settings
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    };
    Options::from_settings(&get)
        .map_err(|e| ConfigError::new(Some(format!("{section}.{}", e.name)), e.to_string()))
}

/// The `(option, value)` pairs of `spec`/`data`; `None` values are explicit nulls (unset).
fn settings_of(
    section: &str,
    node: Option<&Value>,
) -> Result<Vec<(String, Option<String>)>, ConfigError> {
    let map = match node {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(ConfigError::new(
                Some(section.into()),
                format!(
                    "{section} must be a map of options, not {}",
                    type_name(other)
                ),
            ));
        }
    };
    let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
    let mut out = Vec::new();
    for (key, value) in map {
        let field = Some(format!("{section}.{key}"));
        if !names.contains(&key.as_str()) {
            let hint = match crate::suggest::closest(key, names.iter().copied()) {
                Some(s) => format!("; did you mean {s:?}?"),
                None => format!("; known options: {}", names.join(", ")),
            };
            return Err(ConfigError::new(
                field,
                format!("unknown option {key:?}{hint}"),
            ));
        }
        let text = match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                return Err(ConfigError::new(
                    field,
                    format!("option {key:?} must be a string, not {}", type_name(other)),
                ));
            }
        };
        out.push((key.clone(), text));
    }
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use serde_json::json;

    #[test]
    fn no_config_gives_defaults() {
        assert_eq!(options(None).unwrap(), Options::default());
        assert_eq!(options(Some(&Value::Null)).unwrap(), Options::default());
    }

    #[test]
    fn kltrender_spec_uses_the_option_table() {
        let o = options(Some(&json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "r", "annotations": {"config.kubernetes.io/local-config": "true"}},
            "spec": {"namespace": "checkout", "mode": "hooks", "keep-keptn": true,
                     "profile": "klt-0.9", "deno-image": null},
        })))
        .unwrap();
        assert_eq!(o.namespace.as_deref(), Some("checkout"));
        assert_eq!(o.mode, Mode::Hooks);
        assert!(o.keep_keptn);
        assert_eq!(o.profile.name, "klt-0.9");
        assert_eq!(o.deno_image, None);
    }

    #[test]
    fn configmap_data_is_accepted() {
        let o = options(Some(&json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"namespace": "shop", "keep-keptn": "true"},
        })))
        .unwrap();
        assert_eq!(o.namespace.as_deref(), Some("shop"));
        assert!(o.keep_keptn);
        let o = options(Some(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        ))
        .unwrap();
        assert_eq!(o, Options::default());
    }

    #[test]
    fn unknown_keys_are_refused_with_a_suggestion() {
        let e = options(Some(
            &json!({"apiVersion": API_VERSION, "kind": KIND, "spec": {"mdoe": "hooks"}}),
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("spec.mdoe"));
        assert!(e.message.contains("did you mean \"mode\""), "{e:?}");
        let e = options(Some(
            &json!({"apiVersion": API_VERSION, "kind": KIND, "spec": {"keepKeptn": true}}),
        ))
        .unwrap_err();
        assert!(e.message.contains("did you mean \"keep-keptn\""), "{e:?}");
        let e = options(Some(
            &json!({"apiVersion": API_VERSION, "kind": KIND, "spec": {"zzzzzz": 1}}),
        ))
        .unwrap_err();
        assert!(
            e.message.contains("known options: namespace, mode"),
            "{e:?}"
        );
        let e = options(Some(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"namepsace": "x"}}),
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data.namepsace"));
        assert!(e.message.contains("did you mean \"namespace\""), "{e:?}");
    }

    #[test]
    fn options_outside_spec_are_pointed_at_spec() {
        let e = options(Some(
            &json!({"apiVersion": API_VERSION, "kind": KIND, "mode": "hooks"}),
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mode"));
        assert!(e.message.contains("options go under spec"), "{e:?}");
    }

    #[test]
    fn bad_values_types_and_kinds() {
        let e = options(Some(
            &json!({"apiVersion": API_VERSION, "kind": KIND, "spec": {"mode": "wave"}}),
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("spec.mode"));
        assert!(e.message.contains("unknown mode"), "{e:?}");
        let e = options(Some(
            &json!({"apiVersion": API_VERSION, "kind": KIND, "spec": {"namespace": ["a"]}}),
        ))
        .unwrap_err();
        assert!(e.message.contains("must be a string, not a list"), "{e:?}");
        let e = options(Some(
            &json!({"apiVersion": API_VERSION, "kind": KIND, "spec": "x"}),
        ))
        .unwrap_err();
        assert!(e.message.contains("spec must be a map"), "{e:?}");
        let e = options(Some(
            &json!({"apiVersion": "klt-render.dev/v1", "kind": KIND}),
        ))
        .unwrap_err();
        assert!(e.message.contains("use klt-render.dev/v1alpha1"), "{e:?}");
        let e = options(Some(
            &json!({"apiVersion": "example.com/v1", "kind": "Other"}),
        ))
        .unwrap_err();
        assert!(
            e.message.contains("example.com/v1 Other is not supported"),
            "{e:?}"
        );
        let e = options(Some(&json!({"apiVersion": API_VERSION, "kind": KIND, "spec": {"records": true, "mode": "hooks"}})))
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("spec.records"));
    }
}
