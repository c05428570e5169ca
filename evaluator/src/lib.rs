//! klt-evaluate: runs one Keptn evaluation the way Keptn's metrics-operator and evaluation
//! controller together would, from the JSON a rendered evaluation Job carries.
//!
//! Pure core: `spec` (the JSON and its checks), `target` (Keptn's operators), `duration` (Go
//! durations), `gofloat` (Go's float text), `aggregate` (range aggregations), `prometheus`
//! `datadog` and `dynatrace` (the query APIs' calls and answers, described by `call`), `evaluate` (the attempt loop and verdict). Edges:
//! `http` (ureq) and `provider` (secrets, clients, the fetch function).

pub mod aggregate;
pub mod call;
pub mod datadog;
pub mod duration;
pub mod dynatrace;
pub mod evaluate;
pub mod gofloat;
pub mod http;
pub mod prometheus;
pub mod provider;
pub mod spec;
pub mod target;
