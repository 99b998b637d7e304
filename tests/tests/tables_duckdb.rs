//! The fleet tables as a central analyst meets them: a gateway ships a day of a site with a
//! meter whose register wraps, one replaced mid-day and one with a two-hour gap; `gridlog
//! export` writes the Parquet tables into the S3-compatible store (moto); DuckDB (the Python
//! package with its pinned httpfs wheel, no download at run time) reads them over S3 with
//! Hive partitions; its per-meter energy of the day, from `intervals` and from `readings`,
//! equals the gateway's own `/api/v1/meters/{id}/rollups` to the Wh. A second export writes
//! nothing (the same bytes are there).
//!
//! Fails, not skips, if moto_server or duckdb is missing: `scripts/test.sh` installs both.

#[allow(dead_code)]
mod ship_support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value};
use ship_support::*;

/// 2026-11-02 00:00 UTC: the day shipped.
const DAY_START_S: i64 = 1_793_577_600;
const DAY: &str = "2026-11-02";
/// One reading a minute per meter.
const STEP_S: i64 = 60;

/// `grid` registers wrap at 16 bits, `pv` is replaced at noon, `load` is silent 10:00–12:00.
fn day_readings() -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..(86_400 / STEP_S) {
        let t = DAY_START_S + i * STEP_S;
        let time = gridlog_tests::server::rfc3339(t);
        let grid_wh = (60_000 + i * 11) % 65_536;
        out.push(json!({"meter": "grid", "time": time, "import_wh": grid_wh as f64, "export_wh": 0.0, "power_w": 660.0}));
        let hour = (i * STEP_S) / 3600;
        let pv_wh = if hour < 12 {
            5_000 + i * 3
        } else {
            (i - 720) * 3 + 1
        };
        out.push(json!({"meter": "pv", "time": time, "import_wh": 0.0, "export_wh": pv_wh as f64, "power_w": -180.0}));
        if !(10..12).contains(&hour) {
            out.push(json!({"meter": "load", "time": time, "import_wh": (i * 5) as f64, "export_wh": 0.0, "power_w": 300.0 + (i % 7) as f64}));
        }
    }
    out
}

fn post(base: &str, path: &str, body: Value) -> Value {
    ureq::post(&format!("{base}{path}"))
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .into_json()
        .unwrap()
}

/// The gateway's daily energy of `meter` on the day.
fn gateway_day(base: &str, meter: &str) -> (f64, f64) {
    let from = gridlog_tests::server::rfc3339(DAY_START_S);
    let to = gridlog_tests::server::rfc3339(DAY_START_S + 86_400);
    let v: Value = ureq::get(&format!(
        "{base}/api/v1/meters/{meter}/rollups?step=1d&from={from}&to={to}"
    ))
    .call()
    .unwrap()
    .into_json()
    .unwrap();
    let buckets = v["buckets"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(buckets.len(), 1, "{v}");
    (
        buckets[0]["import_wh"].as_f64().unwrap(),
        buckets[0]["export_wh"].as_f64().unwrap(),
    )
}

fn duckdb(moto: &Moto, sql: &str) -> Vec<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tables_support/query_s3.py"
    );
    let out = Command::new("python3")
        .args([script, "--endpoint", &format!("127.0.0.1:{}", moto.port)])
        .args(["--bucket", BUCKET, "--sql", sql])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "DuckDB failed (scripts/test.sh installs duckdb==1.5.5 and duckdb-extension-httpfs==1.5.5): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn export(moto: &Moto) -> String {
    let (code, text) = export_tables(&moto.endpoint(), "site", "fleet", &[]);
    assert_eq!(code, 0, "{text}");
    text
}

const TABLE: &str = "read_parquet('s3://{bucket}/fleet/tables/TABLE/*/*/*.parquet', hive_partitioning = true, union_by_name = true, hive_types = {'site': VARCHAR, 'date': DATE})";

fn table(name: &str) -> String {
    TABLE.replace("TABLE", name)
}

#[test]
fn duckdb_reads_the_shipped_day_from_parquet_and_books_what_the_gateway_books() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut env = ship_env_with_tables(&moto.endpoint(), "site");
    env.push((
        "GRIDLOG_STORAGE__SNAPSHOT_EVERY_BYTES".into(),
        (64 * 1024).to_string(),
    ));
    env.push(("GRIDLOG_STORAGE__SNAPSHOTS_KEEP".into(), "1".into()));
    let mut gateway = Gateway::serve(&tmp.path().join("data"), &env);
    let base = format!("http://{}", gateway.addr.unwrap());
    post(
        &base,
        "/api/v1/meters",
        json!({"id": "grid", "kind": "grid", "register_bits": 16}),
    );
    post(&base, "/api/v1/meters", json!({"id": "pv", "kind": "pv"}));
    post(
        &base,
        "/api/v1/meters",
        json!({"id": "load", "kind": "load"}),
    );
    post(
        &base,
        "/api/v1/meters",
        json!({"id": "filler", "kind": "submeter"}),
    );
    let noon = gridlog_tests::server::rfc3339(DAY_START_S + 43_200);
    let (morning, afternoon): (Vec<Value>, Vec<Value>) = day_readings()
        .into_iter()
        .partition(|r| r["time"].as_str().unwrap() < noon.as_str());
    for (n, half) in [morning, afternoon].iter().enumerate() {
        if n == 1 {
            let replace = json!({"time": gridlog_tests::server::rfc3339(DAY_START_S + 43_200 - 1), "import_wh": 0.0, "export_wh": 0.0});
            let r = post(&base, "/api/v1/meters/pv/replace", replace);
            assert!(r.get("error").is_none(), "{r}");
        }
        for chunk in half.chunks(200) {
            let r = post(&base, "/api/v1/readings", json!({ "readings": chunk }));
            assert_eq!(r["accepted"].as_u64(), Some(chunk.len() as u64), "{r}");
        }
    }
    let expected: BTreeMap<&str, (f64, f64)> = ["grid", "pv", "load"]
        .map(|m| (m, gateway_day(&base, m)))
        .into();
    let day_end = gateway.get("/api/v1/status").1["last_offset"]
        .as_u64()
        .unwrap();
    // A later day of another meter until the whole shipped day lies in shipped segments.
    let bucket = moto.bucket();
    let mut t = DAY_START_S + 2 * 86_400;
    while shipped_through(&bucket) < day_end {
        let filler: Vec<Value> = (0..200)
            .map(|_| {
                t += 1;
                json!({"meter": "filler", "time": gridlog_tests::server::rfc3339(t), "import_wh": t as f64, "export_wh": 0.0, "power_w": 1.0})
            })
            .collect();
        post(&base, "/api/v1/readings", json!({ "readings": filler }));
        assert!(
            t < DAY_START_S + 3 * 86_400,
            "the day was not shipped: {:#}",
            gateway.shipping()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The gateway writes the tables of every shipped segment itself (ship.tables is on by
    // default) under the shipping prefix.
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let tables = gateway.shipping()["tables"].clone();
        if tables["waiting_segments"] == 0 && tables["segments"].as_u64() > Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tables not written: {tables:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("gridlog_ship_tables_files_total"),
        "{metrics}"
    );
    assert_eq!(gateway.stop(), 0);

    let first = export(&moto);
    let tables = bucket.keys("fleet/tables/");
    assert!(tables.iter().all(|k| k.ends_with(".parquet")), "{tables:?}");
    // Readings and intervals by the readings' day; events by the gateway's commit time.
    for name in ["readings/", "intervals/"] {
        let prefix = format!("fleet/tables/{name}site={SITE}/date={DAY}/");
        assert!(
            tables.iter().any(|k| k.starts_with(&prefix)),
            "no {prefix} in {tables:?}"
        );
    }
    assert!(tables
        .iter()
        .any(|k| k.starts_with("fleet/tables/events/site=")));
    let before = bucket.objects("fleet/tables/");
    let second = export(&moto);
    assert!(
        second.contains(" 0 files written"),
        "a second export writes nothing: {second}"
    );
    assert_eq!(
        bucket.objects("fleet/tables/"),
        before,
        "and changes nothing"
    );
    // --from-offset N writes only the files of segments ending at or after N, the same
    // bytes (the baselines before N are still folded).
    let last_of = |key: &str| -> u64 {
        let name = key.rsplit('/').next().unwrap();
        name.split('-').nth(1).unwrap().parse().unwrap()
    };
    let mut lasts: Vec<u64> = before.keys().map(|k| last_of(k)).collect();
    lasts.sort_unstable();
    lasts.dedup();
    let from_offset = lasts[lasts.len() / 2];
    let (code, text) = export_tables(
        &moto.endpoint(),
        "site",
        "partial",
        &["--from-offset", &from_offset.to_string()],
    );
    assert_eq!(code, 0, "{text}");
    let partial = bucket.objects("partial/tables/");
    let wanted: Vec<&String> = before
        .keys()
        .filter(|k| last_of(k) >= from_offset)
        .collect();
    assert_eq!(partial.len(), wanted.len(), "{:?}", partial.keys());
    for key in wanted {
        let again = format!("partial/{}", key.strip_prefix("fleet/").unwrap());
        assert!(
            partial.get(&again) == before.get(key),
            "{again} differs from {key}"
        );
    }
    // What the gateway wrote is what export writes, byte for byte.
    let by_gateway = bucket.objects("site/tables/");
    assert!(by_gateway.len() >= 6, "{:?}", by_gateway.keys());
    for (key, bytes) in &by_gateway {
        let exported = format!("fleet/{}", key.strip_prefix("site/").unwrap());
        assert!(
            before.get(&exported) == Some(bytes),
            "{key} differs from {exported}"
        );
    }

    // Energy per meter and day, from the quarter hours the gateway booked.
    let from_intervals = duckdb(
        &moto,
        &format!(
            "SELECT meter, sum(import_wh) AS import_wh, sum(export_wh) AS export_wh FROM {} \
         WHERE site = '{SITE}' AND date = DATE '{DAY}' GROUP BY meter ORDER BY meter",
            table("intervals")
        ),
    );
    // The same from the raw readings: deltas in time order, a 16-bit wrap added back, and
    // a replacement's registers (which start at 0) counted from 0.
    let from_readings = duckdb(&moto, &format!(
        "WITH r AS (SELECT DISTINCT ON (site, \"offset\") * FROM {} WHERE site = '{SITE}'), \
         d AS (SELECT meter, date, import_wh AS i, export_wh AS e, \
                      import_wh - lag(import_wh) OVER w AS di, export_wh - lag(export_wh) OVER w AS de \
               FROM r WINDOW w AS (PARTITION BY meter ORDER BY time)) \
         SELECT meter, \
                sum(CASE WHEN di < 0 AND meter = 'grid' THEN di + 65536 WHEN di < 0 THEN i ELSE di END) AS import_wh, \
                sum(CASE WHEN de < 0 THEN e ELSE de END) AS export_wh \
         FROM d WHERE date = DATE '{DAY}' AND meter IN ('grid', 'pv', 'load') \
         GROUP BY meter ORDER BY meter",
        table("readings")
    ));
    for rows in [&from_intervals, &from_readings] {
        let got: BTreeMap<String, (f64, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r["meter"].as_str().unwrap().to_string(),
                    (
                        r["import_wh"].as_f64().unwrap(),
                        r["export_wh"].as_f64().unwrap(),
                    ),
                )
            })
            .collect();
        assert_eq!(got.len(), 3, "{rows:?} ({first})");
        for (meter, (import_wh, export_wh)) in &expected {
            let (i, e) = got[*meter];
            assert!(
                (i - import_wh).abs() < 0.5 && (e - export_wh).abs() < 0.5,
                "{meter}: DuckDB {i}/{e} Wh, the gateway {import_wh}/{export_wh} Wh"
            );
        }
    }
    // Every event has a row, once; the gap stays a gap.
    let counts = duckdb(&moto, &format!(
        "SELECT count(*) AS n, count(DISTINCT \"offset\") AS distinct_offsets FROM {} WHERE site = '{SITE}'",
        table("events")
    ));
    assert_eq!(counts[0]["n"], counts[0]["distinct_offsets"], "{counts:?}");
    let load_gap = duckdb(
        &moto,
        &format!(
            "SELECT count(*) AS n FROM {} WHERE meter = 'load' AND date = DATE '{DAY}' \
         AND hour(interval_start AT TIME ZONE 'UTC') IN (10, 11)",
            table("intervals")
        ),
    );
    assert_eq!(load_gap[0]["n"], 0, "no interval inside the gap");
}

/// One past the highest offset the shipped segments of prefix `site` hold.
fn shipped_through(bucket: &Bucket) -> u64 {
    bucket
        .keys("site/")
        .iter()
        .filter(|k| k.contains("/segments/"))
        .filter_map(|k| {
            let name = k.rsplit('/').next()?;
            name.split(['-', '.']).nth(1)?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0)
}
