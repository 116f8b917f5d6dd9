//! The `single` topology's checkpoint written part by part: a *base* file holding every part
//! and a *log* of increments after it, each increment the parts that changed, the parts that
//! are gone and the shell's own small state (applied offsets, open traces). Part ids and values
//! are opaque bytes here ([`crate::checkpoint`] makes them).
//!
//! Why a log and not a sled tree: sled 0.34 stores large values as blobs, and after a SIGKILL
//! its recovery removed blobs it considered newer than its stable log — even ones written
//! before a successful `flush()` (see [`Store::put_checkpoint`]). A dedupe bucket or the rest
//! part easily exceeds its blob threshold. An append-only file with a checksum per record and
//! one `fsync` per checkpoint has no such failure mode, and its recovery is a dozen lines.
//!
//! - A record is `len u32 | xxh3 u64 | body`, the body `generation u64 | seq u64 | meta |
//!   upserts | deletes` (lengths little-endian u32). It is durable once `append` returns
//!   (`fdatasync`); a record torn by a crash fails its checksum, and it and everything after
//!   it are ignored and cut off before the next append — its offsets were never committed,
//!   since they are committed only after the append returns.
//! - The base is one record (all parts, `seq` 0) after a magic line, written to a temporary
//!   file, synced and renamed over the old base. Each base has a new generation; log records
//!   of another generation (a crash between renaming a new base and emptying the log) are not
//!   applied.
//! - When the log grows beyond the base (at least [`MIN_COMPACT_BYTES`]), the next checkpoint
//!   folds them into a new base: restoring reads at most about twice the state, and the
//!   writes of a compaction, spread over the increments since the last, at most double them.

use std::collections::BTreeMap;
use std::io::{Seek, Write};

use super::{Store, StoreError};

/// The base file (every part).
pub const BASE_FILE: &str = "checkpoint.base";
/// The log of increments after the base.
pub const LOG_FILE: &str = "checkpoint.log";
/// The checkpoint file of before parts (one CBOR value): still read, removed once a base exists.
pub const WHOLE_FILE: &str = "checkpoint.json";
const MAGIC: &[u8; 8] = b"SWPART1\n";
/// A log smaller than this is never folded into a new base.
pub const MIN_COMPACT_BYTES: u64 = 4 << 20;

/// A checkpoint read back: the shell's state and every live part.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartCheckpoint {
    pub meta: Vec<u8>,
    pub parts: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What one checkpoint wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartWrite {
    /// Bytes appended to the log, or written as a new base.
    pub bytes: u64,
    /// A new base was written (the first checkpoint, or a compaction).
    pub base: bool,
}

/// Where the log stands (known after the checkpoint was read or written once).
#[derive(Debug, Clone, Copy)]
pub(super) struct LogState {
    generation: u64,
    next_seq: u64,
    base_bytes: u64,
    log_bytes: u64,
}

struct Body<'a> {
    generation: u64,
    seq: u64,
    meta: &'a [u8],
    upserts: Vec<(&'a [u8], &'a [u8])>,
    deletes: Vec<&'a [u8]>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn record<'a>(
    generation: u64,
    seq: u64,
    meta: &[u8],
    upserts: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    deletes: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&generation.to_le_bytes());
    body.extend_from_slice(&seq.to_le_bytes());
    put_bytes(&mut body, meta);
    body.extend_from_slice(&(upserts.len() as u32).to_le_bytes());
    for (id, value) in upserts {
        put_bytes(&mut body, id);
        put_bytes(&mut body, value);
    }
    body.extend_from_slice(&(deletes.len() as u32).to_le_bytes());
    for id in deletes {
        put_bytes(&mut body, id);
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads bytes off the front of a record body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The first complete record of `bytes` and its length, or `None` when it is torn or corrupt.
fn read_record(bytes: &[u8]) -> Option<(Body<'_>, usize)> {
    let mut c = Cursor(bytes);
    let len = c.u32()? as usize;
    let sum = c.u64()?;
    let body = c.take(len)?;
    if xxhash_rust::xxh3::xxh3_64(body) != sum {
        return None;
    }
    let mut b = Cursor(body);
    let generation = b.u64()?;
    let seq = b.u64()?;
    let meta = b.bytes()?;
    let n = b.u32()? as usize;
    let mut upserts = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        upserts.push((b.bytes()?, b.bytes()?));
    }
    let n = b.u32()? as usize;
    let mut deletes = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        deletes.push(b.bytes()?);
    }
    Some((
        Body {
            generation,
            seq,
            meta,
            upserts,
            deletes,
        },
        12 + len,
    ))
}

impl Store {
    /// The checkpoint written by [`Store::put_part_checkpoint`], if there is one: the base
    /// with every complete increment of its generation applied in order. A torn tail (a crash
    /// during an append) is cut off the log, so the next append follows the last good record.
    pub fn part_checkpoint(&self) -> Result<Option<PartCheckpoint>, StoreError> {
        let loaded = self.load_parts()?;
        let mut log = self.parts_log.lock().unwrap_or_else(|e| e.into_inner());
        *log = loaded.as_ref().map(|(_, state)| *state);
        Ok(loaded.map(|(cp, _)| cp))
    }

    fn load_parts(&self) -> Result<Option<(PartCheckpoint, LogState)>, StoreError> {
        let Some(base) = self.read_file(BASE_FILE)? else {
            return Ok(None);
        };
        let corrupt = || StoreError::Cbor(format!("{BASE_FILE} is not a complete checkpoint base"));
        let rest = base.strip_prefix(MAGIC).ok_or_else(corrupt)?;
        let (body, _) = read_record(rest).ok_or_else(corrupt)?;
        let generation = body.generation;
        let mut cp = PartCheckpoint {
            meta: body.meta.to_vec(),
            parts: body
                .upserts
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        };
        let log = self.read_file(LOG_FILE)?.unwrap_or_default();
        let mut at = 0;
        let mut next_seq = 1;
        while let Some((body, len)) = read_record(&log[at..]) {
            if body.generation != generation || body.seq != next_seq {
                break;
            }
            cp.meta = body.meta.to_vec();
            for (k, v) in body.upserts {
                cp.parts.insert(k.to_vec(), v.to_vec());
            }
            for k in body.deletes {
                cp.parts.remove(k);
            }
            at += len;
            next_seq += 1;
        }
        if at < log.len() {
            tracing::warn!(
                kept = at,
                dropped = log.len() - at,
                "the checkpoint log ends in an incomplete or foreign record; it is cut off"
            );
            self.truncate_file(LOG_FILE, at as u64)?;
        }
        Ok(Some((
            cp,
            LogState {
                generation,
                next_seq,
                base_bytes: base.len() as u64,
                log_bytes: at as u64,
            },
        )))
    }

    /// Writes one checkpoint: `upserts` (id, value) and `deletes` since the last one, and the
    /// shell's `meta` whole. Without a base yet (the first checkpoint) `upserts` must hold
    /// every part and becomes the base; otherwise it is appended to the log, and the log is
    /// folded into a new base once it outgrows the base. Durable when this returns.
    pub fn put_part_checkpoint(
        &self,
        meta: &[u8],
        upserts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
    ) -> Result<PartWrite, StoreError> {
        let known = *self.parts_log.lock().unwrap_or_else(|e| e.into_inner());
        let state = match known {
            Some(s) => Some(s),
            None => self.load_parts()?.map(|(_, s)| s),
        };
        let Some(mut state) = state else {
            let bytes = self.write_base(0, meta, upserts.iter().map(|(k, v)| (&k[..], &v[..])))?;
            return Ok(PartWrite { bytes, base: true });
        };
        let rec = record(
            state.generation,
            state.next_seq,
            meta,
            upserts.iter().map(|(k, v)| (&k[..], &v[..])),
            deletes.iter().map(|k| &k[..]),
        );
        self.append_file(LOG_FILE, state.log_bytes, &rec)?;
        state.next_seq += 1;
        state.log_bytes += rec.len() as u64;
        *self.parts_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
        let mut write = PartWrite {
            bytes: rec.len() as u64,
            base: false,
        };
        if state.log_bytes > state.base_bytes.max(MIN_COMPACT_BYTES) {
            let (cp, state) = self.load_parts()?.expect("a base was just read");
            write.bytes += self.write_base(
                state.generation + 1,
                &cp.meta,
                cp.parts.iter().map(|(k, v)| (&k[..], &v[..])),
            )?;
            write.base = true;
        }
        Ok(write)
    }

    /// Writes a new base of generation `generation` and empties the log.
    fn write_base<'a>(
        &self,
        generation: u64,
        meta: &[u8],
        parts: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<u64, StoreError> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(record(generation, 0, meta, parts, std::iter::empty()));
        self.put_named_checkpoint(BASE_FILE, &bytes)?;
        // Log records of the previous generation are ignored from here on; emptying the log
        // only saves reading them.
        self.truncate_file(LOG_FILE, 0)?;
        // The checkpoint of before parts is superseded (a restart must not fall back to it).
        self.remove_file(WHOLE_FILE)?;
        *self.parts_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(LogState {
            generation,
            next_seq: 1,
            base_bytes: bytes.len() as u64,
            log_bytes: 0,
        });
        Ok(bytes.len() as u64)
    }

    fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.named_checkpoint(name)
    }

    /// Appends `bytes` at `at` (the end of the last good record) and syncs the data.
    fn append_file(&self, name: &str, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else {
            let key = format!("checkpoint/{name}");
            let mut v = self.db.get(&key)?.map(|v| v.to_vec()).unwrap_or_default();
            v.truncate(at as usize);
            v.extend_from_slice(bytes);
            self.db.insert(key, v)?;
            return Ok(());
        };
        let path = dir.join(name);
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let created = at == 0;
        f.set_len(at).map_err(io)?;
        f.seek(std::io::SeekFrom::Start(at)).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_data().map_err(io)?;
        if created {
            // A new file's directory entry must be durable too.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    fn truncate_file(&self, name: &str, len: u64) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else {
            let key = format!("checkpoint/{name}");
            if let Some(v) = self.db.get(&key)? {
                self.db.insert(key, &v[..(len as usize).min(v.len())])?;
            }
            return Ok(());
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f.set_len(len).and_then(|()| f.sync_all()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    fn remove_file(&self, name: &str) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else {
            self.db.remove(format!("checkpoint/{name}"))?;
            return Ok(());
        };
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn parts(cp: &PartCheckpoint) -> Vec<(String, String)> {
        cp.parts
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.clone()).unwrap(),
                    String::from_utf8(v.clone()).unwrap(),
                )
            })
            .collect()
    }

    fn reopen(store: Store, dir: &std::path::Path) -> Store {
        drop(store);
        Store::open(dir).unwrap()
    }

    #[test]
    fn a_base_and_increments_read_back_as_their_sum_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.part_checkpoint().unwrap(), None);
            let w = store
                .put_part_checkpoint(b"m1", &[kv("a", "1"), kv("b", "1")], &[])
                .unwrap();
            assert!(w.base);
            let w = store
                .put_part_checkpoint(b"m2", &[kv("b", "2"), kv("c", "2")], &[b"a".to_vec()])
                .unwrap();
            assert!(!w.base);
            store
                .put_part_checkpoint(b"m3", &[kv("d", "3")], &[])
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let cp = store.part_checkpoint().unwrap().unwrap();
        assert_eq!(cp.meta, b"m3");
        assert_eq!(
            parts(&cp),
            [("b", "2"), ("c", "2"), ("d", "3")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // Appending after a reopen continues the same log.
        store
            .put_part_checkpoint(b"m4", &[], &[b"d".to_vec()])
            .unwrap();
        let again = reopen(store, dir.path());
        let cp = again.part_checkpoint().unwrap().unwrap();
        assert_eq!((cp.meta.as_slice(), cp.parts.len()), (&b"m4"[..], 2));
    }

    /// A store whose log holds two records, `a` = 1 then 2 (meta `m1`, `m2`).
    fn two_records_of_a() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put_part_checkpoint(b"m1", &[kv("a", "1")], &[])
            .unwrap();
        store
            .put_part_checkpoint(b"m2", &[kv("a", "2")], &[])
            .unwrap();
        (dir, store)
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_cut_off_before_the_next_append() {
        let (dir, store) = two_records_of_a();
        let log = dir.path().join(LOG_FILE);
        let good = std::fs::metadata(&log).unwrap().len();
        store
            .put_part_checkpoint(b"m3", &[kv("a", "3")], &[])
            .unwrap();
        let full = std::fs::metadata(&log).unwrap().len();
        // A crash in the middle of the third append.
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(full - 3).unwrap();
        drop(f);
        let store = reopen(store, dir.path());
        let cp = store.part_checkpoint().unwrap().unwrap();
        assert_eq!(
            (cp.meta.as_slice(), parts(&cp)[0].1.as_str()),
            (&b"m2"[..], "2")
        );
        assert_eq!(std::fs::metadata(&log).unwrap().len(), good);
        store
            .put_part_checkpoint(b"m4", &[kv("a", "4")], &[])
            .unwrap();
        let cp = reopen(store, dir.path())
            .part_checkpoint()
            .unwrap()
            .unwrap();
        assert_eq!(
            (cp.meta.as_slice(), parts(&cp)[0].1.as_str()),
            (&b"m4"[..], "4")
        );
    }

    #[test]
    fn a_log_that_outgrows_the_base_is_folded_into_a_new_base() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::fs::write(dir.path().join(WHOLE_FILE), b"old").unwrap();
        store
            .put_part_checkpoint(b"m", &[kv("small", "x")], &[])
            .unwrap();
        assert!(
            !dir.path().join(WHOLE_FILE).exists(),
            "a base supersedes the old file"
        );
        let big = "y".repeat(1 << 20);
        let mut bases = 0;
        for i in 0..6 {
            let w = store
                .put_part_checkpoint(
                    format!("m{i}").as_bytes(),
                    &[kv(&format!("k{}", i % 2), &big)],
                    &[],
                )
                .unwrap();
            bases += usize::from(w.base);
        }
        // 6 MiB of log against a base of bytes: one fold at the first record beyond 4 MiB.
        assert_eq!(bases, 1);
        assert!(std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len() < 3 << 20);
        let cp = reopen(store, dir.path())
            .part_checkpoint()
            .unwrap()
            .unwrap();
        assert_eq!(cp.meta, b"m5");
        assert_eq!(cp.parts.len(), 3);
        assert_eq!(cp.parts[&b"k1".to_vec()].len(), 1 << 20);
    }

    #[test]
    fn records_of_an_older_base_are_not_applied() {
        let (dir, store) = two_records_of_a();
        let old_log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        // A new base (generation 1) whose log was not emptied before a crash.
        store
            .write_base(1, b"m9", [(&b"a"[..], &b"9"[..])].into_iter())
            .unwrap();
        std::fs::write(dir.path().join(LOG_FILE), &old_log).unwrap();
        let cp = reopen(store, dir.path())
            .part_checkpoint()
            .unwrap()
            .unwrap();
        assert_eq!(
            (cp.meta.as_slice(), parts(&cp)[0].1.as_str()),
            (&b"m9"[..], "9")
        );
    }
}
