//! slawatch: tells teams running AI agents in production when their agents break their
//! promises.
//!
//! The data flow, module by module:
//!
//! 1. [`ingest`] — sources (file, stdin; Kafka next), [`ingest::decode`] against contract
//!    `agent-session/v1` ([`session`], [`time`], [`catalog`]) with a reason for every reject,
//!    dedupe by session id, dead letters.
//! 2. [`windowing`] — event-time windows made of mergeable pane summaries ([`sketch`]), the
//!    watermark and lateness.
//! 3. [`evaluate`] — every closed window scored against the [`spec`]s' objectives: error
//!    budgets and burn rates, thresholds (judged on [`confidence`] bounds), governance
//!    violations; [`drift`] compares behaviour with baselines. The output is [`finding`]s.
//! 4. [`history`] — the operational history every accepted session updates, independent of
//!    specs: what the questions of the [`api`] and `slawatch query` are answered from.
//! 5. [`pipeline`] wires 1–4; [`present`] says findings in words (the core builds no
//!    sentence); [`checkpoint`] splits the pipeline's state into parts so a checkpoint writes
//!    only what changed; [`store`] (sled) keeps state; [`alerts`] turns findings into mail; [`cli`] is
//!    the command line; [`simulate`] generates streams for demos and tests; [`fuzzing`] holds
//!    the fuzz targets of every parser of untrusted bytes.
//!    the command line; [`simulate`] generates streams for demos and tests; [`metrics`] and
//!    [`health`] are what `/metrics` and `/readyz` report.
//!
//! The core (windowing, evaluate, drift, spec parsing) never does I/O and never reads the wall
//! clock: same input, same findings.

pub mod alerts;
pub mod api;
pub mod catalog;
pub mod checkpoint;
pub mod cli;
pub mod confidence;
pub mod drift;
pub mod duration;
pub mod evaluate;
pub mod finding;
pub mod forensics;
pub mod fuzzing;
pub mod glob;
pub mod health;
pub mod history;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod otel;
pub mod pipeline;
pub mod present;
pub mod schema;
pub mod service;
pub mod session;
pub mod simulate;
pub mod sketch;
pub mod snapshot;
pub mod spec;
pub mod store;
pub mod time;
pub mod windowing;
