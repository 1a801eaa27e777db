//! The bounded, TTL-limited join of labels and late features to their predictions.
//!
//! Entries are keyed by a 64-bit hash of `event_id` instead of the id itself, so a pending
//! prediction costs no allocation; two ids colliding among the at most `max_pending_joins`
//! entries has a probability around n²/2⁶⁵ (about 1e-9 for 200,000 entries).
//! Features published before their prediction wait in a second, smaller buffer.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use crate::event::FeatureValue;

/// Attributes whose group a pending prediction remembers for fairness with labels.
pub const MAX_JOIN_ATTRIBUTES: usize = 4;

/// An unused attribute slot.
pub const NO_GROUP: (u16, u16) = (u16::MAX, u16::MAX);

/// What a label or late features need of their prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending {
    /// Model index within the partition.
    pub model: u32,
    /// Version index within the model.
    pub version: u16,
    /// Prediction event time.
    pub ts: i64,
    /// Score (binary) or value (regression); NaN when absent.
    pub score: f64,
    /// Hash of the predicted class.
    pub label_hash: Option<u64>,
    /// Whether the predicted class is the positive one (binary).
    pub positive: Option<bool>,
    /// (attribute index, group index) pairs.
    pub groups: [(u16, u16); MAX_JOIN_ATTRIBUTES],
    /// The prediction came without features; a feature event is expected.
    pub features_pending: bool,
}

/// Features that arrived before their prediction.
#[derive(Debug, Clone)]
pub struct EarlyFeatures {
    /// Event time of the feature event.
    pub ts: i64,
    /// The features, owned.
    pub features: Vec<(String, OwnedValue)>,
}

/// An owned feature value.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    /// Number.
    Number(f64),
    /// Category.
    Text(String),
    /// Missing.
    Null,
}

impl OwnedValue {
    /// Borrowed view.
    pub fn as_value(&self) -> FeatureValue<'_> {
        match self {
            OwnedValue::Number(x) => FeatureValue::Number(*x),
            OwnedValue::Text(s) => FeatureValue::Text(std::borrow::Cow::Borrowed(s)),
            OwnedValue::Null => FeatureValue::Null,
        }
    }
}

/// Hash of an id or label, stable within a process.
#[inline]
pub fn hash_str(s: &str) -> u64 {
    static STATE: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    let mut h = STATE
        .get_or_init(|| ahash::RandomState::with_seeds(0x5eed, 0xd21f, 0x7a7c, 0x11))
        .build_hasher();
    h.write(s.as_bytes());
    h.finish()
}

/// Identity hasher for keys that are already hashes.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Pending predictions and early features.
#[derive(Debug, Default)]
pub struct JoinBuffer {
    pending: IdMap<Pending>,
    order: VecDeque<(i64, u64)>,
    early: IdMap<EarlyFeatures>,
    early_order: VecDeque<(i64, u64)>,
}

impl JoinBuffer {
    /// Adds a prediction; evicts entries older than `ttl_ms` behind `now_ms` or beyond
    /// `capacity`, returning how many unjoined entries were evicted.
    pub fn insert(
        &mut self,
        event_id: &str,
        p: Pending,
        now_ms: i64,
        ttl_ms: i64,
        capacity: usize,
    ) -> u64 {
        let key = hash_str(event_id);
        self.pending.insert(key, p);
        self.order.push_back((p.ts, key));
        let mut evicted = 0;
        while let Some(&(ts, k)) = self.order.front() {
            let expired = ts < now_ms.saturating_sub(ttl_ms);
            if !(expired || self.order.len() > capacity) {
                break;
            }
            self.order.pop_front();
            // The id may have been re-inserted later; only evict entries of this age.
            if self.pending.get(&k).is_some_and(|e| e.ts == ts) {
                self.pending.remove(&k);
                evicted += 1;
            }
        }
        evicted
    }

    /// Removes and returns the prediction a label joins.
    pub fn take_for_label(&mut self, event_id: &str) -> Option<Pending> {
        self.pending.remove(&hash_str(event_id))
    }

    /// The prediction that late features join, marking its features as received.
    pub fn take_features_slot(&mut self, event_id: &str) -> Option<Pending> {
        let p = self.pending.get_mut(&hash_str(event_id))?;
        if !p.features_pending {
            return None;
        }
        p.features_pending = false;
        Some(*p)
    }

    /// Keeps features whose prediction has not arrived yet (bounded like the pending map).
    pub fn hold_early(
        &mut self,
        event_id: &str,
        f: EarlyFeatures,
        now_ms: i64,
        ttl_ms: i64,
        capacity: usize,
    ) -> u64 {
        let key = hash_str(event_id);
        self.early_order.push_back((f.ts, key));
        self.early.insert(key, f);
        let mut evicted = 0;
        while let Some(&(ts, k)) = self.early_order.front() {
            if !(ts < now_ms.saturating_sub(ttl_ms) || self.early_order.len() > capacity) {
                break;
            }
            self.early_order.pop_front();
            if self.early.get(&k).is_some_and(|e| e.ts == ts) {
                self.early.remove(&k);
                evicted += 1;
            }
        }
        evicted
    }

    /// Features that arrived before this prediction, if any.
    pub fn take_early(&mut self, event_id: &str) -> Option<EarlyFeatures> {
        if self.early.is_empty() {
            return None;
        }
        self.early.remove(&hash_str(event_id))
    }

    /// Pending predictions.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(ts: i64) -> Pending {
        Pending {
            model: 0,
            version: 0,
            ts,
            score: 0.5,
            label_hash: Some(hash_str("1")),
            positive: Some(true),
            groups: [NO_GROUP; MAX_JOIN_ATTRIBUTES],
            features_pending: false,
        }
    }

    #[test]
    fn joins_once_and_expires_by_ttl_and_capacity() {
        let mut j = JoinBuffer::default();
        assert_eq!(j.insert("a", pending(0), 0, 100, 10), 0);
        assert_eq!(j.take_for_label("a").unwrap().ts, 0);
        assert!(j.take_for_label("a").is_none(), "a label joins once");
        j.insert("b", pending(0), 0, 100, 10);
        assert_eq!(j.insert("c", pending(200), 200, 100, 10), 1, "b expired");
        assert!(j.take_for_label("b").is_none());
        for i in 0..20 {
            j.insert(&format!("x{i}"), pending(300), 300, 100, 10);
        }
        assert!(j.len() <= 10);
    }
}
