//! The coordinator's store: SQLite (one file), the source of truth for jobs, nodes, tiles,
//! commitments, verdicts, proof bundles and the double-entry ledger.
//!
//! Ledger writes run in one transaction each: the idempotency key, the balance check and
//! both balance updates commit together or not at all.

pub mod events;
mod farm;
mod webhooks;

use crate::machine::JobState;
pub use farm::{MetricGauges, OutboxRow, StoredMachine, WorkerRow};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use tessera_protocol::bundle::ProofBundle;
use tessera_protocol::keys::PublicKey;
use tessera_protocol::payments::{account, LedgerError, Transfer, TransferKind};
use tessera_protocol::statements::{JobManifest, Signed};
use tessera_protocol::DeterminismClass;
pub use webhooks::{DeliveryRecord, DueDelivery, WebhookRow};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("store {path}: {source}")]
    Sqlite {
        /// Database path.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A ledger rule refused a transfer.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Stored data could not be decoded.
    #[error("store {path}: {what}: {reason}")]
    Corrupt {
        /// Database path.
        path: String,
        /// What was read.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    state TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    bundle TEXT,
    client TEXT NOT NULL DEFAULT '',
    ended_ms INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_client ON jobs (client, created_unix);
CREATE TABLE IF NOT EXISTS nonces (
    job_id TEXT NOT NULL, round INTEGER NOT NULL, nonce TEXT NOT NULL, revealed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY, name TEXT NOT NULL, class TEXT NOT NULL, trust INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches (
    job_id TEXT NOT NULL, batch_id INTEGER NOT NULL, round INTEGER NOT NULL, node TEXT NOT NULL, record TEXT NOT NULL,
    stored_ms INTEGER,
    PRIMARY KEY (job_id, batch_id)
);
CREATE TABLE IF NOT EXISTS tiles (
    job_id TEXT NOT NULL, round INTEGER NOT NULL, frame INTEGER NOT NULL, tile_index INTEGER NOT NULL,
    batch_id INTEGER NOT NULL, node TEXT NOT NULL, tile_hash TEXT NOT NULL, bytes BLOB NOT NULL,
    PRIMARY KEY (job_id, round, frame, tile_index)
);
CREATE TABLE IF NOT EXISTS rounds (
    job_id TEXT NOT NULL, round INTEGER NOT NULL, commitment TEXT NOT NULL,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE IF NOT EXISTS verdicts (
    job_id TEXT NOT NULL, round INTEGER NOT NULL, node TEXT NOT NULL,
    check_kind TEXT NOT NULL DEFAULT 'first', verdict TEXT NOT NULL,
    PRIMARY KEY (job_id, round, node, check_kind)
);
CREATE TABLE IF NOT EXISTS balances (
    account TEXT PRIMARY KEY, balance INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS uncollected (
    key TEXT PRIMARY KEY, job_id TEXT, kind TEXT NOT NULL, from_account TEXT NOT NULL,
    to_account TEXT NOT NULL, amount INTEGER NOT NULL, round INTEGER NOT NULL, tiles INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS transfers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE, job_id TEXT, kind TEXT NOT NULL, from_account TEXT NOT NULL,
    to_account TEXT NOT NULL, amount INTEGER NOT NULL, round INTEGER NOT NULL, tiles INTEGER NOT NULL,
    applied_ms INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);
"#;

/// Stores written before verdicts had a check kind (one verdict per node and round) get
/// the column, every old verdict counting as a first check.
const MIGRATE_VERDICTS: &str = r#"
CREATE TABLE verdicts_v2 (
    job_id TEXT NOT NULL, round INTEGER NOT NULL, node TEXT NOT NULL,
    check_kind TEXT NOT NULL DEFAULT 'first', verdict TEXT NOT NULL,
    PRIMARY KEY (job_id, round, node, check_kind)
);
INSERT INTO verdicts_v2 (job_id, round, node, check_kind, verdict)
    SELECT job_id, round, node, 'first', verdict FROM verdicts;
DROP TABLE verdicts;
ALTER TABLE verdicts_v2 RENAME TO verdicts;
"#;

/// Add `column` to an existing `table` of an older store (a new store's schema has it).
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let missing: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1) \
         AND NOT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
        rusqlite::params![table, column],
        |r| r.get(0),
    )?;
    if missing {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'verdicts') \
         AND NOT EXISTS (SELECT 1 FROM pragma_table_info('verdicts') WHERE name = 'check_kind')",
        [],
        |r| r.get(0),
    )?;
    if old {
        conn.execute_batch(&format!("BEGIN; {MIGRATE_VERDICTS} COMMIT;"))?;
    }
    add_column(
        conn,
        "requests",
        "check_kind",
        "TEXT NOT NULL DEFAULT 'first'",
    )?;
    add_column(conn, "requests", "queue", "TEXT NOT NULL DEFAULT 'verify'")?;
    add_column(conn, "workers", "faults", "INTEGER NOT NULL DEFAULT 0")?;

    add_column(
        conn,
        "requests",
        "queue_since",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    add_column(conn, "jobs", "client", "TEXT NOT NULL DEFAULT ''")?;
    add_column(conn, "jobs", "ended_ms", "INTEGER")?;
    add_column(conn, "batches", "stored_ms", "INTEGER")?;
    add_column(conn, "job_runs", "over", "INTEGER NOT NULL DEFAULT 0")?;
    add_column(conn, "job_runs", "claims", "INTEGER NOT NULL DEFAULT 0")?;
    add_column(conn, "outbox", "job_id", "TEXT")?;
    add_column(conn, "outbox", "priority", "INTEGER NOT NULL DEFAULT 0")?;
    Ok(())
}

/// After the schema: jobs stored before jobs had an owner column get it from their
/// signed manifest, and finished ones an end time, so that tenancy and garbage
/// collection see them.
fn backfill(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "UPDATE jobs SET client = COALESCE(json_extract(manifest, '$.statement.client'), '') WHERE client = '';
         UPDATE jobs SET ended_ms = created_unix * 1000 WHERE ended_ms IS NULL AND state IN ('done', 'failed');",
    )
}

/// The SQLite store.
pub struct Store {
    conn: Connection,
    path: String,
}

impl Store {
    /// Open (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: p.clone(),
            source,
        })?;
        migrate(&conn)
            .and_then(|()| conn.execute_batch(SCHEMA))
            .and_then(|()| conn.execute_batch(farm::FARM_SCHEMA))
            .and_then(|()| conn.execute_batch(webhooks::WEBHOOK_SCHEMA))
            .and_then(|()| conn.execute_batch(events::EVENTS_SCHEMA))
            .and_then(|()| backfill(&conn))
            .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(10)))
            .map_err(|source| StoreError::Sqlite {
                path: p.clone(),
                source,
            })?;
        Ok(Self { conn, path: p })
    }

    /// Open (creating) a scratch store at `path`, for a process that removes it when it
    /// ends (`tessera render`): the rollback journal is kept in memory and nothing is
    /// synced to disk, so a crash may lose or corrupt it, which a scratch store may.
    /// Transactions stay atomic while the process runs.
    pub fn open_scratch(path: &Path) -> Result<Self, StoreError> {
        let store = Self::open(path)?;
        store.sql(
            store
                .conn
                .execute_batch("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;"),
        )?;
        Ok(store)
    }

    /// Run `f` in one IMMEDIATE transaction: everything it writes commits together, or
    /// nothing does. Nested calls join the outer transaction.
    pub fn atomically<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if !self.conn.is_autocommit() {
            return f(self);
        }
        self.sql(self.conn.execute_batch("BEGIN IMMEDIATE"))?;
        match f(self) {
            Ok(v) => {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return self.sql(Err(e));
                }
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T, StoreError> {
        r.map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Record a new job with its signed manifest, in state `queued`. (Its secret nonces
    /// live in its state machine, [`Self::put_machine`].)
    pub fn insert_job(
        &self,
        job_id: &str,
        manifest: &Signed<JobManifest>,
        created_unix: u64,
    ) -> Result<(), StoreError> {
        let json = self.encode("manifest", job_id, manifest)?;
        let r = self.conn.execute(
            "INSERT INTO jobs (job_id, manifest, state, created_unix, client) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                job_id,
                json,
                JobState::Queued.as_str(),
                created_unix as i64,
                manifest.statement.client
            ],
        );
        self.sql(r).map(|_| ())
    }

    /// Set a job's state; a job that ends (`done`, `failed`) is stamped with the time it
    /// ended, one that runs again (a dispute) loses it.
    pub fn set_job_state(&self, job_id: &str, state: JobState) -> Result<(), StoreError> {
        let r = self.conn.execute(
            "UPDATE jobs SET state = ?2, ended_ms = CASE WHEN ?3 \
             THEN COALESCE(ended_ms, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) \
             ELSE NULL END WHERE job_id = ?1",
            params![job_id, state.as_str(), state.has_ended()],
        );
        self.sql(r).map(|_| ())
    }

    /// A job's state (`None`: no such job).
    pub fn job_state(&self, job_id: &str) -> Result<Option<JobState>, StoreError> {
        let r = self
            .conn
            .query_row(
                "SELECT state FROM jobs WHERE job_id = ?1",
                params![job_id],
                |r| r.get::<_, String>(0),
            )
            .optional();
        match self.sql(r)? {
            None => Ok(None),
            Some(state) => state
                .parse::<JobState>()
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    what: format!("the state of job {job_id}"),
                    reason: e.to_string(),
                }),
        }
    }

    /// `value` as the JSON a column keeps (`what` of job `job_id` names it in the error).
    pub(crate) fn encode<T: serde::Serialize>(
        &self,
        what: &str,
        job_id: &str,
        value: &T,
    ) -> Result<String, StoreError> {
        serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            what: format!("the {what} of job {job_id}"),
            reason: format!("cannot be encoded: {e}"),
        })
    }

    /// A JSON column read back (`what` of job `job_id` names it in the error).
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        job_id: &str,
        json: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            what: format!("the {what} of job {job_id}"),
            reason: e.to_string(),
        })
    }

    /// Register or update a node.
    pub fn upsert_node(
        &self,
        node: &PublicKey,
        name: &str,
        class: &DeterminismClass,
    ) -> Result<(), StoreError> {
        let class = serde_json::to_string(class).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            what: format!("the class of node {}", node.short()),
            reason: format!("cannot be encoded: {e}"),
        })?;
        let r = self.conn.execute(
            "INSERT INTO nodes (node, name, class) VALUES (?1, ?2, ?3) ON CONFLICT(node) DO UPDATE SET name = ?2, class = ?3",
            params![node.to_string(), name, class],
        );
        self.sql(r).map(|_| ())
    }

    /// A node's trust (0 if unknown).
    pub fn trust(&self, node: &PublicKey) -> Result<u32, StoreError> {
        let r = self
            .conn
            .query_row(
                "SELECT trust FROM nodes WHERE node = ?1",
                params![node.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional();
        Ok(self.sql(r)?.unwrap_or(0).max(0) as u32)
    }

    /// Set a node's trust.
    pub fn set_trust(&self, node: &PublicKey, trust: u32) -> Result<(), StoreError> {
        let r = self.conn.execute(
            "UPDATE nodes SET trust = ?2 WHERE node = ?1",
            params![node.to_string(), trust],
        );
        self.sql(r).map(|_| ())
    }

    /// Store a checked batch and its tile bytes in one transaction. Idempotent: a batch id
    /// already stored is left as it is and `false` is returned.
    #[allow(clippy::too_many_arguments)] // one column each; a struct would only rename them
    fn insert_batch(
        &self,
        job_id: &str,
        round: u32,
        batch_id: u32,
        node: &str,
        frame: u32,
        record_json: &str,
        tiles: &[(u32, [u8; 32], &[u8])],
    ) -> Result<bool, StoreError> {
        self.atomically(|s| {
            let tx = &s.conn;
            let exists: Option<i64> = s.sql(
                tx.query_row(
                    "SELECT 1 FROM batches WHERE job_id = ?1 AND batch_id = ?2",
                    params![job_id, batch_id],
                    |r| r.get(0),
                )
                .optional(),
            )?;
            if exists.is_some() {
                return Ok(false);
            }
            s.sql(tx.execute("INSERT INTO batches (job_id, batch_id, round, node, record, stored_ms) VALUES (?1, ?2, ?3, ?4, ?5, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))", params![job_id, batch_id, round, node, record_json]))?;
            for (tile_index, hash, bytes) in tiles {
                s.sql(tx.execute(
                    "INSERT OR REPLACE INTO tiles (job_id, round, frame, tile_index, batch_id, node, tile_hash, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![job_id, round, frame, tile_index, batch_id, node, hex::encode(hash), bytes],
                ))?;
            }
            Ok(true)
        })
    }

    /// Store a checked batch result (its signed batch record and every tile's bytes) for
    /// `round`; idempotent like [`Store::insert_batch`].
    pub fn insert_result(
        &self,
        job_id: &str,
        round: u32,
        res: &tessera_protocol::wire::BatchResult,
    ) -> Result<bool, StoreError> {
        let s = &res.batch.signed.statement;
        let tiles: Vec<(u32, [u8; 32], &[u8])> = res
            .batch
            .tiles
            .iter()
            .zip(&res.tiles)
            .map(|(l, t)| (l.tile_index, l.tile_hash, t.bytes.as_slice()))
            .collect();
        let record = serde_json::to_string(&res.batch).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            what: format!("batch {} of job {job_id}", s.batch_id),
            reason: e.to_string(),
        })?;
        self.insert_batch(
            job_id,
            round,
            s.batch_id,
            &s.node.to_string(),
            s.frame,
            &record,
            &tiles,
        )
    }

    /// The bytes of a delivered tile.
    pub fn tile_bytes(
        &self,
        job_id: &str,
        round: u32,
        frame: u32,
        tile_index: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self
            .conn
            .query_row("SELECT bytes FROM tiles WHERE job_id = ?1 AND round = ?2 AND frame = ?3 AND tile_index = ?4", params![job_id, round, frame, tile_index], |r| r.get(0))
            .optional();
        self.sql(r)
    }

    /// Store the finished job's proof bundle.
    pub fn save_bundle(&self, job_id: &str, bundle: &ProofBundle) -> Result<(), StoreError> {
        let json = self.encode("bundle", job_id, bundle)?;
        let r = self.conn.execute(
            "UPDATE jobs SET bundle = ?2 WHERE job_id = ?1",
            params![job_id, json],
        );
        self.sql(r).map(|_| ())
    }

    /// List a slash that found the stake empty on the job's receipt (idempotent by key).
    pub(crate) fn list_uncollected(
        &self,
        job_id: Option<&str>,
        t: &Transfer,
    ) -> Result<bool, StoreError> {
        let r = self.conn.execute(
            "INSERT OR IGNORE INTO uncollected (key, job_id, kind, from_account, to_account, amount, round, tiles) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                t.key,
                job_id,
                kind_name(t.kind),
                t.from,
                t.to,
                t.amount as i64,
                i64::from(t.round),
                i64::from(t.tiles)
            ],
        );
        self.sql(r).map(|n| n == 1)
    }

    /// Apply a transfer under the ledger rules, atomically. `Ok(true)`: applied;
    /// `Ok(false)`: its key was already applied with the same content.
    pub fn apply_transfer(&self, job_id: Option<&str>, t: &Transfer) -> Result<bool, StoreError> {
        self.atomically(|s| s.apply_transfer_in_tx(job_id, t))
    }

    fn apply_transfer_in_tx(&self, job_id: Option<&str>, t: &Transfer) -> Result<bool, StoreError> {
        let tx = &self.conn;
        let prev: Option<(String, String, String, i64, i64, i64)> = self.sql(
            tx.query_row(
                "SELECT kind, from_account, to_account, amount, round, tiles FROM transfers WHERE key = ?1",
                params![t.key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional(),
        )?;
        if let Some(p) = prev {
            let same = p
                == (
                    kind_name(t.kind).to_string(),
                    t.from.clone(),
                    t.to.clone(),
                    t.amount as i64,
                    i64::from(t.round),
                    i64::from(t.tiles),
                );
            return if same {
                Ok(false)
            } else {
                Err(LedgerError::KeyReused(t.key.clone()).into())
            };
        }
        if t.amount == 0 {
            return Err(LedgerError::ZeroAmount(t.key.clone()).into());
        }
        if t.from == t.to {
            return Err(LedgerError::SameAccount(t.key.clone(), t.from.clone()).into());
        }
        let balance: i64 = self
            .sql(
                tx.query_row(
                    "SELECT balance FROM balances WHERE account = ?1",
                    params![t.from],
                    |r| r.get(0),
                )
                .optional(),
            )?
            .unwrap_or(0);
        if !account::may_go_negative(&t.from) && i128::from(balance) < i128::from(t.amount) {
            return Err(LedgerError::Insufficient {
                key: t.key.clone(),
                account: t.from.clone(),
                balance: i128::from(balance),
                amount: t.amount,
            }
            .into());
        }
        let amount = i64::try_from(t.amount).map_err(|_| LedgerError::ZeroAmount(t.key.clone()))?;
        self.sql(tx.execute(
            "INSERT INTO transfers (key, job_id, kind, from_account, to_account, amount, round, tiles) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![t.key, job_id, kind_name(t.kind), t.from, t.to, amount, t.round, t.tiles],
        ))?;
        for (acct, delta) in [(&t.from, -amount), (&t.to, amount)] {
            self.sql(tx.execute(
                "INSERT INTO balances (account, balance) VALUES (?1, ?2) ON CONFLICT(account) DO UPDATE SET balance = balance + ?2",
                params![acct, delta],
            ))?;
        }
        Ok(true)
    }

    /// Whether a transfer with this key has been applied.
    pub fn transfer_applied(&self, key: &str) -> Result<bool, StoreError> {
        let r = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM transfers WHERE key = ?1)",
            params![key],
            |r| r.get(0),
        );
        self.sql(r)
    }

    /// Balance of an account.
    pub fn balance(&self, account: &str) -> Result<i64, StoreError> {
        let r = self
            .conn
            .query_row(
                "SELECT balance FROM balances WHERE account = ?1",
                params![account],
                |r| r.get(0),
            )
            .optional();
        Ok(self.sql(r)?.unwrap_or(0))
    }

    /// Every balance, by account.
    pub fn balances(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.sql(
            self.conn
                .prepare("SELECT account, balance FROM balances ORDER BY account"),
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)));
        let rows = self.sql(rows)?;
        let v: rusqlite::Result<Vec<_>> = rows.collect();
        self.sql(v)
    }

    /// Sum of all balances: 0 unless the ledger is broken.
    pub fn total(&self) -> Result<i64, StoreError> {
        let r = self
            .conn
            .query_row("SELECT COALESCE(SUM(balance), 0) FROM balances", [], |r| {
                r.get(0)
            });
        self.sql(r)
    }

    /// The transfers of a job, in the order they were applied.
    pub fn job_transfers(&self, job_id: &str) -> Result<Vec<Transfer>, StoreError> {
        self.transfers_in(
            "SELECT key, kind, from_account, to_account, amount, round, tiles FROM transfers WHERE job_id = ?1 ORDER BY seq",
            job_id,
        )
    }

    /// The job's slashes that found the stake empty (listed by the job's machine under
    /// the slash cap, `tessera_protocol::rules::collect`).
    pub fn job_uncollected(&self, job_id: &str) -> Result<Vec<Transfer>, StoreError> {
        self.transfers_in(
            "SELECT key, kind, from_account, to_account, amount, round, tiles FROM uncollected WHERE job_id = ?1 ORDER BY key",
            job_id,
        )
    }

    fn transfers_in(&self, query: &str, job_id: &str) -> Result<Vec<Transfer>, StoreError> {
        let mut stmt = self.sql(self.conn.prepare(query))?;
        let rows = stmt.query_map(params![job_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        });
        let rows = self.sql(rows)?;
        let mut out = Vec::new();
        for row in rows {
            let (key, kind, from, to, amount, round, tiles) = self.sql(row)?;
            let kind = kind_from_name(&kind).ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("transfer {key}"),
                reason: format!("unknown kind {kind:?}"),
            })?;
            out.push(Transfer {
                key,
                kind,
                from,
                to,
                amount: amount as u64,
                round: round as u32,
                tiles: tiles as u32,
            });
        }
        Ok(out)
    }
}

const KINDS: [(TransferKind, &str); 12] = [
    (TransferKind::Deposit, "deposit"),
    (TransferKind::Escrow, "escrow"),
    (TransferKind::PayOnPass, "pay_on_pass"),
    (TransferKind::HoldBack, "hold_back"),
    (TransferKind::Release, "release"),
    (TransferKind::Slash, "slash"),
    (TransferKind::Refund, "refund"),
    (TransferKind::Forfeit, "forfeit"),
    (TransferKind::Clawback, "clawback"),
    (TransferKind::DisputeDeposit, "dispute_deposit"),
    (TransferKind::DisputeRefund, "dispute_refund"),
    (TransferKind::DisputeFee, "dispute_fee"),
];

fn kind_name(k: TransferKind) -> &'static str {
    KINDS
        .iter()
        .find(|(x, _)| *x == k)
        .map_or("unknown", |(_, n)| n)
}

fn kind_from_name(n: &str) -> Option<TransferKind> {
    KINDS.iter().find(|(_, x)| *x == n).map(|(k, _)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(key: &str, from: &str, to: &str, amount: u64) -> Transfer {
        Transfer {
            key: key.into(),
            kind: TransferKind::Deposit,
            from: from.into(),
            to: to.into(),
            amount,
            round: 0,
            tiles: 0,
        }
    }

    #[test]
    fn a_store_from_before_request_routing_opens_with_its_rows_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The requests table as the first release of the daemon wrote it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE requests (
                    request_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, round INTEGER NOT NULL,
                    node TEXT NOT NULL, state TEXT NOT NULL, samples TEXT NOT NULL,
                    body BLOB NOT NULL, published_ms INTEGER NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO requests VALUES ('r1', 'j', 0, 'n', 'open', '[]', x'7b7d', 5, 3);",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let row: (String, i64, String, String, i64) = s
            .conn()
            .query_row(
                "SELECT state, attempts, check_kind, queue, queue_since FROM requests WHERE request_id = 'r1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            ("open".into(), 3, "first".into(), "verify".into(), 0),
            "the old row survives, with the columns added since"
        );
    }

    #[test]
    fn ledger_survives_reopen_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let s = Store::open(&path).unwrap();
            assert!(s
                .apply_transfer(None, &t("d1", "external:bank", "client:a", 100))
                .unwrap());
            assert!(!s
                .apply_transfer(None, &t("d1", "external:bank", "client:a", 100))
                .unwrap());
            assert!(matches!(
                s.apply_transfer(None, &t("d1", "external:bank", "client:a", 5)),
                Err(StoreError::Ledger(LedgerError::KeyReused(_)))
            ));
            assert!(matches!(
                s.apply_transfer(None, &t("x", "client:a", "escrow:j", 101)),
                Err(StoreError::Ledger(LedgerError::Insufficient { .. }))
            ));
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.balance("client:a").unwrap(), 100);
        assert_eq!(s.total().unwrap(), 0);
    }

    #[test]
    fn an_uncollected_slash_is_listed_once_for_its_job_and_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        let slash = Transfer {
            kind: TransferKind::Slash,
            ..t("s3", "stake:n", "treasury", 20)
        };
        assert!(s.list_uncollected(Some("j3"), &slash).unwrap());
        assert!(!s.list_uncollected(Some("j3"), &slash).unwrap(), "once");
        assert_eq!(s.job_uncollected("j3").unwrap(), vec![slash]);
        assert!(s.job_uncollected("j2").unwrap().is_empty());
        assert!(s.job_transfers("j3").unwrap().is_empty());
        assert_eq!(s.total().unwrap(), 0);
    }

    /// A store whose machines were kept before task claims were opens with a `claims`
    /// column of 0 for them, and `task_wanted` then leaves the answer to the machine
    /// (None) instead of reading a missing claim as "not wanted"; so does a job with no
    /// machine.
    #[test]
    fn machines_kept_before_task_claims_leave_the_answer_to_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE job_runs (job_id TEXT PRIMARY KEY, run TEXT NOT NULL, over INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO job_runs (job_id, run) VALUES ('j1', '{}');",
            )
            .unwrap();
        let s = Store::open(&path).unwrap();
        let node = tessera_protocol::keys::SecretKey::from_seed(&[1; 32]).public();
        assert_eq!(s.task_wanted("j1", "j1-b0", &node).unwrap(), None);
        assert_eq!(s.task_wanted("j2", "j2-b0", &node).unwrap(), None);
        let kept: String = s
            .conn()
            .query_row("SELECT run FROM job_runs WHERE job_id = 'j1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kept, "{}", "the old row is kept as it was");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn sum_never_changes_and_matches_pure_rules(ops in proptest::collection::vec((0u8..12, 0usize..4, 0usize..4, 1u64..500), 1..40)) {
            let accts = ["external:bank", "client:a", "escrow:j", "node:n"];
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(&dir.path().join("p.db")).unwrap();
            let mut pure = tessera_protocol::payments::Ledger::new();
            for (k, f, to, amount) in ops {
                let tr = t(&format!("k{k}"), accts[f], accts[to], amount);
                let a = s.apply_transfer(None, &tr).map_err(|e| e.to_string());
                let b = pure.apply(&tr).map_err(|e| e.to_string());
                prop_assert_eq!(a.is_ok(), b.is_ok(), "{:?} vs {:?}", a, b);
                prop_assert_eq!(s.total().unwrap(), 0);
            }
            for acct in accts {
                prop_assert_eq!(i128::from(s.balance(acct).unwrap()), pure.balance(acct));
            }
        }
    }
}
