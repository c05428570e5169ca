//! Pure state computation: what a Job says about its task, what a record's status becomes,
//! and which task transitions (events, metrics) a new status brings. No I/O here.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{TaskRecordSpec, TaskRecordStatus, TaskState, TaskStatus};
use crate::evaluation;

// The renderer's label contract, from the renderer itself.
pub use klt_render::job::{
    LABEL_APP, LABEL_APP_VERSION, LABEL_DEFINITION, LABEL_MANAGED_BY, LABEL_PHASE, LABEL_RECORD,
    LABEL_VERSION, LABEL_WORKLOAD, MANAGED_BY,
};
/// Label selector of the Jobs the reconciler watches.
pub const JOB_SELECTOR: &str = "app.kubernetes.io/managed-by=klt-render";

/// Message of a task whose Job was deleted before it finished.
pub const MSG_DELETED_UNFINISHED: &str = "Job deleted before it finished";
/// Message of an expected task whose Job does not exist yet.
pub const MSG_NOT_CREATED: &str = "Job not created yet";

/// Namespace and name of a record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything the reconciler keeps of a Job: who it is and what its status says. Small on
/// purpose (the pod template, env and managed fields are dropped at once).
#[derive(Clone, Debug, PartialEq)]
pub struct JobObservation {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub record: String,
    pub app: String,
    pub app_version: String,
    pub definition: String,
    pub phase: String,
    pub workload: Option<String>,
    /// An evaluation Job (its definition is the evaluation definition).
    pub evaluation: bool,
    pub state: TaskState,
    pub attempts: u32,
    pub start_time: Option<Time>,
    pub end_time: Option<Time>,
    pub message: Option<String>,
}

impl JobObservation {
    pub fn key(&self) -> RecordKey {
        RecordKey {
            namespace: self.namespace.clone(),
            name: self.record.clone(),
        }
    }
}

/// The record a klt-render Job belongs to: its `klt-render.dev/record` label, else the name
/// klt-render gives the record of its app and app-version labels. `None` for other Jobs.
///
/// A workload task's Job carries no app version (one Job serves every app version that keeps
/// that workload version, as one KeptnWorkloadVersion does in Keptn): its own record is its
/// workload version's, `<app>-<workload>-<version>` like a KeptnWorkloadVersion's name. The
/// records of app versions list such Jobs by name in their spec instead.
pub fn record_of(labels: &BTreeMap<String, String>) -> Option<String> {
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    if let Some(r) = labels.get(LABEL_RECORD).filter(|r| !r.is_empty()) {
        return Some(r.clone());
    }
    let (owner, version) = owner_of(labels)?;
    record_name(owner, version)
}

/// Whose tasks a Job without a record label runs, and at which version: the app at its app
/// version, or, for a workload task without an app version, the workload at its version.
fn owner_of(labels: &BTreeMap<String, String>) -> Option<(&str, &str)> {
    let get = |k: &str| labels.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match (get(LABEL_APP_VERSION), get(LABEL_WORKLOAD)) {
        (None, Some(workload)) => Some((workload, get(LABEL_VERSION).unwrap_or(""))),
        (version, _) => Some((get(LABEL_APP)?, version.unwrap_or(""))),
    }
}

/// klt-render's record name for an app version: the renderer's own function, so the two
/// can never disagree.
pub use klt_render::job::record_name;

/// What a Job's status says about its task.
///
/// Conditions `Failed`/`FailureTarget` → Failed; `Complete`/`SuccessCriteriaMet` → Succeeded
/// (the first matching condition with status True, failure first); else active pods or a
/// start time → Running; else Pending. Attempts are the failed, active and succeeded pods.
pub fn observe(job: &Job) -> Option<JobObservation> {
    let meta = &job.metadata;
    let labels = meta.labels.as_ref()?;
    let record = record_of(labels)?;
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let owner = match labels.get(LABEL_RECORD).filter(|r| !r.is_empty()) {
        Some(_) => (
            labels.get(LABEL_APP).map_or("", String::as_str),
            labels.get(LABEL_APP_VERSION).map_or("", String::as_str),
        ),
        None => owner_of(labels).unwrap_or(("", "")),
    };
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let true_cond = |types: &[&str]| {
        types.iter().find_map(|t| {
            conditions
                .iter()
                .find(|c| c.type_ == *t && c.status == "True")
        })
    };
    let active = status.active.unwrap_or(0).max(0) as u32;
    let attempts = status.failed.unwrap_or(0).max(0) as u32
        + active
        + status.succeeded.unwrap_or(0).max(0) as u32;
    let (state, end_time, message) = if let Some(c) = true_cond(&["Failed", "FailureTarget"]) {
        let reason = c.reason.clone().unwrap_or_default();
        let msg = c.message.clone().unwrap_or_default();
        let message = match (reason.is_empty(), msg.is_empty()) {
            (true, true) => "Job failed".to_string(),
            (false, true) => reason,
            (true, false) => msg,
            (false, false) => format!("{reason}: {msg}"),
        };
        (
            TaskState::Failed,
            c.last_transition_time.clone(),
            Some(message),
        )
    } else if let Some(c) = true_cond(&["Complete", "SuccessCriteriaMet"]) {
        let end = status
            .completion_time
            .clone()
            .or_else(|| c.last_transition_time.clone());
        (TaskState::Succeeded, end, None)
    } else if active > 0 || status.start_time.is_some() {
        (TaskState::Running, None, None)
    } else {
        (TaskState::Pending, None, None)
    };
    Some(JobObservation {
        name: meta.name.clone()?,
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        record,
        app: owner.0.to_string(),
        app_version: owner.1.to_string(),
        definition: match evaluation::is_evaluation(labels) {
            true => label(evaluation::LABEL_EVALUATION),
            false => label(LABEL_DEFINITION),
        },
        phase: label(LABEL_PHASE),
        workload: labels
            .get(LABEL_WORKLOAD)
            .filter(|w| !w.is_empty())
            .cloned(),
        evaluation: evaluation::is_evaluation(labels),
        state,
        attempts,
        start_time: status.start_time,
        end_time,
        message,
    })
}

/// Rank of a phase label in run order (unknown phases last).
pub fn phase_rank(phase: &str) -> usize {
    ["app-pre", "workload-pre", "workload-post", "app-post"]
        .iter()
        .position(|p| *p == phase)
        .unwrap_or(4)
}

pub fn is_pre(phase: &str) -> bool {
    matches!(phase, "app-pre" | "workload-pre")
}

pub fn is_post(phase: &str) -> bool {
    matches!(phase, "workload-post" | "app-post")
}

/// The state of a group of tasks: Failed if any failed, Succeeded if all succeeded, Running
/// once any started or finished, else Pending; `None` for no tasks.
pub fn aggregate(states: impl IntoIterator<Item = TaskState>) -> Option<TaskState> {
    let (mut any, mut all_ok, mut failed, mut progress) = (false, true, false, false);
    for s in states {
        any = true;
        all_ok &= s == TaskState::Succeeded;
        failed |= s == TaskState::Failed;
        progress |= matches!(s, TaskState::Running | TaskState::Succeeded);
    }
    if !any {
        None
    } else if failed {
        Some(TaskState::Failed)
    } else if all_ok {
        Some(TaskState::Succeeded)
    } else if progress {
        Some(TaskState::Running)
    } else {
        Some(TaskState::Pending)
    }
}

/// The record's new status from its spec (expected tasks), the Jobs that exist now and the
/// previous status. A task whose Job is gone keeps its last known entry, marked
/// `jobDeleted`; an expected task without a Job is Pending. Depends on nothing else (no
/// clock), so an unchanged world gives an equal status and no write.
pub fn compute_status<'a>(
    spec: Option<&TaskRecordSpec>,
    jobs: impl IntoIterator<Item = &'a JobObservation>,
    prev: Option<&TaskRecordStatus>,
) -> TaskRecordStatus {
    let mut tasks: BTreeMap<String, TaskStatus> = BTreeMap::new();
    if let Some(spec) = spec {
        for t in &spec.tasks {
            tasks.insert(
                t.job.clone(),
                TaskStatus {
                    job: t.job.clone(),
                    definition: t.definition.clone(),
                    phase: t.phase.clone(),
                    workload: t.workload.clone().filter(|w| !w.is_empty()),
                    state: TaskState::Pending,
                    message: Some(MSG_NOT_CREATED.to_string()),
                    ..Default::default()
                },
            );
        }
    }
    if let Some(prev) = prev {
        for p in &prev.tasks {
            // Entries of Jobs never seen are rebuilt from the spec (which may have changed).
            if p.job_uid.is_none() {
                continue;
            }
            let mut kept = p.clone();
            kept.job_deleted = true;
            if !kept.state.is_terminal() {
                kept.message = Some(MSG_DELETED_UNFINISHED.to_string());
            }
            tasks.insert(p.job.clone(), kept);
        }
    }
    let mut observed = 0u32;
    for j in jobs {
        observed += 1;
        let expected = tasks.get(&j.name);
        let or_expected = |v: &str, f: fn(&TaskStatus) -> &str| {
            if v.is_empty() {
                expected.map(|e| f(e).to_string()).unwrap_or_default()
            } else {
                v.to_string()
            }
        };
        let entry = TaskStatus {
            job: j.name.clone(),
            definition: or_expected(&j.definition, |e| &e.definition),
            phase: or_expected(&j.phase, |e| &e.phase),
            workload: j
                .workload
                .clone()
                .or_else(|| expected.and_then(|e| e.workload.clone())),
            evaluation: j.evaluation,
            state: j.state,
            attempts: j.attempts,
            start_time: j.start_time.clone(),
            end_time: j.end_time.clone(),
            message: j.message.clone(),
            job_deleted: false,
            job_uid: Some(j.uid.clone()),
        };
        tasks.insert(j.name.clone(), entry);
    }
    let mut tasks: Vec<TaskStatus> = tasks.into_values().collect();
    tasks.sort_by(|a, b| (phase_rank(&a.phase), &a.job).cmp(&(phase_rank(&b.phase), &b.job)));
    let phase = aggregate(tasks.iter().map(|t| t.state)).unwrap_or_default();
    let pre = aggregate(tasks.iter().filter(|t| is_pre(&t.phase)).map(|t| t.state));
    let post = aggregate(tasks.iter().filter(|t| is_post(&t.phase)).map(|t| t.state));
    TaskRecordStatus {
        phase,
        pre,
        post,
        tasks,
        observed_jobs: observed,
    }
}

/// A task event worth telling: it started, succeeded or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Started,
    Succeeded,
    Failed,
}

impl Transition {
    pub fn reason(self) -> &'static str {
        match self {
            Transition::Started => "TaskStarted",
            Transition::Succeeded => "TaskSucceeded",
            Transition::Failed => "TaskFailed",
        }
    }
    pub fn outcome(self) -> Option<&'static str> {
        match self {
            Transition::Started => None,
            Transition::Succeeded => Some("succeeded"),
            Transition::Failed => Some("failed"),
        }
    }
}

/// The task transitions from `prev` to `next`: a task entering Running, Succeeded or Failed
/// (or a new Job under the same name reaching one of them). Entries of deleted Jobs never
/// transition. Comparing with the stored status is what keeps restarts from repeating them.
pub fn transitions<'a>(
    prev: Option<&TaskRecordStatus>,
    next: &'a TaskRecordStatus,
) -> Vec<(Transition, &'a TaskStatus)> {
    let before: BTreeMap<&str, &TaskStatus> = prev
        .map(|p| p.tasks.iter().map(|t| (t.job.as_str(), t)).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for t in &next.tasks {
        if t.job_deleted {
            continue;
        }
        let changed = match before.get(t.job.as_str()) {
            None => true,
            Some(p) => {
                p.state != t.state
                    || (p.job_uid.is_some() && t.job_uid.is_some() && p.job_uid != t.job_uid)
            }
        };
        if !changed {
            continue;
        }
        let kind = match t.state {
            TaskState::Pending => continue,
            TaskState::Running => Transition::Started,
            TaskState::Succeeded => Transition::Succeeded,
            TaskState::Failed => Transition::Failed,
        };
        out.push((kind, t));
    }
    out
}

/// Seconds between start and end of a finished task.
pub fn duration_seconds(t: &TaskStatus) -> Option<f64> {
    let (Some(s), Some(e)) = (&t.start_time, &t.end_time) else {
        return None;
    };
    let d = e.0.duration_since(s.0).as_secs_f64();
    (d >= 0.0).then_some(d)
}

/// A human line about a task, for events.
pub fn describe(t: &TaskStatus) -> String {
    let what = if t.evaluation { "evaluation" } else { "task" };
    let mut s = format!("{what} {} ({}", t.definition, t.phase);
    if let Some(w) = &t.workload {
        s.push_str(", workload ");
        s.push_str(w);
    }
    s.push_str(") Job ");
    s.push_str(&t.job);
    s
}

/// The note of the event for a transition.
pub fn event_note(kind: Transition, t: &TaskStatus) -> String {
    let what = describe(t);
    let note = match kind {
        Transition::Started => format!("{what} started"),
        Transition::Succeeded => match duration_seconds(t) {
            Some(d) => format!("{what} succeeded after {d:.0}s"),
            None => format!("{what} succeeded"),
        },
        Transition::Failed => format!(
            "{what} failed after {} attempt(s): {}",
            t.attempts,
            t.message.as_deref().unwrap_or("Job failed")
        ),
    };
    // The Events API takes at most 1 kB.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note[..cut].to_string()
    } else {
        note
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ExpectedTask;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const NONE: &[JobObservation] = &[];

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn job(name: &str, phase: &str, status: JobStatus) -> Job {
        let labels: BTreeMap<String, String> = [
            (LABEL_MANAGED_BY, MANAGED_BY),
            (LABEL_APP, "checkout"),
            (LABEL_APP_VERSION, "1.4.0"),
            (LABEL_RECORD, "checkout-1.4.0"),
            (LABEL_DEFINITION, "notify"),
            (LABEL_PHASE, phase),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels),
                ..Default::default()
            },
            spec: None,
            status: Some(status),
        }
    }

    fn cond(type_: &str, status: &str) -> JobCondition {
        JobCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some("BackoffLimitExceeded".into()),
            message: Some("Job has reached the specified backoff limit".into()),
            last_transition_time: Some(t("2026-01-01T00:01:00Z")),
            ..Default::default()
        }
    }

    fn obs(name: &str, phase: &str, status: JobStatus) -> JobObservation {
        observe(&job(name, phase, status)).unwrap()
    }

    fn running() -> JobStatus {
        JobStatus {
            active: Some(1),
            start_time: Some(t("2026-01-01T00:00:00Z")),
            ..Default::default()
        }
    }

    fn succeeded() -> JobStatus {
        JobStatus {
            succeeded: Some(1),
            start_time: Some(t("2026-01-01T00:00:00Z")),
            completion_time: Some(t("2026-01-01T00:00:30Z")),
            conditions: Some(vec![
                cond("SuccessCriteriaMet", "True"),
                cond("Complete", "True"),
            ]),
            ..Default::default()
        }
    }

    fn failed() -> JobStatus {
        JobStatus {
            failed: Some(3),
            start_time: Some(t("2026-01-01T00:00:00Z")),
            conditions: Some(vec![cond("FailureTarget", "True"), cond("Failed", "True")]),
            ..Default::default()
        }
    }

    #[test]
    fn job_states() {
        let p = obs("a", "app-pre", JobStatus::default());
        assert_eq!((p.state, p.attempts), (TaskState::Pending, 0));
        let r = obs("a", "app-pre", running());
        assert_eq!((r.state, r.attempts), (TaskState::Running, 1));
        // A start time alone (pods not counted yet) is running.
        let r2 = obs(
            "a",
            "app-pre",
            JobStatus {
                start_time: Some(t("2026-01-01T00:00:00Z")),
                ..Default::default()
            },
        );
        assert_eq!(r2.state, TaskState::Running);
        let s = obs("a", "app-pre", succeeded());
        assert_eq!(s.state, TaskState::Succeeded);
        assert_eq!(s.end_time, Some(t("2026-01-01T00:00:30Z")));
        let f = obs("a", "app-pre", failed());
        assert_eq!((f.state, f.attempts), (TaskState::Failed, 3));
        assert_eq!(
            f.message.as_deref(),
            Some("BackoffLimitExceeded: Job has reached the specified backoff limit")
        );
        assert_eq!(f.end_time, Some(t("2026-01-01T00:01:00Z")));
        // FailureTarget alone (pods still terminating) is already a failure.
        let ft = obs(
            "a",
            "app-pre",
            JobStatus {
                active: Some(1),
                conditions: Some(vec![cond("FailureTarget", "True")]),
                ..Default::default()
            },
        );
        assert_eq!(ft.state, TaskState::Failed);
        // SuccessCriteriaMet alone is a success; a False condition counts for nothing.
        let sc = obs(
            "a",
            "app-pre",
            JobStatus {
                conditions: Some(vec![
                    cond("Failed", "False"),
                    cond("SuccessCriteriaMet", "True"),
                ]),
                ..Default::default()
            },
        );
        assert_eq!(sc.state, TaskState::Succeeded);
        // Attempts: failed + active + succeeded pods.
        let retry = obs(
            "a",
            "app-pre",
            JobStatus {
                failed: Some(2),
                active: Some(1),
                ..Default::default()
            },
        );
        assert_eq!((retry.state, retry.attempts), (TaskState::Running, 3));
    }

    #[test]
    fn records_of_jobs() {
        let mut l: BTreeMap<String, String> = BTreeMap::new();
        assert_eq!(record_of(&l), None);
        l.insert(LABEL_MANAGED_BY.into(), "argocd".into());
        l.insert(LABEL_APP.into(), "checkout".into());
        assert_eq!(record_of(&l), None, "not ours");
        l.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        assert_eq!(record_of(&l).as_deref(), Some("checkout"));
        l.insert(LABEL_APP_VERSION.into(), "1.4.0".into());
        assert_eq!(record_of(&l).as_deref(), Some("checkout-1.4.0"));
        l.insert(LABEL_RECORD.into(), "explicit".into());
        assert_eq!(record_of(&l).as_deref(), Some("explicit"));
    }

    #[test]
    fn a_workload_task_without_app_version_belongs_to_its_workload_version() {
        let l: BTreeMap<String, String> = [
            (LABEL_MANAGED_BY, MANAGED_BY),
            (LABEL_APP, "checkout"),
            (LABEL_WORKLOAD, "checkout-checkout-api"),
            (LABEL_VERSION, "1.4.0"),
            (LABEL_PHASE, "workload-pre"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // A KeptnWorkloadVersion's name: <app>-<workload>-<version>.
        assert_eq!(
            record_of(&l).as_deref(),
            Some("checkout-checkout-api-1.4.0")
        );
        let mut job = job("pre-db-migrate-x", "workload-pre", JobStatus::default());
        job.metadata.labels = Some(l);
        let obs = observe(&job).unwrap();
        assert_eq!(
            (obs.app.as_str(), obs.app_version.as_str()),
            ("checkout-checkout-api", "1.4.0")
        );
    }

    #[test]
    fn record_names_match_the_renderer() {
        assert_eq!(
            record_name("checkout", "1.4.0").as_deref(),
            Some("checkout-1.4.0")
        );
        assert_eq!(record_name("", "1.0"), None);
        assert_eq!(record_name("shop", "").as_deref(), Some("shop"));
        // Same digest encoding as klt-render's hash::short.
        let odd = record_name("shop", "1.0+build.7").unwrap();
        assert_eq!(odd, "shop-1.0-build.7-k4gcd44hd4");
        assert_ne!(record_name("shop", "1.0+x"), record_name("shop", "1.0-x"));
        let long = record_name(&"a".repeat(60), "1.0").unwrap();
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn aggregates() {
        use TaskState::*;
        assert_eq!(aggregate([]), None);
        assert_eq!(aggregate([Pending, Pending]), Some(Pending));
        assert_eq!(aggregate([Pending, Running]), Some(Running));
        assert_eq!(aggregate([Succeeded, Pending]), Some(Running));
        assert_eq!(aggregate([Succeeded, Succeeded]), Some(Succeeded));
        assert_eq!(aggregate([Succeeded, Failed, Running]), Some(Failed));
    }

    fn spec() -> TaskRecordSpec {
        let task = |job: &str, phase: &str, workload: Option<&str>| ExpectedTask {
            job: job.into(),
            definition: "notify".into(),
            phase: phase.into(),
            workload: workload.map(String::from),
        };
        TaskRecordSpec {
            app: "checkout".into(),
            app_version: "1.4.0".into(),
            tasks: vec![
                task("post-notify-1", "app-post", None),
                task("pre-notify-1", "app-pre", None),
                task("pre-notify-w", "workload-pre", Some("api")),
            ],
        }
    }

    #[test]
    fn status_from_spec_and_jobs() {
        let s = spec();
        let st = compute_status(Some(&s), NONE, None);
        assert_eq!(st.phase, TaskState::Pending);
        assert_eq!(st.tasks.len(), 3);
        let order: Vec<_> = st.tasks.iter().map(|t| t.job.as_str()).collect();
        assert_eq!(order, ["pre-notify-1", "pre-notify-w", "post-notify-1"]);
        assert!(
            st.tasks
                .iter()
                .all(|t| !t.job_deleted && t.job_uid.is_none())
        );
        assert_eq!(st.tasks[1].workload.as_deref(), Some("api"));

        let jobs = vec![obs("pre-notify-1", "app-pre", succeeded())];
        let st2 = compute_status(Some(&s), &jobs, Some(&st));
        assert_eq!(st2.phase, TaskState::Running);
        assert_eq!(st2.pre, Some(TaskState::Running));
        assert_eq!(st2.post, Some(TaskState::Pending));
        assert_eq!(st2.observed_jobs, 1);
        let changes = transitions(Some(&st), &st2);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, Transition::Succeeded);
        assert_eq!(duration_seconds(changes[0].1), Some(30.0));

        let jobs = vec![
            obs("pre-notify-1", "app-pre", succeeded()),
            obs("pre-notify-w", "workload-pre", succeeded()),
            obs("post-notify-1", "app-post", succeeded()),
        ];
        let done = compute_status(Some(&s), &jobs, Some(&st2));
        assert_eq!(done.phase, TaskState::Succeeded);
        assert_eq!(done.pre, Some(TaskState::Succeeded));
        assert_eq!(done.post, Some(TaskState::Succeeded));
        // Deterministic: same inputs, equal status, no transitions.
        assert_eq!(compute_status(Some(&s), &jobs, Some(&done)), done);
        assert!(transitions(Some(&done), &done).is_empty());
    }

    #[test]
    fn deleted_jobs_keep_their_last_state() {
        let jobs = vec![
            obs("pre-a", "app-pre", succeeded()),
            obs("post-b", "app-post", running()),
        ];
        let st = compute_status(None, &jobs, None);
        assert_eq!(st.phase, TaskState::Running);
        let gone = compute_status(None, NONE, Some(&st));
        assert_eq!(gone.tasks.len(), 2);
        assert!(gone.tasks.iter().all(|t| t.job_deleted));
        assert_eq!(gone.tasks[0].state, TaskState::Succeeded);
        assert_eq!(gone.tasks[0].message, None);
        assert_eq!(gone.tasks[1].state, TaskState::Running);
        assert_eq!(
            gone.tasks[1].message.as_deref(),
            Some(MSG_DELETED_UNFINISHED)
        );
        assert_eq!(gone.observed_jobs, 0);
        assert!(transitions(Some(&st), &gone).is_empty());
        // Stable once deleted.
        assert_eq!(compute_status(None, NONE, Some(&gone)), gone);
        // A Job re-created under the same name takes over again.
        let again = compute_status(None, &[obs("post-b", "app-post", succeeded())], Some(&gone));
        let b = again.tasks.iter().find(|t| t.job == "post-b").unwrap();
        assert!(!b.job_deleted);
        assert_eq!(b.state, TaskState::Succeeded);
        assert_eq!(transitions(Some(&gone), &again).len(), 1);
    }

    #[test]
    fn transitions_are_only_changes() {
        let p = compute_status(None, &[obs("a", "app-pre", JobStatus::default())], None);
        assert!(transitions(None, &p).is_empty(), "pending is no event");
        let r = compute_status(None, &[obs("a", "app-pre", running())], Some(&p));
        let ch = transitions(Some(&p), &r);
        assert_eq!(
            ch.iter().map(|c| c.0).collect::<Vec<_>>(),
            [Transition::Started]
        );
        assert!(transitions(Some(&r), &r).is_empty());
        let f = compute_status(None, &[obs("a", "app-pre", failed())], Some(&r));
        let ch = transitions(Some(&r), &f);
        assert_eq!(
            ch.iter().map(|c| c.0).collect::<Vec<_>>(),
            [Transition::Failed]
        );
        assert_eq!(f.phase, TaskState::Failed);
        assert!(
            event_note(Transition::Failed, ch[0].1)
                .contains("after 3 attempt(s): BackoffLimitExceeded")
        );
        // Straight from nothing to succeeded: one event, no start.
        let s = compute_status(None, &[obs("a", "app-pre", succeeded())], None);
        let ch = transitions(None, &s);
        assert_eq!(
            ch.iter().map(|c| c.0).collect::<Vec<_>>(),
            [Transition::Succeeded]
        );
        // A new Job (new uid) under a finished name is a new result.
        let mut other = obs("a", "app-pre", succeeded());
        other.uid = "uid-new".into();
        let s2 = compute_status(None, &[other], Some(&s));
        assert_eq!(transitions(Some(&s), &s2).len(), 1);
    }

    #[test]
    fn jobs_not_in_spec_are_listed_and_labels_fill_gaps() {
        let s = spec();
        let mut extra = obs("extra", "", running());
        extra.definition.clear();
        let st = compute_status(Some(&s), &[extra], None);
        assert_eq!(st.tasks.len(), 4);
        assert_eq!(st.tasks.last().unwrap().job, "extra");
        assert_eq!(st.pre, Some(TaskState::Pending));
        assert_eq!(st.phase, TaskState::Running);
    }

    #[test]
    fn evaluation_jobs_are_told_apart() {
        let mut j = job("pre-eval-cpu-1", "app-pre", failed());
        let labels = j.metadata.labels.as_mut().unwrap();
        labels.remove(LABEL_DEFINITION);
        labels.insert(evaluation::LABEL_KIND.into(), "evaluation".into());
        labels.insert(evaluation::LABEL_EVALUATION.into(), "cpu-free".into());
        let o = observe(&j).unwrap();
        assert!(o.evaluation);
        assert_eq!(o.definition, "cpu-free");
        let st = compute_status(None, &[o], None);
        assert!(st.tasks[0].evaluation);
        assert_eq!(st.phase, TaskState::Failed);
        assert!(
            event_note(Transition::Failed, &st.tasks[0])
                .starts_with("evaluation cpu-free (app-pre) Job pre-eval-cpu-1 failed")
        );
        let task = obs("pre-notify", "app-pre", failed());
        assert!(!task.evaluation);
        assert_eq!(task.definition, "notify");
        // Tasks' entries serialize as before (no `evaluation` key).
        let st = compute_status(None, &[task], None);
        let json = serde_json::to_value(&st.tasks[0]).unwrap();
        assert!(json.get("evaluation").is_none(), "{json}");
    }

    #[test]
    fn notes_are_bounded() {
        let mut f = compute_status(None, &[obs("a", "app-pre", failed())], None);
        f.tasks[0].message = Some("é".repeat(2000));
        let note = event_note(Transition::Failed, &f.tasks[0]);
        assert!(note.len() <= 1000);
    }
}
