//! The fast path of the record decoder: a scanner that knows contract v1's shape and reads a
//! record straight into the decoder's [`Wire`] form, without serde's generic machinery.
//!
//! It accepts only what `serde_json` would deserialize into the very same `Wire` — same field
//! values, same floating-point bits — and *gives up* (`None`) on anything else, however valid:
//! an escape in a string, a control character, a duplicate field, a wrong JSON type, an array
//! where a struct is expected, deep nesting, an oversized number, trailing bytes. The decoder
//! then runs the serde path from the start, so every reject reason and message is the serde
//! path's own; the scanner never produces an error. `tests/it/decode.rs` holds it to that
//! contract (the differential test against `serde_json` over the decode vectors and mutations of
//! them). No I/O.

use std::borrow::Cow;

use crate::session::AttrValue;

use super::{Attributes, Wire, WireFallback, WirePii, WireQuality, WireToolCall, WireUsage};

/// What the scanner returns: the record, or `None` to take the serde path.
type Scan<T> = Option<T>;

/// Nesting the scanner follows inside values it skips (serde_json's limit is 128; records
/// nest two levels).
const MAX_SKIP_DEPTH: u32 = 32;

/// The longest number text read here; longer ones (never written by producers) take the serde
/// path, which also owns the exponent-overflow cases.
const MAX_NUMBER_LEN: usize = 32;

/// Scans one record whose bytes are valid UTF-8.
pub(super) fn scan(text: &str) -> Scan<Wire<'_>> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        pos: 0,
    };
    s.ws();
    let wire = s.record()?;
    s.ws();
    (s.pos == s.b.len()).then_some(wire)
}

/// The offset of the first `"`, `\` or control character (below 0x20) in `bytes`, eight
/// bytes at a time: the bytes of a word that are one of those have their high bit set in
/// `(x − 0x01…) & !x & 0x80…` of `word ^ '"'`, `word ^ '\'` and `(word − 0x20…) & !word`, and
/// the lowest such byte is exact (a borrow only carries upwards).
fn special_byte(bytes: &[u8]) -> Scan<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let hits = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = chunks.remainder();
    let at = tail
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(offset + at)
}

/// The value of up to 19 ASCII digits.
fn digits(ds: &[u8]) -> u64 {
    ds.iter().fold(0, |v, &d| v * 10 + u64::from(d - b'0'))
}

/// `ddd.ddd` with at most 15 digits in all, as the correctly rounded `f64`: the digits are an
/// integer below 2^53 and the power of ten is exact, so one IEEE division is the correctly
/// rounded quotient (Clinger's fast path) — the value `str::parse` and serde_json give.
/// `None` for anything else (an exponent, more digits).
fn plain_decimal(number: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let dot = number.iter().position(|&c| c == b'.')?;
    let (int, frac) = (&number[..dot], &number[dot + 1..]);
    if int.len() + frac.len() > 15 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mantissa = digits(int) * 10u64.pow(frac.len() as u32) + digits(frac);
    Some(mantissa as f64 / POW10[frac.len()])
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
}

/// A set of field indices already seen in one object: a second occurrence is serde's
/// "duplicate field" error, so the scanner gives up.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, field: u32) -> Scan<()> {
        let bit = 1 << field;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Scan<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Reads a field's value with `read`, giving up when the object already had the field.
    fn once<T>(
        &mut self,
        seen: &mut Seen,
        field: u32,
        read: impl FnOnce(&mut Self) -> Scan<T>,
    ) -> Scan<T> {
        seen.first(field)?;
        read(self)
    }

    fn eat(&mut self, byte: u8) -> Scan<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// Calls `field(scanner, key)` for every member of an object; the scanner stands before the
    /// member's value and `field` reads it.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Scan<()>) -> Scan<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Calls `element(scanner)` for every element of an array.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Scan<()>) -> Scan<()> {
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            element(self)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string without escapes or control characters, borrowed from the record.
    fn string(&mut self) -> Scan<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let len = special_byte(&self.b[start..])?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        // The quotes are ASCII, so both ends are on character boundaries of valid UTF-8.
        Some(&self.text[start..start + len])
    }

    /// `null` is absent (`Ok(None)` in serde's terms); anything else is read by `value`.
    fn optional<T>(&mut self, value: impl FnOnce(&mut Self) -> Scan<T>) -> Scan<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        value(self).map(Some)
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        let end = self.pos + word.len();
        (self.b.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    fn opt_str(&mut self) -> Scan<Option<Cow<'a, str>>> {
        self.optional(|s| s.string().map(Cow::Borrowed))
    }

    fn opt_num(&mut self) -> Scan<Option<f64>> {
        self.optional(Self::number)
    }

    fn opt_bool(&mut self) -> Scan<Option<bool>> {
        self.optional(Self::boolean)
    }

    fn boolean(&mut self) -> Scan<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    /// A JSON number as the `f64` serde_json (with `float_roundtrip`) gives: integers that fit
    /// 2^53 exactly, everything else correctly rounded by `str::parse` — which is what
    /// serde_json's `u64 as f64`, `i64 as f64` and its correctly rounded float parser give too.
    /// `-0` is `-0.0` in both.
    fn number(&mut self) -> Scan<f64> {
        let start = self.pos;
        let b = self.b;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let int_start = i;
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let int_end = i;
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            integer = false;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        if i - start > MAX_NUMBER_LEN {
            return None;
        }
        // A digit after a leading zero (`01`) is left unread, so the caller finds no `,` and
        // gives up, as serde rejects it.
        self.pos = i;
        if integer && int_end - int_start <= 15 {
            let v = digits(&b[int_start..int_end]) as f64;
            return Some(if negative { -v } else { v });
        }
        if let Some(v) = plain_decimal(&b[int_start..i]) {
            return Some(if negative { -v } else { v });
        }
        let v: f64 = self.text[start..i].parse().ok()?;
        // serde_json reports a number out of range as an error.
        v.is_finite().then_some(v)
    }

    /// Skips any JSON value (an unknown field: forward compatible).
    fn skip(&mut self, depth: u32) -> Scan<()> {
        if depth > MAX_SKIP_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip(depth + 1)),
            b'[' => self.array(|s| s.skip(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    fn record(&mut self) -> Scan<Wire<'a>> {
        let mut w = Wire {
            schema: None,
            session_id: None,
            agent: None,
            prompt_version: None,
            model: None,
            provider: None,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            status: None,
            error_type: None,
            turns: None,
            usage: None,
            tool_calls: None,
            fallback: None,
            pii: None,
            quality: None,
            output_chars: None,
            context_tokens_max: None,
            attributes: None,
        };
        let mut seen = Seen::default();
        self.object(|s, key| {
            match key {
                "schema" => w.schema = s.once(&mut seen, 0, Self::opt_str)?,
                "session_id" => w.session_id = s.once(&mut seen, 1, Self::opt_str)?,
                "agent" => w.agent = s.once(&mut seen, 2, Self::opt_str)?,
                "prompt_version" => w.prompt_version = s.once(&mut seen, 3, Self::opt_str)?,
                "model" => w.model = s.once(&mut seen, 4, Self::opt_str)?,
                "provider" => w.provider = s.once(&mut seen, 5, Self::opt_str)?,
                "started_at" => w.started_at = s.once(&mut seen, 6, Self::opt_str)?,
                "ended_at" => w.ended_at = s.once(&mut seen, 7, Self::opt_str)?,
                "duration_ms" => w.duration_ms = s.once(&mut seen, 8, Self::opt_num)?,
                "status" => w.status = s.once(&mut seen, 9, Self::opt_str)?,
                "error_type" => w.error_type = s.once(&mut seen, 10, Self::opt_str)?,
                "turns" => w.turns = s.once(&mut seen, 11, Self::opt_num)?,
                "usage" => w.usage = s.once(&mut seen, 12, |s| s.optional(Self::usage))?,
                "tool_calls" => {
                    w.tool_calls = s.once(&mut seen, 13, |s| s.optional(Self::tool_calls))?
                }
                "fallback" => w.fallback = s.once(&mut seen, 14, |s| s.optional(Self::fallback))?,
                "pii" => w.pii = s.once(&mut seen, 15, |s| s.optional(Self::pii))?,
                "quality" => w.quality = s.once(&mut seen, 16, |s| s.optional(Self::quality))?,
                "output_chars" => w.output_chars = s.once(&mut seen, 17, Self::opt_num)?,
                "context_tokens_max" => {
                    w.context_tokens_max = s.once(&mut seen, 18, Self::opt_num)?
                }
                "attributes" => {
                    w.attributes = s.once(&mut seen, 19, |s| s.optional(Self::attributes))?
                }
                _ => s.skip(0)?,
            };
            Some(())
        })?;
        Some(w)
    }

    fn usage(&mut self) -> Scan<WireUsage> {
        let mut u = WireUsage::default();
        let mut seen = Seen::default();
        self.object(|s, key| {
            match key {
                "input_tokens" => u.input_tokens = s.once(&mut seen, 0, Self::opt_num)?,
                "output_tokens" => u.output_tokens = s.once(&mut seen, 1, Self::opt_num)?,
                "cost_usd" => u.cost_usd = s.once(&mut seen, 2, Self::opt_num)?,
                "cache_read_input_tokens" => {
                    u.cache_read_input_tokens = s.once(&mut seen, 3, Self::opt_num)?
                }
                "cache_creation_input_tokens" => {
                    u.cache_creation_input_tokens = s.once(&mut seen, 4, Self::opt_num)?
                }
                "reasoning_output_tokens" => {
                    u.reasoning_output_tokens = s.once(&mut seen, 5, Self::opt_num)?
                }
                _ => s.skip(1)?,
            };
            Some(())
        })?;
        Some(u)
    }

    fn tool_calls(&mut self) -> Scan<Vec<WireToolCall<'a>>> {
        let mut calls = Vec::new();
        self.array(|s| {
            let mut t = WireToolCall {
                name: None,
                status: None,
                duration_ms: None,
            };
            let mut seen = Seen::default();
            s.object(|s, key| {
                match key {
                    "name" => t.name = s.once(&mut seen, 0, Self::opt_str)?,
                    "status" => t.status = s.once(&mut seen, 1, Self::opt_str)?,
                    "duration_ms" => t.duration_ms = s.once(&mut seen, 2, Self::opt_num)?,
                    _ => s.skip(2)?,
                };
                Some(())
            })?;
            calls.push(t);
            Some(())
        })?;
        Some(calls)
    }

    fn fallback(&mut self) -> Scan<WireFallback<'a>> {
        let mut f = WireFallback {
            triggered: None,
            kind: None,
            reason: None,
        };
        let mut seen = Seen::default();
        self.object(|s, key| {
            match key {
                "triggered" => f.triggered = s.once(&mut seen, 0, Self::opt_bool)?,
                "kind" => f.kind = s.once(&mut seen, 1, Self::opt_str)?,
                "reason" => f.reason = s.once(&mut seen, 2, Self::opt_str)?,
                _ => s.skip(1)?,
            };
            Some(())
        })?;
        Some(f)
    }

    fn pii(&mut self) -> Scan<Vec<WirePii<'a>>> {
        let mut all = Vec::new();
        self.array(|s| {
            let mut p = WirePii {
                kind: None,
                handling: None,
                destination: None,
            };
            let mut seen = Seen::default();
            s.object(|s, key| {
                match key {
                    "type" => p.kind = s.once(&mut seen, 0, Self::opt_str)?,
                    "handling" => p.handling = s.once(&mut seen, 1, Self::opt_str)?,
                    "destination" => p.destination = s.once(&mut seen, 2, Self::opt_str)?,
                    _ => s.skip(2)?,
                };
                Some(())
            })?;
            all.push(p);
            Some(())
        })?;
        Some(all)
    }

    fn quality(&mut self) -> Scan<WireQuality> {
        let mut q = WireQuality {
            score: None,
            resolved: None,
            refusal: None,
        };
        let mut seen = Seen::default();
        self.object(|s, key| {
            match key {
                "score" => q.score = s.once(&mut seen, 0, Self::opt_num)?,
                "resolved" => q.resolved = s.once(&mut seen, 1, Self::opt_bool)?,
                "refusal" => q.refusal = s.once(&mut seen, 2, Self::opt_bool)?,
                _ => s.skip(1)?,
            };
            Some(())
        })?;
        Some(q)
    }

    /// `attributes`: every member kept in record order, duplicates included (as serde's map
    /// visitor keeps them); a value that is not a string, number or bool gives up.
    fn attributes(&mut self) -> Scan<Attributes> {
        let mut out = Vec::with_capacity(4);
        self.object(|s, key| {
            let value = match s.peek()? {
                b'"' => AttrValue::Str(s.string()?.to_owned()),
                b't' | b'f' => AttrValue::Bool(s.boolean()?),
                _ => AttrValue::Num(s.number()?),
            };
            out.push((key.to_owned(), value));
            Some(())
        })?;
        Some(Attributes(out))
    }
}
