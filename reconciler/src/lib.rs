//! klt-reconciler: keeps a `TaskRecord` (klt-render.dev/v1alpha1) per app version up to date
//! with the task Jobs that klt-render rendered.
//!
//! - [`crd`]: the custom resource types and the CRD YAML;
//! - [`state`]: pure computation (Job → task state, record status, transitions);
//! - [`controller`]: watches, caches, work queue, reconcile, events;
//! - [`metrics`], [`http`]: Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` server.

pub mod controller;
pub mod crd;
pub mod events;
pub mod http;
pub mod metrics;
pub mod queue;
pub mod state;

pub use controller::{Config, Shared, run};
pub use crd::{TaskRecord, TaskRecordSpec, TaskRecordStatus, TaskState, TaskStatus};
