//! The routes the Blender add-on needs, over real HTTP: `POST /v1/blobs` (the coordinator
//! hashes the upload, under the PUT's limits and tenancy) and `POST /v1/jobs/estimate`
//! (the escrow a submission would take, refusing what it would refuse, writing nothing).
//! A coordinator (in-process bus) and a verifier run on a loopback port; no node, so a
//! submitted job keeps its escrow while the test reads the ledger.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera_api::{JobSubmission, SceneListing};
use tessera_bus::InProcessBus;
use tessera_coordinator::daemon::{self, DaemonConfig, InspectedScene, SceneInspector};
use tessera_node::worker::StubFactory;
use tessera_protocol::keys::SecretKey;
use tessera_protocol::RenderSettings;
use tessera_verifier::daemon::{run_verifier, VerifierDaemonConfig};
use tokio_util::sync::CancellationToken;

const STUDIO: &str = "studio-token-0123456789";
const OTHER: &str = "other-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const VERIFIER: &str = "verifier-token-0123456789";
/// Largest blob the test coordinator takes.
const MAX_BLOB: u64 = 4096;
/// A client's storage quota on the test coordinator.
const QUOTA: u64 = 6000;
/// How far a client may overdraw.
const OVERDRAFT: u64 = 1_000;

struct Farm {
    url: String,
    http: reqwest::Client,
    stop: CancellationToken,
    _data: tempfile::TempDir,
}

impl Drop for Farm {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A coordinator whose scene inspector takes any file (its hash is the scene hash), and a
/// registered verifier.
async fn start() -> Farm {
    let data = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let listener = daemon::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let inspector: SceneInspector = Arc::new(|entry: &std::path::Path| {
        let bytes = std::fs::read(entry)?;
        Ok(InspectedScene {
            content_hash: *blake3::hash(&bytes).as_bytes(),
            cameras: vec![],
        })
    });
    let mut cfg = DaemonConfig {
        listen: listener.local_addr().unwrap(),
        data_dir: data.path().join("coordinator"),
        api_tokens: vec![format!("studio={STUDIO}"), format!("other={OTHER}")],
        admin_token: Some(ADMIN.into()),
        verifier_token: Some(VERIFIER.into()),
        scene_inspector: Some(inspector),
        namespace: "blender".into(),
        max_blob_bytes: MAX_BLOB,
        client_overdraft: OVERDRAFT,
        ..DaemonConfig::default()
    };
    cfg.limits.max_client_bytes = QUOTA;
    let bus = InProcessBus::new();
    let (b, s) = (bus.clone(), stop.clone());
    tokio::spawn(async move { daemon::run_with_bus(cfg, b, listener, s).await.unwrap() });
    let (s, u) = (stop.clone(), url.clone());
    let verifier_cache = data.path().join("verifier");
    tokio::spawn(async move {
        let cfg = VerifierDaemonConfig {
            coordinator: u,
            token: Some(VERIFIER.into()),
            key: SecretKey::generate(),
            name: "verifier".into(),
            slots: 1,
            cache_dir: verifier_cache,
            metrics_listen: None,
        };
        run_verifier(
            cfg,
            move |_| {
                let bus = bus.clone();
                async move { Ok(bus) }
            },
            Arc::new(StubFactory::default()),
            s,
        )
        .await
        .unwrap()
    });
    let farm = Farm {
        url,
        http: tessera_api::client::http_client_builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        stop,
        _data: data,
    };
    // Up, and the verifier registered (a submission needs one).
    for _ in 0..400 {
        let (status, body) = farm
            .send("post", "/v1/jobs/estimate", STUDIO, Some(b"{}".to_vec()))
            .await;
        // 400 (the body is not a submission) once the API answers; the verifier's
        // registration is awaited by `estimate` below.
        if status == 400 {
            let _ = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    farm
}

impl Farm {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.body(b);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.bytes().await.unwrap().to_vec())
            }
            Err(_) => (0, vec![]),
        }
    }

    async fn json(&self, method: &str, path: &str, token: &str, body: Option<Vec<u8>>) -> Value {
        let (status, body) = self.send(method, path, token, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    async fn upload(&self, token: &str, bytes: &[u8]) -> String {
        let v = self
            .json("post", "/v1/blobs", token, Some(bytes.to_vec()))
            .await;
        v["hash"].as_str().unwrap().to_string()
    }

    async fn balance(&self, token: &str, account: &str) -> i64 {
        let v = self.json("get", "/v1/ledger", token, None).await;
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == account)
            .map_or(0, |a| a["balance"].as_i64().unwrap())
    }

    /// `POST /v1/jobs/estimate` once a verifier is registered (until then it is 409).
    async fn estimate(&self, token: &str, sub: &JobSubmission) -> (u16, Value) {
        for _ in 0..400 {
            let (status, body) = self
                .send(
                    "post",
                    "/v1/jobs/estimate",
                    token,
                    Some(serde_json::to_vec(sub).unwrap()),
                )
                .await;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let unregistered = status == 409
                && v["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("no verifier"));
            if !unregistered {
                return (status, v);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the verifier never registered");
    }
}

fn submission(hash: &str, frame_end: u32, width: u32) -> JobSubmission {
    JobSubmission {
        scene: SceneListing {
            entry: "scene.glb".into(),
            files: [("scene.glb".to_string(), hash.to_string())]
                .into_iter()
                .collect(),
        },
        settings: RenderSettings {
            width,
            height: 32,
            spp: 4,
            max_bounces: 1,
            seed: 1,
            camera: None,
            frame_rate: Default::default(),
        },
        frame_start: 0,
        frame_end,
        tier: "priority".into(),
        tile_size: Some(16),
        batch_size: Some(2),
        requirements: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_coordinator_hashes_is_stored_like_a_put_and_only_for_its_client() {
    let farm = start().await;
    let bytes = b"scene bytes the add-on cannot hash itself".to_vec();
    let want = blake3::hash(&bytes).to_hex().to_string();
    let (status, body) = farm
        .send("post", "/v1/blobs", STUDIO, Some(bytes.clone()))
        .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, json!({"hash": want, "size": bytes.len(), "fresh": true}));
    // Again: the client had it.
    let (status, body) = farm
        .send("post", "/v1/blobs", STUDIO, Some(bytes.clone()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["fresh"],
        false
    );
    // Its bytes, to its client alone; HEAD says whether it is there without the bytes.
    let path = format!("/v1/blobs/{want}");
    assert_eq!(
        farm.send("get", &path, STUDIO, None).await,
        (200, bytes.clone())
    );
    assert_eq!(farm.send("head", &path, STUDIO, None).await.0, 200);
    assert_eq!(farm.send("get", &path, OTHER, None).await.0, 404);
    assert_eq!(farm.send("head", &path, OTHER, None).await.0, 404);
    // Another client uploading the same bytes gets it as its own (fresh for it).
    let v = farm
        .json("post", "/v1/blobs", OTHER, Some(bytes.clone()))
        .await;
    assert_eq!(
        (v["hash"].as_str(), v["fresh"].as_bool()),
        (Some(want.as_str()), Some(true))
    );
    assert_eq!(farm.send("get", &path, OTHER, None).await.0, 200);

    // Over the size limit: refused, naming the limit, and nothing stored.
    let big = vec![7u8; MAX_BLOB as usize + 1];
    let (status, body) = farm
        .send("post", "/v1/blobs", STUDIO, Some(big.clone()))
        .await;
    assert_eq!(status, 413);
    let message = serde_json::from_slice::<Value>(&body).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("max_blob_bytes: 4096"), "{message}");
    let big_path = format!("/v1/blobs/{}", blake3::hash(&big).to_hex());
    assert_eq!(farm.send("get", &big_path, STUDIO, None).await.0, 404);

    // Over the client's quota: refused once hashed, naming the quota; a blob it has
    // already is taken again whatever its quota.
    let used = bytes.len() as u64;
    let first = vec![1u8; MAX_BLOB as usize];
    farm.upload(STUDIO, &first).await;
    assert!(used + 2 * MAX_BLOB > QUOTA);
    let second = vec![2u8; MAX_BLOB as usize];
    let (status, body) = farm
        .send("post", "/v1/blobs", STUDIO, Some(second.clone()))
        .await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("max_client_bytes: 6000"));
    let second_path = format!("/v1/blobs/{}", blake3::hash(&second).to_hex());
    assert_eq!(farm.send("get", &second_path, STUDIO, None).await.0, 404);
    assert_eq!(
        farm.send("post", "/v1/blobs", STUDIO, Some(first)).await.0,
        200
    );
    // The other client's quota is its own.
    assert_eq!(
        farm.send("post", "/v1/blobs", OTHER, Some(second)).await.0,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_is_the_escrow_its_submission_takes_and_writes_nothing() {
    let farm = start().await;
    let hash = farm.upload(STUDIO, b"a scene").await;
    let sub = submission(&hash, 2, 40);
    let ledger_before = farm.json("get", "/v1/ledger", STUDIO, None).await;
    let (status, estimate) = farm.estimate(STUDIO, &sub).await;
    assert_eq!(status, 200, "{estimate}");
    // 40×32 in tiles of 16: 3×2 = 6 tiles a frame, 3 frames.
    assert_eq!(estimate["tiles"], 18);
    assert_eq!(estimate["frames"], 3);
    assert_eq!(estimate["tier"], "priority");
    assert_eq!(estimate["tile_size"], 16);
    assert_eq!(
        estimate["scene_hash"].as_str(),
        Some(blake3::hash(b"a scene").to_hex().as_str())
    );
    let price = estimate["price_micro"].as_u64().unwrap();
    assert!(price > 0);
    // Nothing written: no job, the same ledger.
    assert_eq!(farm.json("get", "/v1/jobs", STUDIO, None).await, json!([]));
    assert_eq!(
        farm.json("get", "/v1/ledger", STUDIO, None).await,
        ledger_before
    );
    // Each tile costs ⌈pixels × spp × 1,000 µcr per million samples × the tier's
    // multiplier⌉: a frame has four 16×16 tiles and two 8×16 ones, 4 samples each.
    let tile = |pixels: u64, multiplier: u64| (pixels * 4 * 1000 * multiplier).div_ceil(1_000_000);
    let frame = |m: u64| 4 * tile(256, m) + 2 * tile(128, m);
    assert_eq!(price, 3 * frame(2), "priority is 2×");
    let mut economy = sub.clone();
    economy.tier = "economy".into();
    let (_, cheaper) = farm.estimate(STUDIO, &economy).await;
    assert_eq!(
        cheaper["price_micro"].as_u64(),
        Some(3 * frame(1)),
        "economy is 1×"
    );

    // The submission takes exactly the estimate into escrow.
    let accepted = farm
        .json(
            "post",
            "/v1/jobs",
            STUDIO,
            Some(serde_json::to_vec(&sub).unwrap()),
        )
        .await;
    let job = accepted["job_id"].as_str().unwrap();
    assert_eq!(accepted["scene_hash"], estimate["scene_hash"]);
    assert_eq!(
        farm.balance(STUDIO, &format!("escrow:{job}")).await,
        price as i64
    );
    assert_eq!(farm.balance(STUDIO, "client:studio").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_refuses_what_its_submission_refuses() {
    let farm = start().await;
    let hash = farm.upload(STUDIO, b"another scene").await;
    let theirs = farm.upload(OTHER, b"their scene").await;
    let good = submission(&hash, 0, 32);
    assert_eq!(farm.estimate(STUDIO, &good).await.0, 200);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let body = |s: &JobSubmission| serde_json::to_vec(s).unwrap();
    let mut s = good.clone();
    s.tier = "platinum".into();
    cases.push(("an unknown tier", body(&s)));
    cases.push(("another client's blob", body(&submission(&theirs, 0, 32))));
    let mut s = good.clone();
    s.scene.entry = "missing.glb".into();
    cases.push(("an entry that is not listed", body(&s)));
    let mut s = good.clone();
    s.frame_start = 3;
    cases.push(("frames backwards", body(&s)));
    let mut s = good.clone();
    s.settings.spp = 0;
    cases.push(("no samples", body(&s)));
    let mut s = good.clone();
    s.settings.camera = Some("Nowhere".into());
    cases.push(("a camera the scene lacks", body(&s)));
    // More than the balance and overdraft cover: 402 with the shortfall named.
    // (256×256 pixels × 16 samples at 2 µcr per 1,000 samples: 2,097 µcr.)
    let mut s = submission(&hash, 0, 256);
    s.settings.height = 256;
    s.settings.spp = 16;
    s.tile_size = Some(64);
    cases.push(("an escrow over the overdraft", body(&s)));
    cases.push((
        "a body that is not a submission",
        b"{\"scene\": 3}".to_vec(),
    ));
    for (what, bytes) in cases {
        let estimate = farm
            .send("post", "/v1/jobs/estimate", STUDIO, Some(bytes.clone()))
            .await;
        let submit = farm.send("post", "/v1/jobs", STUDIO, Some(bytes)).await;
        assert!(
            estimate.0 >= 400,
            "{what}: the estimate answered {}",
            estimate.0
        );
        assert_eq!(
            (estimate.0, String::from_utf8_lossy(&estimate.1)),
            (submit.0, String::from_utf8_lossy(&submit.1)),
            "{what}: the estimate refuses as the submission does"
        );
    }
    // None of them made a job.
    assert_eq!(farm.json("get", "/v1/jobs", STUDIO, None).await, json!([]));
}
