//! Kubernetes Events for task transitions, published off the reconcile path.
//!
//! A reconcile hands its events over and returns once the status is written, so a slow
//! Events API never delays records. Events go to one of a few publisher tasks chosen by
//! record, so the events of one record keep their order. On shutdown the queue is drained.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::lease::Leadership;
use crate::shared::Shared;
use crate::state::RecordKey;

struct Item {
    record: RecordKey,
    event: Event,
    regarding: ObjectReference,
}

struct Inner {
    pending: AtomicUsize,
    idle: Notify,
}

pub struct EventQueue {
    senders: Mutex<Option<Vec<mpsc::UnboundedSender<Item>>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    inner: Arc<Inner>,
}

impl EventQueue {
    /// Start `shards` publisher tasks (needs a tokio runtime).
    /// Events are published only while `leadership` holds (a replica that lost the lease
    /// drops them: the new leader owns the records now).
    pub fn start(
        recorder: Recorder,
        shared: Arc<Shared>,
        leadership: Leadership,
        shards: usize,
    ) -> Self {
        let inner = Arc::new(Inner {
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..shards.max(1) {
            let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
            senders.push(tx);
            let recorder = recorder.clone();
            let shared = Arc::clone(&shared);
            let inner = Arc::clone(&inner);
            let leadership = leadership.clone();
            handles.push(tokio::spawn(async move {
                while let Some(item) = rx.recv().await {
                    let result = if leadership.is_leading() {
                        Some(recorder.publish(&item.event, &item.regarding).await)
                    } else {
                        warn!(record = %item.record, reason = %item.event.reason, "event dropped: not the leader");
                        None
                    };
                    match result {
                        None => {}
                        Some(Ok(())) => {
                            shared.metrics.events_published.inc();
                        }
                        Some(Err(e)) => {
                            // Best effort: the status holds the transition either way.
                            shared.metrics.event_errors.inc();
                            warn!(record = %item.record, reason = %item.event.reason, error = %e, "could not publish event");
                        }
                    }
                    if inner.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                        inner.idle.notify_waiters();
                    }
                }
            }));
        }
        EventQueue {
            senders: Mutex::new(Some(senders)),
            handles: Mutex::new(handles),
            inner,
        }
    }

    /// Queue an event about `regarding` (a record); dropped once the queue is closed.
    pub fn publish(&self, record: &RecordKey, event: Event, regarding: ObjectReference) {
        let guard = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let Some(senders) = guard.as_ref() else {
            warn!(record = %record, reason = %event.reason, "event after shutdown dropped");
            return;
        };
        let mut h = DefaultHasher::new();
        record.hash(&mut h);
        let tx = &senders[(h.finish() as usize) % senders.len()];
        self.inner.pending.fetch_add(1, Ordering::SeqCst);
        let item = Item {
            record: record.clone(),
            event,
            regarding,
        };
        if tx.send(item).is_err() {
            self.inner.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Events queued and not yet published (or failed).
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::SeqCst)
    }

    /// Wait until every queued event has been handled.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Stop at once: queued events are dropped.
    pub fn abort(&self) {
        drop(
            self.senders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        for h in self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            h.abort();
        }
    }

    /// Stop taking events and publish those queued, for at most `timeout`.
    pub async fn close(&self, timeout: Duration) {
        drop(
            self.senders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let handles: Vec<_> = self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let all = futures::future::join_all(handles);
        if tokio::time::timeout(timeout, all).await.is_err() {
            warn!(
                pending = self.pending(),
                "events still unpublished at shutdown"
            );
        }
    }
}
