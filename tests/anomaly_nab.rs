//! The NAB scorer's unit tests, on hand-made detections (the scorer is
//! the `anomaly_corpus` bench's, which runs without the test harness).

#[path = "../benches/anomaly_corpus/nab.rs"]
mod nab;

use nab::{LOW_FP, STANDARD, Tally};

/// Two windows of 100 ms.
const WINDOWS: [(i64, i64); 2] = [(1000, 1100), (2000, 2100)];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_detection_at_every_window_start_is_perfect_and_none_is_null() {
    let perfect = Tally::new(&WINDOWS, &[1000, 2000]);
    assert_eq!(perfect.score(&STANDARD), Some(100.0));
    assert_eq!(perfect.score(&LOW_FP), Some(100.0));
    assert_eq!(
        (perfect.precision(), perfect.recall()),
        (Some(1.0), Some(1.0))
    );
    let null = Tally::new(&WINDOWS, &[]);
    assert_eq!(null.score(&STANDARD), Some(0.0));
    assert_eq!((null.precision(), null.recall()), (None, Some(0.0)));
    assert_eq!(null.raw(&STANDARD), -2.0);
}

#[test]
fn only_the_first_detection_in_a_window_counts() {
    let twice = Tally::new(&WINDOWS, &[1000, 1050, 2000]);
    assert_eq!(twice.score(&STANDARD), Some(100.0));
    assert_eq!((twice.firings, twice.inside, twice.detected), (3, 3, 2));
}

#[test]
fn a_false_positive_far_from_any_window_costs_a_fp() {
    for far in [0, 999, 1100 + 300, 5000] {
        let t = Tally::new(&WINDOWS, &[far, 1000, 2000]);
        for profile in [STANDARD, LOW_FP] {
            assert!(close(t.raw(&profile), 2.0 - profile.fp), "{far}");
        }
        assert_eq!((t.precision(), t.recall()), (Some(2.0 / 3.0), Some(1.0)));
    }
    // Normalised: 100 * (2 - 0.11 + 2) / 4.
    let t = Tally::new(&WINDOWS, &[5000, 1000, 2000]);
    assert!(close(t.score(&STANDARD).unwrap(), 97.25));
}

#[test]
fn a_false_positive_just_after_a_window_costs_little() {
    let t = Tally::new(&WINDOWS, &[1000, 1101, 2000]);
    let cost = 2.0 - t.raw(&STANDARD);
    assert!(cost > 0.0 && cost < 0.11 * 0.05, "{cost}");
    // One window length after: σ(1) = 2/(1+e^5) − 1.
    let t = Tally::new(&WINDOWS, &[1000, 1200, 2000]);
    assert!(close(
        2.0 - t.raw(&STANDARD),
        0.11 * (1.0 - 2.0 / (1.0 + 5f64.exp()))
    ));
}

#[test]
fn a_late_detection_earns_less() {
    // Halfway: σ(−0.5) / σ(−1) = 0.84828 / 0.98661.
    let half = Tally::new(&WINDOWS, &[1050, 2000]);
    assert!(close(
        half.raw(&STANDARD) - 1.0,
        0.848_283_639_957_513 / 0.986_614_298_151_430_5
    ));
    // At the window's end it is as good as a miss, but not a false positive.
    let end = Tally::new(&WINDOWS, &[1100, 2000]);
    assert!(close(end.raw(&STANDARD), 1.0));
    assert_eq!((end.precision(), end.recall()), (Some(1.0), Some(1.0)));
    assert!(close(end.score(&STANDARD).unwrap(), 75.0));
}

#[test]
fn tallies_add_up() {
    let mut sum = Tally::new(&WINDOWS, &[1000]);
    sum += Tally::new(&[], &[7]);
    assert_eq!(
        (sum.windows, sum.detected, sum.firings, sum.inside),
        (2, 1, 2, 1)
    );
    assert!(close(sum.raw(&STANDARD), 1.0 - 1.0 - 0.11));
    assert_eq!(Tally::new(&[], &[7]).score(&STANDARD), None);
}
