//! Kolmogorov–Smirnov distributions, ported from scipy so that p-values agree
//! with `scipy.stats.kstwo`, `scipy.stats.kstwobign` and `scipy.special.smirnov`:
//!
//! * [`kstwobign_sf`] — limiting distribution of `sqrt(n)·D_n`
//!   (xsf `cephes/kolmogorov.h`, `_kolmogorov`).
//! * [`smirnov_sf`] — exact one-sided `P(D_n^+ >= x)` (Birnbaum–Tingey sum in
//!   double-double arithmetic, xsf `_smirnov`).
//! * [`kstwo_sf`] — exact/approximate two-sided `P(D_n >= x)` following
//!   Simard & L'Ecuyer (2011) exactly as `scipy/stats/_ksstats.py::_kolmogn`
//!   chooses between Ruben–Gambino, Durbin/Marsaglia–Tsang–Wang, Pomeranz,
//!   Pelz–Good and `2·smirnov`.
//!
//! Numerical only: no I/O, no wall clock, no panics. Invalid arguments give NaN
//! (these are internal building blocks; the public tests wrap them in `Option`).

use super::dd::{Dd, ldexp};

// ---------------------------------------------------------------------------
// Limiting distribution (kstwobign)
// ---------------------------------------------------------------------------

/// Survival function of the limiting Kolmogorov distribution,
/// `P(K > x)` with `K = lim sqrt(n)·D_n` — scipy `kstwobign.sf` /
/// `scipy.special.kolmogorov`. `None` if `x` is NaN.
pub fn kstwobign_sf(x: f64) -> Option<f64> {
    (!x.is_nan()).then(|| kolmogorov_sf(x))
}

fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    // exp() of anything below MIN_EXPABLE is 0, so the CDF is 0 here.
    const MIN_EXPABLE: f64 = (-708 - 38) as f64;
    if x <= std::f64::consts::PI / (-MIN_EXPABLE * 8.0).sqrt() {
        return 1.0;
    }
    const KOLMOG_CUTOVER: f64 = 0.82;
    let sf;
    if x <= KOLMOG_CUTOVER {
        // P = w*u*(1 + u^8 + u^24 + u^48 + ...), u = exp(-pi^2/(8x^2)), w = sqrt(2pi)/x
        let w = (2.0 * std::f64::consts::PI).sqrt() / x;
        let logu8 = -std::f64::consts::PI * std::f64::consts::PI / (x * x);
        let u = (logu8 / 8.0).exp();
        let p = if u == 0.0 {
            (logu8 / 8.0 + w.ln()).exp()
        } else {
            let u8 = logu8.exp();
            let u8cub = u8.powf(3.0);
            let mut p = 1.0;
            p = 1.0 + u8cub * p;
            p = 1.0 + u8 * u8 * p;
            p = 1.0 + u8 * p;
            w * u * p
        };
        sf = 1.0 - p;
    } else {
        // P = 2 (v - v^4 + v^9 - v^16 + ...), v = exp(-2x^2)
        let v = (-2.0 * x * x).exp();
        let vsq = v * v;
        let v3 = v.powf(3.0);
        let mut p = 1.0;
        let mut vpwr = v3 * v3 * v;
        p = 1.0 - vpwr * p;
        vpwr = v3 * vsq;
        p = 1.0 - vpwr * p;
        vpwr = v3;
        p = 1.0 - vpwr * p;
        sf = 2.0 * v * p;
    }
    sf.clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------
// One-sided exact distribution (smirnov)
// ---------------------------------------------------------------------------

const SMIRNOV_MAX_COMPUTE_N: i64 = 1_000_000;
const SM_UPPER_MAX_TERMS: i64 = 3;
const SM_UPPERSUM_MIN_N: i64 = 10;
const SM_MAX_EXPONENT: i64 = 960;
/// cephes MINLOG = log(2^-1074)
const MINLOG: f64 = -7.451_332_191_019_412e2;

/// `floor(n*x)` and the fractional part, computed exactly in double-double.
fn mod_nx(n: i64, x: f64) -> (f64, i64, f64) {
    let nxd = Dd::new(x).mul_f(n as f64);
    let nxfloord = nxd.floor();
    let alphad = nxd.sub(nxfloord);
    let mut alpha = alphad.hi;
    let mut nxfloor = nxfloord.hi as i64;
    if alpha == 1.0 {
        nxfloor += 1;
        alpha = 0.0;
    }
    (alpha, nxfloor, nxd.hi)
}

/// Binomial coefficient kept as (mantissa in dd, binary exponent).
fn update_binomial(cman: &mut Dd, cexpt: &mut i64, n: i64, j: i64) {
    let rat = Dd::new((n - j) as f64).div_f(j as f64 + 1.0);
    let (man2, expt) = cman.mul(rat).frexp();
    *cexpt += expt as i64;
    *cman = man2;
}

fn pow_d(a: Dd, m: i64) -> Dd {
    if m <= 0 {
        if m == 0 {
            return Dd::new(1.0);
        }
        return Dd::new(1.0).div(pow_d(a, -m));
    }
    if a.eq_f(0.0) {
        return Dd::new(0.0);
    }
    let ans = a.hi.powf(m as f64);
    let r = a.lo / a.hi;
    let mut adj = m as f64 * r;
    if adj.abs() > 1e-8 {
        if adj.abs() < 1e-4 {
            // First two terms of the Taylor series of (1+r)^m.
            adj += (m as f64 * r) * ((m - 1) as f64 / 2.0 * r);
        } else {
            adj = (m as f64 * r.ln_1p()).exp_m1();
        }
    }
    Dd::new(ans).add_f(ans * adj)
}

fn pow2(a: f64, b: f64, m: i64) -> f64 {
    pow_d(Dd::new(a).add_f(b), m).hi
}

fn next_power_of_2(x: f64) -> f64 {
    let q = ldexp(x, 1 - f64::MANTISSA_DIGITS as i32);
    let mut l = (q + x).abs();
    if l == 0.0 {
        l = x.abs();
    } else {
        let lint = l as i32;
        if lint as f64 == l {
            l = lint as f64;
        }
    }
    l
}

/// `a^m = significand * 2^exponent`, avoiding overflow/underflow.
fn pow2_scaled_d(a: Dd, m: i64) -> (Dd, i64) {
    if m <= 0 {
        if m == 0 {
            return (Dd::new(1.0), 0);
        }
        let (ans, ae1) = pow2_scaled_d(a, -m);
        let (ans, ae2) = Dd::new(1.0).div(ans).frexp();
        return (ans, -ae1 + ae2 as i64);
    }
    let (y, ye) = a.frexp();
    let ye = ye as i64;
    if m == 1 {
        return (y, ye);
    }
    let mut max_expt = SM_MAX_EXPONENT;
    if m as f64 * (y.hi - 1.0) / y.hi < -(SM_MAX_EXPONENT as f64) * std::f64::consts::LN_2 {
        let lg2y = y.hi.ln() / std::f64::consts::LN_2;
        let lg_ans = m as f64 * lg2y;
        if lg_ans <= -(SM_MAX_EXPONENT as f64) {
            max_expt =
                (next_power_of_2(-(SM_MAX_EXPONENT as f64) / lg2y + 1.0) / 2.0) as i32 as i64;
        }
    }
    if m <= max_expt {
        let (ans, anse) = pow_d(y, m).frexp();
        return (ans, anse as i64 + m * ye);
    }
    let q = m / max_expt;
    let r = m % max_expt;
    let (y2r, y2re) = pow2_scaled_d(y, r);
    let (y2m, y2me) = pow2_scaled_d(y, max_expt);
    let (y2mq, mut y2mqe) = pow2_scaled_d(y2m, q);
    let (ans, anse) = y2r.mul(y2mq).frexp();
    y2mqe += y2me * q;
    let anse = anse as i64 + y2mqe + y2re + m * ye;
    (ans, anse)
}

/// `((a+b)/(c+d))^m` in double-double.
fn pow4_d(a: f64, b: f64, c: f64, d: f64, m: i64) -> Dd {
    if m <= 0 {
        if m == 0 {
            return Dd::new(1.0);
        }
        return pow4_d(c, d, a, b, -m);
    }
    let num = Dd::new(a).add_f(b);
    let den = Dd::new(c).add_f(d);
    if num.eq_f(0.0) {
        return if den.eq_f(0.0) {
            Dd {
                hi: f64::NAN,
                lo: f64::NAN,
            }
        } else {
            Dd::new(0.0)
        };
    }
    if den.eq_f(0.0) {
        let inf = if num.hi < 0.0 || (num.hi == 0.0 && num.lo < 0.0) {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        return Dd { hi: inf, lo: inf };
    }
    pow_d(num.div(den), m)
}

/// One term `A_v(n, x) = C(n,v) (1-x-v/n)^(n-v) (x+v/n)^(v-1)`.
fn compute_av(n: i64, x: f64, v: i64, cman: Dd, cexpt: i64) -> Dd {
    let t2x = Dd::new((n - v) as f64).div_f(n as f64).sub_f(x);
    let (t2, t2e) = pow2_scaled_d(t2x, n - v);
    let t1x = Dd::new(v as f64).div_f(n as f64).add_f(x);
    let (t1, t1e) = pow2_scaled_d(t1x, v - 1);
    let ans = t1.mul(t2).mul(cman);
    let anse = cexpt + t1e + t2e;
    // Exponents stay far inside i32 for any n we can hold in memory.
    ans.ldexp(anse.clamp(i32::MIN as i64, i32::MAX as i64) as i32)
}

/// Survival function of the one-sided Smirnov statistic, `P(D_n^+ >= x)`
/// — `scipy.special.smirnov(n, x)`. `None` unless `n >= 1` and `0 <= x <= 1`
/// (scipy returns NaN there).
pub fn smirnov_sf(n: i64, x: f64) -> Option<f64> {
    (n > 0 && (0.0..=1.0).contains(&x)).then(|| smirnov(n, x))
}

fn smirnov(n: i64, x: f64) -> f64 {
    if !(n > 0 && (0.0..=1.0).contains(&x)) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let (alpha, nxfl, _nx) = mod_nx(n, x);
    let mut n1mxfl = n - nxfl - if alpha == 0.0 { 0 } else { 1 };
    let mut n1mxceil = n - nxfl;
    // If alpha is 0, the last term is excluded from both sums.
    if alpha == 0.0 {
        n1mxfl -= 1;
        n1mxceil += 1;
    }
    // Special case: x <= 1/n.
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        let t = pow2(1.0, x, n - 1);
        let cdf = x * t;
        return 1.0 - cdf;
    }
    // Special case: the sf underflows.
    if (-2 * n) as f64 * x * x < MINLOG {
        return 0.0;
    }
    // Special case: x >= 1 - 1/n.
    if nxfl >= n - 1 {
        return pow2(1.0, -x, n);
    }
    // Special case: n too large to sum; asymptotic approximation.
    if n > SMIRNOV_MAX_COMPUTE_N {
        let logp = -(6.0 * n as f64 * x + 1.0).powf(2.0) / 18.0 / n as f64;
        let sf = if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            1.0 - (-logp.exp_m1())
        };
        return sf.clamp(0.0, 1.0);
    }
    let n_upper_terms = n - n1mxceil + 1;
    let use_upper_sum = (n_upper_terms <= 1 && x < 0.5)
        || (n >= SM_UPPERSUM_MIN_N
            && n_upper_terms <= SM_UPPER_MAX_TERMS
            && x <= 0.5 / (n as f64).sqrt());

    let (start, step, n_terms);
    let mut cman = Dd::new(1.0);
    let mut cexpt: i64 = 0;
    let mut aj;
    if use_upper_sum {
        start = n;
        step = -1;
        n_terms = n - n1mxceil + 1;
        aj = pow4_d(1.0, x, 1.0, 0.0, n - 1);
    } else {
        start = 0;
        step = 1;
        n_terms = n1mxfl + 1;
        let t2 = pow4_d(1.0, -x, 1.0, 0.0, n);
        aj = t2.div_f(x);
    }
    let vmid = n / 2;
    let mut aj_sum = Dd::new(0.0).add(aj);
    update_binomial(&mut cman, &mut cexpt, n, 0);
    let mut j = 1;
    while j < n_terms {
        let v = start + j * step;
        aj = compute_av(n, x, v, cman, cexpt);
        if aj.is_finite() && !aj.eq_f(0.0) {
            aj_sum = aj_sum.add(aj);
        }
        // Safe to terminate early?
        if !aj.eq_f(0.0) {
            if (4 * (n_terms - j)) as f64 * aj.hi.abs() < f64::EPSILON * aj_sum.hi
                && j != n_terms - 1
            {
                break;
            }
        } else if j > vmid {
            break;
        }
        update_binomial(&mut cman, &mut cexpt, n, j);
        j += 1;
    }
    let prob = aj_sum.mul_f(x).hi;
    let sf = if step < 0 { 1.0 - prob } else { prob };
    sf.clamp(0.0, 1.0)
}

// ---------------------------------------------------------------------------
// Two-sided finite-n distribution (kstwo)
// ---------------------------------------------------------------------------

const E128: i32 = 128;
const EP128: f64 = 3.402_823_669_209_385e38; // 2^128
const EM128: f64 = 2.938_735_877_055_719e-39; // 2^-128

/// `log(n!/n^n)` by Stirling's series with `n*log(n)` removed up front.
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    const STIRLING: [f64; 8] = [
        -0.029550653594771242,
        0.00641025641025641,
        -0.0019175269175269176,
        0.0008417508417508417,
        -0.0005952380952380953,
        0.0007936507936507937,
        -0.002777777777777778,
        0.08333333333333333,
    ];
    let rn = 1.0 / n;
    let z = rn / n;
    let mut poly = 0.0;
    for c in STIRLING {
        poly = poly * z + c;
    }
    n.ln() / 2.0 - n + (2.0 * std::f64::consts::PI).ln() / 2.0 + rn * poly
}

fn matmul(a: &[f64], b: &[f64], out: &mut [f64], m: usize) {
    for i in 0..m {
        for j in 0..m {
            let mut s = 0.0;
            for k in 0..m {
                s += a[i * m + k] * b[k * m + j];
            }
            out[i * m + j] = s;
        }
    }
}

/// CDF `P(D_n <= d)` by Durbin's matrix algorithm as organised by
/// Marsaglia, Tsang & Wang (2003).
fn kolmogn_dmtw_cdf(n: i64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;

    let mut hm = vec![0.0; m * m];
    let mut v: Vec<f64> = (1..=m).map(|j| 1.0 - h.powf(j as f64)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powf(m as f64) - 2.0 * h.powf(m as f64);
    v[m - 1] = (1.0 + tt) * fac;
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }

    let mut hpwr = vec![0.0; m * m];
    for i in 0..m {
        hpwr[i * m + i] = 1.0;
    }
    let mut tmp = vec![0.0; m * m];
    let mut nn = n;
    let mut expnt: i32 = 0;
    let mut hexpnt: i32 = 0;
    while nn > 0 {
        if nn % 2 == 1 {
            matmul(&hpwr, &hm, &mut tmp, m);
            std::mem::swap(&mut hpwr, &mut tmp);
            expnt += hexpnt;
        }
        matmul(&hm, &hm, &mut tmp, m);
        std::mem::swap(&mut hm, &mut tmp);
        hexpnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > EP128 {
            for e in hm.iter_mut() {
                *e /= EP128;
            }
            hexpnt += E128;
        }
        nn /= 2;
    }
    let mut p = hpwr[(k - 1) * m + (k - 1)];
    // Multiply by n!/n^n, rescaling to stay in range.
    for i in 1..=n {
        p = i as f64 * p / n as f64;
        if p.abs() < EM128 {
            p *= EP128;
            expnt -= E128;
        }
    }
    if expnt != 0 {
        p = ldexp(p, expnt);
    }
    p.clamp(0.0, 1.0)
}

fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2);
    if i == 0 {
        j1 = -ll - ceilf - 1;
        j2 = ll + ceilf - 1;
    } else {
        let ip1div2 = (i + 1) / 2;
        let ip1mod2 = (i + 1) % 2;
        if ip1mod2 == 0 {
            if ip1div2 == n + 1 {
                j1 = n - ll - ceilf - 1;
                j2 = n + ll + ceilf - 1;
            } else {
                j1 = ip1div2 - 1 - ll - roundf - 1;
                j2 = ip1div2 + ll - 1 + ceilf - 1;
            }
        } else {
            j1 = ip1div2 - 1 - ll - 1;
            j2 = ip1div2 + ll + roundf - 1;
        }
    }
    ((j1 + 2).max(0), j2.min(n))
}

/// CDF `P(D_n <= x)` by the Pomeranz (1974) recursion.
fn kolmogn_pomeranz_cdf(n: i64, x: f64) -> f64 {
    let t = n as f64 * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    let mut gpower = vec![0.0; npwrs];
    let mut twogpower = vec![0.0; npwrs];
    let mut onem2gpower = vec![0.0; npwrs];
    gpower[0] = 1.0;
    twogpower[0] = 1.0;
    onem2gpower[0] = 1.0;
    let mut expnt: i32 = 0;
    let (g_over_n, two_g_over_n, one_minus_two_g_over_n) =
        (g / n as f64, 2.0 * g / n as f64, (1.0 - 2.0 * g) / n as f64);
    for m in 1..npwrs {
        gpower[m] = gpower[m - 1] * g_over_n / m as f64;
        twogpower[m] = twogpower[m - 1] * two_g_over_n / m as f64;
        onem2gpower[m] = onem2gpower[m - 1] * one_minus_two_g_over_n / m as f64;
    }
    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s): (i64, i64) = (0, 0);
    let mut conv = vec![0.0; 2 * npwrs];
    let (mut j1, mut _j2) = pomeranz_j1j2(0, n, ll, ceilf, roundf);
    for i in 1..(2 * n + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.fill(0.0);
        let (nj1, nj2) = pomeranz_j1j2(i, n, ll, ceilf, roundf);
        j1 = nj1;
        _j2 = nj2;
        let pwrs = if i == 1 || i == 2 * n + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = nj2 - k1 + 1;
        if ln2 > 0 {
            // np.convolve(V0[k1-V0s : k1-V0s+ln2], pwrs[:ln2]) with numpy's
            // slice clamping.
            let clamp = |s: i64, len: usize| s.clamp(0, len as i64) as usize;
            let a_lo = clamp(k1 - v0s, npwrs);
            let a_hi = clamp(k1 - v0s + ln2, npwrs).max(a_lo);
            let a = &v0[a_lo..a_hi];
            let b = &pwrs[..clamp(ln2, npwrs)];
            let conv_len_full = if a.is_empty() || b.is_empty() {
                0
            } else {
                a.len() + b.len() - 1
            };
            for (c, slot) in conv.iter_mut().enumerate().take(conv_len_full) {
                let lo = c.saturating_sub(b.len() - 1);
                let hi = c.min(a.len() - 1);
                let mut s = 0.0;
                for kk in lo..=hi {
                    s += a[kk] * b[c - kk];
                }
                *slot = s;
            }
            let conv_start = (j1 - k1).max(0) as usize;
            let conv_len = (nj2 - j1 + 1).max(0) as usize;
            // V1[:conv_len] = conv[conv_start : conv_start + conv_len]
            let src = conv_start.min(conv_len_full)..(conv_start + conv_len).min(conv_len_full);
            for (dst, v) in v1.iter_mut().zip(&conv[src]) {
                *dst = *v;
            }
            let vmax = v1.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if 0.0 < vmax && vmax < EM128 {
                for e in v1.iter_mut() {
                    *e *= EP128;
                }
                expnt -= E128;
            }
            v1s = v0s + j1 - k1;
        }
    }
    let idx = n - v1s;
    let mut ans = if idx >= 0 && (idx as usize) < npwrs {
        v1[idx as usize]
    } else {
        0.0
    };
    for m in 1..=n {
        if ans.abs() > EP128 {
            ans *= EM128;
            expnt += E128;
        }
        ans *= m as f64;
    }
    if expnt != 0 {
        ans = ldexp(ans, expnt);
    }
    ans.clamp(0.0, 1.0)
}

/// CDF `P(D_n <= x)` by the Pelz–Good (1976) asymptotic series.
fn kolmogn_pelz_good_cdf(n: i64, x: f64) -> f64 {
    use std::f64::consts::PI;
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let pi2 = PI.powi(2);
    let pi4 = PI.powi(4);
    let pi6 = PI.powi(6);
    let z = (n as f64).sqrt() * x;
    let (zsquared, zthree, zfour, zsix) = (z.powi(2), z.powi(3), z.powi(4), z.powi(6));
    let qlog = -pi2 / 8.0 / zsquared;
    if qlog < -708.0 {
        return 0.0;
    }
    let q = qlog.exp();

    let k1a = -zsquared;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * zsix + 2.0 * zfour;
    let k2b = (2.0 * zfour - 5.0 * zsquared) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * zsquared) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * zsquared) / 64.0;
    let k3c = pi4 * (-60.0 * zsquared + 212.0 * zfour) / 16.0;
    let k3b = pi2 * (135.0 * zfour - 96.0 * zsix) / 4.0;
    let k3a = -30.0 * zsix - 90.0 * z.powi(8);

    let mut k = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for kk in (1..=maxk).rev() {
        let m = (2 * kk - 1) as f64;
        let (msquared, mfour, msix) = (m.powi(2), m.powi(4), m.powi(6));
        let qpower = q.powf((8 * kk) as f64);
        let coeffs = [
            1.0,
            k1a + k1b * msquared,
            k2a + k2b * msquared + k2c * mfour,
            k3a + k3b * msquared + k3c * mfour + k3d * msix,
        ];
        for (ki, c) in k.iter_mut().zip(coeffs) {
            *ki *= qpower;
            *ki += c;
        }
    }
    let div = [z, 6.0 * zfour, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (ki, d) in k.iter_mut().zip(div) {
        *ki *= q;
        *ki *= sqrt2pi;
        *ki /= d;
    }
    let q = (-pi2 / 2.0 / zsquared).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let mut k2extra = 0.0;
    let mut k3extra = 0.0;
    for kk in (1..=maxk).rev() {
        let ks = kk as f64;
        let ksquared = (kk * kk) as f64;
        let qp = q.powf(ksquared);
        k2extra += ksquared * qp;
        let kspi = PI * ks;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qp;
    }
    k2extra *= pi2 * sqrt2pi / (-36.0 * zthree);
    k[2] += k2extra;
    k3extra *= pi2 * sqrt2pi / (216.0 * zsix);
    k[3] += k3extra;
    let nf = n as f64;
    for (i, ki) in k.iter_mut().enumerate() {
        *ki /= nf.powf(i as f64 / 2.0);
    }
    k.iter().sum()
}

/// Survival function of the two-sided one-sample KS statistic,
/// `P(D_n >= x)` — `scipy.stats.kstwo.sf(x, n)`. `None` if `n == 0`,
/// `n > 2^53` or `x` is NaN.
pub fn kstwo_sf(n: u64, x: f64) -> Option<f64> {
    if n == 0 || n > 1 << 53 || x.is_nan() {
        return None;
    }
    Some(kolmogn_sf(n as i64, x))
}

/// `kstwo.sf` for valid arguments (`n >= 1`, `x` not NaN).
pub(crate) fn kolmogn_sf(n: i64, x: f64) -> f64 {
    let nf = n as f64;
    // rv_continuous support is (0.5/n, 1): outside it the sf is 1 / 0.
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.5 / nf {
        return 1.0;
    }
    let t = nf * x;
    if t <= 1.0 {
        // Ruben–Gambino: 1/2n <= x <= 1/n
        let prob = if n <= 140 {
            let mut p = 1.0;
            let c = 2.0 * t - 1.0;
            for i in 1..=n {
                p *= i as f64 * (1.0 / nf) * c;
            }
            p
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - prob).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        // Ruben–Gambino upper end.
        let prob = 2.0 * (1.0 - x).powf(nf);
        return prob.clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 0.754693 {
            return (1.0 - kolmogn_dmtw_cdf(n, x)).clamp(0.0, 1.0);
        }
        if nxsquared <= 4.0 {
            return (1.0 - kolmogn_pomeranz_cdf(n, x)).clamp(0.0, 1.0);
        }
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return (2.0 * smirnov(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        kolmogn_dmtw_cdf(n, x)
    } else {
        kolmogn_pelz_good_cdf(n, x)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_arguments_are_not_computable() {
        assert_eq!(kstwo_sf(0, 0.5), None);
        assert_eq!(kstwo_sf(10, f64::NAN), None);
        assert_eq!(kstwobign_sf(f64::NAN), None);
        assert_eq!(smirnov_sf(0, 0.5), None);
        assert_eq!(smirnov_sf(5, 1.5), None);
    }

    #[test]
    fn support_edges() {
        assert_eq!(kstwo_sf(10, 0.0), Some(1.0));
        assert_eq!(kstwo_sf(10, 0.05), Some(1.0)); // x <= 1/(2n)
        assert_eq!(kstwo_sf(10, 1.0), Some(0.0));
        assert_eq!(kstwobign_sf(0.0), Some(1.0));
        assert_eq!(smirnov_sf(1, 0.25), Some(0.75));
        // kstwo.sf(x, 1) = 2(1-x) on [1/2, 1]: the Ruben-Gambino upper end.
        assert!((kstwo_sf(1, 0.75).unwrap() - 0.5).abs() < 1e-15);
    }
}
