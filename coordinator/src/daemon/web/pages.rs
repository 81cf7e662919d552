//! The dashboard's pages and fragments (maud): login, jobs with filters and bulk control,
//! a job with its live tile grid, verdicts, payments and downloads, and the operator's
//! nodes; the ledger and disputes for either.

use super::{asset_url, check_job_id, visible, Form, Oops, Viewer, Web, Who};
use crate::daemon::now_ms;
use crate::daemon::service::{JobView, Service, ServiceError};
use crate::machine::{Control, JobState, TilePhase, TileStatus};
use crate::store::StoredMachine;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup, DOCTYPE};
use std::collections::{BTreeMap, HashSet};
use tessera_protocol::payments::{account, Transfer, TransferKind};
use tessera_protocol::statements::{Signed, Verdict};

/// Jobs one bulk action may name.
const MAX_ACTION_JOBS: usize = 500;
/// Rows the jobs list shows at most.
const MAX_ROWS: usize = 500;
/// Frame links a job page lists at most.
const MAX_FRAME_LINKS: u32 = 200;

// --- formatting ------------------------------------------------------------------------

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix seconds.
pub(super) fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Micro-credits as credits with six decimals.
fn credits(micro: i128) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let m = micro.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// The lowercase serde name of a unit enum value.
fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

// --- layout ----------------------------------------------------------------------------

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // No inline styles from htmx (the page's CSP allows none of its scripts).
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
            title { (title) " · Tessera" }
            link rel="stylesheet" href=(asset_url("dash.css"));
            script src=(asset_url("htmx.min.js")) defer {}
            script src=(asset_url("dash.js")) defer {}
        }
    }
}

/// A whole page for `viewer`: navigation, `body`, and the CSRF token htmx sends with
/// every request.
fn page(title: &str, viewer: &Viewer, body: Markup) -> Markup {
    let hx_headers = serde_json::json!({ "X-CSRF-Token": viewer.csrf }).to_string();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-headers=(hx_headers) {
                nav.top {
                    span.brand { "Tessera" }
                    a href="/ui/jobs" { "Jobs" }
                    @if viewer.who == Who::Admin { a href="/ui/nodes" { "Nodes" } }
                    a href="/ui/ledger" { "Ledger" }
                    a href="/ui/disputes" { "Disputes" }
                    span.who {
                        @match &viewer.who {
                            Who::Client(c) => { "client " b { (c) } }
                            Who::Admin => { b { "operator" } }
                        }
                    }
                    form.inline method="post" action="/ui/logout" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" { "Log out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login page, with `error` above the form.
pub(super) fn login_form(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in"))
            body {
                main.login {
                    h1 { "Tessera" }
                    p { "Paste your client API token, or the operator's admin token." }
                    @if let Some(e) = error { p.error { (e) } }
                    form method="post" action="/ui/login" {
                        label for="token" { "Token" }
                        input #token type="password" name="token" autocomplete="off" required autofocus;
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// `GET /ui/login`.
pub(super) async fn login_page() -> Markup {
    login_form(None)
}

/// An error page: the status and the reason.
pub(super) fn error_page(status: StatusCode, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Error"))
            body {
                main {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.error { (text) }
                    p { a href="/ui/jobs" { "Back to the jobs" } }
                }
            }
        }
    }
}

// --- jobs ------------------------------------------------------------------------------

/// One job as the list shows it.
struct JobRow {
    id: String,
    client: String,
    state: JobState,
    scene: String,
    frames: (u32, u32),
    tiles_total: u32,
    tiles_rendered: u32,
    tiles_verified: u32,
    round: u32,
    created_unix: u64,
}

fn job_row(s: &Service, id: &str) -> Result<JobRow, ServiceError> {
    let v = s.job_view(id)?;
    let m = &v.manifest.statement;
    Ok(JobRow {
        id: id.to_string(),
        client: m.client.clone(),
        state: v.progress.state,
        scene: m.scene_name.clone(),
        frames: (m.frame_start, m.frame_end),
        tiles_total: v.progress.tiles_total,
        tiles_rendered: v.progress.tiles_rendered,
        tiles_verified: v.progress.tiles_verified,
        round: v.progress.round,
        created_unix: m.created_unix,
    })
}

/// The ids of the jobs `who` sees, newest first.
fn job_ids(s: &Service, who: &Who) -> Result<Vec<String>, ServiceError> {
    match who {
        Who::Client(c) => {
            let mut ids = s.store().client_job_ids(c)?;
            ids.reverse();
            Ok(ids)
        }
        Who::Admin => s.job_ids(),
    }
}

/// The jobs list's filters.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub(super) struct JobsQuery {
    state: Option<String>,
    q: Option<String>,
}

impl JobsQuery {
    fn keeps(&self, row: &JobRow) -> bool {
        let state_ok = self
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .is_none_or(|s| s == row.state.as_str());
        let text_ok = self
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .is_none_or(|q| {
                let q = q.to_lowercase();
                row.id.contains(&q) || row.scene.to_lowercase().contains(&q)
            });
        state_ok && text_ok
    }
}

async fn job_rows(web: &Web, who: &Who, filter: &JobsQuery) -> Result<Vec<JobRow>, Oops> {
    let (who, filter) = (who.clone(), filter.clone());
    web.read(move |s| {
        let mut rows = Vec::new();
        for id in job_ids(s, &who)? {
            let row = job_row(s, &id)?;
            if filter.keeps(&row) {
                rows.push(row);
                if rows.len() >= MAX_ROWS {
                    break;
                }
            }
        }
        Ok(rows)
    })
    .await
}

fn jobs_table(rows: &[JobRow], viewer: &Viewer) -> Markup {
    let controls = matches!(viewer.who, Who::Client(_));
    html! {
        table #jobs-table {
            thead { tr {
                @if controls { th { input type="checkbox" data-select-all="job" title="select all"; } }
                th { "Job" } th { "State" } th { "Scene" } th { "Frames" }
                th { "Rendered" } th { "Verified" } th { "Tiles" } th { "Round" }
                @if !controls { th { "Client" } }
                th { "Created" }
            } }
            tbody {
                @if rows.is_empty() { tr { td colspan="10" { "No jobs." } } }
                @for r in rows {
                    tr data-job=(r.id) {
                        @if controls { td { input type="checkbox" name="job" value=(r.id); } }
                        td { a href=(format!("/ui/jobs/{}", r.id)) { code { (&r.id[..12]) } } }
                        td { span class=(format!("state {}", r.state.as_str())) { (r.state.as_str()) } }
                        td { (r.scene) }
                        td { (r.frames.0) "–" (r.frames.1) }
                        td { (r.tiles_rendered) }
                        td { (r.tiles_verified) }
                        td { (r.tiles_total) }
                        td { (r.round) }
                        @if !controls { td { (r.client) } }
                        td { (utc(r.created_unix)) }
                    }
                }
            }
        }
    }
}

fn jobs_body(
    rows: &[JobRow],
    viewer: &Viewer,
    filter: &JobsQuery,
    outcomes: Option<Markup>,
) -> Markup {
    let chosen = filter.state.clone().unwrap_or_default();
    html! {
        h1 { "Jobs" }
        @if let Some(o) = outcomes { (o) }
        form.filters method="get" action="/ui/jobs"
            hx-get="/ui/jobs" hx-target="#jobs-table" hx-swap="outerHTML"
            hx-trigger="change, keyup changed delay:300ms from:input[name=q]" hx-push-url="true" {
            label { "State "
                select name="state" {
                    option value="" selected[chosen.is_empty()] { "any" }
                    @for st in JobState::ALL {
                        option value=(st.as_str()) selected[chosen == st.as_str()] { (st.as_str()) }
                    }
                }
            }
            label { "Match "
                input type="search" name="q" value=(filter.q.clone().unwrap_or_default()) placeholder="job id or scene";
            }
            button type="submit" { "Filter" }
        }
        @if matches!(viewer.who, Who::Client(_)) {
            form #bulk method="post" action="/ui/jobs/actions" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                div.bulk {
                    "Selected jobs: "
                    button name="action" value="cancel" data-confirm="Cancel the selected jobs?" { "Cancel" }
                    button name="action" value="pause" { "Pause" }
                    button name="action" value="resume" { "Resume" }
                    button name="action" value="requeue" { "Requeue" }
                    label { " priority " input type="number" name="priority" value="0" min="-1000000" max="1000000"; }
                    button name="action" value="priority" { "Set priority" }
                }
                (jobs_table(rows, viewer))
            }
        } @else {
            (jobs_table(rows, viewer))
        }
    }
}

/// `GET /ui/jobs[?state=…&q=…]`: the page, or (htmx) only the table.
pub(super) async fn jobs(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
    Query(filter): Query<JobsQuery>,
    headers: HeaderMap,
) -> Result<Markup, Oops> {
    let rows = job_rows(&web, &viewer.who, &filter).await?;
    if is_htmx(&headers) {
        return Ok(jobs_table(&rows, &viewer));
    }
    Ok(page(
        "Jobs",
        &viewer,
        jobs_body(&rows, &viewer, &filter, None),
    ))
}

/// What one control action did to one job.
struct Outcome {
    job: String,
    result: Result<JobState, ServiceError>,
}

fn outcomes_list(action: &str, outcomes: &[Outcome]) -> Markup {
    html! {
        section #outcome.outcomes {
            h2 { "Outcome of " (action) }
            ul {
                @for o in outcomes {
                    @match &o.result {
                        Ok(state) => li.ok data-job=(o.job) data-state=(state.as_str()) {
                            code { (&o.job[..12.min(o.job.len())]) } ": " (state.as_str())
                        },
                        Err(e) => li.error data-job=(o.job) {
                            code { (&o.job[..12.min(o.job.len())]) } ": " (e.to_string())
                        },
                    }
                }
            }
        }
    }
}

/// The control action a form names.
fn control_of(form: &Form) -> Result<(String, Control), Oops> {
    let bad = |m: String| Oops(StatusCode::UNPROCESSABLE_ENTITY, m);
    let action = form.get("action").unwrap_or("").to_string();
    let control = match action.as_str() {
        "cancel" => Control::Cancel,
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "requeue" => Control::Requeue,
        "priority" => {
            let p = form.get("priority").unwrap_or("").trim();
            Control::Priority(
                p.parse()
                    .map_err(|_| bad(format!("priority {p:?}: expected a whole number")))?,
            )
        }
        a => {
            return Err(bad(format!(
                "action {:?}: one of cancel, pause, resume, requeue, priority",
                super::sanitize(a)
            )))
        }
    };
    Ok((action, control))
}

/// `POST /ui/jobs/actions` (`action`, `priority`, `job`…): the action on each selected
/// job, each in a transaction of its own ([`Service::control`]); the outcome of each.
pub(super) async fn actions(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
    Extension(form): Extension<Form>,
    headers: HeaderMap,
) -> Result<Response, Oops> {
    let Who::Client(client) = viewer.who.clone() else {
        return Err(Oops(
            StatusCode::FORBIDDEN,
            "only a job's client controls it: the operator's view is read-only".into(),
        ));
    };
    let (action, control) = control_of(&form)?;
    let mut jobs: Vec<String> = Vec::new();
    for id in form.all("job") {
        check_job_id(id)?;
        if !jobs.iter().any(|j| j == id) {
            jobs.push(id.to_string());
        }
    }
    if jobs.is_empty() || jobs.len() > MAX_ACTION_JOBS {
        return Err(Oops(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{} jobs selected: select 1 to {MAX_ACTION_JOBS}",
                jobs.len()
            ),
        ));
    }
    let outcomes = web
        .shared
        .with(move |s| {
            jobs.into_iter()
                .map(|job| {
                    let result = s.control(&client, &job, control, now_ms());
                    Outcome { job, result }
                })
                .collect::<Vec<_>>()
        })
        .await;
    let list = outcomes_list(&action, &outcomes);
    if is_htmx(&headers) {
        return Ok(list.into_response());
    }
    let filter = JobsQuery::default();
    let rows = job_rows(&web, &viewer.who, &filter).await?;
    Ok(page(
        "Jobs",
        &viewer,
        jobs_body(&rows, &viewer, &filter, Some(list)),
    )
    .into_response())
}

// --- one job ---------------------------------------------------------------------------

/// What a job page shows, read in one go.
struct Detail {
    id: String,
    view: JobView,
    tiles: Vec<TileStatus>,
    verdicts: Vec<Signed<Verdict>>,
    transfers: Vec<Transfer>,
    uncollected: Vec<Transfer>,
    latest_event: i64,
}

async fn detail(web: &Web, viewer: &Viewer, id: String) -> Result<Detail, Oops> {
    check_job_id(&id)?;
    let who = viewer.who.clone();
    web.read(move |s| {
        visible(s, &id, &who)?;
        let view = s.job_view(&id)?;
        let (tiles, verdicts) = match s.store().machine(&id)? {
            Some(StoredMachine::Machine(job)) => (job.tiles(), job.verdicts().cloned().collect()),
            _ => (Vec::new(), Vec::new()),
        };
        Ok(Detail {
            transfers: s.store().job_transfers(&id)?,
            uncollected: s.store().job_uncollected(&id)?,
            latest_event: s.store().latest_event_id(who.client())?,
            id,
            view,
            tiles,
            verdicts,
        })
    })
    .await
}

/// A job page's query: the frame shown.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct JobQuery {
    frame: Option<u32>,
}

/// The frame to show: the one asked for if the job has it, else its first.
fn frame_shown(d: &Detail, asked: Option<u32>) -> u32 {
    let m = &d.view.manifest.statement;
    asked
        .filter(|f| (m.frame_start..=m.frame_end).contains(f))
        .unwrap_or(m.frame_start)
}

fn tile_title(t: &TileStatus) -> String {
    let mut s = format!(
        "frame {} tile {}: {}",
        t.frame,
        t.tile_index,
        t.phase.as_str()
    );
    if let Some(n) = t.node {
        s += &format!(" · node {}", n.short());
    }
    if t.round > 0 {
        s += &format!(" · re-rendered in round {}", t.round);
    }
    if let Some(c) = &t.check {
        let m = &c.metrics;
        s += &format!(
            " · sampled ({}{}): {} · PSNR {:.2} dB · FLIP mean {:.4} p99 {:.4} · diverged {:.4}% · {}",
            if c.check.dispute { "dispute check" } else if c.check.escalated { "escalated check" } else { "first check" },
            if c.round != t.round { format!(", round {}", c.round) } else { String::new() },
            name(&c.band),
            f64::from(m.psnr_cdb) / 100.0,
            f64::from(m.flip_mean_ppm) / 1e6,
            f64::from(m.flip_p99_ppm) / 1e6,
            f64::from(m.diverged_ppm) / 1e4,
            name(&c.decision),
        );
    }
    if !t.rejected_in.is_empty() {
        let rounds: Vec<String> = t.rejected_in.iter().map(u32::to_string).collect();
        s += &format!(" · rejected in round {}", rounds.join(", "));
    }
    s
}

/// The tile grid of one frame over its preview.
fn tile_grid(d: &Detail, frame: u32) -> Markup {
    let m = &d.view.manifest.statement;
    let (w, h) = (f64::from(m.settings.width), f64::from(m.settings.height));
    let pct = |v: u32, of: f64| f64::from(v) * 100.0 / of;
    html! {
        div.frame style=(format!("aspect-ratio: {} / {}", m.settings.width, m.settings.height)) {
            img.preview alt=(format!("frame {frame} so far"))
                src=(format!("/ui/jobs/{}/frames/{frame}/preview.png?at={}", d.id, d.latest_event));
            div.grid #tile-grid data-frame=(frame) {
                @for t in d.tiles.iter().filter(|t| t.frame == frame) {
                    div class=(format!("tile {}", t.phase.as_str()))
                        data-tile=(t.tile_index) data-phase=(t.phase.as_str()) data-round=(t.round)
                        title=(tile_title(t))
                        style=(format!("left:{:.4}%;top:{:.4}%;width:{:.4}%;height:{:.4}%",
                            pct(t.rect.x, w), pct(t.rect.y, h), pct(t.rect.w, w), pct(t.rect.h, h))) {
                        @if t.round > 0 { span.round { "r" (t.round) } }
                    }
                }
            }
        }
    }
}

const PHASES: [TilePhase; 7] = [
    TilePhase::Queued,
    TilePhase::Rendering,
    TilePhase::Delivered,
    TilePhase::Sampled,
    TilePhase::Verified,
    TilePhase::Failed,
    TilePhase::Abandoned,
];

fn legend(d: &Detail, frame: u32) -> Markup {
    let count = |p: TilePhase, all: bool| {
        d.tiles
            .iter()
            .filter(|t| t.phase == p && (all || t.frame == frame))
            .count()
    };
    html! {
        ul.legend #tile-counts {
            @for p in PHASES {
                li { span class=(format!("swatch {}", p.as_str())) {} (p.as_str()) ": "
                    b data-count=(p.as_str()) { (count(p, false)) }
                    " this frame, " (count(p, true)) " in all" }
            }
        }
    }
}

/// How many of a verdict's samples fell in each band.
fn bands_of(v: &Verdict) -> BTreeMap<String, u32> {
    let mut bands = BTreeMap::new();
    for s in &v.samples {
        *bands.entry(name(&s.band)).or_default() += 1;
    }
    bands
}

fn verdict_table(d: &Detail) -> Markup {
    html! {
        table.verdicts {
            thead { tr { th { "Round" } th { "Check" } th { "Node" } th { "Decision" } th { "Sampled" } th { "Bands" } th { "Worst PSNR" } th { "Worst FLIP p99" } } }
            tbody {
                @if d.verdicts.is_empty() { tr { td colspan="8" { "No verdict yet." } } }
                @for v in &d.verdicts {
                    @let vs = &v.statement;
                    @let bands = bands_of(vs);
                    tr class=(name(&vs.decision)) {
                        td { (vs.round) }
                        td { @if vs.check.dispute { "dispute" } @else if vs.check.escalated { "escalated" } @else { "first" } }
                        td { code { (vs.node.short()) } }
                        td { span class=(format!("decision {}", name(&vs.decision))) { (name(&vs.decision)) } }
                        td { (vs.samples.len()) " of " (vs.n_committed) " blocks" }
                        td { @for (b, n) in &bands { span class=(format!("band {b}")) { (b) " " (n) } " " } }
                        td { @if let Some(p) = vs.samples.iter().map(|s| s.metrics.psnr_cdb).min() { (format!("{:.2} dB", f64::from(p) / 100.0)) } }
                        td { @if let Some(p) = vs.samples.iter().map(|s| s.metrics.flip_p99_ppm).max() { (format!("{:.4}", f64::from(p) / 1e6)) } }
                    }
                }
            }
        }
    }
}

fn payments(d: &Detail) -> Markup {
    let sum = |kinds: &[TransferKind]| -> i128 {
        d.transfers
            .iter()
            .filter(|t| kinds.contains(&t.kind))
            .map(|t| i128::from(t.amount))
            .sum()
    };
    let escrowed = sum(&[TransferKind::Escrow]);
    let paid = sum(&[TransferKind::PayOnPass, TransferKind::Release]);
    let held =
        sum(&[TransferKind::HoldBack]) - sum(&[TransferKind::Release, TransferKind::Forfeit]);
    let refunded = sum(&[TransferKind::Refund]);
    let slashed = sum(&[TransferKind::Slash]);
    html! {
        dl.sums {
            dt { "Escrowed" } dd { (credits(escrowed)) }
            dt { "Paid to nodes" } dd { (credits(paid)) }
            dt { "Held back" } dd #held-back { (credits(held)) }
            dt { "Refunded" } dd { (credits(refunded)) }
            dt { "Slashed" } dd { (credits(slashed)) }
        }
        table.transfers {
            thead { tr { th { "Kind" } th { "From" } th { "To" } th { "Amount" } th { "Round" } th { "Tiles" } } }
            tbody {
                @for t in &d.transfers {
                    tr { td { (name(&t.kind)) } td { code { (t.from) } } td { code { (t.to) } }
                         td.num { (credits(i128::from(t.amount))) } td { (t.round) } td { (t.tiles) } }
                }
                @for t in &d.uncollected {
                    tr.uncollected { td { (name(&t.kind)) " (uncollected: the stake was empty)" } td { code { (t.from) } } td { code { (t.to) } }
                         td.num { (credits(i128::from(t.amount))) } td { (t.round) } td { (t.tiles) } }
                }
            }
        }
    }
}

fn controls(d: &Detail, viewer: &Viewer, now: u64) -> Markup {
    let state = d.view.progress.state;
    if !matches!(viewer.who, Who::Client(_)) {
        return html! {};
    }
    // A failed job's client may requeue it inside its window.
    let requeuable =
        state == JobState::Failed && d.view.progress.release_at_ms.is_some_and(|t| t > now);
    if requeuable {
        return html! {
            form.controls method="post" action="/ui/jobs/actions" hx-post="/ui/jobs/actions" hx-target="#outcome" hx-swap="outerHTML" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="hidden" name="job" value=(d.id);
                button name="action" value="requeue" data-confirm="Requeue this failed job? Its escrow is funded again with what the failure refunded." { "Requeue" }
            }
        };
    }
    if state.has_ended() || state == JobState::Disputed {
        return html! {};
    }
    html! {
        form.controls method="post" action="/ui/jobs/actions" hx-post="/ui/jobs/actions" hx-target="#outcome" hx-swap="outerHTML" {
            input type="hidden" name="csrf" value=(viewer.csrf);
            input type="hidden" name="job" value=(d.id);
            button name="action" value="cancel" data-confirm="Cancel this job?" { "Cancel" }
            @if state == JobState::Paused {
                button name="action" value="resume" { "Resume" }
            } @else {
                button name="action" value="pause" { "Pause" }
            }
            button name="action" value="requeue" { "Requeue" }
            label { " priority " input type="number" name="priority" value="0"; }
            button name="action" value="priority" { "Set priority" }
        }
    }
}

fn downloads(d: &Detail) -> Markup {
    let m = &d.view.manifest.statement;
    if d.view.progress.state != JobState::Done {
        return html! { p.muted { "Frames and the proof bundle can be downloaded once the job is done." } };
    }
    html! {
        ul.downloads {
            li { a href=(format!("/ui/jobs/{}/download/bundle.json", d.id)) download { "Proof bundle (JSON)" } }
            @for f in (m.frame_start..=m.frame_end).take(MAX_FRAME_LINKS as usize) {
                li { "Frame " (f) ": "
                    a href=(format!("/ui/jobs/{}/download/frame-{f}.png", d.id)) download { "PNG" } " · "
                    a href=(format!("/ui/jobs/{}/download/frame-{f}.rgba16f", d.id)) download { "RGBA16F" } }
            }
        }
    }
}

/// The part of a job page that changes: everything but the navigation.
fn job_live_body(d: &Detail, frame: u32, viewer: &Viewer) -> Markup {
    let m = &d.view.manifest.statement;
    let p = &d.view.progress;
    let now = now_ms();
    html! {
        div #live data-latest-event=(d.latest_event) {
            h1 { "Job " code { (&d.id[..12]) } " "
                span #job-state class=(format!("state {}", p.state.as_str())) { (p.state.as_str()) } }
            dl.summary {
                @if viewer.who == Who::Admin { dt { "Client" } dd { (m.client) } }
                dt { "Scene" } dd { (m.scene_name) }
                dt { "Size" } dd { (m.settings.width) "×" (m.settings.height) ", " (m.settings.spp) " spp" }
                dt { "Frames" } dd { (m.frame_start) "–" (m.frame_end) }
                dt { "Tier" } dd { (m.tier.name) }
                dt { "Round" } dd #job-round { (p.round) }
                dt { "Tiles" } dd {
                    span #tiles-rendered { (p.tiles_rendered) } " rendered, "
                    span #tiles-verified { (p.tiles_verified) } " verified of "
                    span #tiles-total { (p.tiles_total) }
                    progress max=(p.tiles_total.max(1)) value=(p.tiles_verified) {}
                }
                dt { "Created" } dd { (utc(m.created_unix)) }
                @if let Some(e) = &p.error { dt { "Why" } dd.error { (e) } }
                @if p.state == JobState::Failed {
                    dt { "Requeue window" } dd #dispute-window {
                        @match p.release_at_ms {
                            Some(t) if t > now => { "open until " (utc(t / 1000)) " (" ((t - now) / 60_000) " min left): a requeue funds the escrow again and renders what is left; hold-backs are released then" }
                            Some(t) => { "closed at " (utc(t / 1000)) "; hold-backs are being released" }
                            None => { "closed: the work that passed is paid in full" }
                        }
                    }
                } @else {
                dt { "Dispute window" } dd #dispute-window {
                    @match p.release_at_ms {
                        Some(t) if t > now => { "open until " (utc(t / 1000)) " (" ((t - now) / 60_000) " min left); hold-backs are released then" }
                        Some(t) => { "closed at " (utc(t / 1000)) "; hold-backs are being released" }
                        None if p.state == JobState::Done => { "closed: hold-backs released" }
                        None => { "opens when the job is done (" (m.challenge_window_secs) " s)" }
                    }
                }
                }
            }
            (controls(d, viewer, now))
            section #outcome {}
            @if m.frame_end > m.frame_start {
                nav.frames { "Frame: "
                    @for f in (m.frame_start..=m.frame_end).take(MAX_FRAME_LINKS as usize) {
                        a.current[f == frame] href=(format!("/ui/jobs/{}?frame={f}", d.id)) { (f) } " "
                    }
                }
            }
            div.framebox {
                (tile_grid(d, frame))
                (legend(d, frame))
            }
            h2 { "Verdicts" }
            (verdict_table(d))
            h2 { "Payments and hold-backs" }
            (payments(d))
            h2 { "Downloads" }
            (downloads(d))
        }
    }
}

/// `GET /ui/jobs/{id}[?frame=F]`: the job page, listening for the job's events.
pub(super) async fn job(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<JobQuery>,
) -> Result<Markup, Oops> {
    let d = detail(&web, &viewer, id).await?;
    let frame = frame_shown(&d, q.frame);
    let body = html! {
        div #job data-live-job=(d.id) data-after=(d.latest_event)
            data-live-url=(format!("/ui/jobs/{}/live?frame={frame}", d.id)) {
            (job_live_body(&d, frame, &viewer))
        }
    };
    Ok(page(&format!("Job {}", &d.id[..12]), &viewer, body))
}

/// `GET /ui/jobs/{id}/live[?frame=F]`: the changing part of the job page (what the
/// page swaps in when an event of the job arrives).
pub(super) async fn job_live(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<JobQuery>,
) -> Result<Markup, Oops> {
    let d = detail(&web, &viewer, id).await?;
    let frame = frame_shown(&d, q.frame);
    Ok(job_live_body(&d, frame, &viewer))
}

/// What `/ui/jobs/{id}/download/{file}` names.
#[derive(Debug, PartialEq, Eq)]
enum Download {
    Bundle,
    Png(u32),
    Raw(u32),
}

fn download_of(file: &str) -> Option<Download> {
    if file == "bundle.json" {
        return Some(Download::Bundle);
    }
    let rest = file.strip_prefix("frame-")?;
    if let Some(n) = rest.strip_suffix(".png") {
        return n.parse().ok().map(Download::Png);
    }
    rest.strip_suffix(".rgba16f")?
        .parse()
        .ok()
        .map(Download::Raw)
}

/// Why a finished frame could not be made a PNG.
#[derive(Debug, thiserror::Error)]
enum FramePngError {
    /// The temporary folder could not be made or read.
    #[error("temporary file: {0}")]
    Io(#[from] std::io::Error),
    /// The PNG could not be written.
    #[error(transparent)]
    Image(#[from] tessera_images::ImageError),
    /// The view transform refused its exposure.
    #[error(transparent)]
    Exposure(#[from] tessera_images::ExposureError),
}

/// Canonical RGBA16F frame bytes as the PNG `tessera render` writes (standard view, no
/// exposure), through a temporary file.
fn frame_png(width: u32, height: u32, pixels: &[u8]) -> Result<Vec<u8>, FramePngError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("frame.png");
    let view = tessera_images::ViewTransform::new(tessera_images::View::Standard, 0.0)?;
    tessera_images::write_png(&path, width, height, pixels, &view)?;
    Ok(std::fs::read(&path)?)
}

/// `GET /ui/jobs/{id}/download/{bundle.json | frame-F.png | frame-F.rgba16f}`: a done
/// job's proof bundle or frames, to the session's client (or the operator).
pub(super) async fn download(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
    UrlPath((id, file)): UrlPath<(String, String)>,
) -> Result<Response, Oops> {
    check_job_id(&id)?;
    let what = download_of(&file).ok_or_else(|| {
        Oops(
            StatusCode::NOT_FOUND,
            format!(
                "{:?}: bundle.json, frame-N.png or frame-N.rgba16f",
                super::sanitize(&file)
            ),
        )
    })?;
    let who = viewer.who.clone();
    let j = id.clone();
    let (bytes, size) = web
        .read(move |s| {
            visible(s, &j, &who)?;
            let m = s.job_view(&j)?.manifest.statement;
            let size = (m.settings.width, m.settings.height);
            match what {
                Download::Bundle => {
                    let bundle = s.bundle(&j)?;
                    let bytes = serde_json::to_vec(&bundle).map_err(|e| {
                        ServiceError::Invalid(format!("encoding the bundle of job {j}: {e}"))
                    })?;
                    Ok((bytes, None))
                }
                Download::Png(f) => Ok((s.frame(&j, f)?, Some(size))),
                Download::Raw(f) => Ok((s.frame(&j, f)?, None)),
            }
        })
        .await?;
    let (bytes, content_type) = match (download_of(&file), size) {
        (Some(Download::Png(_)), Some((w, h))) => {
            let png = tokio::task::spawn_blocking(move || frame_png(w, h, &bytes))
                .await
                .map_err(|e| Oops(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(|e| Oops(StatusCode::INTERNAL_SERVER_ERROR, format!("frame PNG: {e}")))?;
            (png, "image/png")
        }
        (Some(Download::Bundle), _) => (bytes, "application/json"),
        _ => (bytes, "application/octet-stream"),
    };
    let disposition = format!("attachment; filename=\"{}-{file}\"", &id[..12]);
    let mut res = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

// --- the operator's nodes, the ledger, disputes ----------------------------------------

/// `GET /ui/nodes` (operator): every registered worker.
pub(super) async fn nodes(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Markup, Oops> {
    if viewer.who != Who::Admin {
        return Err(Oops(
            StatusCode::FORBIDDEN,
            "the nodes are the operator's view".into(),
        ));
    }
    let rows = web
        .read(|s| {
            let store = s.store();
            let leases = s.leases_by_node()?;
            let mut rows = Vec::new();
            for w in store.workers()? {
                let key = w.key;
                rows.push((
                    w.clone(),
                    store.trust(&key)?,
                    store.balance(&account::stake(&key))?,
                    store.balance(&account::node(&key))?,
                    leases.get(&key.to_string()).copied().unwrap_or(0),
                ));
            }
            Ok(rows)
        })
        .await?;
    let body = html! {
        h1 { "Nodes and verifiers" }
        table.nodes {
            thead { tr { th { "Name" } th { "Key" } th { "Role" } th { "Class" } th { "Memory" } th { "Slots" }
                th { "Trust" } th { "Stake" } th { "Earnings" } th { "Current tasks" } th { "Last heard" } } }
            tbody {
                @if rows.is_empty() { tr { td colspan="11" { "No worker registered." } } }
                @for (w, trust, stake, earned, leased) in &rows {
                    tr data-key=(w.key.to_string()) {
                        td { (w.name) } td { code { (w.key.short()) } } td { (w.role.to_string()) }
                        td { (w.caps.class.backend) " · " (w.caps.class.adapter) }
                        td { (w.caps.memory_bytes >> 20) " MiB" } td { (w.caps.slots) }
                        td { (trust) } td.num { (credits(i128::from(*stake))) } td.num { (credits(i128::from(*earned))) }
                        td { (leased) } td { (utc(w.last_seen_ms / 1000)) }
                    }
                }
            }
        }
    };
    Ok(page("Nodes", &viewer, body))
}

/// `GET /ui/ledger`: a client's own accounts (its balance, its credit line, its jobs'
/// escrows and dispute deposits), or every account for the operator; the whole
/// ledger's total either way (always 0).
pub(super) async fn ledger(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Markup, Oops> {
    let who = viewer.who.clone();
    let (accounts, total) = web
        .read(move |s| {
            let store = s.store();
            let mine: Option<HashSet<String>> = match &who {
                Who::Admin => None,
                Who::Client(c) => {
                    let mut set: HashSet<String> = [
                        account::client(c),
                        account::external(&format!("credit:{c}")),
                    ]
                    .into();
                    for job in store.client_job_ids(c)? {
                        set.insert(account::escrow(&job));
                        set.insert(account::dispute(&job));
                    }
                    Some(set)
                }
            };
            let accounts: Vec<(String, i64)> = store
                .balances()?
                .into_iter()
                .filter(|(a, _)| mine.as_ref().is_none_or(|m| m.contains(a)))
                .collect();
            Ok((accounts, store.total()?))
        })
        .await?;
    let body = html! {
        h1 { "Ledger" }
        table.ledger {
            thead { tr { th { "Account" } th { "Balance" } } }
            tbody {
                @for (a, b) in &accounts { tr { td { code { (a) } } td.num { (credits(i128::from(*b))) } } }
            }
            tfoot { tr { th { "Whole ledger" } th.num #ledger-total { (credits(i128::from(total))) } } }
        }
    };
    Ok(page("Ledger", &viewer, body))
}

/// `GET /ui/disputes`: the visible jobs being disputed or disputed before, with their
/// dispute transfers.
pub(super) async fn disputes(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Markup, Oops> {
    let who = viewer.who.clone();
    let rows = web
        .read(move |s| {
            let mut rows = Vec::new();
            for id in job_ids(s, &who)? {
                let row = job_row(s, &id)?;
                let transfers: Vec<Transfer> = s
                    .store()
                    .job_transfers(&id)?
                    .into_iter()
                    .filter(|t| {
                        matches!(
                            t.kind,
                            TransferKind::DisputeDeposit
                                | TransferKind::DisputeRefund
                                | TransferKind::DisputeFee
                                | TransferKind::Forfeit
                                | TransferKind::Clawback
                        )
                    })
                    .collect();
                if row.state == JobState::Disputed || !transfers.is_empty() {
                    let release = s.job_view(&id)?.progress.release_at_ms;
                    rows.push((row, transfers, release));
                }
                if rows.len() >= MAX_ROWS {
                    break;
                }
            }
            Ok(rows)
        })
        .await?;
    let body = html! {
        h1 { "Disputes" }
        @if rows.is_empty() { p { "No job has been disputed." } }
        @for (row, transfers, release) in &rows {
            section.dispute {
                h2 { a href=(format!("/ui/jobs/{}", row.id)) { code { (&row.id[..12]) } } " "
                    span class=(format!("state {}", row.state.as_str())) { (row.state.as_str()) } }
                p { (row.scene) " · "
                    @match release { Some(t) => { "window until " (utc(t / 1000)) }, None => { "window closed" } } }
                ul { @for t in transfers { li { (name(&t.kind)) ": " (credits(i128::from(t.amount))) " " code { (t.from) } " → " code { (t.to) } } } }
            }
        }
    };
    Ok(page("Disputes", &viewer, body))
}

#[cfg(test)]
mod tests {
    use super::{credits, download_of, utc, Download};

    #[test]
    fn dates_and_amounts_print_as_people_read_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_542_323), "2026-12-06 07:32:03 UTC");
        assert_eq!(credits(1_500_000), "1.500000");
        assert_eq!(credits(-7), "-0.000007");
    }

    #[test]
    fn only_the_bundle_and_frame_files_can_be_downloaded() {
        assert_eq!(download_of("bundle.json"), Some(Download::Bundle));
        assert_eq!(download_of("frame-12.png"), Some(Download::Png(12)));
        assert_eq!(download_of("frame-0.rgba16f"), Some(Download::Raw(0)));
        for bad in [
            "frame-.png",
            "frame-1.exr",
            "../bundle.json",
            "frame--1.png",
            "x",
        ] {
            assert_eq!(download_of(bad), None, "{bad}");
        }
    }
}
