//! The node daemon's Prometheus metrics: tasks and tiles rendered, seconds per tile,
//! failures, scene loads and busy render slots. No label names a job or a task.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Buckets of the seconds-per-tile histograms (10 ms to about 5 min), shared with the
/// verifier's seconds per check.
pub fn seconds_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.01, 2.0, 16)
}

/// A registry whose text is the metrics of one daemon.
pub fn text(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

/// A busy render slot ([`NodeMetrics::busy`]); dropping it frees the slot.
pub struct Busy<'a>(&'a Gauge);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The node's metrics; updating them is cheap and thread-safe.
pub struct NodeMetrics {
    registry: Registry,
    tasks_rendered: Counter,
    tiles_rendered: Counter,
    render_seconds: Histogram,
    failures: Counter,
    slots_busy: Gauge,
    slots: Gauge,
}

impl NodeMetrics {
    /// Every metric at zero; `scene_loads` is the scene cache's load counter
    /// ([`crate::worker::SceneCache::load_counter`]).
    pub fn new(scene_loads: Counter) -> Self {
        let mut registry = Registry::with_prefix("tessera_node");
        let m = NodeMetrics {
            registry: Registry::default(),
            tasks_rendered: Counter::default(),
            tiles_rendered: Counter::default(),
            render_seconds: Histogram::new(seconds_buckets()),
            failures: Counter::default(),
            slots_busy: Gauge::default(),
            slots: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "tasks_rendered",
            "Render tasks whose result was published",
            m.tasks_rendered.clone(),
        );
        r.register(
            "tiles_rendered",
            "Tiles in published results",
            m.tiles_rendered.clone(),
        );
        r.register(
            "tile_render_seconds",
            "Seconds of rendering per tile of a task (the task's render time over its tiles)",
            m.render_seconds.clone(),
        );
        r.register(
            "task_failures",
            "Tasks whose scene load or render failed (reported to the coordinator)",
            m.failures.clone(),
        );
        r.register(
            "scene_loads",
            "Scenes loaded (downloaded and prepared)",
            scene_loads,
        );
        r.register(
            "slots_busy",
            "Render slots rendering now",
            m.slots_busy.clone(),
        );
        r.register("slots", "Render slots", m.slots.clone());
        NodeMetrics { registry, ..m }
    }

    /// A task of `tiles` tiles rendered in `took` and its result published.
    pub fn rendered(&self, tiles: usize, took: Duration) {
        self.tasks_rendered.inc();
        self.tiles_rendered.inc_by(tiles as u64);
        self.render_seconds
            .observe(took.as_secs_f64() / tiles.max(1) as f64);
    }

    /// A task failed.
    pub fn failed(&self) {
        self.failures.inc();
    }

    /// A render slot is rendering until the guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        self.slots_busy.inc();
        Busy(&self.slots_busy)
    }

    /// The node serves this many slots.
    pub fn set_slots(&self, slots: u32) {
        self.slots.set(i64::from(slots));
    }

    /// The metrics as text (OpenMetrics).
    pub fn text(&self) -> String {
        text(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, name: &str) -> f64 {
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} missing in {text}"));
        match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |c| c.count),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn node_metrics_render_and_parse() {
        let loads = Counter::default();
        let m = NodeMetrics::new(loads.clone());
        m.set_slots(2);
        loads.inc();
        let first = m.busy();
        m.rendered(4, Duration::from_millis(400));
        m.rendered(2, Duration::from_millis(100));
        drop(m.busy());
        m.failed();
        let t = m.text();
        assert_eq!(value(&t, "tessera_node_tasks_rendered_total"), 2.0);
        assert_eq!(value(&t, "tessera_node_tiles_rendered_total"), 6.0);
        assert_eq!(value(&t, "tessera_node_task_failures_total"), 1.0);
        assert_eq!(value(&t, "tessera_node_scene_loads_total"), 1.0);
        assert_eq!(value(&t, "tessera_node_slots_busy"), 1.0);
        assert_eq!(value(&t, "tessera_node_slots"), 2.0);
        assert_eq!(
            value(&t, "tessera_node_tile_render_seconds"),
            2.0,
            "two observations"
        );
        let sum = value(&t, "tessera_node_tile_render_seconds_sum");
        assert!(
            (sum - 0.15).abs() < 1e-9,
            "0.1 s and 0.05 s per tile: {sum}"
        );
        drop(first);
        assert_eq!(value(&m.text(), "tessera_node_slots_busy"), 0.0);
    }
}
