//! The web dashboard over HTTP (`/ui/`), in process: the daemon's router
//! (`daemon::web::standalone`, the API and the dashboard) over a second `Service` on the
//! store file that a test [`Farm`] drives with virtual time. Covers login and sessions,
//! that every private route refuses a request without a session, CSRF, tenancy (pages,
//! preview, downloads, the job list and the event stream), resuming the event stream
//! from `Last-Event-ID`, bulk cancel through the dashboard with the ledger summing to
//! zero, and the tile grid of a job driven through render, verification and a re-render.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use tessera_coordinator::daemon::web::standalone;
use tessera_coordinator::daemon::DaemonConfig;
use tower::ServiceExt;

const STUDIO: &str = "tok-studio";
const RIVAL: &str = "tok-rival";
const ADMIN: &str = "tok-admin";

/// The dashboard over the farm's store.
fn app(f: &Farm) -> Router {
    let svc = Service::new(
        Store::open(&f.db).unwrap(),
        SecretKey::from_seed(&f.coordinator_seed),
        f.svc.config().clone(),
    );
    let cfg = DaemonConfig {
        api_tokens: vec![format!("studio={STUDIO}"), format!("rival={RIVAL}")],
        admin_token: Some(ADMIN.into()),
        data_dir: f._dir.path().to_path_buf(),
        ..DaemonConfig::default()
    };
    standalone(svc, &cfg)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, format!("tessera_session={c}"));
    }
    r.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Request<Body> {
    let mut r =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, format!("tessera_session={c}"));
    }
    r.body(Body::from(serde_urlencoded::to_string(form).unwrap()))
        .unwrap()
}

/// Log in with `token`: the session cookie's value.
async fn login(app: &Router, token: &str) -> String {
    let a = send(app, post("/ui/login", None, &[("token", token)])).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    let set = a.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    let value = set
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("tessera_session="))
        .expect("the session cookie");
    value.to_string()
}

/// The CSRF token a page's forms carry.
async fn csrf(app: &Router, cookie: &str) -> String {
    let page = send(app, get("/ui/jobs", Some(cookie))).await.text();
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with the CSRF token");
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A job of `client` on the farm's test scene (frames 0–1), funded.
fn submit_for(f: &Farm, client: &str) -> String {
    f.fund(client);
    f.submit_as(client, "economy", (0, 1)).unwrap()
}

/// A farm with a node (key 1) and a verifier (key 2).
fn farm() -> Farm {
    let f = Farm::new();
    f.register(&key(1), "node");
    f.register(&key(2), "verifier");
    f
}

#[tokio::test]
async fn a_token_logs_in_to_an_httponly_strict_cookie_and_logout_ends_the_session() {
    let f = farm();
    let app = app(&f);
    let wrong = send(&app, post("/ui/login", None, &[("token", "nope")])).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));
    assert!(wrong.text().contains("unknown token"));

    let a = send(&app, post("/ui/login", None, &[("token", STUDIO)])).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/ui/jobs");
    let set = a.headers[header::SET_COOKIE].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    let cookie = login(&app, STUDIO).await;
    assert_eq!(cookie.len(), 64);
    let jobs = send(&app, get("/ui/jobs", Some(&cookie))).await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert!(
        jobs.text().contains("client <b>studio</b>"),
        "{}",
        jobs.text()
    );
    assert_eq!(jobs.headers[header::CACHE_CONTROL], "no-store");
    assert!(jobs.headers.contains_key(header::CONTENT_SECURITY_POLICY));

    // The operator's token opens an operator session, which sees the nodes.
    let admin = login(&app, ADMIN).await;
    let nodes = send(&app, get("/ui/nodes", Some(&admin))).await;
    assert_eq!(nodes.status, StatusCode::OK);
    assert!(nodes.text().contains(&key(1).public().short()));
    // A client does not.
    let refused = send(&app, get("/ui/nodes", Some(&cookie))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let token = csrf(&app, &cookie).await;
    let out = send(&app, post("/ui/logout", Some(&cookie), &[("csrf", &token)])).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = send(&app, get("/ui/jobs", Some(&cookie))).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "the session ended");
    assert_eq!(after.headers[header::LOCATION], "/ui/login");
}

#[tokio::test]
async fn every_private_route_refuses_a_request_without_a_valid_session() {
    let f = farm();
    let job = f.submit();
    let app = app(&f);
    let routes: Vec<(&str, String)> = vec![
        ("GET", "/ui".into()),
        ("GET", "/ui/".into()),
        ("GET", "/ui/jobs".into()),
        ("GET", format!("/ui/jobs/{job}")),
        ("GET", format!("/ui/jobs/{job}/live")),
        ("GET", format!("/ui/jobs/{job}/frames/0/preview.png")),
        ("GET", format!("/ui/jobs/{job}/download/bundle.json")),
        ("GET", format!("/ui/jobs/{job}/download/frame-0.png")),
        ("GET", format!("/ui/jobs/{job}/download/frame-0.rgba16f")),
        ("GET", "/ui/nodes".into()),
        ("GET", "/ui/ledger".into()),
        ("GET", "/ui/disputes".into()),
        ("GET", "/ui/events".into()),
        ("GET", format!("/ui/events?job={job}&after=0")),
        ("POST", "/ui/jobs/actions".into()),
        ("POST", "/ui/logout".into()),
    ];
    let forged = "ab".repeat(32);
    for (method, path) in &routes {
        for cookie in [None, Some(forged.as_str()), Some("short")] {
            let form = [("action", "cancel"), ("job", job.as_str())];
            let req = if *method == "GET" {
                get(path, cookie)
            } else {
                post(path, cookie, &form)
            };
            let a = send(&app, req).await;
            let events = path.starts_with("/ui/events");
            if events {
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            } else {
                assert_eq!(a.status, StatusCode::SEE_OTHER, "{method} {path}");
                assert_eq!(a.headers[header::LOCATION], "/ui/login", "{method} {path}");
            }
            // htmx asks for fragments: a 401, not a redirect it would swap in.
            let mut req = if *method == "GET" {
                get(path, cookie)
            } else {
                post(path, cookie, &form)
            };
            req.headers_mut()
                .insert("hx-request", "true".parse().unwrap());
            let a = send(&app, req).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "htmx {method} {path}");
        }
    }
    assert_eq!(
        state(&f, &job),
        "queued",
        "no refused request changed the job"
    );
    // The login page and the compiled-in assets need no session.
    assert_eq!(
        send(&app, get("/ui/login", None)).await.status,
        StatusCode::OK
    );
    for asset in ["htmx.min.js", "dash.css", "dash.js"] {
        let a = send(&app, get(&format!("/ui/static/{asset}"), None)).await;
        assert_eq!(a.status, StatusCode::OK, "{asset}");
        assert!(a.body.len() > 500, "{asset}");
        assert!(a.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
    }
    let missing = send(&app, get("/ui/static/secret.txt", None)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    let f = farm();
    let job = f.submit();
    let app = app(&f);
    let cookie = login(&app, STUDIO).await;
    let other = login(&app, STUDIO).await;
    let (mine, theirs) = (csrf(&app, &cookie).await, csrf(&app, &other).await);
    assert_ne!(mine, theirs, "each session has its own token");
    for form in [
        vec![("action", "cancel"), ("job", job.as_str())],
        vec![("action", "cancel"), ("job", job.as_str()), ("csrf", "")],
        vec![
            ("action", "cancel"),
            ("job", job.as_str()),
            ("csrf", "0123"),
        ],
        vec![
            ("action", "cancel"),
            ("job", job.as_str()),
            ("csrf", theirs.as_str()),
        ],
    ] {
        let a = send(&app, post("/ui/jobs/actions", Some(&cookie), &form)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(a.text().contains("CSRF"));
    }
    let a = send(
        &app,
        post("/ui/logout", Some(&cookie), &[("csrf", theirs.as_str())]),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "logout needs the token too"
    );
    assert_eq!(state(&f, &job), "queued");
    // The header htmx sends works as the field does.
    let mut req = post(
        "/ui/jobs/actions",
        Some(&cookie),
        &[("action", "pause"), ("job", job.as_str())],
    );
    req.headers_mut()
        .insert("x-csrf-token", mine.parse().unwrap());
    req.headers_mut()
        .insert("hx-request", "true".parse().unwrap());
    let a = send(&app, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.text().contains("data-state=\"paused\""), "{}", a.text());
    assert_eq!(state(&f, &job), "paused");
}

/// Read Server-Sent Events from `body` until `want` events arrived (or fail after a
/// deadline): (id, event name, data) of each.
async fn read_events(body: Body, want: usize) -> Vec<(i64, String, serde_json::Value)> {
    let mut body = body;
    let mut text = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < want {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} events came: {out:?}", out.len()))
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (None, String::new(), None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<i64>().unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, name, data));
            }
        }
    }
    out
}

async fn events(app: &Router, cookie: &str, path: &str, last: Option<i64>) -> Body {
    let mut req = get(path, Some(cookie));
    if let Some(l) = last {
        req.headers_mut()
            .insert("last-event-id", l.to_string().parse().unwrap());
    }
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    res.into_body()
}

/// Deliver every task of the job's first drain with node key 1; returns the tasks.
fn render_all(f: &Farm) -> Vec<RenderTask> {
    let ts = tasks(&f.drain());
    let node = f.node(&key(1), None);
    for t in &ts {
        assert_eq!(
            f.svc.handle_result(&result_body(&node, t), f.now).unwrap(),
            Handled::Done
        );
    }
    ts
}

#[tokio::test]
async fn a_client_sees_nothing_of_another_clients_jobs() {
    let f = farm();
    let theirs = f.submit(); // client "studio"
    render_all(&f);
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &theirs), "done");
    let mine = submit_for(&f, "rival");
    let app = app(&f);
    let rival = login(&app, RIVAL).await;
    for path in [
        format!("/ui/jobs/{theirs}"),
        format!("/ui/jobs/{theirs}/live"),
        format!("/ui/jobs/{theirs}/frames/0/preview.png"),
        format!("/ui/jobs/{theirs}/download/bundle.json"),
        format!("/ui/jobs/{theirs}/download/frame-0.png"),
        format!("/ui/jobs/{theirs}/download/frame-1.rgba16f"),
        format!("/ui/events?job={theirs}"),
    ] {
        let a = send(&app, get(&path, Some(&rival))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.text());
        assert!(!a.text().contains("studio"), "{path}");
    }
    // The owner gets the same downloads.
    let studio = login(&app, STUDIO).await;
    let png = send(
        &app,
        get(
            &format!("/ui/jobs/{theirs}/download/frame-0.png"),
            Some(&studio),
        ),
    )
    .await;
    assert_eq!(png.status, StatusCode::OK);
    let img = image::load_from_memory(&png.body).unwrap();
    assert_eq!((img.width(), img.height()), (40, 24));
    let raw = send(
        &app,
        get(
            &format!("/ui/jobs/{theirs}/download/frame-1.rgba16f"),
            Some(&studio),
        ),
    )
    .await;
    assert_eq!(raw.body, f.svc.frame(&theirs, 1).unwrap());
    let bundle = send(
        &app,
        get(
            &format!("/ui/jobs/{theirs}/download/bundle.json"),
            Some(&studio),
        ),
    )
    .await;
    assert_eq!(bundle.status, StatusCode::OK);
    let parsed: tessera_protocol::bundle::ProofBundle =
        serde_json::from_slice(&bundle.body).unwrap();
    assert!(audit_bundle(&parsed, None).passed());

    // The list shows the rival its own job only.
    let list = send(&app, get("/ui/jobs", Some(&rival))).await.text();
    assert!(list.contains(&mine[..12]), "{list}");
    assert!(!list.contains(&theirs[..12]), "{list}");
    let list = send(&app, get("/ui/jobs", Some(&studio))).await.text();
    assert!(list.contains(&theirs[..12]) && !list.contains(&mine[..12]));
    // A bulk action naming the other's job: "does not exist", nothing changes.
    let token = csrf(&app, &rival).await;
    let a = send(
        &app,
        post(
            "/ui/jobs/actions",
            Some(&rival),
            &[("csrf", &token), ("action", "cancel"), ("job", &theirs)],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("does not exist"), "{}", a.text());
    assert_eq!(state(&f, &theirs), "done");
    // The rival's event stream carries exactly its own job's events.
    let expected = f
        .svc
        .store()
        .events_after(Some("rival"), None, 0, 10_000)
        .unwrap();
    assert!(!expected.is_empty());
    let everyone = f.svc.store().events_after(None, None, 0, 10_000).unwrap();
    assert!(
        everyone.len() > expected.len(),
        "the studio's job has events too"
    );
    let got = read_events(
        events(&app, &rival, "/ui/events", None).await,
        expected.len(),
    )
    .await;
    let ids: Vec<i64> = got.iter().map(|e| e.0).collect();
    let want: Vec<i64> = expected.iter().map(|e| e.id).collect();
    assert_eq!(ids, want);
    assert!(got.iter().all(|e| e.2["job"] == mine.as_str()), "{got:?}");
}

#[tokio::test]
async fn the_event_stream_resumes_after_the_last_event_id_without_loss() {
    let f = farm();
    let job = f.submit();
    let app = app(&f);
    let cookie = login(&app, STUDIO).await;
    render_all(&f);
    let all = f
        .svc
        .store()
        .events_after(Some("studio"), Some(&job), 0, 10_000)
        .unwrap();
    assert!(all.len() > 8, "{all:?}");
    let kinds: std::collections::BTreeSet<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains("result") && kinds.contains("transfer") && kinds.contains("state"));
    let cut = all[4].id;
    let after: Vec<i64> = all.iter().map(|e| e.id).filter(|id| *id > cut).collect();

    // Reconnecting with Last-Event-ID: exactly the events after it, in order.
    let got = read_events(
        events(&app, &cookie, "/ui/events", Some(cut)).await,
        after.len(),
    )
    .await;
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), after);
    // The header wins over the first connection's query.
    let got = read_events(
        events(
            &app,
            &cookie,
            &format!("/ui/events?job={job}&after=0"),
            Some(cut),
        )
        .await,
        after.len(),
    )
    .await;
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), after);
    // The query alone starts there too.
    let body = events(
        &app,
        &cookie,
        &format!("/ui/events?job={job}&after={cut}"),
        None,
    )
    .await;
    let got = read_events(body, after.len()).await;
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), after);
    assert_eq!(got[0].1, all[5].kind);

    // A stream that is open sees events written after it started: the verdicts.
    let last = all.last().unwrap().id;
    let body = events(&app, &cookie, "/ui/events", Some(last)).await;
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    let later = f
        .svc
        .store()
        .events_after(Some("studio"), None, last, 10_000)
        .unwrap();
    let got = read_events(body, later.len()).await;
    assert_eq!(
        got.iter().map(|e| e.0).collect::<Vec<_>>(),
        later.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let verdict = got
        .iter()
        .find(|e| e.1 == "verdict")
        .expect("a verdict event");
    assert_eq!(verdict.2["data"]["decision"], "pass");
    assert!(verdict.2["data"]["samples"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn bulk_cancel_through_the_dashboard_refunds_and_the_ledger_sums_to_zero() {
    let f = farm();
    let a = f.submit();
    let b = f.submit();
    // Half of the first round is delivered, nothing verified yet.
    let ts = tasks(&f.drain());
    let node = f.node(&key(1), None);
    for t in ts.iter().step_by(2) {
        f.svc.handle_result(&result_body(&node, t), f.now).unwrap();
    }
    let before = f.svc.store().balance("client:studio").unwrap();
    let app = app(&f);
    let cookie = login(&app, STUDIO).await;
    let token = csrf(&app, &cookie).await;
    let page = send(
        &app,
        post(
            "/ui/jobs/actions",
            Some(&cookie),
            &[
                ("csrf", token.as_str()),
                ("action", "cancel"),
                ("job", a.as_str()),
                ("job", b.as_str()),
            ],
        ),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let text = page.text();
    for job in [&a, &b] {
        assert!(
            text.contains(&format!("data-job=\"{job}\" data-state=\"cancelled\"")),
            "{text}"
        );
        assert_eq!(state(&f, job), "cancelled");
        assert_eq!(f.svc.store().balance(&format!("escrow:{job}")).unwrap(), 0);
    }
    assert_eq!(f.svc.store().total().unwrap(), 0, "the ledger sums to zero");
    // Nothing was verified, so every escrow came back.
    let escrowed: u64 = [&a, &b]
        .iter()
        .flat_map(|j| f.svc.store().job_transfers(j).unwrap())
        .filter(|t| t.kind == TransferKind::Escrow)
        .map(|t| t.amount)
        .sum();
    let after = f.svc.store().balance("client:studio").unwrap();
    assert_eq!(after - before, escrowed as i64);
    // A late result is taken and never paid.
    for t in ts.iter().skip(1).step_by(2) {
        f.svc.handle_result(&result_body(&node, t), f.now).unwrap();
    }
    assert_eq!(f.svc.store().total().unwrap(), 0);
    assert_eq!(f.svc.store().balance("client:studio").unwrap(), after);
    let paid = f
        .svc
        .store()
        .job_transfers(&a)
        .unwrap()
        .iter()
        .filter(|t| t.kind == TransferKind::PayOnPass)
        .count();
    assert_eq!(paid, 0);
    // Cancelling again: each job says why not.
    let again = send(
        &app,
        post(
            "/ui/jobs/actions",
            Some(&cookie),
            &[
                ("csrf", token.as_str()),
                ("action", "cancel"),
                ("job", a.as_str()),
            ],
        ),
    )
    .await
    .text();
    assert!(again.contains("li class=\"error\""), "{again}");
    // The operator's session may look but not control.
    let admin = login(&app, ADMIN).await;
    // (Its pages have no job form; the logout form carries the token.)
    let admin_token = csrf(&app, &admin).await;
    let refused = send(
        &app,
        post(
            "/ui/jobs/actions",
            Some(&admin),
            &[
                ("csrf", admin_token.as_str()),
                ("action", "resume"),
                ("job", b.as_str()),
            ],
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

/// Phases of frame `frame`'s tiles as the job page's grid shows them: (tile, phase,
/// round, title).
async fn grid(
    app: &Router,
    cookie: &str,
    job: &str,
    frame: u32,
) -> Vec<(u32, String, u32, String)> {
    let a = send(
        app,
        get(&format!("/ui/jobs/{job}/live?frame={frame}"), Some(cookie)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let html = a.text();
    let attr = |tag: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        let at = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
        tag[at..at + tag[at..].find('"').unwrap()].to_string()
    };
    html.split("<div class=\"tile ")
        .skip(1)
        .map(|tag| {
            let tag = &tag[..tag.find('>').unwrap()];
            (
                attr(tag, "data-tile").parse().unwrap(),
                attr(tag, "data-phase"),
                attr(tag, "data-round").parse().unwrap(),
                attr(tag, "title"),
            )
        })
        .collect()
}

fn phases(g: &[(u32, String, u32, String)]) -> Vec<&str> {
    g.iter().map(|t| t.1.as_str()).collect()
}

#[tokio::test]
async fn the_tile_grid_follows_a_job_through_render_verification_and_a_re_render() {
    let f = Farm::new();
    let (cheat_key, honest_key) = (key(1), key(3));
    f.register(&cheat_key, "node");
    f.register(&honest_key, "node");
    f.register(&key(2), "verifier");
    let job = f.submit();
    let app = app(&f);
    let cookie = login(&app, STUDIO).await;
    assert_eq!(
        phases(&grid(&app, &cookie, &job, 0).await),
        vec!["queued"; 6]
    );

    let ts = tasks(&f.drain());
    let frame0: Vec<&RenderTask> = ts.iter().filter(|t| t.frame == 0).collect();
    assert_eq!(frame0.len(), 3);
    // The cheater takes the first task's lease: its two tiles are rendering, by it.
    let (cheat, honest) = (
        f.node(&cheat_key, Some(DishonestMode::Black)),
        f.node(&honest_key, None),
    );
    let first = frame0[0];
    let h = f
        .svc
        .handle_signal(&f.signal(&cheat_key, &[first.task_id.as_str()], &[]), f.now)
        .unwrap();
    assert_eq!(h, Handled::Done);
    let g = grid(&app, &cookie, &job, 0).await;
    let leased: Vec<u32> = first.tiles.iter().map(|t| t.tile_index).collect();
    for (tile, phase, _, title) in &g {
        if leased.contains(tile) {
            assert_eq!(phase, "rendering");
            assert!(title.contains(&cheat_key.public().short()), "{title}");
        } else {
            assert_eq!(phase, "queued");
        }
    }
    // Its result: those tiles are delivered, and show in the preview.
    f.svc
        .handle_result(&result_body(&cheat, first), f.now)
        .unwrap();
    let g = grid(&app, &cookie, &job, 0).await;
    for (tile, phase, _, _) in &g {
        assert_eq!(
            phase,
            if leased.contains(tile) {
                "delivered"
            } else {
                "queued"
            }
        );
    }
    let png = send(
        &app,
        get(
            &format!("/ui/jobs/{job}/frames/0/preview.png"),
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(png.headers[header::CONTENT_TYPE], "image/png");
    let img = image::load_from_memory(&png.body).unwrap().to_rgba8();
    assert_eq!(img.dimensions(), (40, 24));
    for t in &first.tiles {
        assert_eq!(
            img.get_pixel(t.rect.x, t.rect.y).0[3],
            255,
            "delivered tile {}",
            t.tile_index
        );
    }
    let undelivered = frame0[1].tiles[0].rect;
    assert_eq!(img.get_pixel(undelivered.x, undelivered.y).0[3], 0);

    // Every other task by the honest node; the round's checks go out.
    for t in ts.iter().filter(|t| t.task_id != first.task_id) {
        f.svc
            .handle_result(&result_body(&honest, t), f.now)
            .unwrap();
    }
    assert_eq!(state(&f, &job), "verifying");
    assert_eq!(
        phases(&grid(&app, &cookie, &job, 0).await),
        vec!["delivered"; 6]
    );
    let verifier = Verifier::new(key(2), f.renderer.clone());
    f.verify(&verifier, &f.drain());
    assert_eq!(
        state(&f, &job),
        "rendering",
        "the cheater's tiles go to round 1"
    );
    let g = grid(&app, &cookie, &job, 0).await;
    for (tile, phase, round, title) in &g {
        if leased.contains(tile) {
            assert_eq!((phase.as_str(), *round), ("queued", 1), "{title}");
            assert!(title.contains("rejected in round 0"), "{title}");
        } else {
            assert_eq!((phase.as_str(), *round), ("verified", 0), "{title}");
        }
    }
    assert!(
        g.iter()
            .any(|t| t.3.contains("sampled (first check)") && t.3.contains("PSNR")),
        "some verified tile shows its band and metrics: {g:?}"
    );
    let page = send(&app, get(&format!("/ui/jobs/{job}"), Some(&cookie)))
        .await
        .text();
    assert!(
        page.contains("decision fail"),
        "the cheater's verdict is listed"
    );
    assert!(page.contains("decision pass"));
    assert!(page.contains("slash"), "the slash is among the payments");

    // Round 1, honest: re-rendered tiles verified in round 1.
    let round1 = tasks(&f.drain());
    for t in &round1 {
        f.svc
            .handle_result(&result_body(&honest, t), f.now)
            .unwrap();
    }
    f.verify(&verifier, &f.drain());
    assert_eq!(state(&f, &job), "done");
    let g = grid(&app, &cookie, &job, 0).await;
    assert_eq!(phases(&g), vec!["verified"; 6]);
    for (tile, _, round, _) in &g {
        assert_eq!(*round, u32::from(leased.contains(tile)), "tile {tile}");
    }
    let page = send(&app, get(&format!("/ui/jobs/{job}"), Some(&cookie)))
        .await
        .text();
    assert!(page.contains("download/bundle.json") && page.contains("download/frame-1.png"));
}
