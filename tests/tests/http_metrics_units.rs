//! `/metrics` says its units: every name ends in a Prometheus base unit or none, never a
//! scaled one (`_ms`, `_us`, `_millis`), every `# UNIT` line matches its name, and values
//! are in the unit they say: after the server has run a second, its uptime in seconds is at
//! least 1 and far below what milliseconds would give, and the time spent in fdatasync,
//! which one writer spends serially, is not more than the uptime (in microseconds, as it
//! once was, it would be).

use std::collections::BTreeMap;
use std::time::Duration;

use gridlog_tests::server::{get, post, rfc3339, unix_now, Server};
use serde_json::json;

/// Suffixes that name a scaled unit, which Prometheus names never use.
const SCALED_UNITS: &[&str] = &[
    "ms",
    "millis",
    "milliseconds",
    "us",
    "micros",
    "microseconds",
    "ns",
    "nanos",
    "kb",
    "mb",
    "kib",
    "mib",
    "minutes",
    "hours",
];
/// The base units a name may end in.
const BASE_UNITS: &[&str] = &["seconds", "bytes"];

/// Sample values by name, and the `# UNIT` lines by metric family.
fn scrape(server: &Server) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let (status, body) = get(&server.url("/metrics"));
    assert_eq!(status, 200);
    let text = body.as_str().expect("text").to_string();
    let mut values = BTreeMap::new();
    let mut units = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (family, unit) = rest.split_once(' ').expect("# UNIT name unit");
            units.insert(family.to_string(), unit.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            let name = name.split('{').next().unwrap().to_string();
            values.insert(name, value.parse::<f64>().expect("a number"));
        }
    }
    (values, units)
}

#[test]
fn every_metric_is_in_the_unit_its_name_says() {
    let server = Server::start(&[]);
    let (s, b) = post(
        &server.url("/api/v1/meters"),
        &json!({"id": "m1", "kind": "grid"}),
    );
    assert_eq!(s, 201, "{b}");
    for i in 0..20 {
        let (s, b) = post(
            &server.url("/api/v1/readings"),
            &json!({"readings": [{"meter": "m1", "time": rfc3339(unix_now() - 100 + i),
                "import_wh": i as f64, "export_wh": 0.0, "power_w": 1.0}]}),
        );
        assert_eq!(s, 200, "{b}");
    }
    std::thread::sleep(Duration::from_millis(1100));
    let (values, units) = scrape(&server);
    assert!(values.len() >= 15, "{values:?}");

    for name in values.keys() {
        let family = name.strip_suffix("_total").unwrap_or(name);
        let last = family.rsplit('_').next().unwrap();
        assert!(
            !SCALED_UNITS.contains(&last),
            "{name} names a scaled unit; use seconds or bytes"
        );
        match units.get(family) {
            Some(unit) => {
                assert!(BASE_UNITS.contains(&unit.as_str()), "{family}: unit {unit}");
                assert!(
                    family.ends_with(&format!("_{unit}")),
                    "{family}: unit {unit}"
                );
            }
            None => assert!(
                !BASE_UNITS.contains(&last),
                "{family} ends in a unit but has no # UNIT line"
            ),
        }
    }
    for (family, unit) in &units {
        assert!(
            values.contains_key(family) || values.contains_key(&format!("{family}_total")),
            "# UNIT {family} {unit} names no sample"
        );
    }

    let uptime = values["gridlog_uptime_seconds"];
    assert!(
        uptime >= 1.0,
        "uptime {uptime} after sleeping over a second"
    );
    assert!(
        uptime < 1000.0,
        "uptime {uptime}: milliseconds, not seconds?"
    );
    let fsync = values["gridlog_fsync_seconds_total"];
    assert!(fsync > 0.0, "21 writes were synced");
    assert!(
        fsync <= uptime,
        "fsync {fsync} s exceeds uptime {uptime} s: not seconds"
    );
    assert!(values["gridlog_commit_bytes_total"] >= 21.0);
}
