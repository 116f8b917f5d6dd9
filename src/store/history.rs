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

    /// Forgets what is cached of these buckets (they are being rewritten).
    fn forget(&self, ids: impl IntoIterator<Item = impl AsRef<[u8]>>) {
        let mut c = self.cache();
        c.writes += 1;
        for id in ids {
            c.cores.remove(id.as_ref());
            c.ids.remove(id.as_ref());
        }
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
        let result = (
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
                    return Ok(false);
                }
                for (res, start, key, summary) in &delta.buckets {
                    let id = bucket_id(*res, *start, key);
                    let merged = match core.get(&id)? {
                        Some(old) => {
                            let part = |tree: &sled::transaction::TransactionalTree| {
                                tree.get(&id).map(|v| v.map(|v| v.to_vec()))
                            };
                            let (s, c, p) = (part(slow)?, part(costly)?, part(pii)?);
                            let caps = res.caps();
                            let list = |v: Option<Vec<u8>>, cap| match v {
                                Some(v) => decode::<TailList>(&v),
                                None => Ok(TailList::new(cap)),
                            };
                            let mut s = decode::<OpsSummary>(&old)
                                .and_then(|core| {
                                    Ok(core.join(
                                        Some(list(s, caps.slowest)?),
                                        Some(list(c, caps.costliest)?),
                                        p.map(|p| decode::<PiiIds>(&p)).transpose()?,
                                    ))
                                })
                                .map_err(abort)?;
                            s.merge(summary);
                            s
                        }
                        None => summary.clone(),
                    };
                    let (c, sl, co, ids) = merged.split();
                    core.insert(id.as_slice(), encode(&c))?;
                    slow.insert(id.as_slice(), encode(&sl))?;
                    costly.insert(id.as_slice(), encode(&co))?;
                    pii.insert(id.as_slice(), encode(&ids))?;
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
                Ok(true)
            });
        // After the commit: a reader that decoded an old value meanwhile sees the write count
        // move and does not cache it.
        self.history.forget(
            delta
                .buckets
                .iter()
                .map(|(res, start, key, _)| bucket_id(*res, *start, key)),
        );
        match result {
            Ok(applied) => Ok(applied),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
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
    use crate::history::{DAY_MS, History};

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
