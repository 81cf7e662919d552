//! The coordinator's Prometheus metrics: a job driven through the [`Service`] with a
//! virtual clock (as `service.rs` does) moves the counters by exactly what happened
//! (tiles rendered and verified, verdicts, slashes, payments by kind, task retries, the
//! render-time histogram), the gauges read the store, the text parses with a Prometheus
//! text-format parser, and `GET /metrics` on the API needs the admin token while the
//! separate `--metrics-addr` listener serves it without one.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tessera_bus::InProcessBus;
use tessera_coordinator::daemon::metrics::kind_name;
use tessera_coordinator::daemon::{run_with_bus, DaemonConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Every sample of a scrape, parsed.
fn scrape(text: &str) -> Vec<prometheus_parse::Sample> {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("metrics parse")
        .samples
}

fn number(s: &prometheus_parse::Sample) -> f64 {
    match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        // A histogram's count is its +Inf bucket.
        prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |c| c.count),
        other => panic!("{}: unexpected {other:?}", s.metric),
    }
}

/// The value of `name` with these labels (0 when absent, as Prometheus reads it).
fn value(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(number)
        .sum()
}

fn metrics(f: &Farm) -> Vec<prometheus_parse::Sample> {
    scrape(&f.svc.metrics_text().unwrap())
}

fn tiles(ts: &[RenderTask]) -> f64 {
    ts.iter().map(|t| t.tiles.len()).sum::<usize>() as f64
}

/// The 8 × 8 blocks of the tasks' tiles (what verification counts).
fn blocks(ts: &[RenderTask]) -> f64 {
    ts.iter()
        .flat_map(|t| &t.tiles)
        .map(|t| f64::from(tessera_protocol::blocks::n_blocks(t.rect)))
        .sum()
}

#[test]
fn counters_follow_a_job_with_a_cheater_exactly() {
    let f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    let before = metrics(&f);
    assert_eq!(value(&before, "tessera_tiles_rendered_total", &[]), 0.0);
    assert_eq!(value(&before, "tessera_workers", &[("role", "node")]), 2.0);
    assert_eq!(
        value(&before, "tessera_workers", &[("role", "verifier")]),
        1.0
    );

    let job = f.submit();
    let m = metrics(&f);
    assert_eq!(value(&m, "tessera_jobs", &[("state", "queued")]), 1.0);
    let total = f64::from(f.svc.job_view(&job).unwrap().progress.tiles_total);
    assert_eq!(value(&m, "tessera_tiles_open", &[]), total);
    let ts = tasks(&f.drain());
    assert_eq!(
        value(&m, "tessera_outbox_messages", &[("kind", "task")]),
        ts.len() as f64
    );
    assert_eq!(value(&m, "tessera_tiles_dispatched_total", &[]), tiles(&ts));
    assert_eq!(tiles(&ts), total);

    let (cheat, honest) = (f.node(&a, Some(DishonestMode::Black)), f.node(&b, None));
    for (i, t) in ts.iter().enumerate() {
        let n = if i % 2 == 0 { &cheat } else { &honest };
        f.svc.handle_result(&result_body(n, t), f.now).unwrap();
    }
    let m = metrics(&f);
    assert_eq!(value(&m, "tessera_tiles_rendered_total", &[]), total);
    assert_eq!(value(&m, "tessera_tiles_open", &[]), 0.0);
    assert_eq!(value(&m, "tessera_blocks_verified_total", &[]), 0.0);
    assert_eq!(
        value(&m, "tessera_outbox_messages", &[("kind", "check")]),
        2.0,
        "one check per node"
    );

    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    let round1 = tasks(&f.drain());
    assert!(!round1.is_empty());
    for t in &round1 {
        f.svc
            .handle_result(&result_body(&honest, t), f.now)
            .unwrap();
    }
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");

    let m = metrics(&f);
    // Every tile rendered once in round 0 and the cheater's again in round 1.
    assert_eq!(
        value(&m, "tessera_tiles_rendered_total", &[]),
        total + tiles(&round1)
    );
    assert_eq!(
        value(&m, "tessera_tiles_dispatched_total", &[]),
        total + tiles(&round1)
    );
    // Only passed work is verified: the whole job, once.
    assert_eq!(value(&m, "tessera_blocks_verified_total", &[]), blocks(&ts));
    assert_eq!(
        value(&m, "tessera_tile_render_seconds", &[]),
        (ts.len() + round1.len()) as f64,
        "one observation per accepted result"
    );
    // The verdicts the bundle holds, by decision.
    let bundle = f.svc.bundle(&job).unwrap();
    let mut decisions: BTreeMap<&str, f64> = BTreeMap::new();
    for r in &bundle.rounds {
        for v in &r.verdicts {
            let d = tessera_coordinator::daemon::metrics::decision_name(v.statement.decision);
            *decisions.entry(d).or_default() += 1.0;
        }
    }
    assert!(
        decisions.get("fail").is_some_and(|n| *n >= 1.0),
        "{decisions:?}"
    );
    for (d, n) in &decisions {
        assert_eq!(
            value(&m, "tessera_verdicts_total", &[("decision", d)]),
            *n,
            "{d}"
        );
    }
    assert!(value(&m, "tessera_sampled_tiles_total", &[("band", "far")]) >= 1.0);
    // Payments by kind are the job's ledger transfers, to the micro-credit.
    let transfers = f.svc.store().job_transfers(&job).unwrap();
    let mut by_kind: BTreeMap<&str, f64> = BTreeMap::new();
    for t in &transfers {
        *by_kind.entry(kind_name(t.kind)).or_default() += t.amount as f64;
    }
    for kind in [
        "escrow",
        "pay_on_pass",
        "hold_back",
        "release",
        "slash",
        "refund",
    ] {
        assert_eq!(
            value(&m, "tessera_payments_microcredits_total", &[("kind", kind)]),
            by_kind.get(kind).copied().unwrap_or(0.0),
            "{kind}"
        );
    }
    let slashes: Vec<_> = transfers
        .iter()
        .filter(|t| t.kind == TransferKind::Slash)
        .collect();
    assert!(!slashes.is_empty());
    assert_eq!(
        value(&m, "tessera_slashes_total", &[]),
        slashes.len() as f64
    );
    assert_eq!(
        value(&m, "tessera_slashed_microcredits_total", &[]),
        slashes.iter().map(|t| t.amount as f64).sum::<f64>()
    );
    assert_eq!(value(&m, "tessera_jobs", &[("state", "done")]), 1.0);
    assert_eq!(value(&m, "tessera_jobs", &[("state", "queued")]), 0.0);
    assert_eq!(value(&m, "tessera_outbox_messages", &[]), 0.0);
    // No label names a job or a node.
    let text = f.svc.metrics_text().unwrap();
    assert!(!text.contains(&job[..12]), "a job id in the metrics");
    assert!(
        !text.contains(&a.public().to_string()[..12]),
        "a node key in the metrics"
    );
}

#[test]
fn expired_leases_count_as_retries_and_render_time_is_per_tile_on_the_virtual_clock() {
    let mut f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    f.submit();
    let ts = tasks(&f.drain());
    let first = ts[0].task_id.clone();
    for _ in 0..2 {
        f.svc
            .handle_signal(&f.signal(&a, &[&first], &[]), f.now)
            .unwrap();
        f.now += LEASE + 1;
        assert_eq!(f.svc.reconcile(f.now).unwrap(), 1);
    }
    let m = metrics(&f);
    assert_eq!(value(&m, "tessera_task_retries_total", &[]), 2.0);
    // Published again on attempts 1 and 2; the outbox sends only the newer copy.
    let again = tasks(&f.drain());
    assert_eq!(again.len(), 1, "the unsent copy of attempt 1 is superseded");
    assert!(again.iter().all(|t| t.task_id == first && t.attempt == 2));
    // Every other task was published 2 × (LEASE + 1) ms ago; the retried one just now.
    f.now += 4_000;
    let nb = f.node(&b, None);
    let body = f.svc.task(&first).unwrap().unwrap().body;
    for t in ts.iter().skip(1).chain(std::iter::once(&body)) {
        f.svc.handle_result(&result_body(&nb, t), f.now).unwrap();
    }
    let m = metrics(&f);
    let per_tile = |ms: u64, t: &RenderTask| ms as f64 / 1000.0 / t.tiles.len() as f64;
    let waited = 2 * (LEASE + 1) + 4_000;
    let want: f64 =
        ts.iter().skip(1).map(|t| per_tile(waited, t)).sum::<f64>() + per_tile(4_000, &body);
    let sum = value(&m, "tessera_tile_render_seconds_sum", &[]);
    assert!(
        (sum - want).abs() < 1e-6,
        "render seconds: {sum}, want {want}"
    );
    assert_eq!(
        value(&m, "tessera_tile_render_seconds", &[]),
        ts.len() as f64
    );
}

/// A free port on localhost (bound, then let go).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `GET path` with an optional bearer token; the status code and the body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// `get` until it answers (the daemon is starting), for at most 20 s.
async fn get_when_up(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(answer) = get(addr, path, token).await {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_admin_token_on_the_api_and_none_on_the_metrics_listener() {
    let data = tempfile::tempdir().unwrap();
    let admin = "admin-token-0123456789";
    let client = "client-token-0123456789";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let scrape_addr = free_port();
    let cfg = DaemonConfig {
        listen: api,
        metrics_listen: Some(scrape_addr),
        data_dir: data.path().to_path_buf(),
        api_tokens: vec![client.into()],
        admin_token: Some(admin.into()),
        verifier_token: Some(VERIFIER_TOKEN.to_string() + "-0123456789"),
        ..DaemonConfig::default()
    };
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(run_with_bus(
        cfg,
        InProcessBus::new(),
        listener,
        stop.clone(),
    ));

    let (status, body) = get_when_up(api, "/metrics", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = get_when_up(api, "/metrics", Some(client)).await;
    assert!(
        status == 401 || status == 403,
        "a client token: {status} {body}"
    );
    assert!(!body.contains("tessera_"), "{body}");
    let (status, body) = get_when_up(api, "/metrics", Some(admin)).await;
    assert_eq!(status, 200, "{body}");
    let samples = scrape(&body);
    assert_eq!(value(&samples, "tessera_jobs", &[("state", "done")]), 0.0);
    assert!(samples
        .iter()
        .any(|s| s.metric == "tessera_tiles_rendered_total"));

    let (status, body) = get_when_up(scrape_addr, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(scrape(&body)
        .iter()
        .any(|s| s.metric == "tessera_blocks_verified_total"));
    let (status, _) = get_when_up(scrape_addr, "/v1/jobs", Some(client)).await;
    assert_eq!(status, 404, "the metrics listener serves nothing else");

    stop.cancel();
    daemon.await.unwrap().unwrap();
}

#[test]
fn a_declined_task_sent_elsewhere_is_dispatched_again_but_no_retry() {
    let mut f = Farm::new();
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    f.submit();
    let ts = tasks(&f.drain());
    // The first task's lease expires once: attempt 1, one retry.
    let id = ts[0].task_id.clone();
    f.svc
        .handle_signal(&f.signal(&a, &[&id], &[]), f.now)
        .unwrap();
    f.now += LEASE + 1;
    assert_eq!(f.svc.reconcile(f.now).unwrap(), 1);
    let retried = tasks(&f.drain());
    let first = &retried[0];
    assert_eq!(first.attempt, 1);
    assert_eq!(value(&metrics(&f), "tessera_task_retries_total", &[]), 1.0);
    let decline = serde_json::to_vec(&Signed::sign(
        NodeSignal {
            node: a.public(),
            sent_unix_ms: f.now,
            active: vec![],
            declined: vec![TaskNote {
                task_id: first.task_id.clone(),
                attempt: first.attempt,
                reason: "not for me".into(),
            }],
            failed: vec![],
        },
        &a,
    ))
    .unwrap();
    f.svc.handle_signal(&decline, f.now).unwrap();
    let again = tasks(&f.drain());
    assert_eq!(again.len(), 1, "sent to the other node's own queue");
    assert_eq!(again[0].attempt, first.attempt);
    let m = metrics(&f);
    assert_eq!(
        value(&m, "tessera_tiles_dispatched_total", &[]),
        tiles(&ts) + tiles(&retried) + tiles(&again)
    );
    assert_eq!(
        value(&m, "tessera_task_retries_total", &[]),
        1.0,
        "the same attempt sent elsewhere"
    );
}
