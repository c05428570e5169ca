//! Keptn workloads derived from Deployments, StatefulSets, DaemonSets and Argo Rollouts,
//! the way Keptn's pod webhook derives them from their pods.
//!
//! The pod template's metadata is used when it carries a workload key; only otherwise are
//! the workload, app, version, task and metadata keys taken from the workload object's own
//! metadata (Keptn copies them onto the pod).

use std::collections::BTreeMap;

use crate::document::{Doc, scalar_string};
use crate::model::Spanned;
use crate::yaml::{Node, Pos};

pub const WORKLOAD_KINDS: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("argoproj.io", "Rollout"),
];

#[derive(Debug)]
pub struct Workload<'d> {
    pub doc: &'d Doc<'d>,
    pub keys: Keys,
}

/// What Keptn reads from a workload object. Apart from the object, so that the renderer can
/// derive it while loading and drop the object's tree.
#[derive(Debug)]
pub struct Keys {
    /// Sanitized app name (lowercase, `_` -> `-`).
    pub app: String,
    /// Workload name as listed in a KeptnApp (lowercase, `_` -> `-`).
    pub name: String,
    pub version: String,
    pub pre_tasks: Vec<Spanned<String>>,
    pub post_tasks: Vec<Spanned<String>>,
    pub metadata: BTreeMap<String, String>,
    /// Evaluation annotations that are not rendered.
    pub evaluations: Vec<Spanned<String>>,
    pub pos: Pos,
}

impl std::ops::Deref for Workload<'_> {
    type Target = Keys;

    fn deref(&self) -> &Keys {
        &self.keys
    }
}

impl Keys {
    /// The KeptnWorkload name Keptn puts into the task context: `<app>-<workload>`.
    pub fn keptn_name(&self) -> String {
        resource_name(&format!("{}-{}", self.app, self.name))
    }
}

/// Keptn's `CreateResourceName` without shortening: lowercase, `_` -> `-`.
pub fn resource_name(s: &str) -> String {
    s.to_lowercase().replace('_', "-")
}

/// Labels and annotations of one metadata block, with positions of the values.
struct Meta<'n> {
    labels: Option<&'n Node<'n>>,
    annotations: Option<&'n Node<'n>>,
    field: &'static str,
}

impl<'n> Meta<'n> {
    fn new(meta: Option<&'n Node<'n>>, field: &'static str) -> Self {
        Meta {
            labels: meta.and_then(|m| m.get("labels")),
            annotations: meta.and_then(|m| m.get("annotations")),
            field,
        }
    }

    fn one(&self, key: &str) -> Option<Spanned<String>> {
        for (node, kind) in [(self.annotations, "annotations"), (self.labels, "labels")] {
            if let Some(v) = node.and_then(|n| n.get(key))
                && let Some(s) = scalar_string(v).filter(|s| !s.is_empty())
            {
                return Some(Spanned {
                    value: s,
                    pos: v.pos,
                    field: format!("{}.{kind}.{key}", self.field),
                });
            }
        }
        None
    }

    /// Keptn's `GetLabelOrAnnotation(primary, secondary)`.
    fn get(&self, primary: &str, secondary: &str) -> Option<Spanned<String>> {
        self.one(primary).or_else(|| self.one(secondary))
    }

    fn has_workload(&self) -> bool {
        self.get("keptn.sh/workload", "app.kubernetes.io/name")
            .is_some()
    }
}

/// Splits a task list annotation on `,` without trimming, as Keptn does.
fn split_list(v: Option<Spanned<String>>) -> Vec<Spanned<String>> {
    let Some(v) = v else { return Vec::new() };
    v.value
        .split(',')
        .enumerate()
        .map(|(i, s)| Spanned {
            value: s.to_string(),
            pos: v.pos,
            field: format!("{} (item {})", v.field, i + 1),
        })
        .collect()
}

pub fn is_workload_kind(doc: &Doc<'_>) -> bool {
    WORKLOAD_KINDS
        .iter()
        .any(|(g, k)| doc.group() == *g && doc.kind == *k)
}

/// The Keptn workload of an object, `None` when it has no workload key.
pub fn derive<'d>(doc: &'d Doc<'d>) -> Option<Workload<'d>> {
    derive_keys(doc).map(|keys| Workload { doc, keys })
}

/// The workload keys of an object, `None` when it has no workload key.
pub fn derive_keys(doc: &Doc<'_>) -> Option<Keys> {
    let template = doc.root.path(&["spec", "template"]);
    let pod_meta = Meta::new(
        template.and_then(|t| t.get("metadata")),
        "spec.template.metadata",
    );
    let obj_meta = Meta::new(doc.root.get("metadata"), "metadata");
    let meta = if pod_meta.has_workload() {
        &pod_meta
    } else if obj_meta.has_workload() {
        &obj_meta
    } else {
        return None;
    };
    let workload = meta.get("keptn.sh/workload", "app.kubernetes.io/name")?;
    let app = meta
        .get("keptn.sh/app", "app.kubernetes.io/part-of")
        .map_or_else(|| workload.value.clone(), |a| a.value);
    let version = match meta.get("keptn.sh/version", "app.kubernetes.io/version") {
        Some(v) => v.value.to_lowercase(),
        None => computed_version(template, meta.one("keptn.sh/container")),
    };
    let mut evaluations = Vec::new();
    for key in [
        "keptn.sh/pre-deployment-evaluations",
        "keptn.sh/post-deployment-evaluations",
    ] {
        if let Some(v) = meta.one(key) {
            evaluations.push(v);
        }
    }
    Some(Keys {
        app: resource_name(&app),
        name: resource_name(&workload.value),
        version,
        pre_tasks: split_list(meta.one("keptn.sh/pre-deployment-tasks")),
        post_tasks: split_list(meta.one("keptn.sh/post-deployment-tasks")),
        metadata: parse_metadata(meta.one("keptn.sh/metadata")),
        evaluations,
        pos: workload.pos,
    })
}

/// `k=v,k2=v2`; entries without exactly one `=` are dropped, as Keptn drops them.
fn parse_metadata(v: Option<Spanned<String>>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(v) = v {
        for item in v.value.split(',') {
            let parts: Vec<&str> = item.split('=').collect();
            if let [k, val] = parts[..] {
                out.insert(k.to_string(), val.to_string());
            }
        }
    }
    out
}

/// The version Keptn computes when no version key is set: the image tag of the container
/// named by `keptn.sh/container`, else the FNV-1a-32 hash of every container's name, image and
/// env name/value pairs.
fn computed_version(template: Option<&Node>, container: Option<Spanned<String>>) -> String {
    let containers = template
        .and_then(|t| t.path(&["spec", "containers"]))
        .and_then(Node::as_seq)
        .unwrap_or_default();
    let text = |n: &Node, k: &str| n.get(k).and_then(scalar_string).unwrap_or_default();
    if let Some(wanted) = &container {
        for c in containers {
            if text(c, "name") == wanted.value {
                let image = text(c, "image");
                let tag = image.rsplit(':').next().unwrap_or("");
                if image.contains(':') && !tag.is_empty() && tag != "latest" {
                    return tag.to_lowercase();
                }
            }
        }
    }
    let mut concat = String::new();
    for c in containers {
        concat.push_str(&text(c, "name"));
        concat.push_str(&text(c, "image"));
        for e in c.get("env").and_then(Node::as_seq).unwrap_or_default() {
            concat.push_str(&text(e, "name"));
            concat.push_str(&text(e, "value"));
        }
    }
    fnv1a32(concat.as_bytes()).to_string()
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_go_hash_fnv_new32a() {
        // hash/fnv New32a of "" and "a" (Go's test vectors).
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
    }

    #[test]
    fn metadata_drops_malformed_pairs() {
        let m = parse_metadata(Some(Spanned {
            value: "a=1,b,c=2=3,d=4".into(),
            pos: Pos::default(),
            field: String::new(),
        }));
        assert_eq!(m.len(), 2);
        assert_eq!(m["a"], "1");
        assert_eq!(m["d"], "4");
    }
}
