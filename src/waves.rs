//! Argo CD ordering of generated objects: which sync wave each phase gets (around the waves
//! of the app's own resources) and, in hooks mode, the hook annotations.
//!
//! Each task phase takes one wave unless the render uses more ([`Layout`]): a wave after a
//! phase's tasks for its evaluations, and one wave per task for sequential task order. A
//! render that uses neither gets the waves it always had.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::diag::{Diagnostic, Severity};
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
    pub layout: Layout,
}

/// The extra waves a render uses, per phase (indexed by [`Layout::slot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Waves the tasks of a phase take: 1, or the longest sequential task list.
    pub task_waves: [i64; 4],
    /// Whether the phase has evaluation Jobs, in a wave right after its tasks.
    pub evaluations: [bool; 4],
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            task_waves: [1; 4],
            evaluations: [false; 4],
        }
    }
}

impl Layout {
    pub fn slot(phase: Phase) -> usize {
        match phase {
            Phase::AppPre => 0,
            Phase::WorkloadPre => 1,
            Phase::WorkloadPost => 2,
            Phase::AppPost => 3,
        }
    }

    /// Waves a phase takes in all: its tasks' and its evaluations'.
    fn width(&self, phase: Phase) -> i64 {
        let i = Layout::slot(phase);
        self.task_waves[i].max(1) + i64::from(self.evaluations[i])
    }

    /// How far below the app's lowest wave the phase's first wave lies (pre phases), or
    /// above its highest wave (post phases).
    fn offset(&self, phase: Phase) -> i64 {
        match phase {
            Phase::WorkloadPre => self.width(Phase::WorkloadPre),
            Phase::AppPre => self.width(Phase::WorkloadPre) + self.width(Phase::AppPre),
            Phase::WorkloadPost => 1,
            Phase::AppPost => 1 + self.width(Phase::WorkloadPost),
        }
    }

    /// How far the phase's farthest wave lies from the app's waves.
    fn reach(&self, phase: Phase) -> i64 {
        if phase.is_pre() {
            self.offset(phase)
        } else {
            self.offset(phase) + self.width(phase) - 1
        }
    }

    fn records(&self) -> i64 {
        self.reach(Phase::AppPost) + 1
    }
}

impl Placement {
    /// Namespaces and CRDs are the ground the tasks stand on, not part of the app: they keep
    /// their own (lower) waves and do not push the tasks down. Hooks are not in the sync
    /// phase's waves.
    pub fn new(passthrough: &[&Doc<'_>], opts: &Options) -> Placement {
        let waves: Vec<i64> = passthrough
            .iter()
            .filter(|d| counts(d))
            .filter_map(|d| wave_of(d))
            .collect();
        Placement {
            min: waves.iter().copied().min().unwrap_or(0),
            max: waves.iter().copied().max().unwrap_or(0),
            mode: opts.mode,
            hook_delete_policy: opts.hook_delete_policy.clone(),
            layout: Layout::default(),
        }
    }

    /// The same placement with the waves a render's evaluations and task order need.
    pub fn with_layout(mut self, layout: Layout) -> Placement {
        self.layout = layout;
        self
    }

    /// The wave of a phase's task at `position` in its list (0 unless sequential).
    pub fn task_wave(&self, phase: Phase, position: usize) -> i64 {
        let last = self.layout.task_waves[Layout::slot(phase)].max(1) - 1;
        let step = i64::try_from(position).unwrap_or(i64::MAX).min(last);
        self.wave(phase).saturating_add(step)
    }

    /// The wave of a phase's evaluations: right after its tasks.
    pub fn evaluation_wave(&self, phase: Phase) -> i64 {
        let tasks = self.layout.task_waves[Layout::slot(phase)].max(1);
        self.wave(phase).saturating_add(tasks)
    }

    /// Saturating, never wrapping: a wave that does not fit is [`Placement::check_room`]'s
    /// error, and with an error nothing is rendered.
    pub fn wave(&self, phase: Phase) -> i64 {
        let offset = self.layout.offset(phase);
        if phase.is_pre() {
            self.min.saturating_sub(offset)
        } else {
            self.max.saturating_add(offset)
        }
    }

    /// The wave of task records: after everything, so that Argo CD never waits for them.
    pub fn record_wave(&self) -> i64 {
        self.max.saturating_add(self.layout.records())
    }

    /// Reports every object whose wave leaves no room for the waves of the tasks that run
    /// (`phases`, plus the records when `records` and the sync gates after post Jobs): Argo CD reads a wave as a 64-bit integer
    /// (`strconv.Atoi`), so a task wave beyond it would wrap or be read as wave 0, and the
    /// task would run after the workloads it must precede.
    pub fn check_room(
        &self,
        passthrough: &[&Doc<'_>],
        phases: impl IntoIterator<Item = Phase>,
        records: bool,
        diags: &mut Vec<Diagnostic>,
    ) {
        let mut below = 0;
        let mut above = 0;
        let mut any = false;
        let mut post = false;
        let layout = &self.layout;
        for phase in phases {
            any = true;
            if phase.is_pre() {
                below = below.max(layout.reach(phase));
            } else {
                above = above.max(layout.reach(phase));
                post = true;
            }
        }
        if !any {
            return;
        }
        // In waves mode post Jobs are followed by their app version's sync gate, in the
        // records' wave (see the render's sync gates).
        if post && self.mode == Mode::Waves {
            above = above.max(layout.records());
        }
        // In hooks mode the input objects any task needs become hooks in the app-pre wave.
        if self.mode == Mode::Hooks {
            below = layout.reach(Phase::AppPre);
        }
        if records {
            above = layout.records();
        }
        let (most_below, most_above) = (layout.reach(Phase::AppPre), layout.records());
        for doc in passthrough.iter().filter(|d| counts(d)) {
            let Some(w) = wave_of(doc) else { continue };
            let (needed, limit, side) = if w.checked_sub(below).is_none() {
                (i128::from(w) - i128::from(below), i64::MIN, "below")
            } else if w.checked_add(above).is_none() {
                (i128::from(w) + i128::from(above), i64::MAX, "above")
            } else {
                continue;
            };
            let pos = doc
                .root
                .path(&["metadata", "annotations", ANN_WAVE])
                .map_or(doc.root.pos, |n| n.pos);
            diags.push(doc.diag(
                "KLT028",
                Severity::Error,
                pos,
                Some(format!("metadata.annotations.{ANN_WAVE}")),
                format!(
                    "sync wave {w} leaves no room for the task waves {side} it: they would need wave {needed}, and Argo CD reads waves as 64-bit integers ({limit} is the {})",
                    if side == "below" { "lowest" } else { "highest" }
                ),
                Some(Cow::from(format!(
                    "use waves from {} to {}: tasks take up to {most_below} waves below the app's lowest and {most_above} above its highest",
                    i64::MIN + most_below,
                    i64::MAX - most_above
                ))),
            ));
        }
    }

    /// Sets the ordering annotations of a generated object. In hooks mode every ConfigMap is
    /// a PreSync hook, so it exists before any task.
    pub fn annotate(&self, obj: &mut Value, phase: Phase, is_job: bool) {
        let Some(ann) = annotations_mut(obj) else {
            return;
        };
        for (k, v) in self.ordering_annotations(phase, is_job) {
            ann.insert(k.into(), json!(v));
        }
    }

    /// The ordering annotations of a generated object, in the order they are set: its wave
    /// and, in hooks mode, its hook and hook delete policy.
    pub fn ordering_annotations(
        &self,
        phase: Phase,
        is_job: bool,
    ) -> Vec<(&'static str, Cow<'_, str>)> {
        self.ordering_annotations_at(self.wave(phase), phase, is_job)
    }

    /// [`Placement::ordering_annotations`] for an object in a given wave of its phase (a
    /// sequential task, an evaluation).
    pub fn ordering_annotations_at(
        &self,
        wave: i64,
        phase: Phase,
        is_job: bool,
    ) -> Vec<(&'static str, Cow<'_, str>)> {
        let mut ann = vec![(ANN_WAVE, Cow::Owned(wave.to_string()))];
        if self.mode == Mode::Hooks {
            let hook = if is_job && !phase.is_pre() {
                "PostSync"
            } else {
                "PreSync"
            };
            ann.push((ANN_HOOK, Cow::Borrowed(hook)));
            let delete = if is_job {
                self.hook_delete_policy.as_str()
            } else {
                "BeforeHookCreation"
            };
            ann.push((ANN_HOOK_DELETE, Cow::Borrowed(delete)));
        }
        ann
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

/// Whether an input object's wave places the tasks (see [`Placement::new`]).
fn counts(doc: &Doc<'_>) -> bool {
    !matches!(&*doc.kind, "Namespace" | "CustomResourceDefinition")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(layout: Layout) -> Placement {
        Placement {
            min: -1,
            max: 3,
            mode: Mode::Waves,
            hook_delete_policy: String::new(),
            layout,
        }
    }

    #[test]
    fn the_default_layout_keeps_the_waves_tasks_always_had() {
        let p = placement(Layout::default());
        let waves: Vec<i64> = [
            Phase::AppPre,
            Phase::WorkloadPre,
            Phase::WorkloadPost,
            Phase::AppPost,
        ]
        .map(|ph| p.wave(ph))
        .into();
        assert_eq!(waves, [-3, -2, 4, 5]);
        assert_eq!(p.record_wave(), 6);
        assert_eq!(p.task_wave(Phase::AppPre, 3), -3);
    }

    #[test]
    fn evaluations_and_sequential_tasks_take_waves_in_keptns_order() {
        let p = placement(Layout {
            task_waves: [2, 1, 3, 1],
            evaluations: [true; 4],
        });
        let order = [
            p.task_wave(Phase::AppPre, 0),
            p.task_wave(Phase::AppPre, 1),
            p.evaluation_wave(Phase::AppPre),
            p.task_wave(Phase::WorkloadPre, 0),
            p.evaluation_wave(Phase::WorkloadPre),
            // the app's own waves: -1 ..= 3
            p.task_wave(Phase::WorkloadPost, 0),
            p.task_wave(Phase::WorkloadPost, 2),
            p.evaluation_wave(Phase::WorkloadPost),
            p.task_wave(Phase::AppPost, 0),
            p.evaluation_wave(Phase::AppPost),
            p.record_wave(),
        ];
        assert_eq!(order, [-6, -5, -4, -3, -2, 4, 6, 7, 8, 9, 10]);
    }
}
