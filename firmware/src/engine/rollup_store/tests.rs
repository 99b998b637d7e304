use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::format::*;
use super::*;
use crate::engine::rollup::{Bucket, RollupOptions};
use crate::wal::io::{Io, IoHook};

fn bucket(index: i64, import_wh: f64, export_wh: f64, powers: &[f32]) -> Bucket {
    let mut b = Bucket {
        index,
        import_wh,
        export_wh,
        min_w: f32::MAX,
        max_w: f32::MIN,
        mean_w: 0.0,
        count: 0,
    };
    for &p in powers {
        b.count += 1;
        b.min_w = b.min_w.min(p);
        b.max_w = b.max_w.max(p);
        b.mean_w += (p - b.mean_w) / b.count as f32;
    }
    b
}

fn id(s: &str) -> EntityId {
    EntityId::new(s).expect("id")
}

/// Puts a spill file's bytes in the store directory as spill `seq` (not atomically: tests).
fn write_spill(data_dir: &Path, seq: u64, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let dir = store_dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(spill_file_name(seq));
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// Every spill of `data_dir`, opened.
fn open_all(data_dir: &Path) -> Result<Vec<Arc<SpillFile>>, StoreError> {
    list(data_dir)?
        .into_iter()
        .map(|(_, path)| SpillFile::open(&path).map(Arc::new))
        .collect()
}

/// [`read_meter`] over every spill of `data_dir`.
fn read_dir_meter(
    data_dir: &Path,
    id: &str,
    days: std::ops::Range<i64>,
) -> Result<Vec<DayRecord>, StoreError> {
    read_meter(&open_all(data_dir)?, id, days)
}

/// A day of a meter read every 15 minutes (one reading per quarter hour, no export).
fn quarter_hourly_day(day: i64) -> DayRecord {
    let quarters: Vec<Bucket> = (0..96)
        .map(|q| {
            bucket(
                day * 96 + q,
                12.345 + q as f64 * 0.1,
                0.0,
                &[480.5 + q as f32],
            )
        })
        .collect();
    let mut day_bucket = bucket(day, 0.0, 0.0, &[]);
    for q in &quarters {
        day_bucket.import_wh += q.import_wh;
        day_bucket.count += 1;
    }
    DayRecord {
        day,
        day_bucket: Some(day_bucket),
        quarters,
    }
}

#[test]
fn header_offsets_are_chained_and_pinned() {
    assert_eq!(
        [
            R_MAGIC_AT,
            R_VERSION_AT,
            R_HEADER_LEN_AT,
            R_FLAGS_AT,
            R_SPILL_SEQ_AT,
            R_BLOCKS_BYTES_AT,
            R_METERS_AT,
            R_INDEX_CRC_AT,
            R_FIRST_DAY_AT,
            R_LAST_DAY_AT,
            R_LOG_ID_AT,
            R_THROUGH_OFFSET_AT,
            R_REPLACES_FROM_AT,
            R_LEVEL_AT,
            R_QUARTER_HOUR_DAYS_AT,
            R_DAY_DAYS_AT,
            R_CRC_AT,
            SPILL_HEADER_BYTES
        ],
        [0, 8, 10, 12, 16, 24, 32, 36, 40, 48, 56, 72, 80, 88, 92, 96, 100, 104]
    );
    assert_eq!(BUCKET_ENCODED_BYTES_MAX, 34);
}

#[test]
fn every_bucket_shape_reads_back_bit_for_bit() {
    let day = 19_700;
    let record = DayRecord {
        day,
        day_bucket: Some(bucket(day, 1e9 + 0.1, -0.0, &[1.0, -2.5, 7.25])),
        quarters: vec![
            bucket(day * 96, 0.0, 0.0, &[]),
            bucket(day * 96 + 7, 0.1 + 0.2, 3.0, &[-0.0]),
            bucket(day * 96 + 95, 5.0, 0.0, &[3.5, 3.5]),
        ],
    };
    let meters = [(id("m-1"), vec![record.clone()]), (id("m-2"), vec![])];
    let bytes = encode_file(
        &SpillSpec::plain(9),
        meters.iter().map(|(i, d)| (i, d.as_slice())),
    );
    let dir = tempfile::tempdir().expect("dir");
    let path = write_spill(dir.path(), 9, &bytes).expect("write");
    let spill = SpillFile::open(&path).expect("open");
    let got = spill.meter("m-1").expect("read");
    assert_eq!(got.len(), 1);
    let bits = Bucket::bits;
    let want: Vec<_> = record.quarters.iter().map(bits).collect();
    assert_eq!(got[0].quarters.iter().map(bits).collect::<Vec<_>>(), want);
    assert_eq!(
        got[0].day_bucket.as_ref().map(bits),
        record.day_bucket.as_ref().map(bits)
    );
    assert_eq!(spill.meter("m-2").expect("read"), Vec::<DayRecord>::new());
    assert_eq!(spill.meter("m-3").expect("read"), Vec::<DayRecord>::new());
    assert_eq!(verify(dir.path()).expect("verify"), 1);
}

#[test]
fn a_quarter_hourly_meter_day_takes_13_bytes_per_quarter_hour() {
    let mut out = Vec::new();
    encode_block(&id("meter-00001"), &[quarter_hourly_day(20_000)], &mut out);
    // crc 4, id 1 + 11, days 1, step 3, has 1, day bucket 1 + 8 + 1 + 12 (tag, import, count 96, powers), bitmap 12, 96 × 13.
    assert_eq!(out.len(), 4 + 12 + 1 + 3 + 1 + 22 + 12 + 96 * 13);
    let (back_id, back) = decode_block(&out).expect("decode");
    assert_eq!(back_id.as_str(), "meter-00001");
    assert_eq!(back, vec![quarter_hourly_day(20_000)]);
}

#[test]
fn the_newest_spill_of_a_meter_day_wins_and_the_range_filters() {
    let dir = tempfile::tempdir().expect("dir");
    let m = id("m");
    let first = vec![quarter_hourly_day(10), quarter_hourly_day(11)];
    let mut amended = quarter_hourly_day(11);
    amended.quarters[3] = bucket(11 * 96 + 3, 1.0, 0.0, &[1.0, 2.0]);
    let second = vec![amended.clone()];
    write_spill(
        dir.path(),
        1,
        &encode_file(&SpillSpec::plain(1), [(&m, first.as_slice())]),
    )
    .expect("1");
    write_spill(
        dir.path(),
        2,
        &encode_file(&SpillSpec::plain(2), [(&m, second.as_slice())]),
    )
    .expect("2");
    let got = read_dir_meter(dir.path(), "m", 0..100).expect("read");
    assert_eq!(got, vec![quarter_hourly_day(10), amended]);
    assert_eq!(
        read_dir_meter(dir.path(), "m", 10..11).expect("read").len(),
        1
    );
}

/// Every prefix of a valid file, and every single-bit flip in it, is refused with an
/// error: never accepted, never a panic.
#[test]
fn a_torn_or_flipped_spill_is_refused() {
    let m = [id("a"), id("b")];
    let days = [vec![quarter_hourly_day(3)], vec![quarter_hourly_day(4)]];
    let bytes = encode_file(
        &SpillSpec::plain(5),
        m.iter().zip(&days).map(|(i, d)| (i, d.as_slice())),
    );
    let dir = tempfile::tempdir().expect("dir");
    let path = write_spill(dir.path(), 5, &bytes).expect("write");
    for len in [
        0,
        1,
        SPILL_HEADER_BYTES - 1,
        SPILL_HEADER_BYTES,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&path, &bytes[..len]).expect("tear");
        let err = SpillFile::open(&path)
            .and_then(|s| s.all())
            .expect_err("torn");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{len}: {err}");
        assert!(verify(dir.path()).is_err());
    }
    for bit in (0..bytes.len() * 8).step_by(29) {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &flipped).expect("flip");
        let result = SpillFile::open(&path).and_then(|s| s.all());
        assert!(result.is_err(), "bit {bit} flipped went unnoticed");
    }
}

const LOG: [u8; 16] = [7; 16];

/// An I/O hook that fails the `crash_at`-th call (counting from 0) and every later one, as
/// a power cut there would: nothing after it happens.
fn crash_hook(crash_at: usize) -> IoHook {
    let calls = Arc::new(AtomicUsize::new(0));
    Arc::new(move |_| {
        if calls.fetch_add(1, Ordering::SeqCst) >= crash_at {
            Err(std::io::Error::other("power cut"))
        } else {
            Ok(())
        }
    })
}

fn opened(data_dir: &Path) -> (RollupStore, Opened) {
    opened_with(data_dir, RollupOptions::default())
}

fn opened_with(data_dir: &Path, horizons: RollupOptions) -> (RollupStore, Opened) {
    RollupStore::open(&Io::default(), data_dir, LOG, u64::MAX, horizons).expect("open")
}

fn only_spill_files_left(data_dir: &Path) -> bool {
    std::fs::read_dir(store_dir(data_dir))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .all(|p| p.extension().is_some_and(|e| e == SPILL_EXTENSION) || p.is_dir())
}

/// A crash at every file-system call of a spill, then a start: the store holds the spills
/// before it, whole, and either the new one whole (then it covers its events) or not at
/// all (then it does not, and the image the start rebuilds queues its records again) —
/// never a temp file, never half a spill.
#[test]
fn a_crash_anywhere_in_a_spill_leaves_the_store_without_it_or_with_it_whole() {
    let m = id("m");
    let (one, two) = ([quarter_hourly_day(1)], [quarter_hourly_day(2)]);
    let (mut with_any, mut without_any) = (false, false);
    for crash_at in 0..9 {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = opened(dir.path());
        let io = Io::default();
        store.spill(&io, 10, [(&m, &one[..])], || {}).expect("1");
        let mut published = false;
        let crashing = Io::new(Some(crash_hook(crash_at)));
        let result = store.spill(&crashing, 20, [(&m, &two[..])], || published = true);
        assert_eq!(
            result.is_ok(),
            published,
            "published only when whole and named"
        );
        drop(store);
        let (store, start) = opened(dir.path());
        let covered = store.covered();
        assert!(covered == 10 || covered == 20, "{crash_at}: {covered}");
        if published {
            assert_eq!(covered, 20);
        }
        let mut want = one.to_vec();
        if covered == 20 {
            want.extend(two.clone());
        }
        let got = read_meter(&store.spills(), "m", 0..10).expect("read");
        assert_eq!(got, want, "crash at call {crash_at}");
        assert!(only_spill_files_left(dir.path()), "{crash_at}: {start:?}");
        with_any |= covered == 20;
        without_any |= covered == 10;
    }
    assert!(
        with_any && without_any,
        "crashes before and after the rename"
    );
}

/// A crash at every file-system call of a merge, then a start: either the run of spills
/// or the merged spill that replaces it (what a crash left of the run is removed at the
/// start), the same coverage and the same records either way.
#[test]
fn a_crash_anywhere_in_a_merge_leaves_the_run_or_the_merged_spill_and_the_same_records() {
    let m = id("m");
    let options = RollupOptions {
        quarter_hour_days: 30,
        day_days: 30,
    };
    let days: Vec<[DayRecord; 1]> = (0..SPILLS_PER_MERGE as i64)
        .map(|d| [quarter_hourly_day(d)])
        .collect();
    let (mut merged_any, mut run_any) = (false, false);
    for crash_at in 0..30 {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = opened_with(dir.path(), options);
        for (i, day) in days.iter().enumerate() {
            let through = (i as u64 + 1) * 10;
            store
                .spill(&Io::default(), through, [(&m, &day[..])], || {})
                .expect("spill");
        }
        let before = read_meter(&store.spills(), "m", 0..100).expect("read");
        let result = store.merge(&Io::new(Some(crash_hook(crash_at))));
        drop(store);
        let (store, _) = opened_with(dir.path(), options);
        let spills = store.spills().len();
        assert!(
            spills == 1 || spills == SPILLS_PER_MERGE,
            "{crash_at}: {spills}"
        );
        if result.is_ok() {
            assert_eq!(spills, 1);
        }
        assert_eq!(store.covered(), 80);
        assert_eq!(
            read_meter(&store.spills(), "m", 0..100).expect("read"),
            before
        );
        assert!(only_spill_files_left(dir.path()));
        merged_any |= spills == 1;
        run_any |= spills > 1;
    }
    assert!(merged_any && run_any);
}

/// A merge keeps a meter's quarter hours and days only as far back as its horizons can
/// still ask for them, counted from its newest stored day.
#[test]
fn a_merge_leaves_out_what_no_horizon_can_answer() {
    let dir = tempfile::tempdir().expect("dir");
    let options = RollupOptions {
        quarter_hour_days: 2,
        day_days: 5,
    };
    let (store, _) = opened_with(dir.path(), options);
    let m = id("m");
    for d in 0..SPILLS_PER_MERGE as i64 {
        let day = [quarter_hourly_day(d)];
        store
            .spill(&Io::default(), d as u64 + 1, [(&m, &day[..])], || {})
            .expect("spill");
    }
    assert_eq!(store.merge(&Io::default()).expect("merge"), 1);
    let got = read_meter(&store.spills(), "m", 0..100).expect("read");
    // Newest stored day 7: days from 3, quarter hours from 7 × 96 − 192 + 1 (day 5's second).
    assert_eq!(
        got.iter().map(|r| r.day).collect::<Vec<_>>(),
        [3, 4, 5, 6, 7]
    );
    assert!(got.iter().all(|r| r.day_bucket.is_some()));
    let quarters: Vec<usize> = got.iter().map(|r| r.quarters.len()).collect();
    assert_eq!(quarters, [0, 0, 95, 96, 96]);
}

/// A spill whose header is damaged, or that belongs to another log, is set aside at the
/// start with every newer spill (the store must cover a prefix of the log), and the
/// coverage falls back to the spills before it. So are spills covering events past the
/// log's end (a quarantine cut), and a store made under other horizons.
#[test]
fn a_damaged_spill_and_every_newer_one_are_set_aside_and_the_coverage_falls_back() {
    let m = id("m");
    let reopen = |dir: &Path, log_end, horizons| {
        RollupStore::open(&Io::default(), dir, LOG, log_end, horizons).expect("open")
    };
    for damage in ["flip", "other log", "log cut", "other horizons"] {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = opened(dir.path());
        for d in 1..=3 {
            let day = [quarter_hourly_day(d)];
            store
                .spill(&Io::default(), d as u64 * 10, [(&m, &day[..])], || {})
                .expect("spill");
        }
        let second = store_dir(dir.path()).join(spill_file_name(2));
        let mut bytes = std::fs::read(&second).expect("read");
        match damage {
            "flip" => bytes[R_SPILL_SEQ_AT] ^= 1,
            "other log" => {
                bytes[R_LOG_ID_AT] ^= 1;
                let crc = crc32fast::hash(&bytes[..R_CRC_AT]);
                bytes[R_CRC_AT..R_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
            }
            _ => {}
        }
        std::fs::write(&second, &bytes).expect("damage");
        let (store, start) = match damage {
            // The log now ends at 15: spills 2 (through 20) and 3 (30) run past it.
            "log cut" => reopen(dir.path(), 15, RollupOptions::default()),
            "other horizons" => {
                let other = RollupOptions {
                    quarter_hour_days: 3,
                    day_days: 30,
                };
                let (store, start) = reopen(dir.path(), u64::MAX, other);
                assert_eq!((store.covered(), start.set_aside.len()), (0, 3));
                continue;
            }
            _ => opened(dir.path()),
        };
        assert_eq!(store.covered(), 10, "{damage}");
        assert_eq!(start.set_aside.len(), 2, "{damage}: {start:?}");
        assert!(start.set_aside.iter().all(|(p, _)| p.exists()));
        assert_eq!(
            read_meter(&store.spills(), "m", 0..10).expect("read"),
            vec![quarter_hourly_day(1)]
        );
    }
}
fn arb_bucket(index: i64) -> impl Strategy<Value = Bucket> {
    (
        prop_oneof![Just(0.0f64), Just(-0.0f64), -1e12f64..1e12],
        prop_oneof![Just(0.0f64), -1e12f64..1e12],
        prop::collection::vec(-1e6f32..1e6, 0..4),
    )
        .prop_map(move |(i, e, p)| bucket(index, i, e, &p))
}

fn arb_day(day: i64) -> impl Strategy<Value = DayRecord> {
    (
        prop::option::of(arb_bucket(day)),
        prop::collection::btree_set(0i64..96, 0..12),
    )
        .prop_flat_map(move |(day_bucket, set)| {
            let quarters: Vec<_> = set.into_iter().map(|q| arb_bucket(day * 96 + q)).collect();
            (Just(day_bucket), quarters)
        })
        .prop_filter("a day record holds something", |(d, q)| {
            d.is_some() || !q.is_empty()
        })
        .prop_map(move |(day_bucket, quarters)| DayRecord {
            day,
            day_bucket,
            quarters,
        })
}

fn arb_days() -> impl Strategy<Value = Vec<DayRecord>> {
    (-30_000i64..30_000, prop::collection::vec(1i64..500, 0..5)).prop_flat_map(|(first, steps)| {
        let mut day = first;
        let mut days = vec![day];
        for s in steps {
            day += s;
            days.push(day);
        }
        days.into_iter().map(arb_day).collect::<Vec<_>>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn blocks_round_trip(days in arb_days()) {
        let mut out = Vec::new();
        encode_block(&id("meter-x"), &days, &mut out);
        let (back_id, back) = decode_block(&out).expect("decode");
        prop_assert_eq!(back_id.as_str(), "meter-x");
        prop_assert_eq!(back, days);
    }

    /// Arbitrary bytes: an error or a block, never a panic or a huge allocation; a block
    /// that decodes encodes to one that decodes alike.
    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = SpillHeader::decode(&bytes, bytes.len() as u64);
        if let Ok((back_id, days)) = decode_block(&bytes) {
            let mut again = Vec::new();
            encode_block(&back_id, &days, &mut again);
            prop_assert_eq!(decode_block(&again).expect("re-decode").1, days);
        }
    }

    /// A valid block with its CRC recomputed after a change of one byte: the decoder's
    /// structural checks alone must hold (error or a consistent block, never a panic).
    #[test]
    fn structurally_damaged_blocks_fail_cleanly(days in arb_days(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut out = Vec::new();
        encode_block(&id("m"), &days, &mut out);
        let i = at.index(out.len() - 4) + 4;
        out[i] = byte;
        let crc = crc32fast::hash(&out[4..]);
        out[..4].copy_from_slice(&crc.to_le_bytes());
        if let Ok((_, back)) = decode_block(&out) {
            for w in back.windows(2) {
                prop_assert!(w[0].day < w[1].day);
            }
            for d in &back {
                for q in &d.quarters {
                    prop_assert_eq!(q.index.div_euclid(96), d.day);
                }
            }
        }
    }
}

/// A read skips a spill whose header says it holds no day of the range: its index is not
/// even read (here it is damaged, and only a read of its range fails).
#[test]
fn a_read_opens_only_the_spills_of_its_range() {
    let dir = tempfile::tempdir().expect("dir");
    let m = id("m");
    let (old, new) = ([quarter_hourly_day(3)], [quarter_hourly_day(50)]);
    let path = write_spill(
        dir.path(),
        1,
        &encode_file(&SpillSpec::plain(1), [(&m, &old[..])]),
    )
    .expect("1");
    write_spill(
        dir.path(),
        2,
        &encode_file(&SpillSpec::plain(2), [(&m, &new[..])]),
    )
    .expect("2");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damage the index");
    assert_eq!(
        read_dir_meter(dir.path(), "m", 40..60).expect("read"),
        new.to_vec()
    );
    let err = read_dir_meter(dir.path(), "m", 0..10).expect_err("damaged index");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let empty = encode_file(&SpillSpec::plain(3), std::iter::empty());
    let header = SpillHeader::decode(&empty[..SPILL_HEADER_BYTES], empty.len() as u64);
    assert_eq!(header.map(|h| (h.first_day, h.last_day)), Ok((0, -1)));
}

/// The index is searched on disk: every meter of a spill is found, including two whose
/// ids share a hash (found by trying ids until two collide), and an absent one is not.
#[test]
fn every_meter_is_found_by_the_search_even_when_hashes_collide() {
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u64..1_000_000)
        .map(|i| format!("c{:x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20))
        .find_map(|name| {
            let other = seen.insert(id_hash(&name), name.clone())?;
            Some((other, name))
        })
        .expect("a 32-bit collision among a million ids");
    assert_eq!(id_hash(&a), id_hash(&b));
    let mut ids: Vec<EntityId> = (0..300).map(|i| id(&format!("meter-{i}"))).collect();
    ids.push(id(&a));
    ids.push(id(&b));
    let days: Vec<Vec<DayRecord>> = (0..ids.len() as i64)
        .map(|i| vec![quarter_hourly_day(1000 + i)])
        .collect();
    let bytes = encode_file(
        &SpillSpec::plain(1),
        ids.iter().zip(&days).map(|(i, d)| (i, d.as_slice())),
    );
    let dir = tempfile::tempdir().expect("dir");
    let path = write_spill(dir.path(), 1, &bytes).expect("write");
    let spill = SpillFile::open(&path).expect("open");
    for (i, d) in ids.iter().zip(&days) {
        assert_eq!(&spill.meter(i.as_str()).expect("read"), d, "{i}");
    }
    assert_eq!(
        spill.meter("absent").expect("read"),
        Vec::<DayRecord>::new()
    );
    assert_eq!(spill.all().expect("all").len(), ids.len());
}

/// Readings `(minutes after day 20,000, import delta Wh, power W)` in arrival order: over
/// ten days, often out of order (late readings), some deltas zero.
fn arb_readings() -> impl Strategy<Value = Vec<(i64, f64, f64)>> {
    prop::collection::vec(
        (
            0i64..10 * 24 * 60,
            prop_oneof![Just(0.0f64), 0.0f64..5_000.0],
            -20_000.0f64..20_000.0,
        ),
        1..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A meter's current day in memory, its sealed days and amendments queued, spilled
    /// every few readings (through the encoder, the files and the decoder), merged as spills
    /// accumulate, answer bit for bit as one ring of every interval (format 4's rollups,
    /// `MeterRollupsV4`) does — every step, whole and windowed, the horizons (2 days of
    /// quarter hours, 5 of days) included.
    #[test]
    fn sealed_days_stored_and_queued_answer_as_one_ring_of_every_interval(
        readings in arb_readings(),
        spill_every in 1usize..40,
        window in (0i64..10 * 96, 1i64..4 * 96),
    ) {
        use crate::engine::rollup::v4::MeterRollupsV4;
        use crate::engine::rollup::{MeterRollups, Step, DAY_MS, QUARTER_HOUR_MS};
        use crate::engine::sealed::{overlay, spill_records, SealedQueue};
        let options = RollupOptions { quarter_hour_days: 2, day_days: 5 };
        let (mut reference, mut rollups) = (MeterRollupsV4::new(&options), MeterRollups::new(&options));
        let mut queue = SealedQueue::default();
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = opened_with(dir.path(), options);
        let (m, io, day0) = (id("m"), Io::default(), 20_000i64);
        for (i, &(minute, import_wh, power_w)) in readings.iter().enumerate() {
            let time_ms = day0 * DAY_MS + minute * 60_000;
            reference.add(time_ms, import_wh, 0.0, power_w);
            let offset = i as u64 + 1;
            queue.push(offset, &m, rollups.add(time_ms, import_wh, 0.0, power_w));
            if (offset as usize).is_multiple_of(spill_every) {
                let spills = store.spills();
                let records = spill_records(&queue.entries(), |meter, day| {
                    Ok::<_, StoreError>(read_meter(&spills, meter.as_str(), day..day + 1)?.pop())
                }).expect("records");
                let meters = records.iter().map(|(id, days)| (id, days.as_slice()));
                store.spill(&io, offset + 1, meters, || queue.stored_below(offset + 1)).expect("spill");
                store.merge(&io).expect("merge");
            }
        }
        let current_day = rollups.current_day().expect("a reading");
        let mut stored: std::collections::BTreeMap<i64, DayRecord> =
            read_meter(&store.spills(), "m", i64::MIN / 2..current_day + 1)
                .expect("read")
                .into_iter()
                .map(|r| (r.day, r))
                .collect();
        overlay(&mut stored, queue.of_meter("m").iter().map(|e| &**e));
        let stored: Vec<DayRecord> = stored.into_values().collect();
        let (from, len) = window;
        let windowed = (
            day0 * DAY_MS + from * QUARTER_HOUR_MS + 60_000,
            day0 * DAY_MS + (from + len) * QUARTER_HOUR_MS,
        );
        for step in [Step::QuarterHour, Step::Hour, Step::Day] {
            for (from_ms, to_ms) in [(i64::MIN / 2, i64::MAX / 2), windowed] {
                let want: Vec<_> = reference.query(step, from_ms, to_ms).iter().map(Bucket::bits).collect();
                let got: Vec<_> = merge::answer(&stored, &rollups, step, from_ms, to_ms)
                    .iter()
                    .map(Bucket::bits)
                    .collect();
                prop_assert_eq!(got, want, "{:?} {}..{}", step, from_ms, to_ms);
            }
        }
    }
}

/// A spill writes each day it touches whole, from the newest spill that holds the day
/// readable: a damaged block in a newer spill whose days overlap is passed over (logged),
/// so the day's earlier parts in an older spill are kept, not hidden by a partial day.
#[test]
fn a_spill_passes_over_a_damaged_block_for_an_older_readable_version_of_the_day() {
    use crate::engine::sealed::{Sealed, SealedEntry};
    let dir = tempfile::tempdir().expect("dir");
    let (store, _) = opened(dir.path());
    let (m, io) = (id("m"), Io::default());
    let day = quarter_hourly_day(20);
    let part = |range: std::ops::Range<usize>| DayRecord {
        day: 20,
        day_bucket: None,
        quarters: day.quarters[range].to_vec(),
    };
    store
        .spill(&io, 10, [(&m, &[part(0..32)][..])], || {})
        .expect("1");
    // Spill 2 holds days 19 and 21 of the meter (its range covers day 20): damaged.
    let around = [quarter_hourly_day(19), quarter_hourly_day(21)];
    store.spill(&io, 20, [(&m, &around[..])], || {}).expect("2");
    let second = store_dir(dir.path()).join(spill_file_name(2));
    let mut bytes = std::fs::read(&second).expect("read");
    bytes[SPILL_HEADER_BYTES + 40] ^= 1;
    std::fs::write(&second, &bytes).expect("damage the block");
    let (store, _) = opened(dir.path());
    let entry = |offset, record| {
        Arc::new(SealedEntry {
            offset,
            meter: m.clone(),
            sealed: Sealed::Day(record),
        })
    };
    let entries = [entry(30, part(32..64))];
    store.spill_queue(&io, &entries, 31, || {}).expect("3");
    let newest = SpillFile::open(&store_dir(dir.path()).join(spill_file_name(3))).expect("open");
    let written = newest.meter("m").expect("read");
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].quarters, day.quarters[0..64].to_vec());
}
