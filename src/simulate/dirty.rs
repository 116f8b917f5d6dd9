//! Malformed lines of every kind a real pipeline produces, derived from a clean line the
//! simulator has just written.
//!
//! Edits are byte-level on the simulator's own, known field order (never a JSON round trip), so
//! a dirty line is the same bytes whatever `serde_json` features the build enables. Never emits
//! a newline inside a line and never reads the clock.

use rand::Rng;

use super::json::{push_fixed, push_rfc3339_ms};

/// The kinds of malformed line [`super::SimConfig::dirty_fraction`] mixes into a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DirtyKind {
    /// Not JSON at all: a log line, an HTML error page, logfmt, or binary garbage that is not
    /// even UTF-8. Never starts with `{` or `[`.
    NonJson,
    /// A session object cut short (a strict prefix, so never valid JSON). Starts with `{`.
    TruncatedJson,
    /// Valid JSON where one field has the wrong type (`duration_ms` as a string, `status` as a
    /// number, `tool_calls` as an object, ...).
    WrongTypes,
    /// `duration_ms` negative and `ended_at` before `started_at`.
    NegativeDuration,
    /// `ended_at` (and sometimes `started_at`) not RFC 3339: month 13, 31 November, no offset,
    /// `dd/mm/yyyy`, empty, ...
    BadTimestamp,
    /// Otherwise valid, but `"schema":"agent-session/v2"` (an unknown major version).
    UnknownSchemaMajor,
    /// One of `session_id`, `agent`, `prompt_version`, `model`, `status` missing.
    MissingRequiredField,
    /// A valid record above 1 MiB (a 1–1.06 MiB `attributes.transcript`). Rare and capped by
    /// [`super::SimConfig::max_oversized`].
    Oversized,
    /// A JSON array holding the record instead of the record itself.
    JsonArray,
}

impl DirtyKind {
    /// Every kind, in declaration order.
    pub const ALL: [DirtyKind; 9] = [
        DirtyKind::NonJson,
        DirtyKind::TruncatedJson,
        DirtyKind::WrongTypes,
        DirtyKind::NegativeDuration,
        DirtyKind::BadTimestamp,
        DirtyKind::UnknownSchemaMajor,
        DirtyKind::MissingRequiredField,
        DirtyKind::Oversized,
        DirtyKind::JsonArray,
    ];

    /// Snake-case name, the key in [`super::Stats::dirty`].
    pub fn name(self) -> &'static str {
        match self {
            DirtyKind::NonJson => "non_json",
            DirtyKind::TruncatedJson => "truncated_json",
            DirtyKind::WrongTypes => "wrong_types",
            DirtyKind::NegativeDuration => "negative_duration",
            DirtyKind::BadTimestamp => "bad_timestamp",
            DirtyKind::UnknownSchemaMajor => "unknown_schema_major",
            DirtyKind::MissingRequiredField => "missing_required_field",
            DirtyKind::Oversized => "oversized",
            DirtyKind::JsonArray => "json_array",
        }
    }

    /// Relative weight when picking a kind: 1 for all but `Oversized` (0.1).
    pub(crate) fn weight(self) -> f64 {
        if self == DirtyKind::Oversized {
            0.1
        } else {
            1.0
        }
    }
}

/// Size of the smallest oversized line: just above the 1 MiB line limit.
pub const OVERSIZED_MIN_BYTES: usize = 1 << 20;

/// Byte span of the first `"key":` field: (start of the key's quote, start of value, end of
/// value). The simulator writes top-level fields before nested ones with the same name.
fn field(line: &[u8], key: &str) -> Option<(usize, usize, usize)> {
    let pat_len = key.len() + 3;
    let pos = line.windows(pat_len).position(|w| {
        w[0] == b'"' && &w[1..=key.len()] == key.as_bytes() && &w[key.len() + 1..] == b"\":"
    })?;
    let vstart = pos + pat_len;
    Some((pos, vstart, value_end(line, vstart)))
}

/// End (exclusive) of the JSON value starting at `start`; string- and nesting-aware.
fn value_end(b: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => {
                    in_str = false;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return i;
                    }
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                b',' if depth == 0 => return i,
                _ => {}
            }
        }
        i += 1;
    }
    b.len()
}

fn replace(line: &mut Vec<u8>, key: &str, value: &[u8]) {
    if let Some((_, vs, ve)) = field(line, key) {
        line.splice(vs..ve, value.iter().copied());
    }
}

fn remove(line: &mut Vec<u8>, key: &str) {
    if let Some((ks, _, ve)) = field(line, key) {
        // Take the following comma, or else the preceding one.
        if line.get(ve) == Some(&b',') {
            line.drain(ks..=ve);
        } else if ks > 0 && line[ks - 1] == b',' {
            line.drain(ks - 1..ve);
        } else {
            line.drain(ks..ve);
        }
    }
}

fn value<'a>(line: &'a [u8], key: &str) -> &'a [u8] {
    field(line, key).map_or(&[], |(_, vs, ve)| &line[vs..ve])
}

/// What the dirty line is built from: the clean line and the numbers behind it.
pub(crate) struct Source<'a> {
    /// The clean session line, as just written.
    pub line: &'a [u8],
    /// Its `started_at`, epoch milliseconds.
    pub started_ms: i64,
    /// Its `duration_ms` in tenths of a millisecond.
    pub duration_tenths: i64,
}

/// Appends a dirty line of `kind` built from `src`, with session id `d-<dirty_seq>` wherever
/// the line still has an id.
pub(crate) fn write<R: Rng>(
    kind: DirtyKind,
    src: &Source<'_>,
    dirty_seq: u64,
    rng: &mut R,
    out: &mut Vec<u8>,
) {
    let id = format!("\"d-{dirty_seq:09}\"");
    let mut line = src.line.to_vec();
    replace(&mut line, "session_id", id.as_bytes());
    match kind {
        DirtyKind::NonJson => {
            let mut ts = Vec::with_capacity(24);
            push_rfc3339_ms(&mut ts, src.started_ms);
            let ts = String::from_utf8_lossy(&ts);
            let agent = String::from_utf8_lossy(value(&line, "agent")).replace('"', "");
            match rng.random_range(0..4u32) {
                0 => out.extend_from_slice(
                    format!(
                        "{ts} ERROR ingest-worker-3: upstream connection reset while flushing \
                         session {}",
                        id.trim_matches('"')
                    )
                    .as_bytes(),
                ),
                1 => out.extend_from_slice(
                    b"<html><head><title>502 Bad Gateway</title></head><body><center>\
                      <h1>502 Bad Gateway</h1></center></body></html>",
                ),
                2 => out.extend_from_slice(
                    format!(
                        "session_id={} agent={agent} status={} duration_ms={}",
                        id.trim_matches('"'),
                        String::from_utf8_lossy(value(&line, "status")).replace('"', ""),
                        String::from_utf8_lossy(value(&line, "duration_ms")),
                    )
                    .as_bytes(),
                ),
                _ => {
                    // Binary garbage: a corrupted message, not valid UTF-8.
                    out.extend_from_slice(&[0xff, 0xfe, 0x00, 0x1b, 0x8b, 0x08, 0xc3]);
                    for _ in 0..rng.random_range(8..48) {
                        let b: u8 = rng.random();
                        out.push(if b == b'\n' || b == b'\r' { 0xfd } else { b });
                    }
                }
            }
            return;
        }
        DirtyKind::TruncatedJson => {
            let cut = rng.random_range(line.len() / 4..line.len() - 1);
            line.truncate(cut.max(1));
        }
        DirtyKind::WrongTypes => match rng.random_range(0..6u32) {
            0 => {
                let d = value(&line, "duration_ms").to_vec();
                let mut q = vec![b'"'];
                q.extend_from_slice(&d);
                q.push(b'"');
                replace(&mut line, "duration_ms", &q);
            }
            1 => {
                let t = value(&line, "turns").to_vec();
                let mut q = vec![b'"'];
                q.extend_from_slice(&t);
                q.push(b'"');
                replace(&mut line, "turns", &q);
            }
            2 => replace(&mut line, "status", b"1"),
            3 => replace(&mut line, "usage", b"\"n/a\""),
            4 => replace(&mut line, "tool_calls", b"{\"name\":\"search_kb\"}"),
            _ => replace(&mut line, "quality", b"0.5"),
        },
        DirtyKind::NegativeDuration => {
            let mut d = Vec::new();
            push_fixed(&mut d, -src.duration_tenths.max(1), 1);
            replace(&mut line, "duration_ms", &d);
            let mut ts = vec![b'"'];
            push_rfc3339_ms(
                &mut ts,
                src.started_ms - (src.duration_tenths.max(1) + 9) / 10,
            );
            ts.push(b'"');
            replace(&mut line, "ended_at", &ts);
        }
        DirtyKind::BadTimestamp => {
            const BAD: [&str; 8] = [
                "\"2026-11-01 00:00:02\"",
                "\"2026-13-01T00:00:02.253Z\"",
                "\"2026-11-31T10:00:00.000Z\"",
                "\"2026-11-01T25:00:02.253Z\"",
                "\"01/11/2026 00:00:02\"",
                "\"yesterday\"",
                "\"\"",
                "\"2026-11-01T00:00:02.253\"",
            ];
            let pick = |rng: &mut R| BAD[rng.random_range(0..BAD.len())].as_bytes();
            let bad = pick(rng);
            replace(&mut line, "ended_at", bad);
            if rng.random_bool(0.5) {
                let bad = pick(rng);
                replace(&mut line, "started_at", bad);
            }
        }
        DirtyKind::UnknownSchemaMajor => {
            line.splice(1..1, b"\"schema\":\"agent-session/v2\",".iter().copied());
        }
        DirtyKind::MissingRequiredField => {
            const REQUIRED: [&str; 5] =
                ["session_id", "agent", "prompt_version", "model", "status"];
            remove(&mut line, REQUIRED[rng.random_range(0..REQUIRED.len())]);
        }
        DirtyKind::Oversized => {
            let pad = OVERSIZED_MIN_BYTES + rng.random_range(1_024..65_536);
            if let Some((_, vs, _)) = field(&line, "attributes") {
                let mut ins = Vec::with_capacity(pad + 20);
                ins.extend_from_slice(b"\"transcript\":\"");
                ins.resize(ins.len() + pad, b'x');
                ins.extend_from_slice(b"\",");
                line.splice(vs + 1..vs + 1, ins);
            }
        }
        DirtyKind::JsonArray => {
            out.push(b'[');
            out.extend_from_slice(&line);
            out.push(b']');
            return;
        }
    }
    out.extend_from_slice(&line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_spans_follow_json_nesting() {
        let l = br#"{"a":"x\"y","b":{"c":[1,{"d":2}]},"status":"ok","e":3}"#;
        let (_, vs, ve) = field(l, "a").unwrap();
        assert_eq!(&l[vs..ve], br#""x\"y""#);
        let (_, vs, ve) = field(l, "b").unwrap();
        assert_eq!(&l[vs..ve], br#"{"c":[1,{"d":2}]}"#);
        let (_, vs, ve) = field(l, "e").unwrap();
        assert_eq!(&l[vs..ve], b"3");
        let mut m = l.to_vec();
        remove(&mut m, "e");
        assert_eq!(m, br#"{"a":"x\"y","b":{"c":[1,{"d":2}]},"status":"ok"}"#);
        remove(&mut m, "a");
        assert_eq!(m, br#"{"b":{"c":[1,{"d":2}]},"status":"ok"}"#);
        assert!(field(l, "zz").is_none());
    }
}
