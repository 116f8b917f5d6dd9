//! Sequential change detectors fed one observation at a time: the two-sided
//! tabular CUSUM (Page 1954; Montgomery, *Introduction to Statistical Quality
//! Control*, §9.1) and the Page–Hinkley test (Hinkley 1971, in the running-mean
//! form used by MOA / river).
//!
//! Both are plain state machines: `update(x)` returns an [`Alarm`] when the
//! statistic crosses its decision level and then restarts the statistic, so
//! one shift yields one alarm. State is `serde` (de)serialisable so it can be
//! persisted between windows; deserialisation re-validates the parameters.
//!
//! Never: I/O, wall-clock reads, randomness, panics. Non-finite observations
//! are ignored (no state change, no alarm).

use serde::{Deserialize, Serialize};

/// Which way the monitored mean moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The mean increased.
    Up,
    /// The mean decreased.
    Down,
}

/// A detector signal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Direction of the detected shift.
    pub direction: Direction,
    /// The statistic that crossed the decision level (CUSUM: in σ units).
    pub statistic: f64,
    /// Observations consumed since the last (re)start, including this one:
    /// the run length of this alarm.
    pub run_length: u64,
}

fn pick_alarm(up: f64, down: f64, limit: f64, run_length: u64) -> Option<Alarm> {
    if up > limit || down > limit {
        let (direction, statistic) = if up >= down {
            (Direction::Up, up)
        } else {
            (Direction::Down, down)
        };
        Some(Alarm {
            direction,
            statistic,
            run_length,
        })
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// CUSUM
// ---------------------------------------------------------------------------

/// Two-sided tabular CUSUM on standardised observations `z = (x - μ₀)/σ`:
///
/// ```text
/// C⁺ = max(0, C⁺ + z - k)     C⁻ = max(0, C⁻ - z - k)     alarm if C± > h
/// ```
///
/// with reference value `k = 0.5` (tuned to a 1σ shift) and decision interval
/// `h = 5` by default, whose in-control average run length is ≈ 465
/// (Montgomery, SQC §9.1, ARL table for k = 1/2; Siegmund's approximation
/// gives 469).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CusumState")]
pub struct Cusum {
    target_mean: f64,
    sigma: f64,
    k: f64,
    h: f64,
    upper: f64,
    lower: f64,
    observations: u64,
}

/// Unvalidated serialised form of [`Cusum`].
#[derive(Deserialize)]
struct CusumState {
    target_mean: f64,
    sigma: f64,
    k: f64,
    h: f64,
    upper: f64,
    lower: f64,
    observations: u64,
}

impl TryFrom<CusumState> for Cusum {
    type Error = String;

    fn try_from(s: CusumState) -> Result<Self, String> {
        let mut c = Cusum::with_parameters(s.target_mean, s.sigma, s.k, s.h).ok_or_else(|| {
            "invalid CUSUM parameters (need finite mean, sigma > 0, k >= 0, h > 0)".to_string()
        })?;
        if !(s.upper.is_finite() && s.upper >= 0.0 && s.lower.is_finite() && s.lower >= 0.0) {
            return Err("invalid CUSUM sums (must be finite and >= 0)".into());
        }
        (c.upper, c.lower, c.observations) = (s.upper, s.lower, s.observations);
        Ok(c)
    }
}

impl Cusum {
    /// Default reference value `k`, in σ units.
    pub const DEFAULT_K: f64 = 0.5;
    /// Default decision interval `h`, in σ units.
    pub const DEFAULT_H: f64 = 5.0;

    /// CUSUM for in-control mean `target_mean` and standard deviation `sigma`
    /// with `k = 0.5`, `h = 5`. `None` unless the mean is finite and `sigma > 0`.
    pub fn new(target_mean: f64, sigma: f64) -> Option<Self> {
        Self::with_parameters(target_mean, sigma, Self::DEFAULT_K, Self::DEFAULT_H)
    }

    /// CUSUM with explicit `k` and `h` (both in σ units).
    /// `None` unless all are finite, `sigma > 0`, `k >= 0` and `h > 0`.
    pub fn with_parameters(target_mean: f64, sigma: f64, k: f64, h: f64) -> Option<Self> {
        let ok = target_mean.is_finite()
            && sigma.is_finite()
            && sigma > 0.0
            && k.is_finite()
            && k >= 0.0
            && h.is_finite()
            && h > 0.0;
        ok.then_some(Cusum {
            target_mean,
            sigma,
            k,
            h,
            upper: 0.0,
            lower: 0.0,
            observations: 0,
        })
    }

    /// Feed one observation. Returns an alarm when `C⁺` or `C⁻` exceeds `h`;
    /// the sums then restart from 0. Non-finite `x` is ignored.
    pub fn update(&mut self, x: f64) -> Option<Alarm> {
        if !x.is_finite() {
            return None;
        }
        let z = (x - self.target_mean) / self.sigma;
        self.observations += 1;
        self.upper = (self.upper + z - self.k).max(0.0);
        self.lower = (self.lower - z - self.k).max(0.0);
        let alarm = pick_alarm(self.upper, self.lower, self.h, self.observations);
        if alarm.is_some() {
            self.reset();
        }
        alarm
    }

    /// Restart both sums and the run-length counter (parameters are kept).
    pub fn reset(&mut self) {
        self.upper = 0.0;
        self.lower = 0.0;
        self.observations = 0;
    }

    /// Current upper sum `C⁺` (σ units).
    pub fn upper(&self) -> f64 {
        self.upper
    }

    /// Current lower sum `C⁻` (σ units).
    pub fn lower(&self) -> f64 {
        self.lower
    }

    /// Observations since the last (re)start.
    pub fn observations(&self) -> u64 {
        self.observations
    }
}

// ---------------------------------------------------------------------------
// Page–Hinkley
// ---------------------------------------------------------------------------

/// Two-sided Page–Hinkley test against the running mean:
///
/// ```text
/// x̄_t = x̄_{t-1} + (x_t - x̄_{t-1}) / t
/// m_t  = m_{t-1} + (x_t - x̄_t - δ)      PH⁺ = m_t  - min_{0≤s≤t} m_s
/// m'_t = m'_{t-1} + (x̄_t - x_t - δ)     PH⁻ = m'_t - min_{0≤s≤t} m'_s
/// alarm if PH± > λ
/// ```
///
/// (`m_0 = m'_0 = 0`, i.e. `PH` is a CUSUM of the deviations from the running
/// mean with drift allowance `δ`). `δ` and `λ` are in the units of `x`; the
/// defaults `δ = 0.005`, `λ = 50` are meant for standardised input
/// `(x - μ)/σ`. Unlike [`Cusum`] it needs no reference mean, but it only
/// sees a shift relative to what it has already averaged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PageHinkleyState")]
pub struct PageHinkley {
    delta: f64,
    lambda: f64,
    observations: u64,
    mean: f64,
    up_sum: f64,
    up_min: f64,
    down_sum: f64,
    down_min: f64,
}

/// Unvalidated serialised form of [`PageHinkley`].
#[derive(Deserialize)]
struct PageHinkleyState {
    delta: f64,
    lambda: f64,
    observations: u64,
    mean: f64,
    up_sum: f64,
    up_min: f64,
    down_sum: f64,
    down_min: f64,
}

impl TryFrom<PageHinkleyState> for PageHinkley {
    type Error = String;

    fn try_from(s: PageHinkleyState) -> Result<Self, String> {
        let mut p = PageHinkley::new(s.delta, s.lambda).ok_or_else(|| {
            "invalid Page-Hinkley parameters (need delta >= 0, lambda > 0, finite)".to_string()
        })?;
        let finite = [s.mean, s.up_sum, s.up_min, s.down_sum, s.down_min]
            .iter()
            .all(|v| v.is_finite());
        if !finite || s.up_min > 0.0 || s.down_min > 0.0 {
            return Err("invalid Page-Hinkley state".into());
        }
        (p.observations, p.mean) = (s.observations, s.mean);
        (p.up_sum, p.up_min, p.down_sum, p.down_min) = (s.up_sum, s.up_min, s.down_sum, s.down_min);
        Ok(p)
    }
}

impl Default for PageHinkley {
    /// `δ = 0.005`, `λ = 50`.
    fn default() -> Self {
        PageHinkley {
            delta: Self::DEFAULT_DELTA,
            lambda: Self::DEFAULT_LAMBDA,
            observations: 0,
            mean: 0.0,
            up_sum: 0.0,
            up_min: 0.0,
            down_sum: 0.0,
            down_min: 0.0,
        }
    }
}

impl PageHinkley {
    /// Default magnitude of changes tolerated, `δ`.
    pub const DEFAULT_DELTA: f64 = 0.005;
    /// Default decision level, `λ`.
    pub const DEFAULT_LAMBDA: f64 = 50.0;

    /// Page–Hinkley with tolerance `delta` and threshold `lambda`.
    /// `None` unless both are finite, `delta >= 0` and `lambda > 0`.
    pub fn new(delta: f64, lambda: f64) -> Option<Self> {
        let ok = delta.is_finite() && delta >= 0.0 && lambda.is_finite() && lambda > 0.0;
        ok.then(|| PageHinkley {
            delta,
            lambda,
            ..Self::default()
        })
    }

    /// Feed one observation. Returns an alarm when `PH⁺` or `PH⁻` exceeds
    /// `λ`; the detector then restarts (running mean included). Non-finite
    /// `x` is ignored.
    pub fn update(&mut self, x: f64) -> Option<Alarm> {
        if !x.is_finite() {
            return None;
        }
        self.observations += 1;
        self.mean += (x - self.mean) / self.observations as f64;
        self.up_sum += x - self.mean - self.delta;
        self.up_min = self.up_min.min(self.up_sum);
        self.down_sum += self.mean - x - self.delta;
        self.down_min = self.down_min.min(self.down_sum);
        let alarm = pick_alarm(
            self.up_sum - self.up_min,
            self.down_sum - self.down_min,
            self.lambda,
            self.observations,
        );
        if alarm.is_some() {
            self.reset();
        }
        alarm
    }

    /// Restart the statistics and the running mean (parameters are kept).
    pub fn reset(&mut self) {
        *self = PageHinkley {
            delta: self.delta,
            lambda: self.lambda,
            ..Self::default()
        };
    }

    /// Current `(PH⁺, PH⁻)`.
    pub fn statistics(&self) -> (f64, f64) {
        (self.up_sum - self.up_min, self.down_sum - self.down_min)
    }

    /// Observations since the last (re)start.
    pub fn observations(&self) -> u64 {
        self.observations
    }
}
