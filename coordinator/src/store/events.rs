//! The dashboard's event log: what happened to each job (state changes, results kept,
//! verdicts taken, transfers), appended in the transaction of the effect that caused it
//! ([`record`], called by the service for every effect it carries out), read back in id
//! order after a given id, so that a live view that reconnects resumes without loss.

use super::{Store, StoreError};
use crate::machine::Effect;
use rusqlite::params;
use serde_json::{json, Value};

pub(super) const EVENTS_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, client TEXT NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL, at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_client ON events (client, id);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, id);
"#;

/// One logged event of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    /// Its id: increasing, never reused.
    pub id: i64,
    /// The job.
    pub job_id: String,
    /// The job's client.
    pub client: String,
    /// `state`, `result`, `verdict` or `transfer`.
    pub kind: String,
    /// What happened (JSON object; see [`describe`]).
    pub data: Value,
    /// When (the service's clock), ms since the Unix epoch.
    pub at_ms: u64,
}

/// The lowercase serde name of a unit enum value (`Decision::Pass` → `pass`).
fn name<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// What an effect is worth logging as, if anything: (kind, data).
pub fn describe(effect: &Effect) -> Option<(&'static str, Value)> {
    match effect {
        Effect::State(state) => Some(("state", json!({ "state": state.as_str() }))),
        Effect::KeepResult { round, result } => {
            let st = &result.batch.signed.statement;
            Some((
                "result",
                json!({
                    "round": round,
                    "frame": st.frame,
                    "batch_id": st.batch_id,
                    "node": st.node.to_string(),
                    "tiles": st.tile_ids,
                }),
            ))
        }
        Effect::Verdict(v) => {
            let vs = &v.statement;
            let samples: Vec<Value> = vs
                .samples
                .iter()
                .map(|s| {
                    json!({
                        "frame": s.frame,
                        "tile": s.tile_index,
                        "band": name(&s.band),
                        "diverged_ppm": s.metrics.diverged_ppm,
                        "psnr_cdb": s.metrics.psnr_cdb,
                        "flip_mean_ppm": s.metrics.flip_mean_ppm,
                        "flip_p99_ppm": s.metrics.flip_p99_ppm,
                    })
                })
                .collect();
            Some((
                "verdict",
                json!({
                    "round": vs.round,
                    "node": vs.node.to_string(),
                    "escalated": vs.check.escalated,
                    "dispute": vs.check.dispute,
                    "decision": name(&vs.decision),
                    "k": vs.k,
                    "samples": samples,
                }),
            ))
        }
        Effect::Transfer(t) => Some((
            "transfer",
            json!({
                "kind": name(&t.kind),
                "from": t.from,
                "to": t.to,
                "amount": t.amount,
                "round": t.round,
                "tiles": t.tiles,
            }),
        )),
        _ => None,
    }
}

/// Log `effect` of job `job` at `now_ms`, if it is worth logging ([`describe`]), in the
/// caller's transaction.
pub fn record(s: &Store, job: &str, effect: &Effect, now_ms: u64) -> Result<(), StoreError> {
    let Some((kind, data)) = describe(effect) else {
        return Ok(());
    };
    let client = s.job_client(job)?.unwrap_or_default();
    let r = s.conn().execute(
        "INSERT INTO events (job_id, client, kind, data, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![job, client, kind, data.to_string(), now_ms as i64],
    );
    s.sql(r).map(|_| ())
}

impl Store {
    /// Up to `limit` events after id `after`, oldest first: of `client`'s jobs (every
    /// client's with `None`), of job `job` only when given.
    pub fn events_after(
        &self,
        client: Option<&str>,
        job: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self.sql(self.conn().prepare(
            "SELECT id, job_id, client, kind, data, at_ms FROM events \
             WHERE id > ?1 AND (?2 IS NULL OR client = ?2) AND (?3 IS NULL OR job_id = ?3) \
             ORDER BY id LIMIT ?4",
        ))?;
        let rows = stmt.query_map(params![after, client, job, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        });
        let rows = self.sql(rows)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, job_id, client, kind, data, at_ms) = self.sql(row)?;
            let data = serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("event {id}"),
                reason: e.to_string(),
            })?;
            out.push(EventRow {
                id,
                job_id,
                client,
                kind,
                data,
                at_ms: at_ms.max(0) as u64,
            });
        }
        Ok(out)
    }

    /// The id of the latest event of `client`'s jobs (every client's with `None`), 0 when
    /// there is none: where a page rendered now starts listening.
    pub fn latest_event_id(&self, client: Option<&str>) -> Result<i64, StoreError> {
        let r = self.conn().query_row(
            "SELECT COALESCE(MAX(id), 0) FROM events WHERE ?1 IS NULL OR client = ?1",
            params![client],
            |r| r.get(0),
        );
        self.sql(r)
    }

    /// Forget the events of jobs that ended before `ended_before_ms` (a job that runs
    /// again, requeued or disputed, has not ended); returns how many were removed. A
    /// dashboard that reconnects later with an older `Last-Event-ID` misses only what
    /// such jobs did, which their pages show from the jobs themselves.
    pub fn prune_events(&self, ended_before_ms: u64) -> Result<usize, StoreError> {
        let r = self.conn().execute(
            "DELETE FROM events WHERE job_id IN \
             (SELECT job_id FROM jobs WHERE ended_ms IS NOT NULL AND ended_ms < ?1)",
            params![ended_before_ms.min(i64::MAX as u64) as i64],
        );
        self.sql(r)
    }
}
