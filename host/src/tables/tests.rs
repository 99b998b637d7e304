//! The tables against the engine itself: a real log (small segments) with a wrap, a
//! replacement, a gap, late readings, a midnight and asset telemetry; every segment's files
//! read back with the Parquet reader.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use gridlog_common::domain::{AssetKind, Command, MeterKind, Reading, Telemetry};
use gridlog_common::id::{EntityId, Label};
use gridlog_firmware::engine::rollup::{Step, DAY_MS, QUARTER_HOUR_MS};
use gridlog_firmware::engine::{Engine, EngineOptions, ItemResult, Request};
use gridlog_firmware::wal::WalOptions;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

use super::segment::{day_of, SegmentInput, SegmentTables, TableFile};
use super::*;

/// 2026-03-29 23:00 UTC: the readings run over midnight.
const T0_MS: i64 = 1_774_825_200_000;

fn submit(engine: &Engine, commands: Vec<Command>) {
    let response = engine.submit(Request::of(commands)).expect("submit");
    for r in response.results {
        assert!(matches!(r, ItemResult::Accepted { .. }), "{r:?}");
    }
}

fn reading(time_ms: i64, import_wh: f64, export_wh: f64, power_w: f64) -> Reading {
    Reading {
        time_ms,
        import_wh,
        export_wh,
        power_w,
        voltage_v: Some(231.5),
        current_a: None,
        reactive_power_var: None,
    }
}

/// A log of three meters and a battery: `grid` wraps at 16 bits, `pv` is replaced, `load`
/// has a two-hour gap; a late reading of `grid` comes every tenth.
fn grow(dir: &Path) -> Engine {
    let options = EngineOptions::default().wal(WalOptions::default().segment_bytes(16 * 1024));
    let engine = Engine::open(dir, options).expect("open");
    let id = |s: &str| EntityId::new(s).unwrap();
    submit(
        &engine,
        vec![
            Command::RegisterMeter {
                meter: id("grid"),
                kind: MeterKind::Grid,
                register_bits: Some(16),
            },
            Command::RegisterMeter {
                meter: id("pv"),
                kind: MeterKind::Pv,
                register_bits: None,
            },
            Command::RegisterMeter {
                meter: id("load"),
                kind: MeterKind::Load,
                register_bits: None,
            },
            Command::RegisterAsset {
                asset: id("bat"),
                kind: AssetKind::Battery,
                rated_power_w: 5000.0,
                capacity_wh: Some(10_000.0),
            },
        ],
    );
    for i in 0..720i64 {
        let t = T0_MS + i * 10_000;
        let grid_wh = |i: i64| ((64_000 + i * 7) % 65_536) as f64;
        let mut commands = vec![
            Command::RecordReading {
                meter: id("grid"),
                reading: reading(t, grid_wh(i), 0.0, 420.0 + i as f64),
            },
            Command::RecordReading {
                meter: id("pv"),
                reading: reading(
                    t,
                    0.0,
                    (if i > 400 { i - 400 } else { i } * 3) as f64,
                    -900.0,
                ),
            },
            Command::RecordTelemetry {
                asset: id("bat"),
                telemetry: Telemetry {
                    time_ms: t,
                    power_w: 100.0,
                    soc_pct: Some(50.0),
                    status: Label::new("idle").unwrap(),
                },
            },
        ];
        if !(120..840).contains(&(i % 1000)) || i < 100 {
            commands.push(Command::RecordReading {
                meter: id("load"),
                reading: reading(t, (i * 2) as f64, 0.0, 300.0),
            });
        }
        if i == 400 {
            commands.push(Command::ReplaceMeter {
                meter: id("pv"),
                time_ms: t + 1,
                import_wh: 0.0,
                export_wh: 0.0,
            });
        }
        if i % 10 == 5 {
            commands.push(Command::RecordReading {
                meter: id("grid"),
                reading: reading(t - 25_000, grid_wh(i - 3), 0.0, 1.0),
            });
        }
        submit(&engine, commands);
    }
    engine
}

/// Every segment file of the log, oldest first (sealed and hot alike).
fn segments(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let first = u64::from_le_bytes(
                bytes[gridlog_common::segment::FIRST_OFFSET_AT..][..8]
                    .try_into()
                    .unwrap(),
            );
            (first, bytes)
        })
        .collect()
}

fn rows(file: &TableFile) -> Vec<BTreeMap<String, Field>> {
    let reader =
        SerializedFileReader::new(Bytes::from(file.bytes.clone())).expect("a Parquet file");
    let meta = reader.metadata().file_metadata();
    assert_eq!(meta.created_by(), Some(CREATED_BY));
    let kv = meta.key_value_metadata().expect("key-value metadata");
    assert!(kv
        .iter()
        .any(|k| k.key == SCHEMA_KEY && k.value.as_deref() == Some("1")));
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect()
        })
        .collect()
}

fn f64_of(row: &BTreeMap<String, Field>, name: &str) -> f64 {
    match &row[name] {
        Field::Double(v) => *v,
        Field::Float(v) => f64::from(*v),
        Field::Long(v) => *v as f64,
        other => panic!("{name} is {other:?}"),
    }
}

fn str_of<'a>(row: &'a BTreeMap<String, Field>, name: &str) -> &'a str {
    match &row[name] {
        Field::Str(s) => s,
        other => panic!("{name} is {other:?}"),
    }
}

/// A quarter hour summed over files: import, export, readings, min and max power.
type Summed = (f64, f64, u32, f32, f32);

#[test]
fn the_tables_of_every_segment_book_what_the_engines_rollups_hold() {
    let dir = tempfile::tempdir().unwrap();
    let engine = grow(dir.path());
    let segments = segments(dir.path());
    assert!(segments.len() >= 5, "{} segments", segments.len());
    let mut carry = Carry::new();
    let mut quarters: BTreeMap<(String, i64), Summed> = BTreeMap::new();
    let (mut readings, mut telemetry, mut events) = (0u64, 0u64, 0u64);
    for (first, bytes) in &segments {
        let input = SegmentInput {
            site: "plant-7",
            lineage: "ab12",
            first_offset: *first,
            records: bytes,
        };
        let tables = SegmentTables::scan(input, &mut carry).expect("scan");
        for (table, day) in tables.files() {
            let file = tables.build(table, day).unwrap();
            let again = tables.build(table, day).unwrap();
            assert_eq!(
                file.bytes, again.bytes,
                "the same segment gives the same bytes"
            );
            let rows = rows(&file);
            assert_eq!(rows.len() as u64, file.rows);
            assert!(
                !rows.is_empty(),
                "{table:?} {day}: a file is made only for rows"
            );
            for row in &rows {
                assert_eq!(str_of(row, "site"), "plant-7");
                assert_eq!(str_of(row, "lineage"), "ab12");
            }
            match table {
                Table::Readings => readings += file.rows,
                Table::AssetTelemetry => telemetry += file.rows,
                Table::Events => events += file.rows,
                Table::Intervals => {
                    for row in &rows {
                        let Field::TimestampMicros(start_us) = row["interval_start"] else {
                            panic!("interval_start is {:?}", row["interval_start"]);
                        };
                        assert_eq!(start_us / 1000 / DAY_MS, day, "a file holds one UTC day");
                        let q = quarters
                            .entry((str_of(row, "meter").to_string(), start_us / 1000))
                            .or_insert((0.0, 0.0, 0, f32::MAX, f32::MIN));
                        q.0 += f64_of(row, "import_wh");
                        q.1 += f64_of(row, "export_wh");
                        q.2 += f64_of(row, "readings") as u32;
                        q.3 = q.3.min(f64_of(row, "power_min_w") as f32);
                        q.4 = q.4.max(f64_of(row, "power_max_w") as f32);
                    }
                }
            }
        }
    }
    let days: std::collections::BTreeSet<i64> =
        quarters.keys().map(|(_, t)| t.div_euclid(DAY_MS)).collect();
    assert_eq!(days.len(), 2, "the readings cross midnight");
    let expected_events = engine.committed_offset() - 1;
    let expected_readings = 720 * 2
        + 72
        + (0..720)
            .filter(|i| *i < 100 || !(120..840).contains(i))
            .count() as u64;
    assert_eq!(events, expected_events, "every event has a row");
    assert_eq!(readings, expected_readings);
    assert_eq!(telemetry, 720);
    for meter in ["grid", "pv", "load"] {
        let buckets = engine
            .rollups(meter, Step::QuarterHour, T0_MS - DAY_MS, T0_MS + 2 * DAY_MS)
            .expect("rollups")
            .expect("a meter");
        let ours: Vec<_> = quarters
            .range((meter.to_string(), i64::MIN)..(meter.to_string(), i64::MAX))
            .collect();
        assert_eq!(
            ours.len(),
            buckets.len(),
            "{meter}: the same quarter hours, gaps stay gaps"
        );
        for (((_, start_ms), q), b) in ours.into_iter().zip(&buckets) {
            assert_eq!(*start_ms, b.index * QUARTER_HOUR_MS);
            assert!(
                (q.0 - b.import_wh).abs() < 1e-6,
                "{meter} {start_ms}: import {} vs {}",
                q.0,
                b.import_wh
            );
            assert!(
                (q.1 - b.export_wh).abs() < 1e-6,
                "{meter} {start_ms}: export {} vs {}",
                q.1,
                b.export_wh
            );
            assert_eq!(
                (q.2, q.3, q.4),
                (b.count, b.min_w, b.max_w),
                "{meter} {start_ms}"
            );
        }
    }
    engine.shutdown();
}

#[test]
fn a_segment_out_of_turn_or_damaged_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    grow(dir.path()).shutdown();
    let segments = segments(dir.path());
    let (first, bytes) = &segments[1];
    let input = SegmentInput {
        site: "s",
        lineage: "l",
        first_offset: *first,
        records: bytes,
    };
    assert!(matches!(
        SegmentTables::scan(input, &mut Carry::new()),
        Err(TablesError::CarryElsewhere { .. })
    ));
    let (first, bytes) = &segments[0];
    let mut damaged = bytes.clone();
    damaged[gridlog_common::segment::SEGMENT_HEADER_BYTES + 40] ^= 0x10;
    let input = SegmentInput {
        site: "s",
        lineage: "l",
        first_offset: *first,
        records: &damaged,
    };
    assert!(SegmentTables::scan(input, &mut Carry::new()).is_err());
}

#[test]
fn keys_are_hive_partitions_by_utc_date() {
    assert_eq!(
        key(Table::Intervals, "plant-7", 20_541, 1, 4_096, "ab12"),
        "tables/intervals/site=plant-7/date=2026-03-29/00000000000000000001-00000000000000004096-ab12.parquet"
    );
    assert_eq!(date_of_day(0), "1970-01-01");
    assert_eq!(date_of_day(-1), "1969-12-31");
    assert_eq!(day_of(T0_MS), 20_541);
}

#[test]
fn an_archive_file_read_as_a_stream_gives_the_same_records_and_refuses_damage() {
    let dir = tempfile::tempdir().unwrap();
    let engine = grow(dir.path());
    engine.snapshot_now().expect("snapshot and archive");
    engine.shutdown();
    let (archives, damage) = gridlog_firmware::archive::list(dir.path()).unwrap();
    assert!(damage.is_empty() && archives.len() >= 3, "{damage:?}");
    let records = |source: &dyn Records, first| {
        let mut out = Vec::new();
        source
            .for_each(first, &mut |o, r| out.push((o, r.to_vec())))
            .map(|next| (out, next))
    };
    for a in &archives {
        let (_, original) = gridlog_firmware::archive::read_original(&a.path).unwrap();
        let first = a.header.first_offset;
        let whole = records(&original, first).unwrap();
        let streamed = records(&ArchiveFile(a.path.clone()), first).unwrap();
        assert_eq!(streamed, whole);
        assert_eq!(streamed.1, a.header.next_offset);
    }
    let bytes = std::fs::read(&archives[0].path).unwrap();
    let first = archives[0].header.first_offset;
    let damaged = dir.path().join("damaged.seg.zst");
    for at in [0, 20, 120, bytes.len() / 2, bytes.len() - 1] {
        let mut copy = bytes.clone();
        copy[at] ^= 0x40;
        std::fs::write(&damaged, &copy).unwrap();
        assert!(
            records(&ArchiveFile(damaged.clone()), first).is_err(),
            "flip at {at}"
        );
    }
    std::fs::write(&damaged, &bytes[..bytes.len() - 7]).unwrap();
    assert!(
        records(&ArchiveFile(damaged.clone()), first).is_err(),
        "torn"
    );
}
