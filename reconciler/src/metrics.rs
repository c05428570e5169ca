//! Prometheus metrics (OpenMetrics text at `/metrics`), all prefixed `klt_reconciler_`.
//!
//! Labels are bounded: task phase (4 values), outcome (2), error kind (a handful). App names
//! and versions stay in the records, not in metric labels.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub phase: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

pub struct Metrics {
    registry: Registry,
    pub task_duration: Family<TaskLabels, Histogram>,
    pub task_results: Family<TaskLabels, Counter>,
    pub task_starts: Family<PhaseLabels, Counter>,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub status_writes: Counter,
    pub records_created: Counter,
    pub records_archived: Counter,
    pub events_published: Counter,
    pub event_errors: Counter,
    pub watched_jobs: Gauge,
    pub queue_depth: Gauge,
    /// 1 while this process holds the lease (or runs without leader election).
    pub leader: Gauge,
    pub leader_terms: Counter,
    /// Serialises encoding (the registry itself is not `Sync`-encoded concurrently).
    encode_lock: Mutex<()>,
}

fn task_phase(phase: &str) -> String {
    match phase {
        "app-pre" | "workload-pre" | "workload-post" | "app-post" => phase.to_string(),
        _ => "unknown".to_string(),
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("klt_reconciler");
        let task_duration = Family::<TaskLabels, Histogram>::new_with_constructor(|| {
            // 1 s .. ~4.5 h
            Histogram::new(exponential_buckets(1.0, 2.0, 15))
        });
        registry.register(
            "task_duration_seconds",
            "Run time of finished task Jobs (start to completion or failure), by task phase and outcome",
            task_duration.clone(),
        );
        let task_results = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_results",
            "Task Jobs that finished, by task phase and outcome (succeeded, failed)",
            task_results.clone(),
        );
        let task_starts = Family::<PhaseLabels, Counter>::default();
        registry.register(
            "task_starts",
            "Task Jobs seen starting, by task phase",
            task_starts.clone(),
        );
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Record reconciliations run",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations, by error kind (retried with backoff)",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one record reconciliation took",
            reconcile_duration.clone(),
        );
        let status_writes = Counter::default();
        registry.register(
            "status_writes",
            "Record status writes (server-side apply)",
            status_writes.clone(),
        );
        let records_created = Counter::default();
        registry.register(
            "records_created",
            "Records the reconciler created from Job labels",
            records_created.clone(),
        );
        let records_archived = Counter::default();
        registry.register(
            "records_archived",
            "Archived copies the reconciler made of records Argo CD pruned",
            records_archived.clone(),
        );
        let events_published = Counter::default();
        registry.register(
            "events_published",
            "Kubernetes Events published for task transitions",
            events_published.clone(),
        );
        let event_errors = Counter::default();
        registry.register(
            "event_errors",
            "Kubernetes Events that could not be published",
            event_errors.clone(),
        );
        let watched_jobs = Gauge::default();
        registry.register(
            "watched_jobs",
            "klt-render task Jobs in the reconciler's cache",
            watched_jobs.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Records waiting to be reconciled",
            queue_depth.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the lease and reconciles, else 0",
            leader.clone(),
        );
        let leader_terms = Counter::default();
        registry.register(
            "leader_terms",
            "Times this replica acquired the lease and started reconciling",
            leader_terms.clone(),
        );
        Metrics {
            registry,
            task_duration,
            task_results,
            task_starts,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            status_writes,
            records_created,
            records_archived,
            events_published,
            event_errors,
            watched_jobs,
            queue_depth,
            leader,
            leader_terms,
            encode_lock: Mutex::new(()),
        }
    }

    pub fn task_finished(&self, phase: &str, outcome: &str, duration: Option<f64>) {
        let labels = TaskLabels {
            phase: task_phase(phase),
            outcome: outcome.to_string(),
        };
        self.task_results.get_or_create(&labels).inc();
        if let Some(d) = duration {
            self.task_duration.get_or_create(&labels).observe(d);
        }
    }

    pub fn task_started(&self, phase: &str) {
        self.task_starts
            .get_or_create(&PhaseLabels {
                phase: task_phase(phase),
            })
            .inc();
    }

    pub fn reconcile_error(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: kind.to_string(),
            })
            .inc();
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> String {
        let _guard = self.encode_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        let m = Metrics::new();
        m.task_finished("app-pre", "succeeded", Some(3.0));
        m.task_finished("weird", "failed", None);
        m.task_started("workload-post");
        m.reconcile_error("api");
        m.reconciles.inc();
        m.reconcile_duration.observe(0.01);
        let text = m.encode();
        for needle in [
            "klt_reconciler_task_duration_seconds_bucket{le=\"4.0\",phase=\"app-pre\",outcome=\"succeeded\"} 1",
            "klt_reconciler_task_results_total{phase=\"app-pre\",outcome=\"succeeded\"} 1",
            "klt_reconciler_task_results_total{phase=\"unknown\",outcome=\"failed\"} 1",
            "klt_reconciler_task_starts_total{phase=\"workload-post\"} 1",
            "klt_reconciler_reconcile_errors_total{error=\"api\"} 1",
            "klt_reconciler_reconciles_total 1",
            "klt_reconciler_reconcile_duration_seconds_count 1",
            "klt_reconciler_watched_jobs 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
