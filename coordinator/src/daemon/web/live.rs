//! `GET /ui/events`: the session's events as Server-Sent Events, each with its id, so
//! that a browser that reconnects (sending `Last-Event-ID`) gets exactly the events
//! after the last one it saw. The stream reads the store's event log in pages, waits for
//! the service to handle an input (or a short poll, for another process writing the
//! same store) between reads, and never holds the service lock while it waits. It ends
//! when the session does.

use super::{check_job_id, visible, Oops, Viewer, Web};
use crate::daemon::now_ms;
use crate::store::events::EventRow;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::watch;

/// Events read from the store at once.
const PAGE: u32 = 200;
/// Longest wait between two reads of the event log.
const POLL: Duration = Duration::from_secs(1);
/// Keep-alive comments this often, so proxies keep an idle stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query of `/ui/events`.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct EventsQuery {
    /// Start after this event id on the first connection (a reconnection's
    /// `Last-Event-ID` header wins).
    after: Option<i64>,
    /// Only this job's events.
    job: Option<String>,
}

/// Where one event stream is.
struct Feed {
    web: Web,
    viewer: Viewer,
    job: Option<String>,
    last: i64,
    buffered: VecDeque<EventRow>,
    handled: watch::Receiver<u64>,
}

/// The event id to resume after: `Last-Event-ID`, else `?after=`, else 0.
fn resume_after(headers: &HeaderMap, query: &EventsQuery) -> i64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok())
        .or(query.after)
        .unwrap_or(0)
        .max(0)
}

/// One SSE event of a logged event: its id, its kind as the event name, and its job,
/// time and data as JSON.
fn sse_event(row: &EventRow) -> Event {
    let data = serde_json::json!({
        "id": row.id,
        "job": row.job_id,
        "kind": row.kind,
        "at_ms": row.at_ms,
        "data": row.data,
    });
    Event::default()
        .id(row.id.to_string())
        .event(row.kind.clone())
        .data(data.to_string())
}

/// `GET /ui/events[?after=N][&job=ID]`.
pub(super) async fn events(
    State(web): State<Web>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Response, Oops> {
    if let Some(job) = &query.job {
        check_job_id(job)?;
        let (j, who) = (job.clone(), viewer.who.clone());
        web.read(move |s| visible(s, &j, &who)).await?;
    }
    let feed = Feed {
        handled: web.shared.handled.subscribe(),
        web,
        viewer,
        job: query.job.clone(),
        last: resume_after(&headers, &query),
        buffered: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(feed, next_event);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// The stream's next event: from the buffer, else from the event log, waiting for new
/// ones; `None` (the end) when the session is over or the log cannot be read.
async fn next_event(mut feed: Feed) -> Option<(Result<Event, Infallible>, Feed)> {
    loop {
        if let Some(row) = feed.buffered.pop_front() {
            return Some((Ok(sse_event(&row)), feed));
        }
        if !feed.web.sessions.alive(&feed.viewer.session, now_ms()) {
            return None;
        }
        let client = feed.viewer.who.client().map(str::to_string);
        let (job, after) = (feed.job.clone(), feed.last);
        let rows = feed
            .web
            .read(move |s| {
                Ok(s.store()
                    .events_after(client.as_deref(), job.as_deref(), after, PAGE)?)
            })
            .await;
        match rows {
            Ok(rows) if !rows.is_empty() => {
                feed.last = rows.last().map_or(feed.last, |r| r.id);
                feed.buffered.extend(rows);
            }
            Ok(_) => {
                // Nothing new: wait for the service to handle something (or a poll,
                // for writers this process does not see).
                let handled = &mut feed.handled;
                tokio::select! {
                    changed = handled.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep(POLL).await;
                        }
                    }
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Err(Oops(_, why)) => {
                tracing::warn!("dashboard events: {why}");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{resume_after, EventsQuery};
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn the_last_event_id_header_wins_over_the_query_and_bad_values_start_at_zero() {
        let q = EventsQuery {
            after: Some(5),
            job: None,
        };
        let mut h = HeaderMap::new();
        assert_eq!(resume_after(&h, &q), 5);
        h.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(resume_after(&h, &q), 42);
        h.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(resume_after(&h, &q), 5);
        assert_eq!(resume_after(&HeaderMap::new(), &EventsQuery::default()), 0);
        let negative = EventsQuery {
            after: Some(-3),
            job: None,
        };
        assert_eq!(resume_after(&HeaderMap::new(), &negative), 0);
    }
}
