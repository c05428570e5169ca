//! Keptn workloads derived from Deployments, StatefulSets, DaemonSets and Argo Rollouts,
//! the way Keptn's pod webhook derives them from their pods.
//!
//! The pod template's metadata is used when it carries a workload key. Otherwise Keptn copies
//! the workload object's own keys onto the pod (`copyResourceLabelsIfPresent` in
//! `lifecycle-operator/webhooks/pod_mutator/handlers/pod_annotation.go`): the object's non-empty
//! values replace the pod template's, the pod template's own app, task, evaluation and metadata
//! keys fill what the object leaves empty, and the version is always the object's (or computed
//! with the object's `keptn.sh/container`).

use std::rc::Rc;

use crate::document::{Doc, Pairs, scalar_string};
use crate::model::{Named, Spanned};
use crate::yaml::{Entry, Node, Pos};

pub const WORKLOAD_KINDS: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("argoproj.io", "Rollout"),
];

/// The keys Keptn reads from a workload, as constants in
/// `lifecycle-operator/apis/lifecycle/v1/common/common.go` (keptn/lifecycle-toolkit at
/// `40e195d78`, = keptn-v2.5.0), read by `pod_annotation.go` and `workload.go` there.
pub const WORKLOAD: &str = "keptn.sh/workload";
pub const APP: &str = "keptn.sh/app";
pub const VERSION: &str = "keptn.sh/version";
pub const PRE_TASKS: &str = "keptn.sh/pre-deployment-tasks";
pub const POST_TASKS: &str = "keptn.sh/post-deployment-tasks";
pub const PRE_EVALUATIONS: &str = "keptn.sh/pre-deployment-evaluations";
pub const POST_EVALUATIONS: &str = "keptn.sh/post-deployment-evaluations";
/// klt-render's own key: `sequential` runs the tasks of each phase one after another.
pub const TASK_ORDER: &str = crate::model::TASK_ORDER;
pub const CONTAINER: &str = "keptn.sh/container";
pub const METADATA: &str = "keptn.sh/metadata";
/// The recommended Kubernetes labels Keptn falls back to for workload, app and version.
pub const K8S_NAME: &str = "app.kubernetes.io/name";
pub const K8S_PART_OF: &str = "app.kubernetes.io/part-of";
pub const K8S_VERSION: &str = "app.kubernetes.io/version";

/// Every `keptn.sh/` key Keptn reads on a workload object or its pod template.
pub const WORKLOAD_KEYS: &[&str] = &[
    WORKLOAD,
    APP,
    VERSION,
    PRE_TASKS,
    POST_TASKS,
    PRE_EVALUATIONS,
    POST_EVALUATIONS,
    CONTAINER,
    METADATA,
];

/// The other `keptn.sh/` keys of that file, which Keptn sets or reads elsewhere: the
/// namespace switch, Keptn's own marks on pods and tasks, and the certificate injection of
/// `keptn-cert-manager`.
pub const OTHER_KEPTN_KEYS: &[&str] = &[
    "keptn.sh/lifecycle-toolkit",
    "keptn.sh/scheduling-gate-removed",
    "keptn.sh/task-name",
    "keptn.sh/app-type",
    "keptn.sh/inject-cert",
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
    pub pre_tasks: Vec<Named>,
    pub post_tasks: Vec<Named>,
    /// Shared with the context of every run of the workload.
    pub metadata: Rc<Pairs>,
    /// `keptn.sh/pre-deployment-evaluations` and `post-…`, split as task lists are.
    pub pre_evaluations: Vec<Named>,
    pub post_evaluations: Vec<Named>,
    /// `klt-render.dev/task-order` as written (checked by the renderer).
    pub task_order: Option<Spanned<String>>,
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
pub struct Meta<'n> {
    labels: Option<&'n Node<'n>>,
    annotations: Option<&'n Node<'n>>,
    field: &'static str,
}

impl<'n> Meta<'n> {
    pub fn new(meta: Option<&'n Node<'n>>, field: &'static str) -> Self {
        Meta {
            labels: meta.and_then(|m| m.get("labels")),
            annotations: meta.and_then(|m| m.get("annotations")),
            field,
        }
    }

    /// The value of `key`: the annotation, else the label (the first non-empty).
    pub fn one(&self, key: &str) -> Option<Spanned<String>> {
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
    pub fn get(&self, primary: &str, secondary: &str) -> Option<Spanned<String>> {
        self.one(primary).or_else(|| self.one(secondary))
    }

    /// The entries of `labels` or `annotations` (none when absent or not a map).
    pub fn entries(&self, which: &str) -> &'n [Entry<'n>] {
        let node = if which == "labels" {
            self.labels
        } else {
            self.annotations
        };
        node.and_then(Node::as_map).unwrap_or_default()
    }

    /// `metadata` or `spec.template.metadata`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The workload name key, when this metadata carries one.
    pub fn workload(&self) -> Option<Spanned<String>> {
        self.get(WORKLOAD, K8S_NAME)
    }
}

/// The pod template's and the object's own metadata of a workload object.
pub fn metas<'n>(doc: &'n Doc<'n>) -> (Meta<'n>, Meta<'n>) {
    (
        Meta::new(
            doc.root.path(&["spec", "template", "metadata"]),
            "spec.template.metadata",
        ),
        Meta::new(doc.root.get("metadata"), "metadata"),
    )
}

/// Splits a task list annotation on `,` without trimming, as Keptn does.
pub fn split_list(v: Option<Spanned<String>>) -> Vec<Named> {
    let Some(v) = v else { return Vec::new() };
    let mut list: Vec<_> = v
        .value
        .split(',')
        .enumerate()
        .map(|(i, s)| {
            Rc::new(Spanned {
                value: s.to_string(),
                pos: v.pos,
                field: format!("{} (item {})", v.field, i + 1),
            })
        })
        .collect();
    // Held for the whole render: a collected Vec has room for four.
    list.shrink_to_fit();
    list
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
    let (pod_meta, obj_meta) = metas(doc);
    // The metadata Keptn reads first, and the pod template's when the object's was copied
    // onto it (its own keys fill what the object leaves empty).
    let (meta, fill) = if pod_meta.workload().is_some() {
        (&pod_meta, None)
    } else if obj_meta.workload().is_some() {
        (&obj_meta, Some(&pod_meta))
    } else {
        return None;
    };
    let one = |key: &str| meta.one(key).or_else(|| fill.and_then(|f| f.one(key)));
    let workload = meta.workload()?;
    let app = meta
        .get(APP, K8S_PART_OF)
        .or_else(|| fill.and_then(|f| f.get(APP, K8S_PART_OF)))
        .map_or_else(|| workload.value.clone(), |a| a.value);
    let version = match meta.get(VERSION, K8S_VERSION) {
        Some(v) => v.value.to_lowercase(),
        None => computed_version(template, meta.one(CONTAINER)),
    };
    Some(Keys {
        app: resource_name(&app),
        name: resource_name(&workload.value),
        version,
        pre_tasks: split_list(one(PRE_TASKS)),
        post_tasks: split_list(one(POST_TASKS)),
        metadata: Rc::new(parse_metadata(one(METADATA))),
        pre_evaluations: split_list(one(PRE_EVALUATIONS)),
        post_evaluations: split_list(one(POST_EVALUATIONS)),
        task_order: one(TASK_ORDER),
        pos: workload.pos,
    })
}

/// `k=v,k2=v2`; entries without exactly one `=` are dropped, as Keptn drops them.
fn parse_metadata(v: Option<Spanned<String>>) -> Pairs {
    let mut out = Pairs::new();
    if let Some(v) = v {
        for item in v.value.split(',') {
            let parts: Vec<&str> = item.split('=').collect();
            if let [k, val] = parts[..] {
                out.push((k.to_string(), val.to_string()));
            }
        }
    }
    // A later key wins, as it did in a map: reversed, it is the first of its key.
    out.reverse();
    crate::document::sort_pairs(&mut out);
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
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(m, [pair("a", "1"), pair("d", "4")]);
    }

    #[test]
    fn metadata_keys_are_sorted_and_the_last_of_a_key_wins() {
        let m = parse_metadata(Some(Spanned {
            value: "z=1,a=2,z=3".into(),
            pos: Pos::default(),
            field: String::new(),
        }));
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(m, [pair("a", "2"), pair("z", "3")]);
    }
}
