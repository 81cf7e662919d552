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
mod browser;

use browser::Browser;
use fantoccini::Locator;
use std::path::PathBuf;
use tessera_coordinator::daemon::web::standalone;
use tessera_coordinator::daemon::DaemonConfig;

const STUDIO: &str = "tok-studio";
const RIVAL: &str = "tok-rival";

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("dashboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_studio_watches_its_job_fill_in_live_cancels_another_and_a_rival_sees_neither() {
    let Some(found) = browser::installed() else {
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
    let b = Browser::open(&found).await;
    let c = &b.c;

    b.log_in(&base, STUDIO).await;
    let list = c.source().await.unwrap();
    assert!(list.contains(&job[..12]) && list.contains(&other[..12]));

    // The job page: six queued tiles in frame 0.
    c.goto(&format!("{base}/ui/jobs/{job}")).await.unwrap();
    b.wait_for("#tile-grid .tile[data-phase=queued]", "queued tiles", |n| {
        n == 6
    })
    .await;

    // The cheater takes a lease: its tiles turn to rendering (a lease is no event: the
    // page looks again every few seconds while the job runs).
    let frame0: Vec<&RenderTask> = ts.iter().filter(|t| t.frame == 0).collect();
    let first = frame0[0];
    f.svc
        .handle_signal(&f.signal(&cheat_key, &[first.task_id.as_str()], &[]), f.now)
        .unwrap();
    b.wait_for(
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
    b.wait_for(
        "#tile-grid .tile[data-phase=delivered]",
        "delivered tiles",
        |n| n == 6,
    )
    .await;
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    b.wait_for(
        "#tile-grid .tile[data-phase=verified]",
        "verified tiles",
        |n| n == 4,
    )
    .await;
    b.wait_for(
        "#tile-grid .tile[data-round='1']",
        "tiles re-rendered in round 1",
        |n| n == 2,
    )
    .await;
    b.wait_for("span.decision.fail", "the cheater's failed verdict", |n| {
        n >= 1
    })
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
    b.wait_for(
        "#tile-grid .tile[data-phase=verified]",
        "all verified",
        |n| n == 6,
    )
    .await;
    b.wait_for("#job-state.done", "the job done", |n| n == 1)
        .await;
    b.wait_for(
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
    b.wait_for(
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
    b.log_out().await;
    b.log_in(&base, RIVAL).await;
    let list = c.source().await.unwrap();
    assert!(
        !list.contains(&job[..12]) && !list.contains(&other[..12]),
        "{list}"
    );
    c.goto(&format!("{base}/ui/jobs/{job}")).await.unwrap();
    let page = c.source().await.unwrap();
    assert!(page.contains("does not exist"), "{page}");
    assert!(!page.contains("tile-grid"));
    c.clone().close().await.unwrap();
}
