//! klt-reconciler: keeps a `TaskRecord` (klt-render.dev/v1alpha1) per app version up to date
//! with the task Jobs that klt-render rendered.
//!
//! - [`crd`]: the custom resource types and the CRD YAML;
//! - [`evaluation`]: evaluation Jobs and the failing objective of a failed one;
//! - [`state`]: pure computation (Job → task state, record status, transitions);
//! - [`archive`]: the unmanaged copy kept of a record Argo CD pruned;
//! - [`controller`]: watches, caches, work queue, reconcile, events;
//! - [`election`] (pure rules), [`lease`] (the Lease on the API server), [`replica`] (reconcile
//!   only while holding it): leader election, so that several replicas can run;
//! - [`metrics`], [`http`], [`shared`]: Prometheus metrics, the `/metrics`, `/healthz`,
//!   `/readyz` server, and the state they read.

pub mod archive;
pub mod controller;
pub mod crd;
pub mod election;
pub mod evaluation;
pub mod events;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod queue;
pub mod replica;
pub mod shared;
pub mod state;

pub use controller::{Config, Shared, Stop, run};
pub use crd::{TaskRecord, TaskRecordSpec, TaskRecordStatus, TaskState, TaskStatus};
pub use lease::{Leadership, LeaseConfig};
pub use replica::{run_elected, run_single};
