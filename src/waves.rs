//! Argo CD ordering of generated objects: which sync wave each phase gets (around the waves
//! of the app's own resources) and, in hooks mode, the hook annotations.

use serde_json::{Map, Value, json};

use crate::document::{self, Doc};
use crate::model::Phase;
use crate::options::{Mode, Options};

pub const ANN_WAVE: &str = "argocd.argoproj.io/sync-wave";
pub const ANN_HOOK: &str = "argocd.argoproj.io/hook";
pub const ANN_HOOK_DELETE: &str = "argocd.argoproj.io/hook-delete-policy";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Lowest and highest wave of the app's own resources.
    pub min: i64,
    pub max: i64,
    pub mode: Mode,
    pub hook_delete_policy: String,
}

impl Placement {
    /// Namespaces and CRDs are the ground the tasks stand on, not part of the app: they keep
    /// their own (lower) waves and do not push the tasks down. Hooks are not in the sync
    /// phase's waves.
    pub fn new(passthrough: &[&Doc<'_>], opts: &Options) -> Placement {
        let waves: Vec<i64> = passthrough
            .iter()
            .filter(|d| !matches!(d.kind.as_str(), "Namespace" | "CustomResourceDefinition"))
            .filter_map(|d| wave_of(d))
            .collect();
        Placement {
            min: waves.iter().copied().min().unwrap_or(0),
            max: waves.iter().copied().max().unwrap_or(0),
            mode: opts.mode,
            hook_delete_policy: opts.hook_delete_policy.clone(),
        }
    }

    pub fn wave(&self, phase: Phase) -> i64 {
        match phase {
            Phase::AppPre => self.min - 2,
            Phase::WorkloadPre => self.min - 1,
            Phase::WorkloadPost => self.max + 1,
            Phase::AppPost => self.max + 2,
        }
    }

    /// The wave of task records: after everything, so that Argo CD never waits for them.
    pub fn record_wave(&self) -> i64 {
        self.max + 3
    }

    /// Sets the ordering annotations of a generated object. In hooks mode every ConfigMap is
    /// a PreSync hook, so it exists before any task.
    pub fn annotate(&self, obj: &mut Value, phase: Phase, is_job: bool) {
        let Some(ann) = annotations_mut(obj) else {
            return;
        };
        ann.insert(ANN_WAVE.into(), json!(self.wave(phase).to_string()));
        if self.mode == Mode::Hooks {
            let hook = if is_job && !phase.is_pre() {
                "PostSync"
            } else {
                "PreSync"
            };
            ann.insert(ANN_HOOK.into(), json!(hook));
            ann.insert(
                ANN_HOOK_DELETE.into(),
                json!(if is_job {
                    self.hook_delete_policy.as_str()
                } else {
                    "BeforeHookCreation"
                }),
            );
        }
    }
}

/// The annotations of an object, created when absent or null. `None` when metadata or its
/// annotations are not maps: the renderer reports such input (KLT008) and renders nothing,
/// so there is nothing to annotate.
fn annotations_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let ann = obj
        .get_mut("metadata")?
        .as_object_mut()?
        .entry("annotations")
        .or_insert_with(|| json!({}));
    if ann.is_null() {
        *ann = json!({});
    }
    ann.as_object_mut()
}

impl Placement {
    /// An input object a task needs at `phase` (code ConfigMap, Secret, ServiceAccount), with
    /// the annotations that make it exist before the task starts; `None` when it already
    /// does. In hooks mode it becomes a PreSync hook, since hooks run before the sync phase.
    pub fn ready_before(&self, doc: &Doc<'_>, phase: Phase) -> Option<Value> {
        let mut obj = doc.root.to_json();
        let ann = annotations_mut(&mut obj)?;
        match self.mode {
            Mode::Waves if wave_of(doc).is_some_and(|w| w > self.wave(phase)) => {
                ann.insert(ANN_WAVE.into(), json!(self.wave(phase).to_string()));
            }
            Mode::Hooks => {
                ann.insert(ANN_HOOK.into(), json!("PreSync"));
                ann.insert(ANN_HOOK_DELETE.into(), json!("BeforeHookCreation"));
                ann.insert(ANN_WAVE.into(), json!(self.wave(Phase::AppPre).to_string()));
            }
            Mode::Waves => return None,
        }
        Some(obj)
    }
}

/// The wave of an input object in the sync phase; `None` for hooks.
pub fn wave_of(doc: &Doc<'_>) -> Option<i64> {
    let ann = doc.root.path(&["metadata", "annotations"]);
    if ann.and_then(|a| a.get(ANN_HOOK)).is_some() {
        return None;
    }
    Some(
        ann.and_then(|a| a.get(ANN_WAVE))
            .and_then(document::scalar_string)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
    )
}
