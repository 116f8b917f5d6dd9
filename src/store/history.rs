//! Operational history in sled: pane, hour and day buckets per key, what each key's first and
//! last session was, and which history deltas each origin has applied.
//!
//! A bucket's key is `resolution byte · start (big-endian, sign bit flipped, so byte order is
//! time order) · BucketKey`, so a range of one resolution is one ordered scan. A bucket is
//! stored in four trees under the same key ([`OpsSummary::split`]): the counts, sketches and
//! sums every question reads (`history/v2`, the one that is scanned), and the slowest list,
//! the costliest list and the PII session ids, read by point lookups only for the questions
//! that need them — a day bucket's 10,000 costliest sessions are most of its bytes, and
//! counting outcomes must not decode them. Values are CBOR (sketch bounds can be ±∞). A delta
//! is applied in one sled transaction together with its `(origin, seq)` mark, so applying it
//! twice — after a crash between a checkpoint and the acknowledgement — changes nothing.
//! History written by version 1 (one value per bucket) is split into the four trees once, when
//! the store opens.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Store, StoreError};
use crate::history::query::{Filter, GroupBy, Parts, Span};
use crate::history::summary::{PII_IDS_PER_CELL, PiiIds, TailList};
use crate::history::{BucketKey, Delta, HistoryConfig, OpsSummary, Resolution};
use crate::session::EpochMs;

/// A key's first and last session and how many it has had (whole key, all time retained).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    pub agent: String,
    pub prompt_version: String,
    pub model: String,
    pub first_seen: EpochMs,
    pub last_seen: EpochMs,
    pub sessions: u64,
}

fn time_bytes(t: EpochMs) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn bucket_id(res: Resolution, start: EpochMs, key: &BucketKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + 48);
    v.push(res.code());
    v.extend_from_slice(&time_bytes(start));
    v.extend_from_slice(key.encode().as_bytes());
    v
}

fn parse_bucket_id(id: &[u8]) -> Option<(EpochMs, BucketKey)> {
    let t = u64::from_be_bytes(id.get(1..9)?.try_into().ok()?) ^ (1 << 63);
    let key = BucketKey::decode(std::str::from_utf8(id.get(9..)?).ok()?)?;
    Some((t as i64, key))
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("history values serialize");
    out
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Cbor(e.to_string()))
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

/// The four trees a bucket is stored in.
pub(super) struct HistoryTrees {
    core: sled::Tree,
    slowest: sled::Tree,
    costliest: sled::Tree,
    pii_ids: sled::Tree,
    /// Decoded counts and PII ids of recently read buckets (see [`DecodedCache`]).
    decoded: std::sync::Mutex<DecodedCache>,
    /// The buckets the last applied delta wrote, decoded (see [`WrittenBucket`]).
    written: std::sync::Mutex<Written>,
}

/// A bucket as the last applied delta wrote it: the next delta of the same keys and times (the
/// current pane, hour and day of every active key) merges into this instead of reading and
/// decoding the bucket again — decoding a day bucket's 10,000 costliest sessions was half the
/// cost of applying a delta. `core` is what was written to the counts tree: the next delta
/// uses `summary` only if the store still holds exactly those bytes (checked inside its
/// transaction), so a bucket changed or dropped by anyone else is read again.
struct WrittenBucket {
    core: sled::IVec,
    summary: OpsSummary,
}

type Written = std::collections::HashMap<Vec<u8>, WrittenBucket>;

/// At most this many ranked entries (slowest and costliest, all buckets) are kept decoded
/// between deltas — ~20 full day buckets and their hours and panes, tens of MB — so a fleet
/// of many keys keeps its memory and reads the rest as before.
const WRITTEN_ENTRIES: usize = 250_000;

/// How often a delta is merged again after its buckets changed under it (another writer of the
/// same store) before giving up.
const STALE_RETRIES: u32 = 8;

/// How a delta's transaction ended.
enum Outcome {
    Applied,
    /// This origin has applied this sequence number already.
    Already,
    /// A bucket is not what the delta was merged into.
    Stale,
}

/// A merged bucket, encoded into its four trees' values (`bucket.core`, the three lists).
struct Encoded {
    bucket: WrittenBucket,
    slowest: sled::IVec,
    costliest: sled::IVec,
    pii_ids: sled::IVec,
}

impl Encoded {
    fn of(summary: OpsSummary) -> Encoded {
        let (c, slowest, costliest, ids) = summary.split();
        Encoded {
            slowest: encode(&slowest).into(),
            costliest: encode(&costliest).into(),
            pii_ids: encode(&ids).into(),
            bucket: WrittenBucket {
                core: encode(&c).into(),
                summary: c.join(Some(slowest), Some(costliest), Some(ids)),
            },
        }
    }
}

/// Decoded bucket counts (and PII ids) by bucket id. Every question reads the counts of tens to
/// hundreds of buckets and decoding them (two sketches each) was most of a question's time;
/// closed buckets never change, so they are served from here. At most
/// [`DecodedCache::CORES`] counts and [`DecodedCache::IDS`] id lists (tens of MB); when full,
/// half is dropped. Applying a delta removes the buckets it wrote and counts a write, and a
/// reader only fills the cache if no write happened while it read, so an older copy never
/// hides a newer one.
#[derive(Default)]
pub(super) struct DecodedCache {
    writes: u64,
    cores: Map<OpsSummary>,
    ids: Map<PiiIds>,
}

type Map<T> = std::collections::HashMap<Vec<u8>, std::sync::Arc<T>>;

impl DecodedCache {
    const CORES: usize = 4096;
    const IDS: usize = 1024;
}

impl HistoryTrees {
    /// Opens the trees, first splitting history written by version 1 (one value per bucket)
    /// into them; the old tree is dropped once it has been copied.
    pub(super) fn open(db: &sled::Db) -> Result<HistoryTrees, StoreError> {
        let trees = HistoryTrees {
            core: db.open_tree("history/v2")?,
            slowest: db.open_tree("history/v2/slowest")?,
            costliest: db.open_tree("history/v2/costliest")?,
            pii_ids: db.open_tree("history/v2/pii_ids")?,
            decoded: std::sync::Mutex::new(DecodedCache::default()),
            written: std::sync::Mutex::new(Written::new()),
        };
        if db.tree_names().iter().any(|n| n.as_ref() == b"history/v1") {
            let v1 = db.open_tree("history/v1")?;
            for kv in v1.iter() {
                let (id, value) = kv?;
                let (c, s, co, ids) = decode::<OpsSummary>(&value)?.split();
                trees.core.insert(&id, encode(&c))?;
                trees.slowest.insert(&id, encode(&s))?;
                trees.costliest.insert(&id, encode(&co))?;
                trees.pii_ids.insert(&id, encode(&ids))?;
            }
            for t in trees.trees() {
                t.flush()?;
            }
            drop(v1);
            db.drop_tree("history/v1")?;
        }
        Ok(trees)
    }

    fn trees(&self) -> [&sled::Tree; 4] {
        [&self.core, &self.slowest, &self.costliest, &self.pii_ids]
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, DecodedCache> {
        self.decoded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets what is cached of these buckets (they are being rewritten or dropped).
    fn forget(&self, ids: impl IntoIterator<Item = impl AsRef<[u8]>>) {
        let mut c = self.cache();
        let mut w = self.lock_written();
        c.writes += 1;
        for id in ids {
            c.cores.remove(id.as_ref());
            c.ids.remove(id.as_ref());
            w.remove(id.as_ref());
        }
    }

    fn lock_written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buckets the last delta wrote, taken (a delta being applied owns them).
    fn take_written(&self) -> Written {
        std::mem::take(&mut *self.lock_written())
    }

    /// Keeps the buckets a delta just wrote, up to [`WRITTEN_ENTRIES`] ranked entries.
    fn keep_written(&self, buckets: impl IntoIterator<Item = (Vec<u8>, WrittenBucket)>) {
        let mut entries = 0;
        let mut w = self.lock_written();
        w.clear();
        for (id, b) in buckets {
            let n = b.summary.slowest.items().len() + b.summary.costliest.items().len();
            if entries + n <= WRITTEN_ENTRIES {
                entries += n;
                w.insert(id, b);
            }
        }
    }

    /// Bucket `id` whole, its counts being `core`: the four trees' values decoded and joined.
    fn read_joined(
        &self,
        id: &[u8],
        core: &[u8],
        caps: crate::history::Caps,
    ) -> Result<OpsSummary, StoreError> {
        let list = |tree: &sled::Tree, cap| match tree.get(id)? {
            Some(v) => decode::<TailList>(&v),
            None => Ok(TailList::new(cap)),
        };
        let ids = self.pii_ids.get(id)?.map(|v| decode::<PiiIds>(&v));
        Ok(decode::<OpsSummary>(core)?.join(
            Some(list(&self.slowest, caps.slowest)?),
            Some(list(&self.costliest, caps.costliest)?),
            ids.transpose()?,
        ))
    }

    /// The value `value` of bucket `id`, decoded or from the cache map `pick` chooses (at most
    /// `cap` entries); `writes` is the write count when the caller began reading.
    fn cached<T: serde::de::DeserializeOwned>(
        &self,
        pick: fn(&mut DecodedCache) -> &mut Map<T>,
        cap: usize,
        (id, value): (&[u8], &[u8]),
        writes: u64,
    ) -> Result<std::sync::Arc<T>, StoreError> {
        if let Some(v) = pick(&mut self.cache()).get(id) {
            return Ok(v.clone());
        }
        let v = std::sync::Arc::new(decode::<T>(value)?);
        let mut c = self.cache();
        if c.writes == writes {
            let map = pick(&mut c);
            if map.len() >= cap {
                let drop: Vec<Vec<u8>> = map.keys().step_by(2).cloned().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
            map.insert(id.to_vec(), v.clone());
        }
        Ok(v)
    }
}

impl Store {
    /// Moves a pipeline's history into the store: seals its pending delta (or takes the one
    /// sealed before and not acknowledged), applies it, acknowledges it, and drops buckets past
    /// retention. A pipeline without a history is left alone.
    pub fn persist_history(
        &self,
        pipeline: &mut crate::pipeline::Pipeline,
    ) -> Result<(), StoreError> {
        let Some(config) = pipeline.history().map(|h| h.config().clone()) else {
            return Ok(());
        };
        if let Some(delta) = pipeline.history_seal() {
            let seq = delta.seq;
            self.apply_history(delta)?;
            pipeline.history_ack(seq);
            if let Some(newest) = self.history_newest()? {
                self.retain_history(newest, &config)?;
            }
        }
        Ok(())
    }

    /// Applies a sealed history delta: merges every bucket summary into its stored bucket and
    /// updates key first/last seen. Returns false (nothing changed) when this origin has already
    /// applied this sequence number.
    pub fn apply_history(&self, delta: &Delta) -> Result<bool, StoreError> {
        // First and last session and the count, per whole key: its day buckets hold each of its
        // sessions once.
        let mut key_totals: std::collections::BTreeMap<&BucketKey, (EpochMs, EpochMs, u64)> =
            std::collections::BTreeMap::new();
        for (_, _, key, s) in delta
            .buckets
            .iter()
            .filter(|(res, _, k, _)| *res == Resolution::Day && k.segment.is_none())
        {
            let t = key_totals
                .entry(key)
                .or_insert((EpochMs::MAX, EpochMs::MIN, 0));
            *t = (
                t.0.min(s.first_seen),
                t.1.max(s.last_seen),
                t.2 + s.sessions,
            );
        }
        let t = &self.history;
        // Merged outside the transaction (which sled may run more than once), each from the
        // bucket as the last delta wrote it when that is still what is stored (the transaction
        // checks), else as read and decoded now. A delta of every key's current pane, hour and
        // day rewrites the same buckets as the last one: decoding a day's 10,000 costliest each
        // time was half of applying a delta.
        let mut cached = t.take_written();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut merged = Vec::with_capacity(delta.buckets.len());
            for (res, start, key, summary) in &delta.buckets {
                let id = bucket_id(*res, *start, key);
                let (expected, bucket) = match cached.remove(&id) {
                    Some(mut w) => {
                        w.summary.merge(summary);
                        (Some(w.core), w.summary)
                    }
                    None => match t.core.get(&id)? {
                        Some(core) => {
                            let mut bucket = t.read_joined(&id, &core, res.caps())?;
                            bucket.merge(summary);
                            (Some(core), bucket)
                        }
                        None => (None, summary.clone()),
                    },
                };
                merged.push((id, expected, Encoded::of(bucket)));
            }
            let outcome = (
                &t.core,
                &t.slowest,
                &t.costliest,
                &t.pii_ids,
                &self.history_keys,
                &self.history_applied,
            )
                .transaction(|(core, slow, costly, pii, keys, applied)| {
                    let done = applied
                        .get(delta.origin.as_bytes())?
                        .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
                        .unwrap_or(0);
                    if done >= delta.seq {
                        return Ok(Outcome::Already);
                    }
                    for (id, expected, _) in &merged {
                        if core.get(id)?.as_ref() != expected.as_ref() {
                            return Ok(Outcome::Stale);
                        }
                    }
                    for (id, _, e) in &merged {
                        core.insert(id.as_slice(), e.bucket.core.clone())?;
                        slow.insert(id.as_slice(), e.slowest.clone())?;
                        costly.insert(id.as_slice(), e.costliest.clone())?;
                        pii.insert(id.as_slice(), e.pii_ids.clone())?;
                    }
                    for (key, (first, last, sessions)) in &key_totals {
                        let kid = key.encode();
                        let info = match keys.get(kid.as_bytes())? {
                            Some(old) => {
                                let mut i: KeyInfo = decode(&old).map_err(abort)?;
                                i.first_seen = i.first_seen.min(*first);
                                i.last_seen = i.last_seen.max(*last);
                                i.sessions += sessions;
                                i
                            }
                            None => KeyInfo {
                                agent: key.agent.clone(),
                                prompt_version: key.prompt_version.clone(),
                                model: key.model.clone(),
                                first_seen: *first,
                                last_seen: *last,
                                sessions: *sessions,
                            },
                        };
                        keys.insert(kid.as_bytes(), encode(&info))?;
                    }
                    applied.insert(delta.origin.as_bytes(), &delta.seq.to_be_bytes())?;
                    Ok(Outcome::Applied)
                });
            // After the commit: a reader that decoded an old value meanwhile sees the write
            // count move and does not cache it.
            t.forget(merged.iter().map(|(id, ..)| id));
            match outcome {
                Ok(Outcome::Applied) => {
                    t.keep_written(merged.into_iter().map(|(id, _, e)| (id, e.bucket)));
                    return Ok(true);
                }
                Ok(Outcome::Already) => return Ok(false),
                Ok(Outcome::Stale) if attempt < STALE_RETRIES => {
                    // Written behind this writer's back: read every bucket again.
                    cached.clear();
                }
                Ok(Outcome::Stale) => {
                    return Err(StoreError::Contended(
                        "history buckets kept changing while a delta was applied",
                    ));
                }
                Err(TransactionError::Abort(e)) => return Err(e),
                Err(TransactionError::Storage(e)) => return Err(StoreError::Sled(e)),
            }
        }
    }

    /// Buckets of the planned spans that the filter matches, with the parts asked for.
    ///
    /// PII session ids are read only where they can still matter: a merged answer keeps the
    /// earliest [`PII_IDS_PER_CELL`] ids of each cell, so in time order a bucket whose every
    /// cell is already full with ids older than the bucket's start cannot change it (a week's
    /// answer reads the ids of its first buckets, not of all of them).
    pub fn history_buckets(
        &self,
        spans: &[Span],
        filter: &Filter,
        group_by: GroupBy,
        parts: Parts,
    ) -> Result<Vec<(EpochMs, BucketKey, OpsSummary)>, StoreError> {
        let t = &self.history;
        let writes = t.cache().writes;
        let part =
            |tree: &sled::Tree, id: &[u8], wanted: bool| -> Result<Option<Vec<u8>>, StoreError> {
                Ok(if wanted {
                    tree.get(id)?.map(|v| v.to_vec())
                } else {
                    None
                })
            };
        let mut found = Vec::new();
        for span in spans {
            let mut lo = vec![span.resolution.code()];
            lo.extend_from_slice(&time_bytes(span.from));
            let mut hi = vec![span.resolution.code()];
            hi.extend_from_slice(&time_bytes(span.to));
            for kv in t.core.range(lo..hi) {
                let (id, value) = kv?;
                let Some((start, key)) = parse_bucket_id(&id) else {
                    continue;
                };
                if !filter.matches(&key, group_by) {
                    continue;
                }
                let core =
                    t.cached(|c| &mut c.cores, DecodedCache::CORES, (&id, &value), writes)?;
                found.push((start, key, id, core));
            }
        }
        if parts.pii_ids {
            found.sort_by_key(|(start, ..)| *start);
        }
        // Per PII cell, the event times of the earliest ids read so far.
        let mut earliest: std::collections::BTreeMap<
            crate::history::summary::PiiCellKey,
            Vec<EpochMs>,
        > = std::collections::BTreeMap::new();
        let mut out = Vec::with_capacity(found.len());
        for (start, key, id, core) in found {
            // The cells whose earliest ids this bucket can still change.
            let needed = |cell: &crate::history::summary::PiiCellKey| {
                earliest.get(cell).is_none_or(|times| {
                    times.len() < PII_IDS_PER_CELL || times.last().is_some_and(|t| *t >= start)
                })
            };
            let needs_ids = parts.pii_ids && core.pii.keys().any(needed);
            let ids: Option<PiiIds> = match part(&t.pii_ids, &id, needs_ids)? {
                Some(v) => {
                    let all = t.cached(|c| &mut c.ids, DecodedCache::IDS, (&id, &v), writes)?;
                    Some(
                        all.iter()
                            .filter(|(cell, _)| needed(cell))
                            .cloned()
                            .collect(),
                    )
                }
                None => None,
            };
            for (cell, list) in ids.iter().flatten() {
                let times = earliest.entry(cell.clone()).or_default();
                times.extend(list.iter().map(|(t, _)| *t));
                times.sort_unstable();
                times.truncate(PII_IDS_PER_CELL);
            }
            let slowest = part(&t.slowest, &id, parts.slowest)?;
            let costliest = part(&t.costliest, &id, parts.costliest)?;
            let summary = OpsSummary::clone(&core).join(
                slowest.map(|v| decode(&v)).transpose()?,
                costliest.map(|v| decode(&v)).transpose()?,
                ids,
            );
            out.push((start, key, summary));
        }
        Ok(out)
    }

    /// Every key the history has seen, with its first and last session.
    pub fn history_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        self.history_keys
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// The newest session's event time in the history (the history's "now").
    pub fn history_newest(&self) -> Result<Option<EpochMs>, StoreError> {
        Ok(self.history_keys()?.iter().map(|k| k.last_seen).max())
    }

    /// The oldest pane bucket still kept, if any.
    pub fn history_oldest(&self, res: Resolution) -> Result<Option<EpochMs>, StoreError> {
        Ok(self
            .history
            .core
            .scan_prefix([res.code()])
            .keys()
            .next()
            .transpose()?
            .and_then(|id| parse_bucket_id(&id).map(|(t, _)| t)))
    }

    /// Drops buckets older than the retention allows, measured back from `newest`; returns how
    /// many were dropped.
    pub fn retain_history(
        &self,
        newest: EpochMs,
        config: &HistoryConfig,
    ) -> Result<u64, StoreError> {
        let mut dropped = 0;
        for res in Resolution::ALL {
            let keep = match res {
                Resolution::Pane => config.pane_retention,
                Resolution::Hour | Resolution::Day => config.hour_retention,
            };
            let mut hi = vec![res.code()];
            hi.extend_from_slice(&time_bytes(newest - keep));
            let lo = vec![res.code()];
            let old: Vec<sled::IVec> = self
                .history
                .core
                .range(lo..hi)
                .keys()
                .collect::<Result<_, _>>()?;
            for tree in self.history.trees() {
                let mut batch = sled::Batch::default();
                for id in &old {
                    batch.remove(id);
                }
                tree.apply_batch(batch)?;
            }
            self.history.forget(&old);
            dropped += old.len() as u64;
        }
        Ok(dropped)
    }

    /// Bytes of stored history (keys and values), by resolution.
    pub fn history_bytes(&self) -> Result<[u64; 3], StoreError> {
        let mut out = [0; 3];
        for (i, res) in Resolution::ALL.iter().enumerate() {
            for tree in self.history.trees() {
                for kv in tree.scan_prefix([res.code()]) {
                    let (k, v) = kv?;
                    out[i] += (k.len() + v.len()) as u64;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::query::{Range, plan};
    use crate::history::{DAY_MS, HOUR_MS, History};

    fn session(i: u64, t: EpochMs) -> crate::session::Session {
        let line = format!(
            r#"{{"session_id":"s{i:05}","agent":"bot","prompt_version":"p1","model":"m-2026-09","ended_at":"{}","duration_ms":{},"status":"success","usage":{{"cost_usd":{}}}}}"#,
            crate::time::format_rfc3339_ms(t),
            100 + (i * 7919) % 1000,
            0.001 * ((i * 104_729) % 997) as f64,
        );
        record(&line)
    }

    fn record(line: &str) -> crate::session::Session {
        crate::ingest::decode::Decoder::new(
            std::sync::Arc::new(crate::catalog::Catalog::embedded()),
        )
        .decode(line.as_bytes())
        .expect("valid record")
    }

    /// The buckets that cover everything from `day` to the newest session.
    fn up_to_newest(day: EpochMs, newest: EpochMs, config: &HistoryConfig) -> Vec<Span> {
        plan(
            Range {
                from: day,
                to: newest + 1,
            },
            config.pane,
            newest,
            day,
        )
    }

    /// A delta applied twice counts once; buckets of every resolution agree with each other.
    #[test]
    fn deltas_apply_once_and_every_resolution_holds_the_same_sessions() {
        let store = Store::temporary().unwrap();
        let config = HistoryConfig::default();
        let mut h = History::new(config.clone(), "test");
        let day = 20_400 * DAY_MS;
        for i in 0..2_000 {
            h.observe(&session(i, day + (i as i64) * 40_000));
        }
        let delta = h.seal().unwrap().clone();
        assert!(store.apply_history(&delta).unwrap());
        assert!(!store.apply_history(&delta).unwrap());
        h.ack(delta.seq);
        assert!(h.is_idle());

        let newest = store.history_newest().unwrap().unwrap();
        assert_eq!(newest, day + 1_999 * 40_000);
        for res in Resolution::ALL {
            let span = Span {
                resolution: res,
                from: day,
                to: day + DAY_MS,
            };
            let b = store
                .history_buckets(&[span], &Filter::default(), GroupBy::None, Parts::COUNTS)
                .unwrap();
            let total: u64 = b.iter().map(|(_, _, s)| s.sessions).sum();
            assert_eq!(total, 2_000, "{res:?}");
        }
        let spans = up_to_newest(day, newest, &config);
        let merged = crate::history::query::merge_all(
            &store
                .history_buckets(
                    &spans,
                    &Filter::default(),
                    GroupBy::None,
                    Parts {
                        costliest: true,
                        ..Parts::COUNTS
                    },
                )
                .unwrap(),
        );
        assert_eq!(merged.sessions, 2_000);
        // The ten costliest, exact and equal to a sort of the input.
        let mut costs: Vec<(f64, String)> = (0..2_000u64)
            .map(|i| (0.001 * ((i * 104_729) % 997) as f64, format!("s{i:05}")))
            .collect();
        costs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let (top, exact) = merged.costliest.top(10);
        assert!(exact);
        let got: Vec<&str> = top.iter().map(|e| e.why.session_id.as_str()).collect();
        let want: Vec<&str> = costs[..10].iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(got, want);

        // Retention: measured back from a time 9 days later, panes go, hours and days stay.
        assert!(store.retain_history(day + 9 * DAY_MS, &config).unwrap() > 0);
        assert_eq!(store.history_oldest(Resolution::Pane).unwrap(), None);
        assert_eq!(store.history_oldest(Resolution::Day).unwrap(), Some(day));
    }

    /// History written by version 1 (one CBOR value per bucket) is split on open and answers
    /// the same: counts without the lists, lists when asked for.
    #[test]
    fn version_1_history_is_split_on_open() {
        let config = HistoryConfig::default();
        let mut h = History::new(config.clone(), "test");
        let day = 20_400 * DAY_MS;
        for i in 0..500 {
            h.observe(&session(i, day + (i as i64) * 60_000));
        }
        let delta = h.seal().unwrap().clone();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let v1 = db.open_tree("history/v1").unwrap();
        let mut whole = OpsSummary::unbounded();
        for (_, pane, key, summary) in delta
            .buckets
            .iter()
            .filter(|(res, ..)| *res == Resolution::Pane)
        {
            let id = bucket_id(Resolution::Pane, *pane, key);
            v1.insert(id, encode(summary)).unwrap();
            if key.segment.is_none() {
                whole.merge(summary);
            }
        }
        drop(v1);
        let store = Store::with_db(db).unwrap();
        assert!(
            !store
                .db
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == b"history/v1")
        );
        let span = [Span {
            resolution: Resolution::Pane,
            from: day,
            to: day + DAY_MS,
        }];
        let all = Parts {
            slowest: true,
            costliest: true,
            pii_ids: true,
        };
        let read = |parts| {
            crate::history::query::merge_all(
                &store
                    .history_buckets(&span, &Filter::default(), GroupBy::None, parts)
                    .unwrap(),
            )
        };
        let counts = read(Parts::COUNTS);
        assert_eq!(counts.sessions, 500);
        assert!(counts.costliest.items().is_empty());
        let full = read(all);
        assert_eq!(full.sessions, 500);
        assert_eq!(full.costliest.items(), whole.costliest.items());
        assert_eq!(full.slowest.items(), whole.slowest.items());
    }

    /// PII ids read lazily (only buckets that can still change a cell's earliest ids) merge to
    /// exactly the earliest ids of each cell, computed here from the input itself.
    #[test]
    fn pii_ids_read_lazily_are_the_earliest_of_each_cell() {
        let store = Store::temporary().unwrap();
        let config = HistoryConfig::default();
        let mut h = History::new(config.clone(), "test");
        let day = 20_400 * DAY_MS;
        let kinds = ["email", "phone"];
        let mut want: std::collections::BTreeMap<&str, Vec<(EpochMs, String)>> = Default::default();
        for i in 0..3_000u64 {
            let t = day + (i as i64) * 50_000; // ~1.7 days, 6 per pane
            let kind = kinds[(i % 7 % 2) as usize];
            let id = format!("s{:05}", (i * 7_919) % 100_000);
            let line = format!(
                r#"{{"session_id":"{id}","agent":"bot","prompt_version":"p1","model":"m-2026-09","ended_at":"{}","status":"success","pii":[{{"type":"{kind}","handling":"redacted","destination":"model"}}]}}"#,
                crate::time::format_rfc3339_ms(t),
            );
            h.observe(&record(&line));
            want.entry(kind).or_default().push((t, id));
        }
        let delta = h.seal().unwrap().clone();
        store.apply_history(&delta).unwrap();
        let newest = store.history_newest().unwrap().unwrap();
        let spans = up_to_newest(day, newest, &config);
        let parts = Parts {
            pii_ids: true,
            ..Parts::COUNTS
        };
        let buckets = store
            .history_buckets(&spans, &Filter::default(), GroupBy::None, parts)
            .unwrap();
        let skipped = buckets
            .iter()
            .filter(|(_, _, s)| s.pii.values().all(|c| c.ids.is_empty()))
            .count();
        assert!(skipped > 0, "every bucket's ids were read");
        let merged = crate::history::query::merge_all(&buckets);
        for (kind, mut list) in want {
            list.sort();
            list.truncate(PII_IDS_PER_CELL);
            let cell = merged
                .pii
                .iter()
                .find(|((k, _, _), _)| k == kind)
                .map(|(_, c)| c)
                .unwrap();
            assert_eq!(cell.ids, list, "{kind}");
        }
    }

    /// A bucket read (and so cached) and then written again answers with the new counts.
    /// Every key-value pair of the history's trees.
    fn history_contents(store: &Store) -> Vec<Vec<(sled::IVec, sled::IVec)>> {
        let t = &store.history;
        [
            &t.core,
            &t.slowest,
            &t.costliest,
            &t.pii_ids,
            &store.history_keys,
            &store.history_applied,
        ]
        .into_iter()
        .map(|tree| tree.iter().collect::<Result<_, _>>().unwrap())
        .collect()
    }

    /// A delta merged into the buckets the previous delta left decoded writes exactly the bytes
    /// of one merged into buckets read back from sled — also when old buckets were dropped by
    /// retention, late sessions reopen older panes, lists overflow their caps, and a bucket is
    /// removed behind the writer's back (its decoded copy must not be used then).
    #[test]
    fn a_delta_merged_into_the_last_written_buckets_writes_what_a_cold_merge_writes() {
        use crate::simulate::{AgentProfile, SimConfig, Simulator};
        let config = HistoryConfig {
            segment_by: vec!["attributes.channel".into()],
            pane_retention: HOUR_MS / 2,
            ..HistoryConfig::default()
        };
        let lines: Vec<Vec<u8>> = Simulator::new(SimConfig {
            seed: 7,
            start_ms: 20_400 * DAY_MS + 23 * HOUR_MS,
            duration_ms: 2 * HOUR_MS,
            sessions_per_hour: 6_000.0,
            agents: vec![
                AgentProfile::new("bot", "p1", "m-2026-09"),
                AgentProfile::new("bot", "p2", "m-2026-09"),
            ],
            diurnal: false,
            late_fraction: 0.05,
            ..SimConfig::default()
        })
        .unwrap()
        .collect();
        let decoder = crate::ingest::decode::Decoder::new(std::sync::Arc::new(
            crate::catalog::Catalog::embedded(),
        ));
        assert!(lines.len().div_ceil(600) > 13, "too few deltas");
        let (warm, cold) = (Store::temporary().unwrap(), Store::temporary().unwrap());
        let mut h = History::new(config.clone(), "test");
        let mut newest = 0;
        for (round, chunk) in lines.chunks(600).enumerate() {
            for line in chunk {
                if let Ok(s) = decoder.decode(line) {
                    newest = newest.max(s.event_time);
                    h.observe(&s);
                }
            }
            let delta = h.seal().unwrap().clone();
            if round == 12 {
                // Behind the writer's back: the day bucket of one key goes from both stores.
                let (id, _) = warm
                    .history
                    .lock_written()
                    .iter()
                    .map(|(id, b)| (id.clone(), b.summary.sessions))
                    .max_by_key(|(_, sessions)| *sessions)
                    .unwrap();
                for store in [&warm, &cold] {
                    for tree in store.history.trees() {
                        tree.remove(&id).unwrap();
                    }
                }
            }
            drop(cold.history.take_written());
            assert!(warm.apply_history(&delta).unwrap());
            assert!(cold.apply_history(&delta).unwrap());
            h.ack(delta.seq);
            for store in [&warm, &cold] {
                store.retain_history(newest, &config).unwrap();
            }
            assert!(
                !warm.history.lock_written().is_empty(),
                "round {round}: nothing kept"
            );
            assert!(
                history_contents(&warm) == history_contents(&cold),
                "round {round}: the stores differ"
            );
        }
        let full = cold
            .history
            .costliest
            .iter()
            .values()
            .map(|v| decode::<TailList>(&v.unwrap()).unwrap())
            .filter(|l| l.dropped().is_some())
            .count();
        assert!(full > 0, "no list overflowed its cap");
    }

    #[test]
    fn cached_counts_follow_later_writes() {
        let store = Store::temporary().unwrap();
        let config = HistoryConfig::default();
        let mut h = History::new(config.clone(), "test");
        let day = 20_400 * DAY_MS;
        let span = [Span {
            resolution: Resolution::Day,
            from: day,
            to: day + DAY_MS,
        }];
        let count = |store: &Store| -> u64 {
            store
                .history_buckets(&span, &Filter::default(), GroupBy::None, Parts::COUNTS)
                .unwrap()
                .iter()
                .map(|(_, _, s)| s.sessions)
                .sum()
        };
        for round in 1..=3u64 {
            for i in 0..100 {
                h.observe(&session(
                    round * 1_000 + i,
                    day + (round * 1_000 + i) as i64 * 1_000,
                ));
            }
            let delta = h.seal().unwrap().clone();
            store.apply_history(&delta).unwrap();
            h.ack(delta.seq);
            assert_eq!(count(&store), round * 100);
            assert_eq!(count(&store), round * 100, "cached");
        }
    }
}
