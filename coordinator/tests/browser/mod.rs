//! A real headless browser for the dashboard's tests: Debian's `chromium` driven over
//! WebDriver (`chromedriver`, `fantoccini`). Shared by `coordinator/tests/dashboard.rs`
//! and the root crate's `tests/farm_dashboard.rs` (included with `#[path]`).

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a page may take to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(60);

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// chromium and chromedriver, when installed. When they are not, `None` after printing
/// SKIPPED, unless `CI` or `TESSERA_REQUIRE_BROKER=1` is set: then it panics.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    match (
        on_path("chromium").or_else(|| on_path("chromium-browser")),
        on_path("chromedriver"),
    ) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var("TESSERA_REQUIRE_BROKER").as_deref() == Ok("1");
            assert!(
                !required,
                "the dashboard browser tests need chromium and chromedriver (apt-get install -y chromium chromium-driver)"
            );
            eprintln!("SKIPPED: chromium or chromedriver not installed");
            None
        }
    }
}

/// A headless chromium session; its chromedriver ends when this is dropped.
pub struct Browser {
    /// The WebDriver session.
    pub c: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Start chromedriver on a free port and open a headless chromium session.
    pub async fn open((chromium, chromedriver): &(PathBuf, PathBuf)) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"],
            }
        }))
        .unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        let c = loop {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver on port {port}: {e}"),
            }
        };
        Browser { c, driver }
    }

    /// Poll until `css` matches a number of elements that `ok` accepts, or fail naming
    /// `what` after [`WAIT`].
    pub async fn wait_for(&self, css: &str, what: &str, ok: impl Fn(usize) -> bool) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let n = self.c.find_all(Locator::Css(css)).await.unwrap().len();
            if ok(n) {
                return n;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {css} matched {n} elements; page: {}",
                self.c.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Log in to the dashboard at `base` with `token`.
    pub async fn log_in(&self, base: &str, token: &str) {
        self.c.goto(&format!("{base}/ui/login")).await.unwrap();
        self.c
            .find(Locator::Css("#token"))
            .await
            .unwrap()
            .send_keys(token)
            .await
            .unwrap();
        self.c
            .find(Locator::Css("form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for("#jobs-table", "the jobs list after login", |n| n == 1)
            .await;
    }

    /// Log out with the page's button.
    pub async fn log_out(&self) {
        self.c
            .find(Locator::Css("nav.top form button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for("#token", "the login page after logout", |n| n == 1)
            .await;
    }
}
