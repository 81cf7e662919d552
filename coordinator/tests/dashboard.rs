//! The dashboard in a real headless browser (Debian's `chromium` and `chromedriver`,
//! driven over WebDriver by `fantoccini`): a client logs in, watches a job's tile grid
//! change state live (Server-Sent Events) while the job renders, fails a cheater,
//! re-renders and verifies, cancels another job with the page's button, and a second
//! client cannot see the first one's job. Screenshots of the job page are written to
//! `target/dashboard/`.
//!
//! The coordinator is the daemon's router (API and dashboard) served on a local port in
//! this process, over the store of a test farm whose nodes and verifier are stand-ins
//! driven with virtual time (as in `web.rs`), so the test needs no broker. Without
//! chromium and chromedriver it prints SKIPPED and passes, unless `CI` or
//! `TESSERA_REQUIRE_BROKER=1` is set: then it fails.

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tessera_coordinator::daemon::web::standalone;
use tessera_coordinator::daemon::DaemonConfig;

const STUDIO: &str = "tok-studio";
const RIVAL: &str = "tok-rival";
/// How long a page may take to show what the test waits for.
const WAIT: Duration = Duration::from_secs(30);

/// `name` on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// chromedriver, ended when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll until `css` matches a number of elements that `ok` accepts, or fail naming
/// `what` after [`WAIT`].
async fn wait_for(c: &Client, css: &str, what: &str, ok: impl Fn(usize) -> bool) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = c.find_all(Locator::Css(css)).await.unwrap().len();
        if ok(n) {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {css} matched {n} elements; page: {}",
            c.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "#jobs-table", "the jobs list after login", |n| n == 1).await;
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("dashboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_studio_watches_its_job_fill_in_live_cancels_another_and_a_rival_sees_neither() {
    let (Some(chromium), Some(chromedriver)) = (
        on_path("chromium").or_else(|| on_path("chromium-browser")),
        on_path("chromedriver"),
    ) else {
        let required = std::env::var_os("CI").is_some()
            || std::env::var("TESSERA_REQUIRE_BROKER").as_deref() == Ok("1");
        assert!(
            !required,
            "the dashboard browser test needs chromium and chromedriver (apt-get install -y chromium chromium-driver)"
        );
        eprintln!("SKIPPED: chromium or chromedriver not installed");
        return;
    };

    // The farm: a cheating node, an honest one, a verifier; two jobs of the studio.
    let f = Farm::new();
    let (cheat_key, honest_key) = (key(1), key(3));
    f.register(&cheat_key, "node");
    f.register(&honest_key, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let other = f.submit();
    let ts: Vec<RenderTask> = tasks(&f.drain())
        .into_iter()
        .filter(|t| hex::encode(t.job_id) == job)
        .collect();

    // The coordinator's router on a local port, over the farm's store.
    let svc = Service::new(
        Store::open(&f.db).unwrap(),
        SecretKey::from_seed(&f.coordinator_seed),
        f.svc.config().clone(),
    );
    let cfg = DaemonConfig {
        api_tokens: vec![format!("studio={STUDIO}"), format!("rival={RIVAL}")],
        data_dir: f._dir.path().to_path_buf(),
        ..DaemonConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = standalone(svc, &cfg);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The browser.
    let port = free_port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("chromedriver on port {port}: {e}"),
        }
    };

    log_in(&c, &base, STUDIO).await;
    let list = c.source().await.unwrap();
    assert!(list.contains(&job[..12]) && list.contains(&other[..12]));

    // The job page: six queued tiles in frame 0.
    c.goto(&format!("{base}/ui/jobs/{job}")).await.unwrap();
    wait_for(
        &c,
        "#tile-grid .tile[data-phase=queued]",
        "queued tiles",
        |n| n == 6,
    )
    .await;

    // The cheater takes a lease: its tiles turn to rendering (a lease is no event: the
    // page looks again every few seconds while the job runs).
    let frame0: Vec<&RenderTask> = ts.iter().filter(|t| t.frame == 0).collect();
    let first = frame0[0];
    f.svc
        .handle_signal(&f.signal(&cheat_key, &[first.task_id.as_str()], &[]), f.now)
        .unwrap();
    wait_for(
        &c,
        "#tile-grid .tile[data-phase=rendering]",
        "rendering tiles",
        |n| n == 2,
    )
    .await;

    // Every result comes in: delivered, then the round's verdicts: the cheater fails and
    // its tiles go to round 1, the rest verified.
    let (cheat, honest) = (
        f.node(&cheat_key, Some(DishonestMode::Black)),
        f.node(&honest_key, None),
    );
    f.svc
        .handle_result(&result_body(&cheat, first), f.now)
        .unwrap();
    for t in ts.iter().filter(|t| t.task_id != first.task_id) {
        f.svc
            .handle_result(&result_body(&honest, t), f.now)
            .unwrap();
    }
    wait_for(
        &c,
        "#tile-grid .tile[data-phase=delivered]",
        "delivered tiles",
        |n| n == 6,
    )
    .await;
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    wait_for(
        &c,
        "#tile-grid .tile[data-phase=verified]",
        "verified tiles",
        |n| n == 4,
    )
    .await;
    wait_for(
        &c,
        "#tile-grid .tile[data-round='1']",
        "tiles re-rendered in round 1",
        |n| n == 2,
    )
    .await;
    wait_for(
        &c,
        "span.decision.fail",
        "the cheater's failed verdict",
        |n| n >= 1,
    )
    .await;
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("job-round1.png"), c.screenshot().await.unwrap()).unwrap();

    // Round 1 by the honest node: every tile verified, the job done.
    let round1: Vec<RenderTask> = tasks(&f.drain())
        .into_iter()
        .filter(|t| hex::encode(t.job_id) == job)
        .collect();
    for t in &round1 {
        f.svc
            .handle_result(&result_body(&honest, t), f.now)
            .unwrap();
    }
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    wait_for(
        &c,
        "#tile-grid .tile[data-phase=verified]",
        "all verified",
        |n| n == 6,
    )
    .await;
    wait_for(&c, "#job-state.done", "the job done", |n| n == 1).await;
    wait_for(
        &c,
        "a[href$='download/bundle.json']",
        "the bundle's link",
        |n| n == 1,
    )
    .await;
    std::fs::write(dir.join("job.png"), c.screenshot().await.unwrap()).unwrap();

    // The other job, cancelled with its page's button (which asks first).
    c.goto(&format!("{base}/ui/jobs/{other}")).await.unwrap();
    c.find(Locator::Css("form.controls button[value=cancel]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.accept_alert().await.unwrap();
    // (The outcome line is replaced when the job's events refresh the page.)
    wait_for(
        &c,
        "#job-state.cancelled",
        "the page showing it cancelled",
        |n| n == 1,
    )
    .await;
    assert_eq!(state(&f, &other), "cancelled");
    assert_eq!(f.svc.store().total().unwrap(), 0, "the ledger sums to zero");
    assert_eq!(
        f.svc.store().balance(&format!("escrow:{other}")).unwrap(),
        0
    );

    // Log out; the rival logs in and sees neither job.
    c.find(Locator::Css("nav.top form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "#token", "the login page after logout", |n| n == 1).await;
    log_in(&c, &base, RIVAL).await;
    let list = c.source().await.unwrap();
    assert!(
        !list.contains(&job[..12]) && !list.contains(&other[..12]),
        "{list}"
    );
    c.goto(&format!("{base}/ui/jobs/{job}")).await.unwrap();
    let page = c.source().await.unwrap();
    assert!(page.contains("does not exist"), "{page}");
    assert!(!page.contains("tile-grid"));
    c.close().await.unwrap();
}
