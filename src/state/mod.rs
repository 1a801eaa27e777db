//! The monitor's data structures: windows of panes and what is recorded into them, the join of
//! labels and features to their predictions, input clocks and the offsets still needed.
//! Synchronous and free of I/O; [`crate::monitor`] drives them.

pub mod clock;
pub mod join;
pub mod offsets;
pub mod pane;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;

use crate::baseline::Profile;
use crate::config::Config;
use crate::event::EventKind;
use crate::stats::concept::{Adwin, Ddm, PageHinkley};
use crate::telemetry::Counts;

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
    /// Start of the first window of bootstrapped baselines (see [`Baselines::window_starts`]).
    starts: HashMap<(String, Option<String>), i64>,
}

impl Baselines {
    /// Loads every configured profile file.
    pub fn load(cfg: &Config) -> Result<Self, crate::baseline::BaselineError> {
        let mut by_key = HashMap::new();
        for f in &cfg.baseline.files {
            let p = Profile::load(&f.path)?;
            by_key.insert((f.model_id.clone(), f.model_version.clone()), Arc::new(p));
        }
        Ok(Self {
            by_key,
            starts: HashMap::new(),
        })
    }

    /// Adds a profile.
    pub fn insert(&mut self, model_id: &str, version: Option<&str>, p: Profile) {
        self.by_key.insert(
            (model_id.to_string(), version.map(str::to_string)),
            Arc::new(p),
        );
    }

    /// Adds a profile bootstrapped from live traffic whose windows start at `window_starts_ms`
    /// (the pane after its last bootstrap event), so that a version that takes it over
    /// evaluates the same windows as the one that bootstrapped it.
    pub fn insert_bootstrapped(
        &mut self,
        model_id: &str,
        version: Option<&str>,
        p: Profile,
        window_starts_ms: i64,
    ) {
        let key = (model_id.to_string(), version.map(str::to_string));
        self.starts.insert(key.clone(), window_starts_ms);
        self.by_key.insert(key, Arc::new(p));
    }

    /// Where windows against the baseline of this model and version start: `i64::MIN` (the
    /// first event) unless it was bootstrapped.
    pub(crate) fn window_starts(&self, model_id: &str, version: &str) -> i64 {
        self.starts
            .get(&(model_id.to_string(), Some(version.to_string())))
            .or_else(|| self.starts.get(&(model_id.to_string(), None)))
            .copied()
            .unwrap_or(i64::MIN)
    }

    /// Whether a profile is known for exactly this model and version.
    pub fn contains(&self, model_id: &str, version: Option<&str>) -> bool {
        self.by_key
            .contains_key(&(model_id.to_string(), version.map(str::to_string)))
    }

    pub(crate) fn find(&self, model_id: &str, version: &str) -> Option<Arc<Profile>> {
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
pub(crate) fn same_str(a: &str, b: &str) -> bool {
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
pub(crate) struct FeatureLookup {
    map: HashMap<String, usize>,
    /// By position in the last event that had one there: the profile index and its name.
    by_position: Vec<Option<(usize, Box<str>)>>,
}

impl FeatureLookup {
    pub(crate) fn new(profile: &Profile) -> Self {
        Self {
            map: profile.feature_index(),
            by_position: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn find(&mut self, position: usize, name: &str) -> Option<usize> {
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
    /// An index of `attribute`'s groups, empty.
    pub(crate) fn new(attribute: &str) -> Self {
        Self {
            attribute: attribute.to_string(),
            ..Default::default()
        }
    }

    pub(crate) fn get_or_insert(&mut self, group: &str, max: usize, counts: &mut Counts) -> u16 {
        // Most attributes have a handful of groups: comparing names beats hashing one.
        if self.groups.len() <= 8 {
            if let Some(i) = self.groups.iter().position(|g| same_str(g, group)) {
                return i as u16;
            }
        } else if let Some(&i) = self.index.get(group) {
            return i;
        }
        let name = if self.groups.len() + 1 >= max {
            counts.limit_for("groups", 1, format_args!("{}", self.attribute));
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
    pub(crate) fn new(names: &[String]) -> Self {
        let has = |n: &str| names.iter().any(|d| d == n);
        Self {
            adwin: has("adwin").then(Adwin::default),
            ddm: has("ddm").then(Ddm::default),
            page_hinkley: has("page_hinkley").then(PageHinkley::default),
            fed: 0,
            detections: Vec::new(),
        }
    }

    pub(crate) fn update(&mut self, error: bool) {
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
