//! The state a reconciler process shares between its parts: metrics, and the readiness
//! that `/readyz` reports.

use std::sync::atomic::AtomicBool;

use crate::metrics::Metrics;

/// State shared with the HTTP server.
#[derive(Default)]
pub struct Shared {
    pub metrics: Metrics,
    /// Both caches are filled (the initial lists are in).
    pub ready: AtomicBool,
    /// A follower that reaches the API server (another replica holds the lease).
    pub standby: AtomicBool,
}
