//! The farm's queued work and job priorities: the coordinator keeps the shared task queue
//! shallow ([`tessera_coordinator::daemon`]'s publisher holds shared-queue tasks in its
//! outbox while the queue is deep), so the tasks of a job whose client raises its priority
//! go out ahead of an earlier job's waiting ones, and a paused job's waiting tasks never
//! reach the broker. The coordinator runs on an in-process bus; the test takes tasks off
//! the queue as a node would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_api::client::ApiClient;
use tessera_api::{CreditRequest, JobSubmission, SceneListing};
use tessera_bus::{Bus, InProcessBus};
use tessera_coordinator::daemon::{self, DaemonConfig, InspectedScene, SceneInspector};
use tessera_node::stub::HashRenderer;
use tessera_protocol::keys::SecretKey;
use tessera_protocol::statements::Role;
use tessera_protocol::wire::{Capabilities, RenderTask, QUEUE_TASKS};
use tessera_protocol::RenderSettings;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "studio-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const VERIFIER: &str = "verifier-token-0123456789";

fn job(hash: &str) -> JobSubmission {
    JobSubmission {
        scene: SceneListing {
            entry: "scene.glb".into(),
            files: [("scene.glb".to_string(), hash.to_string())]
                .into_iter()
                .collect(),
        },
        settings: RenderSettings {
            width: 64,
            height: 64,
            spp: 4,
            max_bounces: 1,
            seed: 1,
            camera: None,
            frame_rate: Default::default(),
        },
        frame_start: 0,
        frame_end: 0,
        tier: "economy".into(),
        tile_size: Some(16),
        batch_size: Some(2),
        requirements: Default::default(),
    }
}

/// The next task on the shared queue (acked, as a node that took it), within 10 s.
async fn take(bus: &InProcessBus) -> RenderTask {
    let d = tokio::time::timeout(Duration::from_secs(10), bus.next(QUEUE_TASKS))
        .await
        .expect("a task within 10 s")
        .expect("the bus is open");
    bus.ack(&d).await.unwrap();
    serde_json::from_slice(&d.body).unwrap()
}

/// Wait until the shared queue holds `n` messages.
async fn wait_ready(bus: &InProcessBus, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.ready(QUEUE_TASKS).await.unwrap() != Some(n) {
        assert!(Instant::now() < deadline, "the task queue never held {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_priority_goes_ahead_of_queued_work_and_a_paused_job_stays_off_the_broker() {
    let data = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let listener = daemon::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let inspector: SceneInspector = Arc::new(|entry: &std::path::Path| {
        Ok(InspectedScene {
            content_hash: *blake3::hash(&std::fs::read(entry)?).as_bytes(),
            cameras: vec![],
        })
    });
    let cfg = DaemonConfig {
        listen: listener.local_addr().unwrap(),
        data_dir: data.path().join("coordinator"),
        api_tokens: vec![format!("studio={TOKEN}")],
        admin_token: Some(ADMIN.into()),
        verifier_token: Some(VERIFIER.into()),
        scene_inspector: Some(inspector),
        namespace: "scheduling".into(),
        ..DaemonConfig::default()
    };
    let bus = InProcessBus::new();
    let (b, s) = (bus.clone(), stop.clone());
    tokio::spawn(async move { daemon::run_with_bus(cfg, b, listener, s).await.unwrap() });

    let client = ApiClient::new(&url, Some(TOKEN.into())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.jobs().await.is_err() {
        assert!(Instant::now() < deadline, "the coordinator did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A verifier is registered (a job needs one), no node: the queue's depth is the
    // minimum, 4 tasks.
    let caps = Capabilities {
        class: HashRenderer::stub_class(),
        memory_bytes: 0,
        slots: 1,
        software: "test".into(),
    };
    ApiClient::new(&url, None)
        .unwrap()
        .register_worker(
            Role::Verifier,
            "v",
            &SecretKey::generate(),
            caps,
            Some(VERIFIER.into()),
        )
        .await
        .unwrap();
    client
        .with_token(ADMIN.into())
        .credit(&CreditRequest {
            account: "client:studio".into(),
            amount: 1_000_000_000,
            reference: "test".into(),
        })
        .await
        .unwrap();
    let scene = b"scene bytes".to_vec();
    let hash = client.put_blob(scene).await.unwrap().hash;

    // 16 tiles in tasks of 2: 8 tasks each.
    let early = client.submit(&job(&hash)).await.unwrap().job_id;
    wait_ready(&bus, 4).await;
    let paused = client.submit(&job(&hash)).await.unwrap().job_id;
    let outcome = client
        .control(std::slice::from_ref(&paused), "pause", None)
        .await
        .unwrap();
    assert_eq!(outcome[0].state.as_deref(), Some("paused"));
    let urgent = client.submit(&job(&hash)).await.unwrap().job_id;
    let outcome = client
        .control(std::slice::from_ref(&urgent), "priority", Some(10))
        .await
        .unwrap();
    assert_eq!(outcome[0].state.as_deref(), Some("queued"));

    let mut order = Vec::new();
    for _ in 0..16 {
        let t = take(&bus).await;
        order.push(hex::encode(t.job_id));
    }
    let runs: Vec<(&str, usize)> = order.iter().fold(Vec::new(), |mut runs, j| {
        match runs.last_mut() {
            Some((last, n)) if *last == j.as_str() => *n += 1,
            _ => runs.push((j.as_str(), 1)),
        }
        runs
    });
    assert_eq!(
        runs,
        vec![
            (early.as_str(), 4),
            (urgent.as_str(), 8),
            (early.as_str(), 4)
        ],
        "the queue held 4 of the early job; then every task of the urgent one, then the rest"
    );
    // The paused job's tasks never reached the broker; resumed, they do.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(bus.ready(QUEUE_TASKS).await.unwrap(), Some(0));
    client
        .control(std::slice::from_ref(&paused), "resume", None)
        .await
        .unwrap();
    for _ in 0..8 {
        assert_eq!(hex::encode(take(&bus).await.job_id), paused);
    }
    stop.cancel();
}
