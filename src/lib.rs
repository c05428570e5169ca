//! klt-render: turns Keptn task resources into plain Kubernetes manifests.
//!
//! The library is pure: [`render`] takes the input files' text and [`Options`] and returns
//! ordered output documents plus diagnostics. Reading files, the environment and writing
//! output belong to the adapters in the binary.

pub mod by_app;
pub mod diag;
pub mod document;
pub mod evaluation;
pub mod evaluation_job;
pub mod gojson;
pub mod hash;
pub mod job;
pub mod krm;
pub mod limits;
pub mod lint;
pub mod model;
pub mod object;
pub mod options;
pub mod plan;
pub mod render;
pub mod schema;
pub mod sort_key;
pub mod suggest;
pub mod waves;
pub mod workload;
pub mod workload_keys;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use document::SourceFile;
pub use options::{Mode, Options, Profile};
pub use render::{OutDoc, Output, render};
