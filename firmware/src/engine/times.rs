//! The measurement times of every reading a meter has stored, exactly, in little memory:
//! sorted, disjoint runs `(first_ms, step_ms, count)`. A meter read at a fixed interval is
//! one run per gap in its history (16 bytes each); a meter whose times jitter needs about
//! one run per two readings. At most [`READING_RUNS_MAX`] runs are kept: beyond it the
//! oldest run is forgotten and the times up to its last become unknown
//! ([`TimeLookup::Forgotten`]), so a reading dated there can no longer be told from one
//! already stored. Depends on nothing else in the engine.

/// Most runs of times kept per meter: 4 KiB at most ([`RUN_BYTES`] each). A meter read at a
/// fixed interval needs one run per gap in its history, so this holds its whole history
/// unless it had more than 255 gaps; a meter with jittering times keeps about its newest
/// 512 readings.
pub const READING_RUNS_MAX: usize = 256;
/// Bytes of one run in memory and, at most, in a snapshot.
pub const RUN_BYTES: usize = std::mem::size_of::<Run>();
const _: () = assert!(RUN_BYTES == 16);
const _: () = assert!(READING_RUNS_MAX >= 2);

/// `count` times `first_ms`, `first_ms + step_ms`, …; a run of one time has `step_ms` 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// Its first time.
    pub first_ms: i64,
    /// The distance between its times (0 for a run of one).
    pub step_ms: u32,
    /// How many times (at least 1).
    pub count: u32,
}

impl Run {
    fn one(time_ms: i64) -> Run {
        Run {
            first_ms: time_ms,
            step_ms: 0,
            count: 1,
        }
    }

    /// Its last time.
    pub fn last_ms(&self) -> i64 {
        self.first_ms + i64::from(self.step_ms) * (i64::from(self.count) - 1)
    }

    fn contains(&self, time_ms: i64) -> bool {
        time_ms >= self.first_ms
            && time_ms <= self.last_ms()
            && (self.step_ms == 0 || (time_ms - self.first_ms) % i64::from(self.step_ms) == 0)
    }

    /// Well formed: a positive count, a step exactly when there is more than one time, and
    /// a last time that does not overflow.
    fn is_valid(&self) -> bool {
        let steps = i128::from(self.step_ms) * (i128::from(self.count) - 1);
        self.count >= 1
            && (self.count == 1) == (self.step_ms == 0)
            && i128::from(self.first_ms) + steps <= i128::from(i64::MAX)
    }

    /// `a` then `b` as one run, if they are one arithmetic sequence (`a` ends before `b`).
    fn joined(a: Run, b: Run) -> Option<Run> {
        let gap = u32::try_from(b.first_ms.checked_sub(a.last_ms())?).ok()?;
        let step_ms = match (a.count, b.count) {
            (1, 1) => gap,
            (1, _) => b.step_ms,
            (_, 1) => a.step_ms,
            _ if a.step_ms == b.step_ms => a.step_ms,
            _ => return None,
        };
        (gap == step_ms && gap > 0).then_some(Run {
            first_ms: a.first_ms,
            step_ms,
            count: a.count.checked_add(b.count)?,
        })
    }

    /// The run without `time_ms`, which lies strictly inside its span but not on it: the
    /// times before it and those after it.
    fn split_at(&self, time_ms: i64) -> (Run, Run) {
        let step = i64::from(self.step_ms);
        let before = ((time_ms - self.first_ms) / step + 1) as u32;
        let part = |first_ms: i64, count: u32| Run {
            first_ms,
            step_ms: if count == 1 { 0 } else { self.step_ms },
            count,
        };
        (
            part(self.first_ms, before),
            part(
                self.first_ms + step * i64::from(before),
                self.count - before,
            ),
        )
    }
}

/// What the times say of one measurement time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLookup {
    /// A reading at this time is stored.
    Stored,
    /// No reading at this time is stored.
    Absent,
    /// At or before [`ReadingTimes::forgotten_through_ms`]: not known either way.
    Forgotten,
}

/// Every stored reading time of one meter (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "TimesParts")]
pub struct ReadingTimes {
    /// Sorted by time, disjoint spans, at most [`READING_RUNS_MAX`].
    runs: Vec<Run>,
    /// Every time at or before this one is forgotten (runs folded away, or a meter from a
    /// snapshot written before times were kept).
    forgotten_through_ms: Option<i64>,
}

/// [`ReadingTimes`] as a snapshot stores it, checked before it is used.
#[derive(serde::Deserialize)]
struct TimesParts {
    #[serde(deserialize_with = "at_most_runs_max")]
    runs: Vec<Run>,
    forgotten_through_ms: Option<i64>,
}

/// Runs as a snapshot stores them, refused at the first beyond [`READING_RUNS_MAX`]: a
/// hostile length never makes the decoder reserve or read more.
fn at_most_runs_max<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Run>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<Run>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {READING_RUNS_MAX} runs of reading times")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Run>, A::Error> {
            let claimed = seq.size_hint().unwrap_or(0);
            let mut runs = Vec::with_capacity(claimed.min(READING_RUNS_MAX));
            while let Some(run) = seq.next_element()? {
                if runs.len() == READING_RUNS_MAX {
                    return Err(serde::de::Error::custom(TimesError::TooManyRuns {
                        runs: claimed.max(READING_RUNS_MAX + 1),
                    }));
                }
                runs.push(run);
            }
            Ok(runs)
        }
    }
    d.deserialize_seq(Bounded)
}

/// Why stored times were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimesError {
    /// More runs than [`READING_RUNS_MAX`].
    #[error("{runs} runs of reading times, more than the {READING_RUNS_MAX} kept")]
    TooManyRuns {
        /// How many.
        runs: usize,
    },
    /// A run that is not well formed, out of order, overlapping, or not after the forgotten
    /// times.
    #[error("run {index} of reading times is malformed or out of order")]
    BadRun {
        /// Its index.
        index: usize,
    },
}

impl TryFrom<TimesParts> for ReadingTimes {
    type Error = TimesError;

    fn try_from(parts: TimesParts) -> Result<Self, TimesError> {
        if parts.runs.len() > READING_RUNS_MAX {
            return Err(TimesError::TooManyRuns {
                runs: parts.runs.len(),
            });
        }
        let mut after = parts.forgotten_through_ms;
        for (index, run) in parts.runs.iter().enumerate() {
            if !run.is_valid() || after.is_some_and(|t| run.first_ms <= t) {
                return Err(TimesError::BadRun { index });
            }
            after = Some(run.last_ms());
        }
        Ok(ReadingTimes {
            runs: parts.runs,
            forgotten_through_ms: parts.forgotten_through_ms,
        })
    }
}

impl ReadingTimes {
    /// Times of a meter whose history up to `forgotten_through_ms` is unknown.
    pub fn forgotten_through(forgotten_through_ms: i64) -> ReadingTimes {
        ReadingTimes {
            runs: Vec::new(),
            forgotten_through_ms: Some(forgotten_through_ms),
        }
    }

    /// Every time at or before this one is unknown.
    pub fn forgotten_through_ms(&self) -> Option<i64> {
        self.forgotten_through_ms
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Whether a reading at `time_ms` is stored.
    #[inline]
    pub fn lookup(&self, time_ms: i64) -> TimeLookup {
        if self.forgotten_through_ms.is_some_and(|t| time_ms <= t) {
            return TimeLookup::Forgotten;
        }
        // Readings mostly arrive in time order: the newest run first.
        if let Some(last) = self.runs.last() {
            if time_ms > last.last_ms() {
                return TimeLookup::Absent;
            }
        }
        let after = self.runs.partition_point(|r| r.first_ms <= time_ms);
        match after.checked_sub(1).map(|i| self.runs[i]) {
            Some(run) if run.contains(time_ms) => TimeLookup::Stored,
            _ => TimeLookup::Absent,
        }
    }

    /// Adds `time_ms` (nothing changes if it is stored or forgotten). Beyond
    /// [`READING_RUNS_MAX`] runs, the oldest is forgotten.
    #[inline]
    pub fn insert(&mut self, time_ms: i64) {
        // Most readings are the meter's newest: they extend its newest run or start one.
        if let Some(last) = self.runs.last_mut() {
            if time_ms > last.last_ms() {
                match Run::joined(*last, Run::one(time_ms)) {
                    Some(joined) => *last = joined,
                    None => self.push_newest(time_ms),
                }
                return;
            }
        }
        self.insert_among(time_ms);
    }

    /// Starts a run after every other one, forgetting the oldest beyond the bound.
    fn push_newest(&mut self, time_ms: i64) {
        self.runs.push(Run::one(time_ms));
        self.forget_beyond_bound();
    }

    fn forget_beyond_bound(&mut self) {
        if self.runs.len() > READING_RUNS_MAX {
            let oldest = self.runs.remove(0);
            self.forgotten_through_ms = Some(oldest.last_ms());
        }
    }

    /// [`ReadingTimes::insert`] of a time that is not after every run.
    fn insert_among(&mut self, time_ms: i64) {
        if self.lookup(time_ms) != TimeLookup::Absent {
            return;
        }
        let mut at = self.runs.partition_point(|r| r.first_ms <= time_ms);
        // Inside a run's span but off its steps: the run is cut in two around it.
        if let Some(before) = at.checked_sub(1).map(|i| self.runs[i]) {
            if time_ms < before.last_ms() {
                let (low, high) = before.split_at(time_ms);
                self.runs[at - 1] = low;
                self.runs.insert(at, high);
            }
        }
        self.runs.insert(at, Run::one(time_ms));
        // Join with the run before, then with the one after.
        if at > 0 {
            if let Some(joined) = Run::joined(self.runs[at - 1], self.runs[at]) {
                self.runs[at - 1] = joined;
                self.runs.remove(at);
                at -= 1;
            }
        }
        if at + 1 < self.runs.len() {
            if let Some(joined) = Run::joined(self.runs[at], self.runs[at + 1]) {
                self.runs[at] = joined;
                self.runs.remove(at + 1);
            }
        }
        self.forget_beyond_bound();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The model: every inserted time, and the forgotten ones.
    fn model_lookup(model: &BTreeSet<i64>, times: &ReadingTimes, t: i64) -> TimeLookup {
        match times.forgotten_through_ms() {
            Some(f) if t <= f => TimeLookup::Forgotten,
            _ if model.contains(&t) => TimeLookup::Stored,
            _ => TimeLookup::Absent,
        }
    }

    fn check_invariants(times: &ReadingTimes) {
        let parts = TimesParts {
            runs: times.runs.clone(),
            forgotten_through_ms: times.forgotten_through_ms,
        };
        assert_eq!(ReadingTimes::try_from(parts).as_ref(), Ok(times));
    }

    /// Times mostly on a grid of 60 s with gaps, some jitter, some backfill.
    fn times_strategy() -> impl Strategy<Value = Vec<i64>> {
        prop::collection::vec(
            prop_oneof![
                4 => (0i64..400).prop_map(|i| i * 60_000),
                1 => 0i64..400 * 60_000,
                1 => (0i64..40).prop_map(|i| i * 7),
            ],
            0..600,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn membership_is_the_set_of_inserted_times(inserts in times_strategy(), probes in times_strategy()) {
            let mut times = ReadingTimes::default();
            let mut model = BTreeSet::new();
            for t in inserts {
                let was = model_lookup(&model, &times, t);
                prop_assert_eq!(times.lookup(t), was);
                times.insert(t);
                if was != TimeLookup::Forgotten {
                    model.insert(t);
                }
                check_invariants(&times);
            }
            for t in probes.into_iter().chain(model.iter().copied()) {
                prop_assert_eq!(times.lookup(t), model_lookup(&model, &times, t), "time {}", t);
            }
        }

        #[test]
        fn the_runs_stay_within_their_bound(inserts in prop::collection::vec(any::<i32>(), 0..2000)) {
            let mut times = ReadingTimes::default();
            let mut model = BTreeSet::new();
            for t in inserts {
                let t = i64::from(t);
                if times.lookup(t) != TimeLookup::Forgotten {
                    model.insert(t);
                }
                times.insert(t);
                prop_assert!(times.runs().len() <= READING_RUNS_MAX);
            }
            // Nothing newer than the forgotten times is lost.
            for &t in &model {
                let expected = if times.forgotten_through_ms().is_some_and(|f| t <= f) {
                    TimeLookup::Forgotten
                } else {
                    TimeLookup::Stored
                };
                prop_assert_eq!(times.lookup(t), expected);
            }
        }
    }

    #[test]
    fn a_meter_read_every_minute_is_one_run_per_gap() {
        let mut times = ReadingTimes::default();
        // A day of minutes with one hour missing, then the hour backfilled in reverse.
        for i in (0..1440).filter(|i| !(600..660).contains(i)) {
            times.insert(i * 60_000);
        }
        assert_eq!(times.runs().len(), 2);
        for i in (600..660).rev() {
            times.insert(i * 60_000);
        }
        assert_eq!(
            times.runs(),
            &[Run {
                first_ms: 0,
                step_ms: 60_000,
                count: 1440
            }]
        );
        assert_eq!(times.lookup(30_000), TimeLookup::Absent);
        // A time between two steps cuts the run around it (and joins the lone time before).
        times.insert(30_000);
        assert_eq!(times.runs().len(), 2);
        assert_eq!(times.lookup(30_000), TimeLookup::Stored);
        assert_eq!(times.lookup(60_000), TimeLookup::Stored);
    }

    #[test]
    fn beyond_the_bound_the_oldest_run_is_forgotten() {
        let mut times = ReadingTimes::default();
        // Every reading its own run: steps that never repeat.
        let mut t = 0i64;
        for i in 0..(2 * READING_RUNS_MAX as i64 + 2) {
            t += 1000 + i;
            times.insert(t);
        }
        assert_eq!(times.runs().len(), READING_RUNS_MAX);
        let forgotten = times.forgotten_through_ms().unwrap();
        assert_eq!(times.lookup(forgotten), TimeLookup::Forgotten);
        assert_eq!(times.lookup(1), TimeLookup::Forgotten);
        assert_eq!(times.lookup(t), TimeLookup::Stored);
        // A forgotten time is not added again.
        times.insert(1);
        assert_eq!(times.lookup(1), TimeLookup::Forgotten);
    }

    #[test]
    fn a_snapshot_claiming_too_many_runs_is_refused_without_reading_them() {
        let runs = |n: usize| -> Vec<Run> { (0..n as i64).map(|i| Run::one(i * 10)).collect() };
        let decode = |runs: Vec<Run>| {
            let bytes = postcard::to_allocvec(&(runs, None::<i64>)).unwrap();
            postcard::from_bytes::<ReadingTimes>(&bytes)
        };
        assert_eq!(
            decode(runs(READING_RUNS_MAX)).unwrap().runs().len(),
            READING_RUNS_MAX
        );
        assert!(decode(runs(READING_RUNS_MAX + 1)).is_err());
        // A length of u32::MAX in five bytes, and nothing after it.
        let hostile = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(postcard::from_bytes::<ReadingTimes>(&hostile).is_err());
    }

    #[test]
    fn stored_times_that_break_the_rules_are_refused() {
        let run = |first_ms, step_ms, count| Run {
            first_ms,
            step_ms,
            count,
        };
        let parts = |runs: Vec<Run>, forgotten_through_ms| TimesParts {
            runs,
            forgotten_through_ms,
        };
        let refused = |p: TimesParts| ReadingTimes::try_from(p).is_err();
        assert!(!refused(parts(vec![run(0, 60, 3), run(200, 0, 1)], None)));
        assert!(refused(parts(vec![run(0, 60, 3), run(120, 0, 1)], None)));
        assert!(refused(parts(vec![run(200, 0, 1), run(0, 60, 3)], None)));
        assert!(refused(parts(vec![run(0, 0, 3)], None)));
        assert!(refused(parts(vec![run(0, 60, 1)], None)));
        assert!(refused(parts(vec![run(0, 60, 0)], None)));
        assert!(refused(parts(vec![run(i64::MAX - 10, 60, 2)], None)));
        assert!(refused(parts(vec![run(0, 60, 3)], Some(0))));
        assert!(refused(parts(
            vec![run(0, 0, 1); READING_RUNS_MAX + 1],
            None
        )));
    }
}
