//! KServe payload-logger CloudEvents: a request and its response joined by `ce_id`, in either
//! order, and each row of the batch handed to the monitor as one v1 prediction event.
//!
//! The first half of an inference waits in a buffer bounded like the label join
//! (`limits.max_pending_joins` entries, `limits.join_ttl` of event time); what leaves it
//! unjoined is dead-lettered as `unjoined`. While it waits, its offset is held so that it is
//! not committed before the rows it is part of. The rows take the offset of the request or
//! response that came first when both are on one partition, so a restart re-reads both; when
//! they are on two, a restart may re-read the second alone, which is then unjoined.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use super::Message;
use crate::config::{Config, IdSource, PredictionField};
use crate::event::kserve::{self, Cell, CloudEvent, Half, Inputs, Outputs};
use crate::event::{DecodeError, EventKind};
use crate::monitor::Monitor;
use crate::output::Output;
use crate::state::Input;

/// The KServe adapter: its settings and the halves waiting for their other half.
#[derive(Debug)]
pub struct Kserve {
    feature_names: Vec<String>,
    model_id: IdSource,
    model_version: IdSource,
    prediction: PredictionField,
    ttl_ms: i64,
    max_pending: usize,
    /// Waiting halves by `ce_id`.
    pending: HashMap<String, Waiting>,
    /// `(event time, sequence, ce_id)` in arrival order, to give up the oldest first; an entry
    /// whose sequence is no longer in `pending` was joined.
    order: VecDeque<(i64, u64, String)>,
    seq: u64,
    /// Newest event time seen: halves older than it by `ttl_ms` are given up.
    newest_ms: i64,
    /// One row as a v1 event, rewritten for each row.
    row: Vec<u8>,
}

/// A decoded half waiting for the other.
#[derive(Debug)]
struct Waiting {
    seq: u64,
    meta: Meta,
    body: Body,
    topic: String,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
}

/// What a half says about the inference besides its body.
#[derive(Debug, Default)]
struct Meta {
    time_ms: Option<i64>,
    model_id: Option<String>,
    /// From `input.model_version` unless it is `auto`.
    version: Option<String>,
    endpoint: Option<String>,
}

#[derive(Debug)]
enum Body {
    Request(Inputs),
    Response(Outputs),
}

impl Kserve {
    /// An adapter configured by `[input]` and the join limits.
    pub fn new(cfg: &Config) -> Kserve {
        let parse = |spec: &str, auto| IdSource::parse(spec, auto).unwrap_or(IdSource::Auto);
        Kserve {
            feature_names: cfg.input.feature_names.clone(),
            model_id: parse(&cfg.input.model_id, false),
            model_version: parse(&cfg.input.model_version, true),
            prediction: cfg.input.prediction,
            ttl_ms: cfg.limits.join_ttl.as_millis() as i64,
            max_pending: cfg.limits.max_pending_joins.max(1),
            pending: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            newest_ms: i64::MIN,
            row: Vec::with_capacity(1024),
        }
    }

    /// Halves waiting for the other half.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Decodes one message; joined to its waiting other half, its rows go to the monitor,
    /// otherwise it waits. A bad message is dead-lettered with its reason.
    pub fn process(&mut self, m: Message<'_>, monitor: &mut Monitor, out: &mut Vec<Output>) {
        let (id, meta, body) = match self.decode(&m) {
            Ok(d) => d,
            Err(e) => {
                dead_letter(monitor, m.topic, m.partition, m.offset, m.payload, &e, out);
                return;
            }
        };
        let time = meta.time_ms.unwrap_or(self.newest_ms);
        self.newest_ms = self.newest_ms.max(time);
        let other = match self.pending.remove(&id) {
            Some(w) if w.body.is_request() == body.is_request() => {
                // A second request (or response) with the same id: the first can no longer be
                // told apart from it, and is given up.
                let why = format!(
                    "a second {} with ce_id `{id}` came before its other half",
                    body.half_name()
                );
                self.give_up(w, &why, monitor, out);
                None
            }
            other => other,
        };
        match other {
            Some(w) => self.join(&id, w, (m, meta, body), monitor, out),
            None => {
                monitor.hold_offset(m.topic, m.partition, m.offset);
                self.seq += 1;
                self.order.push_back((time, self.seq, id.clone()));
                self.pending.insert(
                    id,
                    Waiting {
                        seq: self.seq,
                        meta,
                        body,
                        topic: m.topic.to_string(),
                        partition: m.partition,
                        offset: m.offset,
                        payload: m.payload.to_vec(),
                    },
                );
            }
        }
        self.expire(monitor, out);
    }

    /// Forgets the halves that came from a revoked partition: their offsets were not
    /// committed, so the partition's new owner reads them again.
    pub fn drop_input(&mut self, topic: &str, partition: i32) {
        self.pending
            .retain(|_, w| !(w.partition == partition && w.topic == topic));
    }

    /// Gives up every waiting half (the end of a replay).
    pub fn finish(&mut self, monitor: &mut Monitor, out: &mut Vec<Output>) {
        while let Some((_, seq, id)) = self.order.pop_front() {
            if let Some(w) = self.take_if(&id, seq) {
                self.give_up(w, "its other half never came", monitor, out);
            }
        }
    }

    fn decode(&self, m: &Message<'_>) -> Result<(String, Meta, Body), DecodeError> {
        let ce = kserve::cloud_event(m.headers, m.payload)?;
        let body = match ce.half {
            Half::Request => Body::Request(kserve::request(ce.data, &self.feature_names)?),
            Half::Response => Body::Response(kserve::response(ce.data)?),
        };
        let meta = Meta {
            time_ms: ce.time_ms.or(m.timestamp_ms),
            model_id: id_from(&self.model_id, &ce, m),
            version: id_from(&self.model_version, &ce, m),
            endpoint: ce.attributes.get("endpoint").map(|e| e.to_string()),
        };
        Ok((ce.id.into_owned(), meta, body))
    }

    /// Removes the waiting half `id` if it is the one queued as `seq`.
    fn take_if(&mut self, id: &str, seq: u64) -> Option<Waiting> {
        match self.pending.get(id) {
            Some(w) if w.seq == seq => self.pending.remove(id),
            _ => None,
        }
    }

    /// Gives up the halves older than the TTL, and the oldest beyond the buffer's bound.
    fn expire(&mut self, monitor: &mut Monitor, out: &mut Vec<Output>) {
        let cutoff = self.newest_ms.saturating_sub(self.ttl_ms);
        while let Some((time, seq, id)) = self.order.front() {
            let (time, seq) = (*time, *seq);
            let live = self.pending.get(id).is_some_and(|w| w.seq == seq);
            let old = time < cutoff;
            if live && !old && self.pending.len() <= self.max_pending {
                break;
            }
            let (_, _, id) = self.order.pop_front().expect("peeked");
            if let Some(w) = self.take_if(&id, seq) {
                let why = if old {
                    "its other half did not come within limits.join_ttl"
                } else {
                    "pushed out of the full join buffer (limits.max_pending_joins)"
                };
                self.give_up(w, why, monitor, out);
            }
        }
    }

    fn give_up(&mut self, w: Waiting, why: &str, monitor: &mut Monitor, out: &mut Vec<Output>) {
        monitor.release_offset(&w.topic, w.partition, w.offset);
        let err = DecodeError::Unjoined(format!("KServe {}: {why}", w.body.half_name()));
        dead_letter(
            monitor,
            &w.topic,
            w.partition,
            w.offset,
            &w.payload,
            &err,
            out,
        );
    }

    /// Joins a waiting half with the message that completes it and feeds the rows.
    fn join(
        &mut self,
        id: &str,
        first: Waiting,
        (m, meta, body): (Message<'_>, Meta, Body),
        monitor: &mut Monitor,
        out: &mut Vec<Output>,
    ) {
        monitor.release_offset(&first.topic, first.partition, first.offset);
        let (req, resp) = match (first.body, body) {
            (Body::Request(r), Body::Response(o)) => ((r, &first.meta), (o, &meta)),
            (Body::Response(o), Body::Request(r)) => ((r, &meta), (o, &first.meta)),
            _ => unreachable!("halves of one kind are not joined"),
        };
        let fail = |e: DecodeError, monitor: &mut Monitor, out: &mut Vec<Output>| {
            dead_letter(
                monitor,
                &first.topic,
                first.partition,
                first.offset,
                &first.payload,
                &e,
                out,
            );
            dead_letter(monitor, m.topic, m.partition, m.offset, m.payload, &e, out);
        };
        let (inputs, outputs) = (req.0, resp.0);
        if inputs.rows != outputs.rows.len() {
            let e = DecodeError::ShapeMismatch(format!(
                "ce_id `{id}`: the request has {} rows, the response {}",
                inputs.rows,
                outputs.rows.len()
            ));
            return fail(e, monitor, out);
        }
        let Some(ts) = req.1.time_ms.or(resp.1.time_ms) else {
            let e = DecodeError::MissingField(format!(
                "ce_id `{id}`: no `ce_time` on the request or the response, and no message \
                 timestamp"
            ));
            return fail(e, monitor, out);
        };
        let Some(model_id) = req.1.model_id.as_deref().or(resp.1.model_id.as_deref()) else {
            let e = DecodeError::MissingField(format!(
                "ce_id `{id}`: no model id where input.model_id says ({:?})",
                self.model_id
            ));
            return fail(e, monitor, out);
        };
        let version = match &self.model_version {
            IdSource::Auto => outputs
                .model_version
                .as_deref()
                .or(req.1.endpoint.as_deref())
                .or(resp.1.endpoint.as_deref())
                .unwrap_or("default"),
            _ => match req.1.version.as_deref().or(resp.1.version.as_deref()) {
                Some(v) => v,
                None => {
                    let e = DecodeError::MissingField(format!(
                        "ce_id `{id}`: no model version where input.model_version says ({:?})",
                        self.model_version
                    ));
                    return fail(e, monitor, out);
                }
            },
        };
        // On one partition the rows take the first half's offset, so that a restart from
        // their offset re-reads both halves.
        let offset = if first.topic == m.topic && first.partition == m.partition {
            first.offset.min(m.offset)
        } else {
            m.offset
        };
        let head = Head {
            id,
            model_id,
            version,
            ts,
        };
        for (row, output) in outputs.rows.iter().enumerate() {
            write_row(&mut self.row, &head, row, &inputs, output, self.prediction);
            monitor.process(
                Input {
                    kind: Some(EventKind::Prediction),
                    topic: m.topic,
                    partition: m.partition,
                    offset,
                    payload: &self.row,
                },
                out,
            );
        }
        monitor.release_offset(m.topic, m.partition, m.offset);
    }
}

impl Body {
    fn is_request(&self) -> bool {
        matches!(self, Body::Request(_))
    }

    fn half_name(&self) -> &'static str {
        if self.is_request() {
            "request"
        } else {
            "response"
        }
    }
}

/// A model id or version from where `[input]` says.
fn id_from(source: &IdSource, ce: &CloudEvent<'_>, m: &Message<'_>) -> Option<String> {
    match source {
        IdSource::Auto => None,
        IdSource::Attribute(name) => ce.attributes.get(name.as_str()).map(|v| v.to_string()),
        IdSource::Key => m
            .key
            .and_then(|k| std::str::from_utf8(k).ok())
            .filter(|k| !k.is_empty())
            .map(str::to_string),
        IdSource::Fixed(v) => Some(v.clone()),
    }
}

fn dead_letter(
    monitor: &mut Monitor,
    topic: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
    err: &DecodeError,
    out: &mut Vec<Output>,
) {
    let input = Input {
        kind: Some(EventKind::Prediction),
        topic,
        partition,
        offset,
        payload,
    };
    monitor.process_decoded(input, &Err(err.clone()), out);
}

/// What every row of one inference shares.
struct Head<'a> {
    id: &'a str,
    model_id: &'a str,
    version: &'a str,
    ts: i64,
}

/// Writes row `row` as a v1 prediction event: event id `<ce_id>/<row>`.
fn write_row(
    buf: &mut Vec<u8>,
    head: &Head<'_>,
    row: usize,
    inputs: &Inputs,
    output: &kserve::Output,
    field: PredictionField,
) {
    buf.clear();
    buf.extend_from_slice(b"{\"event_id\":");
    json_str(buf, &format!("{}/{row}", head.id));
    buf.extend_from_slice(b",\"model_id\":");
    json_str(buf, head.model_id);
    buf.extend_from_slice(b",\"model_version\":");
    json_str(buf, head.version);
    let _ = write!(buf, ",\"timestamp\":{},\"features\":{{", head.ts);
    for (j, (name, cells)) in inputs.columns.iter().enumerate() {
        if j > 0 {
            buf.push(b',');
        }
        json_str(buf, name);
        buf.push(b':');
        match &cells[row] {
            Cell::Number(x) => json_num(buf, *x),
            Cell::Text(s) => json_str(buf, s),
            Cell::Null => buf.extend_from_slice(b"null"),
        }
    }
    buf.extend_from_slice(b"},\"prediction\":{");
    write_prediction(buf, output, field);
    buf.extend_from_slice(b"}}");
}

/// A model's output as a v1 prediction: a number as `input.prediction` says, text as the
/// label, two scores as the binary score (of the second class) and the arg-max label, more as
/// the arg-max label.
fn write_prediction(buf: &mut Vec<u8>, output: &kserve::Output, field: PredictionField) {
    let number = |buf: &mut Vec<u8>, x: f64| match field {
        PredictionField::Value => {
            buf.extend_from_slice(b"\"value\":");
            json_num(buf, x);
        }
        PredictionField::Score => {
            buf.extend_from_slice(b"\"score\":");
            json_num(buf, x);
        }
        PredictionField::Label => {
            buf.extend_from_slice(b"\"label\":");
            let text = if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                x.to_string()
            };
            json_str(buf, &text);
        }
    };
    match output {
        kserve::Output::Number(x) => number(buf, *x),
        kserve::Output::Text(s) => {
            buf.extend_from_slice(b"\"label\":");
            json_str(buf, s);
        }
        kserve::Output::Scores(scores) if scores.len() == 1 => number(buf, scores[0]),
        kserve::Output::Scores(scores) => {
            let best = scores
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (i, &s)| if s > b.1 { (i, s) } else { b },
                )
                .0;
            if scores.len() == 2 {
                buf.extend_from_slice(b"\"score\":");
                json_num(buf, scores[1]);
                buf.push(b',');
            }
            let _ = write!(buf, "\"label\":\"{best}\"");
        }
    }
}

/// A JSON string, escaped.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *buf, s).expect("writing to memory");
}

/// A JSON number (`null` when not finite: JSON has no NaN).
fn json_num(buf: &mut Vec<u8>, x: f64) {
    serde_json::to_writer(&mut *buf, &x).expect("writing to memory");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::kserve::{REQUEST_TYPE, RESPONSE_TYPE};
    use crate::policy::Clock;
    use crate::state::Baselines;

    const REQUEST: &str =
        r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[1,2,3,4]}]}"#;
    const RESPONSE: &str = r#"{"model_version":"v3","outputs":[{"name":"p","shape":[2],"datatype":"FP64","data":[0.25,0.75]}]}"#;

    fn config() -> Config {
        let mut cfg = Config::default();
        cfg.input.feature_names = vec!["a".into(), "b".into()];
        cfg.input.prediction = PredictionField::Score;
        cfg.baseline.bootstrap_events = 1_000_000;
        cfg.limits.join_ttl = std::time::Duration::from_secs(60);
        cfg.limits.max_pending_joins = 3;
        cfg
    }

    struct Run {
        kserve: Kserve,
        monitor: Monitor,
        out: Vec<Output>,
        offset: i64,
    }

    impl Run {
        fn new(cfg: Config) -> Run {
            Run {
                kserve: Kserve::new(&cfg),
                monitor: Monitor::new(Arc::new(cfg), Baselines::default(), Clock::EventTime),
                out: Vec::new(),
                offset: 0,
            }
        }

        /// Sends one binary-mode message: `id`, request or response, at `time` seconds.
        fn send(&mut self, id: &str, request: bool, time: Option<u32>, body: &str) {
            let time = time.map(|s| format!("2027-01-01T00:{:02}:{:02}Z", s / 60, s % 60));
            let ty = if request { REQUEST_TYPE } else { RESPONSE_TYPE };
            let mut headers: Vec<(&str, &[u8])> = vec![
                ("ce_id", id.as_bytes()),
                ("ce_type", ty.as_bytes()),
                ("ce_inferenceservicename", b"credit"),
            ];
            if let Some(t) = &time {
                headers.push(("ce_time", t.as_bytes()));
            }
            self.offset += 1;
            let m = Message {
                topic: "kserve",
                partition: 0,
                offset: self.offset,
                key: None,
                headers: &headers,
                timestamp_ms: None,
                payload: body.as_bytes(),
            };
            self.kserve.process(m, &mut self.monitor, &mut self.out);
        }

        /// Dead letters so far: (reason, detail, offset).
        fn dead(&mut self) -> Vec<(&'static str, String, i64)> {
            self.out
                .drain(..)
                .filter_map(|o| match o {
                    Output::DeadLetter(d) => Some((d.reason, d.detail, d.offset)),
                    _ => None,
                })
                .collect()
        }

        /// Ends the run: the predictions the monitor took in, other than dead letters (they
        /// wait for the baseline, which is never full, until the end).
        fn predictions(mut self) -> u64 {
            self.monitor.finish(&mut self.out);
            let counts = self.monitor.counts();
            crate::telemetry::Outcome::ALL
                .iter()
                .filter(|&&o| o != crate::telemetry::Outcome::DeadLetter)
                .map(|&o| counts.events(Some(crate::event::EventKind::Prediction), o))
                .sum()
        }
    }

    #[test]
    fn a_request_and_its_response_join_in_either_order_into_one_event_a_row() {
        let mut run = Run::new(config());
        run.send("a", true, Some(1), REQUEST);
        assert_eq!(run.kserve.pending(), 1);
        run.send("a", false, Some(1), RESPONSE);
        run.send("b", false, Some(2), RESPONSE);
        run.send("b", true, Some(2), REQUEST);
        assert_eq!(run.kserve.pending(), 0);
        assert!(run.dead().is_empty());
        assert_eq!(run.predictions(), 4);
        let inputs = kserve::request(REQUEST.as_bytes(), &config().input.feature_names).unwrap();
        let outputs = kserve::response(RESPONSE.as_bytes()).unwrap();
        let head = Head {
            id: "a",
            model_id: "credit",
            version: "v3",
            ts: 1000,
        };
        let mut row = Vec::new();
        write_row(
            &mut row,
            &head,
            1,
            &inputs,
            &outputs.rows[1],
            PredictionField::Score,
        );
        let e = crate::event::decode(&row, Some(EventKind::Prediction), 1 << 20).unwrap();
        assert_eq!((&*e.event_id, &*e.model_id), ("a/1", "credit"));
        assert_eq!(e.model_version.as_deref(), Some("v3"));
        assert_eq!(e.features.len(), 2);
        assert_eq!(e.prediction.unwrap().score, Some(0.75));
    }

    #[test]
    fn halves_without_their_other_half_are_unjoined() {
        let mut run = Run::new(config());
        run.send("old", true, Some(0), REQUEST);
        // 61 s later: past limits.join_ttl.
        run.send("new", true, Some(61), REQUEST);
        let dead = run.dead();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].0, "unjoined");
        assert!(dead[0].1.contains("limits.join_ttl"), "{dead:?}");
        assert_eq!(dead[0].2, 1);
        for id in ["x", "y", "z"] {
            run.send(id, false, Some(62), RESPONSE);
        }
        let dead = run.dead();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert!(dead[0].1.contains("max_pending_joins"), "{dead:?}");
        run.send("y", false, Some(62), RESPONSE);
        let dead = run.dead();
        assert!(dead[0].1.contains("a second response"), "{dead:?}");
        run.kserve.finish(&mut run.monitor, &mut run.out);
        assert_eq!(run.dead().len(), 3);
        assert_eq!(run.predictions(), 0);
    }

    #[test]
    fn halves_of_a_revoked_partition_are_forgotten() {
        let mut run = Run::new(config());
        run.send("a", true, Some(1), REQUEST);
        run.kserve.drop_input("kserve", 0);
        assert_eq!(run.kserve.pending(), 0);
        // Its response now waits for the request, which the partition's new owner reads.
        run.send("a", false, Some(1), RESPONSE);
        assert_eq!(run.kserve.pending(), 1);
        assert!(run.dead().is_empty());
    }

    #[test]
    fn joined_halves_that_disagree_are_dead_lettered_both() {
        let mut run = Run::new(config());
        run.send("a", true, Some(1), REQUEST);
        run.send(
            "a",
            false,
            Some(1),
            r#"{"outputs":[{"name":"p","shape":[3],"datatype":"FP64","data":[0.1,0.2,0.3]}]}"#,
        );
        let dead = run.dead();
        assert_eq!(dead.len(), 2, "{dead:?}");
        for d in &dead {
            assert_eq!(d.0, "shape_mismatch");
            assert!(
                d.1.contains("the request has 2 rows, the response 3"),
                "{d:?}"
            );
        }
        run.send("b", true, None, REQUEST);
        run.send("b", false, None, RESPONSE);
        let dead = run.dead();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert!(
            dead[0].0 == "missing_field" && dead[0].1.contains("ce_time"),
            "{dead:?}"
        );
        assert_eq!(run.predictions(), 0);
        let mut cfg = config();
        cfg.input.model_id = "key".into();
        let mut run = Run::new(cfg);
        run.send("c", true, Some(1), REQUEST);
        run.send("c", false, Some(1), RESPONSE);
        let dead = run.dead();
        assert!(
            dead[0].0 == "missing_field" && dead[0].1.contains("model id"),
            "{dead:?}"
        );
        assert_eq!(run.predictions(), 0);
    }
}
