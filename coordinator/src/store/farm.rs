//! The daemon coordinator's tables: each job's state machine (`job_runs`) and its tasks'
//! claims (`task_claims`: who may render each task now, so that a node's question does
//! not load the machine), the outbox,
//! registered workers, signals seen, registration challenges and uploaded scenes. Every
//! handler of the daemon runs inside one [`Store::atomically`], so a job's new state, what
//! it moved in the ledger and the messages it must publish (outbox rows) commit together.
//!
//! Stores written before the job state machine have `tasks`, `requests`, `failures` and
//! `signal_notes` tables (and `rounds`, `verdicts` and `nonces` in the base schema): they
//! are still created, so that such a store opens with its rows intact, but nothing
//! reads or writes them any more.

use super::{Store, StoreError};
use crate::machine::{Job, JobState, Progress, TaskClaim};
use rusqlite::{params, OptionalExtension, Row};
use std::collections::HashMap;
use tessera_api::SceneListing;
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::keys::{KeyError, PublicKey};
use tessera_protocol::statements::{JobManifest, Role, Signed, UnknownRole};
use tessera_protocol::wire::Capabilities;

pub(super) const FARM_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS job_runs (
    job_id TEXT PRIMARY KEY, run TEXT NOT NULL, over INTEGER NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS task_claims (
    task_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, free INTEGER NOT NULL, holder TEXT
);
CREATE INDEX IF NOT EXISTS task_claims_by_job ON task_claims (job_id);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, round INTEGER NOT NULL, body TEXT NOT NULL,
    state TEXT NOT NULL, node TEXT, lease_until_ms INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0, tiles INTEGER NOT NULL, published_ms INTEGER NOT NULL,
    done_ms INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_by_job ON tasks (job_id, round, state);
CREATE INDEX IF NOT EXISTS tasks_by_lease ON tasks (state, lease_until_ms);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, round INTEGER NOT NULL, node TEXT NOT NULL,
    state TEXT NOT NULL, samples TEXT NOT NULL, body BLOB NOT NULL, published_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, check_kind TEXT NOT NULL DEFAULT 'first',
    queue TEXT NOT NULL DEFAULT 'verify', queue_since INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL, body BLOB NOT NULL,
    job_id TEXT, priority INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS failures (
    job_id TEXT NOT NULL, node TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (job_id, node)
);
CREATE TABLE IF NOT EXISTS workers (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, caps TEXT NOT NULL,
    session TEXT NOT NULL UNIQUE, last_seen_ms INTEGER NOT NULL,
    faults INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS seen_signals (digest TEXT PRIMARY KEY, sent_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS signal_notes (
    task_id TEXT NOT NULL, attempt INTEGER NOT NULL, node TEXT NOT NULL, kind TEXT NOT NULL,
    PRIMARY KEY (task_id, attempt, node, kind)
);
CREATE TABLE IF NOT EXISTS challenges (challenge TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scenes (scene_hash TEXT PRIMARY KEY, listing TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_scenes (job_id TEXT PRIMARY KEY, scene_hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_scenes_by_scene ON job_scenes (scene_hash);
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT NOT NULL, client TEXT NOT NULL, size INTEGER NOT NULL, used_ms INTEGER NOT NULL,
    PRIMARY KEY (hash, client)
);
CREATE INDEX IF NOT EXISTS blobs_by_use ON blobs (used_ms);
"#;

/// A registered node or verifier.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRow {
    /// Public key.
    pub key: PublicKey,
    /// Display name.
    pub name: String,
    /// What it registered as.
    pub role: Role,
    /// What it registered.
    pub caps: Capabilities,
    /// Last registration or signal (ms).
    pub last_seen_ms: u64,
}

/// What [`Store::metric_gauges`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricGauges {
    /// Jobs by state (its name).
    pub jobs: std::collections::BTreeMap<String, u64>,
    /// Outbox rows by kind (`task`, `check`).
    pub outbox: std::collections::BTreeMap<String, u64>,
    /// Tiles of unfinished jobs not rendered yet in their current round.
    pub tiles_open: u64,
}

fn worker_row(r: &Row<'_>) -> rusqlite::Result<WorkerRow> {
    let bad = |column: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    };
    let (key, role, caps): (String, String, String) = (r.get(0)?, r.get(2)?, r.get(3)?);
    Ok(WorkerRow {
        key: key.parse().map_err(|e: KeyError| bad(0, e.to_string()))?,
        name: r.get(1)?,
        role: role
            .parse()
            .map_err(|e: UnknownRole| bad(2, e.to_string()))?,
        caps: serde_json::from_str(&caps).map_err(|e| bad(3, format!("capabilities: {e}")))?,
        last_seen_ms: r.get::<_, i64>(4)? as u64,
    })
}

/// A job's state machine as the store keeps it.
#[derive(Debug)]
pub enum StoredMachine {
    /// The machine that runs the job.
    Machine(Box<Job>),
    /// A job an older coordinator stored (before the job state machine): it cannot be
    /// resumed; this is its progress as that coordinator recorded it.
    Older(Progress),
}

/// The progress of a job an older coordinator stored (its `JobRun` JSON) in state
/// `state`; `None` when `run` is not one.
fn older_progress(run: &str, state: &str) -> Option<Progress> {
    let v: serde_json::Value = serde_json::from_str(run).ok()?;
    let n = |key: &str| v.get(key)?.as_u64().and_then(|x| u32::try_from(x).ok());
    v.get("next_batch_id")?;
    let tiles_total = n("tiles_total")?;
    let tiles_verified = n("tiles_verified")?;
    let state: JobState = state.parse().unwrap_or(JobState::Failed);
    Some(Progress {
        state,
        round: n("round")?,
        tiles_total,
        tiles_rendered: if state == JobState::Done {
            tiles_total
        } else {
            tiles_verified
        },
        tiles_verified,
        error: v.get("error").and_then(|e| e.as_str()).map(str::to_string),
        release_at_ms: v.get("release_at_ms").and_then(|t| t.as_u64()),
    })
}

/// One message waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    /// Order of insertion.
    pub seq: i64,
    /// Logical queue.
    pub queue: String,
    /// Message id.
    pub message_id: String,
    /// Body.
    pub body: Vec<u8>,
}

impl Store {
    /// The rows `sql` selects, each read by `f` (the store modules' one query helper).
    pub(super) fn rows<T>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.sql(self.conn().prepare_cached(sql))?;
        let rows = self.sql(stmt.query_map(p, f))?;
        let v: rusqlite::Result<Vec<T>> = rows.collect();
        self.sql(v)
    }

    fn one<T>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let r = self.conn().query_row(sql, p, f).optional();
        self.sql(r)
    }

    /// Run `sql`; the rows it changed.
    pub(super) fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize, StoreError> {
        let r = self.conn().execute(sql, p);
        self.sql(r)
    }

    // --- jobs -------------------------------------------------------------------------

    /// Save a job's state machine, noting whether it is over ([`Job::is_over`]), and its
    /// tasks' claims ([`Job::task_claims`]) for [`Self::task_wanted`]: only the rows that
    /// changed are written.
    pub fn put_machine(&self, job_id: &str, machine: &Job) -> Result<(), StoreError> {
        let json = self.encode("state machine", job_id, machine)?;
        self.atomically(|s| {
            s.exec(
                "INSERT INTO job_runs (job_id, run, over, claims) VALUES (?1, ?2, ?3, 1) ON CONFLICT(job_id) DO UPDATE SET run = ?2, over = ?3, claims = 1",
                params![job_id, json, machine.is_over()],
            )?;
            let mut kept: HashMap<String, (bool, Option<String>)> = s
                .rows(
                    "SELECT task_id, free, holder FROM task_claims WHERE job_id = ?1",
                    params![job_id],
                    |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))),
                )?
                .into_iter()
                .collect();
            let conn = s.conn();
            let mut upsert = s.sql(conn.prepare_cached(
                "INSERT INTO task_claims (task_id, job_id, free, holder) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(task_id) DO UPDATE SET job_id = ?2, free = ?3, holder = ?4",
            ))?;
            for (task_id, claim) in machine.task_claims() {
                let row = (claim.free, claim.holder.map(|h| h.to_string()));
                if kept.remove(task_id).as_ref() != Some(&row) {
                    s.sql(upsert.execute(params![task_id, job_id, row.0, row.1]))?;
                }
            }
            let mut gone = s.sql(
                conn.prepare_cached("DELETE FROM task_claims WHERE task_id = ?1 AND job_id = ?2"),
            )?;
            for task_id in kept.keys() {
                s.sql(gone.execute(params![task_id, job_id]))?;
            }
            Ok(())
        })
    }

    /// Whether `node` should render task `task_id` of job `job_id` now
    /// ([`Job::wants`]), from the claims [`Self::put_machine`] keeps: `None` where the
    /// job has no machine, or one kept before claims were (then ask the machine).
    pub fn task_wanted(
        &self,
        job_id: &str,
        task_id: &str,
        node: &PublicKey,
    ) -> Result<Option<bool>, StoreError> {
        let row: Option<(bool, Option<bool>, Option<String>)> = self.one(
            "SELECT r.claims, c.free, c.holder FROM job_runs r \
             LEFT JOIN task_claims c ON c.task_id = ?2 AND c.job_id = r.job_id WHERE r.job_id = ?1",
            params![job_id, task_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let Some((true, free, holder)) = row else {
            return Ok(None);
        };
        let holder = holder
            .map(|h| h.parse::<PublicKey>())
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("the claim on task {task_id}"),
                reason: e.to_string(),
            })?;
        let claim = TaskClaim {
            free: free.unwrap_or(false),
            holder,
        };
        Ok(Some(claim.wants(node)))
    }

    /// The jobs whose machines are not over (the reconciler's round), by id: a store
    /// with many finished jobs is not read through on every tick.
    pub fn running_job_ids(&self) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT job_id FROM job_runs WHERE over = 0 ORDER BY job_id",
            [],
            |r| r.get(0),
        )
    }

    /// Take a job out of the reconciler's round for good (one an older coordinator
    /// stored, which cannot be resumed).
    pub fn retire_machine(&self, job_id: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE job_runs SET over = 1 WHERE job_id = ?1",
            params![job_id],
        )
        .map(|_| ())
    }

    /// A job's state machine as it was kept (`None`: no such job). Its policy is not kept
    /// (the coordinator's configuration decides it): set it with [`Job::with_policy`].
    pub fn machine(&self, job_id: &str) -> Result<Option<StoredMachine>, StoreError> {
        let Some((run, state)) = self.one(
            "SELECT r.run, j.state FROM job_runs r JOIN jobs j ON j.job_id = r.job_id WHERE r.job_id = ?1",
            params![job_id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?
        else {
            return Ok(None);
        };
        match serde_json::from_str::<Job>(&run) {
            Ok(machine) => Ok(Some(StoredMachine::Machine(Box::new(machine)))),
            Err(e) => match older_progress(&run, &state) {
                Some(progress) => {
                    tracing::debug!(job = %&job_id[..12.min(job_id.len())], "stored by an older coordinator: {e}");
                    Ok(Some(StoredMachine::Older(progress)))
                }
                None => Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    what: format!("the state of job {job_id}"),
                    reason: e.to_string(),
                }),
            },
        }
    }

    /// A job's signed manifest.
    pub fn manifest(&self, job_id: &str) -> Result<Option<Signed<JobManifest>>, StoreError> {
        let json: Option<String> = self.one(
            "SELECT manifest FROM jobs WHERE job_id = ?1",
            params![job_id],
            |r| r.get(0),
        )?;
        json.map(|j| self.decode("manifest", job_id, &j))
            .transpose()
    }

    /// Every job id, newest first.
    pub fn job_ids(&self) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT job_id FROM jobs ORDER BY created_unix DESC, job_id",
            [],
            |r| r.get(0),
        )
    }

    /// The jobs in a state.
    pub fn job_ids_in_state(&self, state: JobState) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT job_id FROM jobs WHERE state = ?1 ORDER BY job_id",
            params![state.as_str()],
            |r| r.get(0),
        )
    }

    /// What the metrics' gauges read (`GET /metrics`): jobs by state, outbox rows by
    /// kind (`task`: render tasks, `check`: verify requests), and the tiles of unfinished
    /// jobs not rendered yet in their current round.
    pub fn metric_gauges(&self) -> Result<MetricGauges, StoreError> {
        let mut g = MetricGauges::default();
        let jobs: Vec<(String, i64)> =
            self.rows("SELECT state, COUNT(*) FROM jobs GROUP BY state", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        g.jobs = jobs.into_iter().map(|(s, n)| (s, n as u64)).collect();
        let outbox: Vec<(String, i64)> = self.rows(
            "SELECT CASE WHEN queue = 'tasks' OR queue LIKE 'node.%' THEN 'task' ELSE 'check' END AS kind, COUNT(*) FROM outbox GROUP BY kind",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        g.outbox = outbox.into_iter().map(|(k, n)| (k, n as u64)).collect();
        for job in self.running_job_ids()? {
            let progress = match self.machine(&job)? {
                Some(StoredMachine::Machine(m)) => m.progress(),
                Some(StoredMachine::Older(p)) => p,
                None => continue,
            };
            if !progress.state.has_ended() {
                g.tiles_open +=
                    u64::from(progress.tiles_total.saturating_sub(progress.tiles_rendered));
            }
        }
        Ok(g)
    }

    /// A finished job's proof bundle (`None`: no such job, or not finished).
    pub fn bundle(&self, job_id: &str) -> Result<Option<ProofBundle>, StoreError> {
        let json = self
            .one(
                "SELECT bundle FROM jobs WHERE job_id = ?1",
                params![job_id],
                |r| r.get::<_, Option<String>>(0),
            )?
            .flatten();
        json.map(|j| self.decode("bundle", job_id, &j)).transpose()
    }

    // --- batches ----------------------------------------------------------------------

    /// Per frame of a job: when its last batch was stored, and when the first payment of
    /// that batch's round was applied (wall clock, ms). For the pipeline benchmark.
    pub fn frame_payment_times(&self, job_id: &str) -> Result<Vec<(u32, u64, u64)>, StoreError> {
        self.rows(
            "SELECT json_extract(b.record, '$.signed.statement.frame') AS frame, MAX(b.stored_ms), \
               (SELECT MIN(x.applied_ms) FROM transfers x WHERE x.job_id = b.job_id AND x.kind = 'pay_on_pass' AND x.round = MAX(b.round)) \
             FROM batches b WHERE b.job_id = ?1 GROUP BY frame ORDER BY frame",
            params![job_id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u32,
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0) as u64,
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                ))
            },
        )
    }

    // --- outbox -----------------------------------------------------------------------

    /// Queue a message of job `job` at `priority` to publish once the surrounding
    /// transaction commits.
    pub fn push_outbox(
        &self,
        queue: &str,
        message_id: &str,
        body: &[u8],
        job: Option<&str>,
        priority: i32,
    ) -> Result<(), StoreError> {
        // An older copy of the same message not sent yet is superseded (a task published
        // again after a lease expired or a requeue carries its newer attempt).
        self.exec(
            "DELETE FROM outbox WHERE message_id = ?1 AND queue = ?2",
            params![message_id, queue],
        )?;
        self.exec(
            "INSERT INTO outbox (queue, message_id, body, job_id, priority) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![queue, message_id, body, job, priority],
        )
        .map(|_| ())
    }

    /// Take back the render tasks of job `job` not yet published (the job was paused or
    /// cancelled); returns how many.
    pub fn withdraw_tasks(&self, job: &str) -> Result<usize, StoreError> {
        self.exec(
            "DELETE FROM outbox WHERE job_id = ?1 AND (queue = 'tasks' OR queue LIKE 'node.%')",
            params![job],
        )
    }

    /// Job `job`'s messages not yet published go at `priority` from now on.
    pub fn set_outbox_priority(&self, job: &str, priority: i32) -> Result<(), StoreError> {
        self.exec(
            "UPDATE outbox SET priority = ?2 WHERE job_id = ?1",
            params![job, priority],
        )
        .map(|_| ())
    }

    /// The next `limit` messages of the outbox: verification traffic first (a verify
    /// request never waits behind a burst of new render tasks, so payments keep flowing
    /// while a large submission drains), then tasks for one node's own queue, then tasks
    /// for the shared queue, which the publisher holds back while that queue is deep.
    /// Render tasks go by their job's priority, higher first; otherwise insertion order.
    pub fn outbox(&self, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        self.rows(
            "SELECT seq, queue, message_id, body FROM outbox \
             ORDER BY CASE WHEN queue = 'tasks' THEN 2 WHEN queue LIKE 'node.%' THEN 1 ELSE 0 END, \
             priority DESC, seq LIMIT ?1",
            params![limit],
            |r| {
                Ok(OutboxRow {
                    seq: r.get(0)?,
                    queue: r.get(1)?,
                    message_id: r.get(2)?,
                    body: r.get(3)?,
                })
            },
        )
    }

    /// Forget published messages.
    pub fn delete_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.atomically(|s| {
            for seq in seqs {
                s.exec("DELETE FROM outbox WHERE seq = ?1", params![seq])?;
            }
            Ok(())
        })
    }

    // --- workers, challenges, scenes ---------------------------------------------------

    /// Register (or re-register) a worker with a fresh session token.
    pub fn upsert_worker(&self, w: &WorkerRow, session: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO workers (key, name, role, caps, session, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(key) DO UPDATE SET name = ?2, role = ?3, caps = ?4, session = ?5, last_seen_ms = ?6",
            params![
                w.key.to_string(),
                w.name,
                w.role.as_str(),
                serde_json::to_string(&w.caps).unwrap_or_default(),
                session,
                w.last_seen_ms as i64
            ],
        )
        .map(|_| ())
    }

    /// The worker a session token belongs to.
    pub fn worker_by_session(&self, session: &str) -> Result<Option<WorkerRow>, StoreError> {
        self.one(
            "SELECT key, name, role, caps, last_seen_ms FROM workers WHERE session = ?1",
            params![session],
            worker_row,
        )
    }

    /// A worker by key.
    pub fn worker(&self, key: &PublicKey) -> Result<Option<WorkerRow>, StoreError> {
        self.one(
            "SELECT key, name, role, caps, last_seen_ms FROM workers WHERE key = ?1",
            params![key.to_string()],
            worker_row,
        )
    }

    /// Every worker, by key.
    pub fn workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        self.rows(
            "SELECT key, name, role, caps, last_seen_ms FROM workers ORDER BY key",
            [],
            worker_row,
        )
    }

    /// Note that a worker was heard from.
    pub fn touch_worker(&self, key: &PublicKey, now_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE workers SET last_seen_ms = ?2 WHERE key = ?1",
            params![key.to_string(), now_ms as i64],
        )
        .map(|_| ())
    }

    /// Count one more refused verdict (one that did not follow from the rules) against a
    /// verifier; returns the new count.
    pub fn add_worker_fault(&self, key: &PublicKey) -> Result<u32, StoreError> {
        self.exec(
            "UPDATE workers SET faults = faults + 1 WHERE key = ?1",
            params![key.to_string()],
        )?;
        self.worker_faults(key)
    }

    /// Refused verdicts counted against a worker.
    pub fn worker_faults(&self, key: &PublicKey) -> Result<u32, StoreError> {
        Ok(self
            .one(
                "SELECT faults FROM workers WHERE key = ?1",
                params![key.to_string()],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    /// Take a node signal (by the digest of its signed bytes) sent at `sent_ms`: true the
    /// first time, false for a replay. Digests of signals sent before `forget_before_ms`
    /// are dropped: such signals are refused as stale before they get here.
    pub fn take_signal(
        &self,
        digest: &str,
        sent_ms: u64,
        forget_before_ms: u64,
    ) -> Result<bool, StoreError> {
        self.exec(
            "DELETE FROM seen_signals WHERE sent_ms < ?1",
            params![forget_before_ms as i64],
        )?;
        Ok(self.exec(
            "INSERT OR IGNORE INTO seen_signals (digest, sent_ms) VALUES (?1, ?2)",
            params![digest, sent_ms as i64],
        )? == 1)
    }

    /// Remember a registration challenge, forgetting those expired by `now_ms`, unless
    /// `max` unexpired ones are waiting already: then `false` (anyone may ask for a
    /// challenge, so their number is bounded).
    pub fn insert_challenge(
        &self,
        challenge: &str,
        now_ms: u64,
        expires_ms: u64,
        max: u64,
    ) -> Result<bool, StoreError> {
        self.exec(
            "DELETE FROM challenges WHERE expires_ms < ?1",
            params![now_ms as i64],
        )?;
        let waiting = self
            .one("SELECT COUNT(*) FROM challenges", [], |r| {
                r.get::<_, i64>(0)
            })?
            .unwrap_or(0);
        if waiting as u64 >= max {
            return Ok(false);
        }
        self.exec(
            "INSERT INTO challenges (challenge, expires_ms) VALUES (?1, ?2)",
            params![challenge, expires_ms as i64],
        )
        .map(|_| true)
    }

    /// Use up a challenge: true if it existed and had not expired.
    pub fn take_challenge(&self, challenge: &str, now_ms: u64) -> Result<bool, StoreError> {
        let expires: Option<i64> = self.one(
            "SELECT expires_ms FROM challenges WHERE challenge = ?1",
            params![challenge],
            |r| r.get(0),
        )?;
        self.exec(
            "DELETE FROM challenges WHERE challenge = ?1",
            params![challenge],
        )?;
        Ok(expires.is_some_and(|e| e as u64 >= now_ms))
    }

    /// A scene listing (JSON).
    pub fn scene(&self, scene_hash: &str) -> Result<Option<SceneListing>, StoreError> {
        let json: Option<String> = self.one(
            "SELECT listing FROM scenes WHERE scene_hash = ?1",
            params![scene_hash],
            |r| r.get(0),
        )?;
        json.map(|j| self.decode_listing(scene_hash, &j))
            .transpose()
    }

    fn decode_listing(&self, scene_hash: &str, json: &str) -> Result<SceneListing, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            what: format!("the listing of scene {scene_hash}"),
            reason: e.to_string(),
        })
    }

    // --- tenancy and storage ----------------------------------------------------------

    /// The client that submitted a job (`None`: no such job).
    pub fn job_client(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        self.one(
            "SELECT client FROM jobs WHERE job_id = ?1",
            params![job_id],
            |r| r.get(0),
        )
    }

    /// When a job that is done or failed ended (ms), `None` while it runs.
    pub fn job_ended_ms(&self, job_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .one(
                "SELECT ended_ms FROM jobs WHERE job_id = ?1",
                params![job_id],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .flatten()
            .map(|ms| ms.max(0) as u64))
    }

    /// A client's job ids, newest first.
    pub fn client_job_ids(&self, client: &str) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT job_id FROM jobs WHERE client = ?1 ORDER BY created_unix DESC, job_id",
            params![client],
            |r| r.get(0),
        )
    }

    /// How many of a client's jobs have not ended (not `done` or `failed`).
    pub fn client_open_jobs(&self, client: &str) -> Result<u64, StoreError> {
        self.one(
            "SELECT COUNT(*) FROM jobs WHERE client = ?1 AND state NOT IN ('done', 'failed')",
            params![client],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n.unwrap_or(0) as u64)
    }

    /// Remember which scene (content hash) a job renders, and the scene's file listing
    /// (JSON): the one workers are given and garbage collection keeps. The files a
    /// listing's entry needs are in its content hash, so another listing of the same
    /// scene (from another job) lists the same blobs for them.
    pub fn insert_job_scene(
        &self,
        job_id: &str,
        scene_hash: &str,
        listing: &SceneListing,
    ) -> Result<(), StoreError> {
        let json = self.encode("scene listing", job_id, listing)?;
        self.exec(
            "INSERT OR REPLACE INTO scenes (scene_hash, listing) VALUES (?1, ?2)",
            params![scene_hash, json],
        )?;
        self.exec(
            "INSERT OR REPLACE INTO job_scenes (job_id, scene_hash) VALUES (?1, ?2)",
            params![job_id, scene_hash],
        )
        .map(|_| ())
    }

    /// Whether `client` has a job that renders scene `scene_hash`.
    pub fn client_has_scene(&self, client: &str, scene_hash: &str) -> Result<bool, StoreError> {
        self.one(
            "SELECT EXISTS (SELECT 1 FROM job_scenes s JOIN jobs j ON j.job_id = s.job_id \
             WHERE s.scene_hash = ?1 AND j.client = ?2)",
            params![scene_hash, client],
            |r| r.get::<_, bool>(0),
        )
        .map(|b| b.unwrap_or(false))
    }

    /// Record that `client` stored blob `hash` (of `size` bytes), or used it again in a
    /// submission: either way it is kept for the retention time from `now_ms`.
    pub fn record_blob(
        &self,
        hash: &str,
        client: &str,
        size: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO blobs (hash, client, size, used_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(hash, client) DO UPDATE SET used_ms = MAX(used_ms, ?4)",
            params![hash, client, size as i64, now_ms as i64],
        )
        .map(|_| ())
    }

    /// Whether `client` stored blob `hash` (a client reads and submits only its own).
    pub fn client_has_blob(&self, hash: &str, client: &str) -> Result<bool, StoreError> {
        self.one(
            "SELECT EXISTS (SELECT 1 FROM blobs WHERE hash = ?1 AND client = ?2)",
            params![hash, client],
            |r| r.get::<_, bool>(0),
        )
        .map(|b| b.unwrap_or(false))
    }

    /// Whether anyone stored blob `hash`.
    pub fn blob_known(&self, hash: &str) -> Result<bool, StoreError> {
        self.one(
            "SELECT EXISTS (SELECT 1 FROM blobs WHERE hash = ?1)",
            params![hash],
            |r| r.get::<_, bool>(0),
        )
        .map(|b| b.unwrap_or(false))
    }

    /// Bytes of the blobs `client` has stored.
    pub fn client_blob_bytes(&self, client: &str) -> Result<u64, StoreError> {
        self.one(
            "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE client = ?1",
            params![client],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n.unwrap_or(0).max(0) as u64)
    }

    /// Forget the blobs that no job still needs: not used since `unused_before_ms`, and
    /// not listed by a job that has not ended or ended after `ended_after_ms` (it may
    /// still be disputed and rendered again). Returns the hashes no client holds any
    /// more: their files may go.
    pub fn collect_blobs(
        &self,
        unused_before_ms: u64,
        ended_after_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.atomically(|s| {
            let listings: Vec<(String, String)> = s.rows(
                "SELECT sc.scene_hash, sc.listing FROM scenes sc WHERE sc.scene_hash IN (\
                 SELECT js.scene_hash FROM job_scenes js JOIN jobs j ON j.job_id = js.job_id \
                 WHERE j.ended_ms IS NULL OR j.ended_ms > ?1)",
                params![ended_after_ms as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut needed = std::collections::HashSet::new();
            for (scene_hash, json) in &listings {
                let listing = s.decode_listing(scene_hash, json)?;
                needed.extend(listing.files.into_values());
            }
            let stale: Vec<String> = s.rows(
                "SELECT DISTINCT hash FROM blobs WHERE used_ms < ?1",
                params![unused_before_ms as i64],
                |r| r.get(0),
            )?;
            let mut gone = Vec::new();
            for hash in stale.into_iter().filter(|h| !needed.contains(h)) {
                s.exec(
                    "DELETE FROM blobs WHERE hash = ?1 AND used_ms < ?2",
                    params![hash, unused_before_ms as i64],
                )?;
                if !s.blob_known(&hash)? {
                    gone.push(hash);
                }
            }
            Ok(gone)
        })
    }
}
