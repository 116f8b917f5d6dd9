//! The incident archive: every incident episode (open and resolved) as an opaque JSON record
//! under its id, and the sessions that count against it — ids with time, key, segment and
//! reason, never content.
//!
//! Affected sessions are filed a batch at a time (the sessions one window handed out) as **one
//! value** keyed `record id ␟ earliest event time ␟ batch number`, the sessions in event-time
//! order (then session id) in a compact CBOR form: key and segments once per batch, not once
//! per session. One sled value per session cost about 3.5 KiB of sled memory each (its log and
//! cache, not the id's bytes); a batch of hundreds costs about what one did. An export reads a
//! record's batches with one range scan and merges them into event-time order (batches
//! overlap only when an incident's panes were handed out again, e.g. after a restore), holding
//! only the sessions of overlapping batches at a time.
//!
//! A session is filed at most once per incident: the archive remembers which sessions each
//! record holds (a 128-bit hash of event time and session id, read back from the record's
//! batches the first time a record is written to after the store opened), so a replay of the
//! same input files nothing twice. Stores written before batches (one key per session,
//! `record ␟ event time ␟ session id`) are migrated to batches when the archive is first
//! opened. The record's type lives in `alerts::archive`; this module stores, lists and
//! deletes, and never decides what to keep (the caller bounds it) nor reads the clock.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{Store, StoreError};
use crate::forensics::{AffectedReason, AffectedSession};

/// The tree of stores written before batches: one key per session.
const PER_SESSION_TREE: &str = "incidents/affected/v1";
/// Sessions per batch when a per-session store is migrated.
const MIGRATED_BATCH: usize = 1_000;

/// The incident trees of one store.
#[derive(Clone)]
pub struct IncidentArchive {
    db: sled::Db,
    records: sled::Tree,
    affected: sled::Tree,
    /// Per record written to since the store opened: the sessions it holds, as hashes (shared
    /// by the clones: the archives of a member's alert engines, one per stage-2 partition).
    filed: Arc<Mutex<HashMap<String, FxHashSet<u128>>>>,
}

impl Store {
    /// The incident archive kept in this store.
    pub fn incident_archive(&self) -> Result<IncidentArchive, StoreError> {
        let archive = IncidentArchive {
            db: self.db.clone(),
            records: self.db.open_tree("incidents/records/v1")?,
            affected: self.db.open_tree("incidents/affected/v2")?,
            filed: Arc::new(Mutex::new(HashMap::new())),
        };
        archive.migrate()?;
        Ok(archive)
    }
}

/// How one session of a batch was filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// Filed now.
    New,
    /// Already filed under the record.
    Already,
    /// Not looked at: the room the caller gave was used up.
    NoRoom,
}

/// A batch as stored: the keys and segments its sessions name, once each.
#[derive(Serialize, Deserialize)]
struct StoredBatch {
    keys: Vec<Vec<(String, String)>>,
    segments: Vec<String>,
    sessions: Vec<StoredSession>,
}

/// Session id, event time, index into `keys`, index into `segments` plus one (0: none),
/// reason.
#[derive(Serialize, Deserialize)]
struct StoredSession(String, i64, u32, u32, AffectedReason);

impl StoredBatch {
    /// The sessions in the order given.
    fn encode(sessions: &[&AffectedSession]) -> Result<Vec<u8>, StoreError> {
        let mut b = StoredBatch {
            keys: Vec::new(),
            segments: Vec::new(),
            sessions: Vec::with_capacity(sessions.len()),
        };
        for s in sessions {
            let key = match b.keys.iter().position(|k| *k == s.key) {
                Some(i) => i,
                None => {
                    b.keys.push(s.key.clone());
                    b.keys.len() - 1
                }
            };
            let segment = match &s.segment {
                None => 0,
                Some(seg) => match b.segments.iter().position(|x| x == seg) {
                    Some(i) => i + 1,
                    None => {
                        b.segments.push(seg.clone());
                        b.segments.len()
                    }
                },
            };
            b.sessions.push(StoredSession(
                s.session_id.clone(),
                s.event_time,
                key as u32,
                segment as u32,
                s.reason.clone(),
            ));
        }
        let mut out = Vec::new();
        ciborium::into_writer(&b, &mut out).map_err(|e| StoreError::Cbor(e.to_string()))?;
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Vec<AffectedSession>, StoreError> {
        let b: StoredBatch =
            ciborium::from_reader(bytes).map_err(|e| StoreError::Cbor(e.to_string()))?;
        b.sessions
            .into_iter()
            .map(
                |StoredSession(session_id, event_time, key, segment, reason)| {
                    let key = b.keys.get(key as usize).cloned();
                    let segment = match segment {
                        0 => Some(None),
                        i => b.segments.get(i as usize - 1).cloned().map(Some),
                    };
                    match (key, segment) {
                        (Some(key), Some(segment)) => Ok(AffectedSession {
                            session_id,
                            event_time,
                            key,
                            segment,
                            reason,
                        }),
                        _ => Err(StoreError::Cbor(
                            "affected batch: a session names a key or segment it does not hold"
                                .into(),
                        )),
                    }
                },
            )
            .collect()
    }
}

fn prefix(record: &str) -> Vec<u8> {
    let mut k = record.as_bytes().to_vec();
    k.push(0x1f);
    k
}

/// Event times sort as unsigned big-endian numbers once the sign bit is flipped.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// `record ␟ earliest event time ␟ batch number`: a record's batches in the order of their
/// earliest session.
fn batch_key(record: &str, earliest: i64, number: u64) -> Vec<u8> {
    let mut k = prefix(record);
    k.extend_from_slice(&time_bytes(earliest));
    k.extend_from_slice(&number.to_be_bytes());
    k
}

/// The earliest event time of the batch under `key`.
fn earliest_of(key: &[u8], prefix_len: usize) -> i64 {
    let mut t = [0; 8];
    t.copy_from_slice(&key[prefix_len..prefix_len + 8]);
    (u64::from_be_bytes(t) ^ (1 << 63)) as i64
}

/// What the archive remembers of a filed session.
fn filed_hash(event_time: i64, session_id: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&event_time.to_be_bytes());
    h.update(session_id.as_bytes());
    h.digest128()
}

fn export_order(a: &AffectedSession, b: &AffectedSession) -> Ordering {
    a.event_time
        .cmp(&b.event_time)
        .then_with(|| a.session_id.cmp(&b.session_id))
}

impl IncidentArchive {
    /// Stores (or replaces) a record.
    pub fn put<T: Serialize>(&self, id: &str, record: &T) -> Result<(), StoreError> {
        self.records
            .insert(id.as_bytes(), serde_json::to_vec(record)?)?;
        Ok(())
    }

    /// The record stored under `id`.
    pub fn get<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        self.records
            .get(id.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(StoreError::from))
            .transpose()
    }

    /// Every record, ordered by id.
    pub fn all<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.records
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    /// Files one batch of affected sessions under a record, as one value: those not filed
    /// under it before (nor earlier in the batch), in order, until `room` are filed. Says for
    /// each session how it was filed.
    pub fn add_affected(
        &self,
        record: &str,
        sessions: &[AffectedSession],
        room: u64,
    ) -> Result<Vec<Filed>, StoreError> {
        let mut filed = self.filed.lock().unwrap_or_else(|e| e.into_inner());
        if !filed.contains_key(record) {
            let held = self
                .affected(record)
                .map(|s| s.map(|s| filed_hash(s.event_time, &s.session_id)))
                .collect::<Result<FxHashSet<u128>, StoreError>>()?;
            filed.insert(record.to_owned(), held);
        }
        let held = filed.get_mut(record).expect("inserted above");
        let mut out = Vec::with_capacity(sessions.len());
        let mut new: Vec<&AffectedSession> = Vec::new();
        let mut hashes = FxHashSet::default();
        for s in sessions {
            if new.len() as u64 >= room {
                out.push(Filed::NoRoom);
                continue;
            }
            let h = filed_hash(s.event_time, &s.session_id);
            if held.contains(&h) || !hashes.insert(h) {
                out.push(Filed::Already);
            } else {
                new.push(s);
                out.push(Filed::New);
            }
        }
        if let Some(earliest) = new.iter().map(|s| s.event_time).min() {
            new.sort_by(|a, b| export_order(a, b));
            let key = batch_key(record, earliest, self.db.generate_id()?);
            self.affected.insert(key, StoredBatch::encode(&new)?)?;
            held.extend(hashes);
        }
        Ok(out)
    }

    /// Forgets what the archive remembers of a record's filed sessions (a record no longer
    /// written to); they are read back from the store if it is written to again.
    pub fn forget_filed(&self, record: &str) {
        let mut filed = self.filed.lock().unwrap_or_else(|e| e.into_inner());
        filed.remove(record);
    }

    /// The affected sessions of a record in event-time order (then session id), decoded as
    /// they are read: a batch at a time, merged with those it overlaps.
    pub fn affected(
        &self,
        record: &str,
    ) -> impl Iterator<Item = Result<AffectedSession, StoreError>> + use<> {
        let prefix = prefix(record);
        Merged {
            prefix_len: prefix.len(),
            batches: self.affected.scan_prefix(prefix).peekable(),
            pending: BinaryHeap::new(),
        }
    }

    /// Deletes a record but keeps its affected sessions (its incident moved to another instance
    /// with its stage-2 partition; the sessions filed here stay exportable if it comes back).
    pub fn remove_record(&self, id: &str) -> Result<(), StoreError> {
        self.records.remove(id.as_bytes())?;
        Ok(())
    }

    /// Deletes a record and its affected sessions.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.records.remove(id.as_bytes())?;
        let keys: Vec<sled::IVec> = self
            .affected
            .scan_prefix(prefix(id))
            .keys()
            .collect::<Result<_, _>>()?;
        for k in keys {
            self.affected.remove(k)?;
        }
        self.forget_filed(id);
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Writes sessions in the layout of stores before batches, one key and JSON value per
    /// session (what [`migrate`](Self::migrate) reads): for tests of the migration and the
    /// measurement of what the batches save. Nothing else writes this layout.
    #[doc(hidden)]
    pub fn write_per_session_layout(
        &self,
        record: &str,
        sessions: &[AffectedSession],
    ) -> Result<(), StoreError> {
        let old = self.db.open_tree(PER_SESSION_TREE)?;
        for s in sessions {
            let mut k = prefix(record);
            k.extend_from_slice(&time_bytes(s.event_time));
            k.extend_from_slice(s.session_id.as_bytes());
            old.insert(k, serde_json::to_vec(s)?)?;
        }
        Ok(())
    }

    /// Moves the sessions of a store written before batches (one key per session) into
    /// batches, record by record. A batch's key is a function of the record and the batch's
    /// place in it, so a migration interrupted before the old keys were removed rewrites the
    /// same batches when it runs again.
    fn migrate(&self) -> Result<(), StoreError> {
        static MIGRATING: Mutex<()> = Mutex::new(());
        let old = self.db.open_tree(PER_SESSION_TREE)?;
        if old.is_empty() {
            return Ok(());
        }
        let _one_at_a_time = MIGRATING.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((key, _)) = old.first()? {
            let end = key.iter().position(|b| *b == 0x1f).unwrap_or(key.len());
            let record = String::from_utf8_lossy(&key[..end]).into_owned();
            let range = old.scan_prefix(prefix(&record));
            let mut sessions: Vec<AffectedSession> = Vec::new();
            let mut keys = Vec::new();
            for kv in range {
                let (k, v) = kv?;
                sessions.push(serde_json::from_slice(&v)?);
                keys.push(k);
            }
            if keys.is_empty() {
                // A key without the separator: not a session of any record.
                old.remove(&key)?;
                continue;
            }
            for (n, chunk) in sessions.chunks(MIGRATED_BATCH).enumerate() {
                let chunk: Vec<&AffectedSession> = chunk.iter().collect();
                let key = batch_key(&record, chunk[0].event_time, u64::MAX - n as u64);
                self.affected.insert(key, StoredBatch::encode(&chunk)?)?;
            }
            for k in keys {
                old.remove(k)?;
            }
        }
        self.db.flush()?;
        Ok(())
    }
}

/// A record's batches merged into export order. Batches come in the order of their earliest
/// session; a session is handed out once no batch still unread can hold an earlier one.
struct Merged {
    prefix_len: usize,
    batches: std::iter::Peekable<sled::Iter>,
    pending: BinaryHeap<Reverse<Pending>>,
}

struct Pending(AffectedSession);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        export_order(&self.0, &other.0) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        export_order(&self.0, &other.0)
    }
}

impl Iterator for Merged {
    type Item = Result<AffectedSession, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let next_batch = match self.batches.peek() {
                Some(Ok((k, _))) => Some(earliest_of(k, self.prefix_len)),
                Some(Err(_)) => {
                    let Some(Err(e)) = self.batches.next() else {
                        unreachable!("peeked")
                    };
                    return Some(Err(e.into()));
                }
                None => None,
            };
            let read = match (next_batch, self.pending.peek()) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(t), Some(Reverse(p))) => t <= p.0.event_time,
            };
            if !read {
                return self.pending.pop().map(|Reverse(p)| Ok(p.0));
            }
            let Some(Ok((_, v))) = self.batches.next() else {
                unreachable!("peeked")
            };
            match StoredBatch::decode(&v) {
                Ok(sessions) => self
                    .pending
                    .extend(sessions.into_iter().map(|s| Reverse(Pending(s)))),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::AffectedReason;
    use crate::session::Status;

    fn session(id: &str, t: i64) -> AffectedSession {
        AffectedSession {
            session_id: id.into(),
            event_time: t,
            key: vec![("agent".into(), "a".into())],
            segment: Some("channel=web".into()),
            reason: AffectedReason::Status {
                status: Status::Error,
            },
        }
    }

    fn ids(a: &IncidentArchive, record: &str) -> Vec<String> {
        a.affected(record).map(|s| s.unwrap().session_id).collect()
    }

    #[test]
    fn records_and_affected_sessions_survive_reopen_in_time_order_once_each() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let a = store.incident_archive().unwrap();
            a.put("i-1", &serde_json::json!({"n": 1})).unwrap();
            a.put("i-2", &serde_json::json!({"n": 2})).unwrap();
            // Times before 1970 sort before those after; a session twice in one batch is
            // filed once.
            let batch: Vec<AffectedSession> = [
                ("s3", 3_000),
                ("s1", -5),
                ("s2", 3_000),
                ("s0", 1),
                ("s1", -5),
            ]
            .into_iter()
            .map(|(id, t)| session(id, t))
            .collect();
            let filed = a.add_affected("i-1", &batch, 100).unwrap();
            use Filed::*;
            assert_eq!(filed, [New, New, New, New, Already]);
            // Batches overlapping in time merge into one order.
            let filed = a
                .add_affected("i-1", &[session("s2", 3_000), session("s05", 1)], 100)
                .unwrap();
            assert_eq!(filed, [Already, New]);
            assert_eq!(
                a.add_affected("i-2", &[session("x", 0)], 100).unwrap(),
                [New]
            );
            a.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let a = store.incident_archive().unwrap();
        assert_eq!(ids(&a, "i-1"), ["s1", "s0", "s05", "s2", "s3"]);
        // What was filed before the reopen is still filed once.
        let again = a
            .add_affected("i-1", &[session("s3", 3_000), session("s4", 4_000)], 100)
            .unwrap();
        assert_eq!(again, [Filed::Already, Filed::New]);
        let all: Vec<serde_json::Value> = a.all().unwrap();
        assert_eq!(all.len(), 2);
        let first = a.affected("i-1").next().unwrap().unwrap();
        assert_eq!(first, session("s1", -5));
        a.remove("i-1").unwrap();
        assert_eq!(a.affected("i-1").count(), 0);
        assert_eq!(a.affected("i-2").count(), 1);
        assert!(a.get::<serde_json::Value>("i-1").unwrap().is_none());
    }

    #[test]
    fn the_room_bounds_what_a_batch_files() {
        let store = Store::temporary().unwrap();
        let a = store.incident_archive().unwrap();
        let batch: Vec<AffectedSession> = (0..5).map(|i| session(&format!("s{i}"), i)).collect();
        use Filed::*;
        assert_eq!(a.add_affected("i", &batch[..2], 10).unwrap(), [New, New]);
        // Beyond the room nothing is looked at, filed before or not.
        assert_eq!(
            a.add_affected("i", &batch, 2).unwrap(),
            [Already, Already, New, New, NoRoom]
        );
        assert_eq!(ids(&a, "i"), ["s0", "s1", "s2", "s3"]);
    }

    /// A store written before batches is migrated when the archive opens: same sessions, same
    /// order, still filed once. The committed fixture `tests/data/store/affected-per-session.json`
    /// holds keys (hex) and values in that version's layout: `record ␟ event time ␟ session id`
    /// and one `AffectedSession` as JSON.
    #[test]
    fn a_store_of_one_key_per_session_is_migrated_to_batches() {
        let fixture: Vec<(String, String)> = serde_json::from_str(include_str!(
            "../../tests/data/store/affected-per-session.json"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let old = store.db.open_tree(PER_SESSION_TREE).unwrap();
            for (k, v) in &fixture {
                let k: Vec<u8> = (0..k.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&k[i..i + 2], 16).unwrap())
                    .collect();
                old.insert(k, v.as_bytes()).unwrap();
            }
            // The legacy writer writes exactly these keys and values.
            let again = store.db.open_tree("legacy-check").unwrap();
            let sessions: Vec<AffectedSession> = fixture
                .iter()
                .map(|(_, v)| serde_json::from_str(v).unwrap())
                .collect();
            for (k, s) in fixture.iter().zip(&sessions) {
                let record = if k.0.starts_with(&hex(b"i-1")) {
                    "i-1"
                } else {
                    "i-2"
                };
                let mut key = prefix(record);
                key.extend_from_slice(&time_bytes(s.event_time));
                key.extend_from_slice(s.session_id.as_bytes());
                assert_eq!(hex(&key), k.0);
                assert_eq!(serde_json::to_string(s).unwrap(), k.1);
                again.insert(key, serde_json::to_vec(s).unwrap()).unwrap();
            }
            store.db.drop_tree("legacy-check").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let a = store.incident_archive().unwrap();
        assert!(store.db.open_tree(PER_SESSION_TREE).unwrap().is_empty());
        assert_eq!(ids(&a, "i-1"), ["s1", "s0", "s2", "s3"]);
        assert_eq!(ids(&a, "i-2"), ["x"]);
        let got: Vec<AffectedSession> = a.affected("i-1").map(Result::unwrap).collect();
        let want: Vec<AffectedSession> = fixture
            .iter()
            .filter(|(k, _)| k.starts_with(&hex(b"i-1\x1f")))
            .map(|(_, v)| serde_json::from_str(v).unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            a.add_affected("i-1", &[session("s2", 3_000)], 10).unwrap(),
            [Filed::Already]
        );
        // Opening again finds nothing left to migrate.
        let b = store.incident_archive().unwrap();
        assert_eq!(ids(&b, "i-1"), ["s1", "s0", "s2", "s3"]);
    }

    /// The figure behind filing a batch as one value (benches/README.md): disk and resident
    /// memory of 100,000 affected sessions in batches of 500 (a pane's bound) against one key
    /// per session. Run alone to read its resident memory:
    /// `cargo test --lib store::incidents::tests::cost_of -- --nocapture`.
    #[test]
    fn cost_of_100k_affected_sessions_in_batches_and_one_key_each() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                .unwrap_or(0)
        }
        // sled's flusher may remove a file (or directory) between the listing and its
        // metadata: what vanished takes no space.
        fn disk(dir: &std::path::Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            let mut n = 0;
            for m in entries
                .flatten()
                .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
            {
                n += if m.1.is_dir() { disk(&m.0) } else { m.1.len() };
            }
            n
        }
        let sessions: Vec<AffectedSession> = (0..100_000)
            .map(|i| {
                let mut s = session(&format!("sess-{i:08}-5f0c2e1d-9a7b"), 1_000 * i);
                s.key.push(("prompt_version".into(), "sp-v1".into()));
                s
            })
            .collect();
        let mut figures = Vec::new();
        for layout in ["batches", "one key per session"] {
            let dir = tempfile::tempdir().unwrap();
            let before = rss_kib();
            {
                let store = Store::open(dir.path()).unwrap();
                let a = store.incident_archive().unwrap();
                for chunk in sessions.chunks(500) {
                    if layout == "batches" {
                        a.add_affected("inc-1", chunk, u64::MAX).unwrap();
                    } else {
                        a.write_per_session_layout("inc-1", chunk).unwrap();
                    }
                }
                a.flush().unwrap();
                let grown = rss_kib().saturating_sub(before);
                figures.push((layout, disk(dir.path()), grown));
            }
        }
        for (layout, disk, rss) in &figures {
            println!(
                "100,000 affected sessions, {layout}: {:.1} MB on disk, resident memory +{:.1} MiB",
                *disk as f64 / 1e6,
                *rss as f64 / 1024.0
            );
        }
        assert!(
            figures[0].1 * 2 < figures[1].1,
            "batches take at most half the disk: {figures:?}"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
