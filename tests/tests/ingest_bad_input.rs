//! Bad line protocol input over HTTP: each a clear error, nothing stored wrongly, and the
//! gateway keeps running. A gzip bomb stops at `ingest.body_bytes_max`; too many lines or
//! too large a body is 413 with nothing stored; a huge line, NaN, a string where a number
//! belongs, a bad escape are 400 naming the line while the good lines are stored; a unit
//! mistake still meets the engine's counter rule; unmapped measurements are counted; a
//! page of another origin cannot post line protocol.

mod ingest_support;

use gridlog_tests::server::{get, post_raw, unix_now, Server};
use ingest_support::{gzip, post_lines, send, stored_readings};

const CONFIG: &str = r#"
[engine]
auto_register = "grid"

[http]
body_bytes_max = 262144

[ingest]
body_bytes_max = 1048576
lines_max = 50

[[ingest.mapping]]
measurement = "sml"
target = "meter"
id = "{host}-{device}"
fields.import_wh = { source = "total_in", unit = "Wh" }   # the register is in kWh: a mistake
fields.export_wh = { source = "total_out", unit = "kWh" }
fields.power_w = { source = "p", unit = "kW" }
"#;

fn readings(server: &Server, meter: &str) -> usize {
    stored_readings(server, meter).len()
}

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gridlog.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        "serve",
        &[],
        &[("GRIDLOG_CONFIG", config.to_str().unwrap())],
    );
    (dir, server)
}

/// Sends only the head of a line protocol POST announcing `length` body bytes and returns the
/// status line of the answer.
fn head_only(server: &Server, path: &str, length: usize) -> String {
    use std::io::{BufRead as _, Write as _};
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("send the head");
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .expect("read the status line");
    line
}

#[test]
fn oversized_bodies_are_413_and_store_nothing() {
    let (_dir, server) = start();
    let write = server.url("/write?db=x&precision=s");
    let t = unix_now() - 600;
    // A gzip bomb: 64 MiB inflated from well under http.body_bytes_max, refused at 1 MiB.
    let bomb = gzip(&vec![b'#'; 64 * 1024 * 1024]);
    assert!(bomb.len() < 262_144, "{}", bomb.len());
    let a = post_lines(&write, &[("Content-Encoding", "gzip")], &bomb);
    assert_eq!(a.status, 413, "{a:?}");
    let message = a.body["error"].as_str().unwrap();
    assert!(message.contains("ingest.body_bytes_max"), "{message}");
    // Over http.body_bytes_max as sent: refused on its Content-Length alone, before any of
    // it arrives. (Sending the body too would race the server's close after its 413: a
    // client still writing may see a reset instead of the answer.)
    let status_line = head_only(&server, "/write?db=x&precision=s", 300_000);
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    // More lines than ingest.lines_max.
    let many: String = (0..51)
        .map(|i| {
            format!(
                "meter,id=many import_wh={i},export_wh=0,power_w=0 {}\n",
                t + i
            )
        })
        .collect();
    let a = post_lines(&write, &[], many.as_bytes());
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.error_header.unwrap().contains("ingest.lines_max"));
    let (status, _) = get(&server.url("/api/v1/meters/many"));
    assert_eq!(status, 404, "nothing of a 413 body is stored");
    // Not gzip at all, and an unknown encoding.
    let a = post_lines(&write, &[("Content-Encoding", "gzip")], b"meter,id=x v=1");
    assert_eq!(a.status, 400, "{a:?}");
    let a = post_lines(&write, &[("Content-Encoding", "br")], b"meter,id=x v=1");
    assert_eq!(a.status, 415, "{a:?}");
    let (status, _) = get(&server.url("/healthz"));
    assert_eq!(status, 200);
}

#[test]
fn bad_lines_are_named_and_good_lines_stored() {
    let (_dir, server) = start();
    let t = unix_now() - 600;
    let body = format!(
        "meter,id=ok import_wh=1,export_wh=0,power_w=0 {t}\n\
         meter,id=ok import_wh=\"{huge}\"\n\
         meter,id=ok import_wh=NaN,export_wh=0,power_w=0 {t1}\n\
         meter,id=ok import_wh=\"x\",export_wh=0,power_w=0 {t2}\n\
         meter,id=ok import_wh=2,export_wh=0,power_w=0 {t3} \\\n\
         meter,id=ok import_wh=3,export_wh=0,power_w=0 {t4}\n",
        huge = "x".repeat(70_000),
        t1 = t + 1,
        t2 = t + 2,
        t3 = t + 3,
        t4 = t + 4,
    );
    let a = post_lines(&server.url("/write?db=x&precision=s"), &[], body.as_bytes());
    assert_eq!(a.status, 400, "{a:?}");
    let message = a.body["error"].as_str().unwrap();
    assert!(
        message.starts_with("partial write: line 2: the line is "),
        "{message}"
    );
    assert!(message.contains("3 more lines refused"), "{message}");
    assert!(message.contains("of 6 lines 2 stored"), "{message}");
    assert_eq!(readings(&server, "ok"), 2);

    // v2's shape: {"code":"invalid","message":…}.
    let a = post_lines(
        &server.url("/api/v2/write?org=o&bucket=b&precision=s"),
        &[],
        format!("meter,id=ok import_wh=4,export_wh=0 {}\n", t + 5).as_bytes(),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.body["code"], "invalid", "{a:?}");
    let message = a.body["message"].as_str().unwrap();
    assert!(message.contains("line 1 (field power_w)"), "{message}");
    let a = post_lines(&server.url("/api/v2/write?org=o"), &[], b"");
    assert_eq!(
        (a.status, a.body["message"].as_str()),
        (400, Some("bucket is required"))
    );
}

#[test]
fn a_unit_mistake_meets_the_engines_counter_rule() {
    let (_dir, server) = start();
    let write = server.url("/write?db=x&precision=s");
    let t = unix_now() - 600;
    // The meter's reading in Wh through the default mapping, then the same register in kWh
    // mapped as Wh: 1000x too small, so the register went down: the engine refuses it.
    let a = post_lines(
        &write,
        &[],
        format!("meter,id=gw-main import_wh=12500,export_wh=0,power_w=0 {t}\n").as_bytes(),
    );
    assert_eq!(a.status, 204, "{a:?}");
    let a = post_lines(
        &write,
        &[],
        format!(
            "sml,host=gw,device=main total_in=12.6,total_out=0,p=1.5 {}\n",
            t + 60
        )
        .as_bytes(),
    );
    assert_eq!(a.status, 400, "{a:?}");
    let message = a.body["error"].as_str().unwrap();
    assert!(message.contains("line 1 (field import_wh)"), "{message}");
    assert!(
        message.contains("rejected (register_decreased)"),
        "{message}"
    );
    assert_eq!(readings(&server, "gw-main"), 1);
    // Unmapped measurements: counted, not an error.
    let a = post_lines(&write, &[], b"cpu,host=gw usage_idle=99.5\nmem used=1i\n");
    assert_eq!(a.status, 204, "{a:?}");
    let (_, status) = get(&server.url("/api/v1/status"));
    assert_eq!(status["ingest"]["lines_unmapped"], 2, "{status}");
    assert_eq!(
        status["ingest"]["unmapped_measurements"],
        serde_json::json!(["cpu", "mem"])
    );
    let metrics = send("GET", &server.url("/metrics"), &[], b"").unwrap();
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("gridlog_ingest_lines_unmapped_total 2"),
        "{text}"
    );
}

#[test]
fn a_foreign_page_cannot_post_line_protocol_but_telegraf_can() {
    let (_dir, server) = start();
    let t = unix_now() - 600;
    let line = format!("meter,id=x1 import_wh=1,export_wh=0,power_w=0 {t}\n");
    let write = server.url("/write?db=x&precision=s");
    let a = post_lines(
        &write,
        &[("Origin", "http://evil.example")],
        line.as_bytes(),
    );
    assert_eq!(a.status, 403, "{a:?}");
    let a = post_lines(&write, &[("Sec-Fetch-Site", "cross-site")], line.as_bytes());
    assert_eq!(a.status, 403, "{a:?}");
    let (status, _) = get(&server.url("/api/v1/meters/x1"));
    assert_eq!(status, 404);
    // Telegraf's text/plain is accepted on /write; the JSON API still wants JSON.
    let a = post_lines(&write, &[], line.as_bytes());
    assert_eq!(a.status, 204, "{a:?}");
    let (status, body) = post_raw(
        &server.url("/api/v1/readings"),
        "text/plain; charset=utf-8",
        &[],
        b"{}",
    );
    assert_eq!(status, 415, "{body}");
}
