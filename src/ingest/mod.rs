//! Where records come from, and what happens to the ones that cannot be used.
//!
//! A [`Source`] yields raw records with their position (file line now; Kafka partition and
//! offset through the same seam). [`decode`] turns bytes into sessions or reasons,
//! [`Dedupe`] drops a `session_id` seen twice with bounded memory, and [`DeadLetters`] keeps
//! every rejected record's original bytes with its reason.

pub mod binary;
pub mod decode;
pub mod encode;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::session::EpochMs;
use decode::RejectReason;

/// Where a raw record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// A line of a JSON Lines file or of stdin (1-based).
    /// `source` is shared by every record of a file, so a record does not copy its name.
    Line { source: Arc<str>, line: u64 },
    /// A Kafka message.
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line { source, line } => write!(f, "{source}:{line}"),
            Position::Kafka {
                topic,
                partition,
                offset,
            } => write!(f, "{topic}[{partition}]@{offset}"),
        }
    }
}

/// A record as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub bytes: Vec<u8>,
    pub position: Position,
}

/// A stream of raw records. File and stdin now; Kafka implements the same seam.
pub trait Source {
    /// The next record, `Ok(None)` at the end of a finite stream.
    fn next_record(&mut self) -> io::Result<Option<RawRecord>>;
    /// Bytes consumed so far (for progress).
    fn bytes_read(&self) -> u64;
}

/// Records as JSON Lines from any reader (a file, stdin). Empty lines are skipped; a trailing
/// `\r` is removed. A line longer than `max_line_bytes` is kept only up to that many bytes (the
/// decoder rejects it as too large either way) so one giant line cannot exhaust memory.
pub struct LinesSource<R> {
    reader: BufReader<R>,
    name: Arc<str>,
    line: u64,
    bytes_read: u64,
    max_line_bytes: usize,
}

/// Lines longer than this are truncated in memory (and in the dead-letter file, which says so).
pub const MAX_KEPT_LINE_BYTES: usize = 64 << 20;

impl LinesSource<File> {
    /// Opens a file.
    pub fn open(path: &Path) -> io::Result<LinesSource<File>> {
        Ok(LinesSource::new(
            File::open(path)?,
            path.display().to_string(),
        ))
    }
}

impl LinesSource<io::Stdin> {
    pub fn stdin() -> LinesSource<io::Stdin> {
        LinesSource::new(io::stdin(), "<stdin>".to_owned())
    }
}

impl<R: Read> LinesSource<R> {
    pub fn new(reader: R, name: String) -> LinesSource<R> {
        LinesSource {
            reader: BufReader::with_capacity(1 << 20, reader),
            name: name.into(),
            line: 0,
            bytes_read: 0,
            max_line_bytes: MAX_KEPT_LINE_BYTES,
        }
    }

    /// Reads one line into `buf` (without the newline), keeping at most `max_line_bytes`.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        let mut any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(any);
            }
            any = true;
            let (chunk, used, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            let room = self.max_line_bytes.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.reader.consume(used);
            self.bytes_read += used as u64;
            if done {
                return Ok(true);
            }
        }
    }
}

impl<R: Read> Source for LinesSource<R> {
    fn next_record(&mut self) -> io::Result<Option<RawRecord>> {
        let mut bytes = Vec::new();
        loop {
            if !self.read_line(&mut bytes)? {
                return Ok(None);
            }
            self.line += 1;
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(RawRecord {
                bytes,
                position: Position::Line {
                    source: self.name.clone(),
                    line: self.line,
                },
            }));
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

/// Length-delimited records: each a `u32` big-endian byte length, then that many bytes (how
/// `replay --input-format otlp-proto` reads protobuf `ExportTraceServiceRequest`s). A record's
/// position is its 1-based frame number as the "line". A length over `max_frame_bytes` or a
/// truncated last frame is an error: framing lost cannot be resynchronised.
pub struct FramedSource<R> {
    reader: BufReader<R>,
    name: Arc<str>,
    frame: u64,
    bytes_read: u64,
    max_frame_bytes: usize,
}

impl FramedSource<File> {
    pub fn open(path: &Path, max_frame_bytes: usize) -> io::Result<FramedSource<File>> {
        Ok(FramedSource::new(
            File::open(path)?,
            path.display().to_string(),
            max_frame_bytes,
        ))
    }
}

impl<R: Read> FramedSource<R> {
    pub fn new(reader: R, name: String, max_frame_bytes: usize) -> FramedSource<R> {
        FramedSource {
            reader: BufReader::with_capacity(1 << 20, reader),
            name: name.into(),
            frame: 0,
            bytes_read: 0,
            max_frame_bytes,
        }
    }
}

impl<R: Read> Source for FramedSource<R> {
    fn next_record(&mut self) -> io::Result<Option<RawRecord>> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.reader.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: truncated length of frame {}",
                            self.name,
                            self.frame + 1
                        ),
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let n = u32::from_be_bytes(len) as usize;
        self.frame += 1;
        if n > self.max_frame_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: frame {} claims {n} bytes, more than the limit of {} \
                     (is this a length-delimited file?)",
                    self.name, self.frame, self.max_frame_bytes
                ),
            ));
        }
        let mut bytes = vec![0u8; n];
        self.reader.read_exact(&mut bytes).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: frame {} truncated: {e}", self.name, self.frame),
            )
        })?;
        self.bytes_read += 4 + n as u64;
        Ok(Some(RawRecord {
            bytes,
            position: Position::Line {
                source: self.name.clone(),
                line: self.frame,
            },
        }))
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type HashSet64 = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// Drops sessions whose `session_id` was already seen, with bounded memory.
///
/// A redelivered record carries the same event time, so ids are kept in buckets by event time
/// and only the bucket of a record's own event time is consulted. Buckets older than the
/// horizon are forgotten (records that old are late for every window anyway), and a hard cap
/// on ids drops the oldest bucket early — counted, never silent. Ids are stored as 64-bit
/// hashes: with a million ids in memory the chance of any false duplicate is about 3e-8.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dedupe {
    bucket_ms: i64,
    horizon_ms: i64,
    max_ids: usize,
    buckets: BTreeMap<i64, HashSet64>,
    ids: usize,
    /// Buckets dropped early because of the cap.
    pub evicted_early: u64,
}

/// What a [`Dedupe`] holds besides its buckets of ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeHead {
    pub bucket_ms: i64,
    pub horizon_ms: i64,
    pub max_ids: usize,
    pub evicted_early: u64,
}

impl Dedupe {
    /// Remembers ids for `horizon_ms` of event time behind the newest, at most `max_ids`.
    pub fn new(horizon_ms: i64, max_ids: usize) -> Dedupe {
        Dedupe {
            bucket_ms: (horizon_ms / 8).max(60_000),
            horizon_ms,
            max_ids,
            buckets: BTreeMap::new(),
            ids: 0,
            evicted_early: 0,
        }
    }

    /// True the first time an id is seen (at this event time), false for a duplicate.
    pub fn first_time(&mut self, session_id: &str, event_time: EpochMs) -> bool {
        let bucket = event_time.div_euclid(self.bucket_ms);
        let fresh = self
            .buckets
            .entry(bucket)
            .or_default()
            .insert(xxh3_64(session_id.as_bytes()));
        if fresh {
            self.ids += 1;
            while self.ids > self.max_ids && self.buckets.len() > 1 {
                let (_, oldest) = self.buckets.pop_first().expect("non-empty");
                self.ids -= oldest.len();
                self.evicted_early += 1;
            }
        }
        fresh
    }

    /// Forgets ids of event times older than `newest_event_time − horizon`.
    pub fn expire(&mut self, newest_event_time: EpochMs) {
        let keep_from = (newest_event_time - self.horizon_ms).div_euclid(self.bucket_ms);
        while let Some((&b, _)) = self.buckets.first_key_value() {
            if b >= keep_from {
                break;
            }
            let (_, set) = self.buckets.pop_first().expect("non-empty");
            self.ids -= set.len();
        }
    }

    /// The ids of every event-time bucket, oldest first: a checkpoint writes each bucket
    /// apart, so one that no longer changes is not written again ([`crate::checkpoint`]).
    pub fn buckets(&self) -> impl Iterator<Item = (i64, &HashSet64)> {
        self.buckets.iter().map(|(b, ids)| (*b, ids))
    }

    /// The settings and counters besides the buckets.
    pub fn head(&self) -> DedupeHead {
        DedupeHead {
            bucket_ms: self.bucket_ms,
            horizon_ms: self.horizon_ms,
            max_ids: self.max_ids,
            evicted_early: self.evicted_early,
        }
    }

    /// A dedupe from its parts: the inverse of [`Dedupe::head`] and [`Dedupe::buckets`].
    pub fn from_parts(
        head: DedupeHead,
        buckets: impl IntoIterator<Item = (i64, HashSet64)>,
    ) -> Dedupe {
        let buckets: BTreeMap<i64, HashSet64> = buckets.into_iter().collect();
        Dedupe {
            bucket_ms: head.bucket_ms,
            horizon_ms: head.horizon_ms,
            max_ids: head.max_ids,
            ids: buckets.values().map(HashSet::len).sum(),
            buckets,
            evicted_early: head.evicted_early,
        }
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.ids
    }

    pub fn is_empty(&self) -> bool {
        self.ids == 0
    }
}

/// Counts of what happened to records, by outcome and reject reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestStats {
    pub records: u64,
    pub bytes: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Accepted sessions no spec selected.
    pub unmatched: u64,
    /// Rejects by reason code.
    pub rejected: BTreeMap<String, u64>,
}

impl IngestStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Writes rejected records, with their original bytes and the reason, as JSON Lines.
///
/// Each line is `{"position": …, "reason": code, "detail": message, "raw": "<original>"}`;
/// `raw_base64` replaces `raw` when the bytes are not UTF-8, and `truncated_at` says when a
/// huge record was only kept in part. The original bytes are always recoverable exactly.
pub struct DeadLetters {
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    pub written: u64,
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    position: &'a Position,
    reason: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated_at: Option<usize>,
}

impl DeadLetters {
    /// Dead letters appended to a file (created if missing).
    pub fn to_file(path: &Path) -> io::Result<DeadLetters> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(DeadLetters::to_writer(Box::new(f)))
    }

    pub fn to_writer(w: Box<dyn Write + Send>) -> DeadLetters {
        DeadLetters {
            out: Some(BufWriter::new(w)),
            written: 0,
        }
    }

    /// Counts only (for benchmarks).
    pub fn discard() -> DeadLetters {
        DeadLetters {
            out: None,
            written: 0,
        }
    }

    pub fn write(&mut self, record: &RawRecord, reason: &RejectReason) -> io::Result<()> {
        self.write_reason(
            &record.position,
            reason.code(),
            reason.to_string(),
            &record.bytes,
        )
    }

    /// Writes one dead letter for any reject reason (span rejects too): its code, its message
    /// and the bytes to keep.
    pub fn write_reason(
        &mut self,
        position: &Position,
        code: &'static str,
        detail: String,
        bytes: &[u8],
    ) -> io::Result<()> {
        self.written += 1;
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let truncated_at = (bytes.len() >= MAX_KEPT_LINE_BYTES).then_some(MAX_KEPT_LINE_BYTES);
        let (raw, raw_base64) = match std::str::from_utf8(bytes) {
            Ok(s) => (Some(s), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        };
        let letter = DeadLetter {
            position,
            reason: code,
            detail,
            raw,
            raw_base64,
            truncated_at,
        };
        serde_json::to_writer(&mut *out, &letter)?;
        out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_source_numbers_lines_and_skips_blank_ones() {
        let data = b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}";
        let mut src = LinesSource::new(&data[..], "t".into());
        let mut got = Vec::new();
        while let Some(r) = src.next_record().unwrap() {
            got.push((r.position.to_string(), String::from_utf8(r.bytes).unwrap()));
        }
        assert_eq!(
            got,
            [
                ("t:1".to_owned(), "{\"a\":1}".to_owned()),
                ("t:4".to_owned(), "{\"b\":2}".to_owned()),
                ("t:5".to_owned(), "{\"c\":3}".to_owned()),
            ]
        );
        assert_eq!(src.bytes_read(), data.len() as u64);
    }

    #[test]
    fn long_lines_are_capped_in_memory() {
        let mut data = vec![b'x'; 5000];
        data.push(b'\n');
        data.extend_from_slice(b"next\n");
        let mut src = LinesSource::new(&data[..], "t".into());
        src.max_line_bytes = 100;
        assert_eq!(src.next_record().unwrap().unwrap().bytes.len(), 100);
        assert_eq!(src.next_record().unwrap().unwrap().bytes, b"next");
    }

    #[test]
    fn dedupe_is_bounded_and_forgets_old_ids() {
        let hour = 3_600_000;
        let mut d = Dedupe::new(hour, 1_000_000);
        assert!(d.first_time("a", 0));
        assert!(!d.first_time("a", 0));
        assert!(d.first_time("b", 10));
        d.expire(3 * hour);
        assert!(d.is_empty());
        let mut capped = Dedupe::new(100 * hour, 10);
        for i in 0..100 {
            capped.first_time(&format!("s{i}"), i * hour);
        }
        // Never more than the cap, except for the newest bucket which is always kept
        // (buckets are 12.5 h here: at most 13 ids).
        assert!(capped.len() <= 13, "{}", capped.len());
        assert!(!capped.first_time("s99", 99 * hour));
        assert!(capped.evicted_early > 0);
    }
}
