//! Monte-Carlo checks of `slawatch::drift::sequential`: in-control average
//! run length (ARL0) on N(0,1) data and detection delay after a 1σ shift,
//! for the two-sided tabular CUSUM (k = 0.5, h = 5) and Page–Hinkley
//! (δ = 0.005, λ = 50). Seeded ChaCha8 streams make every number reproducible.
//!
//! Reference ARLs come from Siegmund's approximation for a one-sided CUSUM
//! with drift Δ (per-step mean minus reference value) and level h:
//! `ARL = (exp(-2Δb) + 2Δb - 1) / (2Δ²)`, `b = h + 1.166`, and
//! `1/ARL_two-sided = 1/ARL⁺ + 1/ARL⁻` (Siegmund, *Sequential Analysis*,
//! 1985; Montgomery, SQC §9.1). For CUSUM (Δ = -k = -0.5, h = 5) this gives
//! 469 (Montgomery's table: 465). Page–Hinkley is a CUSUM of `x_t - x̄_t`
//! whose increments are independent with variance `(t-1)/t` ≈ 1, so with
//! Δ = -δ and h = λ the same formula gives ≈ 1564.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use slawatch::drift::sequential::{Alarm, Cusum, Direction, PageHinkley};

/// Siegmund's approximation to the one-sided CUSUM ARL.
fn siegmund_arl(drift: f64, h: f64) -> f64 {
    let b = h + 1.166;
    if drift == 0.0 {
        return b * b;
    }
    let x = 2.0 * drift * b;
    ((-x).exp() + x - 1.0) / (2.0 * drift * drift)
}

/// Two-sided ARL from the one-sided ARLs of both tails.
fn two_sided(up: f64, down: f64) -> f64 {
    1.0 / (1.0 / up + 1.0 / down)
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// Mean number of observations until the first alarm, over `runs` fresh
/// detectors fed `N(shift, 1)`. Each run is capped at `cap` observations.
fn mean_run_length(
    seed: u64,
    runs: usize,
    cap: u64,
    shift: f64,
    mut new: impl FnMut() -> Box<dyn FnMut(f64) -> Option<Alarm>>,
) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut total = 0u64;
    for _ in 0..runs {
        let mut update = new();
        let mut t = 0u64;
        loop {
            t += 1;
            if let Some(a) = update(shift + normal(&mut rng)) {
                assert_eq!(a.run_length, t, "alarm run_length must count observations");
                break;
            }
            if t >= cap {
                break;
            }
        }
        total += t;
    }
    total as f64 / runs as f64
}

fn cusum() -> Box<dyn FnMut(f64) -> Option<Alarm>> {
    let mut c = Cusum::new(0.0, 1.0).expect("valid CUSUM");
    Box::new(move |x| c.update(x))
}

fn page_hinkley() -> Box<dyn FnMut(f64) -> Option<Alarm>> {
    let mut p = PageHinkley::default();
    Box::new(move |x| p.update(x))
}

fn cusum_reference_arl0() -> f64 {
    let one = siegmund_arl(-Cusum::DEFAULT_K, Cusum::DEFAULT_H);
    two_sided(one, one)
}

fn page_hinkley_reference_arl0() -> f64 {
    let one = siegmund_arl(-PageHinkley::DEFAULT_DELTA, PageHinkley::DEFAULT_LAMBDA);
    two_sided(one, one)
}

#[test]
fn siegmund_reference_values() {
    let arl0 = cusum_reference_arl0();
    assert!(
        (arl0 - 469.1).abs() < 1.0,
        "CUSUM k=0.5 h=5 ARL0 by Siegmund: {arl0}"
    );
    let arl1 = siegmund_arl(1.0 - Cusum::DEFAULT_K, Cusum::DEFAULT_H);
    assert!(
        (arl1 - 10.34).abs() < 0.05,
        "CUSUM 1σ-shift ARL1 by Siegmund: {arl1}"
    );
    let ph = page_hinkley_reference_arl0();
    assert!(
        (ph - 1564.0).abs() < 2.0,
        "Page-Hinkley ARL0 by Siegmund: {ph}"
    );
}

#[test]
fn cusum_in_control_arl_matches_theory() {
    let reference = cusum_reference_arl0();
    let measured = mean_run_length(0xC05E, 2000, 50 * reference as u64, 0.0, cusum);
    println!(
        "CUSUM k=0.5 h=5: measured ARL0 {measured:.1} over 2000 runs, Siegmund {reference:.1}"
    );
    assert!(
        measured > reference / 3.0 && measured < 3.0 * reference,
        "CUSUM ARL0 {measured} outside [{}, {}]",
        reference / 3.0,
        3.0 * reference
    );
    // 2000 runs give a ~2% standard error, so this tighter band is also safe.
    assert!(
        (measured / reference - 1.0).abs() < 0.15,
        "CUSUM ARL0 {measured} more than 15% from Siegmund's {reference}"
    );
}

#[test]
fn cusum_detects_one_sigma_shift_quickly() {
    let arl0 = cusum_reference_arl0();
    let arl1_reference = siegmund_arl(1.0 - Cusum::DEFAULT_K, Cusum::DEFAULT_H);
    let measured = mean_run_length(0x51F7, 1000, 10_000, 1.0, cusum);
    println!("CUSUM 1σ shift: measured delay {measured:.2}, Siegmund ARL1 {arl1_reference:.2}");
    assert!(
        measured < arl0 / 2.0,
        "1σ shift detected after {measured} > ARL0/2"
    );
    assert!(
        measured > arl1_reference / 2.0 && measured < 2.0 * arl1_reference,
        "CUSUM ARL1 {measured} far from Siegmund's {arl1_reference}"
    );
}

#[test]
fn cusum_signals_direction_and_restarts() {
    let mut c = Cusum::new(10.0, 2.0).unwrap();
    // Each observation 3σ below target adds 2.5 to C⁻: alarm on the 3rd (7.5 > 5).
    assert_eq!(c.update(4.0), None);
    assert_eq!(c.update(4.0), None);
    let a = c.update(4.0).expect("alarm");
    assert_eq!(a.direction, Direction::Down);
    assert_eq!(a.run_length, 3);
    assert!((a.statistic - 7.5).abs() < 1e-12);
    assert_eq!((c.upper(), c.lower(), c.observations()), (0.0, 0.0, 0));
    assert_eq!(c.update(f64::NAN), None);
    assert_eq!(c.observations(), 0, "NaN must be ignored");
    assert!(Cusum::new(0.0, 0.0).is_none());
}

#[test]
fn page_hinkley_in_control_arl_matches_theory() {
    let reference = page_hinkley_reference_arl0();
    let measured = mean_run_length(0x9A6E, 1000, 50 * reference as u64, 0.0, page_hinkley);
    println!(
        "Page-Hinkley δ=0.005 λ=50: measured ARL0 {measured:.1} over 1000 runs, Siegmund {reference:.1}"
    );
    assert!(
        measured > reference / 3.0 && measured < 3.0 * reference,
        "Page-Hinkley ARL0 {measured} outside [{}, {}]",
        reference / 3.0,
        3.0 * reference
    );
}

#[test]
fn page_hinkley_detects_one_sigma_shift_after_warm_up() {
    // Page–Hinkley compares against its own running mean, so the shift must
    // come after an in-control stretch; false alarms there just restart it.
    const WARM_UP: usize = 200;
    const RUNS: usize = 500;
    let arl0 = page_hinkley_reference_arl0();
    let mut rng = ChaCha8Rng::seed_from_u64(0x7E57);
    let mut total = 0u64;
    for _ in 0..RUNS {
        let mut ph = PageHinkley::default();
        for _ in 0..WARM_UP {
            ph.update(normal(&mut rng));
        }
        let mut delay = 0u64;
        loop {
            delay += 1;
            if let Some(a) = ph.update(1.0 + normal(&mut rng)) {
                assert_eq!(a.direction, Direction::Up, "a +1σ shift must alarm upwards");
                break;
            }
            assert!(delay < 100_000, "shift never detected");
        }
        total += delay;
    }
    let measured = total as f64 / RUNS as f64;
    println!(
        "Page-Hinkley 1σ shift after {WARM_UP} in-control observations: mean delay {measured:.1}"
    );
    assert!(
        measured < arl0 / 2.0,
        "1σ shift detected after {measured} > ARL0/2 = {}",
        arl0 / 2.0
    );
}

#[test]
fn detector_state_round_trips_through_serde() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let xs: Vec<f64> = (0..3000)
        .map(|i| normal(&mut rng) + if i > 1500 { 0.8 } else { 0.0 })
        .collect();

    let mut c = Cusum::new(0.0, 1.0).unwrap();
    let mut p = PageHinkley::default();
    let mut straight = Vec::new();
    for (i, &x) in xs.iter().enumerate() {
        straight.push((i, c.update(x), p.update(x)));
    }

    // Same stream, persisting and restoring both detectors every 250 observations.
    let mut c = Cusum::new(0.0, 1.0).unwrap();
    let mut p = PageHinkley::default();
    let mut resumed = Vec::new();
    for (i, &x) in xs.iter().enumerate() {
        if i % 250 == 0 {
            c = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            p = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        }
        resumed.push((i, c.update(x), p.update(x)));
    }
    assert_eq!(straight, resumed);
    assert!(
        straight.iter().any(|(_, a, _)| a.is_some()),
        "the shift must alarm the CUSUM"
    );

    // Invalid persisted parameters are rejected instead of producing NaN alarms.
    let bad = r#"{"target_mean":0.0,"sigma":-1.0,"k":0.5,"h":5.0,"upper":0.0,"lower":0.0,"observations":0}"#;
    assert!(serde_json::from_str::<Cusum>(bad).is_err());
    let bad = r#"{"delta":0.005,"lambda":0.0,"observations":0,"mean":0.0,"up_sum":0.0,"up_min":0.0,"down_sum":0.0,"down_min":0.0}"#;
    assert!(serde_json::from_str::<PageHinkley>(bad).is_err());
}
