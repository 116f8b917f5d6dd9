//! Double-double ("dd") arithmetic: the small subset of the QD package that
//! scipy's `smirnov` (xsf `cephes/dd_real.h`) relies on, ported operation by
//! operation so that the one-sided Kolmogorov–Smirnov sums round like scipy's.
//!
//! Pure arithmetic: no I/O, no wall clock, no allocation.

/// An unevaluated sum `hi + lo` with `|lo| <= ulp(hi)/2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Dd {
    pub hi: f64,
    pub lo: f64,
}

/// `fl(a+b)` and its rounding error, assuming `|a| >= |b|`.
#[inline]
fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let c = s - a;
    (s, b - c)
}

/// `fl(a+b)` and its exact rounding error (Knuth).
#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let c = s - a;
    let d = b - c;
    let e = s - c;
    (s, (a - e) + d)
}

/// `fl(a*b)` and its exact rounding error (via a fused multiply-add).
#[inline]
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

/// C `ldexp`: `x * 2^n`, correctly rounded (musl `scalbn`).
pub(crate) fn ldexp(x: f64, n: i32) -> f64 {
    let p1023 = f64::from_bits(0x7fe0_0000_0000_0000); // 2^1023
    let pm969 = f64::from_bits(0x0360_0000_0000_0000); // 2^-1022 * 2^53
    let mut y = x;
    let mut n = n;
    if n > 1023 {
        y *= p1023;
        n -= 1023;
        if n > 1023 {
            y *= p1023;
            n -= 1023;
            n = n.min(1023);
        }
    } else if n < -1022 {
        // Scale in two steps so that subnormal results are rounded only once.
        y *= pm969;
        n += 1022 - 53;
        if n < -1022 {
            y *= pm969;
            n += 1022 - 53;
            n = n.max(-1022);
        }
    }
    y * f64::from_bits(((0x3ff + n) as u64) << 52)
}

/// C `frexp`: `x = m * 2^e` with `0.5 <= |m| < 1` (or `m = x` for 0, inf, NaN).
pub(crate) fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: normalise first.
        let (m, e) = frexp(x * f64::from_bits(0x43f0_0000_0000_0000)); // 2^64
        return (m, e - 64);
    }
    let m = f64::from_bits((bits & !(0x7ff_u64 << 52)) | (1022_u64 << 52));
    (m, exp - 1022)
}

impl Dd {
    pub const fn new(hi: f64) -> Self {
        Dd { hi, lo: 0.0 }
    }

    pub fn neg(self) -> Self {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }

    /// dd + dd (Briggs/Kahan, IEEE-style error bound).
    pub fn add(self, rhs: Dd) -> Dd {
        let (s1, s2) = two_sum(self.hi, rhs.hi);
        let (t1, t2) = two_sum(self.lo, rhs.lo);
        let s2 = s2 + t1;
        let (s1, s2) = quick_two_sum(s1, s2);
        let s2 = s2 + t2;
        let (s1, s2) = quick_two_sum(s1, s2);
        Dd { hi: s1, lo: s2 }
    }

    /// dd + double (also used for double + dd, which rounds identically).
    pub fn add_f(self, rhs: f64) -> Dd {
        let (s1, s2) = two_sum(self.hi, rhs);
        let s2 = s2 + self.lo;
        let (s1, s2) = quick_two_sum(s1, s2);
        Dd { hi: s1, lo: s2 }
    }

    /// dd - dd.
    pub fn sub(self, rhs: Dd) -> Dd {
        self.add(rhs.neg())
    }

    /// dd - double.
    pub fn sub_f(self, rhs: f64) -> Dd {
        let (s1, s2) = two_sum(self.hi, -rhs);
        let s2 = s2 + self.lo;
        let (s1, s2) = quick_two_sum(s1, s2);
        Dd { hi: s1, lo: s2 }
    }

    /// dd * dd.
    pub fn mul(self, rhs: Dd) -> Dd {
        let (p1, p2) = two_prod(self.hi, rhs.hi);
        let p2 = p2 + (self.hi * rhs.lo + self.lo * rhs.hi);
        let (p1, p2) = quick_two_sum(p1, p2);
        Dd { hi: p1, lo: p2 }
    }

    /// dd * double (also double * dd).
    pub fn mul_f(self, rhs: f64) -> Dd {
        let (p1, e1) = two_prod(self.hi, rhs);
        let (p2, e2) = two_prod(self.lo, rhs);
        let (p1, e1) = quick_two_sum(p1, e2 + p2 + e1);
        Dd { hi: p1, lo: e1 }
    }

    /// dd / dd (long division with three partial quotients).
    pub fn div(self, rhs: Dd) -> Dd {
        let q1 = self.hi / rhs.hi;
        let r = self.sub(rhs.mul_f(q1));
        let q2 = r.hi / rhs.hi;
        let r = r.sub(rhs.mul_f(q2));
        let q3 = r.hi / rhs.hi;
        let (q1, q2) = quick_two_sum(q1, q2);
        Dd { hi: q1, lo: q2 }.add_f(q3)
    }

    /// dd / double.
    pub fn div_f(self, rhs: f64) -> Dd {
        self.div(Dd::new(rhs))
    }

    /// `self == x` for a plain double (`lo` must be zero).
    pub fn eq_f(self, x: f64) -> bool {
        self.hi == x && self.lo == 0.0
    }

    pub fn is_finite(self) -> bool {
        self.hi.is_finite()
    }

    pub fn floor(self) -> Dd {
        let hi = self.hi.floor();
        if hi == self.hi {
            let lo = self.lo.floor();
            let (hi, lo) = quick_two_sum(hi, lo);
            Dd { hi, lo }
        } else {
            Dd { hi, lo: 0.0 }
        }
    }

    pub fn ldexp(self, e: i32) -> Dd {
        Dd {
            hi: ldexp(self.hi, e),
            lo: ldexp(self.lo, e),
        }
    }

    /// Mantissa in `[0.5, 1)` (or exactly 0.5 with a negative tail) and exponent.
    pub fn frexp(self) -> (Dd, i32) {
        let (mut man, mut exponent) = frexp(self.hi);
        let mut b1 = ldexp(self.lo, -exponent);
        if man.abs() == 0.5 && man * b1 < 0.0 {
            man *= 2.0;
            b1 *= 2.0;
            exponent -= 1;
        }
        (Dd { hi: man, lo: b1 }, exponent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_ldexp_roundtrip() {
        for &x in &[1.0, 0.75, 3.0e-310, -7.5e300, 1.0e-5, 123.456] {
            let (m, e) = frexp(x);
            assert!((0.5..1.0).contains(&m.abs()), "{x}: {m}");
            assert_eq!(ldexp(m, e), x);
        }
        assert_eq!(ldexp(1.0, -1074), f64::from_bits(1));
        assert_eq!(ldexp(1.0, 1024), f64::INFINITY);
    }

    #[test]
    fn dd_division_is_more_precise_than_double() {
        // 1/3 in double-double: hi + lo differs from 1/3 by < 1e-32.
        let third = Dd::new(1.0).div_f(3.0);
        let back = third.mul_f(3.0);
        assert_eq!(back.hi, 1.0);
        assert!(back.lo.abs() < 1e-31);
    }
}
