//! Metrics of the sinks read at each scrape from the counters they keep in atomics of their own:
//! webhook deliveries and snapshot copies to object storage.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts};

use crate::sink::webhook::WebhookSink;
use crate::telemetry::Telemetry;

/// Exports the snapshot uploader's counts as `driftwatch_snapshot_uploads_total{outcome}`.
pub fn export_uploads(telemetry: &Telemetry, counts: Arc<crate::sink::s3::UploadCounts>) {
    let desc = UploadCollector::family()
        .desc()
        .into_iter()
        .cloned()
        .collect();
    telemetry.register(Box::new(UploadCollector { counts, desc }));
}

/// Exports the counters of these webhook sinks ([`WebhookSink::counters`]), read at each
/// scrape: `driftwatch_webhook_outputs_total{sink,url,outcome}` (outcomes `delivered`,
/// `skipped`, `dead_lettered`, `dead_letter_write_error`),
/// `driftwatch_webhook_undelivered_total{sink,url,cause}` (the dead-lettered outputs that
/// were never attempted to the end: `queue_full`, `shutdown`) and
/// `driftwatch_webhook_retries_total{sink,url}`. `sink` is the webhook's position in
/// `sinks.webhook`, `url` its endpoint without query string or credentials.
pub fn export_webhooks(telemetry: &Telemetry, sinks: Vec<Arc<WebhookSink>>) {
    if sinks.is_empty() {
        return;
    }
    telemetry.register(Box::new(WebhookCollector::new(sinks)));
}

/// Exports the snapshot writer's counts as `driftwatch_snapshot_writes_total{outcome}`
/// (`written`, `failed`).
pub fn export_snapshot_writes(
    telemetry: &Telemetry,
    counts: Arc<crate::sink::snapshot::WriteCounts>,
) {
    telemetry.register(Box::new(WriteCollector(counts)));
}

/// `driftwatch_snapshot_writes_total{outcome}`, read from the snapshot writer at each scrape.
struct WriteCollector(Arc<crate::sink::snapshot::WriteCounts>);

impl WriteCollector {
    fn family() -> IntCounterVec {
        IntCounterVec::new(
            Opts::new(
                "driftwatch_snapshot_writes_total",
                "Trigger snapshots written as Parquet, by outcome (failed: logged with the cause)",
            ),
            &["outcome"],
        )
        .expect("valid metric")
    }
}

impl Collector for WriteCollector {
    fn desc(&self) -> Vec<&Desc> {
        static DESC: std::sync::OnceLock<Vec<Desc>> = std::sync::OnceLock::new();
        DESC.get_or_init(|| Self::family().desc().into_iter().cloned().collect())
            .iter()
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        use std::sync::atomic::Ordering;
        let f = Self::family();
        for (outcome, n) in [
            ("written", self.0.written.load(Ordering::Relaxed)),
            ("failed", self.0.failed.load(Ordering::Relaxed)),
        ] {
            f.with_label_values(&[outcome]).inc_by(n);
        }
        f.collect()
    }
}

/// `driftwatch_snapshot_uploads_total{outcome}` (`uploaded`, `failed`), read from the snapshot
/// uploader's counts at each scrape.
struct UploadCollector {
    counts: Arc<crate::sink::s3::UploadCounts>,
    desc: Vec<Desc>,
}

impl UploadCollector {
    fn family() -> IntCounterVec {
        IntCounterVec::new(
            Opts::new(
                "driftwatch_snapshot_uploads_total",
                "Trigger snapshots copied to object storage, by outcome (failed: given up after \
                 every attempt, or the queue was full)",
            ),
            &["outcome"],
        )
        .expect("valid metric")
    }
}

impl Collector for UploadCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        use std::sync::atomic::Ordering;
        let f = Self::family();
        for (outcome, n) in [
            ("uploaded", self.counts.uploaded.load(Ordering::Relaxed)),
            ("failed", self.counts.failed.load(Ordering::Relaxed)),
        ] {
            f.with_label_values(&[outcome]).inc_by(n);
        }
        f.collect()
    }
}

struct WebhookCollector {
    sinks: Vec<Arc<WebhookSink>>,
    descs: Vec<Desc>,
}

impl WebhookCollector {
    fn new(sinks: Vec<Arc<WebhookSink>>) -> Self {
        let descs = Self::families()
            .iter()
            .flat_map(|f| f.desc().into_iter().cloned())
            .collect();
        Self { sinks, descs }
    }

    /// Fresh metric families: outputs by outcome, undelivered by cause, retries.
    fn families() -> [IntCounterVec; 3] {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        [
            vec(
                "driftwatch_webhook_outputs_total",
                "Outputs handled by each webhook sink, by outcome",
                &["sink", "url", "outcome"],
            ),
            vec(
                "driftwatch_webhook_undelivered_total",
                "Outputs written to a webhook's dead-letter file without a full delivery attempt, by cause",
                &["sink", "url", "cause"],
            ),
            vec(
                "driftwatch_webhook_retries_total",
                "Webhook delivery attempts beyond the first",
                &["sink", "url"],
            ),
        ]
    }
}

impl Collector for WebhookCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let [outputs, undelivered, retries] = Self::families();
        for (i, s) in self.sinks.iter().enumerate() {
            let (i, url) = (i.to_string(), s.display_url());
            let c = s.counters();
            for (outcome, n) in [
                ("delivered", c.delivered),
                ("skipped", c.skipped),
                ("dead_lettered", c.dead_lettered),
                ("dead_letter_write_error", c.dead_letter_write_errors),
            ] {
                outputs.with_label_values(&[&i, url, outcome]).inc_by(n);
            }
            for (cause, n) in [
                ("queue_full", c.queue_full),
                ("shutdown", c.unsent_at_shutdown),
            ] {
                undelivered.with_label_values(&[&i, url, cause]).inc_by(n);
            }
            retries.with_label_values(&[&i, url]).inc_by(c.retried);
        }
        [outputs, undelivered, retries]
            .iter()
            .flat_map(|f| f.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::webhook::{WebhookConfig, WebhookTemplate};
    use crate::output::{DeadLetter, Output};
    use crate::sink::webhook::Undelivered;
    use crate::telemetry::tests::sample;

    #[test]
    fn snapshot_upload_counts_are_read_at_each_scrape() {
        use std::sync::atomic::Ordering;
        let counts = Arc::new(crate::sink::s3::UploadCounts::default());
        let t = Telemetry::new();
        export_uploads(&t, Arc::clone(&counts));
        let name = "driftwatch_snapshot_uploads_total";
        let before = t.render();
        assert_eq!(sample(&before, name, &[r#"outcome="uploaded""#]), Some(0.0));
        counts.uploaded.fetch_add(2, Ordering::Relaxed);
        counts.failed.fetch_add(1, Ordering::Relaxed);
        let after = t.render();
        assert_eq!(sample(&after, name, &[r#"outcome="uploaded""#]), Some(2.0));
        assert_eq!(sample(&after, name, &[r#"outcome="failed""#]), Some(1.0));
    }

    #[test]
    fn webhook_counters_are_read_at_each_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = WebhookConfig::new("http://127.0.0.1:9/hook?t=x", WebhookTemplate::Generic);
        cfg.dead_letter_file = dir.path().join("dead.jsonl");
        let sink = Arc::new(WebhookSink::new(cfg).unwrap());
        let t = Telemetry::new();
        export_webhooks(&t, vec![Arc::clone(&sink)]);
        let url = r#"url="http://127.0.0.1:9/hook""#;
        let before = t.render();
        assert_eq!(
            sample(
                &before,
                "driftwatch_webhook_outputs_total",
                &[url, r#"outcome="dead_lettered""#]
            ),
            Some(0.0),
            "{before}"
        );
        let o = Output::DeadLetter(DeadLetter {
            reason: "not_json",
            detail: "x".into(),
            topic: "t".into(),
            partition: 0,
            offset: 1,
            payload: b"x".to_vec(),
        });
        sink.give_up(&o, Undelivered::QueueFull).unwrap();
        sink.give_up(&o, Undelivered::Shutdown).unwrap();
        let after = t.render();
        for (name, labels, want) in [
            (
                "driftwatch_webhook_outputs_total",
                r#"outcome="dead_lettered""#,
                2.0,
            ),
            (
                "driftwatch_webhook_outputs_total",
                r#"outcome="delivered""#,
                0.0,
            ),
            (
                "driftwatch_webhook_undelivered_total",
                r#"cause="queue_full""#,
                1.0,
            ),
            (
                "driftwatch_webhook_undelivered_total",
                r#"cause="shutdown""#,
                1.0,
            ),
            ("driftwatch_webhook_retries_total", r#"sink="0""#, 0.0),
        ] {
            assert_eq!(
                sample(&after, name, &[url, r#"sink="0""#, labels]),
                Some(want),
                "{name} {labels}:\n{after}"
            );
        }
        assert!(!after.contains("t=x"), "query strings stay out of labels");
    }
}
