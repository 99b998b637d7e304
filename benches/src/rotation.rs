//! Watches gridlog's segment rotations through its I/O hook (`WalOptions::io_hook`): when the
//! writer seals a segment, when it writes the next segment's header, when it syncs, and when
//! the preallocator zero-fills the next segment — to tell how long appends stall at a
//! rotation, whether the stall is the wait for the zero-fill, and whether the longest write
//! rounds are the ones that queue behind the preallocator's flush of 64 MiB of zeros.
//!
//! The hook only notes a timestamp for five kinds of call (a mutex push per round) and is
//! installed on the replay log alone, never on the logs of the append rows.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::driver::nearest_rank;
use gridlog_common::batch::BODY_TAG_FOOTER;
use gridlog_common::frame::FRAME_BODY_AT;
use gridlog_firmware::wal::{IoHook, IoOp};

/// The thread name gridlog gives its preallocator (`firmware/src/wal/writer.rs`). Every
/// other thread that writes a segment is the writer: the writer thread, or an appender
/// writing its own round.
const PREALLOC_THREAD: &str = "gridlog-prealloc";
const PREALLOC_FILE: &str = "prealloc.tmp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The preallocator writes the first zeros of a new segment file.
    ZeroFillStart,
    /// The preallocator has written all zeros and starts their `fdatasync`.
    ZeroFillSync,
    /// The writer writes a footer: the active segment is full.
    Seal,
    /// The writer writes the header of the next segment: appends resume after its sync.
    NewHeader,
    /// The writer starts an `fdatasync` of a segment (a round's, or a seal's).
    RoundSync,
}

/// The timestamps the hook noted.
#[derive(Debug, Clone, Default)]
pub struct RotationLog {
    events: Arc<Mutex<Vec<(Instant, Event)>>>,
}

fn is_prealloc(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == PREALLOC_FILE)
}

fn is_segment(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "seg")
}

impl RotationLog {
    /// The hook to install in `WalOptions::io_hook`.
    pub fn hook(&self) -> IoHook {
        let events = self.events.clone();
        Arc::new(move |op: &IoOp<'_>| {
            let thread = std::thread::current();
            let name = thread.name();
            let writer = name != Some(PREALLOC_THREAD);
            let event = match *op {
                IoOp::Write { path, pos: 0, .. }
                    if name == Some(PREALLOC_THREAD) && is_prealloc(path) =>
                {
                    Some(Event::ZeroFillStart)
                }
                IoOp::SyncData { path } if name == Some(PREALLOC_THREAD) && is_prealloc(path) => {
                    Some(Event::ZeroFillSync)
                }
                IoOp::Write { path, pos: 0, .. } if writer && is_prealloc(path) => {
                    Some(Event::NewHeader)
                }
                IoOp::SyncData { path } if writer && is_segment(path) => Some(Event::RoundSync),
                IoOp::Write { path, data, .. }
                    if writer
                        && is_segment(path)
                        && data.get(FRAME_BODY_AT) == Some(&BODY_TAG_FOOTER) =>
                {
                    Some(Event::Seal)
                }
                _ => None,
            };
            if let Some(event) = event {
                let now = Instant::now();
                events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((now, event));
            }
            Ok(())
        })
    }

    /// What the rotations cost, or `None` if there was none.
    pub fn summary(&self) -> Option<RotationSummary> {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        events.sort_by_key(|(t, _)| *t);
        let at = |kind: Event| -> Vec<Instant> {
            events
                .iter()
                .filter(|(_, e)| *e == kind)
                .map(|(t, _)| *t)
                .collect()
        };
        let (starts, syncs, seals, headers) = (
            at(Event::ZeroFillStart),
            at(Event::ZeroFillSync),
            at(Event::Seal),
            at(Event::NewHeader),
        );
        let mut stalls = Vec::new();
        let mut waited_for_zero_fill = 0;
        for &seal in &seals {
            let Some(&header) = headers.iter().find(|&&h| h > seal) else {
                continue;
            };
            stalls.push(header - seal);
            // The file the writer took is the last one whose zero-fill began before the
            // header; if its zeros were still being written at the seal, the writer waited.
            let fill = starts.iter().rposition(|&s| s < header);
            let fill_done = fill.and_then(|i| syncs.iter().find(|&&y| y > starts[i]));
            if fill_done.is_some_and(|&done| done > seal) {
                waited_for_zero_fill += 1;
            }
        }
        if stalls.is_empty() {
            return None;
        }
        let zero_fills: Vec<Duration> = starts
            .iter()
            .filter_map(|&s| syncs.iter().find(|&&y| y > s).map(|&y| y - s))
            .collect();
        let segment_spans: Vec<Duration> = headers.windows(2).map(|w| w[1] - w[0]).collect();
        stalls.sort_unstable();
        // Rounds: from one writer sync to the next. The longest, and how long before each
        // began the preallocator had started syncing its zeros.
        let round_syncs = at(Event::RoundSync);
        let mut rounds: Vec<(Instant, Duration)> = round_syncs
            .windows(2)
            .map(|w| (w[0], w[1] - w[0]))
            .collect();
        let mut spans: Vec<Duration> = rounds.iter().map(|r| r.1).collect();
        spans.sort_unstable();
        let round_p50 = nearest_rank(&spans, 50);
        rounds.sort_by_key(|r| std::cmp::Reverse(r.1));
        let longest_rounds = rounds
            .iter()
            .take(LONGEST_ROUNDS_SHOWN)
            .map(|&(start, span)| SlowRound {
                span,
                after_zero_fill_sync: syncs
                    .iter()
                    .rev()
                    .find(|&&y| y <= start)
                    .map(|&y| start - y),
            })
            .collect();
        Some(RotationSummary {
            rotations: stalls.len(),
            stall_p50: nearest_rank(&stalls, 50).unwrap_or_default(),
            stall_max: stalls[stalls.len() - 1],
            stall_total: stalls.iter().sum(),
            waited_for_zero_fill,
            zero_fill_mean: mean(&zero_fills),
            segment_span_mean: mean(&segment_spans),
            round_p50,
            longest_rounds,
        })
    }
}

fn mean(values: &[Duration]) -> Option<Duration> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<Duration>() / values.len() as u32)
    }
}

/// How many of the longest write rounds a summary lists.
pub const LONGEST_ROUNDS_SHOWN: usize = 5;

/// One of the longest write rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowRound {
    /// From its `fdatasync` to the next one's.
    pub span: Duration,
    /// How long before it began the preallocator had started the `fdatasync` of a whole
    /// segment of zeros (the most recent one), if it had.
    pub after_zero_fill_sync: Option<Duration>,
}

/// What gridlog's segment rotations cost during a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSummary {
    /// Rotations seen.
    pub rotations: usize,
    /// Median time from the footer write to the next header write: the writer takes no
    /// new round meanwhile (it includes the footer's `fdatasync`).
    pub stall_p50: Duration,
    /// Longest such time.
    pub stall_max: Duration,
    /// All such time together.
    pub stall_total: Duration,
    /// Rotations whose next segment was still being written with zeros when the writer
    /// sealed: the writer waited for the preallocator.
    pub waited_for_zero_fill: usize,
    /// Mean time the preallocator spent writing one segment's zeros (before its sync).
    pub zero_fill_mean: Option<Duration>,
    /// Mean time from one new segment header to the next: how long a segment lasted.
    pub segment_span_mean: Option<Duration>,
    /// Median time from one writer `fdatasync` to the next.
    pub round_p50: Option<Duration>,
    /// The longest such times, longest first.
    pub longest_rounds: Vec<SlowRound>,
}
