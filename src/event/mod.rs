//! The v1 input contracts and their decoding.
//!
//! Decoding is typed and borrowed: strings point into the message bytes unless they contain
//! escapes, features are collected into a small vector (no map), and one pass over the bytes
//! both validates and classifies the event. The common shape (known fields, strings without
//! escapes) is decoded by a hand-written scanner (`fast`); everything else, errors included, by
//! serde_json, which has the last word on what is malformed and why. Anything that does not match the schemas in
//! `schemas/` is rejected with a [`DecodeError`] whose [`DecodeError::reason`] is one of a short
//! fixed list of reason codes (used for dead-letter headers and metric labels).

mod fast;
pub mod kserve;
mod time;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

pub use time::{format_rfc3339_ms, parse_rfc3339_ms};

/// Which input contract an event follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A prediction (topic `predictions`).
    Prediction,
    /// Features published separately (topic `features`).
    Features,
    /// A ground-truth label (topic `labels`).
    Label,
}

impl EventKind {
    /// Lower-case name used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Prediction => "prediction",
            EventKind::Features => "features",
            EventKind::Label => "label",
        }
    }
}

/// Why an input message was rejected. The reason codes are a closed list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than `limits.max_event_bytes`.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    Oversize {
        /// Message size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Not valid UTF-8.
    #[error("message is not valid UTF-8: {0}")]
    InvalidUtf8(String),
    /// The message ended in the middle of a JSON value.
    #[error("truncated JSON: {0}")]
    Truncated(String),
    /// Not JSON at all, or trailing garbage.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// A required field is absent.
    #[error("{0}")]
    MissingField(String),
    /// A field has the wrong JSON type.
    #[error("{0}")]
    WrongType(String),
    /// `timestamp` is neither RFC 3339 nor integer epoch milliseconds.
    #[error("{0}")]
    BadTimestamp(String),
    /// A value is of the right type but not allowed (empty id, negative latency, …).
    #[error("{0}")]
    InvalidValue(String),
    /// The object matches no contract, or not the one its topic carries.
    #[error("{0}")]
    WrongKind(String),
    /// A tensor's data, a batch's rows or a row's columns do not match the shape they
    /// should have (the tensor's `shape`, the other tensors, the response's rows,
    /// `input.feature_names`).
    #[error("{0}")]
    ShapeMismatch(String),
    /// A tensor's datatype is not one of the Open Inference Protocol's.
    #[error("{0}")]
    UnknownDatatype(String),
    /// A request or response whose other half did not come within `limits.join_ttl` (or was
    /// pushed out of a full buffer, `limits.max_pending_joins`).
    #[error("{0}")]
    Unjoined(String),
    /// The event is dated too far ahead of its input's event time (`window.max_skew`), and no
    /// run of events confirmed the jump: a skewed producer clock or a stray timestamp.
    #[error(
        "timestamp {timestamp_ms} ms is more than {max_skew_ms} ms ahead of its input's event \
         time {clock_ms} ms (window.max_skew)"
    )]
    FutureTimestamp {
        /// The event's time, epoch milliseconds.
        timestamp_ms: i64,
        /// The input's event time then.
        clock_ms: i64,
        /// The configured maximum skew.
        max_skew_ms: i64,
    },
}

impl DecodeError {
    /// The reason code for headers and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Oversize { .. } => "oversize",
            DecodeError::InvalidUtf8(_) => "invalid_utf8",
            DecodeError::Truncated(_) => "truncated",
            DecodeError::NotJson(_) => "not_json",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::WrongType(_) => "wrong_type",
            DecodeError::BadTimestamp(_) => "bad_timestamp",
            DecodeError::InvalidValue(_) => "invalid_value",
            DecodeError::WrongKind(_) => "wrong_kind",
            DecodeError::ShapeMismatch(_) => "shape_mismatch",
            DecodeError::UnknownDatatype(_) => "unknown_datatype",
            DecodeError::Unjoined(_) => "unjoined",
            DecodeError::FutureTimestamp { .. } => "future_timestamp",
        }
    }

    /// Every reason code, for pre-registering metrics.
    pub const REASONS: [&'static str; 13] = [
        "oversize",
        "invalid_utf8",
        "truncated",
        "not_json",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
        "invalid_value",
        "wrong_kind",
        "shape_mismatch",
        "unknown_datatype",
        "unjoined",
        "future_timestamp",
    ];
}

const BAD_TIMESTAMP: &str = "bad timestamp: ";
const INVALID_VALUE: &str = "invalid value: ";

/// One feature value as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue<'a> {
    /// A JSON number (booleans count as 0/1).
    Number(f64),
    /// A JSON string: a category.
    Text(Cow<'a, str>),
    /// `null`: missing.
    Null,
}

/// A prediction's payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prediction<'a> {
    /// Probability of the positive class (binary classification).
    pub score: Option<f64>,
    /// Predicted class (classification), as text; numbers are written in canonical form.
    pub label: Option<Cow<'a, str>>,
    /// Predicted value (regression).
    pub value: Option<f64>,
}

/// A decoded input event; strings borrow from the message where they can.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Which contract it follows.
    pub kind: EventKind,
    /// Identifier joining predictions, features and labels.
    pub event_id: Cow<'a, str>,
    /// Model id.
    pub model_id: Cow<'a, str>,
    /// Model version (predictions only).
    pub model_version: Option<Cow<'a, str>>,
    /// Event time, epoch milliseconds.
    pub timestamp_ms: i64,
    /// Features in message order (predictions and feature events).
    pub features: Vec<(Cow<'a, str>, FeatureValue<'a>)>,
    /// Prediction payload (predictions only).
    pub prediction: Option<Prediction<'a>>,
    /// Inference latency in milliseconds (predictions only).
    pub latency_ms: Option<f64>,
    /// Segments and protected attributes (predictions only).
    pub attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Ground truth class (labels of classifiers).
    pub label: Option<Cow<'a, str>>,
    /// Ground truth value (labels of regressors).
    pub value: Option<f64>,
    /// Where `features` came from, for [`DecodeBuffers::recycle`].
    scanned: ScannedFeatures,
}

/// The address and length of an event's feature list as the scanner left it, every name and
/// text value in it borrowed from the message (`None` when it was decoded any other way): a
/// list still at that address and length needs no per-entry drop when it is recycled. Not part
/// of the event's value (always equal, and not shown).
#[derive(Clone, Copy, Default)]
struct ScannedFeatures(Option<(usize, usize)>);

impl ScannedFeatures {
    fn of<T>(list: &[T]) -> (usize, usize) {
        (list.as_ptr() as usize, list.len())
    }
}

impl PartialEq for ScannedFeatures {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for ScannedFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("..")
    }
}

/// Decodes one message. `expected` is the kind its topic carries, or `None` to classify by
/// shape (mixed JSON Lines files in `replay`).
pub fn decode<'a>(
    bytes: &'a [u8],
    expected: Option<EventKind>,
    max_bytes: usize,
) -> Result<Event<'a>, DecodeError> {
    decode_into(bytes, expected, max_bytes, fast::Spare::default())
}

/// The lists an event is decoded into (features and attributes), kept between messages so
/// that decoding one message after another does not allocate them anew: [`decode_reusing`]
/// decodes into them, and [`DecodeBuffers::recycle`] takes them back once the event is done
/// with.
#[derive(Debug, Default)]
pub struct DecodeBuffers(fast::Spare<'static>);

impl DecodeBuffers {
    /// Takes back a decoded event's lists (emptied) for the next message.
    pub fn recycle(&mut self, mut event: Event<'_>) {
        self.take_back(&mut event);
    }

    /// [`DecodeBuffers::recycle`] without moving the event: its lists are left empty and
    /// unallocated.
    pub fn take_back(&mut self, event: &mut Event<'_>) {
        let mut features = std::mem::take(&mut event.features);
        let scanned = event.scanned.0;
        if scanned == Some(ScannedFeatures::of(&features)) {
            // Every entry borrows (the scanner's list, not grown or moved since), so there is
            // nothing to drop: forgetting the entries is the same as dropping them, without a
            // check per entry.
            // SAFETY: a length of zero is within the capacity and leaves no entry to read.
            unsafe { features.set_len(0) };
        }
        self.0 = fast::Spare {
            features,
            attributes: std::mem::take(&mut event.attributes),
        }
        .relabel();
    }
}

/// [`decode`], into lists taken from `buffers` (give them back with
/// [`DecodeBuffers::recycle`]).
pub fn decode_reusing<'a>(
    bytes: &'a [u8],
    expected: Option<EventKind>,
    max_bytes: usize,
    buffers: &mut DecodeBuffers,
) -> Result<Event<'a>, DecodeError> {
    let spare = std::mem::take(&mut buffers.0).relabel();
    decode_into(bytes, expected, max_bytes, spare)
}

fn decode_into<'a>(
    bytes: &'a [u8],
    expected: Option<EventKind>,
    max_bytes: usize,
    spare: fast::Spare<'a>,
) -> Result<Event<'a>, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::Oversize {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let mut raw = RawEvent::default();
    if !fast::scan_into(bytes, spare, &mut raw) {
        let text =
            std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8(e.to_string()))?;
        if text.trim().is_empty() {
            return Err(DecodeError::NotJson("empty message".into()));
        }
        raw = serde_json::from_str(text).map_err(|e| {
            let data = e.classify() == serde_json::error::Category::Data;
            match text.trim_start().as_bytes().first() {
                // Valid JSON, but an array, a string, a number, `true`, `false` or `null`.
                Some(&c) if data && c != b'{' => {
                    DecodeError::WrongKind(format!("not an event object: {e}"))
                }
                _ => classify_json_error(e),
            }
        })?;
    }
    raw.into_event(expected)
}

fn classify_json_error(e: serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    let msg = e.to_string();
    match e.classify() {
        Category::Eof => DecodeError::Truncated(msg),
        Category::Syntax | Category::Io => DecodeError::NotJson(msg),
        Category::Data => {
            if msg.starts_with(BAD_TIMESTAMP) {
                DecodeError::BadTimestamp(msg)
            } else if msg.starts_with(INVALID_VALUE) {
                DecodeError::InvalidValue(msg)
            } else if msg.starts_with("missing field") {
                DecodeError::MissingField(msg)
            } else {
                DecodeError::WrongType(msg)
            }
        }
    }
}

/// The union of all contracts' fields; classified after parsing.
#[derive(Deserialize, Default)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    event_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    model_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    model_version: Option<Text<'a>>,
    #[serde(default)]
    timestamp: Option<Timestamp>,
    #[serde(borrow, default)]
    features: Option<Features<'a>>,
    #[serde(borrow, default, deserialize_with = "not_null")]
    prediction: Option<RawPrediction<'a>>,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(borrow, default)]
    attributes: Option<Attributes<'a>>,
    #[serde(borrow, default)]
    label: Option<LabelText<'a>>,
    #[serde(default)]
    value: Option<f64>,
    /// Set by the scanner: see [`ScannedFeatures`].
    #[serde(skip)]
    scanned_features: bool,
}

impl<'a> RawEvent<'a> {
    fn into_event(self, expected: Option<EventKind>) -> Result<Event<'a>, DecodeError> {
        let kind = if self.prediction.is_some() {
            EventKind::Prediction
        } else if self.label.is_some() || self.value.is_some() {
            EventKind::Label
        } else if self.features.is_some() {
            EventKind::Features
        } else {
            match expected {
                Some(EventKind::Prediction) => {
                    return Err(DecodeError::MissingField(
                        "missing field `prediction`".into(),
                    ))
                }
                Some(EventKind::Label) => {
                    return Err(DecodeError::MissingField(
                        "missing field `label` (or `value`)".into(),
                    ))
                }
                Some(EventKind::Features) => {
                    return Err(DecodeError::MissingField("missing field `features`".into()))
                }
                None => {
                    return Err(DecodeError::WrongKind(
                        "object has none of `prediction`, `label`, `value`, `features`".into(),
                    ))
                }
            }
        };
        if let Some(want) = expected {
            if want != kind {
                return Err(DecodeError::WrongKind(format!(
                    "a {} event on the {} topic",
                    kind.as_str(),
                    want.as_str()
                )));
            }
        }
        let event_id = required(self.event_id, "event_id")?;
        let model_id = required(self.model_id, "model_id")?;
        let timestamp_ms = self
            .timestamp
            .ok_or_else(|| DecodeError::MissingField("missing field `timestamp`".into()))?
            .0;
        let features = self.features.map(|f| f.0).unwrap_or_default();
        let scanned = ScannedFeatures(
            self.scanned_features
                .then(|| ScannedFeatures::of(&features)),
        );
        let mut event = Event {
            kind,
            event_id,
            model_id,
            model_version: None,
            timestamp_ms,
            features,
            prediction: None,
            latency_ms: None,
            attributes: self.attributes.map(|a| a.0).unwrap_or_default(),
            label: self.label.map(|l| l.0),
            value: self.value,
            scanned,
        };
        match kind {
            EventKind::Prediction => {
                event.model_version = Some(required(self.model_version, "model_version")?);
                let p = self.prediction.expect("classified as prediction");
                if p.score.is_none() && p.label.is_none() && p.value.is_none() {
                    return Err(DecodeError::MissingField(
                        "prediction needs `score`, `label` or `value`".into(),
                    ));
                }
                if let Some(s) = p.score {
                    if !(0.0..=1.0).contains(&s) {
                        return Err(DecodeError::InvalidValue(format!(
                            "prediction.score {s} is outside [0, 1]"
                        )));
                    }
                }
                event.prediction = Some(Prediction {
                    score: p.score,
                    label: p.label.map(|l| l.0),
                    value: p.value,
                });
                if let Some(l) = self.latency_ms {
                    if l.is_nan() || l < 0.0 {
                        return Err(DecodeError::InvalidValue(format!(
                            "latency_ms {l} is negative"
                        )));
                    }
                }
                event.latency_ms = self.latency_ms;
            }
            EventKind::Features | EventKind::Label => {}
        }
        Ok(event)
    }
}

/// A field the schemas allow to be absent but not `null`: `null` is a wrong type, not an
/// absent field (a prediction whose `prediction` is `null` is not a feature event).
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(de::Error::custom("invalid type: null, expected an object")),
    }
}

fn required<'a>(v: Option<Text<'a>>, name: &str) -> Result<Cow<'a, str>, DecodeError> {
    match v.map(|t| t.0) {
        None => Err(DecodeError::MissingField(format!("missing field `{name}`"))),
        Some(s) if s.is_empty() => Err(DecodeError::InvalidValue(format!("`{name}` is empty"))),
        Some(s) => Ok(s),
    }
}

/// A JSON string that borrows from the input unless it contains escapes. (serde's own
/// `Cow<str>` always allocates when nested in `Option` or used as a map key.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// `timestamp`: RFC 3339 string or integer epoch milliseconds.
struct Timestamp(i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or integer epoch milliseconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                parse_rfc3339_ms(s)
                    .map(Timestamp)
                    .ok_or_else(|| E::custom(format!("{BAD_TIMESTAMP}`{s}` is not RFC 3339")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom(format!("{BAD_TIMESTAMP}{v} is out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Err(E::custom(format!(
                    "{BAD_TIMESTAMP}{v} is not an integer number of milliseconds"
                )))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Timestamp, E> {
                Err(E::custom(format!("{BAD_TIMESTAMP}{v} is not a timestamp")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Timestamp, E> {
                Err(E::custom(format!("{BAD_TIMESTAMP}null")))
            }
        }
        d.deserialize_any(V)
    }
}

struct Features<'a>(Vec<(Cow<'a, str>, FeatureValue<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Features<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Features<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of feature values (number, string, boolean or null)")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Features<'a>, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(24));
                while let Some(k) = m.next_key::<Text<'de>>()? {
                    let v: FeatureValueDe<'de> = m.next_value()?;
                    out.push((k.0, v.0));
                }
                Ok(Features(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

struct FeatureValueDe<'a>(FeatureValue<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for FeatureValueDe<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FeatureValueDe<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, string, boolean or null")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(FeatureValueDe(FeatureValue::Number(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(FeatureValueDe(FeatureValue::Number(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(FeatureValueDe(FeatureValue::Number(v as f64)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(FeatureValueDe(FeatureValue::Number(if v {
                    1.0
                } else {
                    0.0
                })))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FeatureValueDe(FeatureValue::Null))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FeatureValueDe(FeatureValue::Text(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FeatureValueDe(FeatureValue::Text(Cow::Owned(v.to_owned()))))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

struct Attributes<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Attributes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Attributes<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of attribute values (strings, numbers or booleans)")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Attributes<'a>, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(4));
                while let Some(k) = m.next_key::<Text<'de>>()? {
                    let v: LabelText<'de> = m.next_value()?;
                    out.push((k.0, v.0));
                }
                Ok(Attributes(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A class label or attribute value: a string, an integer or a boolean, kept as text.
struct LabelText<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for LabelText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LabelText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, integer or boolean")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LabelText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LabelText(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LabelText(match small_int_text(v) {
                    Some(s) => Cow::Borrowed(s),
                    None => Cow::Owned(v.to_string()),
                }))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                match i64::try_from(v) {
                    Ok(i) => self.visit_i64(i),
                    Err(_) => Ok(LabelText(Cow::Owned(v.to_string()))),
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LabelText(Cow::Borrowed(if v { "true" } else { "false" })))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Labels are usually small integers; their text is static so decoding them allocates nothing.
fn small_int_text(v: i64) -> Option<&'static str> {
    const T: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    usize::try_from(v).ok().and_then(|i| T.get(i).copied())
}

#[derive(Deserialize)]
struct RawPrediction<'a> {
    #[serde(default)]
    score: Option<f64>,
    #[serde(borrow, default)]
    label: Option<LabelText<'a>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    probabilities: Option<serde::de::IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// Decoding into recycled lists gives the same events, in the same allocations.
    #[test]
    fn a_recycled_feature_list_is_reused() {
        let msgs: [&[u8]; 3] = [
            br#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"features":{"x":1.5,"c":"k","n":null},"prediction":{"score":0.5}}"#,
            br#"{"event_id":"b","model_id":"m","timestamp":2,"features":{"y":-2}}"#,
            br#"{"event_id":"c\u0041","model_id":"m","timestamp":3,"features":{"z":true}}"#,
        ];
        let mut buffers = DecodeBuffers::default();
        let mut last_alloc = None;
        for (i, msg) in msgs.iter().enumerate() {
            let e = decode_reusing(msg, None, MAX, &mut buffers).unwrap();
            assert_eq!(e, decode(msg, None, MAX).unwrap());
            let alloc = e.features.as_ptr();
            // The scanner (first two messages) decodes into the recycled list.
            if i == 1 {
                assert_eq!(Some(alloc), last_alloc);
            }
            last_alloc = Some(alloc);
            buffers.recycle(e);
            assert!(buffers.0.features.is_empty() && buffers.0.features.capacity() >= 3);
        }
    }

    #[test]
    fn decodes_the_design_example() {
        let msg = br#"{"event_id": "7f0c", "model_id": "credit-risk", "model_version": "v7",
 "timestamp": "2026-11-27T04:35:18.123Z",
 "features": {"income": 52000.0, "age": 41, "region": "north", "tenure": null},
 "prediction": {"score": 0.83, "label": 1},
 "latency_ms": 18.4,
 "attributes": {"gender": "f", "channel": "mobile"}}"#;
        let e = decode(msg, Some(EventKind::Prediction), MAX).unwrap();
        assert_eq!(e.kind, EventKind::Prediction);
        assert_eq!(e.model_version.as_deref(), Some("v7"));
        assert_eq!(
            e.timestamp_ms,
            parse_rfc3339_ms("2026-11-27T04:35:18.123Z").unwrap()
        );
        assert_eq!(e.features.len(), 4);
        assert_eq!(
            e.features[1],
            (Cow::Borrowed("age"), FeatureValue::Number(41.0))
        );
        assert_eq!(e.features[3].1, FeatureValue::Null);
        let p = e.prediction.unwrap();
        assert_eq!(p.score, Some(0.83));
        assert_eq!(p.label.as_deref(), Some("1"));
        assert!(matches!(e.event_id, Cow::Borrowed(_)));
        assert!(
            matches!(e.features[0].0, Cow::Borrowed(_)),
            "keys borrow too"
        );
        let escaped = decode(
            br#"{"event_id":"a\"b","model_id":"m","model_version":"v","timestamp":1,"prediction":{"score":0.5}}"#,
            None,
            MAX,
        )
        .unwrap();
        assert_eq!(escaped.event_id, "a\"b");
        assert_eq!(e.attributes[0].1, "f");
    }

    #[test]
    fn classifies_labels_and_features_by_shape() {
        let l = decode(
            br#"{"event_id":"a","model_id":"m","timestamp":1700000000000,"label":0}"#,
            None,
            MAX,
        )
        .unwrap();
        assert_eq!(l.kind, EventKind::Label);
        assert_eq!(l.label.as_deref(), Some("0"));
        let f = decode(
            br#"{"event_id":"a","model_id":"m","timestamp":1700000000000,"features":{"x":1}}"#,
            None,
            MAX,
        )
        .unwrap();
        assert_eq!(f.kind, EventKind::Features);
    }

    fn reason(bytes: &[u8], kind: Option<EventKind>) -> &'static str {
        decode(bytes, kind, 200).unwrap_err().reason()
    }

    #[test]
    fn every_malformation_has_its_reason() {
        let p = Some(EventKind::Prediction);
        assert_eq!(reason(b"not json at all", p), "not_json");
        assert_eq!(reason(b"", p), "not_json");
        assert_eq!(reason(b"  \n", p), "not_json");
        assert_eq!(reason(br#"{"event_id": "a", "model"#, p), "truncated");
        assert_eq!(reason(b"{\"event_id\": \"\xff\xfe\"}", p), "invalid_utf8");
        assert_eq!(reason(&[b' '; 300], p), "oversize");
        assert_eq!(
            reason(br#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":"yesterday","prediction":{"score":0.5}}"#, p),
            "bad_timestamp"
        );
        assert_eq!(
            reason(br#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"score":"high"}}"#, p),
            "wrong_type"
        );
        assert_eq!(
            reason(
                br#"{"event_id":"a","model_version":"v","timestamp":1,"prediction":{"score":0.5}}"#,
                p
            ),
            "missing_field"
        );
        assert_eq!(
            reason(
                br#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1}"#,
                p
            ),
            "missing_field"
        );
        assert_eq!(
            reason(br#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"score":1.5}}"#, p),
            "invalid_value"
        );
        assert_eq!(
            reason(
                br#"{"event_id":"a","model_id":"m","timestamp":1,"label":1}"#,
                p
            ),
            "wrong_kind"
        );
        for not_an_object in ["[1,2,3]", "42", "\"text\"", "null", " true"] {
            assert_eq!(
                reason(not_an_object.as_bytes(), p),
                "wrong_kind",
                "{not_an_object}"
            );
            assert_eq!(reason(not_an_object.as_bytes(), None), "wrong_kind");
        }
        let null_prediction = br#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"features":{"x":1},"prediction":null}"#;
        assert_eq!(reason(null_prediction, None), "wrong_type");
        assert_eq!(reason(null_prediction, p), "wrong_type");
    }
}
