//! klt-render: turns Keptn task resources into plain Kubernetes manifests.
pub mod diag;
pub mod yaml;
