//! Evaluation Jobs (issue 12's contract): which Jobs are evaluations, and the failing
//! objective of a failed one, read from its pod's termination message (`klt-evaluate` writes
//! its one-line summary there, and as its last stderr line, which Kubernetes takes instead
//! under `terminationMessagePolicy: FallbackToLogsOnError`). Pure; the controller lists the
//! pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

pub use klt_render::evaluation_job::{LABEL_EVALUATION, LABEL_KIND};

/// The value of [`LABEL_KIND`] on evaluation Jobs (task Jobs carry no such label).
pub const KIND_EVALUATION: &str = "evaluation";
/// The label the Job controller sets on a Job's pods: the Job's uid.
pub const POD_JOB_UID: &str = "batch.kubernetes.io/controller-uid";
/// Longest message kept (Events take 1 kB, and a record is no log).
const MAX_MESSAGE: usize = 512;

pub fn is_evaluation(labels: &BTreeMap<String, String>) -> bool {
    labels.get(LABEL_KIND).map(String::as_str) == Some(KIND_EVALUATION)
}

/// The label selector of a Job's pods.
pub fn pod_selector(job_uid: &str) -> String {
    format!("{POD_JOB_UID}={job_uid}")
}

/// The failure summary of an evaluation Job's pods: the last non-empty line of the newest
/// termination message (the current or previous container state), bounded.
pub fn failure_message(pods: &[Pod]) -> Option<String> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by(|a, b| {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.clone(),
                p.metadata.name.clone(),
            )
        };
        key(b).cmp(&key(a))
    });
    pods.into_iter().find_map(pod_message)
}

fn pod_message(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let states = [c.state.as_ref(), c.last_state.as_ref()];
        states.into_iter().flatten().find_map(|s| {
            let msg = s.terminated.as_ref()?.message.as_deref()?;
            last_line(msg)
        })
    })
}

fn last_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    if line.len() <= MAX_MESSAGE {
        return Some(line.to_string());
    }
    let mut cut = MAX_MESSAGE;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(format!("{}…", &line[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, created: &str, state: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"containerStatuses": [{
                "name": "evaluator", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": state
            }]}
        }))
        .unwrap()
    }

    fn terminated(msg: &str) -> serde_json::Value {
        json!({"terminated": {"exitCode": 1, "message": msg}})
    }

    #[test]
    fn kind_label() {
        let l = |v: &str| BTreeMap::from([(LABEL_KIND.to_string(), v.to_string())]);
        assert!(is_evaluation(&l("evaluation")));
        assert!(!is_evaluation(&l("task")));
        assert!(!is_evaluation(&BTreeMap::new()));
        assert_eq!(
            pod_selector("u-1"),
            "batch.kubernetes.io/controller-uid=u-1"
        );
    }

    #[test]
    fn newest_pod_last_line() {
        let summary = "evaluation pre-check failed: objective cpu-free value 1.2 does not meet >2 (3 of 3 attempts)";
        let logs = format!("cpu-free: 1.2 (target >2): fail\n{summary}\n\n");
        let pods = [
            pod("old", "2026-01-01T00:00:00Z", terminated("older attempt")),
            pod("new", "2026-01-01T00:01:00Z", terminated(&logs)),
        ];
        assert_eq!(failure_message(&pods).as_deref(), Some(summary));
        // No message anywhere (the pod is still running, or was pruned): none.
        let running = pod("r", "2026-01-01T00:00:00Z", json!({"running": {}}));
        assert_eq!(failure_message(&[running]), None);
        assert_eq!(failure_message(&[]), None);
        let blank = pod("b", "2026-01-01T00:00:00Z", terminated("  \n"));
        assert_eq!(failure_message(&[blank]), None);
    }

    #[test]
    fn long_messages_are_bounded() {
        let long = "é".repeat(600);
        let p = pod("p", "2026-01-01T00:00:00Z", terminated(&long));
        let m = failure_message(&[p]).unwrap();
        assert!(m.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", m.len());
        assert!(m.ends_with('…'));
    }
}
