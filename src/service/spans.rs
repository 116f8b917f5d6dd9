//! The span path of the shell: OpenTelemetry spans from the OTLP/HTTP receiver and from Kafka
//! span topics go into one [`Assembler`] owned by the loop that owns the pipeline; the sessions
//! it assembles go into [`Pipeline::accept`] (never formatted and parsed back); what it rejects
//! is counted and dead-lettered with its reason, like a rejected record.
//!
//! The receiver decodes off the loop (on the API's threads) and hands the typed spans over a
//! bounded channel ([`SpanIntake`]): when the loop is behind, the channel is full and the
//! receiver answers 503 with `Retry-After` instead of queueing without bound. The loop answers
//! each request once its spans are in the assembler, with the number of spans it dead-lettered
//! at once (the OTLP `partial_success`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::finding::Finding;
use crate::ingest::decode::RejectReason;
use crate::ingest::encode::{RecordStyle, encode_record};
use crate::ingest::{DeadLetters, Position};
use crate::metrics::Metrics;
use crate::otel::{Assembled, Assembler, OtelConfig, Span, SpanReject};
use crate::pipeline::{Outcome, Pipeline};
use crate::session::Session;

/// The pipeline partition of sessions assembled from spans in a Kafka run (record partitions
/// are numbered from 0): one partition, since one assembler serves every span source.
pub const SPAN_PARTITION: i32 = -1;

/// Span batches waiting for the loop; beyond this the receiver answers 503.
pub const INTAKE_CAPACITY: usize = 64;

/// What the receiver hands to the loop: one decoded request, or one that could not be decoded
/// (dead-lettered by the loop, which owns the dead letters).
pub enum Batch {
    Spans(Vec<Span>),
    Rejected { reason: SpanReject, raw: Vec<u8> },
}

/// A batch and where to say what became of it.
pub struct Request {
    pub batch: Batch,
    pub reply: Option<mpsc::Sender<Pushed>>,
}

/// What became of a request's spans once the loop has taken them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Spans dead-lettered while the batch was pushed.
    pub rejected_spans: i64,
    /// Why, for the OTLP `partial_success.error_message` (empty when none was).
    pub message: String,
}

/// Why a batch was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The loop is behind (the channel is full): retry later.
    Busy,
    /// The loop has stopped.
    Closed,
}

/// The receiver's end of the channel to the loop.
pub struct SpanIntake {
    tx: SyncSender<Request>,
    /// Largest request body accepted, compressed or not.
    pub max_body: usize,
}

impl SpanIntake {
    pub fn channel(max_body: usize) -> (Arc<SpanIntake>, Receiver<Request>) {
        let (tx, rx) = mpsc::sync_channel(INTAKE_CAPACITY);
        (Arc::new(SpanIntake { tx, max_body }), rx)
    }

    /// Queues a batch for the loop without waiting; with a reply channel when the caller wants
    /// to know what became of it.
    pub fn offer(&self, batch: Batch) -> Result<Receiver<Pushed>, Refused> {
        let (reply, answer) = mpsc::channel();
        let request = Request {
            batch,
            reply: Some(reply),
        };
        match self.tx.try_send(request) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Closed),
        }
    }
}

/// Where the span path's dead letters go, implemented by each loop (file, receiver, Kafka):
/// spans rejected by the assembler or the decoder (`raw`: the spans as OTLP JSON, or the
/// request's bytes), and assembled sessions the pipeline rejected (`raw`: the contract-v1
/// record). `at` is the input unit (line, message, request) whose spans completed or rejected
/// them, passed by the caller of each [`SpanPath`] step.
pub trait SpanOutputs {
    fn dead_letter(&mut self, at: &Position, reason: &RejectReason, raw: &[u8]) -> Result<()>;
}

/// A file of dead letters (replay, a receiver-only run).
impl SpanOutputs for DeadLetters {
    fn dead_letter(&mut self, at: &Position, reason: &RejectReason, raw: &[u8]) -> Result<()> {
        self.write_reason(at, reason.code(), reason.to_string(), raw)
            .context("writing a dead letter")
    }
}

/// The position of dead letters that no input unit completed: the receiver's requests
/// (`otlp-http`), the idle advance and the end of input (`span-assembler`).
pub fn span_position(source: &str) -> Position {
    Position::Line {
        source: source.into(),
        line: 0,
    }
}

/// The assembler of a loop, and what it writes beside the pipeline.
pub struct SpanPath {
    assembler: Assembler,
    /// `--emit-sessions`: every assembled session as a contract-v1 record, one per line.
    emit: Option<BufWriter<File>>,
    /// The pipeline partition its sessions are accepted into.
    partition: i32,
    metrics: Arc<Metrics>,
    pub sessions: u64,
    pub rejected: u64,
}

impl SpanPath {
    pub fn new(
        config: &OtelConfig,
        catalog: Arc<crate::catalog::Catalog>,
        partition: i32,
        emit: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> Result<SpanPath> {
        let emit = match emit {
            Some(p) => Some(BufWriter::new(
                File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => None,
        };
        Ok(SpanPath {
            assembler: Assembler::new(config).with_catalog(catalog),
            emit,
            partition,
            metrics,
            sessions: 0,
            rejected: 0,
        })
    }

    pub fn assembler(&self) -> &Assembler {
        &self.assembler
    }

    pub fn assembler_mut(&mut self) -> &mut Assembler {
        &mut self.assembler
    }

    /// Pushes one batch, read from `source` when it came from a span partition (the
    /// assembler's watermark is the minimum over its sources); what it completes goes into
    /// the pipeline.
    pub fn push(
        &mut self,
        source: Option<i32>,
        spans: Vec<Span>,
        at: &Position,
        pipeline: &mut Pipeline,
        found: &mut Vec<Finding>,
        outputs: &mut dyn SpanOutputs,
    ) -> Result<Pushed> {
        let mut out = Vec::new();
        match source {
            Some(source) => self.assembler.push_from(source, spans, &mut out),
            None => self.assembler.push(spans, &mut out),
        }
        self.take(out, at, pipeline, found, outputs)
    }

    /// A span source became idle (or active again): it stops (or starts again) holding the
    /// assembler's watermark back.
    pub fn set_source_idle(
        &mut self,
        source: i32,
        idle: bool,
        pipeline: &mut Pipeline,
        found: &mut Vec<Finding>,
        outputs: &mut dyn SpanOutputs,
    ) -> Result<Pushed> {
        let mut out = Vec::new();
        self.assembler.set_source_idle(source, idle, &mut out);
        let at = span_position("span-assembler");
        self.take(out, &at, pipeline, found, outputs)
    }

    /// A request that could not be decoded.
    pub fn reject(
        &mut self,
        reason: SpanReject,
        raw: Vec<u8>,
        at: &Position,
        pipeline: &mut Pipeline,
        found: &mut Vec<Finding>,
        outputs: &mut dyn SpanOutputs,
    ) -> Result<Pushed> {
        let out = vec![Assembled::Rejected { reason, raw }];
        self.take(out, at, pipeline, found, outputs)
    }

    /// Moves the assembler's watermark (no span for a while: nothing earlier is coming).
    pub fn advance(
        &mut self,
        watermark_ms: i64,
        pipeline: &mut Pipeline,
        found: &mut Vec<Finding>,
        outputs: &mut dyn SpanOutputs,
    ) -> Result<Pushed> {
        let mut out = Vec::new();
        self.assembler.advance(watermark_ms, &mut out);
        let at = span_position("span-assembler");
        self.take(out, &at, pipeline, found, outputs)
    }

    /// End of input: every trace with a root becomes a session, the rest dead letters.
    pub fn finish(
        &mut self,
        pipeline: &mut Pipeline,
        found: &mut Vec<Finding>,
        outputs: &mut dyn SpanOutputs,
    ) -> Result<Pushed> {
        let mut out = Vec::new();
        self.assembler.finish(&mut out);
        let at = span_position("<end of input>");
        let pushed = self.take(out, &at, pipeline, found, outputs)?;
        self.flush()?;
        Ok(pushed)
    }

    pub fn flush(&mut self) -> Result<()> {
        if let Some(w) = &mut self.emit {
            w.flush().context("writing --emit-sessions")?;
        }
        Ok(())
    }

    fn take(
        &mut self,
        out: Vec<Assembled>,
        at: &Position,
        pipeline: &mut Pipeline,
        found: &mut Vec<Finding>,
        outputs: &mut dyn SpanOutputs,
    ) -> Result<Pushed> {
        let mut pushed = Pushed::default();
        let mut reasons: std::collections::BTreeMap<&'static str, u64> = Default::default();
        for a in out {
            match a {
                Assembled::Session(s) => self.accept(&s, at, pipeline, found, outputs)?,
                Assembled::Rejected { reason, raw } => {
                    self.rejected += 1;
                    pushed.rejected_spans += 1;
                    *reasons.entry(reason.code()).or_default() += 1;
                    let outcome = pipeline.reject_spans(&reason);
                    self.metrics.record_outcome(&outcome);
                    if let Outcome::Rejected { reason, .. } = &outcome {
                        outputs.dead_letter(at, reason, &raw)?;
                    }
                }
            }
        }
        if !reasons.is_empty() {
            let list: Vec<String> = reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
            pushed.message = format!("dead-lettered: {}", list.join(", "));
        }
        Ok(pushed)
    }

    fn accept(
        &mut self,
        session: &Session,
        at: &Position,
        pipeline: &mut Pipeline,
        found: &mut Vec<Finding>,
        outputs: &mut dyn SpanOutputs,
    ) -> Result<()> {
        self.sessions += 1;
        if let Some(w) = &mut self.emit {
            w.write_all(encode_record(session, RecordStyle::Sparse).as_bytes())?;
            w.write_all(b"\n")?;
        }
        let outcome =
            (self.metrics).evaluate(pipeline, |p| p.accept(session, self.partition, found));
        self.metrics.record_outcome(&outcome);
        if let Outcome::Rejected {
            reason,
            dead_letter: true,
        } = &outcome
        {
            let record = encode_record(session, RecordStyle::Sparse);
            outputs.dead_letter(at, reason, record.as_bytes())?;
        }
        Ok(())
    }
}

/// Waits for the loop's answer to a batch, at most `wait`: `Err(Timeout)` when the batch is
/// still queued (it will be taken), `Err(Disconnected)` when the loop stopped without taking it.
pub fn await_reply(
    answer: &Receiver<Pushed>,
    wait: Duration,
) -> Result<Pushed, mpsc::RecvTimeoutError> {
    answer.recv_timeout(wait)
}

/// Takes one request: pushes or dead-letters its batch, and answers it. `source` is
/// [`crate::otel::RECEIVER_SOURCE`] when the receiver runs beside Kafka span partitions (one
/// more source of the assembler's watermark), `None` when it is the only input.
pub fn take_request(
    request: Request,
    source: Option<i32>,
    path: &mut SpanPath,
    pipeline: &mut Pipeline,
    found: &mut Vec<Finding>,
    outputs: &mut dyn SpanOutputs,
) -> Result<()> {
    // A request is the receiver's unit of input, as a message is a topic's and a line a
    // file's: counted once here, whatever sessions and rejects it turns into.
    path.metrics.record_consumed();
    let at = span_position("otlp-http");
    let pushed = match request.batch {
        Batch::Spans(spans) => path.push(source, spans, &at, pipeline, found, outputs)?,
        Batch::Rejected { reason, raw } => {
            path.reject(reason, raw, &at, pipeline, found, outputs)?
        }
    };
    if let Some(reply) = request.reply {
        // The client may have gone; its spans are taken all the same.
        let _ = reply.send(pushed);
    }
    Ok(())
}

/// Wall-clock now, epoch ms (the shell's idle advance; the assembler never reads a clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
