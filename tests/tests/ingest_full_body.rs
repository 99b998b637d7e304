//! A line protocol body at the documented limit (`ingest.lines_max`, 10,000 lines) whose
//! events do not fit one log frame (1 MiB): long meter ids, every optional field, meters
//! registered on their first reading. Its lines are independent writes, so the gateway
//! stores it as several engine requests and answers 204 — never 400 for the whole batch,
//! which Telegraf would drop. A retry of the same body stores nothing twice.

mod ingest_support;

use gridlog_tests::server::{unix_now, Server};
use ingest_support::{gzip, post_lines, stored_readings};

const METERS: usize = 100;
const READINGS_PER_METER: usize = 100;

/// A 64-byte id (`ID_BYTES_MAX`), as long as ids get.
fn meter_id(meter: usize) -> String {
    let id = format!("site-0042:building-3:main-distribution-board-west:meter-{meter:05}");
    assert!(id.len() <= 64, "{id}");
    format!("{id:x<64}")
}

#[test]
fn a_body_of_ten_thousand_lines_larger_than_a_log_frame_is_stored_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "serve",
        &[],
        &[("GRIDLOG_ENGINE__AUTO_REGISTER", "grid")],
    );
    let t0 = unix_now() - 2 * 3_600;
    let mut body = String::new();
    for reading in 0..READINGS_PER_METER {
        for meter in 0..METERS {
            body.push_str(&format!(
                "meter,id={} import_wh={}.5,export_wh={}.25,power_w=-1830.5,voltage_v=230.5,\
                 current_a=7.9,reactive_power_var=120.5 {}\n",
                meter_id(meter),
                1_000 + reading,
                2_000 + reading,
                t0 + reading as i64,
            ));
        }
    }
    let lines = METERS * READINGS_PER_METER;
    assert_eq!(lines, 10_000, "the default ingest.lines_max");
    // Telegraf gzips its bodies; inflated, this one is well over one log frame.
    assert!(body.len() > 1_500_000, "{}", body.len());
    let body = gzip(body.as_bytes());
    let write = server.url("/write?db=site&precision=s");

    let answer = post_lines(&write, &[("Content-Encoding", "gzip")], &body);
    assert_eq!(answer.status, 204, "{answer:?}");
    for meter in [0, METERS / 2, METERS - 1] {
        let stored = stored_readings(&server, &meter_id(meter));
        assert_eq!(stored.len(), READINGS_PER_METER, "meter {meter}");
        assert_eq!(stored[0]["import_wh"], 1_000.5);
        assert_eq!(stored[READINGS_PER_METER - 1]["voltage_v"], 230.5);
    }
    let (_, status) = server.get("/api/v1/status");
    let accepted = status["commands"]["accepted"].as_u64().expect("accepted");
    assert!(accepted >= lines as u64, "{status}");

    // Telegraf retrying the same body: every line a duplicate, nothing stored twice.
    let answer = post_lines(&write, &[("Content-Encoding", "gzip")], &body);
    assert_eq!(answer.status, 204, "{answer:?}");
    let (_, status) = server.get("/api/v1/status");
    assert_eq!(status["commands"]["accepted"], accepted, "{status}");
    assert_eq!(status["commands"]["duplicates"], lines as u64, "{status}");
}
