//! `slawatch::simulate`: determinism, wire-format validity, steady statistics, every incident
//! kind (inside its interval and only there), late/duplicate/dirty delivery, and the CLI surface.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{CommandFactory, Parser};
use serde_json::{Map, Value};
use slawatch::simulate::{
    AgentProfile, DEFAULT_START_MS, DirtyKind, Incident, IncidentKind, IncidentSpec,
    OVERSIZED_MIN_BYTES, SimConfig, SimulateArgs, Simulator, Stats, catalog_price, demo_incidents,
    rfc3339_ms, run, write_jsonl,
};

/// One parsed record.
type Rec = Map<String, Value>;

const H: i64 = 3_600_000;

fn generate(cfg: &SimConfig) -> (Vec<u8>, Stats) {
    let mut out = Vec::new();
    let stats = write_jsonl(cfg, &mut out).expect("valid config");
    (out, stats)
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return Vec::new();
    }
    assert_eq!(bytes.last(), Some(&b'\n'), "stream must end with a newline");
    bytes[..bytes.len() - 1].split(|b| *b == b'\n').collect()
}

fn parse(line: &[u8]) -> Rec {
    match serde_json::from_slice(line) {
        Ok(Value::Object(o)) => o,
        other => panic!(
            "not a JSON object ({other:?}): {}",
            String::from_utf8_lossy(line)
        ),
    }
}

fn records(bytes: &[u8]) -> Vec<Rec> {
    lines(bytes).into_iter().map(parse).collect()
}

/// Epoch ms of a strict `YYYY-MM-DDTHH:MM:SS.mmmZ` timestamp.
fn strict_ts(v: Option<&Value>) -> Option<i64> {
    let s = v?.as_str()?;
    let b = s.as_bytes();
    let shape_ok = b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z';
    if !shape_ok {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn s<'a>(r: &'a Rec, k: &str) -> &'a str {
    r[k].as_str()
        .unwrap_or_else(|| panic!("{k} is not a string in {r:?}"))
}

fn num(r: &Rec, k: &str) -> f64 {
    r[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number in {r:?}"))
}

fn started(r: &Rec) -> i64 {
    strict_ts(r.get("started_at")).expect("started_at")
}

fn ended(r: &Rec) -> i64 {
    strict_ts(r.get("ended_at")).expect("ended_at")
}

fn usage(r: &Rec, k: &str) -> f64 {
    r["usage"][k].as_f64().unwrap_or(f64::NAN)
}

/// Reported cost, or the catalog price of the tokens when omitted.
fn cost(r: &Rec) -> f64 {
    r["usage"]["cost_usd"].as_f64().unwrap_or_else(|| {
        let (pi, po) = catalog_price(s(r, "model"));
        (usage(r, "input_tokens") * pi + usage(r, "output_tokens") * po) / 1e6
    })
}

fn calls(r: &Rec) -> Vec<(&str, &str)> {
    r["tool_calls"]
        .as_array()
        .expect("tool_calls array")
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect()
}

fn longest_run(r: &Rec) -> usize {
    let c = calls(r);
    let (mut best, mut run) = (0, 0);
    for i in 0..c.len() {
        run = if i > 0 && c[i].0 == c[i - 1].0 {
            run + 1
        } else {
            1
        };
        best = best.max(run);
    }
    best
}

fn is_success(r: &Rec) -> bool {
    s(r, "status") == "success"
}

fn fell_back(r: &Rec) -> bool {
    r.get("fallback")
        .is_some_and(|f| f["triggered"] == Value::Bool(true))
}

fn refusal(r: &Rec) -> bool {
    r["quality"]["refusal"] == Value::Bool(true)
}

fn quantile(mut xs: Vec<f64>, q: f64) -> f64 {
    assert!(!xs.is_empty());
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

fn share(rs: &[&Rec], f: impl Fn(&Rec) -> bool) -> f64 {
    rs.iter().filter(|r| f(r)).count() as f64 / rs.len() as f64
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0.0);
    for x in xs {
        sum += x;
        n += 1.0;
    }
    sum / n
}

// ---------------------------------------------------------------------------------------------
// Determinism

#[test]
fn same_seed_gives_same_bytes_and_different_seed_differs() {
    let mut cfg = SimConfig::steady(42, 6);
    cfg.sessions_per_hour = 600.0;
    cfg.late_fraction = 0.05;
    cfg.duplicate_fraction = 0.02;
    cfg.dirty_fraction = 0.05;
    cfg.incidents = vec![
        Incident::new(
            IncidentKind::defaults("latency-tail").unwrap(),
            DEFAULT_START_MS + H,
            Some(H),
        ),
        Incident::new(
            IncidentKind::defaults("prompt-change").unwrap(),
            DEFAULT_START_MS + 3 * H,
            None,
        ),
    ];
    let (a, stats_a) = generate(&cfg);
    let (b, stats_b) = generate(&cfg);
    assert!(a.len() > 100_000, "{} bytes", a.len());
    assert_eq!(a, b, "same seed must give the same bytes");
    assert_eq!(stats_a, stats_b);

    // The iterator yields the same lines as write_jsonl.
    let via_iter: Vec<u8> = Simulator::new(cfg.clone())
        .unwrap()
        .flat_map(|mut l| {
            l.push(b'\n');
            l
        })
        .collect();
    assert_eq!(via_iter, a);

    cfg.seed = 43;
    let (c, _) = generate(&cfg);
    assert_ne!(a, c, "a different seed must give a different stream");
    let first = |x: &[u8]| lines(x)[0].to_vec();
    assert_ne!(first(&a), first(&c));
}

#[test]
fn timestamps_match_chrono() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..20_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let ms = match i {
            0 => 0,
            1 => 253_402_300_799_999,
            2 => DEFAULT_START_MS,
            _ => ((x >> 11) % 253_402_300_800_000) as i64,
        };
        let ours = rfc3339_ms(ms);
        let theirs = DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        assert_eq!(ours, theirs, "{ms}");
    }
    assert_eq!(
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .timestamp_millis(),
        DEFAULT_START_MS
    );
}

// ---------------------------------------------------------------------------------------------
// Wire format

const REQUIRED_STR: [&str; 7] = [
    "session_id",
    "agent",
    "prompt_version",
    "model",
    "started_at",
    "ended_at",
    "status",
];

/// Asserts that `r` is a valid agent-session/v1 record as the simulator writes it.
fn assert_valid(r: &Rec) {
    for k in REQUIRED_STR {
        assert!(r.get(k).is_some_and(Value::is_string), "{k} in {r:?}");
    }
    assert!(s(r, "session_id").starts_with("s-"));
    let (st, en) = (started(r), ended(r));
    let d = num(r, "duration_ms");
    assert!(d >= 0.0);
    assert!(
        ((en - st) as f64 - d).abs() <= 1.0,
        "ended-started={} vs duration_ms={d}",
        en - st
    );
    let status = s(r, "status");
    assert!(["success", "error", "timeout", "abandoned"].contains(&status));
    assert_eq!(
        r.contains_key("error_type"),
        status == "error" || status == "timeout",
        "{r:?}"
    );
    let turns = r["turns"].as_u64().expect("turns");
    assert!(turns >= 1);
    for k in ["input_tokens", "output_tokens"] {
        assert!(r["usage"][k].is_u64(), "{k}");
    }
    if let Some(c) = r["usage"].get("cost_usd") {
        assert!(c.as_f64().unwrap() > 0.0);
    }
    for c in r["tool_calls"].as_array().unwrap() {
        assert!(c["name"].is_string());
        assert!(["ok", "error", "denied"].contains(&c["status"].as_str().unwrap()));
        assert!(c["duration_ms"].as_f64().unwrap() >= 0.0);
    }
    if let Some(f) = r.get("fallback") {
        assert_ne!(status, "success", "fallback only for failed sessions");
        assert_eq!(f["triggered"], Value::Bool(true));
        assert!(
            ["handoff_human", "canned_response", "retry_smaller_model"]
                .contains(&f["kind"].as_str().unwrap())
        );
        assert!(f["reason"].is_string());
    }
    for p in r.get("pii").and_then(Value::as_array).into_iter().flatten() {
        assert!(p["type"].is_string());
        assert!(
            ["redacted", "masked", "blocked", "passed_through"]
                .contains(&p["handling"].as_str().unwrap())
        );
        let dest = p["destination"].as_str().unwrap();
        assert!(["model", "response", "log"].contains(&dest) || dest.starts_with("tool:"));
    }
    let q = &r["quality"];
    let score = q["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score));
    assert!(q["resolved"].is_boolean() && q["refusal"].is_boolean());
    assert!(r["output_chars"].is_u64());
    let ctx = r["context_tokens_max"].as_u64().unwrap();
    assert!(ctx >= 200);
    let attrs = r["attributes"].as_object().unwrap();
    assert!(["web", "email", "mobile"].contains(&attrs["channel"].as_str().unwrap()));
    assert!(["free", "pro"].contains(&attrs["tier"].as_str().unwrap()));
}

#[test]
fn every_line_of_the_demo_stream_is_a_valid_record() {
    let cfg = SimConfig::demo(5);
    let (bytes, stats) = generate(&cfg);
    let rs = records(&bytes);
    assert_eq!(rs.len() as u64, stats.lines);
    assert_eq!(stats.lines, stats.sessions);
    assert_eq!(stats.bytes, bytes.len() as u64);
    assert!(
        (8_800..10_400).contains(&rs.len()),
        "{} sessions in 48 h",
        rs.len()
    );
    let mut ids = HashSet::new();
    for r in &rs {
        assert_valid(r);
        assert!(ids.insert(s(r, "session_id").to_string()), "duplicate id");
        let st = started(r);
        assert!((cfg.start_ms..cfg.start_ms + 48 * H).contains(&st));
    }
    for name in [
        "error-burst",
        "cost-spike",
        "prompt-change",
        "latency-tail",
        "pii-leak",
        "model-swap",
    ] {
        assert!(stats.incident_sessions[name] > 0, "{name}: {stats:?}");
    }
    assert_eq!(stats.dirty_lines(), 0);
    assert_eq!(stats.duplicates, 0);
    let omitted = rs
        .iter()
        .filter(|r| r["usage"].get("cost_usd").is_none())
        .count();
    assert_eq!(omitted as u64, stats.cost_omitted);
}

#[test]
fn demo_preset_has_one_incident_per_dimension() {
    let start = DEFAULT_START_MS;
    let inc = demo_incidents(start);
    let summary: Vec<(&str, i64, Option<i64>)> = inc
        .iter()
        .map(|i| {
            (
                i.kind.name(),
                (i.start_ms - start) / 60_000,
                i.duration_ms.map(|d| d / 60_000),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("error-burst", 600, Some(60)),
            ("cost-spike", 1_200, Some(30)),
            ("prompt-change", 1_440, None),
            ("latency-tail", 1_560, Some(120)),
            ("pii-leak", 1_800, Some(10)),
            ("model-swap", 2_160, None),
        ]
    );
    assert_eq!(
        inc[0].kind,
        IncidentKind::ErrorBurst {
            error_rate: 0.2,
            fallback_rate: 0.0
        }
    );
    let demo = SimConfig::demo(1);
    assert_eq!(demo.incidents, inc);
    assert_eq!(demo.duration_ms, 48 * H);
}

// ---------------------------------------------------------------------------------------------
// Steady behaviour

#[test]
fn steady_day_is_statistically_sane() {
    let cfg = SimConfig::steady(1, 24);
    let (bytes, stats) = generate(&cfg);
    let rs = records(&bytes);
    let all: Vec<&Rec> = rs.iter().collect();
    let n = rs.len() as f64;
    assert!((4_500.0..5_100.0).contains(&n), "{n} sessions/day");
    assert!(stats.incident_sessions.is_empty());

    let success = share(&all, is_success);
    assert!((0.992..=0.9995).contains(&success), "success {success}");
    let failed: Vec<_> = all.iter().copied().filter(|r| !is_success(r)).collect();
    assert_eq!(failed.len() as u64, stats.failed);
    assert!(
        share(&failed, fell_back) >= 0.85,
        "fallback share of failures"
    );

    let durations: Vec<f64> = rs.iter().map(|r| num(r, "duration_ms")).collect();
    let p50 = quantile(durations.clone(), 0.5);
    let p99 = quantile(durations, 0.99);
    assert!((2_200.0..3_100.0).contains(&p50), "p50 {p50}");
    assert!((6_000.0..14_000.0).contains(&p99), "p99 {p99}");

    let out_p50 = quantile(rs.iter().map(|r| usage(r, "output_tokens")).collect(), 0.5);
    assert!((270.0..330.0).contains(&out_p50), "output p50 {out_p50}");
    let in_mean = mean(rs.iter().map(|r| usage(r, "input_tokens")));
    assert!(
        (1_450.0..1_550.0).contains(&in_mean),
        "input mean {in_mean}"
    );

    // Reported cost follows the catalog price of m-2026-09 within the ±2 % noise.
    let mut with_cost = 0;
    for r in &rs {
        if let Some(c) = r["usage"]["cost_usd"].as_f64() {
            with_cost += 1;
            let formula = usage(r, "input_tokens") * 0.25e-6 + usage(r, "output_tokens") * 2.0e-6;
            assert!(
                (c - formula).abs() <= 0.021 * formula + 1e-6,
                "{c} vs {formula}"
            );
        }
    }
    let omitted = 1.0 - with_cost as f64 / n;
    assert!((0.07..0.13).contains(&omitted), "cost omitted {omitted}");
    let mean_cost = mean(rs.iter().map(cost));
    assert!(
        (0.0007..0.0013).contains(&mean_cost),
        "mean cost {mean_cost}"
    );

    let known = ["search_kb", "get_order", "escalate", "update_address"];
    let mut tool_counts: HashMap<&str, f64> = HashMap::new();
    for r in &rs {
        let c = calls(r);
        assert!(c.len() <= 6, "{} calls", c.len());
        for (name, status) in c {
            assert!(known.contains(&name), "{name}");
            assert_ne!(status, "denied");
            *tool_counts.entry(name).or_default() += 1.0;
        }
        let turns = r["turns"].as_u64().unwrap();
        assert!((1..=6).contains(&turns));
        assert!(
            r["context_tokens_max"].as_f64().unwrap()
                >= usage(r, "input_tokens") + usage(r, "output_tokens")
        );
        assert_eq!(s(r, "prompt_version"), "sp-v1");
        assert_eq!(s(r, "model"), "m-2026-09");
        assert_eq!(s(r, "provider"), "acme-llm");
    }
    let total_calls: f64 = tool_counts.values().sum();
    let search = tool_counts["search_kb"] / total_calls;
    assert!((0.5..0.6).contains(&search), "search_kb share {search}");
    assert!(
        total_calls / n > 1.2 && total_calls / n < 2.6,
        "calls/session"
    );

    let score = mean(rs.iter().map(|r| r["quality"]["score"].as_f64().unwrap()));
    assert!((0.8..0.9).contains(&score), "mean score {score}");
    let resolved = share(&all, |r| r["quality"]["resolved"] == Value::Bool(true));
    assert!((0.75..0.85).contains(&resolved), "resolved {resolved}");
    let refusals = share(&all, refusal);
    assert!(refusals < 0.025, "refusals {refusals}");

    let with_pii: Vec<_> = all
        .iter()
        .copied()
        .filter(|r| r.contains_key("pii"))
        .collect();
    let pii_share = with_pii.len() as f64 / n;
    assert!((0.12..0.18).contains(&pii_share), "pii {pii_share}");
    for r in with_pii {
        for p in r["pii"].as_array().unwrap() {
            assert_ne!(p["handling"], "passed_through");
            assert!(["model", "log"].contains(&p["destination"].as_str().unwrap()));
        }
    }
    let web = share(&all, |r| r["attributes"]["channel"] == "web");
    let free = share(&all, |r| r["attributes"]["tier"] == "free");
    assert!((0.45..0.55).contains(&web), "web {web}");
    assert!((0.65..0.75).contains(&free), "free {free}");
}

#[test]
fn diurnal_modulation_is_gentle_and_optional() {
    let count = |diurnal: bool| {
        let mut cfg = SimConfig::steady(9, 48);
        cfg.diurnal = diurnal;
        let (bytes, stats) = generate(&cfg);
        let (mut day, mut night) = (0.0, 0.0);
        for r in records(&bytes) {
            let hour = (started(&r) - cfg.start_ms).rem_euclid(24 * H) / H;
            match hour {
                13..=16 => day += 1.0,
                1..=4 => night += 1.0,
                _ => {}
            }
        }
        (day / night, stats.sessions as f64 / 48.0)
    };
    let (ratio, per_hour) = count(true);
    assert!((1.4..2.4).contains(&ratio), "day/night {ratio}");
    assert!((185.0..215.0).contains(&per_hour), "mean rate {per_hour}");
    let (flat, _) = count(false);
    assert!((0.8..1.25).contains(&flat), "flat day/night {flat}");
}

#[test]
fn agents_split_by_weight_and_incidents_can_target_one() {
    let mut cfg = SimConfig::steady(4, 12);
    cfg.agents = vec![
        AgentProfile::default().with_weight(3.0),
        AgentProfile::new("billing-bot", "bb-v3", "m-small-2026").with_weight(1.0),
    ];
    cfg.incidents = vec![
        Incident::new(
            IncidentKind::defaults("model-swap").unwrap(),
            cfg.start_ms,
            None,
        )
        .for_agent("billing-bot"),
    ];
    let (bytes, _) = generate(&cfg);
    let rs = records(&bytes);
    let all: Vec<_> = rs.iter().collect();
    let support = share(&all, |r| s(r, "agent") == "support-bot");
    assert!(
        (0.71..0.79).contains(&support),
        "support-bot share {support}"
    );
    for r in &rs {
        match s(r, "agent") {
            "support-bot" => assert_eq!(s(r, "model"), "m-2026-09"),
            "billing-bot" => {
                assert_eq!(s(r, "model"), "m-2026-11");
                assert_eq!(s(r, "prompt_version"), "bb-v3");
                assert!(!r.contains_key("provider"));
            }
            other => panic!("unexpected agent {other}"),
        }
    }

    cfg.incidents[0].agent = Some("nobody".into());
    let err = Simulator::new(cfg)
        .err()
        .expect("unknown agent is rejected");
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[test]
fn invalid_configs_are_rejected_with_the_parameter_named() {
    let mut cfg = SimConfig::steady(1, 1);
    cfg.late_fraction = 1.5;
    let err = Simulator::new(cfg).err().unwrap();
    assert!(err.to_string().contains("late_fraction"), "{err}");
    let mut cfg = SimConfig::steady(1, 1);
    cfg.sessions_per_hour = 0.0;
    assert!(write_jsonl(&cfg, std::io::sink()).is_err());
    let cfg = SimConfig::steady(1, 1).with_incident(Incident::new(
        IncidentKind::LatencyTail {
            factor: 12.0,
            share: 2.0,
        },
        DEFAULT_START_MS,
        None,
    ));
    let err = Simulator::new(cfg).err().unwrap();
    assert!(err.to_string().contains("share"), "{err}");
    let mut cfg = SimConfig::steady(1, 1);
    cfg.agents.clear();
    assert!(Simulator::new(cfg).is_err());
}

// ---------------------------------------------------------------------------------------------
// Incidents: visible inside their interval, absent (byte-identical stream) outside

const INC_START: i64 = DEFAULT_START_MS + H;
const INC_END: i64 = DEFAULT_START_MS + 2 * H;

fn incident_base_cfg() -> SimConfig {
    let mut cfg = SimConfig::steady(11, 3);
    cfg.sessions_per_hour = 1_500.0;
    cfg.diurnal = false;
    cfg
}

/// The incident-free stream: raw line by session id, and its records inside the interval.
struct Base {
    by_id: HashMap<String, Vec<u8>>,
    inside: Vec<Rec>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let (bytes, _) = generate(&incident_base_cfg());
        let mut by_id = HashMap::new();
        let mut inside = Vec::new();
        for l in lines(&bytes) {
            let r = parse(l);
            by_id.insert(s(&r, "session_id").to_string(), l.to_vec());
            if (INC_START..INC_END).contains(&started(&r)) {
                inside.push(r);
            }
        }
        Base { by_id, inside }
    })
}

struct Split {
    inside: Vec<Rec>,
    outside: Vec<Rec>,
    stats: Stats,
}

impl Split {
    fn inside(&self) -> Vec<&Rec> {
        self.inside.iter().collect()
    }
}

/// Runs the base stream with `kind` injected over [INC_START, INC_END) (or from INC_START on
/// when permanent) and checks that every session outside it is byte-identical to the base.
fn with_incident(kind: IncidentKind, permanent: bool) -> Split {
    let duration = (!permanent).then_some(INC_END - INC_START);
    let cfg = incident_base_cfg().with_incident(Incident::new(kind, INC_START, duration));
    let (bytes, stats) = generate(&cfg);
    let base_by_id = &base().by_id;
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    let all = lines(&bytes);
    assert_eq!(
        all.len(),
        base_by_id.len(),
        "arrivals must not depend on incidents"
    );
    for l in all {
        let r = parse(l);
        assert_valid(&r);
        let id = s(&r, "session_id").to_string();
        let st = started(&r);
        let active = st >= INC_START && (permanent || st < INC_END);
        if active {
            inside.push(r);
        } else {
            assert_eq!(
                String::from_utf8_lossy(l),
                String::from_utf8_lossy(&base_by_id[&id]),
                "session outside the incident changed"
            );
            outside.push(r);
        }
    }
    assert!(inside.len() > 1_000, "{} sessions inside", inside.len());
    Split {
        inside,
        outside,
        stats,
    }
}

fn base_inside() -> Vec<&'static Rec> {
    base().inside.iter().collect()
}

#[test]
fn latency_tail_pushes_p99_above_20s_inside_only() {
    let sp = with_incident(
        IncidentKind::LatencyTail {
            factor: 12.0,
            share: 0.2,
        },
        false,
    );
    let d = |rs: &[&Rec]| rs.iter().map(|r| num(r, "duration_ms")).collect::<Vec<_>>();
    let p99_in = quantile(d(&sp.inside()), 0.99);
    let p99_base = quantile(d(&base_inside()), 0.99);
    assert!(p99_in > 20_000.0, "p99 inside {p99_in}");
    assert!(p99_base < 20_000.0, "p99 base {p99_base}");
    let slow = share(&sp.inside(), |r| num(r, "duration_ms") > 15_000.0);
    assert!((0.12..0.28).contains(&slow), "slow share {slow}");
    let touched = sp.stats.incident_sessions["latency-tail"] as f64 / sp.inside.len() as f64;
    assert!((0.17..0.23).contains(&touched), "touched {touched}");
    assert!(sp.outside.iter().all(|r| num(r, "duration_ms") < 35_000.0));
}

#[test]
fn error_burst_fails_sessions_without_fallback_inside_only() {
    let sp = with_incident(IncidentKind::defaults("error-burst").unwrap(), false);
    let inside = sp.inside();
    let success = share(&inside, is_success);
    assert!((0.75..0.85).contains(&success), "success inside {success}");
    let failed: Vec<_> = inside.iter().copied().filter(|r| !is_success(r)).collect();
    assert!(share(&failed, fell_back) < 0.05, "fallback share in burst");
    let p5xx = share(&failed, |r| {
        r.get("error_type").is_some_and(|e| e == "provider_5xx")
    });
    assert!(p5xx > 0.7, "provider_5xx share {p5xx}");
    assert!(share(&base_inside(), is_success) > 0.99);
    let out: Vec<_> = sp.outside.iter().collect();
    assert!(share(&out, is_success) > 0.99);
}

#[test]
fn pii_leak_passes_card_numbers_to_the_tool_inside_only() {
    let sp = with_incident(IncidentKind::defaults("pii-leak").unwrap(), false);
    let leaked = |r: &Rec| {
        r.get("pii").and_then(Value::as_array).is_some_and(|ps| {
            ps.iter().any(|p| {
                p["handling"] == "passed_through"
                    && p["type"] == "card_number"
                    && p["destination"] == "tool:update_address"
            })
        })
    };
    let inside = sp.inside();
    let rate = share(&inside, leaked);
    assert!((0.25..0.35).contains(&rate), "leak share {rate}");
    for r in inside.iter().filter(|r| leaked(r)) {
        assert!(calls(r).iter().any(|(n, _)| *n == "update_address"));
    }
    assert_eq!(
        sp.stats.incident_sessions["pii-leak"],
        inside.iter().filter(|r| leaked(r)).count() as u64
    );
    let any_passed = |r: &Rec| {
        r.get("pii")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| p["handling"] == "passed_through"))
    };
    assert!(!sp.outside.iter().any(any_passed));
    assert!(!base_inside().into_iter().any(any_passed));
}

#[test]
fn cost_spike_breaks_the_hard_cap_inside_only() {
    let sp = with_incident(IncidentKind::defaults("cost-spike").unwrap(), false);
    let costs_in: Vec<f64> = sp.inside.iter().map(cost).collect();
    let costs_base: Vec<f64> = base_inside().into_iter().map(cost).collect();
    let above_cap = costs_in.iter().filter(|c| **c > 0.5).count();
    assert!(above_cap >= 20, "{above_cap} sessions above $0.50");
    let max_base = costs_base.iter().copied().fold(0.0, f64::max);
    assert!(max_base < 0.05, "base max {max_base}");
    let ratio = mean(costs_in.iter().copied()) / mean(costs_base.iter().copied());
    assert!(ratio > 10.0, "mean cost ratio {ratio}");
    // The non-runaway spiked sessions spend 20–50× a normal one.
    let spiked = costs_in.iter().filter(|c| (0.01..0.5).contains(*c)).count() as f64;
    assert!(spiked / costs_in.len() as f64 > 0.1, "spiked share");
    assert!(sp.outside.iter().all(|r| cost(r) < 0.05));
    // Token counts and reported costs agree (the catalog derives the same figure).
    for r in &sp.inside {
        if let Some(c) = r["usage"]["cost_usd"].as_f64() {
            let formula = usage(r, "input_tokens") * 0.25e-6 + usage(r, "output_tokens") * 2.0e-6;
            assert!((c - formula).abs() <= 0.021 * formula + 1e-6);
        }
    }
}

#[test]
fn prompt_change_is_permanent_and_shifts_output_and_tools() {
    let sp = with_incident(IncidentKind::defaults("prompt-change").unwrap(), true);
    assert!(sp.inside.iter().all(|r| s(r, "prompt_version") == "sp-v2"));
    assert!(sp.outside.iter().all(|r| s(r, "prompt_version") == "sp-v1"));
    let ok = |rs: Vec<&Rec>| -> Vec<f64> {
        rs.into_iter()
            .filter(|r| is_success(r) && !refusal(r))
            .map(|r| usage(r, "output_tokens"))
            .collect()
    };
    let ratio = quantile(ok(sp.inside()), 0.5) / quantile(ok(base_inside()), 0.5);
    assert!((1.2..1.4).contains(&ratio), "output ratio {ratio}");
    let escalate_share = |rs: Vec<&Rec>| {
        let all: Vec<&str> = rs
            .iter()
            .flat_map(|r| calls(r).into_iter().map(|c| c.0))
            .collect();
        all.iter().filter(|n| **n == "escalate").count() as f64 / all.len() as f64
    };
    let (after, before) = (escalate_share(sp.inside()), escalate_share(base_inside()));
    assert!(
        after > 0.2 && before < 0.14,
        "escalate share {before} -> {after}"
    );
    assert_eq!(
        sp.stats.incident_sessions["prompt-change"],
        sp.inside.len() as u64
    );
}

#[test]
fn model_swap_is_permanent_and_raises_refusals() {
    let sp = with_incident(IncidentKind::defaults("model-swap").unwrap(), true);
    assert!(sp.inside.iter().all(|r| s(r, "model") == "m-2026-11"));
    assert!(sp.outside.iter().all(|r| s(r, "model") == "m-2026-09"));
    let ok_in: Vec<_> = sp.inside().into_iter().filter(|r| is_success(r)).collect();
    let ok_base: Vec<_> = base_inside()
        .into_iter()
        .filter(|r| is_success(r))
        .collect();
    let (after, before) = (share(&ok_in, refusal), share(&ok_base, refusal));
    assert!((0.05..0.09).contains(&after), "refusals after {after}");
    assert!(before < 0.025, "refusals before {before}");
    // Priced at m-2026-11's catalog price.
    for r in &sp.inside {
        if let Some(c) = r["usage"]["cost_usd"].as_f64() {
            let formula = usage(r, "input_tokens") * 0.30e-6 + usage(r, "output_tokens") * 2.4e-6;
            assert!((c - formula).abs() <= 0.021 * formula + 1e-6);
        }
    }
}

#[test]
fn denied_tool_calls_appear_inside_only() {
    let sp = with_incident(IncidentKind::defaults("denied-tool").unwrap(), false);
    let denied = |r: &Rec| calls(r).contains(&("delete_account", "denied"));
    let rate = share(&sp.inside(), denied);
    assert!((0.03..0.07).contains(&rate), "denied share {rate}");
    assert!(
        !sp.outside
            .iter()
            .any(|r| calls(r).iter().any(|c| c.1 == "denied"))
    );
    assert!(
        !sp.outside
            .iter()
            .any(|r| calls(r).iter().any(|c| c.0 == "delete_account"))
    );
}

#[test]
fn tool_loops_appear_inside_only() {
    let sp = with_incident(IncidentKind::defaults("tool-loop").unwrap(), false);
    let looping = |r: &Rec| longest_run(r) >= 15;
    let rate = share(&sp.inside(), looping);
    assert!((0.07..0.13).contains(&rate), "loop share {rate}");
    for r in sp.inside.iter().filter(|r| looping(r)) {
        assert!(calls(r).iter().filter(|c| c.0 == "search_kb").count() >= 15);
    }
    assert!(sp.outside.iter().all(|r| longest_run(r) <= 7));
}

// ---------------------------------------------------------------------------------------------
// Delivery: order, late records, duplicates, dirty lines

/// Lines whose ended_at is earlier than one already emitted, and the largest such lag in ms.
fn out_of_order(rs: &[Rec]) -> (usize, i64) {
    let (mut max_seen, mut count, mut max_lag) = (i64::MIN, 0, 0);
    for r in rs {
        let e = ended(r);
        if e < max_seen {
            count += 1;
            max_lag = max_lag.max(max_seen - e);
        }
        max_seen = max_seen.max(e);
    }
    (count, max_lag)
}

#[test]
fn records_come_in_ended_at_order_except_the_late_fraction() {
    let mut cfg = SimConfig::steady(3, 24);
    cfg.late_fraction = 0.0;
    let (bytes, stats) = generate(&cfg);
    assert_eq!(out_of_order(&records(&bytes)), (0, 0));
    assert_eq!(stats.late, 0);

    cfg.late_fraction = 0.05;
    let (bytes, stats) = generate(&cfg);
    let rs = records(&bytes);
    let late_share = stats.late as f64 / stats.sessions as f64;
    assert!(
        (0.04..0.06).contains(&late_share),
        "late share {late_share}"
    );
    let (count, max_lag) = out_of_order(&rs);
    assert!(
        count as u64 <= stats.late,
        "{count} out of order vs {} late",
        stats.late
    );
    assert!(
        count as f64 >= 0.5 * stats.late as f64,
        "{count} out of order vs {} late",
        stats.late
    );
    assert!(max_lag <= 5 * 60_000 + 1, "lag {max_lag}");
}

#[test]
fn duplicates_are_identical_redeliveries() {
    let mut cfg = SimConfig::steady(8, 12);
    cfg.duplicate_fraction = 0.03;
    let (bytes, stats) = generate(&cfg);
    let mut seen: HashMap<String, &[u8]> = HashMap::new();
    let mut dups = 0u64;
    for l in lines(&bytes) {
        let id = s(&parse(l), "session_id").to_string();
        if let Some(first) = seen.insert(id, l) {
            assert_eq!(first, l, "a duplicate must be byte-identical");
            dups += 1;
        }
    }
    assert_eq!(dups, stats.duplicates);
    assert_eq!(stats.lines, stats.sessions + stats.duplicates);
    let rate = dups as f64 / stats.sessions as f64;
    assert!((0.02..0.04).contains(&rate), "duplicate rate {rate}");
}

/// Which dirty kind a line is, or `None` for a clean record.
fn classify(line: &[u8]) -> Option<&'static str> {
    if line.len() > OVERSIZED_MIN_BYTES {
        return Some("oversized");
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Some("non_json");
    };
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) if text.starts_with('{') => return Some("truncated_json"),
        Err(_) => return Some("non_json"),
    };
    let o = match v {
        Value::Object(o) => o,
        Value::Array(_) => return Some("json_array"),
        _ => return Some("non_json"),
    };
    if o.get("schema").is_some_and(|s| s == "agent-session/v2") {
        return Some("unknown_schema_major");
    }
    if ["session_id", "agent", "prompt_version", "model", "status"]
        .iter()
        .any(|k| !o.contains_key(*k))
    {
        return Some("missing_required_field");
    }
    let types_ok = ["session_id", "agent", "prompt_version", "model", "status"]
        .iter()
        .all(|k| o[*k].is_string())
        && o["duration_ms"].is_number()
        && o["turns"].is_u64()
        && o["usage"].is_object()
        && o["tool_calls"].is_array()
        && o["quality"].is_object();
    if !types_ok {
        return Some("wrong_types");
    }
    if o["duration_ms"].as_f64().unwrap() < 0.0 {
        return Some("negative_duration");
    }
    if strict_ts(o.get("started_at")).is_none() || strict_ts(o.get("ended_at")).is_none() {
        return Some("bad_timestamp");
    }
    None
}

#[test]
fn dirty_lines_of_every_kind_appear_when_requested() {
    let mut cfg = SimConfig::steady(6, 8);
    cfg.dirty_fraction = 0.3;
    let (bytes, stats) = generate(&cfg);
    let mut found: HashMap<&'static str, u64> = HashMap::new();
    let mut clean = 0u64;
    for l in lines(&bytes) {
        assert!(!l.contains(&b'\n'));
        match classify(l) {
            Some(kind) => {
                *found.entry(kind).or_default() += 1;
                if kind == "oversized" {
                    assert!(l.len() < OVERSIZED_MIN_BYTES + 70_000, "{} bytes", l.len());
                    let r = parse(l);
                    assert!(s(&r, "session_id").starts_with("d-"));
                }
            }
            None => {
                clean += 1;
                assert_valid(&parse(l));
            }
        }
    }
    assert_eq!(clean, stats.sessions);
    for kind in DirtyKind::ALL {
        let name = kind.name();
        let got = found.get(name).copied().unwrap_or(0);
        assert!(got > 0, "no {name} line: {found:?}");
        assert_eq!(
            got, stats.dirty[name],
            "{name}: {found:?} vs {:?}",
            stats.dirty
        );
    }
    assert!(found["oversized"] <= u64::from(cfg.max_oversized));
    let rate = stats.dirty_lines() as f64 / stats.sessions as f64;
    assert!((0.26..0.34).contains(&rate), "dirty rate {rate}");
    // Without dirt, nothing is dirty.
    cfg.dirty_fraction = 0.0;
    let (bytes, stats) = generate(&cfg);
    assert!(lines(&bytes).iter().all(|l| classify(l).is_none()));
    assert_eq!(stats.dirty_lines(), 0);
}

// ---------------------------------------------------------------------------------------------
// CLI surface

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn cli(args: &[&str]) -> SimulateArgs {
    let mut argv = vec!["simulate"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{e}"))
        .args
}

#[test]
fn incident_specs_parse_with_defaults_and_overrides() {
    let spec: IncidentSpec = "latency-tail@26h+2h:factor=10,share=0.3".parse().unwrap();
    assert_eq!(
        spec.kind,
        IncidentKind::LatencyTail {
            factor: 10.0,
            share: 0.3
        }
    );
    assert_eq!((spec.offset_ms, spec.duration_ms), (26 * H, Some(2 * H)));

    let spec: IncidentSpec = "prompt-change@24h".parse().unwrap();
    assert_eq!(spec.duration_ms, None);
    assert_eq!(spec.kind, IncidentKind::defaults("prompt-change").unwrap());

    let spec: IncidentSpec = "pii-leak@30h+10m:tool=refund,agent=support-bot"
        .parse()
        .unwrap();
    assert_eq!(spec.agent.as_deref(), Some("support-bot"));
    assert_eq!(spec.duration_ms, Some(600_000));
    assert!(matches!(spec.kind, IncidentKind::PiiLeak { ref tool, .. } if tool == "refund"));
    let inc = spec.at(DEFAULT_START_MS);
    assert_eq!(inc.start_ms, DEFAULT_START_MS + 30 * H);
    assert!(inc.is_active(inc.start_ms) && !inc.is_active(inc.end_ms()));

    let spec: IncidentSpec = "prompt-change@1h:prompt=sp-v9,tools=search_kb/0.5+escalate/0.5"
        .parse()
        .unwrap();
    assert_eq!(
        spec.kind,
        IncidentKind::PromptChange {
            prompt_version: "sp-v9".into(),
            output_scale: 1.3,
            tool_mix: vec![("search_kb".into(), 0.5), ("escalate".into(), 0.5)],
        }
    );
    for name in IncidentKind::NAMES {
        let spec: IncidentSpec = format!("{name}@1h+1h").parse().unwrap();
        assert_eq!(spec.kind.name(), name);
    }

    let err = "bogus@1h".parse::<IncidentSpec>().unwrap_err().to_string();
    assert!(err.contains("unknown incident name"), "{err}");
    assert!(err.contains("NAME@OFFSET"), "{err}");
    for name in IncidentKind::NAMES {
        assert!(err.contains(name), "{err} lacks {name}");
    }
    for (bad, needle) in [
        ("latency-tail", "missing '@OFFSET'"),
        ("latency-tail@soon", "offset"),
        ("latency-tail@1h+", "duration"),
        ("latency-tail@1h:factor=abc", "expected a number"),
        ("latency-tail@1h:colour=red", "valid: factor, share"),
        ("latency-tail@1h:share=2", "within 0..=1"),
        ("tool-loop@1h:calls=0", "calls"),
        ("error-burst@1h+0s", "duration must be > 0"),
    ] {
        let err = bad.parse::<IncidentSpec>().unwrap_err().to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
}

#[test]
fn cli_args_build_the_config_and_run_writes_the_stream() {
    Cli::command().debug_assert();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.jsonl");
    let args = cli(&[
        "--seed",
        "5",
        "--start",
        "2026-01-01T00:00:00Z",
        "--duration",
        "2h",
        "--rate",
        "600",
        "--incident",
        "error-burst@30m+30m",
        "--incident",
        "model-swap@1h:refusal=0.2",
        "--dirty-fraction",
        "0.01",
        "--diurnal",
        "false",
        "--out",
        path.to_str().unwrap(),
    ]);
    let cfg = args.to_config().unwrap();
    let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    assert_eq!((cfg.seed, cfg.start_ms, cfg.duration_ms), (5, start, 2 * H));
    assert_eq!(cfg.sessions_per_hour, 600.0);
    assert!(!cfg.diurnal);
    assert_eq!(cfg.incidents.len(), 2);
    assert_eq!(cfg.incidents[0].start_ms, start + H / 2);
    assert_eq!(cfg.incidents[1].duration_ms, None);
    assert!(
        matches!(cfg.incidents[1].kind, IncidentKind::ModelSwap { refusal_rate, .. } if refusal_rate == 0.2)
    );

    let stats = run(&args).unwrap();
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written.len() as u64, stats.bytes);
    assert_eq!(lines(&written).len() as u64, stats.lines);
    let (expected, _) = generate(&cfg);
    assert_eq!(
        written, expected,
        "run writes exactly the configured stream"
    );

    // --sessions alone bounds by count.
    let args = cli(&["--sessions", "250", "--rate", "10"]);
    let cfg = args.to_config().unwrap();
    let (bytes, stats) = generate(&cfg);
    assert_eq!(stats.sessions, 250);
    assert_eq!(records(&bytes).len(), 250);

    // --demo: 48 h with the demo incidents; agents from --agent.
    let cfg = cli(&["--demo", "--agent", "a", "--agent", "b:p2:m-small-x"])
        .to_config()
        .unwrap();
    assert_eq!(cfg.duration_ms, 48 * H);
    assert_eq!(cfg.incidents, demo_incidents(DEFAULT_START_MS));
    assert_eq!(cfg.agents[1].model, "m-small-x");
    assert_eq!(cfg.agents[1].price_per_mtok, (0.05, 0.40));

    // Defaults: 24 h at 200/h of support-bot.
    let cfg = cli(&[]).to_config().unwrap();
    assert_eq!((cfg.start_ms, cfg.duration_ms), (DEFAULT_START_MS, 24 * H));
    assert_eq!(cfg.agents, vec![AgentProfile::default()]);

    for bad in [
        vec!["--incident", "nope@1h"],
        vec!["--duration", "2 hours"],
        vec!["--start", "yesterday"],
    ] {
        let mut argv = vec!["simulate"];
        argv.extend(bad.iter());
        let err = Cli::try_parse_from(argv)
            .err()
            .expect("rejected")
            .to_string();
        assert!(err.to_lowercase().contains("expected"), "{bad:?}: {err}");
    }
    let err = cli(&["--late-fraction", "3"])
        .to_config()
        .unwrap_err()
        .to_string();
    assert!(err.contains("late_fraction"), "{err}");
}
