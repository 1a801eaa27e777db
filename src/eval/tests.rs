//! Unit tests of each check of a window evaluation.

use super::*;
use crate::baseline::{BuildLimits, ProfileBuilder};
use crate::event::FeatureValue;
use crate::state::pane::Selection;
use crate::stats::fairness::GroupCounts;

/// A profile of a numerical feature `x` (0..100, none missing) and a categorical `c`.
fn profile() -> Profile {
    let mut b = ProfileBuilder::new("m", Some("v1"), "test", BuildLimits::default());
    for i in 0..100 {
        b.push_feature("x", &FeatureValue::Number(i as f64));
        let c = if i % 2 == 0 { "a" } else { "b" };
        b.push_feature("c", &FeatureValue::Text(c.into()));
        b.end_row();
    }
    b.finish().unwrap()
}

fn quality(seen: u64, missing: u64, out_of_range: u64, unseen: u64) -> QualityCounts {
    QualityCounts {
        seen,
        missing,
        type_mismatch: 0,
        out_of_range,
        unseen,
    }
}

fn drift(drifted: bool) -> FeatureDrift {
    FeatureDrift {
        method: DriftMethod::Wasserstein,
        score: if drifted { 0.3 } else { 0.01 },
        threshold: 0.1,
        drifted,
        effect: if drifted { 0.3 } else { 0.01 },
    }
}

fn metrics(findings: &[Finding]) -> Vec<(&str, Option<&str>, bool, bool)> {
    findings
        .iter()
        .map(|f| {
            (
                f.metric.as_str(),
                f.feature.as_deref(),
                f.breached,
                f.critical,
            )
        })
        .collect()
}

#[test]
fn dataset_drift_is_the_share_of_drifted_features() {
    assert!(dataset_drift_check(0.5, &[]).is_none());
    let features = vec![
        ("x".to_string(), drift(true)),
        ("c".to_string(), drift(false)),
    ];
    let (ds, f) = dataset_drift_check(0.5, &features).unwrap();
    assert_eq!((ds.n_features, ds.n_drifted), (2, 1));
    assert_eq!((f.value, f.threshold, f.breached), (0.5, 0.5, true));
    assert_eq!(f.evidence["drifted_features"], json!(["x"]));
    let (_, f) = dataset_drift_check(0.6, &features).unwrap();
    assert!(!f.breached && !f.critical);
}

#[test]
fn data_quality_per_feature_above_the_minimum_of_events() {
    let mut cfg = Config::default();
    cfg.window.min_events = 100;
    cfg.data_quality.max_missing_increase = 0.1;
    cfg.data_quality.max_type_mismatch = 0.05;
    cfg.data_quality.max_out_of_range = 0.2;
    cfg.data_quality.max_unseen_categories = 0.05;
    let p = profile();
    let index = p.feature_index();
    let mut q = vec![QualityCounts::default(); 2];
    // x: 15 % missing (baseline 0 %), 50 % out of range; c: seen too rarely to judge.
    q[index["x"]] = quality(200, 30, 100, 0);
    q[index["c"]] = quality(50, 50, 0, 0);
    let dq = data_quality(&cfg, &p.features, &q);
    assert_eq!(
        metrics(&dq.findings),
        [
            ("missing_share", Some("x"), true, false),
            ("type_mismatch_share", Some("x"), false, false),
            ("out_of_range_share", Some("x"), true, true),
        ]
    );
    assert_eq!(dq.findings[0].value, 0.15);
    assert_eq!(dq.findings[0].threshold, 0.1);
    // Every feature counts towards the missing share, judged or not.
    assert_eq!(dq.missing_share, 80.0 / 250.0);

    q[index["c"]] = quality(200, 0, 0, 40);
    let dq = data_quality(&cfg, &p.features, &q);
    let c: Vec<_> = metrics(&dq.findings)
        .into_iter()
        .filter(|f| f.1 == Some("c"))
        .collect();
    assert_eq!(
        c,
        [
            ("missing_share", Some("c"), false, false),
            ("type_mismatch_share", Some("c"), false, false),
            ("unseen_category_share", Some("c"), true, true),
        ]
    );
}

#[test]
fn latency_against_the_objective() {
    let mut l = LatencySummary::new();
    assert!(latency_check(Some(50.0), &l).is_none(), "no latencies");
    for ms in 1..=100 {
        l.record(ms as f64);
    }
    assert!(latency_check(None, &l).is_none(), "no objective");
    let f = latency_check(Some(60.0), &l).unwrap();
    assert!((f.value - 99.0).abs() <= 1.0, "{}", f.value);
    assert!(f.breached && !f.critical);
    assert!(latency_check(Some(40.0), &l).unwrap().critical);
    assert!(!latency_check(Some(150.0), &l).unwrap().breached);
    assert_eq!(f.evidence["count"], 100);
}

#[test]
fn accuracy_against_the_reference_once_enough_labels_joined() {
    let perf = PerformanceConfig {
        min_labels: 10,
        max_accuracy_drop: 0.05,
        ..Config::default().performance
    };
    let mut b = BinarySummary::new();
    for i in 0..5 {
        b.record(true, true, 0.9 - i as f64 * 0.01);
    }
    assert_eq!(accuracy_check(&perf, &b, Some(0.9)), (None, None));
    // 20 labels, 15 right: accuracy 0.75.
    for i in 0..15 {
        let right = i < 10;
        b.record(i % 2 == 0, (i % 2 == 0) == right, 0.5);
    }
    let (f, error_rate) = accuracy_check(&perf, &b, Some(0.9));
    let f = f.unwrap();
    assert_eq!(f.value, 0.75);
    assert!((f.threshold - 0.85).abs() < 1e-12);
    assert!(f.breached && f.critical);
    assert_eq!(error_rate, Some(0.25));
    let (f, _) = accuracy_check(&perf, &b, Some(0.82));
    assert!(f.is_some_and(|f| f.breached && !f.critical));
    assert_eq!(accuracy_check(&perf, &b, None), (None, Some(0.25)));
}

#[test]
fn rmse_against_the_reference_once_enough_labels_joined() {
    let perf = PerformanceConfig {
        min_labels: 10,
        max_rmse_increase: 0.2,
        ..Config::default().performance
    };
    let mut r = RegressionSums::new();
    for i in 0..20 {
        r.record(i as f64, i as f64 + 2.0);
    }
    let f = rmse_check(&perf, &r, Some(1.0)).unwrap();
    assert!((f.value - 2.0).abs() < 1e-9);
    assert!((f.threshold - 1.2).abs() < 1e-12);
    assert!(f.breached && f.critical);
    assert!(!rmse_check(&perf, &r, Some(1.8)).unwrap().breached);
    assert!(rmse_check(&perf, &r, None).is_none());
    let few = PerformanceConfig {
        min_labels: 21,
        ..perf
    };
    assert!(rmse_check(&few, &r, Some(1.0)).is_none());
}

#[test]
fn fairness_over_groups_large_enough() {
    let fair = FairnessConfig {
        min_group_size: 50,
        max_demographic_parity_difference: 0.1,
        max_equalized_odds_difference: 0.1,
        ..Config::default().fairness
    };
    let groups = ["a".to_string(), "b".to_string(), "c".to_string()];
    let mut pane = AttributePane {
        selection: vec![
            Selection {
                n: 100,
                positive: 60,
            },
            Selection {
                n: 100,
                positive: 20,
            },
            Selection { n: 10, positive: 0 },
        ],
        labelled: GroupCounts::new(8),
    };
    let f = fairness_checks(&fair, "gender", &groups, &pane);
    assert_eq!(
        metrics(&f.findings),
        [("demographic_parity_difference", Some("gender"), true, true)]
    );
    assert!((f.dp_difference.unwrap() - 0.4).abs() < 1e-12);
    let by_group = f.findings[0].evidence["groups"].as_object().unwrap();
    assert_eq!(
        by_group.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "c is too small"
    );

    // Labelled: equal error rates in both groups, then one group too small.
    for g in ["a", "b"] {
        for i in 0..60 {
            pane.labelled.record(g, i % 2 == 0, i % 3 != 0);
        }
    }
    let f = fairness_checks(&fair, "gender", &groups, &pane);
    let eo = &f.findings[1];
    assert_eq!(eo.metric, "equalized_odds_difference");
    assert!(eo.value.abs() < 1e-12 && !eo.breached);
    pane.labelled.record("c", true, true);
    let f = fairness_checks(&fair, "gender", &groups, &pane);
    assert_eq!(f.findings.len(), 1, "a labelled group below the minimum");

    pane.selection.truncate(1);
    let f = fairness_checks(&fair, "gender", &groups, &pane);
    assert!(f.findings.is_empty() && f.dp_difference.is_none());
}

#[test]
fn concept_drift_per_configured_detector() {
    let detectors = ["adwin".to_string(), "ddm".to_string()];
    let f = concept_checks(
        &detectors,
        &[("adwin", 5), ("page_hinkley", 7), ("adwin", 9)],
    );
    assert_eq!(
        metrics(&f),
        [("adwin", None, true, false), ("ddm", None, false, false)]
    );
    assert_eq!(f[0].value, 2.0);
    assert_eq!(f[0].evidence["detections_at_label_index"], json!([5, 9]));
    assert!(concept_checks(&[], &[("adwin", 1)]).is_empty());
}
