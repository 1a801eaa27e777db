//! Prometheus metrics: driftwatch's own health and the monitored models' metrics, kept apart.
//!
//! Hot paths never touch these handles per event: the monitor counts in plain integers and
//! [`Telemetry::flush_counts`] adds them once per batch. Label values come from configuration
//! (bounded by `limits`) or from short fixed lists of reason codes, never from error text.

mod process;

use std::collections::HashMap;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::event::EventKind;
use crate::output::{AlertKind, Output, Verdict};

/// Counts accumulated by the monitor between flushes.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Events by input kind (prediction, label, features, or a file's line of no kind) and
    /// [`Outcome`]: one cell per pair, indexed, never searched.
    events: [[u64; Outcome::ALL.len()]; 4],
    /// reason → dead letters.
    pub dead_letters: std::collections::BTreeMap<&'static str, u64>,
    /// limit name → times it bit.
    pub limits_hit: std::collections::BTreeMap<&'static str, u64>,
    /// Events for closed panes.
    pub late: u64,
    /// Labels or features whose prediction was never seen or had expired.
    pub join_misses: u64,
    /// Pending joins evicted by TTL or capacity.
    pub join_expired: u64,
    /// (what: `model` or `version`, reason: `idle` or `capacity`) → evictions.
    pub evictions: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    /// Hashes of the (limit, key) pairs already logged, kept across flushes.
    logged: LimitLog,
}

/// Which (limit, key) pairs were logged already: each is logged once, the first time it bites.
#[derive(Debug, Default, Clone)]
struct LimitLog {
    seen: std::collections::HashSet<u64>,
    /// The log of further keys was cut (said once).
    full: bool,
}

/// Distinct (limit, key) pairs logged at most; beyond them hits are only counted.
const MAX_LOGGED_LIMIT_KEYS: usize = 10_000;

/// What became of an event: the `outcome` label of `driftwatch_events_total{topic,outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A prediction recorded into its version's window.
    Recorded,
    /// A prediction taken into its version's baseline.
    Bootstrap,
    /// The prediction that completed its version's baseline.
    Bootstrapped,
    /// A prediction waiting for its bootstrapping model's watermark (counted when it leaves).
    Waiting,
    /// An event for a pane that had closed.
    Late,
    /// A label or late features joined to their prediction, in its window.
    Joined,
    /// A label or late features joined to a prediction taken into the baseline.
    JoinedBootstrap,
    /// A label or features held for a prediction not seen yet.
    Held,
    /// A label or features whose prediction's version is gone.
    Unjoined,
    /// Turned away by a limit (`limits.max_models`, versions, bootstrapping models).
    Limit,
    /// A waiting prediction given up with its evicted version.
    Evicted,
    /// Not an event: written to the dead letters.
    DeadLetter,
}

impl Outcome {
    /// Every outcome, in declaration order (the order of [`Outcome::index`]).
    pub const ALL: [Outcome; 12] = [
        Outcome::Recorded,
        Outcome::Bootstrap,
        Outcome::Bootstrapped,
        Outcome::Waiting,
        Outcome::Late,
        Outcome::Joined,
        Outcome::JoinedBootstrap,
        Outcome::Held,
        Outcome::Unjoined,
        Outcome::Limit,
        Outcome::Evicted,
        Outcome::DeadLetter,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recorded => "recorded",
            Outcome::Bootstrap => "bootstrap",
            Outcome::Bootstrapped => "bootstrapped",
            Outcome::Waiting => "waiting",
            Outcome::Late => "late",
            Outcome::Joined => "joined",
            Outcome::JoinedBootstrap => "joined_bootstrap",
            Outcome::Held => "held",
            Outcome::Unjoined => "unjoined",
            Outcome::Limit => "limit",
            Outcome::Evicted => "evicted",
            Outcome::DeadLetter => "dead_letter",
        }
    }

    /// Position in [`Outcome::ALL`].
    #[inline]
    fn index(self) -> usize {
        self as usize
    }

    /// Whether a label or features joined their prediction.
    pub fn joined(self) -> bool {
        matches!(self, Outcome::Joined | Outcome::JoinedBootstrap)
    }
}

/// The `topic` label of `driftwatch_events_total`: the input's kind, `file` for a replayed
/// line that could not be told (a dead letter).
const EVENT_TOPICS: [&str; 4] = ["prediction", "label", "features", "file"];

#[inline]
fn topic_index(kind: Option<EventKind>) -> usize {
    match kind {
        Some(EventKind::Prediction) => 0,
        Some(EventKind::Label) => 1,
        Some(EventKind::Features) => 2,
        None => 3,
    }
}

/// What an eviction removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// A model with all its versions.
    Model,
    /// One version of a model.
    Version,
}

impl Evicted {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Evicted::Model => "model",
            Evicted::Version => "version",
        }
    }
}

/// Why something was evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionReason {
    /// No predictions for `limits.version_idle` / `limits.model_idle` of event time.
    Idle,
    /// A newcomer needed its slot (`limits.max_versions_per_model`,
    /// `limits.max_bootstrapping_models`, or `limits.max_models` reached when it bootstrapped).
    Capacity,
}

impl EvictionReason {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::Idle => "idle",
            EvictionReason::Capacity => "capacity",
        }
    }
}

impl Counts {
    /// Counts one event by input kind (`None`: a replayed line of no known kind) and outcome.
    #[inline]
    pub fn event(&mut self, kind: Option<EventKind>, outcome: Outcome) {
        self.events[topic_index(kind)][outcome.index()] += 1;
    }

    /// Events of `kind` with `outcome` counted since the last flush.
    pub fn events(&self, kind: Option<EventKind>, outcome: Outcome) -> u64 {
        self.events[topic_index(kind)][outcome.index()]
    }

    /// Counts one limit hit.
    #[inline]
    pub fn limit(&mut self, name: &'static str) {
        *self.limits_hit.entry(name).or_insert(0) += 1;
    }

    /// Counts `n` hits of limit `name` for `key` (a model, a model version, an attribute), and
    /// logs it the first time it bites for that key (up to 10,000 keys; beyond them, once that
    /// further keys are not logged).
    #[cold]
    pub fn limit_for(&mut self, name: &'static str, n: u64, key: std::fmt::Arguments<'_>) {
        use std::hash::{Hash, Hasher};
        *self.limits_hit.entry(name).or_insert(0) += n;
        let log = &mut self.logged;
        if log.full {
            return;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        std::fmt::write(&mut HashWriter(&mut h), key).expect("hashing cannot fail");
        if !log.seen.insert(h.finish()) {
            return;
        }
        if log.seen.len() > MAX_LOGGED_LIMIT_KEYS {
            log.full = true;
            tracing::warn!(
                limit = name,
                "limit hits of further keys are counted (driftwatch_limit_hits_total) but not logged"
            );
            return;
        }
        tracing::warn!(limit = name, key = %key, "limit reached: events or values not tracked");
    }

    /// Counts and logs one eviction of `key` (model, or model and version).
    #[cold]
    pub fn evicted(&mut self, what: Evicted, reason: EvictionReason, key: std::fmt::Arguments<'_>) {
        *self
            .evictions
            .entry((what.as_str(), reason.as_str()))
            .or_insert(0) += 1;
        tracing::info!(
            what = what.as_str(),
            reason = reason.as_str(),
            key = %key,
            "evicted"
        );
    }
}

/// Feeds formatted text to a hasher without allocating it.
struct HashWriter<'a, H>(&'a mut H);

impl<H: std::hash::Hasher> std::fmt::Write for HashWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// All metric handles.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    events: IntCounterVec,
    dead_letters: IntCounterVec,
    limits_hit: IntCounterVec,
    evictions: IntCounterVec,
    late: IntCounter,
    join_misses: IntCounter,
    join_expired: IntCounter,
    /// Consumer lag per partition.
    pub consumer_lag: IntGaugeVec,
    /// Seconds spent evaluating a window.
    pub eval_seconds: Histogram,
    /// Outputs published, by type.
    pub outputs: IntCounterVec,
    /// Outputs that could not be published.
    pub output_failures: IntCounterVec,
    /// Assigned partitions.
    pub assigned_partitions: IntGauge,
    /// Models tracked.
    pub models: IntGauge,
    /// Labels and features held for a prediction not seen yet, by kind (`label`, `features`).
    pub held_for_join: IntGaugeVec,
    /// Input partitions paused because they ran ahead in event time.
    pub paused_partitions: IntGauge,
    /// Event-time watermark per model, seconds since the epoch: windows ending before it are
    /// closed.
    pub watermark: GaugeVec,
    /// Drift score per feature and method.
    pub drift_score: GaugeVec,
    /// 1 when the feature drifted in the last window.
    pub drift_detected: GaugeVec,
    /// Size of a feature's (or prediction's) shift in the last window, in [0, 1]: KS distance
    /// or total variation distance.
    pub drift_effect: GaugeVec,
    /// Share of drifted features.
    pub dataset_drift_share: GaugeVec,
    /// Latency quantiles in seconds.
    pub latency: GaugeVec,
    /// Model quality metrics.
    pub quality: GaugeVec,
    /// Fairness metrics.
    pub fairness: GaugeVec,
    /// Data-quality shares.
    pub data_quality: GaugeVec,
    /// Events in the last evaluated window.
    pub window_events: GaugeVec,
    /// Concept-drift detections.
    pub concept_detections: IntCounterVec,
    alert_active: GaugeVec,
    canary_verdict: GaugeVec,
    triggers: IntCounterVec,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn plain_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Telemetry {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        let events = counter(
            &r,
            "driftwatch_events_total",
            "Input events by topic kind and outcome",
            &["topic", "outcome"],
        );
        let dead_letters = counter(
            &r,
            "driftwatch_dead_letters_total",
            "Input records sent to the dead-letter topic, by reason",
            &["reason"],
        );
        for reason in crate::event::DecodeError::REASONS {
            dead_letters.with_label_values(&[reason]);
        }
        let limits_hit = counter(
            &r,
            "driftwatch_limit_hits_total",
            "Times a configured limit bit (events or values not tracked)",
            &["limit"],
        );
        let evictions = counter(
            &r,
            "driftwatch_evictions_total",
            "Models and versions no longer monitored, by what (model, version) and reason (idle, capacity)",
            &["what", "reason"],
        );
        for what in [Evicted::Model, Evicted::Version] {
            for reason in [EvictionReason::Idle, EvictionReason::Capacity] {
                evictions.with_label_values(&[what.as_str(), reason.as_str()]);
            }
        }
        let late = plain_counter(
            &r,
            "driftwatch_late_events_total",
            "Events for already closed panes",
        );
        let join_misses = plain_counter(
            &r,
            "driftwatch_join_misses_total",
            "Labels or features whose prediction was not pending",
        );
        let join_expired = plain_counter(
            &r,
            "driftwatch_join_expired_total",
            "Pending predictions or early features evicted by TTL or capacity before they joined",
        );
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "driftwatch_consumer_lag_messages",
                "Consumer lag per partition",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        r.register(Box::new(consumer_lag.clone())).expect("unique");
        let eval_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "driftwatch_window_evaluation_seconds",
                "Time to evaluate one closed window of one model version",
            )
            .buckets(vec![
                1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(eval_seconds.clone())).expect("unique");
        let outputs = counter(
            &r,
            "driftwatch_outputs_total",
            "Outputs published by type",
            &["type"],
        );
        let output_failures = counter(
            &r,
            "driftwatch_output_failures_total",
            "Outputs that could not be delivered, by type",
            &["type"],
        );
        let assigned_partitions = IntGauge::new(
            "driftwatch_assigned_partitions",
            "Partitions assigned to this instance",
        )
        .expect("valid metric");
        r.register(Box::new(assigned_partitions.clone()))
            .expect("unique");
        let models = IntGauge::new("driftwatch_models", "Model versions tracked").expect("valid");
        r.register(Box::new(models.clone())).expect("unique");
        let held_for_join = IntGaugeVec::new(
            prometheus::Opts::new(
                "driftwatch_held_for_join",
                "Labels and features waiting for their prediction",
            ),
            &["kind"],
        )
        .expect("valid");
        r.register(Box::new(held_for_join.clone())).expect("unique");
        let paused_partitions = IntGauge::new(
            "driftwatch_paused_partitions",
            "Input partitions paused because they ran ahead of the slowest in event time",
        )
        .expect("valid");
        r.register(Box::new(paused_partitions.clone()))
            .expect("unique");
        let watermark = gauge(
            &r,
            "driftwatch_watermark_seconds",
            "Event-time watermark of a model (windows ending before it are closed), seconds since the epoch",
            &["model_id"],
        );
        let mv = ["model_id", "model_version"];
        let drift_score = gauge(
            &r,
            "driftwatch_feature_drift_score",
            "Drift statistic of a feature (or prediction) in the last window",
            &["model_id", "model_version", "feature", "method"],
        );
        let drift_effect = gauge(
            &r,
            "driftwatch_feature_drift_effect",
            "Size of the shift of a feature (or prediction) in the last window, 0 to 1: the KS \
             distance (numerical) or the total variation distance of the shares (categorical)",
            &["model_id", "model_version", "feature"],
        );
        let drift_detected = gauge(
            &r,
            "driftwatch_feature_drift_detected",
            "1 when the feature drifted in the last window",
            &["model_id", "model_version", "feature"],
        );
        let dataset_drift_share = gauge(
            &r,
            "driftwatch_dataset_drift_share",
            "Share of features that drifted in the last window",
            &mv,
        );
        let latency = gauge(
            &r,
            "driftwatch_model_latency_seconds",
            "Inference latency quantiles in the last window, by percentile (p50, p90, p95, p99, p999)",
            &["model_id", "model_version", "percentile"],
        );
        let quality = gauge(
            &r,
            "driftwatch_model_quality",
            "Model quality in the last window with labels",
            &["model_id", "model_version", "metric"],
        );
        let fairness = gauge(
            &r,
            "driftwatch_model_fairness",
            "Group fairness metrics in the last window",
            &["model_id", "model_version", "attribute", "metric"],
        );
        let data_quality = gauge(
            &r,
            "driftwatch_data_quality_share",
            "Share of a feature's values that are missing, mistyped, out of range or unseen",
            &["model_id", "model_version", "feature", "check"],
        );
        let window_events = gauge(
            &r,
            "driftwatch_window_events",
            "Events in the last evaluated window",
            &mv,
        );
        let concept_detections = counter(
            &r,
            "driftwatch_concept_drift_detections_total",
            "Concept-drift detector firings",
            &["model_id", "model_version", "detector"],
        );
        let alert_active = gauge(
            &r,
            "driftwatch_alert_active",
            "1 while the alert of a check fires, 0 once it resolved or before it fired",
            &["model_id", "model_version", "kind", "metric", "feature"],
        );
        let canary_verdict = gauge(
            &r,
            "driftwatch_canary_verdict",
            "1 for the last canary verdict on a candidate version (model_version), 0 for the others",
            &["model_id", "model_version", "verdict"],
        );
        let triggers = counter(
            &r,
            "driftwatch_triggers_total",
            "Retraining triggers emitted",
            &mv,
        );
        process::register(&r);
        Self {
            registry: r,
            events,
            dead_letters,
            limits_hit,
            evictions,
            late,
            join_misses,
            join_expired,
            consumer_lag,
            eval_seconds,
            outputs,
            output_failures,
            assigned_partitions,
            models,
            held_for_join,
            paused_partitions,
            watermark,
            drift_score,
            drift_detected,
            drift_effect,
            dataset_drift_share,
            latency,
            quality,
            fairness,
            data_quality,
            window_events,
            concept_detections,
            alert_active,
            canary_verdict,
            triggers,
        }
    }

    /// Sets `driftwatch_alert_active` for one model version from its alert states: `(kind,
    /// metric, feature, firing)` per check, as [`crate::policy::VersionPolicy::alerts`] lists
    /// them. A check without a feature has `feature=""`. Also makes the version's
    /// `driftwatch_triggers_total` exist from its first evaluation on, at 0 before any trigger,
    /// so that `increase()` counts the first one.
    pub fn export_alerts<'a>(
        &self,
        model_id: &str,
        version: &str,
        alerts: impl IntoIterator<Item = (AlertKind, &'a str, Option<&'a str>, bool)>,
    ) {
        self.triggers.with_label_values(&[model_id, version]);
        for (kind, metric, feature, firing) in alerts {
            self.alert_active
                .with_label_values(&[
                    model_id,
                    version,
                    kind.as_str(),
                    metric,
                    feature.unwrap_or(""),
                ])
                .set(if firing { 1.0 } else { 0.0 });
        }
    }

    /// Records the decisions among `outputs`: each retraining trigger counts in
    /// `driftwatch_triggers_total`, each canary verdict becomes the last verdict of its candidate
    /// in `driftwatch_canary_verdict` (1 for it, 0 for the other verdicts).
    pub fn record_decisions(&self, outputs: &[Output]) {
        for o in outputs {
            match o {
                Output::Trigger(t) => self
                    .triggers
                    .with_label_values(&[&t.model_id, &t.model_version])
                    .inc(),
                Output::Verdict(v) => {
                    for each in Verdict::ALL {
                        self.canary_verdict
                            .with_label_values(&[&v.model_id, &v.candidate_version, each.as_str()])
                            .set(if each == v.verdict { 1.0 } else { 0.0 });
                    }
                }
                _ => {}
            }
        }
    }

    /// Removes every series of one version of a model (its statistics, alerts, triggers, and
    /// its verdicts as a candidate): for a version this instance no longer monitors.
    pub fn forget_version(&self, model_id: &str, version: &str) {
        self.forget(model_id, Some(version));
    }

    /// Removes every series of a model, all versions and its watermark: for a model this
    /// instance no longer monitors (its partitions went to another instance, which exports it
    /// from then on).
    pub fn forget_model(&self, model_id: &str) {
        self.forget(model_id, None);
    }

    fn forget(&self, model_id: &str, version: Option<&str>) {
        for g in [
            &self.watermark,
            &self.drift_score,
            &self.drift_detected,
            &self.drift_effect,
            &self.dataset_drift_share,
            &self.latency,
            &self.quality,
            &self.fairness,
            &self.data_quality,
            &self.window_events,
            &self.alert_active,
            &self.canary_verdict,
        ] {
            remove_series(g, model_id, version);
        }
        for c in [&self.concept_detections, &self.triggers] {
            remove_series(c, model_id, version);
        }
    }

    /// Adds a batch of counts and clears them.
    pub fn flush_counts(&self, c: &mut Counts) {
        for (topic, row) in EVENT_TOPICS.iter().zip(std::mem::take(&mut c.events)) {
            for (outcome, n) in Outcome::ALL.iter().zip(row) {
                if n > 0 {
                    self.events
                        .with_label_values(&[topic, outcome.as_str()])
                        .inc_by(n);
                }
            }
        }
        for (reason, n) in std::mem::take(&mut c.dead_letters) {
            self.dead_letters.with_label_values(&[reason]).inc_by(n);
        }
        for (limit, n) in std::mem::take(&mut c.limits_hit) {
            self.limits_hit.with_label_values(&[limit]).inc_by(n);
        }
        for ((what, reason), n) in std::mem::take(&mut c.evictions) {
            self.evictions.with_label_values(&[what, reason]).inc_by(n);
        }
        self.late.inc_by(std::mem::take(&mut c.late));
        self.join_misses.inc_by(std::mem::take(&mut c.join_misses));
        self.join_expired
            .inc_by(std::mem::take(&mut c.join_expired));
    }

    /// Adds metrics read at each scrape from elsewhere (the sinks' counters, `sink::metrics`).
    pub fn register(&self, collector: Box<dyn Collector>) {
        self.registry
            .register(collector)
            .expect("each collector registered once, with metric names of its own");
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

/// Removes the series of `vec` labelled `model_id` (and `model_version`, when given). A
/// version-level removal leaves series without a `model_version` label alone.
fn remove_series<T: MetricVecBuilder>(vec: &MetricVec<T>, model_id: &str, version: Option<&str>) {
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            let matches = labels.get("model_id") == Some(&model_id)
                && version.is_none_or(|v| labels.get("model_version") == Some(&v));
            if matches {
                // The series was just collected from this vector: it exists, with these labels.
                let _ = vec.remove(&labels);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The value of the one sample of `name` whose labels include all of `labels`.
    pub(crate) fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| labels.iter().all(|lab| l.contains(lab)))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn events_are_counted_per_kind_and_outcome_and_flushed_once() {
        let t = Telemetry::new();
        let mut c = Counts::default();
        for _ in 0..3 {
            c.event(Some(EventKind::Prediction), Outcome::Recorded);
        }
        c.event(Some(EventKind::Label), Outcome::JoinedBootstrap);
        c.event(None, Outcome::DeadLetter);
        assert_eq!(c.events(Some(EventKind::Prediction), Outcome::Recorded), 3);
        assert_eq!(c.events(Some(EventKind::Label), Outcome::Recorded), 0);
        t.flush_counts(&mut c);
        t.flush_counts(&mut c);
        let text = t.render();
        let events = |labels: &[&str]| sample(&text, "driftwatch_events_total", labels);
        assert_eq!(
            events(&[r#"topic="prediction""#, r#"outcome="recorded""#]),
            Some(3.0)
        );
        assert_eq!(
            events(&[r#"topic="label""#, r#"outcome="joined_bootstrap""#]),
            Some(1.0)
        );
        assert_eq!(
            events(&[r#"topic="file""#, r#"outcome="dead_letter""#]),
            Some(1.0)
        );
        // Pairs never counted have no series.
        assert_eq!(events(&[r#"topic="features""#]), None);
        assert_eq!(c.events(Some(EventKind::Prediction), Outcome::Recorded), 0);
        let names: std::collections::HashSet<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
        assert!(Outcome::ALL.iter().enumerate().all(|(i, o)| o.index() == i));
    }

    #[test]
    fn forgetting_a_version_keeps_the_other_versions_and_the_model_series() {
        let t = Telemetry::new();
        for v in ["v1", "v2"] {
            t.drift_score
                .with_label_values(&["m", v, "f0", "psi"])
                .set(0.2);
            t.export_alerts("m", v, [(AlertKind::DataDrift, "psi", Some("f0"), true)]);
        }
        t.drift_score
            .with_label_values(&["other", "v1", "f0", "psi"])
            .set(0.1);
        t.watermark.with_label_values(&["m"]).set(1.0);
        let series = |text: &str, needle: &str| {
            text.lines()
                .filter(|l| !l.starts_with('#') && l.contains(needle))
                .count()
        };
        t.forget_version("m", "v1");
        let after = t.render();
        assert_eq!(series(&after, r#"model_version="v1""#), 1, "{after}");
        assert_eq!(series(&after, r#"model_id="other""#), 1, "{after}");
        // v2: its drift score, its alert and its trigger count.
        assert_eq!(
            series(&after, r#"model_id="m",model_version="v2""#),
            3,
            "{after}"
        );
        assert_eq!(
            series(&after, "driftwatch_watermark_seconds{"),
            1,
            "{after}"
        );
        t.forget_model("m");
        let after = t.render();
        assert_eq!(series(&after, r#"model_id="m""#), 0, "{after}");
        assert_eq!(series(&after, r#"model_id="other""#), 1, "{after}");
    }
}
