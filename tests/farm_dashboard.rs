//! The dashboard against the farm of daemons: `tessera coordinator`, `node` and `verifier`
//! as processes on the real broker, and a real headless browser. A client logs in, opens a
//! job while it renders and watches its tile grid move live to every tile verified and the
//! job done, with its proof bundle offered; a second client sees neither the job in its
//! list nor its page. A screenshot of the job page is written to
//! `target/dashboard/farm-job.png`.
//!
//! (`coordinator/tests/dashboard.rs` steps a job through each tile state, a cheater's
//! failure and re-render included, with the coordinator's real service and router.)
//! Without a broker, or without chromium and chromedriver, it prints SKIPPED and passes,
//! unless `TESSERA_REQUIRE_BROKER=1` or `CI` is set: then it fails.

#[path = "farm/harness.rs"]
mod harness;

#[path = "../coordinator/tests/browser/mod.rs"]
mod browser;

use browser::Browser;
use harness::{cornell_box, job_flags, runtime, serial, Farm, TOKEN};
use std::path::PathBuf;

const STUB: &str = "--stub-renderer";
const RIVAL: &str = "farm-rival-token";

#[test]
fn a_client_watches_a_farm_job_verify_live_in_the_dashboard() {
    let _serial = serial();
    let Some(browser) = browser::installed() else {
        return;
    };
    let Some(mut farm) = Farm::start(&["--api-token", &format!("rival={RIVAL}")], &[]) else {
        return;
    };
    farm.verifier(
        "verifier",
        "verifier",
        &[STUB, "--stub-delay-ms", "50"],
        &[],
    );
    // 16 tiles in 8 tasks, 400 ms a tile on one slot: seconds of rendering to watch.
    farm.node("n1", &[STUB, "--stub-delay-ms", "400"], &[]);
    let base = farm.url.clone();
    let job = runtime().block_on(async {
        // The browser is up and logged in before the job is submitted.
        let b = Browser::open(&browser).await;
        b.log_in(&base, TOKEN).await;
        let job = farm.submit(&cornell_box(), &job_flags(64, 64, 2));
        b.c.goto(&format!("{base}/ui/jobs/{job}")).await.unwrap();
        // The page opened while the job was unfinished: what follows arrives live.
        let open = b
            .wait_for(
                "#tile-grid .tile:not([data-phase=verified])",
                "the grid",
                |_| true,
            )
            .await;
        assert!(open > 0, "the job was verified before its page opened");
        b.wait_for(
            "#tile-grid .tile[data-phase=verified]",
            "every tile verified",
            |n| n == 16,
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
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("farm-job.png"), b.c.screenshot().await.unwrap()).unwrap();
        // Another client: the job is not in its list, and its page does not exist.
        b.log_out().await;
        b.log_in(&base, RIVAL).await;
        let list = b.c.source().await.unwrap();
        assert!(!list.contains(&job[..12]), "{list}");
        b.c.goto(&format!("{base}/ui/jobs/{job}")).await.unwrap();
        let page = b.c.source().await.unwrap();
        assert!(
            page.contains("does not exist") && !page.contains("tile-grid"),
            "{page}"
        );
        job
    });
    farm.check_invariants(&job);
}
