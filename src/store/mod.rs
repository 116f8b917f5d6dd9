//! Durable state in sled: findings by id, baselines, the notification log, the operational
//! history ([`history`]). The only module that imports sled, so the store can be swapped.

pub mod history;
pub mod incidents;
pub mod notify_log;
pub mod parts;

use std::path::Path;

use crate::drift::baseline::{self, Baseline};
use crate::finding::Finding;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored value is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("stored value is not valid CBOR: {0}")]
    Cbor(String),
    #[error("{0}")]
    Contended(&'static str),
    #[error(transparent)]
    Baseline(#[from] baseline::BaselineFormatError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The state directory of one slawatch instance.
pub struct Store {
    /// The data directory (None for a temporary store).
    dir: Option<std::path::PathBuf>,
    db: sled::Db,
    findings: sled::Tree,
    baselines: sled::Tree,
    /// Findings other instances published (the findings topic read whole): kept apart from
    /// this instance's own, whose first store feeds the alert engine.
    findings_shared: sled::Tree,
    history: history::HistoryTrees,
    history_keys: sled::Tree,
    history_applied: sled::Tree,
    /// Every finding decoded, until the next write: the status page, `changes` and `status`
    /// read them on every request, and decoding thousands of JSON findings each time was most
    /// of their latency.
    findings_cache: std::sync::Mutex<FindingsCache>,
    /// Where the checkpoint log stands ([`parts`]), once read or written.
    parts_log: std::sync::Mutex<Option<parts::LogState>>,
}

/// The decoded findings and how many writes have cleared them: a reader fills the cache only
/// if no write happened while it was reading, so an older copy never hides a newer finding.
#[derive(Default)]
struct FindingsCache {
    writes: u64,
    all: Option<std::sync::Arc<Vec<Finding>>>,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// sled releases its file lock only after its background flusher stops, a moment after the
    /// previous `Db` was dropped (spacejam/sled#1234), so a lock held by a store that is closing
    /// is waited for (up to 10 s) instead of failing the reopen.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let config = || {
            let config = sled::Config::new().path(dir.join("state"));
            // Crash tests: sled makes durable only what `flush` does (no background flusher),
            // so a crash loses everything written since, as a badly timed one would.
            fail::fail_point!("store-no-background-flush", |_| config
                .clone()
                .flush_every_ms(None));
            config
        };
        let db = loop {
            match config().open() {
                Ok(db) => break db,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        path: dir.display().to_string(),
                        source,
                    });
                }
            }
        };
        let mut store = Store::with_db(db)?;
        store.dir = Some(dir.to_path_buf());
        Ok(store)
    }

    /// A store that lives in a temporary directory and vanishes on drop (tests).
    pub fn temporary() -> Result<Store, StoreError> {
        Store::with_db(sled::Config::new().temporary(true).open()?)
    }

    fn with_db(db: sled::Db) -> Result<Store, StoreError> {
        let findings = db.open_tree("findings/v1")?;
        let baselines = db.open_tree("baselines")?;
        Ok(Store {
            dir: None,
            findings,
            baselines,
            findings_shared: db.open_tree("findings/shared/v1")?,
            history: history::HistoryTrees::open(&db)?,
            history_keys: db.open_tree("history/keys/v1")?,
            history_applied: db.open_tree("history/applied/v1")?,
            findings_cache: std::sync::Mutex::new(FindingsCache::default()),
            parts_log: std::sync::Mutex::new(None),
            db,
        })
    }

    /// Records a finding; returns false when a finding with its id was already stored (a
    /// replayed or redelivered input), so the caller does not notify twice.
    pub fn put_finding(&self, f: &Finding) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(f)?;
        let previous =
            self.findings
                .compare_and_swap(f.id.as_bytes(), None as Option<&[u8]>, Some(value))?;
        self.forget_findings();
        Ok(previous.is_ok())
    }

    /// Every stored finding, ordered by id.
    pub fn findings(&self) -> Result<Vec<Finding>, StoreError> {
        self.findings
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    /// Records a finding read from the findings topic (any instance's); false when known.
    pub fn put_shared_finding(&self, f: &Finding) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(f)?;
        let previous = self.findings_shared.compare_and_swap(
            f.id.as_bytes(),
            None as Option<&[u8]>,
            Some(value),
        )?;
        self.forget_findings();
        Ok(previous.is_ok())
    }

    fn forget_findings(&self) {
        let mut c = self
            .findings_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.writes += 1;
        c.all = None;
    }

    /// This instance's findings and those read from the findings topic, once each, by id.
    pub fn all_findings(&self) -> Result<std::sync::Arc<Vec<Finding>>, StoreError> {
        let writes = {
            let c = self
                .findings_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(all) = &c.all {
                return Ok(all.clone());
            }
            c.writes
        };
        let mut all = self.findings()?;
        let own: std::collections::HashSet<String> = all.iter().map(|f| f.id.clone()).collect();
        for v in self.findings_shared.iter().values() {
            let f: Finding = serde_json::from_slice(&v?)?;
            if !own.contains(&f.id) {
                all.push(f);
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let all = std::sync::Arc::new(all);
        let mut c = self
            .findings_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if c.writes == writes {
            c.all = Some(all.clone());
        }
        Ok(all)
    }

    /// Stores (replaces) a baseline under its key label, in the versioned format.
    pub fn put_baseline(&self, b: &Baseline) -> Result<(), StoreError> {
        self.baselines
            .insert(b.key.label().as_bytes(), baseline::encode(b))?;
        Ok(())
    }

    /// Every stored baseline, by key label.
    pub fn baselines(&self) -> Result<Vec<Baseline>, StoreError> {
        self.baselines
            .iter()
            .values()
            .map(|v| Ok(baseline::decode(&v?)?))
            .collect()
    }

    /// Deletes a baseline; returns whether it existed.
    pub fn delete_baseline(&self, label: &str) -> Result<bool, StoreError> {
        Ok(self.baselines.remove(label.as_bytes())?.is_some())
    }

    /// Replaces the service checkpoint (state and the offsets it reflects), durably and
    /// atomically: written to a temporary file, fsynced, renamed over the old one, and the
    /// directory fsynced.
    ///
    /// The checkpoint is a file rather than a sled value because sled 0.34 stores values of
    /// this size as blobs, and after a SIGKILL its recovery removed blobs it considered newer
    /// than its stable log — even ones written before a successful `flush()` — which lost the
    /// checkpoint while Kafka already held the offsets it reflected (seen in the crash test).
    pub fn put_checkpoint(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_named_checkpoint("checkpoint.json", bytes)
    }

    /// Like [`Store::put_checkpoint`], for another state of this instance (`name` is its file).
    pub fn put_named_checkpoint(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        use std::io::Write as _;
        let Some(dir) = &self.dir else {
            self.db.insert(format!("checkpoint/{name}"), bytes)?;
            return Ok(());
        };
        let tmp = dir.join(format!("{name}.tmp"));
        let io = |source| StoreError::Io {
            path: tmp.display().to_string(),
            source,
        };
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, dir.join(name)).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// The last service checkpoint, if any.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.named_checkpoint("checkpoint.json")
    }

    /// The last state written with [`Store::put_named_checkpoint`] under `name`.
    pub fn named_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(dir) = &self.dir else {
            return Ok(self
                .db
                .get(format!("checkpoint/{name}"))?
                .map(|v| v.to_vec()));
        };
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Bytes on disk (sled and the checkpoint files) and keys in every tree, for `/metrics`.
    /// Counting keys walks every tree: a scrape's work, never a record's.
    pub fn size(&self) -> Result<(u64, u64), StoreError> {
        let mut bytes = self.db.size_on_disk()?;
        if let Some(dir) = &self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            bytes += entries
                .flatten()
                .filter(|e| {
                    e.path()
                        .extension()
                        .is_some_and(|x| x == "json" || x == "cbor" || x == "base" || x == "log")
                })
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum::<u64>();
        }
        let mut keys = 0u64;
        for name in self.db.tree_names() {
            keys += self.db.open_tree(name)?.len() as u64;
        }
        Ok((bytes, keys))
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// Creates the data directory readable by its owner only (0700): it holds findings, session
/// ids and alert mail. An existing directory keeps its mode; one that others may read is
/// reported.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.exists() {
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "the data directory is readable by others; `chmod 700` it"
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_are_stored_once_by_id_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let f: Finding = serde_json::from_str(
            r#"{"id":"abc","spec":"s","objective":"o","check":"window","dimension":"availability",
            "verdict":"breach","severity":"page","key":[["agent","a"]],"segment":null,
            "window_start":"2026-11-01T00:00:00.000Z","window_end":"2026-11-01T01:00:00.000Z",
            "sessions":10,"observed":0.5,"comparator":">=","target":0.99,"unit":"ratio",
            "exemplars":[],"message":"m"}"#,
        )
        .unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.put_finding(&f).unwrap());
            assert!(!store.put_finding(&f).unwrap());
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.findings().unwrap(), vec![f]);
    }

    #[test]
    fn a_new_data_directory_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("data");
        create_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // An existing directory is left as it is.
        create_private_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
