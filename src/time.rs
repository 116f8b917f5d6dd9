//! RFC 3339 timestamps to and from epoch milliseconds.
//!
//! Hand-written because the decoder parses two timestamps per record on the hot path and a
//! general date library costs several times more; checked against chrono in the tests.
//! Never reads the wall clock.

use crate::session::EpochMs;

/// The first instant a timestamp can name: `0000-01-01T00:00:00.000Z`.
pub const MIN_EPOCH_MS: EpochMs = -62_167_219_200_000;
/// The last instant a timestamp can name: `9999-12-31T23:59:59.999Z`.
pub const MAX_EPOCH_MS: EpochMs = 253_402_300_799_999;

/// Parses an RFC 3339 timestamp (`2026-11-01T00:00:02.253Z`, `...+02:00`, `t`/space separator,
/// any number of fraction digits) into epoch milliseconds, truncating below the millisecond.
///
/// Instants outside years 0000–9999 in UTC are rejected (a leap second or an offset can push a
/// local time there), so every parsed instant formats back to a timestamp that parses.
pub fn parse_rfc3339_ms(s: &str) -> Option<EpochMs> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // RFC 3339 allows a leap second (60); it is folded into the next second's first instant.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(secs * 1000 + millis).filter(|ms| (MIN_EPOCH_MS..=MAX_EPOCH_MS).contains(ms))
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: EpochMs) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Formats epoch milliseconds compactly for people: `2026-11-01 14:00Z`.
pub fn format_minute(ms: EpochMs) -> String {
    let s = format_rfc3339_ms(ms);
    format!("{} {}Z", &s[..10], &s[11..16])
}

/// Serde for epoch milliseconds written as RFC 3339 text (`2026-11-01T14:00:00.000Z`).
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &super::EpochMs, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::EpochMs, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339_ms(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: `{s}`")))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_ms(s: &str) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_millis())
    }

    #[test]
    fn agrees_with_chrono_on_valid_timestamps() {
        for s in [
            "2026-11-01T00:00:02.253Z",
            "2026-10-31T23:59:59.967Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "2024-02-29T12:00:00+02:00",
            "2026-11-01T00:00:02.2537891-05:30",
            "2026-11-01t00:00:02.1z",
            "2000-03-01T00:00:00.000Z",
            "2100-12-31T23:59:59.999Z",
        ] {
            assert_eq!(parse_rfc3339_ms(s), chrono_ms(s), "{s}");
        }
    }

    /// Found by fuzzing (`fuzz/regressions/record/leap-second-into-year-10000`): a leap second
    /// at the end of 9999 was accepted as year 10000, which formats as a timestamp nothing
    /// parses; an offset does the same at either end of the range.
    #[test]
    fn instants_outside_years_0000_to_9999_are_rejected() {
        for s in [
            "9999-12-31T23:59:60.999Z",
            "9999-12-31T23:59:59-00:01",
            "0000-01-01T00:00:00+00:01",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
        assert_eq!(
            parse_rfc3339_ms("9999-12-31T23:59:59.999Z"),
            Some(MAX_EPOCH_MS)
        );
        assert_eq!(parse_rfc3339_ms("0000-01-01T00:00:00Z"), Some(MIN_EPOCH_MS));
        for ms in [MIN_EPOCH_MS, MAX_EPOCH_MS] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for s in [
            "",
            "yesterday",
            "2026-11-01",
            "2026-11-01T00:00:02",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T00:00:00.Z",
            "2026-11-01T00:00:00+0200",
            "2026-11-01T00:00:00Zjunk",
            "2026-11-01T00:00:00.12aZ",
            "２026-11-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for ms in [0, 1_761_955_202_253, -1, 4_102_444_799_999, 951_782_400_000] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(
            format_rfc3339_ms(1_761_955_202_253),
            "2025-11-01T00:00:02.253Z"
        );
    }
}
