//! Per-model state: decode → join → windows of panes, and the evaluation and policy calls made
//! when panes close. Synchronous and free of I/O: the Kafka source and `replay` feed it bytes
//! and publish what it returns.

pub mod join;
pub mod pane;
pub mod window;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::baseline::{BuildLimits, FeatureKind, Profile, ProfileBuilder};
use crate::config::Config;
use crate::eval::{self, Evaluation};
use crate::event::{decode_reusing, DecodeError, Event, EventKind, FeatureValue};
use crate::output::{DeadLetter, Output};
use crate::policy::canary::CanaryState;
use crate::policy::{Clock, VersionPolicy};
use crate::stats::concept::{Adwin, Ddm, PageHinkley};
use crate::telemetry::{Counts, Telemetry};
use join::{JoinBuffer, Pending, MAX_JOIN_ATTRIBUTES, NO_GROUP};
use pane::{FeaturePane, Pane};
use window::SlidingWindow;

/// One input message.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The contract its topic carries; `None` to classify by shape (replay files).
    pub kind: Option<EventKind>,
    /// Source topic or file name.
    pub topic: &'a str,
    /// Partition (0 for files).
    pub partition: i32,
    /// Offset (line number for files).
    pub offset: i64,
    /// Message bytes.
    pub payload: &'a [u8],
}

/// Profiles given in configuration, by model and optional version.
#[derive(Debug, Default, Clone)]
pub struct Baselines {
    by_key: HashMap<(String, Option<String>), Arc<Profile>>,
}

impl Baselines {
    /// Loads every configured profile file.
    pub fn load(cfg: &Config) -> Result<Self, crate::baseline::BaselineError> {
        let mut by_key = HashMap::new();
        for f in &cfg.baseline.files {
            let p = Profile::load(&f.path)?;
            by_key.insert((f.model_id.clone(), f.model_version.clone()), Arc::new(p));
        }
        Ok(Self { by_key })
    }

    /// Adds a profile.
    pub fn insert(&mut self, model_id: &str, version: Option<&str>, p: Profile) {
        self.by_key.insert(
            (model_id.to_string(), version.map(str::to_string)),
            Arc::new(p),
        );
    }

    /// Whether a profile is known for exactly this model and version.
    pub fn contains(&self, model_id: &str, version: Option<&str>) -> bool {
        self.by_key
            .contains_key(&(model_id.to_string(), version.map(str::to_string)))
    }

    fn find(&self, model_id: &str, version: &str) -> Option<Arc<Profile>> {
        self.by_key
            .get(&(model_id.to_string(), Some(version.to_string())))
            .or_else(|| self.by_key.get(&(model_id.to_string(), None)))
            .cloned()
    }
}

/// String equality without a library call for short strings (feature, model, version and
/// attribute names are compared once or more per event, and are short): two overlapping
/// words, halves or pairs of bytes cover every length up to 16.
#[inline]
fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
    let pair = |s: &[u8], at: usize| u16::from_le_bytes(s[at..at + 2].try_into().expect("2"));
    match n {
        0 => true,
        1 => a[0] == b[0],
        2..=3 => pair(a, 0) == pair(b, 0) && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Resolves a feature name to its profile index quickly: events usually list features in the
/// same order, so the feature found at the same position last time is checked first, by its
/// name kept beside it, before the hash map.
#[derive(Debug, Clone)]
struct FeatureLookup {
    map: HashMap<String, usize>,
    /// By position in the last event that had one there: the profile index and its name.
    by_position: Vec<Option<(usize, Box<str>)>>,
}

impl FeatureLookup {
    fn new(profile: &Profile) -> Self {
        Self {
            map: profile.feature_index(),
            by_position: Vec::new(),
        }
    }

    #[inline]
    fn find(&mut self, position: usize, name: &str) -> Option<usize> {
        if let Some(Some((i, seen))) = self.by_position.get(position) {
            if same_str(seen, name) {
                return Some(*i);
            }
        }
        self.find_slow(position, name)
    }

    /// [`FeatureLookup::find`] when the position's last name is another: through the map.
    #[cold]
    #[inline(never)]
    fn find_slow(&mut self, position: usize, name: &str) -> Option<usize> {
        let found = self.map.get(name).copied();
        if self.by_position.len() <= position {
            self.by_position.resize(position + 1, None);
        }
        self.by_position[position] = found.map(|i| (i, name.into()));
        found
    }
}

/// Groups of one attribute, bounded by `limits.max_groups` (the rest share `__other__`).
#[derive(Debug, Clone, Default)]
pub struct GroupIndex {
    /// Attribute name.
    pub attribute: String,
    /// Group names by index.
    pub groups: Vec<String>,
    index: HashMap<String, u16, ahash::RandomState>,
}

impl GroupIndex {
    fn get_or_insert(&mut self, group: &str, max: usize, counts: &mut Counts) -> u16 {
        // Most attributes have a handful of groups: comparing names beats hashing one.
        if self.groups.len() <= 8 {
            if let Some(i) = self.groups.iter().position(|g| same_str(g, group)) {
                return i as u16;
            }
        } else if let Some(&i) = self.index.get(group) {
            return i;
        }
        let name = if self.groups.len() + 1 >= max {
            counts.limit("groups");
            crate::stats::OTHER
        } else {
            group
        };
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.groups.len() as u16;
        self.groups.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }
}

/// The concept-drift detectors of one version.
#[derive(Debug, Clone)]
pub struct Detectors {
    /// ADWIN, if configured.
    pub adwin: Option<Adwin>,
    /// DDM, if configured.
    pub ddm: Option<Ddm>,
    /// Page-Hinkley, if configured.
    pub page_hinkley: Option<PageHinkley>,
    /// Errors fed so far.
    pub fed: u64,
    /// Detections since the last evaluation: (detector, error-stream index).
    pub detections: Vec<(&'static str, u64)>,
}

impl Detectors {
    fn new(names: &[String]) -> Self {
        let has = |n: &str| names.iter().any(|d| d == n);
        Self {
            adwin: has("adwin").then(Adwin::default),
            ddm: has("ddm").then(Ddm::default),
            page_hinkley: has("page_hinkley").then(PageHinkley::default),
            fed: 0,
            detections: Vec::new(),
        }
    }

    fn update(&mut self, error: bool) {
        let x = if error { 1.0 } else { 0.0 };
        let i = self.fed;
        self.fed += 1;
        if self.adwin.as_mut().is_some_and(|d| d.update(x)) {
            self.detections.push(("adwin", i));
        }
        if self.ddm.as_mut().is_some_and(|d| d.update(x)) {
            self.detections.push(("ddm", i));
        }
        if self.page_hinkley.as_mut().is_some_and(|d| d.update(x)) {
            self.detections.push(("page_hinkley", i));
        }
    }
}

/// A version's window, once its profile is known.
#[derive(Debug)]
struct Active {
    profile: Arc<Profile>,
    lookup: FeatureLookup,
    window: SlidingWindow<Pane>,
    /// Per-feature mark of the last event that carried it, to count absent features.
    last_seen: Vec<u64>,
}

#[derive(Debug)]
enum Phase {
    /// Collecting the first events into a profile; `pin` is the first offset used, which must
    /// not be committed until the profile exists.
    Bootstrapping {
        builder: Box<ProfileBuilder>,
        pin: Option<i64>,
    },
    Active(Box<Active>),
}

/// State of one model version.
#[derive(Debug)]
struct VersionState {
    version: String,
    /// Order in which versions were first seen (the first is the canary baseline).
    seq: u64,
    phase: Phase,
    detectors: Detectors,
    attributes: Vec<GroupIndex>,
    policy: VersionPolicy,
    events: u64,
    recent: crate::sink::snapshot::RecentEvents,
}

#[derive(Debug, Default)]
struct ModelState {
    model_id: String,
    versions: Vec<VersionState>,
    canary: CanaryState,
}

/// Offsets of one input partition that are still needed to rebuild state.
#[derive(Debug, Default)]
struct OffsetTracker {
    /// Pane index → smallest and largest offset of the events recorded into that pane, sorted
    /// by pane (events mostly arrive in pane order, so an update is almost always at the back).
    by_pane: VecDeque<(i64, (i64, i64))>,
    /// Highest offset handled.
    last: Option<i64>,
}

impl OffsetTracker {
    #[inline]
    fn note(&mut self, pane: Option<i64>, offset: i64) {
        if let Some(p) = pane {
            let slot = match self.by_pane.back() {
                Some(&(last, _)) if last == p => self.by_pane.len() - 1,
                Some(&(last, _)) if last < p => {
                    self.by_pane.push_back((p, (offset, offset)));
                    self.by_pane.len() - 1
                }
                None => {
                    self.by_pane.push_back((p, (offset, offset)));
                    0
                }
                Some(_) => match self.by_pane.binary_search_by_key(&p, |e| e.0) {
                    Ok(i) => i,
                    Err(i) => {
                        self.by_pane.insert(i, (p, (offset, offset)));
                        i
                    }
                },
            };
            let e = &mut self.by_pane[slot].1;
            e.0 = e.0.min(offset);
            e.1 = e.1.max(offset);
        }
        if self.last.is_none_or(|l| offset > l) {
            self.last = Some(offset);
        }
    }

    /// First and last offset of the events recorded into panes `[first, last]`.
    fn range(&self, first: i64, last: i64) -> Option<(i64, i64)> {
        let from = self.by_pane.partition_point(|e| e.0 < first);
        self.by_pane
            .range(from..)
            .take_while(|e| e.0 <= last)
            .map(|(_, r)| *r)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
    }

    /// The next offset to commit, given the oldest pane still needed.
    fn committable(&mut self, oldest_needed: Option<i64>, pin: Option<i64>) -> Option<i64> {
        if let Some(oldest) = oldest_needed {
            while self.by_pane.front().is_some_and(|e| e.0 < oldest) {
                self.by_pane.pop_front();
            }
        }
        let floor = self.by_pane.iter().map(|e| e.1 .0).min();
        let next = match (floor, self.last) {
            (Some(f), _) => Some(f),
            (None, Some(l)) => Some(l + 1),
            (None, None) => None,
        };
        match (next, pin) {
            (Some(n), Some(p)) => Some(n.min(p)),
            (n, _) => n,
        }
    }
}

/// Offset trackers of one partition, one per input kind.
#[derive(Debug, Default)]
struct Offsets([OffsetTracker; 3]);

impl Offsets {
    const KINDS: [EventKind; 3] = [EventKind::Prediction, EventKind::Features, EventKind::Label];

    #[inline]
    fn of(&mut self, kind: EventKind) -> &mut OffsetTracker {
        &mut self.0[kind as usize]
    }

    fn get(&self, kind: EventKind) -> &OffsetTracker {
        &self.0[kind as usize]
    }
}

/// State of one input partition (the same partition number of every input topic).
#[derive(Debug, Default)]
struct PartitionState {
    /// Partition number.
    id: i32,
    max_ts: Option<i64>,
    /// Pane end at or after which the next pane closes; avoids walking models on every event.
    next_close_ms: i64,
    models: Vec<ModelState>,
    model_index: HashMap<String, usize>,
    /// Model of the previous event (events of one model usually come in runs).
    last_model: usize,
    joins: JoinBuffer,
    offsets: Offsets,
    /// Topic (or file) the predictions of this partition come from.
    prediction_source: Option<String>,
}

/// The monitor: all per-partition, per-model state.
pub struct Monitor {
    cfg: Arc<Config>,
    baselines: Baselines,
    /// Partitions in the order they were first seen; few, so found by a scan (the previous
    /// event's first).
    partitions: Vec<PartitionState>,
    last_partition: usize,
    counts: Counts,
    telemetry: Option<Telemetry>,
    clock: Clock,
    version_seq: u64,
    slide_ms: i64,
    lateness_ms: i64,
    ledger: crate::policy::TriggerLedger,
    snapshots: Option<crate::sink::snapshot::SnapshotWriter>,
    /// Whether versions keep their recent events (only snapshots read them).
    keep_recent: bool,
    new_profiles: Vec<Arc<Profile>>,
    /// The lists [`Monitor::process`] decodes into, kept from message to message.
    buffers: crate::event::DecodeBuffers,
}

impl Monitor {
    /// A monitor for `cfg` with the configured `baselines`; `clock` stamps `emitted_at`.
    pub fn new(cfg: Arc<Config>, baselines: Baselines, clock: Clock) -> Self {
        let slide_ms = cfg.window.slide.as_millis() as i64;
        let lateness_ms = cfg.window.allowed_lateness.as_millis() as i64;
        Self {
            cfg,
            baselines,
            partitions: Vec::new(),
            last_partition: 0,
            counts: Counts::default(),
            telemetry: None,
            clock,
            version_seq: 0,
            slide_ms,
            lateness_ms,
            ledger: Default::default(),
            snapshots: None,
            keep_recent: false,
            new_profiles: Vec::new(),
            buffers: Default::default(),
        }
    }

    /// Baselines bootstrapped since the last call, to be made durable (the Kafka service writes
    /// them to the compacted state topic before it commits the offsets of the events they came
    /// from, and reads them back at start-up).
    pub fn take_new_profiles(&mut self) -> Vec<Arc<Profile>> {
        std::mem::take(&mut self.new_profiles)
    }

    /// Writes a Parquet snapshot of the triggering window's events with every trigger.
    pub fn with_snapshots(mut self, writer: crate::sink::snapshot::SnapshotWriter) -> Self {
        self.snapshots = Some(writer);
        self.keep_recent = true;
        self
    }

    /// Exports model metrics to `telemetry` at every evaluation.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Starts from triggers already emitted (read back from the trigger topic at start-up), so
    /// none is emitted twice across restarts.
    pub fn with_ledger(mut self, ledger: crate::policy::TriggerLedger) -> Self {
        self.ledger = ledger;
        self
    }

    /// Counts accumulated since the last flush.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Adds accumulated counts to the metrics.
    pub fn flush_telemetry(&mut self, telemetry: &Telemetry) {
        telemetry.flush_counts(&mut self.counts);
        let versions: usize = self
            .partitions
            .iter()
            .flat_map(|p| p.models.iter())
            .map(|m| m.versions.len())
            .sum();
        telemetry.models.set(versions as i64);
    }

    /// Forgets a partition (revoked): its new owner rebuilds the state from committed offsets.
    pub fn drop_partition(&mut self, partition: i32) {
        self.partitions.retain(|p| p.id != partition);
        self.last_partition = 0;
    }

    /// Index of a partition's state, created on first use.
    #[inline]
    fn partition_index(&mut self, partition: i32) -> usize {
        if self
            .partitions
            .get(self.last_partition)
            .is_some_and(|p| p.id == partition)
        {
            return self.last_partition;
        }
        let i = match self.partitions.iter().position(|p| p.id == partition) {
            Some(i) => i,
            None => {
                self.partitions.push(PartitionState {
                    id: partition,
                    ..Default::default()
                });
                self.partitions.len() - 1
            }
        };
        self.last_partition = i;
        i
    }

    /// Processes one message, appending what it causes to `out`.
    pub fn process(&mut self, input: Input<'_>, out: &mut Vec<Output>) {
        let mut decoded = decode_reusing(
            input.payload,
            input.kind,
            self.cfg.limits.max_event_bytes,
            &mut self.buffers,
        );
        self.process_decoded(input, &decoded, out);
        if let Ok(e) = &mut decoded {
            self.buffers.take_back(e);
        }
    }

    /// The largest message accepted (`limits.max_event_bytes`), for callers that decode.
    pub fn max_event_bytes(&self) -> usize {
        self.cfg.limits.max_event_bytes
    }

    /// Processes one message that the caller already decoded with
    /// `decode(input.payload, input.kind, self.max_event_bytes())` (so decoding can run on
    /// another thread); the same as [`Monitor::process`] otherwise.
    pub fn process_decoded(
        &mut self,
        input: Input<'_>,
        decoded: &Result<Event<'_>, DecodeError>,
        out: &mut Vec<Output>,
    ) {
        let kind_label = input.kind.map(EventKind::as_str).unwrap_or("file");
        let event = match decoded {
            Ok(e) => e,
            Err(err) => {
                self.counts.event(kind_label, "dead_letter");
                *self.counts.dead_letters.entry(err.reason()).or_insert(0) += 1;
                out.push(Output::DeadLetter(DeadLetter {
                    reason: err.reason(),
                    detail: err.to_string(),
                    topic: input.topic.to_string(),
                    partition: input.partition,
                    offset: input.offset,
                    payload: input.payload.to_vec(),
                }));
                let pi = self.partition_index(input.partition);
                let kind = input.kind.unwrap_or(EventKind::Prediction);
                self.partitions[pi]
                    .offsets
                    .of(kind)
                    .note(None, input.offset);
                return;
            }
        };
        let kind = event.kind;
        let pi = self.partition_index(input.partition);
        let outcome = self.apply(pi, event, input);
        self.counts.event(kind.as_str(), outcome);
        self.advance(pi, out);
    }

    /// Closes every pane of every partition (end of a replay file), evaluating what remains.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        for pi in 0..self.partitions.len() {
            let part = &mut self.partitions[pi];
            if let Some(ts) = part.max_ts {
                // Everything up to and including the newest pane closes.
                part.max_ts = Some(ts + self.lateness_ms + self.slide_ms);
                part.next_close_ms = i64::MIN;
            }
            self.advance(pi, out);
        }
    }

    /// Next offset to commit per (input kind, partition): every earlier event is reflected in
    /// outputs already produced, so a restart from there loses nothing.
    pub fn committable(&mut self) -> Vec<((EventKind, i32), i64)> {
        let mut res = Vec::new();
        for part in self.partitions.iter_mut() {
            let p = part.id;
            let oldest = part
                .models
                .iter()
                .flat_map(|m| m.versions.iter())
                .filter_map(|v| match &v.phase {
                    Phase::Active(a) => a.window.oldest_needed_pane(),
                    Phase::Bootstrapping { .. } => None,
                })
                .min();
            let pin = part
                .models
                .iter()
                .flat_map(|m| m.versions.iter())
                .filter_map(|v| match &v.phase {
                    Phase::Bootstrapping { pin, .. } => *pin,
                    Phase::Active(_) => None,
                })
                .min();
            for (kind, tracker) in Offsets::KINDS.into_iter().zip(part.offsets.0.iter_mut()) {
                let pin = if kind == EventKind::Prediction {
                    pin
                } else {
                    None
                };
                if let Some(next) = tracker.committable(oldest, pin) {
                    res.push(((kind, p), next));
                }
            }
        }
        res
    }

    fn apply(&mut self, pi: usize, e: &Event<'_>, input: Input<'_>) -> &'static str {
        let Monitor {
            cfg,
            baselines,
            partitions,
            counts,
            version_seq,
            new_profiles,
            keep_recent,
            ..
        } = self;
        let cfg: &Config = cfg;
        let part = &mut partitions[pi];
        if part.max_ts.is_none_or(|m| e.timestamp_ms > m) {
            part.max_ts = Some(e.timestamp_ms);
        }
        let tracker_pane;
        let outcome = match e.kind {
            EventKind::Prediction => {
                if part.prediction_source.is_none() {
                    part.prediction_source = Some(input.topic.to_string());
                }
                let version = e
                    .model_version
                    .as_deref()
                    .expect("predictions have versions");
                let Some(mi) = model_slot(part, &e.model_id, cfg, counts) else {
                    part.offsets.of(e.kind).note(None, input.offset);
                    return "limit";
                };
                let model = &mut part.models[mi];
                let Some(vi) = version_slot(
                    model,
                    version,
                    cfg,
                    baselines,
                    version_seq,
                    *keep_recent,
                    counts,
                ) else {
                    part.offsets.of(e.kind).note(None, input.offset);
                    return "limit";
                };
                let (outcome, pane, groups) =
                    record_prediction(&mut model.versions[vi], e, input.offset, cfg, counts);
                tracker_pane = pane;
                if outcome == "bootstrapped" {
                    if let Phase::Active(a) = &model.versions[vi].phase {
                        let profile = Arc::clone(&a.profile);
                        new_profiles.push(Arc::clone(&profile));
                        // Versions still bootstrapping share it: a canary is compared against
                        // the same reference as its baseline version.
                        for (i, other) in model.versions.iter_mut().enumerate() {
                            if i != vi
                                && matches!(other.phase, Phase::Bootstrapping { .. })
                                && self
                                    .baselines
                                    .find(&model.model_id, &other.version)
                                    .is_none()
                            {
                                other.phase =
                                    Phase::Active(Box::new(activate(Arc::clone(&profile), cfg)));
                            }
                        }
                    }
                }
                if outcome == "recorded" {
                    model.versions[vi]
                        .recent
                        .push(e.timestamp_ms, input.payload);
                }
                if matches!(outcome, "recorded" | "bootstrap" | "bootstrapped") {
                    let p = e.prediction.as_ref().expect("predictions have a payload");
                    let evicted = part.joins.insert(
                        &e.event_id,
                        Pending {
                            model: mi as u32,
                            version: vi as u16,
                            ts: e.timestamp_ms,
                            score: p.score.or(p.value).unwrap_or(f64::NAN),
                            label_hash: p.label.as_deref().map(join::hash_str),
                            positive: predicted_positive(p),
                            groups,
                            features_pending: e.features.is_empty(),
                        },
                        e.timestamp_ms,
                        cfg.limits.join_ttl.as_millis() as i64,
                        cfg.limits.max_pending_joins,
                    );
                    counts.join_expired += evicted;
                    if e.features.is_empty() {
                        if let Some(early) = part.joins.take_early(&e.event_id) {
                            let borrowed: Vec<_> = early
                                .features
                                .iter()
                                .map(|(k, v)| {
                                    (std::borrow::Cow::Borrowed(k.as_str()), v.as_value())
                                })
                                .collect();
                            part.joins.take_features_slot(&e.event_id);
                            record_late_features(
                                &mut part.models[mi].versions[vi],
                                e.timestamp_ms,
                                &borrowed,
                                counts,
                            );
                        }
                    }
                }
                outcome
            }
            EventKind::Label => {
                let (outcome, pane) = apply_label(part, e, counts);
                tracker_pane = pane;
                outcome
            }
            EventKind::Features => {
                let (outcome, pane) = apply_features(part, e, cfg, counts);
                tracker_pane = pane;
                outcome
            }
        };
        part.offsets.of(e.kind).note(tracker_pane, input.offset);
        outcome
    }

    fn advance(&mut self, pi: usize, out: &mut Vec<Output>) {
        let Some(part) = self.partitions.get_mut(pi) else {
            return;
        };
        let partition = part.id;
        let Some(max_ts) = part.max_ts else { return };
        let watermark = max_ts.saturating_sub(self.lateness_ms);
        if watermark < part.next_close_ms {
            return;
        }
        part.next_close_ms = (watermark.div_euclid(self.slide_ms) + 1) * self.slide_ms;
        let cfg = &self.cfg;
        let slide_ms = self.slide_ms;
        let PartitionState {
            models,
            offsets,
            prediction_source,
            ..
        } = part;
        for model in models.iter_mut() {
            let mut evaluations: Vec<(usize, Evaluation)> = Vec::new();
            for (vi, v) in model.versions.iter_mut().enumerate() {
                let Phase::Active(active) = &mut v.phase else {
                    continue;
                };
                let profile = Arc::clone(&active.profile);
                let attributes = &v.attributes;
                let learned = v.policy.learned_accuracy;
                let detections = std::mem::take(&mut v.detectors.detections);
                let mut detections = Some(detections);
                active.window.close_until(watermark, |bounds, agg| {
                    // Statistics of a window that started before the baseline existed would
                    // compare a fraction of the traffic; wait for the first full window.
                    if !bounds.full {
                        return;
                    }
                    let started = std::time::Instant::now();
                    let ev = eval::evaluate(
                        cfg,
                        &model.model_id,
                        &v.version,
                        &profile,
                        agg,
                        bounds,
                        attributes,
                        detections.take().unwrap_or_default(),
                        learned,
                    );
                    if let Some(t) = &self.telemetry {
                        t.eval_seconds.observe(started.elapsed().as_secs_f64());
                        eval::export(t, &ev);
                    }
                    evaluations.push((vi, ev));
                });
                if let Some(d) = detections {
                    v.detectors.detections = d;
                }
            }
            for (vi, ev) in &evaluations {
                let v = &mut model.versions[*vi];
                let Some(idx) = v.policy.apply(cfg, ev, &self.clock, &mut self.ledger, out) else {
                    continue;
                };
                let (Some(writer), Phase::Active(a), Some(Output::Trigger(t))) =
                    (&self.snapshots, &v.phase, out.get_mut(idx))
                else {
                    continue;
                };
                let events = v.recent.between(ev.bounds.start_ms, ev.bounds.end_ms);
                let snapshot = match writer.write(
                    &model.model_id,
                    &v.version,
                    &t.trigger_id,
                    &a.profile,
                    events,
                ) {
                    Ok((path, rows)) => serde_json::json!({
                        "format": "parquet",
                        "path": path.display().to_string(),
                        "events": rows,
                        "note": "the most recent events of the window, at most triggers.snapshot_events",
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "snapshot not written");
                        serde_json::json!({"error": e.to_string()})
                    }
                };
                t.evidence["snapshot"] = snapshot;
                // The input the trigger covers: offsets of the predictions in its window.
                let panes = (
                    ev.bounds.start_ms.div_euclid(slide_ms),
                    (ev.bounds.end_ms - 1).div_euclid(slide_ms),
                );
                if let Some((from, to)) = offsets.get(EventKind::Prediction).range(panes.0, panes.1)
                {
                    t.evidence["input"] = serde_json::json!({
                        "topic": prediction_source.as_deref().unwrap_or(&cfg.topics.predictions),
                        "partition": partition,
                        "from_offset": from,
                        "to_offset": to,
                    });
                }
            }
            crate::policy::canary::compare_versions(
                cfg,
                &mut model.canary,
                &model.model_id,
                &model
                    .versions
                    .iter()
                    .map(|v| (v.version.as_str(), v.seq))
                    .collect::<Vec<_>>(),
                &evaluations,
                &self.clock,
                out,
            );
        }
    }
}

fn model_slot(
    part: &mut PartitionState,
    model_id: &str,
    cfg: &Config,
    counts: &mut Counts,
) -> Option<usize> {
    if part
        .models
        .get(part.last_model)
        .is_some_and(|m| same_str(&m.model_id, model_id))
    {
        return Some(part.last_model);
    }
    if let Some(&i) = part.model_index.get(model_id) {
        part.last_model = i;
        return Some(i);
    }
    if part.models.len() >= cfg.limits.max_models {
        counts.limit("models");
        return None;
    }
    let i = part.models.len();
    part.models.push(ModelState {
        model_id: model_id.to_string(),
        ..Default::default()
    });
    part.model_index.insert(model_id.to_string(), i);
    part.last_model = i;
    Some(i)
}

fn version_slot(
    model: &mut ModelState,
    version: &str,
    cfg: &Config,
    baselines: &Baselines,
    seq: &mut u64,
    keep_recent: bool,
    counts: &mut Counts,
) -> Option<usize> {
    if let Some(i) = model
        .versions
        .iter()
        .position(|v| same_str(&v.version, version))
    {
        return Some(i);
    }
    if model.versions.len() >= cfg.limits.max_versions_per_model {
        counts.limit("versions");
        return None;
    }
    // A configured profile wins; otherwise a new version of a known model shares the profile of
    // the model's first active version (same inputs), and only the first version bootstraps.
    let shared = model.versions.iter().find_map(|v| match &v.phase {
        Phase::Active(a) => Some(Arc::clone(&a.profile)),
        Phase::Bootstrapping { .. } => None,
    });
    let phase = match baselines.find(&model.model_id, version).or(shared) {
        Some(p) => Phase::Active(Box::new(activate(p, cfg))),
        None => Phase::Bootstrapping {
            builder: Box::new(ProfileBuilder::new(
                &model.model_id,
                Some(version),
                "bootstrap",
                BuildLimits {
                    max_features: cfg.limits.max_features,
                    max_categories: cfg.limits.max_categories,
                },
            )),
            pin: None,
        },
    };
    *seq += 1;
    model.versions.push(VersionState {
        version: version.to_string(),
        seq: *seq,
        phase,
        detectors: Detectors::new(&cfg.concept.detectors),
        attributes: Vec::new(),
        policy: VersionPolicy::new(&model.model_id, version),
        events: 0,
        // Only a trigger's snapshot reads the recent events: none are kept without snapshots or
        // when the model's triggers are disabled.
        recent: crate::sink::snapshot::RecentEvents::new(
            {
                let t = cfg.triggers_for(&model.model_id);
                if keep_recent && t.enabled {
                    t.snapshot_events
                } else {
                    0
                }
            },
            cfg.triggers_for(&model.model_id).snapshot_max_bytes,
        ),
    });
    Some(model.versions.len() - 1)
}

fn activate(profile: Arc<Profile>, cfg: &Config) -> Active {
    let empty = Pane::new(&profile);
    Active {
        lookup: FeatureLookup::new(&profile),
        window: SlidingWindow::new(
            cfg.window.slide.as_millis() as i64,
            cfg.window.panes(),
            empty,
        ),
        last_seen: vec![u64::MAX; profile.features.len()],
        profile,
    }
}

fn predicted_positive(p: &crate::event::Prediction<'_>) -> Option<bool> {
    match p.label.as_deref() {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        Some(_) => None,
        None => p.score.map(|s| s >= 0.5),
    }
}

/// Group indices of one prediction: (attribute index, group index) pairs, unused slots
/// [`NO_GROUP`].
type Groups = [(u16, u16); MAX_JOIN_ATTRIBUTES];

/// Records a prediction; returns the outcome label, the pane index it went into and the
/// prediction's group indices (resolved once, for the pane and for the label join).
fn record_prediction(
    v: &mut VersionState,
    e: &Event<'_>,
    offset: i64,
    cfg: &Config,
    counts: &mut Counts,
) -> (&'static str, Option<i64>, Groups) {
    v.events += 1;
    // Attributes are indexed whatever the phase, so joins can carry group indices.
    let wanted = &cfg.fairness.attributes;
    let mut groups = [NO_GROUP; MAX_JOIN_ATTRIBUTES];
    let mut slots = groups.iter_mut();
    for (attr, group) in &e.attributes {
        if !wanted.is_empty() && !wanted.iter().any(|w| same_str(w, attr)) {
            continue;
        }
        let ai = match v
            .attributes
            .iter()
            .position(|a| same_str(&a.attribute, attr))
        {
            Some(i) => i,
            None => {
                if v.attributes.len() >= MAX_JOIN_ATTRIBUTES {
                    counts.limit("attributes");
                    continue;
                }
                v.attributes.push(GroupIndex {
                    attribute: attr.to_string(),
                    ..Default::default()
                });
                v.attributes.len() - 1
            }
        };
        let gi = v.attributes[ai].get_or_insert(group, cfg.limits.max_groups, counts);
        if let Some(slot) = slots.next() {
            *slot = (ai as u16, gi);
        }
    }
    match &mut v.phase {
        Phase::Bootstrapping { builder, pin } => {
            builder.push_event(e);
            if pin.is_none() {
                *pin = Some(offset);
            }
            if builder.rows() as usize >= cfg.baseline.bootstrap_events {
                let b = std::mem::replace(
                    builder,
                    Box::new(ProfileBuilder::new("", None, "", BuildLimits::default())),
                );
                match b.finish() {
                    Ok(profile) => {
                        tracing::info!(
                            model_id = %e.model_id,
                            version = %v.version,
                            profile = %profile.id,
                            "baseline bootstrapped"
                        );
                        v.phase = Phase::Active(Box::new(activate(Arc::new(profile), cfg)));
                        return ("bootstrapped", None, groups);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "baseline bootstrap failed; collecting again");
                    }
                }
            }
            ("bootstrap", None, groups)
        }
        Phase::Active(a) => {
            let idx = a.window.pane_of(e.timestamp_ms);
            let mark = v.events;
            let Some(pane) = a.window.pane_mut(e.timestamp_ms) else {
                counts.late += 1;
                return ("late", None, groups);
            };
            record_into_pane(
                pane,
                &a.profile,
                &mut a.lookup,
                &mut a.last_seen,
                mark,
                e,
                counts,
            );
            if let Some(p) = &e.prediction {
                let positive = predicted_positive(p);
                for &(ai, gi) in groups.iter().filter(|g| **g != NO_GROUP) {
                    let sel = &mut pane.attribute_mut(ai as usize).selection;
                    if sel.len() <= gi as usize {
                        sel.resize(gi as usize + 1, Default::default());
                    }
                    sel[gi as usize].n += 1;
                    sel[gi as usize].positive += u64::from(positive == Some(true));
                }
            }
            ("recorded", Some(idx), groups)
        }
    }
}

/// Records features, prediction and latency of one event into a pane.
fn record_into_pane(
    pane: &mut Pane,
    profile: &Profile,
    lookup: &mut FeatureLookup,
    last_seen: &mut [u64],
    mark: u64,
    e: &Event<'_>,
    counts: &mut Counts,
) {
    pane.events += 1;
    record_features(pane, profile, lookup, last_seen, mark, &e.features, counts);
    if let Some(p) = &e.prediction {
        if let (Some(FeaturePane::Numeric(np)), Some(fp)) =
            (&mut pane.prediction, &profile.prediction)
        {
            if let (FeatureKind::Numeric(prof), Some(x)) = (&fp.kind, p.score.or(p.value)) {
                np.record(prof, x);
            }
        }
        if let (Some(FeaturePane::Categorical(cp)), Some(fp)) =
            (&mut pane.predicted_label, &profile.predicted_label)
        {
            if let (FeatureKind::Categorical(prof), Some(l)) = (&fp.kind, p.label.as_deref()) {
                cp.record(prof, l);
            }
        }
    }
    if let Some(l) = e.latency_ms {
        pane.latency.record(l);
    }
}

fn record_features(
    pane: &mut Pane,
    profile: &Profile,
    lookup: &mut FeatureLookup,
    last_seen: &mut [u64],
    mark: u64,
    features: &[(std::borrow::Cow<'_, str>, FeatureValue<'_>)],
    counts: &mut Counts,
) {
    if features.is_empty() {
        return;
    }
    let n = profile.features.len();
    let (kinds, panes, quality) = (
        &profile.features[..n],
        &mut pane.features[..n],
        &mut pane.quality[..n],
    );
    let last_seen = &mut last_seen[..n];
    // Features of the profile seen in this event (each once however often it is repeated).
    let mut distinct = 0;
    for (pos, (name, value)) in features.iter().enumerate() {
        let Some(i) = lookup.find(pos, name) else {
            pane.unknown_features += 1;
            continue;
        };
        distinct += usize::from(last_seen[i] != mark);
        last_seen[i] = mark;
        let q = &mut quality[i];
        q.seen += 1;
        if let (FeatureValue::Number(x), FeatureKind::Numeric(prof), FeaturePane::Numeric(np)) =
            (value, &kinds[i].kind, &mut panes[i])
        {
            let (lo, hi) = prof.reference_range();
            q.out_of_range += u64::from(*x < lo || *x > hi);
            np.record(prof, *x);
        } else {
            record_other_value(&kinds[i].kind, &mut panes[i], value, q);
        }
    }
    // Features of the profile that this event did not carry at all count as missing.
    if distinct < n {
        for (seen, q) in last_seen.iter_mut().zip(quality.iter_mut()) {
            if *seen != mark {
                q.seen += 1;
                q.missing += 1;
            }
        }
    }
    let _ = counts;
}

/// Records a value other than a number of a numerical feature (that common case is recorded
/// inline, and kept apart so that the loop around it keeps its registers): categories, missing
/// values and values of the wrong type.
#[cold]
#[inline(never)]
fn record_other_value(
    kind: &FeatureKind,
    pane: &mut FeaturePane,
    value: &FeatureValue<'_>,
    q: &mut pane::QualityCounts,
) {
    match (kind, pane, value) {
        (FeatureKind::Categorical(prof), FeaturePane::Categorical(cp), FeatureValue::Text(s)) => {
            if !cp.record(prof, s) {
                q.unseen += 1;
            }
        }
        (_, _, FeatureValue::Null) => q.missing += 1,
        _ => q.type_mismatch += 1,
    }
}

fn apply_label(
    part: &mut PartitionState,
    e: &Event<'_>,
    counts: &mut Counts,
) -> (&'static str, Option<i64>) {
    let Some(p) = part.joins.take_for_label(&e.event_id) else {
        counts.join_misses += 1;
        return ("unjoined", None);
    };
    let Some(model) = part.models.get_mut(p.model as usize) else {
        counts.join_misses += 1;
        return ("unjoined", None);
    };
    let Some(v) = model.versions.get_mut(p.version as usize) else {
        counts.join_misses += 1;
        return ("unjoined", None);
    };
    let truth_positive = match e.label.as_deref() {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        _ => None,
    };
    let error = match (e.label.as_deref(), p.label_hash, e.value) {
        (Some(l), Some(h), _) => Some(join::hash_str(l) != h),
        _ => None,
    };
    if let Some(err) = error {
        v.detectors.update(err);
    }
    let Phase::Active(a) = &mut v.phase else {
        return ("joined_bootstrap", None);
    };
    let idx = a.window.pane_of(e.timestamp_ms);
    let Some(pane) = a.window.pane_mut(e.timestamp_ms) else {
        counts.late += 1;
        return ("late", None);
    };
    if let (Some(t), Some(pp)) = (truth_positive, p.positive) {
        let score = if p.score.is_finite() {
            p.score
        } else if pp {
            1.0
        } else {
            0.0
        };
        pane.binary.record(t, pp, score);
        for (ai, gi) in p.groups.iter().copied().filter(|g| *g != NO_GROUP) {
            if let Some(attr) = v.attributes.get(ai as usize) {
                if let Some(g) = attr.groups.get(gi as usize) {
                    pane.attribute_mut(ai as usize).labelled.record(g, t, pp);
                }
            }
        }
    } else if let (Some(y), true) = (e.value, p.score.is_finite()) {
        pane.regression.record(y, p.score);
    }
    ("joined", Some(idx))
}

fn apply_features(
    part: &mut PartitionState,
    e: &Event<'_>,
    cfg: &Config,
    counts: &mut Counts,
) -> (&'static str, Option<i64>) {
    let Some(p) = part.joins.take_features_slot(&e.event_id) else {
        // The prediction has not arrived yet (or never will): hold the features, bounded.
        let early = join::EarlyFeatures {
            ts: e.timestamp_ms,
            features: e
                .features
                .iter()
                .map(|(k, v)| {
                    let owned = match v {
                        FeatureValue::Number(x) => join::OwnedValue::Number(*x),
                        FeatureValue::Text(t) => join::OwnedValue::Text(t.to_string()),
                        FeatureValue::Null => join::OwnedValue::Null,
                    };
                    (k.to_string(), owned)
                })
                .collect(),
        };
        counts.join_expired += part.joins.hold_early(
            &e.event_id,
            early,
            e.timestamp_ms,
            cfg.limits.join_ttl.as_millis() as i64,
            (cfg.limits.max_pending_joins / 4).max(1),
        );
        return ("held", None);
    };
    let Some(v) = part
        .models
        .get_mut(p.model as usize)
        .and_then(|m| m.versions.get_mut(p.version as usize))
    else {
        counts.join_misses += 1;
        return ("unjoined", None);
    };
    record_late_features(v, p.ts, &e.features, counts)
}

/// Records features that arrived separately from their prediction (made at `ts`).
fn record_late_features(
    v: &mut VersionState,
    ts: i64,
    features: &[(std::borrow::Cow<'_, str>, FeatureValue<'_>)],
    counts: &mut Counts,
) -> (&'static str, Option<i64>) {
    match &mut v.phase {
        Phase::Bootstrapping { builder, .. } => {
            for (name, value) in features {
                builder.push_feature(name, value);
            }
            ("joined_bootstrap", None)
        }
        Phase::Active(a) => {
            let idx = a.window.pane_of(ts);
            v.events += 1;
            let mark = v.events;
            let Some(pane) = a.window.pane_mut(ts) else {
                counts.late += 1;
                return ("late", None);
            };
            record_features(
                pane,
                &a.profile,
                &mut a.lookup,
                &mut a.last_seen,
                mark,
                features,
                counts,
            );
            ("joined", Some(idx))
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The word-at-a-time comparison answers as `==` does, at every length, for strings that
    /// differ anywhere (a small alphabet makes near misses common).
    #[test]
    fn same_str_agrees_with_eq() {
        let mut rng = SmallRng::seed_from_u64(19);
        let mut equal = 0;
        for _ in 0..200_000 {
            let n = rng.random_range(0..24);
            let a: String = (0..n)
                .map(|_| ['a', 'b', 'é'][rng.random_range(0..3)])
                .collect();
            let mut b = a.clone();
            if rng.random_bool(0.5) && !b.is_empty() {
                let mut chars: Vec<char> = b.chars().collect();
                let k = rng.random_range(0..chars.len());
                chars[k] = ['a', 'b', 'é'][rng.random_range(0..3)];
                b = chars.into_iter().collect();
            }
            if rng.random_bool(0.1) {
                b.push('a');
            }
            equal += usize::from(a == b);
            assert_eq!(same_str(&a, &b), a == b, "{a:?} {b:?}");
        }
        assert!(equal > 10_000 && equal < 190_000, "{equal} equal pairs");
    }
}
