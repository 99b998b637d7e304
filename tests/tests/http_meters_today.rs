//! `GET /api/v1/today/meters` gives every meter's energy today in pages that agree with
//! each meter's own daily rollup, and `GET /api/v1/limits` publishes the server's rules.

use gridlog_tests::server::{get, post, rfc3339, unix_now, Server};
use serde_json::{json, Value};

const DAY_S: i64 = 86_400;

#[test]
fn today_per_meter_matches_each_meters_daily_rollup_page_by_page() {
    let server = Server::start(&[]);
    let u = |p: &str| server.url(p);
    // "today" is a meter id too: the bulk route must not hide it.
    for (id, kind) in [
        ("grid", "grid"),
        ("pv", "pv"),
        ("quiet", "load"),
        ("today", "load"),
    ] {
        let (s, b) = post(&u("/api/v1/meters"), &json!({"id": id, "kind": kind}));
        assert_eq!(s, 201, "{b}");
    }
    // Two readings of grid and pv, both in today's UTC day (wait out a midnight).
    if unix_now().rem_euclid(DAY_S) < 5 {
        std::thread::sleep(std::time::Duration::from_secs(6));
    }
    let (t0, t1) = (rfc3339(unix_now() - 2), rfc3339(unix_now() - 1));
    let (s, b) = post(
        &u("/api/v1/readings"),
        &json!({"readings": [
            {"meter": "grid", "time": t0, "import_wh": 100.0, "export_wh": 0.0, "power_w": 2000.0},
            {"meter": "grid", "time": t1, "import_wh": 130.0, "export_wh": 2.0, "power_w": 1800.0},
            {"meter": "pv", "time": t0, "import_wh": 0.0, "export_wh": 10.0, "power_w": -3000.0},
            {"meter": "pv", "time": t1, "import_wh": 0.0, "export_wh": 65.0, "power_w": -3000.0},
            {"meter": "today", "time": t1, "import_wh": 5.0, "export_wh": 0.0, "power_w": 10.0}
        ]}),
    );
    assert_eq!((s, b["accepted"].clone()), (200, json!(5)), "{b}");
    assert_eq!(get(&u("/api/v1/meters/today")).1["id"], "today");

    // Three pages of one or two meters, in id order, ending with next_after null.
    let mut rows: Vec<Value> = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let (s, page) = get(&u(&format!("/api/v1/today/meters?limit=2&after={after}")));
        assert_eq!(s, 200, "{page}");
        pages += 1;
        rows.extend(page["meters"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["grid", "pv", "quiet", "today"]);

    let (_, all) = get(&u("/api/v1/today/meters"));
    assert_eq!(all["meters"].as_array().unwrap().len(), 4, "{all}");
    assert!(all["next_after"].is_null(), "{all}");
    let day = all["day"].as_str().unwrap();
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        let (s, r) = get(&u(&format!(
            "/api/v1/meters/{id}/rollups?step=1d&from={day}"
        )));
        assert_eq!(s, 200, "{r}");
        let bucket = r["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["start"] == day);
        match bucket {
            Some(b) => {
                assert_eq!(row["import_wh"], b["import_wh"], "{id}: {row} vs {b}");
                assert_eq!(row["export_wh"], b["export_wh"], "{id}: {row} vs {b}");
                assert_eq!(row["readings"], b["count"], "{id}: {row} vs {b}");
            }
            None => {
                assert!(row["import_wh"].is_null(), "{id}: {row}");
                assert_eq!(row["readings"], 0, "{id}: {row}");
            }
        }
    }
    let by = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(by("grid")["import_wh"], 30.0);
    assert_eq!(by("pv")["export_wh"], 55.0);
    assert!(by("quiet")["import_wh"].is_null());

    // Bounds: limit 1 to 10000.
    for bad in ["0", "10001", "x"] {
        let (s, b) = get(&u(&format!("/api/v1/today/meters?limit={bad}")));
        assert_eq!(s, 400, "{bad}: {b}");
        assert_eq!(b["error"]["field"], "limit", "{b}");
    }
}

#[test]
fn limits_publish_the_servers_rules_and_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "serve",
        &[],
        &[("GRIDLOG_ENGINE__ROLLUP_QUARTER_HOUR_DAYS", "3")],
    );
    let (s, limits) = get(&server.url("/api/v1/limits"));
    assert_eq!(s, 200, "{limits}");
    assert_eq!(limits["stale_after_ms"], 60_000, "{limits}");
    assert_eq!(limits["rollup_quarter_hour_days"], 3, "{limits}");
    assert_eq!(limits["rollup_day_days"], 400, "{limits}");
    assert_eq!(limits["events_limit_max"], 10_000, "{limits}");
    assert_eq!(limits["today_limit_max"], 10_000, "{limits}");
    // The published maximum is the one the server enforces.
    let (s, _) = get(&server.url("/api/v1/today/meters?limit=10000"));
    assert_eq!(s, 200);
}
