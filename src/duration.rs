//! Human-readable durations ("250ms", "90s", "15m", "1h30m", "2d", "1.5h") to and from
//! milliseconds.
//!
//! Used by SLA specs (window sizes, budgets) and by `slawatch simulate` (offsets of injected
//! incidents). Pure string work: it never reads the clock and never allocates on the parse path.
//! Units are `ms`, `s`, `m`, `h`, `d` and `w`; components may be chained (`1h30m`, `1d 12h`) and
//! a component may carry a decimal fraction (`1.5h`), which is rounded to the nearest
//! millisecond. Negative durations are rejected; a bare `0` is accepted.

use thiserror::Error;

/// Why a duration string was rejected. The message always says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// The input was empty or only whitespace.
    #[error("empty duration: expected e.g. \"90s\", \"15m\", \"1h30m\", \"2d\" or \"250ms\"")]
    Empty,
    /// The input is not a sequence of `<number><unit>` components.
    #[error(
        "invalid duration {input:?}: {reason}; expected numbers with units ms, s, m, h, d or w, \
         e.g. \"90s\", \"1h30m\", \"2d\""
    )]
    Invalid {
        /// The rejected input.
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The duration does not fit in an `i64` number of milliseconds.
    #[error("duration {input:?} is too large")]
    Overflow {
        /// The rejected input.
        input: String,
    },
}

const MS_PER_S: i64 = 1_000;
const MS_PER_M: i64 = 60 * MS_PER_S;
const MS_PER_H: i64 = 60 * MS_PER_M;
const MS_PER_D: i64 = 24 * MS_PER_H;
const MS_PER_W: i64 = 7 * MS_PER_D;

fn unit_ms(unit: &str) -> Option<i64> {
    Some(match unit {
        "ms" => 1,
        "s" => MS_PER_S,
        "m" => MS_PER_M,
        "h" => MS_PER_H,
        "d" => MS_PER_D,
        "w" => MS_PER_W,
        _ => return None,
    })
}

/// Parses a duration such as `"90s"`, `"15m"`, `"1h30m"`, `"2d"`, `"250ms"` or `"1.5h"` into
/// milliseconds.
///
/// Components are `<digits>[.<digits>]<unit>`, optionally separated by spaces; a bare `"0"` is
/// zero. Fractions are rounded to the nearest millisecond (half away from zero).
pub fn parse_duration_ms(input: &str) -> Result<i64, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(0);
    }
    let invalid = |reason: String| DurationError::Invalid {
        input: input.to_string(),
        reason,
    };
    let overflow = || DurationError::Overflow {
        input: input.to_string(),
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        // Integer part.
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = &s[int_start..i];
        // Optional fraction.
        let mut frac_digits = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = &s[frac_start..i];
            if frac_digits.is_empty() {
                return Err(invalid("a '.' must be followed by digits".into()));
            }
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            let rest = &s[int_start..];
            return Err(if rest.starts_with('-') {
                invalid("negative durations are not allowed".into())
            } else {
                invalid(format!("expected a number at {rest:?}"))
            });
        }
        // Unit.
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        if unit.is_empty() {
            return Err(invalid(format!(
                "missing unit after {:?}",
                &s[int_start..unit_start]
            )));
        }
        let Some(per) = unit_ms(unit) else {
            return Err(invalid(format!("unknown unit {unit:?}")));
        };
        let int: i64 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| overflow())?
        };
        let mut ms = int.checked_mul(per).ok_or_else(overflow)?;
        if !frac_digits.is_empty() {
            // Only the first 9 fraction digits matter at millisecond resolution for any unit
            // up to weeks; keep the arithmetic in i128 so it cannot overflow.
            let kept = &frac_digits[..frac_digits.len().min(9)];
            let num: i128 = kept.parse().map_err(|_| overflow())?;
            let den: i128 = 10i128.pow(kept.len() as u32);
            let frac = (num * i128::from(per) * 2 + den) / (2 * den);
            ms = ms
                .checked_add(i64::try_from(frac).map_err(|_| overflow())?)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(ms).ok_or_else(overflow)?;
    }
    Ok(total)
}

/// Formats milliseconds as the shortest chained form that [`parse_duration_ms`] reads back to
/// the same value: `5_400_000` → `"1h30m"`, `90_000` → `"1m30s"`, `250` → `"250ms"`,
/// `0` → `"0s"`. Negative values get a leading `-` (which the parser rejects).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
    }
    let mut rest = ms.unsigned_abs();
    for (per, unit) in [
        (MS_PER_D as u64, "d"),
        (MS_PER_H as u64, "h"),
        (MS_PER_M as u64, "m"),
        (MS_PER_S as u64, "s"),
        (1, "ms"),
    ] {
        let n = rest / per;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            rest -= n * per;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_units() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_duration_ms("1w"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
    }

    #[test]
    fn parses_chains_fractions_and_spaces() {
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1d 12h"), Ok(129_600_000));
        assert_eq!(parse_duration_ms(" 2m30s500ms "), Ok(150_500));
        assert_eq!(parse_duration_ms("1.5h"), Ok(5_400_000));
        assert_eq!(parse_duration_ms(".5s"), Ok(500));
        assert_eq!(parse_duration_ms("0.0015s"), Ok(2));
        assert_eq!(parse_duration_ms("1.0001ms"), Ok(1));
    }

    #[test]
    fn rejects_bad_input_with_helpful_messages() {
        assert_eq!(parse_duration_ms(""), Err(DurationError::Empty));
        assert_eq!(parse_duration_ms("   "), Err(DurationError::Empty));
        for bad in ["10", "1h30", "5x", "h", "-5m", "1.h", "1,5h", "1h-"] {
            let err = parse_duration_ms(bad).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, DurationError::Invalid { .. }),
                "{bad}: {err:?}"
            );
            assert!(msg.contains("expected"), "{bad}: {msg}");
        }
        assert!(
            parse_duration_ms("-5m")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        assert!(
            parse_duration_ms("5x")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(matches!(
            parse_duration_ms("99999999999999999999d"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration_ms("9223372036854775807s"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn formats_shortest_chain() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(250), "250ms");
        assert_eq!(format_duration_ms(90_000), "1m30s");
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(172_800_000), "2d");
        assert_eq!(format_duration_ms(1_500), "1s500ms");
        assert_eq!(format_duration_ms(-60_000), "-1m");
        assert_eq!(format_duration_ms(i64::MIN).chars().next(), Some('-'));
    }

    #[test]
    fn format_then_parse_round_trips() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            // xorshift: deterministic spread over many magnitudes.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ms = (x >> (x % 40 + 10)) as i64;
            let text = format_duration_ms(ms);
            assert_eq!(parse_duration_ms(&text), Ok(ms), "{ms} -> {text}");
        }
        assert_eq!(
            parse_duration_ms(&format_duration_ms(i64::MAX)),
            Ok(i64::MAX)
        );
    }
}

/// Serde for durations written as text (`5m`, `8d`) in configuration files, held as ms.
pub mod serde_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration_ms(&s).map_err(serde::de::Error::custom)
    }
}
