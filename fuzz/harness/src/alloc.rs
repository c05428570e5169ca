//! A counting global allocator: the memory bound of every fuzz input.
//!
//! libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks, and the campaign runs
//! without ASan (see the README), so the bound is enforced here instead, at the allocation that
//! crosses it: the fuzzer then reports the input as a crash with the message below rather than
//! the machine swapping until `-rss_limit_mb` notices.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

pub struct Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Absolute byte count that CURRENT must not exceed; `usize::MAX` = unarmed.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static BASELINE: AtomicUsize = AtomicUsize::new(0);

fn reserve(n: usize) -> bool {
    let cur = CURRENT.fetch_add(n, Relaxed) + n;
    let limit = LIMIT.load(Relaxed);
    if cur > limit {
        CURRENT.fetch_sub(n, Relaxed);
        // Disarm first: printing may allocate, and must not land here again.
        LIMIT.store(usize::MAX, Relaxed);
        let mut buf = [0u8; 256];
        let len = {
            let mut w = &mut buf[..];
            let _ = writeln!(
                w,
                "klt-fuzz: memory bound exceeded: {} bytes live (+{n} requested) for an input of {} bytes; bound {}",
                cur - n - BASELINE.load(Relaxed),
                INPUT_LEN.load(Relaxed),
                limit - BASELINE.load(Relaxed),
            );
            256 - w.len()
        };
        let _ = std::io::stderr().write_all(&buf[..len]);
        return false;
    }
    PEAK.fetch_max(cur, Relaxed);
    true
}

// SAFETY: every call is forwarded to `System` with the caller's layout; the counters only
// decide whether to forward an allocation, and returning null is the documented way to refuse.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                CURRENT.fetch_sub(new_size - old, Relaxed);
            }
        } else if new_size < old {
            CURRENT.fetch_sub(old - new_size, Relaxed);
        }
        p
    }
}

/// Runs `f` with at most `bound` bytes allocated on top of what is live now; returns the peak
/// (bytes above that baseline). Crossing the bound aborts the process (a fuzzer crash).
pub fn bounded<R>(input_len: usize, bound: usize, f: impl FnOnce() -> R) -> (R, usize) {
    let base = CURRENT.load(Relaxed);
    BASELINE.store(base, Relaxed);
    INPUT_LEN.store(input_len, Relaxed);
    PEAK.store(base, Relaxed);
    LIMIT.store(base.saturating_add(bound), Relaxed);
    let r = f();
    LIMIT.store(usize::MAX, Relaxed);
    (r, PEAK.load(Relaxed).saturating_sub(base))
}

/// Lifts the bound for the rest of this input.
pub fn disarm() {
    LIMIT.store(usize::MAX, Relaxed);
}
