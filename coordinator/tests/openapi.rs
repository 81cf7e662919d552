//! The HTTP API against its OpenAPI document. A coordinator (in-process bus), a stand-in
//! node and a verifier run on a loopback port; the test drives every documented route
//! over real HTTP as clients, a worker and the operator would, including the refusals,
//! and checks each answer against `/v1/openapi.json`: its status must be documented for
//! its route, its content type must be the documented one, and its JSON body must
//! validate against the documented schema (with no field the schema does not name). The
//! document itself must validate against the OAS 3.1 schema, and every documented
//! operation must have been exercised.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera_api::client::ApiClient;
use tessera_api::{JobSubmission, SceneListing};
use tessera_bus::InProcessBus;
use tessera_coordinator::daemon::{self, DaemonConfig, InspectedScene, SceneInspector};
use tessera_node::daemon::{run_node, NodeDaemonConfig, DEFAULT_HEARTBEAT};
use tessera_node::worker::StubFactory;
use tessera_protocol::keys::SecretKey;
use tessera_protocol::statements::Role;
use tessera_protocol::wire::Capabilities;
use tessera_protocol::RenderSettings;
use tessera_verifier::daemon::{run_verifier, VerifierDaemonConfig};
use tokio_util::sync::CancellationToken;

const STUDIO: &str = "studio-token-0123456789";
const OTHER: &str = "other-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const VERIFIER: &str = "verifier-token-0123456789";

/// The document, and what of it the test has exercised.
struct Checker {
    http: reqwest::Client,
    url: String,
    doc: Value,
    seen: BTreeSet<(String, String)>,
}

/// An answer: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl Checker {
    /// The documented path template `path` is an instance of, for `method`: literal
    /// segments beat `{parameters}`.
    fn template(&self, method: &str, path: &str) -> Option<String> {
        let want: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, String)> = None;
        for (t, ops) in self.doc["paths"].as_object().unwrap() {
            if ops.get(method).is_none() {
                continue;
            }
            let segs: Vec<&str> = t.split('/').collect();
            if segs.len() != want.len() {
                continue;
            }
            let mut literal = 0;
            let fits = segs.iter().zip(&want).all(|(s, w)| {
                if s.starts_with('{') {
                    true
                } else if s == w {
                    literal += 1;
                    true
                } else {
                    false
                }
            });
            if fits && best.as_ref().is_none_or(|(l, _)| literal > *l) {
                best = Some((literal, t.clone()));
            }
        }
        best.map(|(_, t)| t)
    }

    /// Send a request and check its answer against the document.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await.expect("the coordinator answers");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.bytes().await.unwrap().to_vec();
        self.check(method, path, status, content_type.as_deref(), &body);
        Answer { status, body }
    }

    fn check(
        &mut self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        let what = format!("{} {path} → {status}", method.to_uppercase());
        let template = self
            .template(method, path)
            .unwrap_or_else(|| panic!("{what}: no documented operation"));
        self.seen.insert((method.to_string(), template.clone()));
        let op = &self.doc["paths"][&template][method];
        let response = op["responses"].get(status.to_string()).unwrap_or_else(|| {
            panic!(
                "{what}: status {status} is not documented for {template}: {}",
                String::from_utf8_lossy(body)
            )
        });
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(body.is_empty(), "{what}: a body where none is documented");
            return;
        };
        let ct = content_type.unwrap_or_else(|| panic!("{what}: no content type"));
        let media = ct.split(';').next().unwrap().trim();
        let documented = content.get(media).unwrap_or_else(|| {
            panic!(
                "{what}: content type {media} not documented ({:?})",
                content.keys().collect::<Vec<_>>()
            )
        });
        if media != "application/json" {
            return;
        }
        let value: Value =
            serde_json::from_slice(body).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        let mut schema = documented["schema"].clone();
        let components = strict(self.doc["components"].clone());
        schema
            .as_object_mut()
            .unwrap()
            .insert("components".into(), components);
        let validator = jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("{what}: the documented schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the body does not match the document: {errors:?}\nbody: {value}"
        );
    }
}

/// The components with every object schema closed (`additionalProperties: false`), so
/// that an answer with a field the document does not name fails.
fn strict(mut v: Value) -> Value {
    fn close(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), Value::Bool(false));
                }
                for (_, x) in map.iter_mut() {
                    close(x);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    close(&mut v);
    v
}

/// A coordinator, one stand-in node and one stand-in verifier on an in-process bus.
async fn start_farm(data: &std::path::Path, stop: &CancellationToken) -> String {
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
    let cfg = DaemonConfig {
        listen: listener.local_addr().unwrap(),
        data_dir: data.join("coordinator"),
        api_tokens: vec![format!("studio={STUDIO}"), format!("other={OTHER}")],
        admin_token: Some(ADMIN.into()),
        verifier_token: Some(VERIFIER.into()),
        scene_inspector: Some(inspector),
        namespace: "openapi".into(),
        challenge_window_secs: 0,
        ..DaemonConfig::default()
    };
    let bus = InProcessBus::new();
    let (b, s) = (bus.clone(), stop.clone());
    tokio::spawn(async move { daemon::run_with_bus(cfg, b, listener, s).await.unwrap() });
    let (b, s, u) = (bus.clone(), stop.clone(), url.clone());
    let node_cache = data.join("node");
    tokio::spawn(async move {
        let cfg = NodeDaemonConfig {
            coordinator: u,
            token: None,
            key: SecretKey::generate(),
            name: "node".into(),
            slots: 1,
            cache_dir: node_cache,
            heartbeat: DEFAULT_HEARTBEAT,
            dishonest: None,
            metrics_listen: None,
        };
        let bus = b.clone();
        run_node(
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
    let (b, s, u) = (bus, stop.clone(), url.clone());
    let verifier_cache = data.join("verifier");
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
        let bus = b.clone();
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
    url
}

fn submission(hash: &str, frame_end: u32) -> Vec<u8> {
    serde_json::to_vec(&JobSubmission {
        scene: SceneListing {
            entry: "scene.glb".into(),
            files: [("scene.glb".to_string(), hash.to_string())]
                .into_iter()
                .collect(),
        },
        settings: RenderSettings {
            width: 32,
            height: 32,
            spp: 4,
            max_bounces: 1,
            seed: 1,
            camera: None,
            frame_rate: Default::default(),
        },
        frame_start: 0,
        frame_end,
        tier: "economy".into(),
        tile_size: Some(16),
        batch_size: Some(2),
        requirements: Default::default(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_what_the_openapi_document_says() {
    let data = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let url = start_farm(data.path(), &stop).await;
    let http = tessera_api::client::http_client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // The document is served to any valid token, and is valid OpenAPI 3.1.
    let mut c = Checker {
        http,
        url: url.clone(),
        doc: json!({}),
        seen: BTreeSet::new(),
    };
    let doc: Value = loop {
        match c
            .http
            .get(format!("{url}/v1/openapi.json"))
            .bearer_auth(STUDIO)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => break r.json().await.unwrap(),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
    let oas: Value = serde_json::from_str(include_str!("data/oas-3.1-schema.json")).unwrap();
    let oas = jsonschema::draft202012::new(&oas).expect("the OAS 3.1 schema compiles");
    let errors: Vec<String> = oas
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the document is not valid OpenAPI 3.1: {errors:?}"
    );
    assert_eq!(
        doc,
        serde_json::to_value(tessera_coordinator::daemon::http::openapi()).unwrap(),
        "the served document is the generated one"
    );
    c.doc = doc;
    let a = c.call("get", "/v1/openapi.json", Some(ADMIN), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        c.call("get", "/v1/openapi.json", None, None).await.status,
        401
    );

    // Registration, as a worker does it; refused when it does not check out.
    assert_eq!(
        c.call("post", "/v1/register/challenge", None, None)
            .await
            .status,
        200
    );
    let bad = c
        .call(
            "post",
            "/v1/register",
            None,
            Some(("application/json", b"{}".to_vec())),
        )
        .await;
    assert!(bad.status >= 400);
    let api = ApiClient::new(&url, None).unwrap();
    let worker = SecretKey::generate();
    let caps = Capabilities {
        class: tessera_node::stub::HashRenderer::stub_class(),
        memory_bytes: 0,
        slots: 1,
        software: "test".into(),
    };
    let session = api
        .register_worker(Role::Node, "probe", &worker, caps, None)
        .await
        .unwrap()
        .session;

    // The operator waits for the farm's node and verifier, then credits the client.
    loop {
        let a = c.call("get", "/v1/nodes", Some(ADMIN), None).await;
        assert_eq!(a.status, 200);
        if a.json().as_array().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.call("get", "/v1/nodes", Some(STUDIO), None).await.status,
        403
    );
    let credit =
        json!({"account": "client:studio", "amount": 1_000_000_000u64, "reference": "openapi"});
    let a = c
        .call(
            "post",
            "/v1/credits",
            Some(ADMIN),
            Some(("application/json", credit.to_string().into_bytes())),
        )
        .await;
    assert_eq!(a.status, 200);
    let credit = json!({"account": "nobody:x", "amount": 1u64, "reference": "bad"});
    assert_eq!(
        c.call(
            "post",
            "/v1/credits",
            Some(ADMIN),
            Some(("application/json", credit.to_string().into_bytes()))
        )
        .await
        .status,
        422
    );

    // A scene upload: stored, stored again, refused when the name is not its hash.
    let scene = b"not really a glTF file; the test's inspector takes anything".to_vec();
    let hash = blake3::hash(&scene).to_hex().to_string();
    let path = format!("/v1/blobs/{hash}");
    assert_eq!(
        c.call(
            "put",
            &path,
            Some(STUDIO),
            Some(("application/octet-stream", scene.clone()))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        c.call(
            "put",
            &path,
            Some(STUDIO),
            Some(("application/octet-stream", scene.clone()))
        )
        .await
        .status,
        200
    );
    let wrong = format!("/v1/blobs/{}", "ab".repeat(32));
    assert_eq!(
        c.call(
            "put",
            &wrong,
            Some(STUDIO),
            Some(("application/octet-stream", scene.clone()))
        )
        .await
        .status,
        422
    );
    assert_eq!(c.call("get", &path, Some(STUDIO), None).await.status, 200);
    assert_eq!(c.call("get", &path, Some(OTHER), None).await.status, 404);
    // An upload the coordinator hashes: stored, then stored again.
    let texture = b"a texture the client cannot hash".to_vec();
    for status in [201, 200] {
        let a = c
            .call(
                "post",
                "/v1/blobs",
                Some(STUDIO),
                Some(("application/octet-stream", texture.clone())),
            )
            .await;
        assert_eq!(a.status, status);
        assert_eq!(
            a.json()["hash"].as_str(),
            Some(blake3::hash(&texture).to_hex().as_str())
        );
    }

    // The price of a job before it is submitted, and a refusal.
    let a = c
        .call(
            "post",
            "/v1/jobs/estimate",
            Some(STUDIO),
            Some(("application/json", submission(&hash, 0))),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["price_micro"].as_u64().unwrap() > 0);
    assert_eq!(
        c.call(
            "post",
            "/v1/jobs/estimate",
            Some(OTHER),
            Some(("application/json", submission(&hash, 0)))
        )
        .await
        .status,
        422,
        "another client's blob is not this client's scene"
    );

    // Jobs: one rendered to the end, one controlled, refusals.
    let a = c
        .call(
            "post",
            "/v1/jobs",
            Some(STUDIO),
            Some(("application/json", submission(&hash, 0))),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let job = a.json()["job_id"].as_str().unwrap().to_string();
    let scene_hash = a.json()["scene_hash"].as_str().unwrap().to_string();
    assert_eq!(
        c.call(
            "post",
            "/v1/jobs",
            Some(STUDIO),
            Some(("application/json", submission("zz", 0)))
        )
        .await
        .status,
        400
    );
    assert_eq!(
        c.call(
            "get",
            &format!("/v1/scenes/{scene_hash}"),
            Some(&session),
            None
        )
        .await
        .status,
        200
    );
    loop {
        let a = c
            .call("get", &format!("/v1/jobs/{job}"), Some(STUDIO), None)
            .await;
        assert_eq!(a.status, 200);
        let state = a.json()["state"].as_str().unwrap().to_string();
        assert_ne!(state, "failed");
        if state == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.call("get", &format!("/v1/jobs/{job}"), Some(OTHER), None)
            .await
            .status,
        404
    );
    assert_eq!(
        c.call("get", "/v1/jobs/nothex", Some(STUDIO), None)
            .await
            .status,
        400
    );
    assert_eq!(
        c.call("get", "/v1/jobs", Some(STUDIO), None).await.status,
        200
    );
    assert_eq!(
        c.call("get", &format!("/v1/jobs/{job}/bundle"), Some(STUDIO), None)
            .await
            .status,
        200
    );
    assert_eq!(
        c.call(
            "get",
            &format!("/v1/jobs/{job}/frames/0"),
            Some(STUDIO),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.call(
            "get",
            &format!("/v1/jobs/{job}/frames/9"),
            Some(STUDIO),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        c.call(
            "post",
            &format!("/v1/jobs/{job}/dispute"),
            Some(STUDIO),
            None
        )
        .await
        .status,
        409
    );

    let a = c
        .call(
            "post",
            "/v1/jobs",
            Some(STUDIO),
            Some(("application/json", submission(&hash, 3))),
        )
        .await;
    let second = a.json()["job_id"].as_str().unwrap().to_string();
    let a = c
        .call(
            "post",
            &format!("/v1/jobs/{second}/pause"),
            Some(STUDIO),
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    let a = c
        .call(
            "post",
            &format!("/v1/jobs/{second}/priority"),
            Some(STUDIO),
            Some(("application/json", br#"{"priority": 3}"#.to_vec())),
        )
        .await;
    assert_eq!(a.status, 200);
    let task = format!("{second}-b0");
    let a = c
        .call(
            "get",
            &format!("/v1/tasks/{task}/wanted"),
            Some(&session),
            None,
        )
        .await;
    assert_eq!(
        (a.status, a.json()["wanted"].as_bool()),
        (200, Some(false)),
        "a paused job's task"
    );
    assert_eq!(
        c.call(
            "get",
            &format!("/v1/tasks/{task}/wanted"),
            Some(STUDIO),
            None
        )
        .await
        .status,
        403
    );
    let body = json!({"jobs": [second, job], "action": "cancel"})
        .to_string()
        .into_bytes();
    let a = c
        .call(
            "post",
            "/v1/jobs/control",
            Some(STUDIO),
            Some(("application/json", body)),
        )
        .await;
    assert_eq!(a.status, 200);
    let outcomes = a.json();
    assert_eq!(outcomes[0]["state"], "cancelled");
    assert!(outcomes[1]["error"].as_str().unwrap().contains("is done"));
    assert_eq!(
        c.call(
            "post",
            &format!("/v1/jobs/{second}/resume"),
            Some(STUDIO),
            None
        )
        .await
        .status,
        409
    );
    assert_eq!(
        c.call(
            "post",
            &format!("/v1/jobs/{second}/explode"),
            Some(STUDIO),
            None
        )
        .await
        .status,
        422
    );
    assert_eq!(
        c.call(
            "post",
            &format!("/v1/jobs/{second}/cancel"),
            Some(OTHER),
            None
        )
        .await
        .status,
        404
    );
    let body = json!({"jobs": [second], "action": "priority"})
        .to_string()
        .into_bytes();
    assert_eq!(
        c.call(
            "post",
            "/v1/jobs/control",
            Some(STUDIO),
            Some(("application/json", body))
        )
        .await
        .status,
        422
    );

    // Webhooks: added, listed, their deliveries, removed; refusals.
    let hook = json!({"url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef0123", "events": ["job.done", "job.cancelled"]});
    let a = c
        .call(
            "post",
            "/v1/webhooks",
            Some(STUDIO),
            Some(("application/json", hook.to_string().into_bytes())),
        )
        .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let hook_id = a.json()["id"].as_str().unwrap().to_string();
    let bad = json!({"url": "ftp://x", "secret": "0123456789abcdef0123", "events": ["job.done"]});
    let a = c
        .call(
            "post",
            "/v1/webhooks",
            Some(STUDIO),
            Some(("application/json", bad.to_string().into_bytes())),
        )
        .await;
    assert_eq!(a.status, 422);
    assert_eq!(
        c.call("get", "/v1/webhooks", Some(STUDIO), None)
            .await
            .status,
        200
    );
    let deliveries = format!("/v1/webhooks/{hook_id}/deliveries");
    assert_eq!(
        c.call("get", &deliveries, Some(STUDIO), None).await.status,
        200
    );
    assert_eq!(
        c.call("get", &deliveries, Some(OTHER), None).await.status,
        404
    );
    let one = format!("/v1/webhooks/{hook_id}");
    assert_eq!(c.call("delete", &one, Some(OTHER), None).await.status, 404);
    assert_eq!(c.call("delete", &one, Some(STUDIO), None).await.status, 200);

    // Balances: a client's own accounts, the operator's whole ledger.
    let a = c.call("get", "/v1/ledger", Some(STUDIO), None).await;
    assert_eq!(a.status, 200);
    assert!(a.json()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| !x["account"].as_str().unwrap().starts_with("node:")));
    let a = c.call("get", "/v1/ledger", Some(ADMIN), None).await;
    assert_eq!((a.status, a.json()["total"].as_i64()), (200, Some(0)));

    // Every documented operation was exercised.
    let mut documented = BTreeSet::new();
    for (t, ops) in c.doc["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&m.as_str()) {
                documented.insert((m.clone(), t.clone()));
            }
        }
    }
    let missed: Vec<_> = documented.difference(&c.seen).collect();
    assert!(
        missed.is_empty(),
        "documented but not exercised: {missed:?}"
    );
    // Every documented operation but registration refuses a request without a token,
    // and one with a token nobody was given, before reading anything.
    let operations: Vec<(String, String)> = documented.iter().cloned().collect();
    for (method, template) in &operations {
        let public = template.starts_with("/v1/register");
        let path = template
            .replace("{id}", &job)
            .replace("{hash}", &hash)
            .replace("{frame}", "0")
            .replace("{action}", "pause");
        for token in [None, Some("not-a-token-anyone-was-given")] {
            let a = c.call(method, &path, token, None).await;
            if public {
                assert_ne!(a.status, 401, "{method} {path} is public");
            } else {
                assert_eq!(a.status, 401, "{method} {path} with token {token:?}");
            }
        }
    }
    // And every `/v1/` route the router serves is documented.
    let served = routes(include_str!("../src/daemon/http.rs"));
    assert!(served.len() >= documented.len(), "{served:?}");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    stop.cancel();
}

/// The `(method, path)` of every `/v1/` route in the router's source: each
/// `.route("/v1/…", get(handler).post(other))`.
fn routes(source: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for piece in source.split(".route(\"").skip(1) {
        let Some((path, rest)) = piece.split_once('"') else {
            continue;
        };
        if !path.starts_with("/v1/") {
            continue;
        }
        // The method router: up to the `)` that closes `.route(`.
        let mut depth = 1;
        let mut end = rest.len();
        for (i, ch) in rest.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let router = &rest[..end];
        for m in ["get", "post", "put", "delete", "patch"] {
            let call = format!("{m}(");
            let found = router.match_indices(&call).any(|(i, _)| {
                i == 0 || !router[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if found {
                out.insert((m.to_string(), path.to_string()));
            }
        }
    }
    out
}
