//! Synthetic traffic: prediction and label events with optional injected drift.
//!
//! The generator is deterministic for a seed. It serves the demo, the tests and the benchmarks:
//! numerical features of several shapes, Zipf-like categorical features, a logistic model whose
//! score depends on a few features, delayed ground-truth labels, lognormal latencies, and
//! fairness attributes. Drift is injected from a chosen event onwards into chosen features.

use std::collections::VecDeque;
use std::fmt::Write as _;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Normal};

use crate::event::format_rfc3339_ms;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Random seed.
    pub seed: u64,
    /// Number of models (`model-0`, `model-1`, …).
    pub models: usize,
    /// Versions per model (`v1`, `v2`, …), interleaved event by event.
    pub versions: usize,
    /// Numerical features per event (`f0`, `f1`, …).
    pub numeric_features: usize,
    /// Categorical features per event (`c0`, `c1`, …).
    pub categorical_features: usize,
    /// Prediction events to generate (labels come on top).
    pub events: u64,
    /// Event-time rate, predictions per second.
    pub rate: f64,
    /// Event time of the first event, epoch milliseconds.
    pub start_ms: i64,
    /// Index of the first drifted prediction event; `None` for a stationary stream.
    pub drift_at: Option<u64>,
    /// Names of the features that drift.
    pub drift_features: Vec<String>,
    /// Size of the injected shift, in standard deviations for numerical features.
    pub drift_magnitude: f64,
    /// Share of predictions that get a label (0 for none).
    pub label_share: f64,
    /// Event-time delay of labels, milliseconds.
    pub label_delay_ms: i64,
    /// Latency multiplier per version index (missing entries mean 1.0).
    pub latency_factors: Vec<f64>,
    /// Flip the ground truth of this share of labelled events after `drift_at` (concept drift).
    pub concept_flip: f64,
    /// After `drift_at`, lower the logit of group `gender = f` by this much (a fairness breach).
    pub fairness_bias: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            models: 1,
            versions: 1,
            numeric_features: 8,
            categorical_features: 2,
            events: 100_000,
            rate: 1000.0,
            start_ms: 1_798_761_600_000, // 2027-01-01T00:00:00Z
            drift_at: None,
            drift_features: Vec::new(),
            drift_magnitude: 1.0,
            label_share: 0.0,
            label_delay_ms: 60_000,
            latency_factors: Vec::new(),
            concept_flip: 0.0,
            fairness_bias: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Normal { mean: f64, sd: f64 },
    LogNormal { mu: f64, sigma: f64 },
    Uniform { lo: f64, hi: f64 },
    Exponential { rate: f64 },
}

impl Shape {
    fn sample(&self, rng: &mut SmallRng) -> f64 {
        match *self {
            Shape::Normal { mean, sd } => Normal::new(mean, sd).expect("valid").sample(rng),
            Shape::LogNormal { mu, sigma } => LogNormal::new(mu, sigma).expect("valid").sample(rng),
            Shape::Uniform { lo, hi } => rng.random_range(lo..hi),
            Shape::Exponential { rate } => Exp::new(rate).expect("valid").sample(rng),
        }
    }

    fn sd(&self) -> f64 {
        match *self {
            Shape::Normal { sd, .. } => sd,
            Shape::LogNormal { mu, sigma } => {
                ((sigma * sigma).exp() - 1.0).sqrt() * (mu + sigma * sigma / 2.0).exp()
            }
            Shape::Uniform { lo, hi } => (hi - lo) / 12f64.sqrt(),
            Shape::Exponential { rate } => 1.0 / rate,
        }
    }
}

const CATEGORY_NAMES: [&str; 8] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
];
const REGIONS: [&str; 4] = ["north", "south", "east", "west"];

/// An endless (up to `events`) source of JSON event lines in event-time order.
pub struct Generator {
    cfg: GeneratorConfig,
    rng: SmallRng,
    shapes: Vec<Shape>,
    drifted_numeric: Vec<bool>,
    drifted_categorical: Vec<bool>,
    emitted: u64,
    pending_labels: VecDeque<(i64, String)>,
    line: String,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let shapes = (0..cfg.numeric_features)
            .map(|i| match i % 4 {
                0 => Shape::Normal {
                    mean: rng.random_range(-5.0..5.0),
                    sd: rng.random_range(0.5..3.0),
                },
                1 => Shape::LogNormal {
                    mu: rng.random_range(0.0..2.0),
                    sigma: rng.random_range(0.2..0.6),
                },
                2 => Shape::Uniform {
                    lo: 0.0,
                    hi: rng.random_range(1.0..100.0),
                },
                _ => Shape::Exponential {
                    rate: rng.random_range(0.5..2.0),
                },
            })
            .collect();
        let drifted_numeric = (0..cfg.numeric_features)
            .map(|i| cfg.drift_features.iter().any(|f| *f == format!("f{i}")))
            .collect();
        let drifted_categorical = (0..cfg.categorical_features)
            .map(|i| cfg.drift_features.iter().any(|f| *f == format!("c{i}")))
            .collect();
        Self {
            cfg,
            rng,
            shapes,
            drifted_numeric,
            drifted_categorical,
            emitted: 0,
            pending_labels: VecDeque::new(),
            line: String::with_capacity(1024),
        }
    }

    /// Total number of prediction events this generator will produce.
    pub fn events(&self) -> u64 {
        self.cfg.events
    }

    /// The next event as `(model_id, json)`, or `None` when done. Labels are interleaved at
    /// their event time.
    pub fn next_event(&mut self) -> Option<(String, String)> {
        let now_ms = self.time_of(self.emitted);
        if let Some((due, _)) = self.pending_labels.front() {
            if *due <= now_ms || self.emitted >= self.cfg.events {
                let (_, line) = self.pending_labels.pop_front().expect("front exists");
                let model = model_of_line(&line);
                return Some((model, line));
            }
        }
        if self.emitted >= self.cfg.events {
            return None;
        }
        let i = self.emitted;
        self.emitted += 1;
        Some(self.prediction(i, now_ms))
    }

    fn time_of(&self, i: u64) -> i64 {
        self.cfg.start_ms + (i as f64 * 1000.0 / self.cfg.rate) as i64
    }

    fn prediction(&mut self, i: u64, ts: i64) -> (String, String) {
        let cfg = &self.cfg;
        let model = (i as usize / cfg.versions.max(1)) % cfg.models.max(1);
        let version = i as usize % cfg.versions.max(1);
        let drifting = cfg.drift_at.is_some_and(|d| i >= d);
        let model_id = format!("model-{model}");
        self.line.clear();
        let line = &mut self.line;
        let _ = write!(
            line,
            r#"{{"event_id":"{model_id}-{i}","model_id":"{model_id}","model_version":"v{}","timestamp":"{}","features":{{"#,
            version + 1,
            format_rfc3339_ms(ts)
        );
        let mut logit = 0.0;
        for (f, shape) in self.shapes.iter().enumerate() {
            let mut x = shape.sample(&mut self.rng);
            if drifting && self.drifted_numeric[f] {
                x += cfg.drift_magnitude * shape.sd();
            }
            if f < 3 {
                logit += (x - shape_center(shape)) / shape.sd().max(1e-9) * 0.8;
            }
            if f > 0 {
                line.push(',');
            }
            let _ = write!(line, r#""f{f}":{x:.6}"#);
        }
        for c in 0..cfg.categorical_features {
            // Zipf-like: category k with weight 1/(k+1).
            let k = zipf_index(&mut self.rng, CATEGORY_NAMES.len());
            let k = if drifting && self.drifted_categorical[c] {
                CATEGORY_NAMES.len() - 1 - k
            } else {
                k
            };
            if c == 0 {
                logit += if k == 0 { 0.5 } else { -0.2 };
            }
            if !self.shapes.is_empty() || c > 0 {
                line.push(',');
            }
            let _ = write!(line, r#""c{c}":"{}""#, CATEGORY_NAMES[k]);
        }
        // The group is drawn before the score only when it changes the score, so streams
        // without a fairness bias stay what they were for a seed.
        let early_female = (cfg.fairness_bias > 0.0).then(|| self.rng.random_bool(0.5));
        if drifting && early_female == Some(true) {
            logit -= cfg.fairness_bias;
        }
        let score = 1.0 / (1.0 + (-logit).exp());
        let predicted = u8::from(score >= 0.5);
        let factor = cfg.latency_factors.get(version).copied().unwrap_or(1.0);
        let latency = LogNormal::new(2.5, 0.4)
            .expect("valid")
            .sample(&mut self.rng)
            * factor;
        let female = early_female.unwrap_or_else(|| self.rng.random_bool(0.5));
        let gender = if female { "f" } else { "m" };
        let region = REGIONS[self.rng.random_range(0..REGIONS.len())];
        let _ = write!(
            line,
            r#"}},"prediction":{{"score":{score:.6},"label":{predicted}}},"latency_ms":{latency:.3},"attributes":{{"gender":"{gender}","region":"{region}"}}}}"#
        );
        let out = line.clone();
        if cfg.label_share > 0.0 && self.rng.random_bool(cfg.label_share.min(1.0)) {
            let mut truth = u8::from(self.rng.random_bool(score));
            if drifting && cfg.concept_flip > 0.0 && self.rng.random_bool(cfg.concept_flip) {
                truth = 1 - truth;
            }
            let due = ts + cfg.label_delay_ms;
            let label = format!(
                r#"{{"event_id":"{model_id}-{i}","model_id":"{model_id}","timestamp":"{}","label":{truth}}}"#,
                format_rfc3339_ms(due)
            );
            self.pending_labels.push_back((due, label));
        }
        (model_id, out)
    }
}

impl Iterator for Generator {
    type Item = (String, String);
    fn next(&mut self) -> Option<Self::Item> {
        self.next_event()
    }
}

/// Produces a generated stream to Kafka (predictions and labels to their topics, key = model
/// id), optionally spread evenly over `pace`, until done or `stop` is cancelled. Returns the
/// number of messages sent.
pub fn produce_to_kafka(
    generator: Generator,
    brokers: &str,
    predictions_topic: &str,
    labels_topic: &str,
    pace: Option<std::time::Duration>,
    stop: Option<&tokio_util::sync::CancellationToken>,
) -> anyhow::Result<u64> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use std::time::Duration;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let total = generator.events().max(1);
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    let mut predictions = 0u64;
    for (model, line) in generator {
        if stop.is_some_and(|s| s.is_cancelled()) {
            break;
        }
        let is_prediction = line.contains("\"prediction\"");
        let topic = if is_prediction {
            predictions_topic
        } else {
            labels_topic
        };
        let mut record = BaseRecord::to(topic).key(&model).payload(&line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        sent += 1;
        predictions += u64::from(is_prediction);
        if let Some(pace) = pace {
            if sent.is_multiple_of(1000) {
                // Prediction i goes out at about i/total of `pace`.
                let due = pace.mul_f64(predictions as f64 / total as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sent)
}

fn shape_center(s: &Shape) -> f64 {
    match *s {
        Shape::Normal { mean, .. } => mean,
        Shape::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
        Shape::Uniform { lo, hi } => (lo + hi) / 2.0,
        Shape::Exponential { rate } => 1.0 / rate,
    }
}

fn zipf_index(rng: &mut SmallRng, n: usize) -> usize {
    let total: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
    let mut u = rng.random::<f64>() * total;
    for k in 0..n {
        u -= 1.0 / (k + 1) as f64;
        if u <= 0.0 {
            return k;
        }
    }
    n - 1
}

fn model_of_line(line: &str) -> String {
    // Labels are written by this module with model_id as the second field.
    line.split(r#""model_id":""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, EventKind};

    #[test]
    fn every_line_decodes_and_labels_follow_predictions() {
        let g = Generator::new(GeneratorConfig {
            events: 2000,
            versions: 2,
            label_share: 0.5,
            label_delay_ms: 500,
            drift_at: Some(1000),
            drift_features: vec!["f1".into(), "c0".into()],
            ..Default::default()
        });
        let mut predictions = 0;
        let mut labels = 0;
        let mut last_ts = i64::MIN;
        for (model, line) in g {
            let e = decode(line.as_bytes(), None, 1 << 20).unwrap();
            assert_eq!(e.model_id, model.as_str());
            assert!(e.timestamp_ms >= last_ts, "event time is ordered");
            last_ts = e.timestamp_ms;
            match e.kind {
                EventKind::Prediction => predictions += 1,
                EventKind::Label => labels += 1,
                EventKind::Features => unreachable!(),
            }
        }
        assert_eq!(predictions, 2000);
        assert!((800..1200).contains(&labels), "{labels}");
    }

    #[test]
    fn drift_moves_only_the_named_features() {
        let cfg = GeneratorConfig {
            events: 4000,
            drift_at: Some(2000),
            drift_features: vec!["f0".into()],
            drift_magnitude: 2.0,
            ..Default::default()
        };
        let mut means = [[0.0f64; 2]; 2];
        for (i, (_, line)) in Generator::new(cfg).enumerate() {
            let e = decode(line.as_bytes(), None, 1 << 20).unwrap();
            let half = usize::from(i >= 2000);
            for (f, name) in ["f0", "f4"].iter().enumerate() {
                let v = e.features.iter().find(|(k, _)| k == name).unwrap();
                if let crate::event::FeatureValue::Number(x) = v.1 {
                    means[f][half] += x / 2000.0;
                }
            }
        }
        assert!(means[0][1] - means[0][0] > 1.0, "{means:?}");
        assert!((means[1][1] - means[1][0]).abs() < 0.5, "{means:?}");
    }
}
