//! One model and its versions: the baseline phase, the window, and recording events into it.

use std::sync::Arc;

use crate::baseline::{BuildLimits, FeatureKind, Profile, ProfileBuilder};
use crate::config::Config;
use crate::event::{Event, FeatureValue};
use crate::policy::canary::CanaryState;
use crate::policy::VersionPolicy;
use crate::state::join::{hash_str, Origin, Pending, MAX_JOIN_ATTRIBUTES, NO_GROUP};
use crate::state::pane::{self, FeaturePane, Pane};
use crate::state::window::SlidingWindow;
use crate::state::{same_str, Baselines, Detectors, FeatureLookup, GroupIndex};
use crate::telemetry::{Counts, Outcome};

/// A version's window, once its profile is known.
#[derive(Debug)]
pub(super) struct Active {
    pub(super) profile: Arc<Profile>,
    pub(super) lookup: FeatureLookup,
    pub(super) window: SlidingWindow<Pane>,
    /// Per-feature mark of the last event that carried it, to count absent features.
    pub(super) last_seen: Vec<u64>,
    /// Start of the first pane: a bootstrapped baseline's window starts with the pane after
    /// the last bootstrap event, so that it covers the same events whatever order the inputs
    /// were read in; events before it count as bootstrap events.
    pub(super) starts_ms: i64,
}

#[derive(Debug)]
pub(super) enum Phase {
    /// Collecting the first events into a profile; `pins` holds the first offset used of each
    /// input (by the monitor's input index), which must not be committed until the profile
    /// exists.
    Bootstrapping {
        builder: Box<ProfileBuilder>,
        pins: Vec<(u32, i64)>,
    },
    Active(Box<Active>),
}

/// A prediction of a version still bootstrapping, waiting for the model's watermark: the
/// baseline is made of the version's first events in event time, not in arrival order, so that
/// it is the same however the inputs were interleaved.
#[derive(Debug)]
pub(super) struct Waiting {
    pub(super) ts: i64,
    /// Arrival number (ties in time keep arrival order).
    pub(super) seq: u64,
    pub(super) origin: Origin,
    pub(super) payload: Vec<u8>,
}

impl PartialEq for Waiting {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiting {
    /// Reversed, so that a `BinaryHeap` pops the earliest first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.ts, o.seq).cmp(&(self.ts, self.seq))
    }
}

/// State of one model version.
#[derive(Debug)]
pub(super) struct VersionState {
    pub(super) version: String,
    /// Order in which versions were first seen (the first is the canary baseline).
    pub(super) seq: u64,
    pub(super) phase: Phase,
    pub(super) detectors: Detectors,
    pub(super) attributes: Vec<GroupIndex>,
    pub(super) policy: VersionPolicy,
    pub(super) events: u64,
    pub(super) recent: crate::sink::snapshot::RecentEvents,
    /// Predictions that arrived while bootstrapping, earliest first.
    pub(super) waiting: std::collections::BinaryHeap<Waiting>,
    /// End of the last window whose evaluation the policy has seen.
    pub(super) evaluated_through_ms: i64,
    /// Windows ending at or before this were evaluated by an earlier run whose policy state
    /// this version carries on from (restored from a checkpoint): not evaluated again.
    pub(super) skip_through_ms: i64,
    /// Event time of its newest prediction: how recently it was active.
    pub(super) last_ts: i64,
}

/// State of one model: its versions, their canary comparison, and the inputs that feed it.
#[derive(Debug, Default)]
pub(super) struct ModelState {
    pub(super) model_id: String,
    pub(super) versions: Vec<VersionState>,
    pub(super) canary: CanaryState,
    /// Monitor input indices that have carried events of this model: its watermark is the
    /// minimum of their clocks.
    pub(super) feeders: Vec<u32>,
    /// Whether the arrival-order feeding of its bootstrap was logged.
    pub(super) overflow_warned: bool,
    /// The pane end that the model's watermark must reach before anything closes.
    pub(super) next_close_ms: i64,
    /// Windows were evaluated since the last policy checkpoint.
    pub(super) checkpoint_due: bool,
}

impl ModelState {
    /// Notes that input `input` carries events of this model.
    #[inline]
    pub(super) fn fed_by(&mut self, input: u32) {
        if self.feeders.last() != Some(&input) && !self.feeders.contains(&input) {
            self.feeders.push(input);
        }
    }

    /// Index of a version.
    pub(super) fn version_index(&self, version: &str) -> Option<usize> {
        self.versions
            .iter()
            .position(|v| same_str(&v.version, version))
    }

    /// Whether it has a baseline (bootstrapped or configured): only then does it hold one of
    /// the `limits.max_models` slots.
    pub(super) fn established(&self) -> bool {
        self.versions
            .iter()
            .any(|v| matches!(v.phase, Phase::Active(_)))
    }

    /// Predictions its versions have had (waiting for the watermark included).
    pub(super) fn bootstrap_events(&self) -> u64 {
        self.versions
            .iter()
            .map(|v| v.events + v.waiting.len() as u64)
            .sum()
    }

    /// Event time of its newest prediction.
    pub(super) fn last_ts(&self) -> i64 {
        self.versions
            .iter()
            .map(|v| v.last_ts)
            .max()
            .unwrap_or(i64::MIN)
    }

    /// The version a new one replaces when the model has `limits.max_versions_per_model`: of
    /// those without predictions since `idle_before`, the least recently active among those
    /// that have not yet recorded `settled` predictions (one-off version names), else the least
    /// recently active. `None` when every version is active (the new one waits).
    pub(super) fn version_to_replace(&self, settled: u64, idle_before: i64) -> Option<usize> {
        self.versions
            .iter()
            .enumerate()
            .filter(|(_, v)| v.last_ts <= idle_before)
            .min_by_key(|(_, v)| (v.events >= settled, v.last_ts, v.seq))
            .map(|(i, _)| i)
    }

    /// A version idle since before `idle_before`, other than the most recently active one.
    pub(super) fn idle_version(&self, idle_before: i64) -> Option<usize> {
        let newest = self.last_ts();
        self.versions
            .iter()
            .position(|v| v.last_ts < idle_before && v.last_ts < newest)
    }

    /// The oldest pane any version still needs, and the bootstrap pins.
    pub(super) fn oldest_needed_pane(&self) -> Option<i64> {
        self.versions
            .iter()
            .filter_map(|v| match &v.phase {
                Phase::Active(a) => a.window.oldest_needed_pane(),
                Phase::Bootstrapping { .. } => None,
            })
            .min()
    }
}

/// A label, as its join needs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct LabelRef<'a> {
    /// Event time of the label.
    pub(super) ts: i64,
    /// The class label, if any.
    pub(super) label: Option<&'a str>,
    /// The regression target, if any.
    pub(super) value: Option<f64>,
}

/// Records a label joined to its prediction `p` into the version: the concept detectors and,
/// when the version has a window, the pane of the label's time. Returns the outcome and pane.
pub(super) fn record_label(
    v: &mut VersionState,
    p: &Pending,
    l: LabelRef<'_>,
    counts: &mut Counts,
) -> (Outcome, Option<i64>) {
    let truth_positive = match l.label {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        _ => None,
    };
    let error = match (l.label, p.label_hash) {
        (Some(label), Some(h)) => Some(hash_str(label) != h),
        _ => None,
    };
    if let Some(err) = error {
        v.detectors.update(err);
    }
    let Phase::Active(a) = &mut v.phase else {
        return (Outcome::JoinedBootstrap, None);
    };
    if l.ts < a.starts_ms {
        return (Outcome::JoinedBootstrap, None);
    }
    let idx = a.window.pane_of(l.ts);
    let Some(pane) = a.window.pane_mut(l.ts) else {
        counts.late += 1;
        return (Outcome::Late, None);
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
    } else if let (Some(y), true) = (l.value, p.score.is_finite()) {
        pane.regression.record(y, p.score);
    }
    (Outcome::Joined, Some(idx))
}

/// Index of `version` in the model, created when new (the caller makes room first: see
/// [`ModelState::version_to_replace`]).
pub(super) fn version_slot(
    model: &mut ModelState,
    version: &str,
    cfg: &Config,
    baselines: &Baselines,
    seq: &mut u64,
    keep_recent: bool,
) -> usize {
    if let Some(i) = model.version_index(version) {
        return i;
    }
    // A configured profile wins; otherwise a new version of a known model shares the profile of
    // the model's first active version (same inputs), and only the first version bootstraps.
    let shared = model.versions.iter().find_map(|v| match &v.phase {
        Phase::Active(a) => Some((Arc::clone(&a.profile), a.starts_ms)),
        Phase::Bootstrapping { .. } => None,
    });
    let known = baselines
        .find(&model.model_id, version)
        .map(|p| (p, baselines.window_starts(&model.model_id, version)));
    let phase = match known.or(shared) {
        Some((p, starts)) => Phase::Active(Box::new(activate(p, cfg, starts))),
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
            pins: Vec::new(),
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
        waiting: Default::default(),
        evaluated_through_ms: i64::MIN,
        skip_through_ms: i64::MIN,
        last_ts: i64::MIN,
        // Only a trigger's snapshot reads the recent events: none are kept without snapshots or
        // when the model's triggers are disabled.
        recent: {
            let t = cfg.triggers_for(&model.model_id);
            let events = if keep_recent && t.enabled {
                t.snapshot_events
            } else {
                0
            };
            crate::sink::snapshot::RecentEvents::new(events, t.snapshot_max_bytes)
        },
    });
    model.versions.len() - 1
}

/// Start of the first window of a baseline bootstrapped from events up to `ts`: the pane
/// after the last bootstrap event.
pub(super) fn window_start_after(ts: i64, cfg: &Config) -> i64 {
    let slide_ms = cfg.window.slide.as_millis() as i64;
    (ts.div_euclid(slide_ms) + 1).saturating_mul(slide_ms)
}

/// A version's window against `profile`, starting at `starts_ms` (`i64::MIN`: at the first
/// event).
pub(super) fn activate(profile: Arc<Profile>, cfg: &Config, starts_ms: i64) -> Active {
    let empty = Pane::new(&profile);
    Active {
        starts_ms,
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

pub(super) fn predicted_positive(p: &crate::event::Prediction<'_>) -> Option<bool> {
    match p.label.as_deref() {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        Some(_) => None,
        None => p.score.map(|s| s >= 0.5),
    }
}

/// Group indices of one prediction: (attribute index, group index) pairs, unused slots
/// [`NO_GROUP`].
pub(super) type Groups = [(u16, u16); MAX_JOIN_ATTRIBUTES];

/// Records a prediction; returns the outcome label, the pane index it went into and the
/// prediction's group indices (resolved once, for the pane and for the label join).
pub(super) fn record_prediction(
    v: &mut VersionState,
    e: &Event<'_>,
    origin: Origin,
    from_waiting: bool,
    cfg: &Config,
    counts: &mut Counts,
) -> (Outcome, Option<i64>, Groups) {
    if !from_waiting && matches!(v.phase, Phase::Bootstrapping { .. }) {
        // The caller keeps it in `waiting` until the model's watermark passes it.
        return (Outcome::Waiting, None, [NO_GROUP; MAX_JOIN_ATTRIBUTES]);
    }
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
                    counts.limit_for(
                        "attributes",
                        1,
                        format_args!("{}/{} {attr}", e.model_id, v.version),
                    );
                    continue;
                }
                v.attributes.push(GroupIndex::new(attr));
                v.attributes.len() - 1
            }
        };
        let gi = v.attributes[ai].get_or_insert(group, cfg.limits.max_groups, counts);
        if let Some(slot) = slots.next() {
            *slot = (ai as u16, gi);
        }
    }
    match &mut v.phase {
        Phase::Bootstrapping { builder, pins } => {
            builder.push_event(e);
            if !pins.iter().any(|&(i, _)| i == origin.input) {
                pins.push((origin.input, origin.offset));
            }
            if builder.rows() as usize >= cfg.baseline.bootstrap_events {
                let b = std::mem::replace(
                    builder,
                    Box::new(ProfileBuilder::new("", None, "", BuildLimits::default())),
                );
                if b.dropped_features() > 0 {
                    counts.limit_for(
                        "features",
                        b.dropped_features(),
                        format_args!("{}/{}", e.model_id, v.version),
                    );
                }
                match b.finish() {
                    Ok(profile) => {
                        let starts_ms = window_start_after(e.timestamp_ms, cfg);
                        tracing::info!(
                            model_id = %e.model_id,
                            version = %v.version,
                            profile = %profile.id,
                            window_starts = %crate::event::format_rfc3339_ms(starts_ms),
                            "baseline bootstrapped"
                        );
                        v.phase =
                            Phase::Active(Box::new(activate(Arc::new(profile), cfg, starts_ms)));
                        return (Outcome::Bootstrapped, None, groups);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "baseline bootstrap failed; collecting again");
                    }
                }
            }
            (Outcome::Bootstrap, None, groups)
        }
        Phase::Active(a) if e.timestamp_ms < a.starts_ms => (Outcome::Bootstrap, None, groups),
        Phase::Active(a) => {
            let idx = a.window.pane_of(e.timestamp_ms);
            let mark = v.events;
            let Some(pane) = a.window.pane_mut(e.timestamp_ms) else {
                counts.late += 1;
                return (Outcome::Late, None, groups);
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
            (Outcome::Recorded, Some(idx), groups)
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

pub(super) fn record_features(
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

/// Records features that arrived separately from their prediction (made at `ts`).
pub(super) fn record_late_features(
    v: &mut VersionState,
    ts: i64,
    features: &[(std::borrow::Cow<'_, str>, FeatureValue<'_>)],
    counts: &mut Counts,
) -> (Outcome, Option<i64>) {
    match &mut v.phase {
        Phase::Bootstrapping { builder, .. } => {
            for (name, value) in features {
                builder.push_feature(name, value);
            }
            (Outcome::JoinedBootstrap, None)
        }
        Phase::Active(a) if ts < a.starts_ms => (Outcome::JoinedBootstrap, None),
        Phase::Active(a) => {
            let idx = a.window.pane_of(ts);
            v.events += 1;
            let mark = v.events;
            let Some(pane) = a.window.pane_mut(ts) else {
                counts.late += 1;
                return (Outcome::Late, None);
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
            (Outcome::Joined, Some(idx))
        }
    }
}
