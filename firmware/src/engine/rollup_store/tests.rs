use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::format::*;
use super::*;
use crate::engine::rollup::Bucket;
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
            R_CRC_AT,
            SPILL_HEADER_BYTES
        ],
        [0, 8, 10, 12, 16, 24, 32, 36, 40, 48, 56, 60]
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
    let bytes = encode_file(9, meters.iter().map(|(i, d)| (i, d.as_slice())));
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
    write_spill(dir.path(), 1, &encode_file(1, [(&m, first.as_slice())])).expect("1");
    write_spill(dir.path(), 2, &encode_file(2, [(&m, second.as_slice())])).expect("2");
    let got = read_meter(dir.path(), "m", 0..100).expect("read");
    assert_eq!(got, vec![quarter_hourly_day(10), amended]);
    assert_eq!(read_meter(dir.path(), "m", 10..11).expect("read").len(), 1);
}

/// Every prefix of a valid file, and every single-bit flip in it, is refused with an
/// error: never accepted, never a panic.
#[test]
fn a_torn_or_flipped_spill_is_refused() {
    let m = [id("a"), id("b")];
    let days = [vec![quarter_hourly_day(3)], vec![quarter_hourly_day(4)]];
    let bytes = encode_file(5, m.iter().zip(&days).map(|(i, d)| (i, d.as_slice())));
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

/// A crash at every file-system call of a spill write, then the start-up trim to the
/// snapshot's covered spill: the store holds exactly the spills the snapshot counts, all
/// whole — the interrupted spill is gone (replay derives its intervals again) and no
/// temp file is left.
#[test]
fn a_crash_anywhere_in_a_spill_write_is_trimmed_to_the_snapshot() {
    let m = id("m");
    let one = [quarter_hourly_day(1)];
    let two = [quarter_hourly_day(2)];
    let (mut renamed_any, mut kept_tmp_any) = (false, false);
    for crash_at in 0..8 {
        let dir = tempfile::tempdir().expect("dir");
        write_spill(dir.path(), 1, &encode_file(1, [(&m, &one[..])])).expect("1");
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let hook: IoHook = Arc::new(move |_| {
            if counted.fetch_add(1, Ordering::SeqCst) == crash_at {
                Err(std::io::Error::other("power cut"))
            } else {
                Ok(())
            }
        });
        let written = write_spill_with(
            &Io::new(Some(hook)),
            dir.path(),
            2,
            &encode_file(2, [(&m, &two[..])]),
        );
        let renamed = list(dir.path()).expect("list").iter().any(|(s, _)| *s == 2);
        assert!(
            written.is_err() || renamed,
            "a finished write leaves its file"
        );
        renamed_any |= renamed;
        kept_tmp_any |= !renamed;
        // The snapshot that would count spill 2 was never written: it covers spill 1.
        let trimmed = trim(dir.path(), 1).expect("trim");
        assert_eq!(trimmed.spills, if renamed { vec![2] } else { vec![] });
        let left: Vec<u64> = list(dir.path())
            .expect("list")
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(left, vec![1], "crash at call {crash_at}");
        assert_eq!(verify(dir.path()).expect("verify"), 1);
        let names: Vec<_> = std::fs::read_dir(store_dir(dir.path()))
            .expect("dir")
            .collect();
        assert_eq!(
            names.len(),
            1,
            "no temp file left (crash at call {crash_at})"
        );
        assert_eq!(
            read_meter(dir.path(), "m", 0..10).expect("read"),
            one.to_vec()
        );
    }
    assert!(
        renamed_any && kept_tmp_any,
        "crashes before and after the rename"
    );
}

#[test]
fn a_snapshot_that_covers_a_spill_keeps_it() {
    let dir = tempfile::tempdir().expect("dir");
    let m = id("m");
    let one = [quarter_hourly_day(1)];
    write_spill(dir.path(), 1, &encode_file(1, [(&m, &one[..])])).expect("1");
    assert_eq!(trim(dir.path(), 1).expect("trim"), Trimmed::default());
    assert_eq!(trim(dir.path(), 0).expect("trim").spills, vec![1]);
    assert_eq!(list(dir.path()).expect("list"), vec![]);
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
    let path = write_spill(dir.path(), 1, &encode_file(1, [(&m, &old[..])])).expect("1");
    write_spill(dir.path(), 2, &encode_file(2, [(&m, &new[..])])).expect("2");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damage the index");
    assert_eq!(
        read_meter(dir.path(), "m", 40..60).expect("read"),
        new.to_vec()
    );
    let err = read_meter(dir.path(), "m", 0..10).expect_err("damaged index");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let empty = encode_file(3, std::iter::empty());
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
    let bytes = encode_file(1, ids.iter().zip(&days).map(|(i, d)| (i, d.as_slice())));
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
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Spilling the days before any boundary (through the encoder and decoder), then going
    /// on with readings from the boundary on, and answering from the spill plus the rings
    /// gives the rings' own answer bit for bit, for every step, whole and windowed, the
    /// horizons (2 days of quarter hours, 5 of days) included: what the rings have since
    /// overwritten is not answered from the spill either.
    #[test]
    fn stored_days_plus_the_rings_answer_as_the_rings_alone(
        readings in arb_readings(),
        later in arb_readings(),
        boundary_offset in -1i64..12,
        window in (0i64..10 * 96, 1i64..4 * 96),
    ) {
        use crate::engine::rollup::{MeterRollups, RollupOptions, Step, DAY_MS, QUARTER_HOUR_MS};
        let options = RollupOptions { quarter_hour_days: 2, day_days: 5 };
        let mut rollups = MeterRollups::new(&options);
        let day0 = 20_000i64;
        let boundary = day0 + boundary_offset;
        let add = |rollups: &mut MeterRollups, &(minute, import_wh, power_w): &(i64, f64, f64)| {
            rollups.add(day0 * DAY_MS + minute * 60_000, import_wh, 0.0, power_w);
        };
        for reading in &readings {
            add(&mut rollups, reading);
        }
        let records = merge::day_records(&rollups, i64::MIN..boundary);
        let mut block = Vec::new();
        encode_block(&id("m"), &records, &mut block);
        let (_, stored) = decode_block(&block).expect("decode");
        // After the spill, readings of the days kept in memory, up to ten days later.
        for &(minute, import_wh, power_w) in &later {
            let minute = (boundary - day0).max(0) * 24 * 60 + minute;
            add(&mut rollups, &(minute, import_wh, power_w));
        }
        let (from, len) = window;
        let windowed = (
            day0 * DAY_MS + from * QUARTER_HOUR_MS + 60_000,
            day0 * DAY_MS + (from + len) * QUARTER_HOUR_MS,
        );
        for step in [Step::QuarterHour, Step::Hour, Step::Day] {
            for (from_ms, to_ms) in [(i64::MIN / 2, i64::MAX / 2), windowed] {
                let want: Vec<_> = rollups.query(step, from_ms, to_ms).iter().map(Bucket::bits).collect();
                let got: Vec<_> = merge::answer(&stored, &rollups, boundary, step, from_ms, to_ms)
                    .iter()
                    .map(Bucket::bits)
                    .collect();
                prop_assert_eq!(got, want, "{:?} {}..{}", step, from_ms, to_ms);
            }
        }
    }
}

/// A spill is durable when `write_spill` returns, which is what lets a snapshot count it:
/// its bytes are synced before the rename that names it, and the directory after. And a
/// power cut that loses the rename (the directory not yet synced) leaves only a temp file,
/// which the start-up trim removes like any other.
#[test]
fn a_spill_is_synced_before_it_is_named_and_named_durably_before_it_counts() {
    use crate::wal::io::IoOp;
    let dir = tempfile::tempdir().expect("dir");
    let m = id("m");
    let one = [quarter_hourly_day(1)];
    write_spill(dir.path(), 1, &encode_file(1, [(&m, &one[..])])).expect("1");
    let ops = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ops.clone();
    let hook: IoHook = Arc::new(move |op: &IoOp<'_>| {
        let name = match op {
            IoOp::Create { .. } => "create",
            IoOp::Write { .. } => "write",
            IoOp::SyncData { .. } => "sync_data",
            IoOp::Rename { .. } => "rename",
            IoOp::SyncDir { .. } => "sync_dir",
            _ => "other",
        };
        seen.lock().expect("ops").push(name);
        Ok(())
    });
    let two = [quarter_hourly_day(2)];
    let path = write_spill_with(
        &Io::new(Some(hook)),
        dir.path(),
        2,
        &encode_file(2, [(&m, &two[..])]),
    )
    .expect("2");
    assert_eq!(
        *ops.lock().expect("ops"),
        ["create", "write", "sync_data", "rename", "sync_dir"]
    );
    // The cut undoes the rename (never synced in the directory): a whole temp file is left.
    std::fs::rename(&path, path.with_extension("rlp.tmp")).expect("undo the rename");
    let trimmed = trim(dir.path(), 1).expect("trim");
    assert_eq!((trimmed.spills.len(), trimmed.temp_files), (0, 1));
    assert_eq!(
        read_meter(dir.path(), "m", 0..10).expect("read"),
        one.to_vec()
    );
}
