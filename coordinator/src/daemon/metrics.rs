//! The coordinator's Prometheus metrics: counters and the render-time histogram moved by
//! the effects the service carries out ([`Metrics::effect`]), and gauges read from the
//! store when `/metrics` is scraped ([`Metrics::encode`]). Labels name kinds, decisions,
//! bands, states and classes only, never a job or a node, so their number stays bounded
//! however many jobs and nodes the farm sees.

use crate::machine::{Effect, JobState, Outgoing};
use crate::store::{Store, StoreError};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use tessera_protocol::payments::TransferKind;
use tessera_protocol::statements::{CheckKind, Decision, Role};
use tessera_protocol::tolerance::Band;
use tessera_protocol::DeterminismClass;

/// The content type of [`Metrics::encode`]'s text (the OpenMetrics text format, which
/// Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Tasks whose publication time is remembered for the render-time histogram; past this
/// the oldest are forgotten (a task published that long ago is no sample worth keeping).
const MAX_PUBLISHED: usize = 100_000;

/// Every job state, so that each has its gauge (0 included).
const STATES: [JobState; 8] = [
    JobState::Queued,
    JobState::Rendering,
    JobState::Verifying,
    JobState::Paused,
    JobState::Done,
    JobState::Failed,
    JobState::Cancelled,
    JobState::Disputed,
];

/// A task's last publication: when (ms), its tiles, its attempt.
type Published = (u64, u32, u32);

/// One label, `name="value"`.
type Label = Vec<(&'static str, String)>;

fn label(name: &'static str, value: impl Into<String>) -> Label {
    vec![(name, value.into())]
}

/// The coordinator's metrics. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    tiles_dispatched: Counter,
    tiles_rendered: Counter,
    tiles_verified: Counter,
    task_retries: Counter,
    verdicts: Family<Label, Counter>,
    sampled_tiles: Family<Label, Counter>,
    slashes: Counter,
    slashes_uncollected: Counter,
    slashed: Counter,
    payments: Family<Label, Counter>,
    verifier_faults: Counter,
    jobs_failed: Counter,
    render_seconds: Histogram,
    outbox: Family<Label, Gauge>,
    tiles_open: Gauge,
    workers: Family<Vec<(&'static str, String)>, Gauge>,
    jobs: Family<Label, Gauge>,
    /// Task id → (publication ms, tiles, attempt), for the histogram and the retries.
    published: Mutex<HashMap<String, Published>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tessera");
        let m = Metrics {
            registry: Registry::default(),
            tiles_dispatched: Counter::default(),
            tiles_rendered: Counter::default(),
            tiles_verified: Counter::default(),
            task_retries: Counter::default(),
            verdicts: Family::default(),
            sampled_tiles: Family::default(),
            slashes: Counter::default(),
            slashes_uncollected: Counter::default(),
            slashed: Counter::default(),
            payments: Family::default(),
            verifier_faults: Counter::default(),
            jobs_failed: Counter::default(),
            render_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            outbox: Family::default(),
            tiles_open: Gauge::default(),
            workers: Family::default(),
            jobs: Family::default(),
            published: Mutex::new(HashMap::new()),
        };
        let r = &mut registry;
        r.register(
            "tiles_dispatched",
            "Tiles in render tasks published (a task published again counts again)",
            m.tiles_dispatched.clone(),
        );
        r.register(
            "tiles_rendered",
            "Tiles in results the coordinator accepted",
            m.tiles_rendered.clone(),
        );
        r.register(
            "blocks_verified",
            "8x8 pixel blocks of a node's round whose verification passed (dispute checks not counted)",
            m.tiles_verified.clone(),
        );
        r.register(
            "task_retries",
            "Render tasks published again on a new attempt: a lease expired, a task waited unleased too long, or a render failed",
            m.task_retries.clone(),
        );
        r.register(
            "verdicts",
            "Verdicts taken, by decision (pass, fail, escalate, inconclusive) and check (first, escalated, dispute)",
            m.verdicts.clone(),
        );
        r.register(
            "sampled_tiles",
            "Sampled tiles judged in taken verdicts, by band (match, close, ambiguous, far)",
            m.sampled_tiles.clone(),
        );
        r.register(
            "slashes",
            "Slashes of a node's stake (collected or not)",
            m.slashes.clone(),
        );
        r.register(
            "slashes_uncollected",
            "Slashes that found the stake empty",
            m.slashes_uncollected.clone(),
        );
        r.register(
            "slashed_microcredits",
            "Micro-credits moved from stakes to the treasury by slashes",
            m.slashed.clone(),
        );
        r.register(
            "payments_microcredits",
            "Micro-credits moved by ledger transfers, by kind (escrow, pay_on_pass, hold_back, release, slash, refund, ...)",
            m.payments.clone(),
        );
        r.register(
            "verifier_faults",
            "Verdicts that did not follow from the rules, counted against their verifier",
            m.verifier_faults.clone(),
        );
        r.register("jobs_failed", "Jobs that failed", m.jobs_failed.clone());
        r.register(
            "tile_render_seconds",
            "Seconds per tile from a task's publication to its accepted result",
            m.render_seconds.clone(),
        );
        r.register(
            "outbox_messages",
            "Messages committed and not yet published, by kind (task, check)",
            m.outbox.clone(),
        );
        r.register(
            "tiles_open",
            "Tiles of unfinished jobs not yet rendered in their current round",
            m.tiles_open.clone(),
        );
        r.register(
            "workers",
            "Registered workers by role (node, verifier) and determinism class (backend/adapter)",
            m.workers.clone(),
        );
        r.register("jobs", "Jobs by state", m.jobs.clone());
        Metrics { registry, ..m }
    }

    /// Count one effect the service is about to carry out at `now_ms`.
    pub fn effect(&self, effect: &Effect, now_ms: u64) {
        match effect {
            Effect::Publish {
                message: Outgoing::Task(task),
                ..
            } => {
                let tiles = task.tiles.len() as u32;
                self.tiles_dispatched.inc_by(u64::from(tiles));
                let mut published = self.published();
                let before = published.get(&task.task_id).map(|p| p.2);
                // A new attempt of a task seen before (a decline sends the same attempt
                // elsewhere; a restarted coordinator has seen nothing yet).
                if before.is_some_and(|attempt| task.attempt > attempt) {
                    self.task_retries.inc();
                }
                if published.len() >= MAX_PUBLISHED && before.is_none() {
                    published.clear();
                }
                published.insert(task.task_id.clone(), (now_ms, tiles, task.attempt));
            }
            Effect::KeepResult { result, .. } => {
                let tiles = result.tiles.len() as u32;
                self.tiles_rendered.inc_by(u64::from(tiles));
                if let Some((at, n, _)) = self.published().remove(&result.task_id) {
                    let secs = now_ms.saturating_sub(at) as f64 / 1000.0;
                    self.render_seconds.observe(secs / f64::from(n.max(1)));
                }
            }
            Effect::Transfer(t) => {
                self.payments
                    .get_or_create(&label("kind", kind_name(t.kind)))
                    .inc_by(t.amount);
                if t.kind == TransferKind::Slash {
                    self.slashes.inc();
                    self.slashed.inc_by(t.amount);
                }
            }
            Effect::Uncollected(t) if t.kind == TransferKind::Slash => {
                self.slashes.inc();
                self.slashes_uncollected.inc();
            }
            Effect::VerifierFault { .. } => {
                self.verifier_faults.inc();
            }
            Effect::Failed(_) => {
                self.jobs_failed.inc();
            }
            Effect::Verdict(v) => {
                let v = &v.statement;
                self.verdicts
                    .get_or_create(&vec![
                        ("decision", decision_name(v.decision).to_string()),
                        ("check", check_name(v.check).to_string()),
                    ])
                    .inc();
                for s in &v.samples {
                    self.sampled_tiles
                        .get_or_create(&label("band", band_name(s.band)))
                        .inc();
                }
                if v.decision == Decision::Pass && !v.check.dispute {
                    self.tiles_verified.inc_by(u64::from(v.n_committed));
                }
            }
            _ => {}
        }
    }

    fn published(&self) -> std::sync::MutexGuard<'_, HashMap<String, Published>> {
        // A panic while the map was held leaves nothing half-written worth refusing.
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metrics as text (OpenMetrics, [`CONTENT_TYPE`]), the gauges read from `store`
    /// first: jobs by state, workers by role and class, the outbox by kind and the tiles
    /// open in unfinished jobs.
    pub fn encode(&self, store: &Store) -> Result<String, StoreError> {
        let gauges = store.metric_gauges()?;
        self.jobs.clear();
        for state in STATES {
            let n = gauges.jobs.get(state.as_str()).copied().unwrap_or(0);
            self.jobs
                .get_or_create(&label("state", state.as_str()))
                .set(n as i64);
        }
        self.outbox.clear();
        for kind in ["task", "check"] {
            let n = gauges.outbox.get(kind).copied().unwrap_or(0);
            self.outbox
                .get_or_create(&label("kind", kind))
                .set(n as i64);
        }
        self.workers.clear();
        let mut workers: HashMap<(Role, String), i64> = HashMap::new();
        for (role, class) in store.workers()?.into_iter().map(|w| (w.role, w.caps.class)) {
            *workers.entry((role, class_name(&class))).or_default() += 1;
        }
        for ((role, class), n) in workers {
            self.workers
                .get_or_create(&vec![("role", role.as_str().to_string()), ("class", class)])
                .set(n);
        }
        self.tiles_open.set(gauges.tiles_open as i64);
        Ok(self.text())
    }

    /// The metrics as they are now (no gauge read), as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A transfer kind as a label value.
pub fn kind_name(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Deposit => "deposit",
        TransferKind::Escrow => "escrow",
        TransferKind::PayOnPass => "pay_on_pass",
        TransferKind::HoldBack => "hold_back",
        TransferKind::Release => "release",
        TransferKind::Slash => "slash",
        TransferKind::Refund => "refund",
        TransferKind::Forfeit => "forfeit",
        TransferKind::Clawback => "clawback",
        TransferKind::DisputeDeposit => "dispute_deposit",
        TransferKind::DisputeRefund => "dispute_refund",
        TransferKind::DisputeFee => "dispute_fee",
    }
}

/// A decision as a label value.
pub fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Pass => "pass",
        Decision::Fail => "fail",
        Decision::Escalate => "escalate",
        Decision::Inconclusive => "inconclusive",
    }
}

/// A check kind as a label value: `dispute`, `escalated` or `first`.
pub fn check_name(c: CheckKind) -> &'static str {
    if c.dispute {
        "dispute"
    } else if c.escalated {
        "escalated"
    } else {
        "first"
    }
}

/// A band as a label value.
pub fn band_name(b: Band) -> &'static str {
    match b {
        Band::Match => "match",
        Band::Close => "close",
        Band::Ambiguous => "ambiguous",
        Band::Far => "far",
    }
}

/// A determinism class as a label value: `backend/adapter`, at most 80 characters of
/// letters, digits, spaces and `.,()_-/` (one per GPU model and driver backend, so the
/// label stays bounded).
pub fn class_name(class: &DeterminismClass) -> String {
    format!("{}/{}", class.backend, class.adapter)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .,()_-/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect()
}
