//! The webhook tables: each client's hooks (`webhooks`) and the deliveries of their
//! events (`webhook_deliveries`). The service appends a delivery in the transaction of
//! the effect that caused it; the delivery task reads the due ones, POSTs them and marks
//! each delivered, or failed with its next attempt's time, or given up.
//!
//! A delivery is due while `next_at_ms` is set and not after now; delivered and given-up
//! ones keep their row (with `next_at_ms` cleared) until they are pruned.

use super::{Store, StoreError};
use rusqlite::{params, OptionalExtension, Row};

pub(super) const WEBHOOK_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, client TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL,
    events TEXT NOT NULL, created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_by_client ON webhooks (client, created_ms);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY, hook_id TEXT NOT NULL, job_id TEXT NOT NULL, event TEXT NOT NULL,
    body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER,
    delivered_ms INTEGER, last_error TEXT, created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_at_ms)
    WHERE next_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_hook ON webhook_deliveries (hook_id);
"#;

/// A client's webhook as the store keeps it (with its secret, which only the delivery
/// task reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRow {
    /// Its id.
    pub id: String,
    /// The client whose jobs' events it gets.
    pub client: String,
    /// Where events are POSTed.
    pub url: String,
    /// The HMAC key deliveries are signed with.
    pub secret: String,
    /// The events it gets (wire names).
    pub events: Vec<String>,
    /// When it was added (Unix ms).
    pub created_ms: u64,
}

/// A delivery to make now: its row and the hook's URL and secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    /// The delivery's id (the `Tessera-Delivery` header).
    pub id: String,
    /// The hook.
    pub hook_id: String,
    /// The event (wire name).
    pub event: String,
    /// The JSON body, as it is sent.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The hook's URL.
    pub url: String,
    /// The hook's secret.
    pub secret: String,
}

/// A delivery as it stands (for inspection and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The delivery's id.
    pub id: String,
    /// The hook.
    pub hook_id: String,
    /// The job.
    pub job_id: String,
    /// The event (wire name).
    pub event: String,
    /// The JSON body.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is tried next (`None`: delivered or given up).
    pub next_at_ms: Option<u64>,
    /// When a receiver took it (2xx).
    pub delivered_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

fn ms(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
}

fn delivery_record(r: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.get(0)?,
        hook_id: r.get(1)?,
        job_id: r.get(2)?,
        event: r.get(3)?,
        body: r.get(4)?,
        attempts: r.get::<_, i64>(5)?.max(0) as u32,
        next_at_ms: ms(r, 6)?,
        delivered_ms: ms(r, 7)?,
        last_error: r.get(8)?,
    })
}

impl Store {
    fn webhook_row(&self, r: &Row<'_>) -> rusqlite::Result<WebhookRow> {
        let events: String = r.get(4)?;
        Ok(WebhookRow {
            id: r.get(0)?,
            client: r.get(1)?,
            url: r.get(2)?,
            secret: r.get(3)?,
            events: serde_json::from_str(&events).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    format!("webhook events: {e}").into(),
                )
            })?,
            created_ms: ms(r, 5)?.unwrap_or(0),
        })
    }

    /// Add a webhook, unless its client has `max_per_client` already (then `false`,
    /// nothing written); the count and the insert are one transaction.
    pub fn insert_webhook(
        &self,
        hook: &WebhookRow,
        max_per_client: u64,
    ) -> Result<bool, StoreError> {
        let events = self.encode("webhook events", &hook.id, &hook.events)?;
        self.atomically(|s| {
            let r = s.conn().query_row(
                "SELECT COUNT(*) FROM webhooks WHERE client = ?1",
                params![hook.client],
                |r| r.get::<_, i64>(0),
            );
            if s.sql(r)?.max(0) as u64 >= max_per_client {
                return Ok(false);
            }
            s.exec(
                "INSERT INTO webhooks (id, client, url, secret, events, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![hook.id, hook.client, hook.url, hook.secret, events, hook.created_ms as i64],
            )?;
            Ok(true)
        })
    }

    /// A client's webhooks, oldest first.
    pub fn client_webhooks(&self, client: &str) -> Result<Vec<WebhookRow>, StoreError> {
        self.rows(
            "SELECT id, client, url, secret, events, created_ms FROM webhooks WHERE client = ?1 ORDER BY created_ms, id",
            params![client],
            |r| self.webhook_row(r),
        )
    }

    /// Remove client `client`'s webhook `id` and the deliveries still waiting for it, in
    /// one transaction; `None` when the client has no such hook (another client's hook
    /// is left alone).
    pub fn delete_webhook(&self, client: &str, id: &str) -> Result<Option<WebhookRow>, StoreError> {
        self.atomically(|s| {
            let r = s
                .conn()
                .query_row(
                    "SELECT id, client, url, secret, events, created_ms FROM webhooks WHERE id = ?1 AND client = ?2",
                    params![id, client],
                    |r| s.webhook_row(r),
                )
                .optional();
            let Some(hook) = s.sql(r)? else {
                return Ok(None);
            };
            s.exec(
                "DELETE FROM webhook_deliveries WHERE hook_id = ?1",
                params![id],
            )?;
            s.exec("DELETE FROM webhooks WHERE id = ?1", params![id])?;
            Ok(Some(hook))
        })
    }

    /// The ids of client `client`'s webhooks that get `event`.
    pub fn webhooks_for_event(&self, client: &str, event: &str) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT id FROM webhooks WHERE client = ?1 \
             AND EXISTS (SELECT 1 FROM json_each(webhooks.events) WHERE value = ?2) ORDER BY created_ms, id",
            params![client, event],
            |r| r.get(0),
        )
    }

    /// Queue delivery `id` of `event` of job `job_id` to hook `hook_id`, due at `now_ms`
    /// (in the caller's transaction: the effect that caused it commits with it).
    pub fn insert_delivery(
        &self,
        id: &str,
        hook_id: &str,
        job_id: &str,
        event: &str,
        body: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO webhook_deliveries (id, hook_id, job_id, event, body, next_at_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![id, hook_id, job_id, event, body, now_ms as i64],
        )
        .map(|_| ())
    }

    /// Up to `limit` deliveries due at `now_ms`, the longest waiting first.
    pub fn due_deliveries(&self, now_ms: u64, limit: u32) -> Result<Vec<DueDelivery>, StoreError> {
        self.rows(
            "SELECT d.id, d.hook_id, d.event, d.body, d.attempts, w.url, w.secret \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.hook_id \
             WHERE d.next_at_ms IS NOT NULL AND d.next_at_ms <= ?1 \
             ORDER BY d.next_at_ms, d.created_ms, d.id LIMIT ?2",
            params![now_ms as i64, limit],
            |r| {
                Ok(DueDelivery {
                    id: r.get(0)?,
                    hook_id: r.get(1)?,
                    event: r.get(2)?,
                    body: r.get(3)?,
                    attempts: r.get::<_, i64>(4)?.max(0) as u32,
                    url: r.get(5)?,
                    secret: r.get(6)?,
                })
            },
        )
    }

    /// A receiver took delivery `id` (answered 2xx) at `now_ms`, after `attempts`.
    pub fn mark_delivered(&self, id: &str, attempts: u32, now_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE webhook_deliveries SET delivered_ms = ?2, next_at_ms = NULL, attempts = ?3, last_error = NULL WHERE id = ?1",
            params![id, now_ms as i64, attempts],
        )
        .map(|_| ())
    }

    /// Attempt `attempts` of delivery `id` failed with `error`: it is tried again at
    /// `next_at_ms`, or never (`None`: given up).
    pub fn mark_failed(
        &self,
        id: &str,
        attempts: u32,
        next_at_ms: Option<u64>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE webhook_deliveries SET attempts = ?2, next_at_ms = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, next_at_ms.map(|t| t as i64), error],
        )
        .map(|_| ())
    }

    /// Every delivery of hook `hook_id`, oldest first.
    pub fn webhook_deliveries(&self, hook_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.rows(
            "SELECT id, hook_id, job_id, event, body, attempts, next_at_ms, delivered_ms, last_error \
             FROM webhook_deliveries WHERE hook_id = ?1 ORDER BY created_ms, id",
            params![hook_id],
            delivery_record,
        )
    }

    /// The latest `limit` deliveries of hook `hook_id`, newest first.
    pub fn recent_deliveries(
        &self,
        hook_id: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.rows(
            "SELECT id, hook_id, job_id, event, body, attempts, next_at_ms, delivered_ms, last_error \
             FROM webhook_deliveries WHERE hook_id = ?1 ORDER BY created_ms DESC, id DESC LIMIT ?2",
            params![hook_id, limit],
            delivery_record,
        )
    }

    /// Remove the deliveries that are finished (delivered or given up) and were queued
    /// before `before_ms`; returns how many.
    pub fn prune_deliveries(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.exec(
            "DELETE FROM webhook_deliveries WHERE next_at_ms IS NULL AND created_ms < ?1",
            params![before_ms as i64],
        )
    }
}
