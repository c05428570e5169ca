//! Archived records: when Argo CD prunes an app version's rendered TaskRecord (the version
//! left Git), the reconciler re-creates it as an unmanaged copy with the status it had, so the
//! history of that version's tasks stays readable with `kubectl get taskrecords`.
//!
//! Why a copy instead of `argocd.argoproj.io/sync-options: Prune=false` on the rendered
//! record: a record Argo CD does not prune stays an extraneous resource of the Application,
//! which then shows OutOfSync (unless `compare-options: IgnoreExtraneous`), and argo-cd's
//! `setApplicationHealth` (controller/health.go) still aggregates its health: one failed old
//! version would keep the app Degraded for good. A copy without Argo CD's tracking annotation
//! and label is not part of any Application: no OutOfSync, no health, never pruned.
//!
//! Pure: which deleted records to archive and what the copy looks like. The controller does
//! the writes.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;

use crate::crd::{TaskRecord, TaskRecordStatus};

/// Argo CD's tracking annotation (tracking method `annotation`, the default since v3).
pub const ARGOCD_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
/// Argo CD's tracking label (tracking method `label`, and `annotation+label`).
pub const ARGOCD_INSTANCE: &str = "app.kubernetes.io/instance";
/// Marks an archived copy (`kubectl get ktr -l klt-render.dev/archived=true`).
pub const LABEL_ARCHIVED: &str = "klt-render.dev/archived";
/// The uid of the record the copy was made from.
pub const ANNOTATION_ARCHIVED_FROM: &str = "klt-render.dev/archived-from-uid";

/// Annotations not carried over: Argo CD's own (tracking, sync options, waves) and kubectl's
/// last-applied copy of the rendered object.
fn dropped_annotation(key: &str) -> bool {
    key.starts_with("argocd.argoproj.io/")
        || key == "kubectl.kubernetes.io/last-applied-configuration"
}

/// Whether a deleted record is an Argo CD-managed one worth keeping: it carries Argo CD's
/// tracking and its status saw at least one Job. A record someone deletes by hand without
/// tracking (the reconciler's own, or an archived copy) stays deleted.
pub fn should_archive(record: &TaskRecord, status: Option<&TaskRecordStatus>) -> bool {
    let meta = &record.metadata;
    let tracked = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ARGOCD_TRACKING_ID))
        || meta
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(ARGOCD_INSTANCE));
    let saw_jobs = status.is_some_and(|s| s.tasks.iter().any(|t| t.job_uid.is_some()));
    tracked && saw_jobs
}

/// The copy to create for a deleted record: same name, namespace and spec, the labels and
/// annotations without Argo CD's, marked archived, and `status` (the last one known) to
/// write once it exists (create ignores a status subresource's content).
pub fn archived_copy(record: &TaskRecord, status: Option<TaskRecordStatus>) -> TaskRecord {
    let meta = &record.metadata;
    let mut labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
    labels.remove(ARGOCD_INSTANCE);
    labels.insert(LABEL_ARCHIVED.to_string(), "true".to_string());
    let mut annotations: BTreeMap<String, String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !dropped_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(uid) = &meta.uid {
        annotations.insert(ANNOTATION_ARCHIVED_FROM.to_string(), uid.clone());
    }
    TaskRecord {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            ..Default::default()
        },
        spec: record.spec.clone(),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{TaskRecordSpec, TaskState, TaskStatus};

    fn rendered(tracking: bool, label: bool) -> TaskRecord {
        let mut labels = BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            "klt-render".to_string(),
        )]);
        if label {
            labels.insert(ARGOCD_INSTANCE.into(), "ledger".into());
        }
        let mut annotations = BTreeMap::from([
            ("argocd.argoproj.io/sync-wave".to_string(), "5".to_string()),
            ("keptn.sh/app".to_string(), "ledger".to_string()),
        ]);
        if tracking {
            annotations.insert(
                ARGOCD_TRACKING_ID.into(),
                "ledger:klt-render.dev/TaskRecord:ledger/ledger-1.0.0".into(),
            );
        }
        TaskRecord {
            metadata: ObjectMeta {
                name: Some("ledger-1.0.0".into()),
                namespace: Some("ledger".into()),
                uid: Some("uid-1".into()),
                resource_version: Some("42".into()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: TaskRecordSpec {
                app: "ledger".into(),
                app_version: "1.0.0".into(),
                tasks: Vec::new(),
            },
            status: None,
        }
    }

    fn seen(job_uid: Option<&str>) -> TaskRecordStatus {
        TaskRecordStatus {
            phase: TaskState::Failed,
            tasks: vec![TaskStatus {
                job: "pre-migrate-abc".into(),
                state: TaskState::Failed,
                job_uid: job_uid.map(String::from),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_tracked_records_that_saw_jobs_are_archived() {
        let s = seen(Some("j1"));
        assert!(should_archive(&rendered(true, false), Some(&s)));
        assert!(should_archive(&rendered(false, true), Some(&s)));
        assert!(
            !should_archive(&rendered(false, false), Some(&s)),
            "not Argo CD's"
        );
        assert!(!should_archive(&rendered(true, false), None), "no status");
        let never = seen(None);
        assert!(
            !should_archive(&rendered(true, true), Some(&never)),
            "no Job seen"
        );
        // The copy itself is never archived again: deleting it is final.
        let copy = archived_copy(&rendered(true, true), Some(s.clone()));
        assert!(!should_archive(&copy, Some(&s)));
    }

    #[test]
    fn copy_drops_argo_cd_tracking_and_keeps_the_rest() {
        let s = seen(Some("j1"));
        let copy = archived_copy(&rendered(true, true), Some(s.clone()));
        let meta = &copy.metadata;
        assert_eq!(meta.name.as_deref(), Some("ledger-1.0.0"));
        assert_eq!(meta.namespace.as_deref(), Some("ledger"));
        assert_eq!(meta.uid, None);
        assert_eq!(meta.resource_version, None);
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(
            labels.keys().map(String::as_str).collect::<Vec<_>>(),
            ["app.kubernetes.io/managed-by", LABEL_ARCHIVED]
        );
        assert_eq!(
            meta.annotations.as_ref().unwrap(),
            &BTreeMap::from([
                (ANNOTATION_ARCHIVED_FROM.to_string(), "uid-1".to_string()),
                ("keptn.sh/app".to_string(), "ledger".to_string()),
            ])
        );
        assert_eq!(copy.spec, rendered(true, true).spec);
        assert_eq!(copy.status, Some(s));
    }
}
