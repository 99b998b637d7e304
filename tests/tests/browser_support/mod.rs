//! Shared by the browser tests: Debian's headless Chromium driven over WebDriver by
//! `fantoccini`, through a `chromedriver` started on a free loopback port (and stopped with
//! every browser it started), and small helpers to run scripts in the page.
//!
//! Chromium and chromedriver must be installed (`scripts/test.sh` installs Debian's
//! `chromium` and `chromium-driver`); without them a browser test fails, it does not skip.

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use futures_util::FutureExt;
use gridlog_tests::kill::signal_group;
use serde_json::{json, Value};

/// Longest wait for anything the page should show by itself.
pub const WAIT: Duration = Duration::from_secs(30);
/// A desktop browser window.
pub const DESKTOP: (u32, u32) = (1280, 900);

/// Runs a check, catching its panic so the browser session can be closed before the test
/// fails (a session left open leaves a Chromium running).
pub async fn run<T>(
    check: impl Future<Output = T>,
) -> Result<T, Box<dyn std::any::Any + Send + 'static>> {
    std::panic::AssertUnwindSafe(check).catch_unwind().await
}

/// Runs `check` in a new desktop browser of `driver` on a runtime of its own, and closes the
/// browser before passing on a failure of `check`.
pub fn in_desktop_browser<F, Fut>(driver: &ChromeDriver, chromium: &Path, check: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let c = driver.session(chromium, None).await;
        let outcome = run(check(c.clone())).await;
        let _ = c.close().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Runs `script` (a function body) in the page and returns its result.
pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Polls `script` until it returns something other than null/false; returns that.
pub async fn wait_js(c: &Client, script: &str, timeout: Duration, what: &str) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = js(c, script).await;
        if !(v.is_null() || v == Value::Bool(false)) {
            return v;
        }
        if Instant::now() >= deadline {
            let state = js(c, "return [location.hash, document.querySelector('#conn').textContent, document.querySelector('.view:not([hidden])').innerText.slice(0, 600)]").await;
            panic!("timed out after {timeout:?} waiting for {what}; page: {state}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `chromedriver`, started on a free loopback port in its own process group, so that
/// stopping it also stops every browser it started.
pub struct ChromeDriver {
    child: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl ChromeDriver {
    pub fn start(path: &Path, artifacts: &Path) -> ChromeDriver {
        let port = gridlog_tests::free_port();
        let log = std::fs::File::create(artifacts.join("chromedriver.log")).expect("log file");
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = ureq::get(&format!("{url}/status")).call() {
                let v: Value = r.into_json().unwrap_or_default();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready on {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ChromeDriver {
            child,
            url,
            profiles: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A new browser with a fresh profile; `mobile`: a phone's viewport (touch, device
    /// pixel ratio, `<meta name=viewport>` honoured).
    pub async fn session(&self, chromium: &Path, mobile: Option<(u32, u32)>) -> Client {
        let profile = tempfile::tempdir_in(self.profiles.path())
            .expect("profile dir")
            .keep();
        let mut options = json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars",
                format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        if let Some((w, h)) = mobile {
            options["mobileEmulation"] = json!({"deviceMetrics": {"width": w, "height": h, "pixelRatio": 2, "mobile": true, "touch": true}});
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("start a Chromium session through chromedriver: {e}"))
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let group = self.child.id();
        signal_group(group, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(group, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The path of `name` on PATH; the test fails (never skips) without it.
pub fn executable(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: the dashboard's browser test needs Debian's chromium and chromium-driver (scripts/test.sh installs them)")
        })
}
