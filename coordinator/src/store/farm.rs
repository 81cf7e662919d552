//! The daemon coordinator's tables: job runs, tasks with leases, verify requests, the
//! outbox, per-job node failures, registered workers, registration challenges and
//! uploaded scenes. Every handler of the daemon runs inside one [`Store::atomically`], so
//! a state change and the messages it must publish (outbox rows) commit together.

use super::{Store, StoreError};
use rusqlite::{params, OptionalExtension, Row};
use tessera_protocol::statements::CheckKind;

pub(super) const FARM_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS job_runs (job_id TEXT PRIMARY KEY, run TEXT NOT NULL);
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
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL, body BLOB NOT NULL
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

/// A task row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRow {
    /// Task id.
    pub task_id: String,
    /// Job id.
    pub job_id: String,
    /// Round.
    pub round: u32,
    /// The task message (JSON `RenderTask`).
    pub body: String,
    /// `open`, `done` or `void`.
    pub state: String,
    /// Node holding the lease.
    pub node: Option<String>,
    /// Lease expiry (coordinator clock, ms).
    pub lease_until_ms: u64,
    /// Deliveries so far (first publish = 0).
    pub attempts: u32,
    /// Tiles in the task.
    pub tiles: u32,
    /// When it was last published (ms).
    pub published_ms: u64,
}

fn task_row(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        task_id: r.get(0)?,
        job_id: r.get(1)?,
        round: r.get(2)?,
        body: r.get(3)?,
        state: r.get(4)?,
        node: r.get(5)?,
        lease_until_ms: r.get::<_, i64>(6)? as u64,
        attempts: r.get(7)?,
        tiles: r.get(8)?,
        published_ms: r.get::<_, i64>(9)? as u64,
    })
}

const TASK_COLS: &str =
    "task_id, job_id, round, body, state, node, lease_until_ms, attempts, tiles, published_ms";

/// A verify request row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRow {
    /// Request id.
    pub request_id: String,
    /// Job id.
    pub job_id: String,
    /// Round.
    pub round: u32,
    /// Node under verification (hex key).
    pub node: String,
    /// `open` or `done`.
    pub state: String,
    /// The bundle's sample record (JSON `NodeSamples`).
    pub samples: String,
    /// When it was last published (ms).
    pub published_ms: u64,
    /// Republications so far.
    pub attempts: u32,
    /// Which check of the node's round it asks for.
    pub check: CheckKind,
}

fn request_row(r: &Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        request_id: r.get(0)?,
        job_id: r.get(1)?,
        round: r.get(2)?,
        node: r.get(3)?,
        state: r.get(4)?,
        samples: r.get(5)?,
        published_ms: r.get::<_, i64>(6)? as u64,
        attempts: r.get(7)?,
        check: match r.get::<_, String>(8)?.as_str() {
            "escalated" => CheckKind::FIRST.escalate(),
            "dispute" => DISPUTE,
            "dispute-escalated" => DISPUTE.escalate(),
            _ => CheckKind::FIRST,
        },
    })
}

const REQUEST_COLS: &str =
    "request_id, job_id, round, node, state, samples, published_ms, attempts, check_kind";

const DISPUTE: CheckKind = CheckKind {
    dispute: true,
    escalated: false,
};

/// A registered node or verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRow {
    /// Public key (hex).
    pub key: String,
    /// Display name.
    pub name: String,
    /// `node` or `verifier`.
    pub role: String,
    /// Capabilities (JSON).
    pub caps: String,
    /// Last registration or signal (ms).
    pub last_seen_ms: u64,
}

fn worker_row(r: &Row<'_>) -> rusqlite::Result<WorkerRow> {
    Ok(WorkerRow {
        key: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        caps: r.get(3)?,
        last_seen_ms: r.get::<_, i64>(4)? as u64,
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
    fn rows<T>(
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

    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize, StoreError> {
        let r = self.conn().execute(sql, p);
        self.sql(r)
    }

    // --- jobs -------------------------------------------------------------------------

    /// Save a job's run state (JSON).
    pub fn put_run(&self, job_id: &str, run_json: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO job_runs (job_id, run) VALUES (?1, ?2) ON CONFLICT(job_id) DO UPDATE SET run = ?2",
            params![job_id, run_json],
        )
        .map(|_| ())
    }

    /// A job's run state (JSON).
    pub fn run(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        self.one(
            "SELECT run FROM job_runs WHERE job_id = ?1",
            params![job_id],
            |r| r.get(0),
        )
    }

    /// A job's signed manifest (JSON).
    pub fn manifest(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        self.one(
            "SELECT manifest FROM jobs WHERE job_id = ?1",
            params![job_id],
            |r| r.get(0),
        )
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
    pub fn job_ids_in_state(&self, state: &str) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT job_id FROM jobs WHERE state = ?1 ORDER BY job_id",
            params![state],
            |r| r.get(0),
        )
    }

    /// A finished job's bundle (JSON).
    pub fn bundle(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .one(
                "SELECT bundle FROM jobs WHERE job_id = ?1",
                params![job_id],
                |r| r.get::<_, Option<String>>(0),
            )?
            .flatten())
    }

    /// The signed batch records (JSON) of a round, in batch-id order.
    pub fn round_batches(&self, job_id: &str, round: u32) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT record FROM batches WHERE job_id = ?1 AND round = ?2 ORDER BY batch_id",
            params![job_id, round],
            |r| r.get(0),
        )
    }

    /// A round's commitment (JSON).
    pub fn round_commitment(&self, job_id: &str, round: u32) -> Result<Option<String>, StoreError> {
        self.one(
            "SELECT commitment FROM rounds WHERE job_id = ?1 AND round = ?2",
            params![job_id, round],
            |r| r.get(0),
        )
    }

    /// The verdicts (JSON) of a round, by node.
    pub fn round_verdicts(&self, job_id: &str, round: u32) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT verdict FROM verdicts WHERE job_id = ?1 AND round = ?2 ORDER BY node, check_kind",
            params![job_id, round],
            |r| r.get(0),
        )
    }

    /// A revealed nonce (None while it is secret).
    pub fn revealed_nonce(&self, job_id: &str, round: u32) -> Result<Option<String>, StoreError> {
        self.one(
            "SELECT nonce FROM nonces WHERE job_id = ?1 AND round = ?2 AND revealed = 1",
            params![job_id, round],
            |r| r.get(0),
        )
    }

    // --- tasks ------------------------------------------------------------------------

    /// Record a new open task.
    pub fn insert_task(
        &self,
        task_id: &str,
        job_id: &str,
        round: u32,
        body: &str,
        tiles: u32,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR IGNORE INTO tasks (task_id, job_id, round, body, state, tiles, published_ms) VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6)",
            params![task_id, job_id, round, body, tiles, now_ms as i64],
        )
        .map(|_| ())
    }

    /// One task.
    pub fn task(&self, task_id: &str) -> Result<Option<TaskRow>, StoreError> {
        self.one(
            &format!("SELECT {TASK_COLS} FROM tasks WHERE task_id = ?1"),
            params![task_id],
            task_row,
        )
    }

    /// Set a task's state (`open`, `done`, `void`); clears its lease unless open.
    pub fn set_task_state(&self, task_id: &str, state: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE tasks SET state = ?2, node = CASE WHEN ?2 = 'open' THEN node ELSE NULL END, done_ms = CASE WHEN ?2 = 'done' THEN CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) ELSE done_ms END WHERE task_id = ?1",
            params![task_id, state],
        )
        .map(|_| ())
    }

    /// Give (or renew) an open task's lease to `node` until `until_ms`. False if the task
    /// is not open.
    pub fn lease_task(&self, task_id: &str, node: &str, until_ms: u64) -> Result<bool, StoreError> {
        // Only a free task or the holder's own: another node naming a leased task (a
        // duplicate delivery, or a node trying to take work over) changes nothing; the
        // lease frees again when it expires and the reconciler republishes the task.
        self.exec(
            "UPDATE tasks SET node = ?2, lease_until_ms = ?3 WHERE task_id = ?1 AND state = 'open' AND (node IS NULL OR node = ?2)",
            params![task_id, node, until_ms as i64],
        )
        .map(|n| n == 1)
    }

    /// Replace an open task's message after a republish: new body, attempt count, no lease.
    pub fn republish_task(
        &self,
        task_id: &str,
        body: &str,
        attempts: u32,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE tasks SET body = ?2, attempts = ?3, node = NULL, lease_until_ms = 0, published_ms = ?4 WHERE task_id = ?1",
            params![task_id, body, attempts, now_ms as i64],
        )
        .map(|_| ())
    }

    /// Open tasks whose lease ran out before `now_ms`.
    pub fn expired_leases(&self, now_ms: u64) -> Result<Vec<TaskRow>, StoreError> {
        self.rows(
            &format!("SELECT {TASK_COLS} FROM tasks WHERE state = 'open' AND node IS NOT NULL AND lease_until_ms < ?1 ORDER BY task_id"),
            params![now_ms as i64],
            task_row,
        )
    }

    /// Open tasks nobody has leased since `before_ms` or earlier.
    pub fn unleased_since(&self, before_ms: u64) -> Result<Vec<TaskRow>, StoreError> {
        self.rows(
            &format!("SELECT {TASK_COLS} FROM tasks WHERE state = 'open' AND node IS NULL AND published_ms < ?1 ORDER BY task_id"),
            params![before_ms as i64],
            task_row,
        )
    }

    /// Tasks of a job's round in a state.
    pub fn count_tasks(&self, job_id: &str, round: u32, state: &str) -> Result<u32, StoreError> {
        Ok(self
            .one(
                "SELECT COUNT(*) FROM tasks WHERE job_id = ?1 AND round = ?2 AND state = ?3",
                params![job_id, round, state],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    /// Tiles of a job's round in tasks of a state.
    pub fn count_task_tiles(
        &self,
        job_id: &str,
        round: u32,
        state: &str,
    ) -> Result<u32, StoreError> {
        Ok(self
            .one(
                "SELECT COALESCE(SUM(tiles), 0) FROM tasks WHERE job_id = ?1 AND round = ?2 AND state = ?3",
                params![job_id, round, state],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    /// Void every open task of a job (it failed or finished).
    pub fn void_open_tasks(&self, job_id: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE tasks SET state = 'void', node = NULL WHERE job_id = ?1 AND state = 'open'",
            params![job_id],
        )
        .map(|_| ())
    }

    /// Open tasks leased to each node: (node, count).
    pub fn leases_by_node(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.rows(
            "SELECT node, COUNT(*) FROM tasks WHERE state = 'open' AND node IS NOT NULL GROUP BY node",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Per frame of a job: when its last task was stored, and when the first payment of
    /// that task's round was applied (wall clock, ms). For the pipeline benchmark.
    pub fn frame_payment_times(&self, job_id: &str) -> Result<Vec<(u32, u64, u64)>, StoreError> {
        self.rows(
            "SELECT json_extract(t.body, '$.frame') AS frame, MAX(t.done_ms), \
               (SELECT MIN(x.applied_ms) FROM transfers x WHERE x.job_id = t.job_id AND x.kind = 'pay_on_pass' AND x.round = MAX(t.round)) \
             FROM tasks t WHERE t.job_id = ?1 AND t.state = 'done' GROUP BY frame ORDER BY frame",
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

    // --- verify requests --------------------------------------------------------------

    /// Record a verify request (idempotent by id).
    #[allow(clippy::too_many_arguments)] // one column each
    #[allow(clippy::too_many_arguments)] // one column each
    pub fn insert_request(
        &self,
        request_id: &str,
        job_id: &str,
        round: u32,
        node: &str,
        check: CheckKind,
        samples_json: &str,
        body: &[u8],
        queue: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR IGNORE INTO requests (request_id, job_id, round, node, state, samples, body, published_ms, check_kind, queue) VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?7, ?8, ?9)",
            params![request_id, job_id, round, node, samples_json, body, now_ms as i64, check.label(), queue],
        )
        .map(|_| ())
    }

    /// One request.
    pub fn request(&self, request_id: &str) -> Result<Option<RequestRow>, StoreError> {
        self.one(
            &format!("SELECT {REQUEST_COLS} FROM requests WHERE request_id = ?1"),
            params![request_id],
            request_row,
        )
    }

    /// The requests of a round, by node.
    pub fn round_requests(&self, job_id: &str, round: u32) -> Result<Vec<RequestRow>, StoreError> {
        self.rows(
            &format!("SELECT {REQUEST_COLS} FROM requests WHERE job_id = ?1 AND round = ?2 ORDER BY node, published_ms, request_id"),
            params![job_id, round],
            request_row,
        )
    }

    /// Mark a request answered.
    pub fn close_request(&self, request_id: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE requests SET state = 'done' WHERE request_id = ?1",
            params![request_id],
        )
        .map(|_| ())
    }

    /// Open requests published before `before_ms`.
    pub fn stale_requests(&self, before_ms: u64) -> Result<Vec<RequestRow>, StoreError> {
        self.rows(
            &format!("SELECT {REQUEST_COLS} FROM requests WHERE state = 'open' AND published_ms < ?1 ORDER BY request_id"),
            params![before_ms as i64],
            request_row,
        )
    }

    /// Note a request's republication.
    pub fn touch_request(&self, request_id: &str, now_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE requests SET published_ms = ?2, attempts = attempts + 1 WHERE request_id = ?1",
            params![request_id, now_ms as i64],
        )
        .map(|_| ())
    }

    // --- outbox -----------------------------------------------------------------------

    /// Queue a message to publish once the surrounding transaction commits.
    pub fn push_outbox(
        &self,
        queue: &str,
        message_id: &str,
        body: &[u8],
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO outbox (queue, message_id, body) VALUES (?1, ?2, ?3)",
            params![queue, message_id, body],
        )
        .map(|_| ())
    }

    /// The oldest `limit` messages of the outbox, verification traffic first: a verify
    /// request never waits behind a burst of new render tasks (payments keep flowing while
    /// a large submission drains). Within each of the two classes, insertion order.
    pub fn outbox(&self, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        self.rows(
            "SELECT seq, queue, message_id, body FROM outbox \
             ORDER BY (queue = 'tasks' OR queue LIKE 'node.%'), seq LIMIT ?1",
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

    /// A request's message body.
    pub fn request_body(&self, request_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.one(
            "SELECT body FROM requests WHERE request_id = ?1",
            params![request_id],
            |r| r.get(0),
        )
    }

    /// The queue a request is published to (the shared `verify` queue, or a verifier's
    /// own queue for a check that must go to a particular verifier), and its attempt
    /// count when it was first published there.
    pub fn request_queue(&self, request_id: &str) -> Result<Option<(String, u32)>, StoreError> {
        self.one(
            "SELECT queue, queue_since FROM requests WHERE request_id = ?1",
            params![request_id],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u32)),
        )
    }

    /// Publish a request to `queue` from its next publication on (its verifier stopped
    /// answering); that publication is attempt `since`.
    pub fn set_request_queue(
        &self,
        request_id: &str,
        queue: &str,
        since: u32,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE requests SET queue = ?2, queue_since = ?3 WHERE request_id = ?1",
            params![request_id, queue, since],
        )
        .map(|_| ())
    }

    // --- failures, workers, challenges, scenes ----------------------------------------

    /// Count one more failure of `node` on `job_id`; returns the new count.
    pub fn add_failure(&self, job_id: &str, node: &str) -> Result<u32, StoreError> {
        self.exec(
            "INSERT INTO failures (job_id, node, count) VALUES (?1, ?2, 1) ON CONFLICT(job_id, node) DO UPDATE SET count = count + 1",
            params![job_id, node],
        )?;
        Ok(self
            .one(
                "SELECT count FROM failures WHERE job_id = ?1 AND node = ?2",
                params![job_id, node],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    /// Register (or re-register) a worker with a fresh session token.
    pub fn upsert_worker(&self, w: &WorkerRow, session: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO workers (key, name, role, caps, session, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(key) DO UPDATE SET name = ?2, role = ?3, caps = ?4, session = ?5, last_seen_ms = ?6",
            params![w.key, w.name, w.role, w.caps, session, w.last_seen_ms as i64],
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
    pub fn worker(&self, key: &str) -> Result<Option<WorkerRow>, StoreError> {
        self.one(
            "SELECT key, name, role, caps, last_seen_ms FROM workers WHERE key = ?1",
            params![key],
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
    pub fn touch_worker(&self, key: &str, now_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE workers SET last_seen_ms = ?2 WHERE key = ?1",
            params![key, now_ms as i64],
        )
        .map(|_| ())
    }

    /// Count one more refused verdict (one that did not follow from the rules) against a
    /// verifier; returns the new count.
    pub fn add_worker_fault(&self, key: &str) -> Result<u32, StoreError> {
        self.exec(
            "UPDATE workers SET faults = faults + 1 WHERE key = ?1",
            params![key],
        )?;
        self.worker_faults(key)
    }

    /// Refused verdicts counted against a worker.
    pub fn worker_faults(&self, key: &str) -> Result<u32, StoreError> {
        Ok(self
            .one(
                "SELECT faults FROM workers WHERE key = ?1",
                params![key],
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

    /// Take a node's `kind` note (`failed`, `declined`) on `attempt` of `task_id`: true the
    /// first time, false for a repeat (each counts at most once per task attempt).
    pub fn take_note(
        &self,
        task_id: &str,
        attempt: u32,
        node: &str,
        kind: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.exec(
            "INSERT OR IGNORE INTO signal_notes (task_id, attempt, node, kind) VALUES (?1, ?2, ?3, ?4)",
            params![task_id, attempt, node, kind],
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
    pub fn scene(&self, scene_hash: &str) -> Result<Option<String>, StoreError> {
        self.one(
            "SELECT listing FROM scenes WHERE scene_hash = ?1",
            params![scene_hash],
            |r| r.get(0),
        )
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
        listing_json: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO scenes (scene_hash, listing) VALUES (?1, ?2)",
            params![scene_hash, listing_json],
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
            let listings: Vec<String> = s.rows(
                "SELECT sc.listing FROM scenes sc WHERE sc.scene_hash IN (\
                 SELECT js.scene_hash FROM job_scenes js JOIN jobs j ON j.job_id = js.job_id \
                 WHERE j.ended_ms IS NULL OR j.ended_ms > ?1)",
                params![ended_after_ms as i64],
                |r| r.get(0),
            )?;
            let mut needed = std::collections::HashSet::new();
            for l in &listings {
                let listing: tessera_api::SceneListing =
                    serde_json::from_str(l).map_err(|e| StoreError::Corrupt {
                        path: s.path.clone(),
                        what: "scenes".into(),
                        reason: e.to_string(),
                    })?;
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
