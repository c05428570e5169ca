//! A work queue of record keys, in the manner of client-go's: a key is queued at most once,
//! never handed to two workers at the same time, and a key added while it is being worked
//! on is handed out again once that work is done. Failed keys come back after an
//! exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

struct State<K> {
    queue: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
}

pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    base_delay: Duration,
    max_delay: Duration,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new(base_delay: Duration, max_delay: Duration) -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
            base_delay,
            max_delay,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `key` (no-op if already queued; deferred if being processed).
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Wait for the next key and mark it as being processed.
    pub async fn next(&self) -> K {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Wake another worker for the rest.
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Processing of `key` finished; hand it out again if it was added meanwhile.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.remove(key) && s.queued.insert(key.clone()) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// `key` succeeded: reset its backoff.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// `key` failed: the delay before its next try (base × 2^failures, capped).
    pub fn failed(&self, key: &K) -> Duration {
        let mut s = self.lock();
        let n = s.failures.entry(key.clone()).or_insert(0);
        let delay = self
            .base_delay
            .saturating_mul(1u32 << (*n).min(20))
            .min(self.max_delay);
        *n = n.saturating_add(1);
        delay
    }

    /// Add `key` after `delay` (in a background task).
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        let q = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Arc<WorkQueue<&'static str>> {
        WorkQueue::new(Duration::from_millis(100), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn dedupes_and_orders() {
        let q = q();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, "a");
        assert_eq!(q.next().await, "b");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn key_in_work_is_deferred() {
        let q = q();
        q.add("a");
        let k = q.next().await;
        q.add("a");
        assert!(q.is_empty(), "not handed out twice at once");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, "a");
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn waiting_worker_wakes() {
        let q = q();
        let q2 = Arc::clone(&q);
        let h = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.add("x");
        let got = tokio::time::timeout(Duration::from_secs(1), h)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, "x");
    }

    #[tokio::test]
    async fn backoff_grows_and_resets() {
        let q = q();
        assert_eq!(q.failed(&"a"), Duration::from_millis(100));
        assert_eq!(q.failed(&"a"), Duration::from_millis(200));
        assert_eq!(q.failed(&"a"), Duration::from_millis(400));
        for _ in 0..10 {
            q.failed(&"a");
        }
        assert_eq!(q.failed(&"a"), Duration::from_secs(1));
        q.forget(&"a");
        assert_eq!(q.failed(&"a"), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_delays() {
        let q = q();
        q.add_after("late", Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.len(), 1);
    }
}
