//! How the log is opened and run: [`WalOptions`] and the limits its values must keep.

use std::time::Duration;

use gridlog_common::batch;
use gridlog_common::frame::FRAME_BODY_BYTES_MAX;
use gridlog_common::segment::SEGMENT_HEADER_BYTES;

use super::error::OpenError;
use super::io::IoHook;
use super::recovery::RecoveryMode;
use super::segment::{Preallocation, FOOTER_RESERVE_BYTES};

/// Default segment size: 64 MiB. Large enough that rotation (one extra sync) is rare, small
/// enough that archiving and shipping move manageable pieces.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest segment size accepted (tests use tiny segments to rotate often).
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest segment size accepted: 1 GiB, so a segment is always mappable and shippable
/// (256 MiB on 32-bit gateways, below).
#[cfg(target_pointer_width = "64")]
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;
/// Largest segment size accepted: 1 GiB on 64-bit gateways, 256 MiB on 32-bit ones, where
/// every hot segment is mapped and an archived one is read back whole into memory (two at
/// most), all within a process's ~3 GiB of address space.
#[cfg(not(target_pointer_width = "64"))]
pub const SEGMENT_BYTES_MAX: u64 = 1 << 28;
/// Default most bytes of frames one write round takes: 1 MiB. Bounds the memory of the
/// pending buffer (appenders wait for room beyond it), the largest single append, and the
/// bytes one crash can tear — recovery's window for telling a torn tail from damage, so
/// smaller is stricter. 1 MiB per sync is far above what the disk syncs per round anyway.
pub const ROUND_BYTES_DEFAULT: usize = 1024 * 1024;
/// Smallest `round_bytes` accepted.
pub const ROUND_BYTES_MIN: usize = 1024;
/// Largest `round_bytes` accepted: one maximal frame.
pub const ROUND_BYTES_MAX: usize = FRAME_BODY_BYTES_MAX;

const _: () = assert!(ROUND_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(
    SEGMENT_BYTES_MIN as usize
        > SEGMENT_HEADER_BYTES + FOOTER_RESERVE_BYTES + batch::COMMIT_FRAME_BYTES_MAX
);

/// How the log is opened and run. Every field has a documented default.
#[derive(Clone)]
#[non_exhaustive]
pub struct WalOptions {
    /// Size of each segment file, preallocated. Default [`SEGMENT_BYTES_DEFAULT`].
    pub segment_bytes: u64,
    /// How long the writer waits after the first pending append before it writes, to
    /// gather more appends into one sync. Default 0: the sync itself gathers them. A few
    /// milliseconds cut flash wear (fewer, larger writes) at the cost of that much latency.
    pub commit_delay: Duration,
    /// Most bytes of frames pending for one round. Default [`ROUND_BYTES_DEFAULT`].
    pub round_bytes: usize,
    /// What to do with damage a crash cannot explain. Default [`RecoveryMode::Strict`].
    pub recovery: RecoveryMode,
    /// How segment files are preallocated. Default [`Preallocation::Fallocate`].
    pub preallocation: Preallocation,
    /// Whether a segment removed after archiving is kept as the spare and reused as a later
    /// segment (its blocks are written already: no allocation to journal at each sync, no
    /// zeros). Default true; false unlinks it (benchmarks compare the two).
    pub recycle_segments: bool,
    /// Test hook in front of every file-system call that changes something.
    pub io_hook: Option<IoHook>,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            commit_delay: Duration::ZERO,
            round_bytes: ROUND_BYTES_DEFAULT,
            recovery: RecoveryMode::Strict,
            preallocation: Preallocation::default(),
            recycle_segments: true,
            io_hook: None,
        }
    }
}

impl std::fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalOptions")
            .field("segment_bytes", &self.segment_bytes)
            .field("commit_delay", &self.commit_delay)
            .field("round_bytes", &self.round_bytes)
            .field("recovery", &self.recovery)
            .field("preallocation", &self.preallocation)
            .field("recycle_segments", &self.recycle_segments)
            .field("io_hook", &self.io_hook.is_some())
            .finish()
    }
}

impl WalOptions {
    /// Sets the segment size.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
    /// Sets the commit delay.
    pub fn commit_delay(mut self, delay: Duration) -> Self {
        self.commit_delay = delay;
        self
    }
    /// Sets the round size.
    pub fn round_bytes(mut self, bytes: usize) -> Self {
        self.round_bytes = bytes;
        self
    }
    /// Sets how segments are preallocated.
    pub fn preallocation(mut self, how: Preallocation) -> Self {
        self.preallocation = how;
        self
    }
    /// Sets whether removed segments are recycled.
    pub fn recycle_segments(mut self, recycle: bool) -> Self {
        self.recycle_segments = recycle;
        self
    }
    /// Sets the recovery mode.
    pub fn recovery(mut self, mode: RecoveryMode) -> Self {
        self.recovery = mode;
        self
    }
    /// Sets the I/O hook (tests).
    pub fn io_hook(mut self, hook: IoHook) -> Self {
        self.io_hook = Some(hook);
        self
    }

    pub(super) fn validate(&self) -> Result<(), OpenError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(OpenError::InvalidOptions(format!(
                "segment_bytes {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            )));
        }
        if !(ROUND_BYTES_MIN..=ROUND_BYTES_MAX).contains(&self.round_bytes) {
            return Err(OpenError::InvalidOptions(format!(
                "round_bytes {} is outside {ROUND_BYTES_MIN}..={ROUND_BYTES_MAX}",
                self.round_bytes
            )));
        }
        Ok(())
    }

    /// The largest batch frame an append may produce with these options: the smaller of the
    /// segment's room and `round_bytes`.
    pub fn batch_frame_bytes_max(&self) -> usize {
        let segment_room = self.segment_bytes as usize
            - SEGMENT_HEADER_BYTES
            - FOOTER_RESERVE_BYTES
            - batch::COMMIT_FRAME_BYTES_MAX;
        // A frame never exceeds one round, so no round exceeds `round_bytes` (the torn-tail
        // window recovery reads from the segment header).
        segment_room.min(self.round_bytes)
    }
}
