//! Webhooks end to end: jobs driven through the [`Service`] with virtual time queue their
//! events, the delivery task POSTs them to a receiver (a small axum server in the test)
//! through an outage (nothing listening, then 503s), and the receiver checks every
//! signature with the secret and counts deliveries by id; a hook of another client never
//! hears of the jobs. The API (over a real daemon on the in-process bus) refuses bad
//! fields with a 422 naming them, hides secrets, keeps clients' hooks apart (404), caps
//! them per client, and its delivery task delivers what the store queues.

mod common;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use tessera_api::client::{ApiClient, ApiClientError};
use tessera_api::{WebhookEvent, WebhookRequest, WEBHOOK_EVENTS};
use tessera_coordinator::daemon::webhooks::{self, OwnStore, WebhookConfig};
use tessera_coordinator::daemon::{self as daemon, DaemonConfig};
use tessera_coordinator::machine::Control;
use tessera_coordinator::store::DeliveryRecord;
use tokio_util::sync::CancellationToken;

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    delivery: String,
    event: String,
    signature: String,
    content_type: String,
    body: Vec<u8>,
    /// What the receiver answered.
    status: u16,
}

/// A webhook receiver: answers 503 to its first `fail_first` requests, 200 after.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Got>>,
    fail_first: AtomicU32,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let failing = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    r.got.lock().unwrap().push(Got {
        path,
        delivery: h("tessera-delivery"),
        event: h("tessera-event"),
        signature: h("tessera-signature"),
        content_type: h("content-type"),
        body: body.to_vec(),
        status: status.as_u16(),
    });
    status
}

/// Serve a receiver on `listener` until `stop`.
fn serve_receiver(
    listener: tokio::net::TcpListener,
    receiver: Arc<Receiver>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state(receiver);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .unwrap();
    })
}

/// Check a `Tessera-Signature` header against `body` with `secret`, computed here from
/// the documented scheme (not with the coordinator's own function).
fn signed_by(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let Ok(t_secs) = t.parse::<u64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(t_secs) > 300 {
        return false;
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let Ok(v1) = hex::decode(v1) else {
        return false;
    };
    mac.verify_slice(&v1).is_ok()
}

/// Poll `done` every few milliseconds until it holds, or fail after 30 s with `what`.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hook_request(url: String, secret: &str, events: &[&str]) -> WebhookRequest {
    WebhookRequest {
        url,
        secret: secret.into(),
        events: events.iter().map(|e| e.to_string()).collect(),
    }
}

/// The delivery task's settings for tests: retries after 20 ms, at most 100 ms apart.
fn quick() -> WebhookConfig {
    WebhookConfig {
        timeout: Duration::from_secs(5),
        first_retry: Duration::from_millis(20),
        max_retry: Duration::from_millis(100),
        max_attempts: 10_000,
        concurrency: 4,
        poll_every: Duration::from_millis(10),
        // The test's receivers listen on 127.0.0.1.
        allow_internal: true,
        ..WebhookConfig::default()
    }
}

const STUDIO_SECRET: &str = "studio-secret-0123456789";
const DONE_SECRET: &str = "done-only-secret-0123456789";
const RIVAL_SECRET: &str = "rival-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_gets_exactly_the_events_of_its_clients_jobs_signed_after_an_outage() {
    let mut f = Farm::with_config(ServiceConfig {
        challenge_window_secs: 60,
        ..Farm::config()
    });
    // A port nobody listens on yet: the receiver starts there after the first attempts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
    let store = f.svc.store();
    let studio = webhooks::add(
        store,
        "studio",
        &hook_request(url("studio"), STUDIO_SECRET, &WEBHOOK_EVENTS),
        f.now,
    )
    .unwrap();
    let done_only = webhooks::add(
        store,
        "studio",
        &hook_request(url("done"), DONE_SECRET, &["job.done"]),
        f.now,
    )
    .unwrap();
    let rival = webhooks::add(
        store,
        "rival",
        &hook_request(url("rival"), RIVAL_SECRET, &WEBHOOK_EVENTS),
        f.now,
    )
    .unwrap();

    // Job 1 (studio): a cheater fails its check in round 0, round 1 re-renders, the job
    // is done, and its challenge window closes a minute later.
    let (a, b) = (key(1), key(3));
    f.register(&a, "node");
    f.register(&b, "node");
    f.register(&key(2), "verifier");
    let job1 = f.submit();
    let (cheat, honest) = (f.node(&a, Some(DishonestMode::Black)), f.node(&b, None));
    for (i, t) in tasks(&f.drain()).iter().enumerate() {
        let n = if i % 2 == 0 { &cheat } else { &honest };
        f.svc.handle_result(&result_body(n, t), f.now).unwrap();
    }
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    for t in &tasks(&f.drain()) {
        f.svc
            .handle_result(&result_body(&honest, t), f.now)
            .unwrap();
    }
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job1), "done");
    // Job 2 (studio) is cancelled; job 3 is the rival's, cancelled too.
    let job2 = f.submit();
    f.svc
        .control("studio", &job2, Control::Cancel, f.now)
        .unwrap();
    f.fund("rival");
    let job3 = f.submit_as("rival", "economy", (0, 0)).unwrap();
    f.svc
        .control("rival", &job3, Control::Cancel, f.now)
        .unwrap();
    f.now += 61_000;
    f.svc.reconcile(f.now).unwrap();
    f.svc.reconcile(f.now + 1).unwrap(); // nothing twice

    let expected: BTreeMap<&str, BTreeSet<(String, &str)>> = [
        (
            "studio",
            BTreeSet::from([
                (job1.clone(), "verification.failed"),
                (job1.clone(), "job.done"),
                (job1.clone(), "job.dispute_window_closed"),
                (job2.clone(), "job.cancelled"),
            ]),
        ),
        ("done", BTreeSet::from([(job1.clone(), "job.done")])),
        ("rival", BTreeSet::from([(job3.clone(), "job.cancelled")])),
    ]
    .into();
    let n_deliveries: usize = expected.values().map(BTreeSet::len).sum();

    // The delivery task on a connection of its own; nothing listens yet.
    let deliveries = OwnStore::new(Store::open(&f.db).unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(webhooks::run(deliveries, quick(), shutdown.clone()));
    let reader = Store::open(&f.db).unwrap();
    let hooks = [&studio.id, &done_only.id, &rival.id];
    let rows = |r: &Store| -> Vec<DeliveryRecord> {
        hooks
            .iter()
            .flat_map(|h| r.webhook_deliveries(h).unwrap())
            .collect()
    };
    wait_for("failed attempts while the receiver is down", || {
        let rows = rows(&reader);
        rows.len() == n_deliveries && rows.iter().all(|d| d.attempts >= 2)
    })
    .await;
    assert!(
        rows(&reader)
            .iter()
            .all(|d| d.delivered_ms.is_none() && d.last_error.is_some()),
        "delivered to nobody: {:#?}",
        rows(&reader)
    );

    // The receiver comes up, answering 503 three times before it takes anything.
    let receiver = Arc::new(Receiver::default());
    receiver.fail_first.store(3, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let server = serve_receiver(listener, receiver.clone(), stop.clone());
    wait_for("every delivery to be delivered", || {
        let rows = rows(&reader);
        rows.len() == n_deliveries && rows.iter().all(|d| d.delivered_ms.is_some())
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    stop.cancel();
    server.await.unwrap();

    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(
        got.iter().filter(|g| g.status == 503).count(),
        3,
        "the outage's 503s"
    );
    let secrets = BTreeMap::from([
        ("studio", STUDIO_SECRET),
        ("done", DONE_SECRET),
        ("rival", RIVAL_SECRET),
    ]);
    let mut taken: BTreeMap<&str, BTreeSet<(String, &str)>> = BTreeMap::new();
    let mut taken_ids = BTreeMap::<String, u32>::new();
    for g in &got {
        let secret = secrets[g.path.as_str()];
        assert!(
            signed_by(secret, &g.signature, &g.body),
            "{}: bad signature {:?}",
            g.path,
            g.signature
        );
        for (other, s) in &secrets {
            if *other != g.path {
                assert!(
                    !signed_by(s, &g.signature, &g.body),
                    "signed with {other}'s secret"
                );
            }
        }
        assert_eq!(g.content_type, "application/json");
        let body: WebhookEvent = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(body.id, g.delivery, "the body's id is the delivery header");
        assert_eq!(body.event, g.event, "the body's event is the event header");
        if g.status == 200 {
            *taken_ids.entry(g.delivery.clone()).or_default() += 1;
            let event = WEBHOOK_EVENTS
                .iter()
                .find(|e| **e == body.event)
                .expect("a known event");
            let fresh = taken
                .entry(secrets.keys().find(|p| **p == g.path).unwrap())
                .or_default()
                .insert((body.job_id.clone(), event));
            assert!(fresh, "{} got {event} of {} twice", g.path, body.job_id);
        }
    }
    assert_eq!(taken, expected, "the events each receiver took");
    assert!(
        taken_ids.values().all(|n| *n == 1),
        "a delivery taken twice: {taken_ids:?}"
    );
    // Every 503'd delivery was taken later (by its id).
    for g in got.iter().filter(|g| g.status == 503) {
        assert_eq!(
            taken_ids.get(&g.delivery),
            Some(&1),
            "{} never retried",
            g.delivery
        );
    }

    // What the bodies carry.
    let bodies: Vec<WebhookEvent> = got
        .iter()
        .filter(|g| g.status == 200)
        .map(|g| serde_json::from_slice(&g.body).unwrap())
        .collect();
    let one = |job: &str, event: &str| {
        bodies
            .iter()
            .find(|b| b.job_id == job && b.event == event)
            .unwrap()
            .clone()
    };
    let failed = one(&job1, "verification.failed");
    assert_eq!(failed.data["node"], a.public().to_string());
    assert_eq!(failed.data["round"], 0);
    let done = one(&job1, "job.done");
    assert_eq!(done.state, "done");
    assert_eq!(done.data["tiles_total"], 12);
    assert_eq!(done.data["rounds"], 2);
    let closed = one(&job1, "job.dispute_window_closed");
    assert!(closed.data["released"].as_u64().unwrap() > 0, "{closed:?}");
    assert_eq!(one(&job2, "job.cancelled").state, "cancelled");
}

#[test]
fn a_failed_job_queues_its_error_and_removing_a_hook_drops_what_waits_for_it() {
    let mut f = Farm::new();
    let hook = webhooks::add(
        f.svc.store(),
        "studio",
        &hook_request(
            "http://127.0.0.1:9/h".into(),
            STUDIO_SECRET,
            &["job.failed", "job.done"],
        ),
        f.now,
    )
    .unwrap();
    let a = key(1);
    f.register(&a, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let t = tasks(&f.drain())[0].task_id.clone();
    let max = f.svc.config().max_attempts;
    for _ in 1..max {
        f.svc
            .handle_signal(&f.signal(&a, &[&t], &[&t]), f.now)
            .unwrap();
        f.now += 1;
        f.drain();
    }
    f.now += 3_600_000;
    for _ in 0..max {
        f.svc.reconcile(f.now).unwrap();
        f.now += 3_600_000;
    }
    assert_eq!(state(&f, &job), "failed");
    let rows = f.svc.store().webhook_deliveries(&hook.id).unwrap();
    assert_eq!(
        rows.iter().map(|d| d.event.as_str()).collect::<Vec<_>>(),
        ["job.failed"]
    );
    let body: WebhookEvent = serde_json::from_str(&rows[0].body).unwrap();
    assert_eq!(
        (body.job_id.as_str(), body.state.as_str()),
        (job.as_str(), "failed")
    );
    assert!(
        body.data["error"]
            .as_str()
            .is_some_and(|e| e.contains("failed")),
        "{body:?}"
    );
    // Another client cannot remove it; its client can, with what waits for it.
    assert!(webhooks::remove(f.svc.store(), "rival", &hook.id).is_err());
    assert_eq!(f.svc.store().webhook_deliveries(&hook.id).unwrap().len(), 1);
    webhooks::remove(f.svc.store(), "studio", &hook.id).unwrap();
    assert!(f
        .svc
        .store()
        .webhook_deliveries(&hook.id)
        .unwrap()
        .is_empty());
    assert!(webhooks::list(f.svc.store(), "studio").unwrap().is_empty());
}

const STUDIO_TOKEN: &str = "studio-token-0123456789";
const RIVAL_TOKEN: &str = "rival-token-0123456789";

fn status_of(e: ApiClientError) -> (u16, String) {
    match e {
        ApiClientError::Status {
            status, message, ..
        } => (status, message),
        other => panic!("not an http status: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_checks_fields_hides_secrets_keeps_clients_apart_and_its_task_delivers() {
    let data = tempfile::tempdir().unwrap();
    let listener = daemon::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cfg = DaemonConfig {
        listen: listener.local_addr().unwrap(),
        data_dir: data.path().to_path_buf(),
        api_tokens: vec![
            format!("studio={STUDIO_TOKEN}"),
            format!("rival={RIVAL_TOKEN}"),
        ],
        webhooks: quick(),
        ..DaemonConfig::default()
    };
    let shutdown = CancellationToken::new();
    let coordinator = tokio::spawn(daemon::run_with_bus(
        cfg,
        tessera_bus::InProcessBus::new(),
        listener,
        shutdown.clone(),
    ));
    let studio = ApiClient::new(&base, Some(STUDIO_TOKEN.into())).unwrap();
    let rival = ApiClient::new(&base, Some(RIVAL_TOKEN.into())).unwrap();
    let receiver = Arc::new(Receiver::default());
    let rx = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/studio", rx.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = serve_receiver(rx, receiver.clone(), stop.clone());

    // Bad fields: 422, naming the field.
    let bad = [
        (
            hook_request("ftp://example.com/h".into(), STUDIO_SECRET, &["job.done"]),
            "url: ",
        ),
        (
            hook_request(
                "http://u:p@example.com/h".into(),
                STUDIO_SECRET,
                &["job.done"],
            ),
            "url: ",
        ),
        (
            hook_request("example.com/h".into(), STUDIO_SECRET, &["job.done"]),
            "url: ",
        ),
        (
            hook_request(hook_url.clone(), "too-short", &["job.done"]),
            "secret: ",
        ),
        (
            hook_request(hook_url.clone(), STUDIO_SECRET, &[]),
            "events: ",
        ),
        (
            hook_request(hook_url.clone(), STUDIO_SECRET, &["job.exploded"]),
            "events: ",
        ),
    ];
    for (req, field) in bad {
        let (status, message) = status_of(studio.add_webhook(&req).await.unwrap_err());
        assert_eq!(status, 422, "{req:?}: {message}");
        assert!(message.starts_with(field), "{req:?}: {message}");
    }
    let http = tessera_api::client::http_client_builder().build().unwrap();
    let missing = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(STUDIO_TOKEN)
        .json(&serde_json::json!({"url": hook_url, "events": ["job.done"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 422);
    assert!(missing.text().await.unwrap().contains("secret"));
    // No token, no hooks.
    let anonymous = http
        .get(format!("{base}/v1/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // A good hook: its secret is never shown again.
    let hook = studio
        .add_webhook(&hook_request(
            hook_url.clone(),
            STUDIO_SECRET,
            &["job.done", "job.failed"],
        ))
        .await
        .unwrap();
    assert_eq!(hook.url, hook_url);
    assert_eq!(hook.events, ["job.done", "job.failed"]);
    let listed = http
        .get(format!("{base}/v1/webhooks"))
        .bearer_auth(STUDIO_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let text = listed.text().await.unwrap();
    assert!(
        text.contains(&hook.id) && !text.contains(STUDIO_SECRET),
        "{text}"
    );
    assert_eq!(studio.webhooks().await.unwrap(), vec![hook.clone()]);
    // The rival sees none of it and cannot remove it.
    assert!(rival.webhooks().await.unwrap().is_empty());
    let (status, _) = status_of(rival.remove_webhook(&hook.id).await.unwrap_err());
    assert_eq!(status, 404);
    let (status, _) = status_of(studio.remove_webhook("not-an-id").await.unwrap_err());
    assert_eq!(status, 404);
    assert_eq!(studio.webhooks().await.unwrap(), vec![hook.clone()]);

    // The daemon's delivery task delivers what the store queues for the hook.
    let db = Store::open(&data.path().join("coordinator.db")).unwrap();
    let job = "ab".repeat(16);
    let body = serde_json::to_string(&WebhookEvent {
        id: "d1".into(),
        event: "job.done".into(),
        job_id: job.clone(),
        state: "done".into(),
        at_ms: 1,
        data: serde_json::json!({}),
    })
    .unwrap();
    db.insert_delivery("d1", &hook.id, &job, "job.done", &body, 0)
        .unwrap();
    wait_for("the daemon to deliver", || {
        receiver
            .got
            .lock()
            .unwrap()
            .iter()
            .any(|g| g.delivery == "d1")
    })
    .await;
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(signed_by(STUDIO_SECRET, &got[0].signature, &got[0].body));
    assert_eq!(got[0].body, body.as_bytes());

    // Its client sees the delivery; the rival cannot.
    // (The task records the delivery after the receiver answered: wait for that.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = studio.webhook_deliveries(&hook.id).await.unwrap();
        if seen.iter().all(|d| d.delivered_ms.is_some()) || tokio::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].id.as_str(), seen[0].attempts), ("d1", 1));
    assert!(seen[0].delivered_ms.is_some() && seen[0].next_at_ms.is_none());
    let (status, _) = status_of(rival.webhook_deliveries(&hook.id).await.unwrap_err());
    assert_eq!(status, 404);

    // At most ten hooks per client.
    for _ in 1..webhooks::MAX_CLIENT_WEBHOOKS {
        studio
            .add_webhook(&hook_request(
                hook_url.clone(),
                STUDIO_SECRET,
                &["job.done"],
            ))
            .await
            .unwrap();
    }
    let (status, message) = status_of(
        studio
            .add_webhook(&hook_request(
                hook_url.clone(),
                STUDIO_SECRET,
                &["job.done"],
            ))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 429, "{message}");
    // The cap is the client's own: the rival may still add one.
    rival
        .add_webhook(&hook_request(hook_url.clone(), RIVAL_SECRET, &["job.done"]))
        .await
        .unwrap();

    // Its client removes it.
    assert_eq!(studio.remove_webhook(&hook.id).await.unwrap(), hook);
    assert!(!studio.webhooks().await.unwrap().contains(&hook));

    shutdown.cancel();
    coordinator.await.unwrap().unwrap();
    stop.cancel();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_does_not_hold_up_another_hooks_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let store = Store::open(&db).unwrap();
    // A receiver that takes connections (the kernel's backlog does) and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = Arc::new(Receiver::default());
    let rx = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good_url = format!("http://{}/good", rx.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = serve_receiver(rx, receiver.clone(), stop.clone());
    let stuck = webhooks::add(
        &store,
        "studio",
        &hook_request(
            format!("http://{}/stuck", silent.local_addr().unwrap()),
            STUDIO_SECRET,
            &["job.done"],
        ),
        0,
    )
    .unwrap();
    let good = webhooks::add(
        &store,
        "rival",
        &hook_request(good_url, RIVAL_SECRET, &["job.done"]),
        0,
    )
    .unwrap();
    // The silent hook's deliveries are due first, more of them than the task's slots.
    for i in 0..10 {
        store
            .insert_delivery(&format!("stuck{i}"), &stuck.id, "job", "job.done", "{}", 0)
            .unwrap();
    }
    store
        .insert_delivery("good", &good.id, "job", "job.done", "{}", 1)
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(webhooks::run(
        OwnStore::new(Store::open(&db).unwrap()),
        WebhookConfig {
            // Far beyond the wait below: only a free slot lets the good hook through.
            timeout: Duration::from_secs(600),
            ..quick()
        },
        shutdown.clone(),
    ));
    wait_for("the answering hook's delivery", || {
        receiver
            .got
            .lock()
            .unwrap()
            .iter()
            .any(|g| g.delivery == "good")
    })
    .await;
    // The receiver has the request before the task has read the answer and stored it
    // as delivered: wait for the store, not the receiver, before stopping the task.
    wait_for("the answering hook's delivery to be stored", || {
        store.webhook_deliveries(&good.id).unwrap()[0]
            .delivered_ms
            .is_some()
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    stop.cancel();
    server.await.unwrap();
    let rows = store.webhook_deliveries(&good.id).unwrap();
    assert!(rows[0].delivered_ms.is_some(), "{rows:?}");
    drop(silent);
}

/// A certificate authority of the studio's own and a receiver certificate it issued for
/// `localhost`: (the authority's PEM, the receiver's TLS acceptor).
fn studio_tls() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "studio test authority");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    #[allow(deprecated)] // the provider the coordinator's client uses
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Serve a receiver over TLS on `listener` until `stop`.
fn serve_tls_receiver(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    receiver: Arc<Receiver>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state(receiver);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = stop.cancelled() => return,
                a = listener.accept() => a.unwrap(),
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(app),
                    )
                    .await;
            });
        }
    })
}

/// Deliveries go to https receivers (verified against the system's roots and the
/// operator's extra ones); a hook on an internal address, given as an IP or as a name that
/// resolves to one, is never connected to unless the operator allows internal addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_are_delivered_to_and_internal_addresses_only_when_allowed() {
    let mut f = Farm::new();
    // Deliveries are stamped with the farm's clock and pruned by the wall clock's.
    f.now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (ca_pem, acceptor) = studio_tls();
    let tls_rx = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_rx = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tls_port, plain_port) = (
        tls_rx.local_addr().unwrap().port(),
        plain_rx.local_addr().unwrap().port(),
    );
    let (tls_got, plain_got) = (Arc::new(Receiver::default()), Arc::new(Receiver::default()));
    let stop = CancellationToken::new();
    let servers = [
        serve_tls_receiver(tls_rx, acceptor, tls_got.clone(), stop.clone()),
        serve_receiver(plain_rx, plain_got.clone(), stop.clone()),
    ];
    let store = f.svc.store();
    let add = |url: String| {
        webhooks::add(
            store,
            "studio",
            &hook_request(url, STUDIO_SECRET, &["job.cancelled"]),
            f.now,
        )
        .unwrap()
        .id
    };
    let tls = add(format!("https://localhost:{tls_port}/tls"));
    let literal = add(format!("http://127.0.0.1:{plain_port}/literal"));
    let named = add(format!("http://localhost:{plain_port}/named"));
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    f.svc
        .control("studio", &job, Control::Cancel, f.now)
        .unwrap();
    let reader = Store::open(&f.db).unwrap();
    let row = |hook: &str| reader.webhook_deliveries(hook).unwrap().pop().unwrap();

    // The default: internal addresses refused. The literal one is given up at once; the
    // names are tried again later (their addresses may change), never connected to.
    let roots = vec![ca_pem.clone().into_bytes()];
    let strict = WebhookConfig {
        allow_internal: false,
        extra_roots_pem: roots.clone(),
        ..quick()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(webhooks::run(
        OwnStore::new(Store::open(&f.db).unwrap()),
        strict,
        shutdown.clone(),
    ));
    wait_for("the internal hooks to be refused", || {
        [&tls, &literal, &named]
            .iter()
            .all(|h| row(h).attempts >= 2 || row(h).next_at_ms.is_none())
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    let given_up = row(&literal);
    assert_eq!((given_up.attempts, given_up.next_at_ms), (1, None));
    assert!(
        given_up
            .last_error
            .as_deref()
            .unwrap()
            .contains("internal address"),
        "{given_up:?}"
    );
    for hook in [&tls, &named] {
        let r = row(hook);
        assert!(r.delivered_ms.is_none() && r.next_at_ms.is_some(), "{r:?}");
        assert!(
            r.last_error
                .as_deref()
                .unwrap()
                .contains("resolves only to internal addresses"),
            "{r:?}"
        );
    }
    assert!(tls_got.got.lock().unwrap().is_empty());
    assert!(plain_got.got.lock().unwrap().is_empty());

    // Allowed, without the studio's authority: the https receiver's certificate is not
    // trusted, so nothing reaches it.
    let untrusted = WebhookConfig {
        allow_internal: true,
        ..quick()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(webhooks::run(
        OwnStore::new(Store::open(&f.db).unwrap()),
        untrusted,
        shutdown.clone(),
    ));
    wait_for("the named hook to be delivered", || {
        row(&named).delivered_ms.is_some()
    })
    .await;
    wait_for("a failed TLS attempt", || {
        row(&tls)
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("certificate"))
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    assert!(tls_got.got.lock().unwrap().is_empty());

    // Allowed, with the authority: delivered over TLS, signed.
    let trusting = WebhookConfig {
        allow_internal: true,
        extra_roots_pem: roots,
        ..quick()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(webhooks::run(
        OwnStore::new(Store::open(&f.db).unwrap()),
        trusting,
        shutdown.clone(),
    ));
    wait_for("the https hook to be delivered", || {
        row(&tls).delivered_ms.is_some()
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    stop.cancel();
    for s in servers {
        s.await.unwrap();
    }
    let tls_got = tls_got.got.lock().unwrap().clone();
    assert_eq!(tls_got.len(), 1);
    assert_eq!(
        (tls_got[0].path.as_str(), tls_got[0].event.as_str()),
        ("tls", "job.cancelled")
    );
    assert!(signed_by(
        STUDIO_SECRET,
        &tls_got[0].signature,
        &tls_got[0].body
    ));
    let plain: Vec<String> = plain_got
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|g| g.path.clone())
        .collect();
    assert_eq!(
        plain,
        ["named"],
        "the given-up literal hook is never sent again"
    );
    assert_eq!(row(&literal).attempts, 1);
}
