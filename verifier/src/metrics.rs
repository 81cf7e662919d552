//! The verifier daemon's Prometheus metrics: checks judged, tiles re-rendered, verdicts by
//! decision and seconds per check. No label names a job, a node or a request.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tessera_node::metrics::{seconds_buckets, text};
use tessera_protocol::statements::Decision;

/// The verifier's metrics; updating them is cheap and thread-safe.
pub struct VerifierMetrics {
    registry: Registry,
    checks: Counter,
    tiles_rerendered: Counter,
    verdicts: Family<Vec<(&'static str, &'static str)>, Counter>,
    refused: Counter,
    check_seconds: Histogram,
}

impl VerifierMetrics {
    /// Every metric at zero; `scene_loads` is the scene cache's load counter.
    pub fn new(scene_loads: Counter) -> Self {
        let mut registry = Registry::with_prefix("tessera_verifier");
        let m = VerifierMetrics {
            registry: Registry::default(),
            checks: Counter::default(),
            tiles_rerendered: Counter::default(),
            verdicts: Family::default(),
            refused: Counter::default(),
            check_seconds: Histogram::new(seconds_buckets()),
        };
        let r = &mut registry;
        r.register(
            "checks",
            "Verify requests judged (a verdict was signed)",
            m.checks.clone(),
        );
        r.register(
            "tiles_rerendered",
            "Sampled tiles re-rendered by judged checks",
            m.tiles_rerendered.clone(),
        );
        r.register(
            "verdicts",
            "Verdicts signed, by decision (pass, fail, escalate, inconclusive)",
            m.verdicts.clone(),
        );
        r.register(
            "requests_refused",
            "Verify requests refused and parked (malformed, or not checkable)",
            m.refused.clone(),
        );
        r.register(
            "check_seconds",
            "Seconds per judged check (re-rendering its samples and comparing them)",
            m.check_seconds.clone(),
        );
        r.register(
            "scene_loads",
            "Scenes loaded (downloaded and prepared)",
            scene_loads,
        );
        VerifierMetrics { registry, ..m }
    }

    /// A check of `samples` sampled tiles judged `decision` in `took`.
    pub fn judged(&self, decision: Decision, samples: usize, took: Duration) {
        self.checks.inc();
        self.tiles_rerendered.inc_by(samples as u64);
        self.verdicts
            .get_or_create(&vec![("decision", decision_name(decision))])
            .inc();
        self.check_seconds.observe(took.as_secs_f64());
    }

    /// A request was refused and parked.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// The metrics as text (OpenMetrics).
    pub fn text(&self) -> String {
        text(&self.registry)
    }
}

/// A decision as a label value.
fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Pass => "pass",
        Decision::Fail => "fail",
        Decision::Escalate => "escalate",
        Decision::Inconclusive => "inconclusive",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(text: &str) -> Vec<prometheus_parse::Sample> {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap()
            .samples
    }

    fn value(s: &prometheus_parse::Sample) -> f64 {
        match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |c| c.count),
            other => panic!("{other:?}"),
        }
    }

    fn one(text: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
        let all = samples(text);
        let s = all
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} {label:?} missing in {text}"));
        value(s)
    }

    #[test]
    fn verifier_metrics_render_and_parse() {
        let m = VerifierMetrics::new(Counter::default());
        m.judged(Decision::Pass, 3, Duration::from_millis(30));
        m.judged(Decision::Pass, 2, Duration::from_millis(20));
        m.judged(Decision::Fail, 4, Duration::from_secs(2));
        m.refused();
        let t = m.text();
        assert_eq!(one(&t, "tessera_verifier_checks_total", None), 3.0);
        assert_eq!(
            one(&t, "tessera_verifier_tiles_rerendered_total", None),
            9.0
        );
        let pass = Some(("decision", "pass"));
        assert_eq!(one(&t, "tessera_verifier_verdicts_total", pass), 2.0);
        let fail = Some(("decision", "fail"));
        assert_eq!(one(&t, "tessera_verifier_verdicts_total", fail), 1.0);
        assert_eq!(
            one(&t, "tessera_verifier_requests_refused_total", None),
            1.0
        );
        assert_eq!(one(&t, "tessera_verifier_check_seconds", None), 3.0);
        assert_eq!(one(&t, "tessera_verifier_scene_loads_total", None), 0.0);
    }
}
