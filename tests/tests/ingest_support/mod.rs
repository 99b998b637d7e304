//! Line protocol tests' plumbing: a client that keeps answer headers, gzip, a client that
//! behaves like Telegraf's outputs; `influxd` itself is in `gridlog_tests::influxd`.

#![allow(dead_code)] // each test file uses a part

use std::io::Write as _;
use std::time::Duration;

use gridlog_tests::server::Server;
use serde_json::Value;

/// An answer with the headers line protocol clients read.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The body as JSON (a JSON string if it is not JSON; null if empty).
    pub body: Value,
    /// `X-Influxdb-Error`.
    pub error_header: Option<String>,
    /// `X-Influxdb-Version`.
    pub version_header: Option<String>,
    /// `X-Influxdb-Build`.
    pub build_header: Option<String>,
    /// `Retry-After`.
    pub retry_after: Option<String>,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

fn answer(response: ureq::Response) -> Answer {
    let status = response.status();
    let header = |name: &str| response.header(name).map(str::to_string);
    let (error_header, version_header, build_header, retry_after) = (
        header("x-influxdb-error"),
        header("x-influxdb-version"),
        header("x-influxdb-build"),
        header("retry-after"),
    );
    let text = response.into_string().unwrap_or_default();
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        body,
        error_header,
        version_header,
        build_header,
        retry_after,
    }
}

/// Sends `method url` with `headers` and `body`; transport errors are `Err`.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, String> {
    let mut request = agent().request(method, url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    match request.send_bytes(body) {
        Ok(r) => Ok(answer(r)),
        Err(ureq::Error::Status(_, r)) => Ok(answer(r)),
        Err(e) => Err(e.to_string()),
    }
}

/// POSTs line protocol as Telegraf does (`text/plain; charset=utf-8`).
pub fn post_lines(url: &str, extra: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut headers = vec![("Content-Type", "text/plain; charset=utf-8")];
    headers.extend_from_slice(extra);
    send("POST", url, &headers, body).unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// Gzips `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Which of Telegraf's InfluxDB outputs a [`TelegrafLike`] client behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `[[outputs.influxdb]]`: `CREATE DATABASE` at start, `/write?db=`, Basic auth.
    V1,
    /// `[[outputs.influxdb_v2]]`: `/api/v2/write?org=&bucket=`, `Authorization: Token`.
    V2,
}

/// What became of one batch.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// 2xx, after this many 5xx answers (each retried with the same body).
    Stored {
        /// 5xx answers before.
        retries: usize,
    },
    /// A 4xx: dropped, as Telegraf does.
    Dropped(Answer),
}

/// Most attempts at one batch before the test gives up (Telegraf keeps a batch in its
/// buffer for as long as it must; a test must end).
pub const ATTEMPTS_MAX: usize = 10_000;

/// A client that behaves as Telegraf's InfluxDB outputs do: gzip, retry the same body on
/// 5xx (and on a cut connection), drop it on 4xx.
pub struct TelegrafLike {
    /// `http://host:port`.
    pub base: String,
    /// Which output.
    pub output: Output,
    /// The token (v1: the password).
    pub token: String,
}

impl TelegrafLike {
    /// What Telegraf does when it connects: v1 creates its database.
    pub fn connect(&self) {
        if self.output == Output::V1 {
            let url = format!("{}/query?q=CREATE+DATABASE+%22telegraf%22", self.base);
            let auth = self.auth();
            // Retried while the server is busy (Telegraf logs the failure and tries again).
            for _ in 0..ATTEMPTS_MAX {
                match send("POST", &url, &[auth_header(&auth)], b"") {
                    Ok(a) if a.status == 200 => return,
                    Ok(a) if a.status < 500 => panic!("CREATE DATABASE: {a:?}"),
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            panic!("CREATE DATABASE was not answered after {ATTEMPTS_MAX} attempts");
        }
    }

    fn auth(&self) -> String {
        match self.output {
            Output::V1 => {
                use base64::Engine as _;
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("telegraf:{}", self.token));
                format!("Basic {basic}")
            }
            Output::V2 => format!("Token {}", self.token),
        }
    }

    /// Writes one batch (line protocol, precision s) until it is stored or dropped.
    pub fn write(&self, lines: &str) -> Delivery {
        let url = match self.output {
            Output::V1 => format!("{}/write?db=telegraf&rp=&precision=s", self.base),
            Output::V2 => format!(
                "{}/api/v2/write?org=site&bucket=telegraf&precision=s",
                self.base
            ),
        };
        let body = gzip(lines.as_bytes());
        let auth = self.auth();
        let headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Encoding", "gzip"),
            ("User-Agent", "Telegraf/1.30"),
            auth_header(&auth),
        ];
        for retries in 0..ATTEMPTS_MAX {
            match send("POST", &url, &headers, &body) {
                Ok(a) if (200..300).contains(&a.status) => return Delivery::Stored { retries },
                Ok(a) if (400..500).contains(&a.status) => return Delivery::Dropped(a),
                // 5xx or a transport error: the same body again, after a short pause.
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        panic!("a batch was not accepted after {ATTEMPTS_MAX} attempts");
    }
}

fn auth_header(value: &str) -> (&'static str, &str) {
    ("Authorization", value)
}

/// The `data` of every `reading_recorded` event of `meter`, oldest first, read through the
/// API (at most the first 10,000 events of the meter).
pub fn stored_readings(gridlog: &Server, meter: &str) -> Vec<Value> {
    let (status, events) = gridlog.get(&format!("/api/v1/entities/{meter}/events?limit=10000"));
    assert_eq!(status, 200, "{events}");
    events["events"]
        .as_array()
        .expect("an events array")
        .iter()
        .filter(|e| e["type"] == "reading_recorded")
        .map(|e| e["data"].clone())
        .collect()
}
