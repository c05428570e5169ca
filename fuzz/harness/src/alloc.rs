//! A counting global allocator: the memory bound of every fuzz input.
//!
//! libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks, and the campaign runs
//! without ASan (see the README), so the bound is enforced here instead: the fuzzer reports an
//! input that crosses it as a crash, with the backtrace of the allocation that crossed it,
//! long before `-rss_limit_mb` would notice.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

pub struct Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Absolute byte count that CURRENT must not exceed; `usize::MAX` = unarmed.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static BASELINE: AtomicUsize = AtomicUsize::new(0);

/// Set when the bound was crossed during this input; the report is in [`FIRST_OVER`].
static EXCEEDED: AtomicBool = AtomicBool::new(false);
/// What crossed the bound first: sizes and the backtrace of that allocation.
static FIRST_OVER: Mutex<Option<String>> = Mutex::new(None);
/// After the bound is crossed the input may go on up to this many times the bound, so that a
/// merely large input ends in a panic with a backtrace (below) rather than an abort.
const HARD_FACTOR: usize = 4;

fn reserve(n: usize) -> bool {
    let cur = CURRENT.fetch_add(n, Relaxed) + n;
    let limit = LIMIT.load(Relaxed);
    if cur <= limit {
        PEAK.fetch_max(cur, Relaxed);
        return true;
    }
    // Disarmed while reporting: the report allocates, and must not land here again.
    LIMIT.store(usize::MAX, Relaxed);
    let base = BASELINE.load(Relaxed);
    if !EXCEEDED.swap(true, Relaxed) {
        // The allocation that crosses the bound is the one worth a backtrace: the process may
        // only stop later, elsewhere.
        let report = format!(
            "klt-fuzz: memory bound exceeded: {} bytes live (+{n} requested) for an input of {} bytes; bound {}\nallocation site:\n{}",
            cur - n - base,
            INPUT_LEN.load(Relaxed),
            limit - base,
            std::backtrace::Backtrace::force_capture(),
        );
        if let Ok(mut first) = FIRST_OVER.lock() {
            *first = Some(report);
        }
        LIMIT.store(
            base.saturating_add((limit - base).saturating_mul(HARD_FACTOR)),
            Relaxed,
        );
        PEAK.fetch_max(cur, Relaxed);
        return true;
    }
    CURRENT.fetch_sub(n, Relaxed);
    let mut msg = format!(
        "klt-fuzz: memory hard limit ({HARD_FACTOR} x bound) reached at {} bytes; aborting\n",
        cur - n - base
    );
    if let Ok(first) = FIRST_OVER.lock() {
        msg.push_str(first.as_deref().unwrap_or(""));
    }
    let _ = std::io::stderr().write_all(msg.as_bytes());
    false
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
/// (bytes above that baseline). Crossing the bound is a panic once `f` returns, with the
/// backtrace of the allocation that crossed it; crossing four times the bound aborts at once
/// (both are fuzzer crashes).
pub fn bounded<R>(input_len: usize, bound: usize, f: impl FnOnce() -> R) -> (R, usize) {
    let base = CURRENT.load(Relaxed);
    BASELINE.store(base, Relaxed);
    INPUT_LEN.store(input_len, Relaxed);
    PEAK.store(base, Relaxed);
    LIMIT.store(base.saturating_add(bound), Relaxed);
    EXCEEDED.store(false, Relaxed);
    let r = f();
    LIMIT.store(usize::MAX, Relaxed);
    if EXCEEDED.swap(false, Relaxed) {
        let report = FIRST_OVER.lock().ok().and_then(|mut f| f.take());
        panic!("{}", report.unwrap_or_default());
    }
    (r, PEAK.load(Relaxed).saturating_sub(base))
}

/// Lifts the bound for the rest of this input.
pub fn disarm() {
    LIMIT.store(usize::MAX, Relaxed);
}
