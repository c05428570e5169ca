//! Secret-leak oracle: the harness adds Secrets holding marker values to every input, and no
//! output but those Secrets themselves may ever show the markers.
//!
//! klt-render runs in Argo CD's repo server, whose output and error messages reach users who
//! may not read Secrets. A task's Secret is looked at (does it have `SECURE_DATA`?) and may be
//! moved to its task's sync wave, so its values are one bug away from a diagnostic, a Job env
//! value or a ConfigMap.

use std::collections::BTreeSet;

use klt_render::Diagnostic;
use klt_render::yaml::{Node, NodeKind};
use serde_json::{Value, json};

/// The `stringData` marker (and the decoded form of [`MARKER_B64`]).
pub const MARKER: &str = "FUZZ-SECRET-7d1c";
/// base64 of `FUZZ-SECRET-7d1c:data`, the `data` marker as written in the Secret.
pub const MARKER_B64: &str = "RlVaWi1TRUNSRVQtN2QxYzpkYXRh";
/// Always injected, so that inputs naming no Secret still carry one.
pub const DEFAULT_NAME: &str = "fuzz-secret";
/// At most this many Secrets are injected (names found in the input, then the default).
const MAX_SECRETS: usize = 4;

/// Whether the fuzzer wrote a marker into the input itself; outputs may then echo it
/// legitimately and the oracle stands down for that input.
pub fn input_has_marker(text: &str) -> bool {
    text.contains(MARKER) || text.contains(MARKER_B64) || text.contains("7d1c")
}

/// Which text holds a marker, if any.
pub fn leak(text: &str) -> Option<&'static str> {
    [MARKER, MARKER_B64, "7d1c:data"]
        .into_iter()
        .find(|m| text.contains(m))
}

/// The Secret objects to inject, as JSON: one per `(namespace, name)`.
pub fn secret_objects(targets: &BTreeSet<(Option<String>, String)>) -> Vec<Value> {
    targets
        .iter()
        .map(|(ns, name)| {
            let mut metadata = json!({"name": name});
            if let Some(ns) = ns {
                metadata["namespace"] = Value::from(ns.clone());
            }
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "Opaque",
                "data": {"SECURE_DATA": MARKER_B64, "other": MARKER_B64},
                "stringData": {"SECURE_DATA": MARKER, "token": format!("x-{MARKER}-y")},
            })
        })
        .collect()
}

/// Secret names an input refers to (any `secret: NAME` entry, as in
/// `secureParameters.secret`), with the namespace of the object that names them, minus those
/// the input defines itself (a duplicate would only stop the render).
pub fn names_from_nodes<'a, 't: 'a>(
    objects: impl Iterator<Item = (&'a Node<'t>, Option<String>)>,
    defined: &BTreeSet<(Option<String>, String)>,
) -> BTreeSet<(Option<String>, String)> {
    let mut out = BTreeSet::new();
    for (root, ns) in objects {
        collect(root, &ns, &mut out);
    }
    finish(out, defined)
}

fn collect(node: &Node, ns: &Option<String>, out: &mut BTreeSet<(Option<String>, String)>) {
    match &node.kind {
        NodeKind::Map(entries) => {
            for e in entries {
                if e.key == "secret"
                    && let NodeKind::Str(s) = &e.value.kind
                    && !s.is_empty()
                    && s.len() <= 253
                {
                    out.insert((ns.clone(), s.to_string()));
                }
                collect(&e.value, ns, out);
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|i| collect(i, ns, out)),
        _ => {}
    }
}

/// The same over JSON items (the KRM path).
pub fn names_from_values<'a>(
    items: impl Iterator<Item = &'a Value>,
    defined: &BTreeSet<(Option<String>, String)>,
) -> BTreeSet<(Option<String>, String)> {
    fn walk(v: &Value, ns: &Option<String>, out: &mut BTreeSet<(Option<String>, String)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "secret"
                        && let Value::String(s) = v
                        && !s.is_empty()
                        && s.len() <= 253
                    {
                        out.insert((ns.clone(), s.to_string()));
                    }
                    walk(v, ns, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, ns, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for item in items {
        let ns = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        walk(item, &ns, &mut out);
    }
    finish(out, defined)
}

fn finish(
    found: BTreeSet<(Option<String>, String)>,
    defined: &BTreeSet<(Option<String>, String)>,
) -> BTreeSet<(Option<String>, String)> {
    let mut out: BTreeSet<_> = found
        .into_iter()
        .filter(|k| !defined.contains(k))
        .take(MAX_SECRETS - 1)
        .collect();
    let default = (None, DEFAULT_NAME.to_string());
    if !defined.contains(&default) {
        out.insert(default);
    }
    out
}

/// Panics when a diagnostic shows a marker.
pub fn assert_no_leak_in_diagnostics(diags: &[Diagnostic], what: &str) {
    for d in diags {
        let fields = [
            Some(d.message.as_str()),
            d.help.as_deref(),
            d.object.as_deref(),
            d.field.as_deref(),
            Some(d.file.as_str()),
        ];
        for text in fields.into_iter().flatten() {
            if let Some(m) = leak(text) {
                panic!("secret marker {m:?} leaked into a {what} diagnostic: {d:?}");
            }
        }
    }
}
