//! Statistics core: pure, synchronous functions and mergeable streaming summaries.
//!
//! Two paths where it matters. The *streaming* path is what the live monitor uses: a baseline
//! profile is built once from the reference, current values arrive one at a time into pane
//! summaries that merge and un-merge as windows slide. The *exact* path computes from full
//! samples. Both agree with the reference implementations in `../shared/conformance`
//! (`driftwatch conformance` checks them).
//!
//! * [`special`], [`ks`], [`shares`]: special functions, KS tests, share-based distances.
//! * [`numeric`], [`categorical`], [`drift`]: data drift and method selection.
//! * [`calibrated`]: two-sample drift decisions held to a false-alarm rate per model-day.
//! * [`latency`]: latency quantiles on an HDR-style histogram or sorted samples.
//! * [`quality`]: binary-classification and regression quality metrics.
//! * [`fairness`]: per-group confusion counts and fairlearn-style group fairness metrics.
//! * [`concept`]: river-compatible concept-drift detectors (ADWIN, Page-Hinkley, DDM).

pub mod calibrated;
pub mod categorical;
pub mod concept;
pub mod drift;
pub mod fairness;
pub mod ks;
pub mod latency;
pub mod numeric;
pub mod quality;
pub mod serde_float;
pub mod shares;
pub mod special;

pub use categorical::OTHER;
