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

/// Where a held message came from, so that its offset stays uncommitted while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The monitor's index of the input.
    pub input: u32,
    /// Offset of the message in that input.
    pub offset: i64,
}

/// Features that arrived before their prediction.
#[derive(Debug, Clone)]
pub struct EarlyFeatures {
    /// Event time of the feature event.
    pub ts: i64,
    /// Where the features came from.
    pub origin: Origin,
    /// The features, owned.
    pub features: Vec<(String, OwnedValue)>,
}

/// A label that arrived before its prediction.
#[derive(Debug, Clone)]
pub struct EarlyLabel {
    /// Event time of the label event.
    pub ts: i64,
    /// Where the label came from.
    pub origin: Origin,
    /// The class label, if any.
    pub label: Option<Box<str>>,
    /// The regression target, if any.
    pub value: Option<f64>,
}

/// Something held until its prediction arrives.
pub trait Held {
    /// Event time (held entries expire `join_ttl` behind the newest event time).
    fn ts(&self) -> i64;
    /// Where it came from.
    fn origin(&self) -> Origin;
}

impl Held for EarlyFeatures {
    fn ts(&self) -> i64 {
        self.ts
    }
    fn origin(&self) -> Origin {
        self.origin
    }
}

impl Held for EarlyLabel {
    fn ts(&self) -> i64 {
        self.ts
    }
    fn origin(&self) -> Origin {
        self.origin
    }
}

/// Messages waiting for their prediction, bounded by count and by age, expiring oldest first.
#[derive(Debug)]
pub struct EarlyQueue<T> {
    by_id: IdMap<(u64, T)>,
    /// (event time, id hash, arrival number) in arrival order.
    order: VecDeque<(i64, u64, u64)>,
    arrivals: u64,
}

impl<T> Default for EarlyQueue<T> {
    fn default() -> Self {
        Self {
            by_id: IdMap::default(),
            order: VecDeque::new(),
            arrivals: 0,
        }
    }
}

impl<T: Held> EarlyQueue<T> {
    /// Holds `item` for `event_id`; entries older than `ttl_ms` behind `now_ms`, or beyond
    /// `capacity`, are given up and their origins pushed to `evicted`. A second message for
    /// the same id replaces the first, whose origin is pushed to `evicted` too.
    pub fn hold(
        &mut self,
        event_id: &str,
        item: T,
        now_ms: i64,
        ttl_ms: i64,
        capacity: usize,
        evicted: &mut Vec<Origin>,
    ) {
        let key = hash_str(event_id);
        let n = self.arrivals;
        self.arrivals += 1;
        self.order.push_back((item.ts(), key, n));
        if let Some((_, old)) = self.by_id.insert(key, (n, item)) {
            evicted.push(old.origin());
        }
        while let Some(&(ts, k, n)) = self.order.front() {
            if !(ts < now_ms.saturating_sub(ttl_ms) || self.order.len() > capacity) {
                break;
            }
            self.order.pop_front();
            if self.by_id.get(&k).is_some_and(|(m, _)| *m == n) {
                let (_, old) = self.by_id.remove(&k).expect("present");
                evicted.push(old.origin());
            }
        }
    }

    /// Takes what is held for `event_id`.
    #[inline]
    pub fn take(&mut self, event_id: &str) -> Option<T> {
        if self.by_id.is_empty() {
            return None;
        }
        self.by_id.remove(&hash_str(event_id)).map(|(_, t)| t)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
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

/// A pending prediction in arrival order.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: u64,
    p: Pending,
    /// Still waiting: not joined by a label and not replaced by a redelivered copy (as far as
    /// the index knows; a copy among the latest arrivals is checked for separately).
    live: bool,
}

/// Arrivals gathered before they are added to the index together.
const BATCH: usize = 32;

/// Pending predictions, and labels and features that came before theirs.
///
/// Pending predictions sit in a ring in arrival order (which is also the order they expire
/// in), and a map from id hash to the sequence number of the id's newest prediction finds them.
/// The ring is written and read sequentially; the map, which outgrows the caches, is the only
/// structure touched at random, and it is touched in batches:
///
/// * arrivals are added to the map [`BATCH`] at a time (or before any lookup), so the cache
///   misses of their inserts overlap instead of stalling one event each;
/// * a prediction leaving the ring is not looked up: its slot knows whether it is still
///   waiting, and its map entry, whose sequence number now lies before the ring, is stale. When
///   the map is about to grow and at least a quarter of it is stale, the stale entries are
///   swept out instead, so the map stays the size its live entries need (each sweep frees a
///   quarter of the map, so sweeping costs a few steps per insert).
#[derive(Debug, Default)]
pub struct JoinBuffer {
    /// Predictions in arrival order, joined ones included until they leave; `base` is the
    /// sequence number of the first.
    ring: VecDeque<Slot>,
    base: u64,
    /// Id hash → sequence number of its newest prediction, for all but the `recent` arrivals.
    /// An entry below `base` is stale: its prediction has left the ring.
    index: IdMap<u64>,
    /// (id hash, sequence number) of arrivals not yet in `index`, oldest first.
    recent: Vec<(u64, u64)>,
    /// One bit per id hash's top byte among `recent`, so most leaving predictions need not
    /// search it.
    recent_bits: [u64; 4],
    /// Features that arrived before their prediction.
    pub early_features: EarlyQueue<EarlyFeatures>,
    /// Labels that arrived before their prediction.
    pub early_labels: EarlyQueue<EarlyLabel>,
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
        self.recent.push((key, self.base + self.ring.len() as u64));
        self.recent_bits[(key >> 62) as usize] |= 1 << ((key >> 56) & 63);
        self.ring.push_back(Slot { key, p, live: true });
        let mut evicted = 0;
        while let Some(&Slot {
            key: k,
            p: oldest,
            live,
        }) = self.ring.front()
        {
            let expired = oldest.ts < now_ms.saturating_sub(ttl_ms);
            if !(expired || self.ring.len() > capacity) {
                break;
            }
            if live {
                // The id may have been inserted again since (a redelivered prediction): the
                // newer entry stays, and the one leaving was no longer waiting.
                let base = self.base;
                let maybe_recent = self.recent_bits[(k >> 62) as usize] & (1 << ((k >> 56) & 63));
                if maybe_recent == 0 || !self.recent.iter().any(|&(r, seq)| r == k && seq > base) {
                    evicted += 1;
                }
            }
            self.ring.pop_front();
            self.base += 1;
        }
        if self.recent.len() >= BATCH {
            self.flush();
        }
        evicted
    }

    /// Adds the recent arrivals to the index, marking the entries they replace as no longer
    /// waiting; sweeps out stale entries first when the index would otherwise grow.
    fn flush(&mut self) {
        let base = self.base;
        // Every live entry has its slot in the ring, so the rest are stale.
        let stale_at_least = self.index.len().saturating_sub(self.ring.len());
        if self.index.len() + self.recent.len() > self.index.capacity()
            && stale_at_least >= self.index.capacity() / 4
        {
            self.index.retain(|_, seq| *seq >= base);
        }
        for &(key, seq) in &self.recent {
            if seq < base {
                // Left the ring already (counted then).
                continue;
            }
            if let Some(old) = self.index.insert(key, seq) {
                if old >= base {
                    self.ring[(old - base) as usize].live = false;
                }
            }
        }
        self.recent.clear();
        self.recent_bits = [0; 4];
    }

    /// The live slot of an id, if its prediction is still waiting.
    fn slot_of(&mut self, key: u64, remove: bool) -> Option<&mut Slot> {
        self.flush();
        let seq = if remove {
            self.index.remove(&key)?
        } else {
            *self.index.get(&key)?
        };
        let slot = self.ring.get_mut(seq.checked_sub(self.base)? as usize)?;
        debug_assert!(slot.live && slot.key == key);
        Some(slot)
    }

    /// Removes and returns the prediction a label joins.
    pub fn take_for_label(&mut self, event_id: &str) -> Option<Pending> {
        let slot = self.slot_of(hash_str(event_id), true)?;
        slot.live = false;
        Some(slot.p)
    }

    /// The prediction that late features join, marking its features as received.
    pub fn take_features_slot(&mut self, event_id: &str) -> Option<Pending> {
        let p = &mut self.slot_of(hash_str(event_id), false)?.p;
        if !p.features_pending {
            return None;
        }
        p.features_pending = false;
        Some(*p)
    }

    /// Keeps the pending predictions for which `keep` returns true (it may rewrite them, e.g. to
    /// renumber versions) and forgets the others; returns how many were forgotten. A pass over
    /// every entry: for evictions, not for the hot path.
    pub fn retain_pending(&mut self, mut keep: impl FnMut(&mut Pending) -> bool) -> u64 {
        self.flush();
        let (base, index) = (self.base, &mut self.index);
        let mut forgotten = 0;
        for (n, slot) in self.ring.iter_mut().enumerate() {
            if !slot.live || keep(&mut slot.p) {
                continue;
            }
            slot.live = false;
            forgotten += 1;
            if index.get(&slot.key) == Some(&(base + n as u64)) {
                index.remove(&slot.key);
            }
        }
        forgotten
    }

    /// Pending predictions (counted, for tests and diagnostics: not for the hot path).
    pub fn len(&mut self) -> usize {
        // Redelivered copies among the recent arrivals are found out by adding them.
        self.flush();
        self.ring.iter().filter(|s| s.live).count()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
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

    /// The straightforward buffer: a map of pending predictions and a queue of arrivals.
    /// A map and a queue: id -> (insertion number, newest prediction), insertions in order.
    #[derive(Default)]
    struct Reference {
        pending: HashMap<u64, (u64, Pending)>,
        order: VecDeque<(i64, u64, u64)>,
        inserted: u64,
    }

    impl Reference {
        fn insert(&mut self, id: &str, p: Pending, now: i64, ttl: i64, cap: usize) -> u64 {
            let key = hash_str(id);
            let n = self.inserted;
            self.inserted += 1;
            self.pending.insert(key, (n, p));
            self.order.push_back((p.ts, key, n));
            let mut evicted = 0;
            while let Some(&(ts, k, n)) = self.order.front() {
                if !(ts < now.saturating_sub(ttl) || self.order.len() > cap) {
                    break;
                }
                self.order.pop_front();
                if self.pending.get(&k).is_some_and(|e| e.0 == n) {
                    self.pending.remove(&k);
                    evicted += 1;
                }
            }
            evicted
        }

        fn take_for_label(&mut self, id: &str) -> Option<Pending> {
            self.pending.remove(&hash_str(id)).map(|(_, p)| p)
        }

        fn take_features_slot(&mut self, id: &str) -> Option<Pending> {
            let (_, p) = self.pending.get_mut(&hash_str(id))?;
            if !p.features_pending {
                return None;
            }
            p.features_pending = false;
            Some(*p)
        }
    }

    /// Random inserts (repeated ids, equal and out-of-order times), labels and late features:
    /// the ring behaves exactly like the map and queue.
    #[test]
    fn ring_matches_the_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        let (mut j, mut r) = (JoinBuffer::default(), Reference::default());
        let mut now = 0i64;
        for step in 0..200_000 {
            let id = format!("e{}", rng.random_range(0..300));
            // Stretches of arrivals alone (which wait in batches), and stretches mixed with
            // lookups (which add every waiting arrival to the index first).
            let lookups = if (step / 500) % 2 == 0 { 0 } else { 4 };
            match rng.random_range(0..8 + lookups) {
                0..=7 => {
                    now += rng.random_range(0..3);
                    let mut p = pending(now - rng.random_range(0..4));
                    p.score = step as f64;
                    p.features_pending = rng.random_bool(0.5);
                    let (ttl, cap) = (rng.random_range(5..40), rng.random_range(1..120));
                    assert_eq!(
                        j.insert(&id, p, now, ttl, cap),
                        r.insert(&id, p, now, ttl, cap)
                    );
                }
                8..=9 => assert_eq!(j.take_for_label(&id), r.take_for_label(&id)),
                _ => assert_eq!(j.take_features_slot(&id), r.take_features_slot(&id)),
            }
            if step % 37 == 0 {
                // Not after every step: between lookups, arrivals wait in batches.
                assert_eq!(j.len(), r.pending.len());
            }
        }
    }

    #[test]
    fn a_redelivered_prediction_outlives_its_first_copy() {
        let mut j = JoinBuffer::default();
        j.insert("a", pending(0), 0, 100, 2);
        j.insert("a", pending(0), 0, 100, 2);
        // capacity 2: the first copy of "a" leaves the ring; the second still joins.
        assert_eq!(j.insert("b", pending(0), 0, 100, 2), 0);
        assert_eq!(j.take_for_label("a").map(|p| p.ts), Some(0));
    }

    /// Predictions leaving the ring leave stale index entries behind; they are swept before
    /// the index grows, so its size follows the capacity, not the traffic.
    #[test]
    fn the_index_stays_the_size_of_the_ring() {
        let mut j = JoinBuffer::default();
        for i in 0..200_000i64 {
            j.insert(&format!("p{i}"), pending(i), i, 1_000_000, 1_000);
        }
        assert_eq!(j.len(), 1_000);
        assert!(
            j.index.capacity() < 4 * 1_000,
            "index capacity {} for 1,000 pending",
            j.index.capacity()
        );
        // Expiry by time leaves the same kind of entries.
        for i in 0..50_000i64 {
            j.insert(
                &format!("q{i}"),
                pending(300_000 + i),
                300_000 + i,
                100,
                1_000,
            );
        }
        assert!(j.len() <= 101);
        assert!(j.index.capacity() < 4 * 1_000);
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

    fn early(ts: i64, offset: i64) -> EarlyLabel {
        EarlyLabel {
            ts,
            origin: Origin { input: 1, offset },
            label: Some("1".into()),
            value: None,
        }
    }

    /// Held labels leave by being taken, by age (`ttl` behind the newest time), by count
    /// (oldest first) or by being replaced; every one given up has its origin reported once.
    #[test]
    fn early_queue_is_bounded_by_age_and_count() {
        let mut q = EarlyQueue::<EarlyLabel>::default();
        let mut evicted = Vec::new();
        q.hold("a", early(1_000, 0), 1_000, 500, 3, &mut evicted);
        q.hold("b", early(1_100, 1), 1_100, 500, 3, &mut evicted);
        assert!(evicted.is_empty());
        assert_eq!(q.take("a").map(|l| l.origin.offset), Some(0));
        assert!(q.take("a").is_none());
        // Replaced: the first message's origin is given up.
        q.hold("b", early(1_200, 2), 1_200, 500, 3, &mut evicted);
        assert_eq!(
            evicted,
            vec![Origin {
                input: 1,
                offset: 1
            }]
        );
        evicted.clear();
        // Too old: "b" (1,200) is more than 500 ms behind 1,800.
        q.hold("c", early(1_800, 3), 1_800, 500, 3, &mut evicted);
        assert_eq!(
            evicted,
            vec![Origin {
                input: 1,
                offset: 2
            }]
        );
        assert_eq!(q.len(), 1);
        evicted.clear();
        // Too many: the oldest goes first.
        for (n, id) in ["d", "e", "f"].into_iter().enumerate() {
            q.hold(id, early(1_800, 4 + n as i64), 1_800, 500, 3, &mut evicted);
        }
        assert_eq!(
            evicted,
            vec![Origin {
                input: 1,
                offset: 3
            }]
        );
        assert_eq!(q.len(), 3);
        assert!(q.take("c").is_none());
        assert_eq!(q.take("f").map(|l| l.origin.offset), Some(6));
    }
}
