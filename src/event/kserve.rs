//! KServe's payload logger: CloudEvents whose data is an inference request or response.
//!
//! The logger sends each inference as two CloudEvents sharing an `id`: one of type
//! `org.kubeflow.serving.inference.request`, one of type `…​.response`, with the extension
//! attributes `inferenceservicename`, `namespace`, `component` and `endpoint`. Over Kafka they
//! come in binary mode (attributes in `ce_*` headers, the data as the message value) or in
//! structured mode (`content-type: application/cloudevents+json`, attributes and `data` in one
//! JSON object). Bodies are KServe V1 (`instances` / `predictions`) or Open Inference Protocol
//! v2 (`inputs` / `outputs` tensors).
//!
//! This module decodes one message into its attributes and a table of rows; joining a request
//! to its response is the caller's (`crate::ingest`). Everything here is owned: a request waits
//! for its response, so its rows outlive the message.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use super::{parse_rfc3339_ms, DecodeError};

/// CloudEvents type of a logged request.
pub const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
/// CloudEvents type of a logged response.
pub const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";

/// Which half of an inference a CloudEvent carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// The request: the model's inputs.
    Request,
    /// The response: the model's outputs.
    Response,
}

/// A CloudEvent's attributes and data, borrowed from the message.
#[derive(Debug)]
pub struct CloudEvent<'a> {
    /// `id`, shared by a request and its response.
    pub id: Cow<'a, str>,
    /// Request or response (from `type`).
    pub half: Half,
    /// `time`, epoch milliseconds, when present.
    pub time_ms: Option<i64>,
    /// Every other attribute by name, without the `ce_` prefix of binary mode.
    pub attributes: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    /// The data: the inference request or response body.
    pub data: &'a [u8],
}

/// Decodes one message of the payload logger. `headers` are the Kafka message headers (name,
/// value); binary mode when any is a `ce_` attribute, structured mode otherwise.
pub fn cloud_event<'a>(
    headers: &[(&'a str, &'a [u8])],
    value: &'a [u8],
) -> Result<CloudEvent<'a>, DecodeError> {
    let binary = headers.iter().any(|(k, _)| k.starts_with("ce_"));
    let (mut attributes, data) = if binary {
        let mut attributes = BTreeMap::new();
        for (k, v) in headers {
            if let Some(name) = k.strip_prefix("ce_") {
                let text = std::str::from_utf8(v).map_err(|e| {
                    DecodeError::InvalidUtf8(format!("header `{k}` is not UTF-8: {e}"))
                })?;
                attributes.insert(Cow::Borrowed(name), Cow::Borrowed(text));
            }
        }
        (attributes, value)
    } else {
        structured(value)?
    };
    let id = match attributes.remove("id") {
        Some(id) if !id.is_empty() => id,
        Some(_) => return Err(DecodeError::InvalidValue("CloudEvent `id` is empty".into())),
        None => {
            return Err(DecodeError::MissingField(if binary {
                "no `ce_id` header".into()
            } else {
                "CloudEvent without `id` (no `ce_id` header either)".into()
            }))
        }
    };
    let half = match attributes.remove("type").as_deref() {
        Some(REQUEST_TYPE) => Half::Request,
        Some(RESPONSE_TYPE) => Half::Response,
        Some(other) => {
            return Err(DecodeError::WrongKind(format!(
                "CloudEvent type `{other}` is neither `{REQUEST_TYPE}` nor `{RESPONSE_TYPE}`"
            )))
        }
        None => {
            return Err(DecodeError::MissingField(
                "CloudEvent without `type`".into(),
            ))
        }
    };
    let time_ms = match attributes.remove("time") {
        Some(t) => Some(parse_rfc3339_ms(&t).ok_or_else(|| {
            DecodeError::BadTimestamp(format!("CloudEvent `time` `{t}` is not RFC 3339"))
        })?),
        None => None,
    };
    Ok(CloudEvent {
        id,
        half,
        time_ms,
        attributes,
        data,
    })
}

type Attributes<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;

/// Structured mode: one JSON object of attributes with the data under `data`.
fn structured(value: &[u8]) -> Result<(Attributes<'_>, &[u8]), DecodeError> {
    let text = std::str::from_utf8(value).map_err(|e| DecodeError::InvalidUtf8(e.to_string()))?;
    let members: BTreeMap<Cow<'_, str>, &RawValue> =
        serde_json::from_str(text).map_err(|e| json_error(e, "a structured-mode CloudEvent"))?;
    let mut attributes = BTreeMap::new();
    let mut data = None;
    for (k, v) in members {
        match &*k {
            "data" => data = Some(v.get().as_bytes()),
            "data_base64" => {
                return Err(DecodeError::WrongType(
                    "CloudEvent `data_base64`: binary data is not an inference body".into(),
                ))
            }
            _ => {
                let text: Cow<'_, str> = match serde_json::from_str::<Cow<'_, str>>(v.get()) {
                    Ok(s) => s,
                    // Extension attributes may be numbers or booleans.
                    Err(_) => Cow::Owned(v.get().to_string()),
                };
                attributes.insert(k, text);
            }
        }
    }
    if !attributes.contains_key("specversion") {
        return Err(DecodeError::MissingField(
            "neither `ce_*` headers (binary mode) nor a CloudEvent object with `specversion` \
             (structured mode)"
                .into(),
        ));
    }
    let data = data.ok_or_else(|| DecodeError::MissingField("CloudEvent without `data`".into()))?;
    Ok((attributes, data))
}

fn json_error(e: serde_json::Error, what: &str) -> DecodeError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => DecodeError::Truncated(format!("{what}: {e}")),
        Category::Syntax | Category::Io => DecodeError::NotJson(format!("{what}: {e}")),
        Category::Data => DecodeError::WrongType(format!("{what}: {e}")),
    }
}

/// One cell of a request row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A number (booleans are 0 and 1).
    Number(f64),
    /// Text (BYTES tensors, strings of V1 instances): a category.
    Text(String),
    /// Missing.
    Null,
}

/// The features of a request: named columns of `rows` cells each.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Number of rows (inferences) in the batch.
    pub rows: usize,
    /// Feature name and its cells, one per row.
    pub columns: Vec<(String, Vec<Cell>)>,
}

/// One row of a response.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A scalar number.
    Number(f64),
    /// A class name.
    Text(String),
    /// One number per class.
    Scores(Vec<f64>),
}

/// The predictions of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// One per row.
    pub rows: Vec<Output>,
    /// The response's `model_version` (Open Inference Protocol v2), when given.
    pub model_version: Option<String>,
}

/// Decodes a request body: V1 `instances` or OIP v2 `inputs`. `feature_names` name the
/// columns of positional rows.
pub fn request(data: &[u8], feature_names: &[String]) -> Result<Inputs, DecodeError> {
    let body = body(data, "request")?;
    if let Some(inputs) = body
        .get("inputs")
        .filter(|_| !body.contains_key("instances"))
    {
        let tensors = tensors(inputs, "inputs")?;
        return inputs_from_tensors(tensors, feature_names);
    }
    let instances = body.get("instances").ok_or_else(|| {
        DecodeError::MissingField(
            "request body has neither `instances` (V1) nor `inputs` (Open Inference Protocol v2)"
                .into(),
        )
    })?;
    let Value::Array(instances) = instances else {
        return Err(DecodeError::WrongType("`instances` is not an array".into()));
    };
    instances_to_inputs(instances, feature_names)
}

/// Decodes a response body: V1 `predictions` or OIP v2 `outputs` (the first tensor).
pub fn response(data: &[u8]) -> Result<Outputs, DecodeError> {
    let mut body = body(data, "response")?;
    let model_version = match body.remove("model_version") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(DecodeError::WrongType(
                "response `model_version` is not a string".into(),
            ))
        }
    };
    if let Some(outputs) = body
        .get("outputs")
        .filter(|_| !body.contains_key("predictions"))
    {
        let tensors = tensors(outputs, "outputs")?;
        let Some(t) = tensors.into_iter().next() else {
            return Err(DecodeError::ShapeMismatch(
                "response `outputs` holds no tensor".into(),
            ));
        };
        return Ok(Outputs {
            rows: output_rows(t)?,
            model_version,
        });
    }
    let predictions = body.get("predictions").ok_or_else(|| {
        DecodeError::MissingField(
            "response body has neither `predictions` (V1) nor `outputs` (Open Inference \
             Protocol v2)"
                .into(),
        )
    })?;
    let Value::Array(predictions) = predictions else {
        return Err(DecodeError::WrongType(
            "`predictions` is not an array".into(),
        ));
    };
    let rows = predictions
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            Value::Number(n) => Ok(Output::Number(n.as_f64().unwrap_or(f64::NAN))),
            Value::Bool(b) => Ok(Output::Number(f64::from(u8::from(*b)))),
            Value::String(s) => Ok(Output::Text(s.clone())),
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_f64())
                .collect::<Option<Vec<f64>>>()
                .map(Output::Scores)
                .ok_or_else(|| {
                    DecodeError::WrongType(format!("predictions[{i}] is not a list of numbers"))
                }),
            _ => Err(DecodeError::WrongType(format!(
                "predictions[{i}] is neither a number, a string nor a list of numbers"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Outputs {
        rows,
        model_version,
    })
}

fn body(data: &[u8], what: &str) -> Result<serde_json::Map<String, Value>, DecodeError> {
    let text = std::str::from_utf8(data).map_err(|e| DecodeError::InvalidUtf8(e.to_string()))?;
    if text.trim().is_empty() {
        return Err(DecodeError::NotJson(format!("empty {what} body")));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(DecodeError::WrongKind(format!(
            "the {what} body is not a JSON object"
        ))),
        Err(e) => Err(json_error(e, &format!("the {what} body"))),
    }
}

/// The V1 instances: lists (positional, named by `feature_names`) or objects (named).
fn instances_to_inputs(
    instances: &[Value],
    feature_names: &[String],
) -> Result<Inputs, DecodeError> {
    let rows = instances.len();
    let mut columns: Vec<(String, Vec<Cell>)> = Vec::new();
    for (i, inst) in instances.iter().enumerate() {
        match inst {
            Value::Array(values) => {
                if values.len() != feature_names.len() {
                    return Err(DecodeError::ShapeMismatch(format!(
                        "instances[{i}] has {} values but input.feature_names names {}",
                        values.len(),
                        feature_names.len()
                    )));
                }
                if columns.is_empty() {
                    columns = feature_names
                        .iter()
                        .map(|n| (n.clone(), Vec::with_capacity(rows)))
                        .collect();
                }
                for (c, v) in columns.iter_mut().zip(values) {
                    c.1.push(cell(v, || format!("instances[{i}]"))?);
                }
            }
            Value::Object(m) => {
                if i == 0 {
                    columns = m
                        .keys()
                        .map(|k| (k.clone(), Vec::with_capacity(rows)))
                        .collect();
                }
                if m.len() != columns.len() {
                    return Err(DecodeError::ShapeMismatch(format!(
                        "instances[{i}] has {} features, instances[0] has {}",
                        m.len(),
                        columns.len()
                    )));
                }
                for (name, c) in columns.iter_mut() {
                    let v = m.get(name.as_str()).ok_or_else(|| {
                        DecodeError::ShapeMismatch(format!(
                            "instances[{i}] lacks feature `{name}` of instances[0]"
                        ))
                    })?;
                    c.push(cell(v, || format!("instances[{i}].{name}"))?);
                }
            }
            _ => {
                return Err(DecodeError::WrongType(format!(
                    "instances[{i}] is neither a list nor an object"
                )))
            }
        }
        if columns.iter().any(|c| c.1.len() != i + 1) {
            return Err(DecodeError::WrongType(
                "instances mix lists and objects".into(),
            ));
        }
    }
    Ok(Inputs { rows, columns })
}

fn cell(v: &Value, at: impl Fn() -> String) -> Result<Cell, DecodeError> {
    match v {
        Value::Number(n) => Ok(Cell::Number(n.as_f64().unwrap_or(f64::NAN))),
        Value::Bool(b) => Ok(Cell::Number(f64::from(u8::from(*b)))),
        Value::String(s) => Ok(Cell::Text(s.clone())),
        Value::Null => Ok(Cell::Null),
        _ => Err(DecodeError::WrongType(format!(
            "{} is not a number, string, boolean or null",
            at()
        ))),
    }
}

/// An Open Inference Protocol v2 tensor, its data flattened in row-major order.
#[derive(Debug)]
struct Tensor {
    name: String,
    shape: Vec<usize>,
    data: Vec<Cell>,
}

/// The datatypes of the Open Inference Protocol: whether the data are numbers, booleans or
/// text.
fn datatype_kind(datatype: &str) -> Option<DataKind> {
    Some(match datatype {
        "BOOL" => DataKind::Bool,
        "UINT8" | "UINT16" | "UINT32" | "UINT64" | "INT8" | "INT16" | "INT32" | "INT64"
        | "FP16" | "FP32" | "FP64" => DataKind::Number,
        "BYTES" => DataKind::Text,
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Number,
    Bool,
    Text,
}

fn tensors(list: &Value, field: &str) -> Result<Vec<Tensor>, DecodeError> {
    let Value::Array(list) = list else {
        return Err(DecodeError::WrongType(format!(
            "`{field}` is not a list of tensors"
        )));
    };
    list.iter()
        .enumerate()
        .map(|(i, t)| tensor(t, &format!("{field}[{i}]")))
        .collect()
}

fn tensor(t: &Value, at: &str) -> Result<Tensor, DecodeError> {
    let Value::Object(t) = t else {
        return Err(DecodeError::WrongType(format!(
            "{at} is not a tensor object"
        )));
    };
    let field = |name: &str| {
        t.get(name)
            .ok_or_else(|| DecodeError::MissingField(format!("{at} has no `{name}`")))
    };
    let name = field("name")?
        .as_str()
        .ok_or_else(|| DecodeError::WrongType(format!("{at}.name is not a string")))?
        .to_string();
    let at = format!("tensor `{name}`");
    let shape = match field("shape")? {
        Value::Array(dims) => dims
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                DecodeError::WrongType(format!(
                    "{at}: shape is not a list of non-negative integers"
                ))
            })?,
        _ => return Err(DecodeError::WrongType(format!("{at}: shape is not a list"))),
    };
    let datatype = field("datatype")?
        .as_str()
        .ok_or_else(|| DecodeError::WrongType(format!("{at}: datatype is not a string")))?;
    let kind = datatype_kind(datatype).ok_or_else(|| {
        DecodeError::UnknownDatatype(format!(
            "{at}: datatype `{datatype}` is not one of the Open Inference Protocol's"
        ))
    })?;
    let mut data = Vec::new();
    flatten(field("data")?, kind, &at, datatype, &mut data)?;
    let want: usize = shape.iter().product();
    if data.len() != want {
        return Err(DecodeError::ShapeMismatch(format!(
            "{at}: shape {shape:?} holds {want} values but data has {}",
            data.len()
        )));
    }
    Ok(Tensor { name, shape, data })
}

/// Appends a tensor's data (flat or nested lists) in row-major order.
fn flatten(
    v: &Value,
    kind: DataKind,
    at: &str,
    datatype: &str,
    out: &mut Vec<Cell>,
) -> Result<(), DecodeError> {
    let wrong =
        || DecodeError::WrongType(format!("{at}: data holds a value that is not {datatype}"));
    match (v, kind) {
        (Value::Array(items), _) => {
            for item in items {
                flatten(item, kind, at, datatype, out)?;
            }
        }
        (Value::Number(n), DataKind::Number) => {
            out.push(Cell::Number(n.as_f64().ok_or_else(wrong)?))
        }
        (Value::Bool(b), DataKind::Bool) => out.push(Cell::Number(f64::from(u8::from(*b)))),
        (Value::String(s), DataKind::Text) => out.push(Cell::Text(s.clone())),
        _ => return Err(wrong()),
    }
    Ok(())
}

/// Rows of a tensor of shape [N] or [N, 1]: its cells; `None` for any other shape.
fn column_of(t: &Tensor) -> Option<usize> {
    match t.shape[..] {
        [n] | [n, 1] => Some(n),
        _ => None,
    }
}

/// Request features from tensors: one tensor of shape [N, F] with `feature_names`, or one
/// named column per tensor, each of shape [N] or [N, 1].
fn inputs_from_tensors(
    tensors: Vec<Tensor>,
    feature_names: &[String],
) -> Result<Inputs, DecodeError> {
    if let [t] = &tensors[..] {
        if let [n, f] = t.shape[..] {
            if f > 1 || !feature_names.is_empty() {
                if f != feature_names.len() {
                    return Err(DecodeError::ShapeMismatch(format!(
                        "tensor `{}` of shape {:?} has {f} columns but input.feature_names names {}",
                        t.name,
                        t.shape,
                        feature_names.len()
                    )));
                }
                let columns = feature_names
                    .iter()
                    .enumerate()
                    .map(|(j, name)| {
                        let cells = (0..n).map(|i| t.data[i * f + j].clone()).collect();
                        (name.clone(), cells)
                    })
                    .collect();
                return Ok(Inputs { rows: n, columns });
            }
        }
    }
    let mut rows = None;
    let mut columns = Vec::with_capacity(tensors.len());
    for t in tensors {
        let n = column_of(&t).ok_or_else(|| {
            DecodeError::ShapeMismatch(format!(
                "tensor `{}` of shape {:?} is neither one column ([N] or [N, 1]) nor the only \
                 tensor of shape [N, F]",
                t.name, t.shape
            ))
        })?;
        if *rows.get_or_insert(n) != n {
            return Err(DecodeError::ShapeMismatch(format!(
                "tensor `{}` has {n} rows, the tensors before it {}",
                t.name,
                rows.unwrap_or_default()
            )));
        }
        columns.push((t.name, t.data));
    }
    let Some(rows) = rows else {
        return Err(DecodeError::ShapeMismatch(
            "request `inputs` holds no tensor".into(),
        ));
    };
    Ok(Inputs { rows, columns })
}

/// Response rows from a tensor: [N] or [N, 1] one value each, [N, K] K scores each.
fn output_rows(t: Tensor) -> Result<Vec<Output>, DecodeError> {
    let row = |c: Cell| match c {
        Cell::Number(x) => Output::Number(x),
        Cell::Text(s) => Output::Text(s),
        Cell::Null => Output::Number(f64::NAN),
    };
    if column_of(&t).is_some() {
        return Ok(t.data.into_iter().map(row).collect());
    }
    let [n, k] = t.shape[..] else {
        return Err(DecodeError::ShapeMismatch(format!(
            "output tensor `{}` of shape {:?} is neither [N], [N, 1] nor [N, K]",
            t.name, t.shape
        )));
    };
    (0..n)
        .map(|i| {
            t.data[i * k..(i + 1) * k]
                .iter()
                .map(|c| match c {
                    Cell::Number(x) => Ok(*x),
                    _ => Err(DecodeError::WrongType(format!(
                        "output tensor `{}` of shape {:?} holds text",
                        t.name, t.shape
                    ))),
                })
                .collect::<Result<Vec<f64>, _>>()
                .map(Output::Scores)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    const REQ: &[(&str, &[u8])] = &[
        ("ce_id", b"abc"),
        ("ce_type", REQUEST_TYPE.as_bytes()),
        ("ce_specversion", b"1.0"),
        ("ce_time", b"2027-01-01T00:00:01.5Z"),
        ("ce_inferenceservicename", b"credit"),
        ("content-type", b"application/json"),
    ];

    #[test]
    fn binary_and_structured_mode_give_the_same_event() {
        let body = br#"{"instances":[[1,2]]}"#;
        let b = cloud_event(REQ, body).unwrap();
        assert_eq!(b.id, "abc");
        assert_eq!(b.half, Half::Request);
        assert_eq!(b.time_ms, parse_rfc3339_ms("2027-01-01T00:00:01.5Z"));
        assert_eq!(b.attributes["inferenceservicename"], "credit");
        assert_eq!(b.data, body);
        let structured = format!(
            r#"{{"specversion":"1.0","id":"abc","type":"{REQUEST_TYPE}","time":"2027-01-01T00:00:01.5Z","inferenceservicename":"credit","data":{}}}"#,
            std::str::from_utf8(body).unwrap()
        );
        let s = cloud_event(
            &[("content-type", b"application/cloudevents+json")],
            structured.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (s.id, s.half, s.time_ms, s.data),
            (b.id, b.half, b.time_ms, b.data)
        );
        assert_eq!(s.attributes["inferenceservicename"], "credit");
    }

    #[test]
    fn tensors_and_instances_decode_to_the_same_rows() {
        let f = names(&["a", "b"]);
        let want = Inputs {
            rows: 2,
            columns: vec![
                ("a".into(), vec![Cell::Number(1.0), Cell::Number(3.0)]),
                ("b".into(), vec![Cell::Number(2.0), Cell::Number(4.5)]),
            ],
        };
        let v1 = request(br#"{"instances":[[1,2],[3,4.5]]}"#, &f).unwrap();
        let one = request(
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[1,2,3,4.5]}]}"#,
            &f,
        )
        .unwrap();
        let nested = request(
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}"#,
            &f,
        )
        .unwrap();
        let named = request(
            br#"{"inputs":[{"name":"a","shape":[2],"datatype":"INT32","data":[1,3]},{"name":"b","shape":[2,1],"datatype":"FP64","data":[2,4.5]}]}"#,
            &[],
        )
        .unwrap();
        let objects = request(br#"{"instances":[{"a":1,"b":2},{"b":4.5,"a":3}]}"#, &[]).unwrap();
        for got in [v1, one, nested, named, objects] {
            assert_eq!(got, want);
        }
        let bytes = request(
            br#"{"inputs":[{"name":"region","shape":[2],"datatype":"BYTES","data":["n","s"]},{"name":"vip","shape":[2],"datatype":"BOOL","data":[true,false]}]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            bytes.columns,
            [
                (
                    "region".into(),
                    vec![Cell::Text("n".into()), Cell::Text("s".into())]
                ),
                ("vip".into(), vec![Cell::Number(1.0), Cell::Number(0.0)]),
            ]
        );
    }

    #[test]
    fn responses_decode_scalars_classes_and_scores() {
        let v2 = response(
            br#"{"model_name":"m","model_version":"v3","outputs":[{"name":"p","shape":[2,2],"datatype":"FP32","data":[0.25,0.75,0.5,0.5]}]}"#,
        )
        .unwrap();
        assert_eq!(v2.model_version.as_deref(), Some("v3"));
        assert_eq!(
            v2.rows,
            [
                Output::Scores(vec![0.25, 0.75]),
                Output::Scores(vec![0.5, 0.5])
            ]
        );
        let v1 = response(br#"{"predictions":[1.5,"cat",[0.1,0.9]]}"#).unwrap();
        assert_eq!(
            v1.rows,
            [
                Output::Number(1.5),
                Output::Text("cat".into()),
                Output::Scores(vec![0.1, 0.9])
            ]
        );
        assert_eq!(v1.model_version, None);
    }

    /// Each bad input has its own reason, and the detail says what was wrong.
    #[test]
    fn every_bad_input_has_its_reason() {
        let f = names(&["a", "b"]);
        let req_err = |body: &str, names: &[String]| request(body.as_bytes(), names).unwrap_err();
        let cases: Vec<(DecodeError, &str, &str)> = vec![
            (
                req_err(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[1,2,3]}]}"#, &f),
                "shape_mismatch",
                "shape [2, 2] holds 4 values but data has 3",
            ),
            (
                req_err(r#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5,6]}]}"#, &f),
                "shape_mismatch",
                "has 3 columns but input.feature_names names 2",
            ),
            (
                req_err(r#"{"instances":[[1,2,3]]}"#, &f),
                "shape_mismatch",
                "instances[0] has 3 values but input.feature_names names 2",
            ),
            (
                req_err(r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP64","data":[1,2]},{"name":"b","shape":[3],"datatype":"FP64","data":[1,2,3]}]}"#, &[]),
                "shape_mismatch",
                "tensor `b` has 3 rows, the tensors before it 2",
            ),
            (
                req_err(r#"{"inputs":[{"name":"x","shape":[2],"datatype":"COMPLEX64","data":[1,2]}]}"#, &f),
                "unknown_datatype",
                "datatype `COMPLEX64`",
            ),
            (
                req_err(r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,"2"]}]}"#, &f),
                "wrong_type",
                "data holds a value that is not FP32",
            ),
            (
                req_err(r#"{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}"#, &f),
                "missing_field",
                "has no `shape`",
            ),
            (
                req_err(r#"{"rows":[]}"#, &f),
                "missing_field",
                "neither `instances` (V1) nor `inputs`",
            ),
            (req_err("[1]", &f), "wrong_kind", "not a JSON object"),
            (req_err(r#"{"instances":[1"#, &f), "truncated", "request body"),
            (
                response(br#"{"outputs":[{"name":"p","shape":[1,2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#).unwrap_err(),
                "shape_mismatch",
                "neither [N], [N, 1] nor [N, K]",
            ),
            (
                cloud_event(&REQ[1..], b"{}").unwrap_err(),
                "missing_field",
                "no `ce_id` header",
            ),
            (
                cloud_event(&[("ce_id", b"x"), ("ce_type", b"com.example.other")], b"{}").unwrap_err(),
                "wrong_kind",
                "`com.example.other`",
            ),
            (
                cloud_event(&[("ce_id", b"x"), ("ce_type", REQUEST_TYPE.as_bytes()), ("ce_time", b"noon")], b"{}").unwrap_err(),
                "bad_timestamp",
                "`noon`",
            ),
            (
                cloud_event(&[], br#"{"instances":[[1,2]]}"#).unwrap_err(),
                "missing_field",
                "neither `ce_*` headers",
            ),
            (
                cloud_event(&[], br#"{"specversion":"1.0","id":"x","type":"t"}"#).unwrap_err(),
                "missing_field",
                "without `data`",
            ),
        ];
        for (err, reason, detail) in cases {
            assert_eq!(err.reason(), reason, "{err}");
            assert!(err.to_string().contains(detail), "{err:?} lacks {detail}");
        }
    }
}
