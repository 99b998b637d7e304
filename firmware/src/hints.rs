//! Hints to the CPU and the scheduler: they change how fast things run, never what they do.
//!
//! - [`prefetch`]: start loading memory the caller is about to touch, so the cache misses of
//!   several entities overlap instead of coming one after another.
//! - [`run_in_background`]: lower the calling thread's CPU priority, so background work
//!   (snapshots, archiving) takes the cores the write path leaves idle, not its share.
//! - [`return_free_memory`]: give the heap's free pages back to the system after a burst
//!   of short-lived allocations (a rollup spill), so the process's memory is what it holds.
//!
//! The one other place besides `mmap` with `unsafe`: `_mm_prefetch` is an intrinsic Rust
//! marks unsafe though it never faults, reads into a register or changes memory, whatever
//! the address; `setpriority` and `malloc_trim` are C functions.
#![allow(unsafe_code)]

/// The nice value of background threads (Linux: 0 is normal, 19 the lowest priority). At
/// 10 such a thread gets about a tenth of a core the write path also wants, and any core
/// the write path leaves idle.
pub const BACKGROUND_NICE: i32 = 10;

/// Bytes of one cache line.
#[cfg(target_arch = "x86_64")]
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

/// Returns the heap's free memory to the system (glibc's `malloc_trim(0)`, which also
/// releases whole free pages inside the heap, not only at its top; elsewhere nothing).
/// A meter's day sealed on the applier and freed once spilled leaves free pages between
/// live ones that glibc keeps, counted in RSS, until trimmed.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only hands free heap pages back to the
    // kernel; every live allocation stays where it is.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`] (Linux; elsewhere
/// nothing happens).
pub(crate) fn run_in_background() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority reads only its integer arguments. On Linux, `who` = 0 with
        // PRIO_PROCESS names the calling thread (threads have their own nice values).
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
        if result == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
