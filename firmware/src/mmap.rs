//! The only `unsafe` in gridlog: read-only memory maps of log segment files.
//!
//! What a mapped segment may do while we read it, and why reading is still sound:
//! - The file's length never changes while it is mapped: segments are preallocated to
//!   their full size before they are mapped and are never truncated while the log is open
//!   (recovery repairs a torn tail by writing zeros *before* mapping). So no access within
//!   the mapping can hit a page beyond end-of-file (SIGBUS).
//! - Bytes below a segment's published `durable_end` are never written again while the
//!   log is open: the single writer only writes at or beyond `durable_end`, and publishes a
//!   larger `durable_end` (Release) only after those bytes are written and synced.
//! - We never form a reference to the whole mapping (that would alias bytes the writer is
//!   changing through its file descriptor); [`SegmentMap::prefix`] hands out only
//!   `[0, len)` with `len <= durable_end`, read with Acquire by the caller.
//! - Other processes do not write the files: the data directory's `LOCK` keeps a second
//!   gridlog out. A person editing segment files under a running gateway is outside the
//!   contract, as it is for every database.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// A read-only shared mapping of a whole segment file.
#[derive(Debug)]
pub(crate) struct SegmentMap {
    map: memmap2::Mmap,
}

impl SegmentMap {
    /// Maps `file` read-only. The file must not shrink while the map lives (see module docs).
    pub(crate) fn new(file: &File) -> io::Result<SegmentMap> {
        // SAFETY: the mapping is read-only and the file keeps its length while mapped (module
        // docs); bytes are only exposed through `prefix`, below the durable end.
        let map = unsafe { memmap2::MmapOptions::new().map(file)? };
        Ok(SegmentMap { map })
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The first `len` bytes of the file. `len` must not exceed the bytes that are durable
    /// and will not be written again while this map lives (the segment's `durable_end`).
    pub(crate) fn prefix(&self, len: usize) -> &[u8] {
        assert!(
            len <= self.map.len(),
            "prefix {len} beyond mapping of {}",
            self.map.len()
        );
        // SAFETY: `ptr .. ptr + len` lies inside the live mapping (asserted above), and the
        // caller guarantees those bytes are no longer written (module docs), so a shared
        // slice over them is never aliased by a write.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), len) }
    }
}
