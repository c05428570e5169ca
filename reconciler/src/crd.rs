//! The `TaskRecord` custom resource (`klt-render.dev/v1alpha1`).
//!
//! One record per app version. `spec` says what is expected (written by `klt-render
//! --records`, or by the reconciler from Job labels); `status` is the reconciler's alone,
//! written with server-side apply under the field manager [`FIELD_MANAGER`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Field manager of every write the reconciler makes.
pub const FIELD_MANAGER: &str = "klt-reconciler";
pub const API_VERSION: &str = "klt-render.dev/v1alpha1";
pub const KIND: &str = "TaskRecord";

/// What an app version is expected to run.
// clippy takes the `type_ = "string"` of several printer columns for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "klt-render.dev",
    version = "v1alpha1",
    kind = "TaskRecord",
    plural = "taskrecords",
    singular = "taskrecord",
    namespaced,
    status = "TaskRecordStatus",
    shortname = "ktr",
    doc = "The state of the pre- and post-deployment task Jobs that klt-render rendered for one app version, kept by klt-reconciler.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.appVersion"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecordSpec {
    /// The KeptnApp (or workload) name.
    #[serde(default)]
    pub app: String,
    /// The app version the tasks belong to.
    #[serde(default)]
    pub app_version: String,
    /// The task Jobs expected for this app version. Optional: without it the record lists
    /// the Jobs that carry its labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<ExpectedTask>,
}

/// One expected task Job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedTask {
    /// Name of the Job.
    pub job: String,
    /// KeptnTaskDefinition name.
    #[serde(default)]
    pub definition: String,
    /// `app-pre`, `workload-pre`, `workload-post` or `app-post`.
    #[serde(default)]
    pub phase: String,
    /// Workload of a workload task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

/// State of a task, of a group of tasks, or of the whole record.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum TaskState {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "Pending",
            TaskState::Running => "Running",
            TaskState::Succeeded => "Succeeded",
            TaskState::Failed => "Failed",
        }
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// What the reconciler observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecordStatus {
    /// Overall: Failed if any task failed, Succeeded when all succeeded, Running once any
    /// task started, else Pending.
    #[serde(default)]
    pub phase: TaskState,
    /// The app-pre and workload-pre tasks together (absent when there are none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<TaskState>,
    /// The workload-post and app-post tasks together (absent when there are none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<TaskState>,
    /// One entry per task Job, kept after the Job is deleted.
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
    /// How many of the record's Jobs exist now.
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub observed_jobs: u32,
}

/// The last known state of one task Job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// Name of the Job.
    pub job: String,
    /// KeptnTaskDefinition name.
    #[serde(default)]
    pub definition: String,
    /// `app-pre`, `workload-pre`, `workload-post` or `app-post`.
    #[serde(default)]
    pub phase: String,
    /// Workload of a workload task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// An evaluation Job (`klt-render.dev/kind: evaluation`), not a task (absent: a task).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evaluation: bool,
    /// Pending, Running, Succeeded or Failed.
    pub state: TaskState,
    /// Pods the Job ran (failed + active + succeeded).
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub attempts: u32,
    /// When the Job started (its `status.startTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Job completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Why the task failed (the Job condition's reason and message; for an evaluation, the
    /// failing objective from its pod's termination message), or why its entry is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Job no longer exists (deleted or pruned); the entry keeps its last known state.
    #[serde(default)]
    pub job_deleted: bool,
    /// UID of the Job last seen under this name (absent: no Job seen yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_uid: Option<String>,
}

/// A non-negative count (`uint32` is no format the API server knows).
fn count_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "format": "int32", "minimum": 0})
}

/// The CRD as YAML (what `klt-reconciler crd` prints and `deploy/reconciler/crd.yaml` holds).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = TaskRecord::crd();
    let mut out = String::from(
        "# Generated by `klt-reconciler crd`; do not edit (a test keeps this file in sync).\n",
    );
    out.push_str(&serde_saphyr::to_string(&crd).expect("the CRD serializes"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_names() {
        let crd = TaskRecord::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("taskrecords.klt-render.dev")
        );
        let names = &crd.spec.names;
        assert_eq!(names.kind, "TaskRecord");
        assert_eq!(names.plural, "taskrecords");
        assert_eq!(names.short_names.as_deref(), Some(&["ktr".to_string()][..]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["App", "Version", "Phase", "Age"]);
    }

    #[test]
    fn status_schema_has_states_and_times() {
        let crd = serde_json::to_value(TaskRecord::crd()).unwrap();
        let status =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        let task = &status["properties"]["tasks"]["items"]["properties"];
        assert_eq!(task["startTime"]["format"], "date-time");
        let states = task["state"]["enum"].as_array().unwrap();
        assert_eq!(states.len(), 4);
        for key in ["phase", "pre", "post", "observedJobs"] {
            assert!(status["properties"][key].is_object(), "{key}");
        }
    }
}
