//! Hand-written JSON fragments for the simulator's hot path: integers, fixed-point decimals and
//! RFC 3339 UTC timestamps with milliseconds, appended to a reused byte buffer.
//!
//! Never allocates per value and never reads the clock. Free text (agent names, tool names, ...)
//! is escaped once, up front, with `serde_json` ([`quoted`]); nothing here escapes at run time.

/// Appends the decimal digits of `v`.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `v` zero-padded to at least `width` digits.
#[inline]
pub(crate) fn push_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    out.extend_from_slice(&buf[start..]);
}

/// Appends `scaled / 10^decimals` as a JSON number with exactly `decimals` fraction digits,
/// e.g. `(22864, 1)` → `2286.4`, `(1046, 6)` → `0.001046`.
#[inline]
pub(crate) fn push_fixed(out: &mut Vec<u8>, scaled: i64, decimals: u32) {
    if scaled < 0 {
        out.push(b'-');
    }
    let abs = scaled.unsigned_abs();
    let pow = 10u64.pow(decimals);
    push_u64(out, abs / pow);
    if decimals > 0 {
        out.push(b'.');
        push_padded(out, abs % pow, decimals as usize);
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (without quotes) for Unix epoch milliseconds.
/// Years outside 0..=9999 are clamped into four digits' range by the caller's validation.
#[inline]
pub(crate) fn push_rfc3339_ms(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000) as u64;
    let (y, m, d) = civil_from_days(days);
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (mi, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1_000, rest % 1_000);
    let y = y.clamp(0, 9_999) as u64;
    let two = |v: u64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    let [y0, y1] = two(y / 100);
    let [y2, y3] = two(y % 100);
    let [m0, m1] = two(u64::from(m));
    let [d0, d1] = two(u64::from(d));
    let [h0, h1] = two(h);
    let [i0, i1] = two(mi);
    let [s0, s1] = two(s);
    out.extend_from_slice(&[
        y0,
        y1,
        y2,
        y3,
        b'-',
        m0,
        m1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        i0,
        i1,
        b':',
        s0,
        s1,
        b'.',
        b'0' + (milli / 100) as u8,
        b'0' + (milli / 10 % 10) as u8,
        b'0' + (milli % 10) as u8,
        b'Z',
    ]);
}

/// `"YYYY-MM-DDTHH:MM:SS.mmmZ"` for Unix epoch milliseconds (UTC), as the simulator writes
/// `started_at` / `ended_at`. Valid for years 0000–9999.
pub fn rfc3339_ms(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    push_rfc3339_ms(&mut out, ms);
    String::from_utf8(out).expect("timestamp bytes are ASCII")
}

/// `s` as a JSON string literal, quotes included, escaped by `serde_json`.
pub(crate) fn quoted(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).expect("a str always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(s(|o| push_u64(o, 0)), "0");
        assert_eq!(s(|o| push_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| push_padded(o, 123, 9)), "000000123");
        assert_eq!(s(|o| push_padded(o, 1_234_567_890, 9)), "1234567890");
        assert_eq!(s(|o| push_fixed(o, 22_864, 1)), "2286.4");
        assert_eq!(s(|o| push_fixed(o, 1_046, 6)), "0.001046");
        assert_eq!(s(|o| push_fixed(o, 10_000, 4)), "1.0000");
        assert_eq!(s(|o| push_fixed(o, -5, 1)), "-0.5");
        assert_eq!(s(|o| push_fixed(o, 7, 0)), "7");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(1_793_491_202_253), "2026-11-01T00:00:02.253Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }
}
