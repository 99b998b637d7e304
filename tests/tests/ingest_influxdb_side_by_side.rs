//! The same line protocol bodies to a real InfluxDB 1.6 (`influxd` from Debian's
//! `influxdb`, started here on loopback) and to gridlog: the status codes and the error
//! shapes Telegraf acts on are the same (gzip, each precision, a malformed line, a type
//! conflict, an empty body, a missing `db`, a query string with a malformed pair), and
//! gridlog's errors name the line. Both announce a 1.x API in `X-Influxdb-Version`;
//! gridlog's names itself as build metadata and in `X-Influxdb-Build`.

mod ingest_support;

use gridlog_tests::influxd::Influxd;
use gridlog_tests::server::{unix_now, Server};
use ingest_support::{gzip, post_lines, send, stored_readings, Answer};
use serde_json::Value;

/// One reading of meter `m1` at `time_s`, with registers growing with time.
/// A reading whose register grows with its time (never wraps: a register that went down
/// would be refused, whatever the time of day the test runs at).
fn reading(time_s: i64, timestamp: &str) -> String {
    let import_wh = time_s - 1_600_000_000;
    format!("meter,id=m1 import_wh={import_wh},export_wh=0,power_w=50 {timestamp}\n")
}

struct Pair {
    influxd: Influxd,
    gridlog: Server,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn start() -> Pair {
        let influxd = Influxd::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let gridlog = Server::start_with_env(
            &dir.path().join("data"),
            "serve",
            &[],
            &[("GRIDLOG_ENGINE__AUTO_REGISTER", "grid")],
        );
        Pair {
            influxd,
            gridlog,
            _dir: dir,
        }
    }

    /// POSTs `body` to `path_and_query` of both: (InfluxDB's answer, gridlog's answer).
    fn post(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (Answer, Answer) {
        let influx = post_lines(
            &format!("{}{path_and_query}", self.influxd.base),
            headers,
            body,
        );
        let ours = post_lines(&self.gridlog.url(path_and_query), headers, body);
        (influx, ours)
    }
}

/// Same status; on an error, both a JSON `{"error": <text>}` body and an
/// `X-Influxdb-Error` header.
fn assert_same_shape(case: &str, influx: &Answer, ours: &Answer) {
    eprintln!("{case}:\n  influxdb {influx:?}\n  gridlog  {ours:?}");
    assert_eq!(
        influx.status, ours.status,
        "{case}: influxdb {influx:?}, gridlog {ours:?}"
    );
    if influx.status >= 400 {
        assert!(
            influx.body["error"].is_string(),
            "{case}: influxdb {influx:?}"
        );
        assert!(ours.body["error"].is_string(), "{case}: gridlog {ours:?}");
        assert!(ours.error_header.is_some(), "{case}: gridlog {ours:?}");
        assert_eq!(
            influx.error_header.is_some(),
            ours.error_header.is_some(),
            "{case}: influxdb {influx:?}"
        );
    } else {
        assert_eq!(influx.body, ours.body, "{case}");
    }
}

#[test]
fn gridlog_answers_line_protocol_as_influxdb_does() {
    let pair = Pair::start();
    let (influx, ours) = pair.post("/query?q=CREATE+DATABASE+%22gridlog%22", &[], b"");
    assert_same_shape("create database", &influx, &ours);
    assert_eq!(
        ours.body,
        serde_json::json!({"results": [{"statement_id": 0}]})
    );

    for method in ["GET", "HEAD"] {
        let influx = send(method, &format!("{}/ping", pair.influxd.base), &[], b"").unwrap();
        let ours = send(method, &pair.gridlog.url("/ping"), &[], b"").unwrap();
        assert_eq!((influx.status, ours.status), (204, 204), "{method}");
        let major = |a: &Answer| a.version_header.as_deref().map(|v| v[..2].to_string());
        assert_eq!(major(&influx), Some("1.".into()), "{method}: {influx:?}");
        assert_eq!(major(&ours), major(&influx), "{method}: {ours:?}");
        let ours_version = ours.version_header.as_deref().unwrap();
        assert!(ours_version.contains("+gridlog."), "{ours_version}");
        assert_eq!(influx.build_header.as_deref(), Some("OSS"));
        assert_eq!(ours.build_header.as_deref(), Some("gridlog"));
    }

    // Two hours back: the `h` precision below rounds a time up to the next full hour, which
    // must still lie in the past (an hour back failed in the minutes before a full hour).
    let t0 = unix_now() - 2 * 3_600;
    let mut stored = 0;
    // Plain, then gzip.
    let (influx, ours) = pair.post(
        "/write?db=gridlog&precision=s",
        &[],
        reading(t0, &t0.to_string()).as_bytes(),
    );
    assert_same_shape("plain", &influx, &ours);
    assert_eq!(ours.status, 204);
    stored += 1;
    let body = gzip(reading(t0 + 1, &(t0 + 1).to_string()).as_bytes());
    let (influx, ours) = pair.post(
        "/write?db=gridlog&precision=s",
        &[("Content-Encoding", "gzip")],
        &body,
    );
    assert_same_shape("gzip", &influx, &ours);
    assert_eq!(ours.status, 204);
    stored += 1;

    // Each precision, a different second each.
    for (i, (precision, per_second)) in [
        ("n", 1_000_000_000i64),
        ("ns", 1_000_000_000),
        ("u", 1_000_000),
        ("ms", 1_000),
        ("s", 1),
        ("m", 0),
        ("h", 0),
    ]
    .into_iter()
    .enumerate()
    {
        let t = t0 + 10 + i as i64 * 60;
        let stamp = match precision {
            "m" => (t / 60 + 1).to_string(),
            "h" => (t / 3_600 + 1).to_string(),
            _ => (t * per_second).to_string(),
        };
        let time_s = match precision {
            "m" => (t / 60 + 1) * 60,
            "h" => (t / 3_600 + 1) * 3_600,
            _ => t,
        };
        let (influx, ours) = pair.post(
            &format!("/write?db=gridlog&precision={precision}"),
            &[],
            reading(time_s, &stamp).as_bytes(),
        );
        assert_same_shape(precision, &influx, &ours);
        assert_eq!(ours.status, 204, "{precision}: {ours:?}");
    }

    // A malformed line between two good ones: 400, the good ones stored.
    let t = t0 + 1_000;
    let body = format!(
        "{}meter,id=m1\n{}",
        reading(t, &t.to_string()),
        reading(t + 1, &(t + 1).to_string())
    );
    let (influx, ours) = pair.post("/write?db=gridlog&precision=s", &[], body.as_bytes());
    assert_same_shape("malformed line", &influx, &ours);
    assert_eq!(ours.status, 400);
    let message = ours.body["error"].as_str().unwrap();
    assert!(message.starts_with("partial write: line 2"), "{message}");
    assert!(message.contains("missing field set"), "{message}");
    assert!(message.contains("2 stored"), "{message}");
    stored += 2;

    // A field type conflict within the body (a float, then an integer).
    let t = t0 + 2_000;
    let body = format!(
        "{}meter,id=m1 import_wh={}i,export_wh=0,power_w=50 {}\n",
        reading(t, &t.to_string()),
        1_000 + (t + 1) % 100_000,
        t + 1
    );
    let (influx, ours) = pair.post("/write?db=gridlog&precision=s", &[], body.as_bytes());
    assert_same_shape("type conflict", &influx, &ours);
    assert_eq!(ours.status, 400);
    let message = ours.body["error"].as_str().unwrap();
    assert!(message.contains("line 2 (field import_wh)"), "{message}");
    assert!(message.contains("field type conflict"), "{message}");
    assert!(
        ours.error_header.as_deref().unwrap().contains("line 2"),
        "{ours:?}"
    );
    stored += 1;

    // An empty body, and a write without db.
    let (influx, ours) = pair.post("/write?db=gridlog", &[], b"");
    assert_same_shape("empty body", &influx, &ours);
    let (influx, ours) = pair.post(
        "/write",
        &[],
        reading(t0 + 3_000, &(t0 + 3_000).to_string()).as_bytes(),
    );
    assert_same_shape("missing db", &influx, &ours);
    assert_eq!(ours.body["error"], Value::from("database is required"));

    // Malformed query strings: influxd drops a pair with a bad escape or a `;`, so `db`
    // is missing, or `precision` is the default (nanoseconds).
    for query in [
        "/write?db=%zz",
        "/write?db=gridlog;x=1",
        "/write?db=gridlog%2",
    ] {
        let body = reading(t0 + 3_001, &(t0 + 3_001).to_string());
        let (influx, ours) = pair.post(query, &[], body.as_bytes());
        assert_same_shape(query, &influx, &ours);
        assert_eq!(
            ours.body["error"],
            Value::from("database is required"),
            "{query}"
        );
    }
    let ns = format!("{}000000000", t0 + 3_002);
    let (influx, ours) = pair.post(
        "/write?db=gridlog&precision=%zz",
        &[],
        reading(t0 + 3_002, &ns).as_bytes(),
    );
    assert_same_shape("malformed precision pair", &influx, &ours);
    assert_eq!(ours.status, 204, "{ours:?}");
    stored += 1;
    // Deliberately stricter than influxd 1.6 (which ignores an unknown precision and reads
    // nanoseconds): 400 in InfluxDB's shape, nothing stored.
    let ours = post_lines(
        &pair.gridlog.url("/write?db=gridlog&precision=xx"),
        &[],
        reading(t0 + 3_003, &(t0 + 3_003).to_string()).as_bytes(),
    );
    assert_eq!(ours.status, 400, "{ours:?}");
    assert!(
        ours.body["error"].as_str().unwrap().contains("precision"),
        "{ours:?}"
    );
    assert!(ours.error_header.is_some(), "{ours:?}");

    // gzip that is not gzip.
    let (influx, ours) = pair.post(
        "/write?db=gridlog",
        &[("Content-Encoding", "gzip")],
        b"meter v=1",
    );
    assert_same_shape("not gzip", &influx, &ours);

    let readings = stored_readings(&pair.gridlog, "m1");
    assert_eq!(readings.len(), stored + 7, "{readings:?}");
}
