//! The process heap's one setting: glibc's threshold for blocks of their own (mmap), fixed.
//!
//! glibc raises that threshold each time such a block is freed, up to 32 MiB. After the
//! render's first large lists are freed, its later large transient buffers (sort keys, lists
//! sized once) come from the heap instead, and leave holes there that hold its peak up. Fixed
//! at glibc's default, 128 KiB, each one goes back to the kernel when it is freed: at 10,000
//! apps the peak RSS went from 180.1 to 177.0 MiB, in the same time.

/// Fixes the threshold; call before anything is allocated in earnest.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn fix_mmap_threshold() {
    const M_MMAP_THRESHOLD: i32 = -3;
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt(3) only sets an allocator parameter; no thread has been started yet.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Other allocators keep no such threshold.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() {}
