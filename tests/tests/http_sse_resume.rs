//! The live stream under concurrent writes: a client reads part of the stream, disconnects,
//! reconnects with Last-Event-ID, and in the end has every event exactly once, in order.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use gridlog_tests::server::{get, post, Server};
use serde_json::json;

/// The blocks of an SSE stream as (id, data), each either absent, until `deadline` or the
/// stream's end (heartbeats, comments alone, are skipped).
fn sse_blocks(
    url: &str,
    last_event_id: Option<u64>,
    deadline: Instant,
) -> impl Iterator<Item = (Option<u64>, Option<serde_json::Value>)> {
    let mut request = ureq::get(url);
    if let Some(id) = last_event_id {
        request = request.set("Last-Event-ID", &id.to_string());
    }
    let response = request.call().expect("stream");
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let mut reader = BufReader::new(response.into_reader());
    let mut line = String::new();
    std::iter::from_fn(move || {
        let (mut id, mut data) = (None, None);
        while Instant::now() < deadline {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return None;
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = l.strip_prefix("id:") {
                id = Some(v.trim().parse::<u64>().unwrap());
            } else if let Some(v) = l.strip_prefix("data:") {
                data = Some(serde_json::from_str(v.trim()).unwrap());
            } else if l.is_empty() && (id.is_some() || data.is_some()) {
                return Some((id, data));
            }
        }
        None
    })
}

/// Reads SSE events (id, data) until `want` events or `deadline`.
fn read_events(
    url: &str,
    last_event_id: Option<u64>,
    want: usize,
    deadline: Instant,
) -> Vec<(u64, serde_json::Value)> {
    sse_blocks(url, last_event_id, deadline)
        .filter_map(|(id, data)| Some((id?, data?)))
        .take(want)
        .collect()
}

fn register(server: &Server, meter: &str) {
    let (status, body) = post(
        &server.url("/api/v1/meters"),
        &json!({"id": meter, "kind": "submeter"}),
    );
    assert_eq!(status, 201, "{body}");
}

fn post_reading(server: &Server, meter: &str, second: i64) {
    let (status, body) = post(
        &server.url("/api/v1/readings"),
        &json!({"readings": [{"meter": meter, "time": format!("2023-11-14T22:00:{second:02}Z"),
            "import_wh": second as f64, "export_wh": 0.0, "power_w": 10.0}]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
}

/// A filtered stream opened at "now" tells the client its position at once and keeps it
/// current while the filter skips events, so a reconnect with the browser's Last-Event-ID
/// neither misses the events committed in between nor replays the skipped ones.
#[test]
fn a_filtered_stream_keeps_the_clients_resume_point_current() {
    let server = Server::start(&[]);
    register(&server, "mine");
    register(&server, "other");
    let at_connect = get(&server.url("/api/v1/status")).1["last_offset"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut blocks = sse_blocks(&server.url("/api/v1/stream?entity=mine"), None, deadline);
    assert_eq!(
        blocks.next(),
        Some((Some(at_connect), None)),
        "the position first"
    );
    post_reading(&server, "other", 1);
    post_reading(&server, "other", 2);
    let skipped_to = get(&server.url("/api/v1/status")).1["last_offset"]
        .as_u64()
        .unwrap();
    // One update, or two if the pump's poll ended between the two readings.
    let mut id = None;
    while id != Some(skipped_to) {
        let (next, data) = blocks.next().expect("a position update");
        assert_eq!(data, None, "no event of another entity");
        assert!(
            next > id && next <= Some(skipped_to),
            "{next:?} after {id:?}"
        );
        id = next;
    }
    drop(blocks);
    // Disconnected: the next event of "mine" is what the reconnect gets first.
    post_reading(&server, "mine", 3);
    let got = read_events(&server.url("/api/v1/stream?entity=mine"), id, 1, deadline);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, skipped_to + 1);
    assert_eq!(got[0].1["entity"], "mine");
}

#[test]
fn resume_with_last_event_id_under_concurrent_writes_has_no_gap_and_no_duplicate() {
    let server = Server::start(&[]);
    for m in 0..4 {
        assert_eq!(
            post(
                &server.url("/api/v1/meters"),
                &json!({"id": format!("m{m}"), "kind": "submeter"})
            )
            .0,
            201
        );
    }
    let writers: Vec<_> = (0..4)
        .map(|m| {
            let url = server.url("/api/v1/readings");
            std::thread::spawn(move || {
                let base = 1_700_000_000i64;
                for i in 0..60i64 {
                    let readings: Vec<_> = (0..5)
                        .map(|j| {
                            let t = base + i * 5 + j;
                            json!({"meter": format!("m{m}"), "time": format!("2023-11-14T22:{:02}:{:02}Z", (t - base) / 60 % 60, (t - base) % 60),
                                   "import_wh": (i * 5 + j) as f64, "export_wh": 0.0, "power_w": 10.0})
                        })
                        .collect();
                    let (s, b) = post(&url, &json!({"readings": readings}));
                    assert_eq!(s, 200, "{b}");
                    assert_eq!(b["accepted"], 5, "{b}");
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        })
        .collect();
    let stream = server.url("/api/v1/stream?after=0");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = read_events(&stream, None, 150, deadline);
    assert_eq!(got.len(), 150, "first connection got too few events");
    let mut last = got.last().unwrap().0;
    // Reconnect twice more, mid-stream, resuming after the last id seen.
    let more = read_events(&server.url("/api/v1/stream"), Some(last), 300, deadline);
    last = more.last().unwrap().0;
    got.extend(more);
    for w in writers {
        w.join().unwrap();
    }
    let total = get(&server.url("/api/v1/status")).1["last_offset"]
        .as_u64()
        .unwrap();
    let rest = read_events(
        &server.url("/api/v1/stream"),
        Some(last),
        (total - last) as usize,
        deadline,
    );
    got.extend(rest);
    let ids: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        ids,
        (1..=total).collect::<Vec<_>>(),
        "stream has gaps or duplicates"
    );
    for (id, data) in &got {
        assert_eq!(data["offset"].as_u64(), Some(*id));
    }
}

/// A Last-Event-ID past the end of the log (a client of a gateway whose data directory was
/// started anew) follows from now, and the first block says where that is.
#[test]
fn a_resume_point_past_the_log_follows_from_now() {
    let server = Server::start(&[]);
    register(&server, "mine");
    let last = get(&server.url("/api/v1/status")).1["last_offset"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut blocks = sse_blocks(&server.url("/api/v1/stream"), Some(99_999_999), deadline);
    assert_eq!(blocks.next(), Some((Some(last), None)));
    post_reading(&server, "mine", 1);
    let (id, data) = blocks.next().expect("the new event");
    assert_eq!(id, Some(last + 1));
    assert_eq!(data.unwrap()["entity"], "mine");
}
