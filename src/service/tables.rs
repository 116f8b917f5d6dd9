//! Global tables of the `partitioned` topology: what every instance holds whole, so that any
//! instance answers any question (the Kafka Streams global-table pattern).
//!
//! Stage 2 spreads agents over instances, so no instance's own state covers the fleet. Every
//! instance therefore reads, on a thread of its own and without a consumer group:
//!
//! - the **input topics** whole, decoding and deduplicating every record into the operational
//!   history (independent of specs, so unselected agents count too) — the same records give
//!   the same history on every instance;
//! - the **findings topic** whole, into the store's shared findings (each finding once, by id).
//!
//! Its progress is a checkpoint of its own (`tables.cbor` in the data directory: offsets, the
//! dedupe state, and the history delta sealed for the store), written before the delta is
//! applied, so a crash neither loses nor double-counts a session. Decoding the input once more
//! per instance is the price: cheaper than the evaluation stage 2 does, and it needs no new
//! topic whose messages could outgrow the broker's size limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{decode_cbor, encode_cbor};
use crate::finding::Finding;
use crate::kafka::{KafkaConfig, Tailer};
use crate::pipeline::{Pipeline, PipelineState};
use crate::store::Store;

const CHECKPOINT: &str = "tables.cbor";

/// (Written with the pipeline borrowed, [`crate::pipeline::PipelineStateRef`]: the same
/// bytes.)
#[derive(Serialize, Deserialize)]
struct TablesCheckpoint<P = PipelineState> {
    pipeline: P,
    /// Last offset read per (topic, partition).
    read: Vec<((String, i32), i64)>,
}

/// The thread that keeps the global tables.
pub struct GlobalTables {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl GlobalTables {
    /// Starts reading. `pipeline` has no specs and keeps the history (see [`Pipeline::with_history`]).
    pub fn start(
        kafka: KafkaConfig,
        store: Arc<Store>,
        pipeline: Pipeline,
    ) -> Result<GlobalTables> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("slawatch-tables".into())
            .spawn(move || {
                let r = run(&kafka, &store, pipeline, &flag);
                if let Err(e) = &r {
                    tracing::error!(error = %format!("{e:#}"), "the global tables stopped");
                }
                r
            })
            .context("starting the global tables thread")?;
        Ok(GlobalTables {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops reading after a final checkpoint.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the global tables thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for GlobalTables {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    kafka: &KafkaConfig,
    store: &Store,
    mut pipeline: Pipeline,
    stop: &AtomicBool,
) -> Result<()> {
    let mut read: BTreeMap<(String, i32), i64> = BTreeMap::new();
    if let Some(bytes) = store.named_checkpoint(CHECKPOINT)? {
        let cp: TablesCheckpoint = decode_cbor(&bytes).context("reading tables.cbor")?;
        if pipeline.restore(cp.pipeline) {
            read = cp.read.into_iter().collect();
            store.persist_history(&mut pipeline)?;
        }
    }
    let mut topics = kafka.topics.clone();
    if let Some(f) = &kafka.findings_topic {
        // The findings topic may not exist before the first finding is published.
        kafka
            .ensure_topics(&[(f.clone(), 1)])
            .context("creating the findings topic")?;
        topics.push(f.clone());
    }
    let tailer = Tailer::new(kafka, &topics, &read)?;
    let mut last = Instant::now();
    let mut changed = false;
    let mut scratch = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if changed && (stopping || last.elapsed() >= Duration::from_secs(1)) {
            // Sealed into the checkpoint first, applied after: see `service::State::checkpoint`.
            pipeline.history_seal();
            let cp = TablesCheckpoint {
                pipeline: pipeline.snapshot_ref(),
                read: read.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            };
            store.put_named_checkpoint(CHECKPOINT, &encode_cbor(&cp))?;
            store.persist_history(&mut pipeline)?;
            changed = false;
            last = Instant::now();
        }
        if stopping {
            return Ok(());
        }
        let Some(m) = tailer.poll(Duration::from_millis(100))? else {
            continue;
        };
        if kafka.findings_topic.as_deref() == Some(m.topic.as_str()) {
            match serde_json::from_slice::<Finding>(&m.payload) {
                Ok(f) => {
                    store.put_shared_finding(&f)?;
                }
                Err(e) => {
                    tracing::warn!(error = %e, offset = m.offset, "a finding that does not parse")
                }
            }
        } else {
            let pid = kafka.topics.iter().position(|t| *t == m.topic).unwrap_or(0) as i32
                * 1_000_000
                + m.partition;
            pipeline.process_bytes(&m.payload, pid, &mut scratch);
            scratch.clear();
        }
        read.insert((m.topic, m.partition), m.offset);
        changed = true;
    }
}
