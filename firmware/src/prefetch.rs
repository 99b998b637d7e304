//! Software prefetch: a hint that starts loading memory the caller is about to touch, so
//! the cache misses of several entities overlap instead of coming one after another.
//!
//! The one other place besides `mmap` with `unsafe`: `_mm_prefetch` is an intrinsic that
//! Rust marks unsafe, though it never faults, reads into a register or changes memory,
//! whatever the address.
#![allow(unsafe_code)]

/// Bytes of one cache line.
const CACHE_LINE_BYTES: usize = 64;

/// Starts loading the memory of `value`, from `bytes_before` bytes in front of it (an
/// `Arc`'s counts, say) to its end. Only a hint: nothing happens on other architectures.
pub(crate) fn prefetch<T>(value: &T, bytes_before: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = (value as *const T).cast::<i8>().wrapping_sub(bytes_before);
        let len = bytes_before + core::mem::size_of::<T>();
        for at in (0..len).step_by(CACHE_LINE_BYTES) {
            // SAFETY: a prefetch is a hint; it cannot fault or change anything, whatever
            // the address (and this one is inside or just before a live value).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(at)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (value, bytes_before);
}
