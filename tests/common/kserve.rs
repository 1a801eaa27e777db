//! A generated v1 stream re-encoded as KServe payload-logger CloudEvents: batches of rows, a
//! request and a response message per batch, in binary or structured mode, with V1 or Open
//! Inference Protocol v2 bodies. Also the input of `benches/kserve.rs`.

use serde_json::{json, Map, Value};

use driftwatch::event::format_rfc3339_ms;
use driftwatch::event::kserve::{REQUEST_TYPE, RESPONSE_TYPE};
use driftwatch::generate::{Generator, GeneratorConfig};

/// The features that drift in [`drift_lines`].
pub const DRIFTED: [&str; 2] = ["f2", "f7"];

/// 48,000 predictions at 100 a second of one model (15 numerical features and a score), with
/// [`DRIFTED`] shifted by 1.5 standard deviations from the 24,000th on, as v1 lines.
pub fn drift_lines(seed: u64) -> Vec<String> {
    let g = GeneratorConfig {
        seed,
        events: 48_000,
        rate: 100.0,
        numeric_features: 15,
        categorical_features: 0,
        drift_at: Some(24_000),
        drift_features: DRIFTED.iter().map(|s| s.to_string()).collect(),
        drift_magnitude: 1.5,
        ..GeneratorConfig::default()
    };
    Generator::new(g).map(|(_, line)| line).collect()
}

/// How the CloudEvents are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Binary mode, OIP v2: one FP64 tensor of shape [N, F] (positional: `feature_names`), the
    /// score as an FP64 tensor of shape [N], `model_version` in the response.
    BinaryV2,
    /// Binary mode, V1: `instances` as lists (positional), `predictions` as numbers.
    BinaryV1,
    /// Structured mode, OIP v2: one tensor per feature, each of shape [N].
    StructuredV2,
}

/// One Kafka message: headers, value.
#[derive(Debug, Clone)]
pub struct KafkaMessage {
    /// Header names and text values.
    pub headers: Vec<(String, String)>,
    /// The message value (JSON).
    pub value: String,
}

impl KafkaMessage {
    /// The message as a line of a replayed message stream.
    pub fn replay_line(&self) -> String {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let value: Value = serde_json::from_str(&self.value).expect("values are JSON");
        json!({"headers": headers, "value": value}).to_string()
    }
}

/// The stream as KServe would log it, and the v1 events it stands for.
pub struct Encoded {
    /// Request and response messages, in the order to produce them.
    pub messages: Vec<KafkaMessage>,
    /// The same predictions as v1 event lines, with what KServe carries and nothing else
    /// (features and score; no latency, attributes or predicted label): every row of a batch
    /// at the batch's time, with the event id `<ce_id>/<row>`.
    pub v1: Vec<String>,
    /// Numerical feature names in the order of the first event's: the columns of positional
    /// encodings.
    pub feature_names: Vec<String>,
}

/// Re-encodes generated v1 prediction lines (one model and version, numerical features, a
/// score) in batches of `batch`. The request comes first in even batches, the response first
/// in odd ones.
pub fn encode(lines: &[String], batch: usize, encoding: Encoding) -> Encoded {
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("generated lines are JSON"))
        .filter(|e: &Value| e.get("prediction").is_some())
        .collect();
    let feature_names: Vec<String> = events[0]["features"]
        .as_object()
        .expect("features")
        .keys()
        .cloned()
        .collect();
    let mut messages = Vec::new();
    let mut v1 = Vec::new();
    for (b, rows) in events.chunks(batch).enumerate() {
        let id = format!("inference-{b}");
        let ts = rows[0]["timestamp"].clone();
        let time = match &ts {
            Value::String(s) => s.clone(),
            Value::Number(n) => format_rfc3339_ms(n.as_i64().expect("epoch ms")),
            _ => panic!("timestamp"),
        };
        let model = rows[0]["model_id"].as_str().expect("model_id").to_string();
        let version = rows[0]["model_version"]
            .as_str()
            .expect("version")
            .to_string();
        let matrix: Vec<Vec<f64>> = rows
            .iter()
            .map(|e| {
                feature_names
                    .iter()
                    .map(|f| e["features"][f].as_f64().expect("numerical features"))
                    .collect()
            })
            .collect();
        let scores: Vec<f64> = rows
            .iter()
            .map(|e| e["prediction"]["score"].as_f64().expect("score"))
            .collect();
        for (i, (e, score)) in rows.iter().zip(&scores).enumerate() {
            v1.push(
                json!({"event_id": format!("{id}/{i}"), "model_id": model,
                    "model_version": version, "timestamp": ts, "features": e["features"],
                    "prediction": {"score": score}})
                .to_string(),
            );
        }
        let n = rows.len();
        let (request, response) = match encoding {
            Encoding::BinaryV2 => (
                json!({"id": id, "inputs": [{"name": "input-0", "shape": [n, feature_names.len()],
                    "datatype": "FP64", "data": matrix.concat()}]}),
                json!({"model_name": model, "model_version": version, "id": id,
                    "outputs": [{"name": "output-0", "shape": [n], "datatype": "FP64", "data": scores}]}),
            ),
            Encoding::BinaryV1 => (json!({"instances": matrix}), json!({"predictions": scores})),
            Encoding::StructuredV2 => {
                let inputs: Vec<Value> = feature_names
                    .iter()
                    .enumerate()
                    .map(|(j, f)| {
                        let column: Vec<f64> = matrix.iter().map(|r| r[j]).collect();
                        json!({"name": f, "shape": [n], "datatype": "FP64", "data": column})
                    })
                    .collect();
                (
                    json!({"id": id, "inputs": inputs}),
                    json!({"model_name": model, "model_version": version, "id": id,
                        "outputs": [{"name": "score", "shape": [n, 1], "datatype": "FP64", "data": scores}]}),
                )
            }
        };
        let message = |ty: &str, body: Value| {
            let attributes = [
                ("id", id.as_str()),
                ("type", ty),
                ("source", "http://localhost:9081/"),
                ("specversion", "1.0"),
                ("time", time.as_str()),
                ("inferenceservicename", model.as_str()),
                ("namespace", "models"),
                ("component", "predictor"),
                ("endpoint", "default"),
            ];
            if encoding == Encoding::StructuredV2 {
                let mut ce: Map<String, Value> = attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                ce.insert("datacontenttype".into(), json!("application/json"));
                ce.insert("data".into(), body);
                KafkaMessage {
                    headers: vec![("content-type".into(), "application/cloudevents+json".into())],
                    value: Value::Object(ce).to_string(),
                }
            } else {
                let mut headers: Vec<(String, String)> = attributes
                    .iter()
                    .map(|(k, v)| (format!("ce_{k}"), v.to_string()))
                    .collect();
                headers.push(("content-type".into(), "application/json".into()));
                KafkaMessage {
                    headers,
                    value: body.to_string(),
                }
            }
        };
        let req = message(REQUEST_TYPE, request);
        let resp = message(RESPONSE_TYPE, response);
        if b % 2 == 0 {
            messages.extend([req, resp]);
        } else {
            messages.extend([resp, req]);
        }
    }
    Encoded {
        messages,
        v1,
        feature_names,
    }
}

/// Produces the messages to `topic` in order, without keys (as KServe's logger does), the
/// headers as Kafka headers; returns how many were acknowledged.
pub fn produce(brokers: &str, topic: &str, messages: &[KafkaMessage]) -> usize {
    use rdkafka::config::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let futures: Vec<_> = messages
        .iter()
        .map(|m| {
            let headers = m.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
            let record = FutureRecord::<(), _>::to(topic)
                .payload(m.value.as_bytes())
                .headers(headers);
            producer.send_result(record).expect("enqueue")
        })
        .collect();
    futures::executor::block_on(async {
        let mut acknowledged = 0;
        for f in futures {
            f.await
                .expect("delivery future not cancelled")
                .unwrap_or_else(|(e, _)| panic!("cannot produce to {topic}: {e}"));
            acknowledged += 1;
        }
        acknowledged
    })
}
