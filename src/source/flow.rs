//! Flow control over the consumer: inputs ahead in event time paused, inputs with nothing
//! left to fetch reported idle (see `pacing` for the plan).

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::monitor::Monitor;
use crate::output::Output;
use crate::telemetry::Telemetry;

use super::kafka::SourceContext;
use super::pacing::{self, Positions, Tp};

/// Inputs paused and where inputs start.
#[derive(Default)]
pub(super) struct Pacing {
    paused: BTreeSet<Tp>,
    pub(super) positions: Positions,
}

impl Pacing {
    pub(super) fn revoked(&mut self, tp: &Tp) {
        self.paused.remove(tp);
        self.positions.revoked(tp);
    }

    /// Tells the monitor which inputs have nothing left to fetch.
    pub(super) fn idle(
        &mut self,
        consumer: &StreamConsumer<SourceContext>,
        monitor: &mut Monitor,
        idle_after: Duration,
        out: &mut Vec<Output>,
    ) {
        let now = std::time::Instant::now();
        let changed: Vec<(String, i32, bool)> = monitor
            .inputs()
            .filter_map(|v| {
                let high = cached_high_watermark(consumer, v.topic, v.partition);
                let idle = self.positions.idle(&v, high, now, idle_after)?;
                (idle != v.idle).then(|| (v.topic.to_string(), v.partition, idle))
            })
            .collect();
        for (topic, partition, idle) in changed {
            tracing::debug!(%topic, partition, idle, "input idle");
            monitor.set_idle(&topic, partition, idle, out);
        }
    }

    /// Tells the monitor which idle inputs have data to fetch again. Run before every batch: a
    /// fetch response that brings one partition's new messages updates the high watermarks of
    /// the others it covers, so an idle input that is about to deliver holds the watermarks
    /// back before the other inputs' messages of the same response are processed.
    pub(super) fn wake(&mut self, consumer: &StreamConsumer<SourceContext>, monitor: &mut Monitor) {
        let woken: Vec<(String, i32)> = monitor
            .inputs()
            .filter(|v| v.idle)
            .filter_map(|v| {
                let high = cached_high_watermark(consumer, v.topic, v.partition)?;
                let position = v
                    .next_offset
                    .or_else(|| self.positions.start(v.topic, v.partition))?;
                (position < high).then(|| (v.topic.to_string(), v.partition))
            })
            .collect();
        for (topic, partition) in woken {
            tracing::debug!(%topic, partition, "input has data again");
            monitor.set_idle(&topic, partition, false, &mut Vec::new());
        }
    }

    /// Pauses the inputs that run ahead, resumes those that are back within reach.
    pub(super) fn pace(
        &mut self,
        consumer: &StreamConsumer<SourceContext>,
        monitor: &Monitor,
        max_ahead_ms: i64,
        telemetry: &Telemetry,
    ) {
        let views: Vec<_> = monitor.inputs().collect();
        let plan = pacing::plan(
            &views,
            &self.paused,
            max_ahead_ms,
            monitor.held_for_join(),
            monitor.bootstrap_fill(),
        );
        for (tps, pause) in [(plan.pause, true), (plan.resume, false)] {
            if tps.is_empty() {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &tps {
                tpl.add_partition(t, *p);
            }
            let res = if pause {
                consumer.pause(&tpl)
            } else {
                consumer.resume(&tpl)
            };
            if let Err(e) = res {
                tracing::warn!(error = %e, pause, "pause/resume failed");
                continue;
            }
            for tp in tps {
                tracing::debug!(topic = %tp.0, partition = tp.1, pause, "input paced");
                if pause {
                    self.paused.insert(tp);
                } else {
                    self.paused.remove(&tp);
                }
            }
        }
        telemetry.paused_partitions.set(self.paused.len() as i64);
    }
}

/// The high watermark librdkafka last saw for a partition (updated by every fetch response,
/// no request of its own); `None` before the first.
fn cached_high_watermark(
    consumer: &StreamConsumer<SourceContext>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle is valid while `consumer` lives; librdkafka reads the
    // NUL-terminated topic name and writes the two offsets, nothing else.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}
