//! The durable notification log: every alert mail is recorded here before it is sent, and
//! marked sent once a server (or the outbox directory) accepted it; plus the alert engine's
//! state snapshot and the silences that `slawatch silence` manages.
//!
//! A mail is keyed by its notification id, which the alert engine derives from the incident
//! and the state transition it announces. [`NotifyLog::record`] inserts a mail only if its id
//! is new, so recording the same notification twice (say, after a crash between recording and
//! snapshotting the engine) is a no-op; [`NotifyLog::pending`] lists what was recorded but not
//! yet accepted, oldest first, so a restart re-sends exactly what was never marked sent.
//!
//! This module stores opaque JSON for the engine snapshot and silences (their types live in
//! `alerts`); it never renders, sends or decides anything, and it never reads the clock —
//! callers pass times in.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{Store, StoreError};

/// Where one recorded mail stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum MailStatus {
    /// Recorded, not yet accepted by the transport.
    Pending,
    /// Accepted by the transport at `at` (wall-clock ms).
    Sent {
        /// Wall-clock ms.
        at: i64,
    },
    /// Given up after a permanent error (e.g. every recipient rejected); kept for audit.
    Failed {
        /// Wall-clock ms.
        at: i64,
        /// The transport's last word.
        reason: String,
    },
}

/// One alert mail as recorded before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRecord {
    /// The notification id (deterministic): the log's key.
    pub id: String,
    /// Insertion order, assigned by [`NotifyLog::record`].
    #[serde(default)]
    pub seq: u64,
    /// Event time the notification was due at (ms).
    pub due_at: i64,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// Subject, for listings and logs.
    pub subject: String,
    /// `Message-ID` header value, e.g. `<abc@slawatch>`.
    pub message_id: String,
    /// The complete RFC 5322 message, base64 (standard alphabet).
    pub raw_b64: String,
    /// Delivery state.
    pub status: MailStatus,
    /// Failed delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Wall-clock ms before which no new attempt is made (backoff).
    #[serde(default)]
    pub next_attempt_at: i64,
    /// The last delivery error, for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Wall-clock ms it was recorded at (0 in logs written before this field): how long the
    /// oldest pending mail has waited.
    #[serde(default)]
    pub recorded_at: i64,
    /// The stage-2 partition whose alert engine decided it (`partitioned` topology): the mail
    /// travels in that partition's snapshot, and only the partition's owner sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

/// Counts of mails by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Recorded, not yet accepted.
    pub pending: u64,
    /// Accepted by the transport.
    pub sent: u64,
    /// Given up.
    pub failed: u64,
}

/// The notification log of one store.
pub struct NotifyLog {
    db: sled::Db,
    mails: sled::Tree,
    queue: sled::Tree,
    meta: sled::Tree,
    silences: sled::Tree,
}

const SEQ_KEY: &[u8] = b"next_seq";
const ENGINE_KEY: &[u8] = b"engine_state";

impl Store {
    /// The notification log kept in this store.
    pub fn notify_log(&self) -> Result<NotifyLog, StoreError> {
        Ok(NotifyLog {
            db: self.db.clone(),
            mails: self.db.open_tree("notify/mails/v1")?,
            queue: self.db.open_tree("notify/queue/v1")?,
            meta: self.db.open_tree("notify/meta/v1")?,
            silences: self.db.open_tree("notify/silences/v1")?,
        })
    }
}

fn queue_key(seq: u64, id: &str) -> Vec<u8> {
    let mut k = seq.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl NotifyLog {
    fn next_seq(&self) -> Result<u64, StoreError> {
        let seq = self.meta.update_and_fetch(SEQ_KEY, |old| {
            let n = old.map_or(0, |b| {
                u64::from_be_bytes(b.try_into().unwrap_or([0; 8])).saturating_add(1)
            });
            Some(n.to_be_bytes().to_vec())
        })?;
        Ok(seq.map_or(0, |b| {
            u64::from_be_bytes(b.as_ref().try_into().unwrap_or([0; 8]))
        }))
    }

    /// Records a mail as pending unless a mail with its id was recorded before. Returns
    /// whether it was new. The record's `seq` and `status` are set here.
    pub fn record(&self, mail: &MailRecord) -> Result<bool, StoreError> {
        if self.mails.contains_key(mail.id.as_bytes())? {
            return Ok(false);
        }
        let seq = self.next_seq()?;
        let mut m = mail.clone();
        m.seq = seq;
        m.status = MailStatus::Pending;
        let value = serde_json::to_vec(&m)?;
        let swapped =
            self.mails
                .compare_and_swap(m.id.as_bytes(), None as Option<&[u8]>, Some(value))?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.queue.insert(queue_key(seq, &m.id), m.id.as_bytes())?;
        Ok(true)
    }

    /// The mail with this id, if recorded.
    pub fn get(&self, id: &str) -> Result<Option<MailRecord>, StoreError> {
        self.mails
            .get(id.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(StoreError::from))
            .transpose()
    }

    /// Every mail still pending, in the order they were recorded.
    pub fn pending(&self) -> Result<Vec<MailRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.queue.iter() {
            let (_, id) = entry?;
            let id = String::from_utf8_lossy(&id).into_owned();
            if let Some(m) = self.get(&id)?
                && m.status == MailStatus::Pending
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Every recorded mail, in the order they were recorded.
    pub fn all(&self) -> Result<Vec<MailRecord>, StoreError> {
        let mut out: Vec<MailRecord> = self
            .mails
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect::<Result<_, StoreError>>()?;
        out.sort_by_key(|m| m.seq);
        Ok(out)
    }

    /// How many mails are pending, sent and failed.
    pub fn counts(&self) -> Result<LogCounts, StoreError> {
        let mut c = LogCounts::default();
        for m in self.all()? {
            match m.status {
                MailStatus::Pending => c.pending += 1,
                MailStatus::Sent { .. } => c.sent += 1,
                MailStatus::Failed { .. } => c.failed += 1,
            }
        }
        Ok(c)
    }

    fn update(
        &self,
        id: &str,
        change: impl Fn(&mut MailRecord),
    ) -> Result<Option<MailRecord>, StoreError> {
        let Some(mut m) = self.get(id)? else {
            return Ok(None);
        };
        change(&mut m);
        self.mails.insert(id.as_bytes(), serde_json::to_vec(&m)?)?;
        if m.status != MailStatus::Pending {
            self.queue.remove(queue_key(m.seq, id))?;
        }
        Ok(Some(m))
    }

    /// Takes over a mail another instance recorded (from a stage-2 partition's snapshot): a
    /// pending one joins the queue (after the mails recorded here), a sent or failed one is
    /// kept for the record; a mail known here already takes the snapshot's status only when
    /// that says it is no longer pending.
    pub fn adopt(&self, mail: &MailRecord) -> Result<(), StoreError> {
        match self.get(&mail.id)? {
            None if mail.status == MailStatus::Pending => {
                self.record(mail)?;
            }
            None => {
                let mut m = mail.clone();
                m.seq = self.next_seq()?;
                self.mails
                    .insert(m.id.as_bytes(), serde_json::to_vec(&m)?)?;
            }
            Some(local) if local.status == MailStatus::Pending && mail.status != local.status => {
                let status = mail.status.clone();
                self.update(&mail.id, |m| m.status = status.clone())?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Forgets a mail that is still pending (its partition went to another instance, which
    /// sends it); returns whether it was pending.
    pub fn forget_pending(&self, id: &str) -> Result<bool, StoreError> {
        match self.get(id)? {
            Some(m) if m.status == MailStatus::Pending => {
                self.queue.remove(queue_key(m.seq, id))?;
                self.mails.remove(id.as_bytes())?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Forgets every pending mail of a stage-2 partition (see [`NotifyLog::forget_pending`]):
    /// at the start of a `partitioned` member, the mails an earlier life of it recorded belong
    /// to whoever owns their partition now. Returns how many.
    pub fn forget_pending_of_partitions(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for m in self.pending()? {
            if m.partition.is_some() && self.forget_pending(&m.id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Marks a mail accepted by the transport at wall-clock `at`, and makes that durable.
    pub fn mark_sent(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.update(id, |m| {
            m.status = MailStatus::Sent { at };
            m.last_error = None;
        })?;
        self.db.flush()?;
        Ok(())
    }

    /// Records a failed attempt: the mail stays pending until `next_attempt_at`.
    pub fn mark_retry(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: i64,
    ) -> Result<(), StoreError> {
        self.update(id, |m| {
            m.attempts += 1;
            m.next_attempt_at = next_attempt_at;
            m.last_error = Some(error.to_owned());
        })?;
        Ok(())
    }

    /// Gives up on a mail after a permanent error.
    pub fn mark_failed(&self, id: &str, reason: &str, at: i64) -> Result<(), StoreError> {
        self.update(id, |m| {
            m.attempts += 1;
            m.status = MailStatus::Failed {
                at,
                reason: reason.to_owned(),
            };
            m.last_error = Some(reason.to_owned());
        })?;
        self.db.flush()?;
        Ok(())
    }

    /// Stores the alert engine's state snapshot (replacing the previous one).
    pub fn save_state<T: Serialize>(&self, state: &T) -> Result<(), StoreError> {
        self.meta.insert(ENGINE_KEY, serde_json::to_vec(state)?)?;
        Ok(())
    }

    /// The last engine state snapshot, if any.
    pub fn load_state<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        self.meta
            .get(ENGINE_KEY)?
            .map(|v| serde_json::from_slice(&v).map_err(StoreError::from))
            .transpose()
    }

    /// Stores (or replaces) a silence under `id`.
    pub fn put_silence<T: Serialize>(&self, id: &str, silence: &T) -> Result<(), StoreError> {
        self.silences
            .insert(id.as_bytes(), serde_json::to_vec(silence)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// The silence stored under `id`.
    pub fn silence<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        self.silences
            .get(id.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(StoreError::from))
            .transpose()
    }

    /// Every stored silence, ordered by id.
    pub fn silences<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.silences
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
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

    fn mail(id: &str) -> MailRecord {
        MailRecord {
            id: id.into(),
            seq: 0,
            due_at: 1,
            from: "a@b".into(),
            to: vec!["c@d".into()],
            subject: "s".into(),
            message_id: format!("<{id}@slawatch>"),
            raw_b64: String::new(),
            status: MailStatus::Pending,
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
            recorded_at: 0,
            partition: None,
        }
    }

    #[test]
    fn records_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let log = store.notify_log().unwrap();
            assert!(log.record(&mail("b")).unwrap());
            assert!(log.record(&mail("a")).unwrap());
            assert!(!log.record(&mail("b")).unwrap());
            log.mark_retry("b", "refused", 10).unwrap();
            log.mark_sent("a", 5).unwrap();
            log.save_state(&vec![1, 2, 3]).unwrap();
            log.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let log = store.notify_log().unwrap();
        let pending = log.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, "b");
        assert_eq!(pending[0].attempts, 1);
        assert_eq!(pending[0].next_attempt_at, 10);
        assert_eq!(log.load_state::<Vec<i32>>().unwrap(), Some(vec![1, 2, 3]));
        let all = log.all().unwrap();
        assert_eq!(
            all.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(
            log.counts().unwrap(),
            LogCounts {
                pending: 1,
                sent: 1,
                failed: 0
            }
        );
    }
}
