//! The incident archive: every incident episode (open and resolved) as an opaque JSON record
//! under its id, and the sessions that count against it — ids with time, key, segment and
//! reason, never content.
//!
//! Affected sessions are keyed `record id ␟ event time ␟ session id`, so a session is kept at
//! most once per incident (a replay of the same input files nothing twice) and an export reads
//! them in event-time order with one range scan. The record's type lives in `alerts::archive`;
//! this module stores, lists and deletes, and never decides what to keep (the caller bounds
//! it) nor reads the clock.

use serde::{Serialize, de::DeserializeOwned};

use super::{Store, StoreError};
use crate::forensics::AffectedSession;

/// The incident trees of one store.
#[derive(Clone)]
pub struct IncidentArchive {
    db: sled::Db,
    records: sled::Tree,
    affected: sled::Tree,
}

impl Store {
    /// The incident archive kept in this store.
    pub fn incident_archive(&self) -> Result<IncidentArchive, StoreError> {
        Ok(IncidentArchive {
            db: self.db.clone(),
            records: self.db.open_tree("incidents/records/v1")?,
            affected: self.db.open_tree("incidents/affected/v1")?,
        })
    }
}

fn prefix(record: &str) -> Vec<u8> {
    let mut k = record.as_bytes().to_vec();
    k.push(0x1f);
    k
}

fn affected_key(record: &str, s: &AffectedSession) -> Vec<u8> {
    let mut k = prefix(record);
    // Event times sort as unsigned big-endian numbers once the sign bit is flipped.
    k.extend_from_slice(&((s.event_time as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(s.session_id.as_bytes());
    k
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

    /// Files one affected session under a record; returns whether it was new.
    pub fn add_affected(&self, record: &str, s: &AffectedSession) -> Result<bool, StoreError> {
        let old = self
            .affected
            .insert(affected_key(record, s), serde_json::to_vec(s)?)?;
        Ok(old.is_none())
    }

    /// The affected sessions of a record in event-time order (then session id), decoded as
    /// they are read.
    pub fn affected(
        &self,
        record: &str,
    ) -> impl Iterator<Item = Result<AffectedSession, StoreError>> + use<> {
        self.affected.scan_prefix(prefix(record)).values().map(|v| {
            let v = v?;
            Ok(serde_json::from_slice(&v)?)
        })
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
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
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

    #[test]
    fn records_and_affected_sessions_survive_reopen_in_time_order_once_each() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let a = store.incident_archive().unwrap();
            a.put("i-1", &serde_json::json!({"n": 1})).unwrap();
            a.put("i-2", &serde_json::json!({"n": 2})).unwrap();
            // Times before 1970 sort before those after.
            for (id, t) in [("s3", 3_000), ("s1", -5), ("s2", 3_000), ("s0", 1)] {
                assert!(a.add_affected("i-1", &session(id, t)).unwrap());
            }
            assert!(!a.add_affected("i-1", &session("s2", 3_000)).unwrap());
            assert!(a.add_affected("i-2", &session("x", 0)).unwrap());
            a.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let a = store.incident_archive().unwrap();
        let ids: Vec<String> = a.affected("i-1").map(|s| s.unwrap().session_id).collect();
        assert_eq!(ids, ["s1", "s0", "s2", "s3"]);
        let all: Vec<serde_json::Value> = a.all().unwrap();
        assert_eq!(all.len(), 2);
        a.remove("i-1").unwrap();
        assert_eq!(a.affected("i-1").count(), 0);
        assert_eq!(a.affected("i-2").count(), 1);
        assert!(a.get::<serde_json::Value>("i-1").unwrap().is_none());
    }
}
