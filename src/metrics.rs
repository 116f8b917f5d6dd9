//! The service's own telemetry: every metric family of `/metrics`, registered once, with typed
//! methods the shell calls in one line (`metrics.record_outcome(&outcome)`). The only module
//! that imports prometheus-client.
//!
//! The pure core never sees this: counts are derived at the I/O edge from what the pipeline
//! returns (an [`Outcome`] per record, findings, the windows its statistics say were
//! evaluated). Labels are low-cardinality by construction (reject reasons, severities,
//! dimensions, Kafka partitions) — never a session id or a key. The families and what they
//! mean are tabled in `docs/metrics.md`.
//!
//! Besides the `slawatch_` families it exposes the standard process metrics of Prometheus
//! client libraries (`process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_start_time_seconds`), read from `/proc/self` at scrape time on Linux and absent
//! elsewhere.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::alerts::Incident;
use crate::finding::Finding;
use crate::ingest::decode::RejectReason;
use crate::pipeline::{Outcome, Pipeline};
use crate::spec::model::Severity;

/// The media type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    severity: &'static str,
    dimension: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of one `slawatch run`, shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    records_consumed: Counter,
    records_accepted: Counter,
    records_rejected: Family<ReasonLabels, Counter>,
    records_deduplicated: Counter,
    records_late: Counter,
    windows_closed: Counter,
    window_evaluation: Histogram,
    findings: Family<FindingLabels, Counter>,
    incidents_open: Family<SeverityLabels, Gauge>,
    notifications_sent: Counter,
    notifications_failed: Counter,
    notifications_pending: Gauge,
    notification_oldest_pending_age: FloatGauge,
    consumer_lag: Family<PartitionLabels, Gauge>,
    /// The partitions `consumer_lag` has a series for, to drop those no longer assigned.
    lagging: Mutex<BTreeSet<(String, i32)>>,
    watermark_lag: FloatGauge,
    checkpoint_duration: Histogram,
    checkpoint_size: Gauge,
    state_size: Gauge,
    state_keys: Gauge,
    config_reload_successful: Gauge,
    config_reload_success_timestamp: FloatGauge,
    /// The process's memory, refreshed by [`Metrics::encode`]; `None` without `/proc`.
    process: Option<ProcessMetrics>,
}

/// `process_*` gauges whose values the kernel keeps: read when scraped.
struct ProcessMetrics {
    resident: Gauge,
    virtual_memory: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

const SEVERITIES: [Severity; 3] = [Severity::Info, Severity::Ticket, Severity::Page];

impl Metrics {
    /// Every family registered, with the series whose zero means something listed from the
    /// start (every reject reason, every incident severity).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            records_consumed: Counter::default(),
            records_accepted: Counter::default(),
            records_rejected: Family::default(),
            records_deduplicated: Counter::default(),
            records_late: Counter::default(),
            windows_closed: Counter::default(),
            // 100 µs … 26 s.
            window_evaluation: Histogram::new(exponential_buckets(0.0001, 4.0, 10)),
            findings: Family::default(),
            incidents_open: Family::default(),
            notifications_sent: Counter::default(),
            notifications_failed: Counter::default(),
            notifications_pending: Gauge::default(),
            notification_oldest_pending_age: FloatGauge::default(),
            consumer_lag: Family::default(),
            lagging: Mutex::default(),
            watermark_lag: FloatGauge::default(),
            // 1 ms … 65 s.
            checkpoint_duration: Histogram::new(exponential_buckets(0.001, 4.0, 9)),
            checkpoint_size: Gauge::default(),
            state_size: Gauge::default(),
            state_keys: Gauge::default(),
            config_reload_successful: Gauge::default(),
            config_reload_success_timestamp: FloatGauge::default(),
            process: None,
            registry: Registry::default(),
        };
        for reason in RejectReason::CODES {
            let _ = m.records_rejected.get_or_create(&ReasonLabels { reason });
        }
        for s in SEVERITIES {
            let _ = m.incidents_open.get_or_create(&SeverityLabels {
                severity: s.as_str(),
            });
        }
        let process = register_process_metrics(&mut registry);
        let r = registry.sub_registry_with_prefix("slawatch");
        r.register(
            "records_consumed",
            "Records read from the input (file, stdin or Kafka), before decoding",
            m.records_consumed.clone(),
        );
        r.register(
            "records_accepted",
            "Records decoded and counted (whether or not a spec selects them)",
            m.records_accepted.clone(),
        );
        r.register(
            "records_rejected",
            "Records rejected, by the decoder's reason code (dead-lettered unless the spec drops late records)",
            m.records_rejected.clone(),
        );
        r.register(
            "records_deduplicated",
            "Records whose session_id was seen before: counted once only",
            m.records_deduplicated.clone(),
        );
        r.register(
            "records_late",
            "Records every window of which had closed (also counted as rejected, reason late)",
            m.records_late.clone(),
        );
        r.register(
            "windows_closed",
            "Objective windows (per key and segment) that closed and got a verdict",
            m.windows_closed.clone(),
        );
        r.register(
            "window_evaluation_seconds",
            "Wall time of a watermark advance that closed windows: merging panes and evaluating every objective",
            m.window_evaluation.clone(),
        );
        r.register(
            "findings",
            "Findings produced, by severity and dimension",
            m.findings.clone(),
        );
        r.register(
            "incidents_open",
            "Incidents pending or firing, by severity",
            m.incidents_open.clone(),
        );
        r.register(
            "notifications_sent",
            "Alert mails accepted by the SMTP server (or written to the outbox)",
            m.notifications_sent.clone(),
        );
        r.register(
            "notifications_failed",
            "Alert mails given up after a permanent error",
            m.notifications_failed.clone(),
        );
        r.register(
            "notifications_pending",
            "Alert mails recorded in the durable notification log and not sent yet",
            m.notifications_pending.clone(),
        );
        r.register(
            "notification_oldest_pending_age_seconds",
            "Wall time since the oldest pending alert mail was recorded (0 when none is pending)",
            m.notification_oldest_pending_age.clone(),
        );
        r.register(
            "consumer_lag_records",
            "Kafka: high watermark minus the consumer's position, per assigned partition",
            m.consumer_lag.clone(),
        );
        r.register(
            "watermark_lag_seconds",
            "Wall clock minus the event-time frontier (the newest event time every active input partition has reached)",
            m.watermark_lag.clone(),
        );
        r.register(
            "checkpoint_duration_seconds",
            "Wall time of a checkpoint (state written and flushed, outputs delivered)",
            m.checkpoint_duration.clone(),
        );
        r.register(
            "checkpoint_size_bytes",
            "Size of the newest checkpoint that wrote state (all state snapshots it wrote)",
            m.checkpoint_size.clone(),
        );
        r.register(
            "state_size_bytes",
            "Bytes of the state directory on disk (sled store and checkpoint files)",
            m.state_size.clone(),
        );
        r.register(
            "state_keys",
            "Keys in the sled store (findings, baselines, history buckets, notification log)",
            m.state_keys.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "1 when the last configuration (re)load succeeded, else 0",
            m.config_reload_successful.clone(),
        );
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load",
            m.config_reload_success_timestamp.clone(),
        );
        let build: Family<VersionLabels, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "Always 1; the version of slawatch", build);
        Metrics {
            registry,
            process,
            ..m
        }
    }

    /// The registry in the text exposition format (OpenMetrics, which Prometheus reads), the
    /// process metrics read now.
    pub fn encode(&self) -> String {
        if let (Some(p), Some(mem)) = (&self.process, ProcMemory::read()) {
            p.resident.set(mem.resident_bytes as i64);
            p.virtual_memory.set(mem.virtual_bytes as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }

    /// One record read from the input.
    pub fn record_consumed(&self) {
        self.records_consumed.inc();
    }

    /// What became of one record (consumed is counted separately: stage 1 of `partitioned`
    /// reads records whose outcome stage 2 decides).
    pub fn record_outcome(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Accepted => {
                self.records_accepted.inc();
            }
            Outcome::Duplicate => {
                self.records_deduplicated.inc();
            }
            Outcome::Rejected { reason, .. } => self.record_rejected(reason),
        }
    }

    /// A record rejected for `reason`.
    pub fn record_rejected(&self, reason: &RejectReason) {
        self.records_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.code(),
            })
            .inc();
        if matches!(reason, RejectReason::Late { .. }) {
            self.records_late.inc();
        }
    }

    /// A record stage 1 of `partitioned` accepted without forwarding it (no spec selects it).
    pub fn record_accepted(&self) {
        self.records_accepted.inc();
    }

    /// Runs `step` on `pipeline` and counts the windows it closed; when it closed any, its wall
    /// time is an evaluation latency.
    pub fn evaluate<R>(&self, pipeline: &mut Pipeline, step: impl FnOnce(&mut Pipeline) -> R) -> R {
        let before = pipeline.windows_evaluated();
        let started = Instant::now();
        let r = step(pipeline);
        let closed = pipeline.windows_evaluated().saturating_sub(before);
        if closed > 0 {
            self.windows_closed.inc_by(closed);
            self.window_evaluation
                .observe(started.elapsed().as_secs_f64());
        }
        r
    }

    /// A finding left the pipeline.
    pub fn record_finding(&self, f: &Finding) {
        self.findings
            .get_or_create(&FindingLabels {
                severity: f.severity.as_str(),
                dimension: f.dimension.as_str(),
            })
            .inc();
    }

    /// The alert engine's incidents after it advanced: the open ones are counted by severity.
    pub fn set_incidents<'a>(&self, incidents: impl Iterator<Item = &'a Incident>) {
        let mut open = [0i64; 3];
        for i in incidents.filter(|i| i.is_open()) {
            open[i.severity as usize] += 1;
        }
        for s in SEVERITIES {
            self.incidents_open
                .get_or_create(&SeverityLabels {
                    severity: s.as_str(),
                })
                .set(open[s as usize]);
        }
    }

    /// A delivery round: mails sent and given up, and the log's pending mails after it with
    /// the age of the oldest.
    pub fn record_delivery(&self, sent: u64, failed: u64, pending: u64, oldest_age: Duration) {
        self.notifications_sent.inc_by(sent);
        self.notifications_failed.inc_by(failed);
        self.notifications_pending.set(pending as i64);
        self.notification_oldest_pending_age
            .set(oldest_age.as_secs_f64());
    }

    /// The lag (high watermark − position, never below 0) of every partition of `topics` one
    /// consumer has assigned; partitions of those topics not listed lose their series.
    pub fn set_consumer_lags(&self, topics: &[String], lags: &[(String, i32, i64)]) {
        let mut known = self.lagging.lock().unwrap_or_else(|p| p.into_inner());
        let now: BTreeSet<(String, i32)> = lags.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        known.retain(|(t, p)| {
            let keep = !topics.contains(t) || now.contains(&(t.clone(), *p));
            if !keep {
                self.consumer_lag.remove(&PartitionLabels {
                    topic: t.clone(),
                    partition: *p,
                });
            }
            keep
        });
        for (topic, partition, lag) in lags {
            self.consumer_lag
                .get_or_create(&PartitionLabels {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .set((*lag).max(0));
            known.insert((topic.clone(), *partition));
        }
    }

    /// The event-time frontier (epoch ms) against the wall clock.
    pub fn set_watermark(&self, frontier_ms: Option<i64>) {
        if let Some(t) = frontier_ms {
            self.watermark_lag.set((now_ms() - t) as f64 / 1000.0);
        }
    }

    /// A checkpoint took `took` and wrote `bytes`. One that wrote no state (only offsets, e.g.
    /// after a progress mark that moved nothing) leaves the size of the newest one that did.
    pub fn record_checkpoint(&self, took: Duration, bytes: u64) {
        self.checkpoint_duration.observe(took.as_secs_f64());
        if bytes > 0 {
            self.checkpoint_size.set(bytes as i64);
        }
    }

    /// The state's size on disk and its key count.
    pub fn set_state_size(&self, bytes: u64, keys: u64) {
        self.state_size.set(bytes as i64);
        self.state_keys.set(keys as i64);
    }

    /// A configuration (re)load at wall-clock `at_ms`: on success, its time is remembered.
    pub fn record_config_load(&self, ok: bool, at_ms: i64) {
        self.config_reload_successful.set(i64::from(ok));
        if ok {
            self.config_reload_success_timestamp
                .set(at_ms as f64 / 1000.0);
        }
    }

    /// The initial configuration loaded now (specs, policy, options): `run` calls this once at
    /// start-up; reloads call [`Metrics::record_config_load`].
    pub fn record_initial_config(&self) {
        self.record_reload(true);
    }

    /// A reload applied (`true`) or refused, now.
    pub fn record_reload(&self, ok: bool) {
        self.record_config_load(ok, now_ms());
    }
}

/// Registers the `process_*` gauges (unprefixed, as every Prometheus client names them) when
/// `/proc/self` can be read; the start time is read once, it does not change.
fn register_process_metrics(registry: &mut Registry) -> Option<ProcessMetrics> {
    let mem = ProcMemory::read()?;
    let p = ProcessMetrics {
        resident: Gauge::default(),
        virtual_memory: Gauge::default(),
    };
    p.resident.set(mem.resident_bytes as i64);
    p.virtual_memory.set(mem.virtual_bytes as i64);
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory size in bytes (VmRSS), read at scrape time",
        p.resident.clone(),
    );
    registry.register(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes (VmSize), read at scrape time",
        p.virtual_memory.clone(),
    );
    if let Some(started) = process_start_time_seconds() {
        let g = FloatGauge::default();
        g.set(started);
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            g,
        );
    }
    Some(p)
}

/// The process's memory from `/proc/self/status`.
struct ProcMemory {
    resident_bytes: u64,
    virtual_bytes: u64,
}

impl ProcMemory {
    fn read() -> Option<ProcMemory> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Some(ProcMemory {
            resident_bytes: status_kib(&status, "VmRSS:")? * 1024,
            virtual_bytes: status_kib(&status, "VmSize:")? * 1024,
        })
    }
}

/// The value of a `Name:   1234 kB` line of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second of `/proc` times: `USER_HZ`, 100 on every Linux architecture.
const USER_HZ: f64 = 100.0;

/// Boot time (`btime` of `/proc/stat`) plus the process's start in ticks after boot (field 22
/// of `/proc/self/stat`), as Prometheus's own process collector computes it.
fn process_start_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    start_time_from(&stat, &boot)
}

/// See [`process_start_time_seconds`]: the command name (field 2) is in parentheses and may
/// hold spaces, so fields are counted after its closing one (field 3 is the first).
fn start_time_from(stat: &str, proc_stat: &str) -> Option<f64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = after_comm.split_whitespace().nth(22 - 3)?.parse().ok()?;
    let btime: f64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime + ticks / USER_HZ)
}

/// Wall-clock ms (telemetry is the shell's: it may read the clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_with_total_and_labels() {
        let m = Metrics::new();
        m.record_consumed();
        m.record_consumed();
        m.record_outcome(&Outcome::Accepted);
        m.record_outcome(&Outcome::Rejected {
            reason: RejectReason::NotJson { detail: "x".into() },
            dead_letter: true,
        });
        m.record_config_load(true, 1_700_000_000_500);
        let text = m.encode();
        assert!(
            text.contains("slawatch_records_consumed_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("slawatch_records_accepted_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("slawatch_records_rejected_total{reason=\"not_json\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("slawatch_records_rejected_total{reason=\"future\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("slawatch_config_last_reload_successful 1\n"));
        assert!(
            text.contains("slawatch_config_last_reload_success_timestamp_seconds 1700000000.5\n")
        );
        assert!(text.contains(&format!(
            "slawatch_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn process_metrics_are_read_from_proc_at_scrape_time() {
        let m = Metrics::new();
        let rss = |text: &str| -> u64 {
            let line = text
                .lines()
                .find(|l| l.starts_with("process_resident_memory_bytes "))
                .unwrap_or_else(|| panic!("no resident memory in {text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let before = rss(&m.encode());
        // 128 MiB touched page by page must show in the next scrape; the margin leaves 32 MiB
        // for other tests of this process freeing memory at the same time.
        let mut big = vec![0u8; 128 << 20];
        big.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let after = rss(&m.encode());
        assert!(
            after >= before + (96 << 20),
            "resident {before} → {after} after touching 128 MiB"
        );
        std::hint::black_box(&big);
    }

    #[test]
    fn a_checkpoint_of_offsets_alone_leaves_the_size_of_the_last_state_written() {
        let m = Metrics::new();
        m.record_checkpoint(Duration::from_millis(3), 4096);
        m.record_checkpoint(Duration::from_millis(1), 0);
        let text = m.encode();
        assert!(
            text.contains("slawatch_checkpoint_size_bytes 4096\n"),
            "{text}"
        );
        assert!(
            text.contains("slawatch_checkpoint_duration_seconds_count 2\n"),
            "{text}"
        );
    }

    #[test]
    fn start_time_counts_fields_after_the_command_name() {
        // A command name with spaces and parentheses; starttime (field 22) = 12345 ticks.
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 12345 1000 50";
        let proc_stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let t = start_time_from(stat, proc_stat).unwrap();
        assert!((t - 1_700_000_123.45).abs() < 1e-6, "{t}");
        assert_eq!(start_time_from("garbage", proc_stat), None);
    }
}
