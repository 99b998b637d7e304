//! An archive header that lies about its size costs bounded memory: the one verifier
//! (`gridlog_firmware::archive::verify_bytes`, used by the archive reader, the shipper and
//! restore) reserves at most `ARCHIVE_RESERVE_BYTES_MAX` before the body has proven its
//! length. A header downloaded from object storage claiming 1 GiB (the most a segment may hold) must not
//! reserve 1 GiB.
//!
//! A counting global allocator records the largest single allocation while the check runs;
//! this file holds one test so nothing else allocates meanwhile.

// The counting allocator implements `GlobalAlloc`, an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gridlog_common::archive::ArchiveHeader;
use gridlog_firmware::archive::{
    sha256, verify_bytes, ArchiveInvalid, ARCHIVE_ORIGINAL_BYTES_MAX, ARCHIVE_RESERVE_BYTES_MAX,
};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed unchanged to the system allocator; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `layout` is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LARGEST_BYTES.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// An archive of `original` whose header claims `claimed_bytes` of original segment.
fn archive(original: &[u8], claimed_bytes: u64) -> Vec<u8> {
    let body = zstd::bulk::compress(original, 3).expect("compress");
    let header = ArchiveHeader {
        log_id: [7; 16],
        first_offset: 1,
        next_offset: 2,
        original_bytes: claimed_bytes,
        archived_bytes: body.len() as u64,
        sha256: sha256(original),
        created_unix_ms: 0,
        original_crc32: crc32fast::hash(original),
    };
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(&body);
    bytes
}

#[test]
fn a_header_claiming_the_largest_size_reserves_at_most_the_bound() {
    let original = vec![0x5au8; 4096];
    let honest = archive(&original, original.len() as u64);
    let (header, bytes) = verify_bytes(&honest).expect("an honest archive verifies");
    assert_eq!(bytes, original);
    assert_eq!(header.original_bytes, 4096);

    // The largest claim the size check lets through: 1 GiB (256 MiB on 32-bit targets).
    let claimed = ARCHIVE_ORIGINAL_BYTES_MAX;
    let lying = archive(&original, claimed);
    LARGEST_BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let result = verify_bytes(&lying);
    COUNTING.store(false, Ordering::Relaxed);
    let largest = LARGEST_BYTES.load(Ordering::Relaxed) as u64;

    match result {
        Err(ArchiveInvalid::OriginalBytes { actual, claimed: c }) => {
            assert_eq!(actual, 4096);
            assert_eq!(c, claimed);
        }
        other => panic!("expected a length mismatch, got {other:?}"),
    }
    assert!(
        largest <= ARCHIVE_RESERVE_BYTES_MAX,
        "largest allocation {largest} bytes, bound {ARCHIVE_RESERVE_BYTES_MAX}"
    );
    // The bound is well below the claim (a quarter of it on 32-bit targets, a sixteenth on
    // 64-bit ones), so honouring the claim would have shown.
    assert!(largest < claimed, "largest allocation {largest} bytes");
    assert!(ARCHIVE_RESERVE_BYTES_MAX <= claimed / 4);
}
