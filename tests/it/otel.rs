//! The span path (issue 12): OTLP GenAI spans → sessions. A trace shaped like an instrumented
//! SDK's maps to the exact session; the same simulated stream replayed as records and as spans
//! (both encodings, through files) gives identical findings; dirty spans are dead-lettered with
//! their reasons while the stream goes on; open traces stay under their cap.

use std::path::Path;
use std::sync::Arc;

use slawatch::catalog::Catalog;
use slawatch::cli::{ReplayReport, SpanInput, load_specs, replay_spans, replay_stream};
use slawatch::finding::Finding;
use slawatch::ingest::{DeadLetters, FramedSource, LinesSource, Source};
use slawatch::otel::{
    Assembled, Assembler, Encoding, GroupBy, OtelConfig, Span, SpanStatus, Value, decode_request,
};
use slawatch::pipeline::{Pipeline, PipelineConfig};
use slawatch::service::spans::SpanPath;
use slawatch::session::{AttrValue, Quality, Session, Status, ToolCall, ToolStatus};
use slawatch::simulate::{
    Incident, IncidentKind, OtelFormat, SimConfig, Simulator, write_jsonl, write_spans,
};

const HOUR: i64 = 3_600_000;

fn assemble(bytes: &[u8], config: &OtelConfig) -> Vec<Assembled> {
    let mut a = Assembler::new(config);
    let mut out = Vec::new();
    a.push(decode_request(bytes, Encoding::Json).unwrap(), &mut out);
    a.finish(&mut out);
    out
}

#[test]
fn an_sdk_shaped_genai_trace_maps_to_the_expected_session() {
    let json = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/otel/sdk-agent-trace.json"),
    )
    .unwrap();
    let out = assemble(&json, &OtelConfig::default());
    let [Assembled::Session(session)] = out.as_slice() else {
        panic!("expected one session, got {out:?}");
    };
    // Every value below is read off the payload by hand.
    let expected = Session {
        session_id: "0af7651916cd43dd8448eb211c80319c".into(),
        agent: "travel-planner".into(),
        prompt_version: "tp-v7".into(),
        // The last model call's response model, not the request model.
        model: "gpt-4o-2024-08-06".into(),
        provider: Some("openai".into()),
        started_at: Some(1_793_491_200_000),
        event_time: 1_793_491_204_500,
        duration_ms: Some(4_500.0),
        duration_derived: false,
        status: Status::Success,
        error_type: None,
        turns: Some(2),
        input_tokens: Some(1_200 + 1_500),
        output_tokens: Some(80 + 220),
        // The current convention's name on the first call, OpenLLMetry's on the second.
        cache_read_input_tokens: Some(1_024 + 512),
        cache_creation_input_tokens: Some(176),
        reasoning_output_tokens: Some(96),
        cost_usd: None,
        cost_derived: false,
        tool_calls: vec![
            ToolCall {
                name: "get_weather".into(),
                status: Some(ToolStatus::Ok),
                duration_ms: Some(250.5),
            },
            ToolCall {
                name: "book_flight".into(),
                status: Some(ToolStatus::Error),
                duration_ms: Some(100.0),
            },
        ],
        fallback: None,
        pii: vec![],
        quality: Quality {
            score: Some(0.75),
            resolved: None,
            refusal: None,
        },
        output_chars: None,
        context_tokens_max: Some(1_500),
        context_utilisation: None,
        attributes: vec![
            ("channel".into(), AttrValue::Str("web".into())),
            ("tier".into(), AttrValue::Num(2.0)),
        ],
    };
    assert_eq!(**session, expected);

    // Grouped by conversation, the session id is gen_ai.conversation.id.
    let by_conversation = OtelConfig {
        group_by: GroupBy::Conversation,
        ..OtelConfig::default()
    };
    let out = assemble(&json, &by_conversation);
    let [Assembled::Session(session)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(session.session_id, "conv_5j66UpCpwteGg4YSxUnt7lPY");

    // The session as a contract-v1 record decodes back to the same session.
    let catalog = Arc::new(Catalog::embedded());
    let decoder = slawatch::ingest::decode::Decoder::new(catalog);
    let line = slawatch::ingest::encode::encode_record(
        session,
        slawatch::ingest::encode::RecordStyle::Sparse,
    );
    let again = decoder.decode(line.as_bytes()).unwrap();
    assert_eq!(again.tool_calls, session.tool_calls);
    assert_eq!(again.input_tokens, session.input_tokens);
    assert_eq!(again.cache_read_input_tokens, Some(1_536));
    assert_eq!(again.cache_creation_input_tokens, Some(176));
    assert_eq!(again.reasoning_output_tokens, Some(96));
    assert_eq!(again.event_time, session.event_time);
    assert_eq!(again.duration_ms, session.duration_ms);
}

fn specs_pipeline() -> Pipeline {
    let specs = load_specs(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("sla-specs")]).unwrap();
    Pipeline::new(
        specs,
        Arc::new(Catalog::embedded()),
        &PipelineConfig::default(),
    )
}

fn collect(
    source: &mut dyn Source,
    spans: Option<(Encoding, &OtelConfig)>,
    dead: &mut DeadLetters,
) -> (Vec<String>, ReplayReport) {
    let mut pipeline = specs_pipeline();
    let mut findings = Vec::new();
    let mut sink = |f: &Finding| {
        findings.push(serde_json::to_string(f).unwrap());
        Ok(())
    };
    let report = match spans {
        None => replay_stream(source, &mut pipeline, dead, None, &mut sink).unwrap(),
        Some((encoding, config)) => {
            let path = SpanPath::new(
                config,
                Arc::new(Catalog::embedded()),
                0,
                None,
                Arc::default(),
            )
            .unwrap();
            let mut input = SpanInput { encoding, path };
            replay_spans(source, &mut pipeline, dead, None, &mut sink, &mut input).unwrap()
        }
    };
    (findings, report)
}

fn incident_stream() -> SimConfig {
    let start = SimConfig::steady(12, 48).start_ms;
    SimConfig::steady(12, 48)
        .with_incident(Incident::new(
            IncidentKind::defaults("prompt-change").unwrap(),
            start + 20 * HOUR,
            None,
        ))
        .with_incident(Incident::new(
            IncidentKind::defaults("model-swap").unwrap(),
            start + 32 * HOUR,
            None,
        ))
}

#[test]
fn records_and_spans_in_both_encodings_yield_identical_findings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = incident_stream();
    let records = dir.path().join("sessions.jsonl");
    write_jsonl(&cfg, std::fs::File::create(&records).unwrap()).unwrap();
    let (expected, report) = collect(
        &mut LinesSource::open(&records).unwrap(),
        None,
        &mut DeadLetters::discard(),
    );
    assert!(report.ingest.accepted > 9_000, "{:?}", report.ingest);
    // The incidents are in the findings, so identity means something.
    assert!(
        expected
            .iter()
            .any(|f| f.contains("\"prompt_version\",\"sp-v2\""))
    );
    assert!(
        expected.iter().any(|f| f.contains("m-2026-11")),
        "model swap found"
    );

    // Session ids travel as gen_ai.conversation.id: grouping by conversation gets them back.
    let config = OtelConfig {
        group_by: GroupBy::Conversation,
        ..OtelConfig::default()
    };
    for (format, encoding) in [
        (OtelFormat::Json, Encoding::Json),
        (OtelFormat::Proto, Encoding::Protobuf),
    ] {
        let path = dir.path().join(format!("spans-{format:?}"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        write_spans(&mut Simulator::new(cfg.clone()).unwrap(), format, &mut w).unwrap();
        drop(w);
        let mut source: Box<dyn Source> = match encoding {
            Encoding::Json => Box::new(LinesSource::open(&path).unwrap()),
            Encoding::Protobuf => Box::new(FramedSource::open(&path, 1 << 20).unwrap()),
        };
        let (got, span_report) = collect(
            source.as_mut(),
            Some((encoding, &config)),
            &mut DeadLetters::discard(),
        );
        assert_eq!(
            span_report.ingest.accepted, report.ingest.accepted,
            "{format:?}"
        );
        assert_eq!(span_report.ingest.rejected_total(), 0, "{format:?}");
        assert_eq!(got.len(), expected.len(), "{format:?}");
        assert!(got == expected, "{format:?}: findings differ");
    }
}

/// A span of trace `t`, with attributes.
fn span(t: u8, id: u8, op: &str, end_ms: i64, attrs: &[(&str, Value)]) -> Span {
    let mut attributes = vec![("gen_ai.operation.name".to_owned(), Value::Str(op.into()))];
    attributes.extend(attrs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Span {
        trace_id: [t; 16],
        span_id: [id; 8],
        parent_span_id: (op != "invoke_agent").then_some([1; 8]),
        name: op.into(),
        kind: 1,
        start_unix_nano: (end_ms as u64 - 100) * 1_000_000,
        end_unix_nano: end_ms as u64 * 1_000_000,
        status: SpanStatus::Unset,
        status_message: String::new(),
        attributes,
        events: Vec::new(),
        service_name: Some("bot".into()),
        schema_url: String::new(),
    }
}

/// One OTLP JSON request of the spans.
fn request(spans: &[Span]) -> Vec<u8> {
    slawatch::otel::spans_to_otlp_json(spans)
}

#[test]
fn dirty_spans_are_dead_lettered_with_reasons_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        max_sessions: Some(300),
        late_fraction: 0.0,
        ..SimConfig::steady(5, 4)
    };
    // Good sessions as JSON span requests, one per line; dirt between them.
    let mut good = Vec::new();
    write_spans(
        &mut Simulator::new(cfg.clone()).unwrap(),
        OtelFormat::Json,
        &mut good,
    )
    .unwrap();
    let lines: Vec<&[u8]> = good
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 300);
    let t0 = cfg.start_ms + 60_000;
    let mut input = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        input.extend_from_slice(line);
        input.push(b'\n');
        match i {
            // A child whose root never comes: an orphan once the stream has moved on.
            10 => input.extend_from_slice(&request(
                &[span(201, 2, "chat", t0, &[("gen_ai.response.model", Value::Str("m".into()))])],
            )),
            // Broken JSON.
            20 => input.extend_from_slice(b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{"),
            // A whole trace whose token count is a string.
            30 => input.extend_from_slice(&request(
                &[
                    span(202, 1, "invoke_agent", t0, &[("gen_ai.agent.name", Value::Str("bot".into()))]),
                    span(
                        202,
                        2,
                        "chat",
                        t0 - 10,
                        &[
                            ("gen_ai.response.model", Value::Str("m".into())),
                            ("gen_ai.usage.input_tokens", Value::Str("many".into())),
                        ],
                    ),
                ],
            )),
            // A trace id of the wrong length.
            40 => input.extend_from_slice(
                br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abcd","spanId":"0102030405060708","name":"x"}]}]}]}"#,
            ),
            _ => continue,
        }
        input.push(b'\n');
    }
    // A trace that never completes: its child arrives last, its root never.
    let end = cfg.start_ms + 5 * HOUR;
    input.extend_from_slice(&request(&[span(
        203,
        2,
        "chat",
        end,
        &[("gen_ai.response.model", Value::Str("m".into()))],
    )]));
    input.push(b'\n');
    let spans_path = dir.path().join("dirty.jsonl");
    std::fs::write(&spans_path, &input).unwrap();
    let dead_path = dir.path().join("dead.jsonl");
    let mut dead = DeadLetters::to_file(&dead_path).unwrap();
    let (_, report) = collect(
        &mut LinesSource::open(&spans_path).unwrap(),
        Some((Encoding::Json, &OtelConfig::default())),
        &mut dead,
    );
    assert_eq!(report.ingest.accepted, 300, "every good session is there");
    let rejected: Vec<(&str, u64)> = report
        .ingest
        .rejected
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        rejected,
        vec![
            ("bad_json", 1),
            ("bad_span_id", 1),
            ("incomplete_trace", 1),
            ("orphan_span", 1),
            ("wrong_type", 1),
        ]
    );
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut reasons: Vec<&str> = letters
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "bad_json",
            "bad_span_id",
            "incomplete_trace",
            "orphan_span",
            "wrong_type"
        ]
    );
    let wrong = letters
        .iter()
        .find(|l| l["reason"] == "wrong_type")
        .unwrap();
    assert!(
        wrong["detail"]
            .as_str()
            .unwrap()
            .contains("gen_ai.usage.input_tokens"),
        "{wrong}"
    );
    // The dead letter keeps the trace readable as OTLP JSON: both spans.
    let raw = wrong["raw"].as_str().unwrap();
    assert_eq!(
        decode_request(raw.as_bytes(), Encoding::Json)
            .unwrap()
            .len(),
        2
    );

    // Broken protobuf in a length-delimited file: dead-lettered, the next frame still read.
    let mut framed = Vec::new();
    let mut push = |bytes: &[u8]| {
        framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        framed.extend_from_slice(bytes);
    };
    let mut sim_bin = Vec::new();
    write_spans(
        &mut Simulator::new(cfg.clone()).unwrap(),
        OtelFormat::Proto,
        &mut sim_bin,
    )
    .unwrap();
    let mut rest = &sim_bin[..];
    let mut n = 0;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        push(&rest[4..4 + len]);
        if n == 5 {
            push(b"\x0a\xff\xff\xff\x0f garbage");
        }
        rest = &rest[4 + len..];
        n += 1;
    }
    let bin_path = dir.path().join("dirty.bin");
    std::fs::write(&bin_path, &framed).unwrap();
    let (_, report) = collect(
        &mut FramedSource::open(&bin_path, 1 << 20).unwrap(),
        Some((Encoding::Protobuf, &OtelConfig::default())),
        &mut DeadLetters::discard(),
    );
    assert_eq!(report.ingest.accepted, 300);
    assert_eq!(report.ingest.rejected.get("bad_protobuf"), Some(&1));
    assert_eq!(report.ingest.rejected_total(), 1);
}

#[test]
fn a_hundred_thousand_open_traces_stay_under_the_cap() {
    const TRACES: u32 = 100_000;
    const CAP: usize = 10_000;
    let mut a = Assembler::new(&OtelConfig {
        max_open_traces: CAP,
        // Long enough that no trace is orphaned: only the cap removes them.
        grace_ms: 24 * HOUR,
        ..OtelConfig::default()
    });
    let mut out = Vec::new();
    let mut evicted = Vec::new();
    let mut peak = 0;
    for i in 0..TRACES {
        let mut s = span(
            0,
            2,
            "chat",
            1_000_000 + i64::from(i),
            &[("gen_ai.response.model", Value::Str("m".into()))],
        );
        s.trace_id[..4].copy_from_slice(&i.to_be_bytes());
        s.trace_id[15] = 1;
        a.push(vec![s], &mut out);
        peak = peak.max(a.open_traces());
        assert!(a.open_traces() <= CAP, "{} open after {i}", a.open_traces());
        for x in out.drain(..) {
            match x {
                Assembled::Rejected { reason, .. } => evicted.push(reason),
                Assembled::Session(s) => panic!("no root, no session: {s:?}"),
            }
        }
        if i == u32::try_from(CAP).unwrap() * 5 {
            // Memory per open trace, measured as the checkpoint form of the open traces.
            let bytes = serde_json::to_vec(&a.snapshot()).unwrap().len();
            eprintln!(
                "{CAP} open traces of one span: snapshot {bytes} bytes, {} bytes per trace",
                bytes / CAP
            );
            assert!(bytes / CAP < 2_000, "{} bytes per open trace", bytes / CAP);
        }
    }
    assert_eq!(peak, CAP);
    assert_eq!(evicted.len(), TRACES as usize - CAP);
    assert!(evicted.iter().all(|r| r.code() == "evicted_open_trace"));
    // Oldest first: the first eviction is trace 0, the last trace 89 999.
    assert!(
        evicted[0].to_string().contains("trace 00000000"),
        "{}",
        evicted[0]
    );
    assert!(
        evicted
            .last()
            .unwrap()
            .to_string()
            .contains(&format!("trace {:08x}", TRACES - CAP as u32 - 1)),
        "{}",
        evicted.last().unwrap()
    );
}

/// `groupBy: conversation` (issue 12): the traces of one `gen_ai.conversation.id` are one
/// session — from its first turn's start to its last turn's end, with the tokens, model calls
/// and tool calls of every turn and the status of the last — released once the watermark is
/// more than `grace` past its last root's end; traces without the attribute are sessions of
/// their own. The expected sessions are computed here from how the conversations were made.
#[test]
fn conversations_group_their_traces_into_one_session() {
    const GRACE: i64 = 30_000;
    const MS: u64 = 1_000_000;
    let config = OtelConfig {
        group_by: GroupBy::Conversation,
        grace_ms: GRACE,
        ..OtelConfig::default()
    };
    let t0: i64 = 1_800_000_000_000;
    let str_attr = |k: &str, v: &str| (k.to_owned(), Value::Str(v.into()));
    let int_attr = |k: &str, v: i64| (k.to_owned(), Value::Int(v));
    let make = |trace: [u8; 16], id: u8, op: &str, start: i64, end: i64| Span {
        trace_id: trace,
        span_id: [id; 8],
        parent_span_id: (op != "invoke_agent").then_some([1; 8]),
        name: op.into(),
        kind: 1,
        start_unix_nano: start as u64 * MS,
        end_unix_nano: end as u64 * MS,
        status: SpanStatus::Unset,
        status_message: String::new(),
        attributes: vec![("gen_ai.operation.name".into(), Value::Str(op.into()))],
        events: Vec::new(),
        service_name: Some("bot".into()),
        schema_url: String::new(),
    };
    let mut spans = Vec::new();
    let mut expected: std::collections::BTreeMap<String, Session> = Default::default();
    for c in 0..20u8 {
        // 1 to 4 turns, 12 s apart (within the grace); every fifth conversation carries no id.
        let turns = 1 + usize::from(c % 4);
        let with_id = c % 5 != 4;
        let failed = c % 3 == 0;
        let mut start = t0 + i64::from(c) * 7_000;
        let mut session: Option<Session> = None;
        for k in 0..turns {
            let last = k + 1 == turns;
            let end = start + 2_000 + 100 * k as i64;
            let trace = [c + 1, k as u8 + 1, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7];
            let conversation = str_attr("gen_ai.conversation.id", &format!("conv-{c}"));
            let mut root = make(trace, 1, "invoke_agent", start, end);
            root.attributes.push(str_attr("gen_ai.agent.name", "bot"));
            let mut chat = make(trace, 2, "chat", start + 10, start + 1_000);
            chat.attributes.extend([
                str_attr("gen_ai.response.model", "m-1"),
                int_attr("gen_ai.usage.input_tokens", 100 * (k as i64 + 1)),
                int_attr("gen_ai.usage.output_tokens", 10 * (k as i64 + 1)),
                int_attr("gen_ai.usage.cache_read.input_tokens", 50 * k as i64),
            ]);
            // The id on the root of even turns, on the model call of odd ones.
            if with_id {
                if k % 2 == 0 {
                    root.attributes.push(conversation);
                } else {
                    chat.attributes.push(conversation);
                }
            }
            let mut tool = None;
            if last {
                if failed {
                    root.status = SpanStatus::Error;
                    root.attributes.push(str_attr("error.type", "provider_5xx"));
                }
                let mut t = make(trace, 3, "execute_tool", start + 1_000, start + 1_250);
                t.attributes.push(str_attr("gen_ai.tool.name", "lookup"));
                tool = Some(t);
            }
            let turn = Session {
                session_id: slawatch::otel::hex(&trace),
                agent: "bot".into(),
                prompt_version: "unversioned".into(),
                model: "m-1".into(),
                provider: None,
                started_at: Some(start),
                event_time: end,
                duration_ms: Some((end - start) as f64),
                duration_derived: false,
                status: if last && failed {
                    Status::Error
                } else {
                    Status::Success
                },
                error_type: (last && failed).then(|| "provider_5xx".to_owned()),
                turns: Some(1),
                input_tokens: Some(100 * (k as u64 + 1)),
                output_tokens: Some(10 * (k as u64 + 1)),
                cache_read_input_tokens: Some(50 * k as u64),
                cache_creation_input_tokens: None,
                reasoning_output_tokens: None,
                cost_usd: None,
                cost_derived: false,
                tool_calls: tool
                    .iter()
                    .map(|_| ToolCall {
                        name: "lookup".into(),
                        status: Some(ToolStatus::Ok),
                        duration_ms: Some(250.0),
                    })
                    .collect(),
                fallback: None,
                pii: vec![],
                quality: Quality::default(),
                output_chars: None,
                context_tokens_max: Some(100 * (k as u64 + 1)),
                context_utilisation: None,
                attributes: vec![],
            };
            spans.extend([root, chat]);
            spans.extend(tool);
            if !with_id {
                expected.insert(turn.session_id.clone(), turn);
            } else if let Some(s) = &mut session {
                // One more turn: summed, concatenated, the last turn's end and status.
                let plus = |a: Option<u64>, b: Option<u64>| Some(a.unwrap_or(0) + b.unwrap_or(0));
                s.event_time = turn.event_time;
                s.duration_ms = Some((turn.event_time - s.started_at.unwrap()) as f64);
                s.status = turn.status;
                s.error_type = turn.error_type;
                s.turns = plus(s.turns, turn.turns);
                s.input_tokens = plus(s.input_tokens, turn.input_tokens);
                s.output_tokens = plus(s.output_tokens, turn.output_tokens);
                s.cache_read_input_tokens =
                    plus(s.cache_read_input_tokens, turn.cache_read_input_tokens);
                s.context_tokens_max = s.context_tokens_max.max(turn.context_tokens_max);
                s.tool_calls.extend(turn.tool_calls);
            } else {
                session = Some(Session {
                    session_id: format!("conv-{c}"),
                    ..turn
                });
            }
            start = end + 12_000;
        }
        if let Some(s) = session {
            expected.insert(s.session_id.clone(), s);
        }
    }
    // Spans arrive in end order, one request each, as an exporter sends them.
    spans.sort_by_key(|s| (s.end_unix_nano, s.trace_id, s.span_id));
    let mut assembler = Assembler::new(&config);
    let mut got: std::collections::BTreeMap<String, Session> = Default::default();
    let mut newest_end = i64::MIN;
    let mut before_finish = 0;
    for span in spans {
        let previous_watermark = newest_end.saturating_sub(GRACE);
        newest_end = newest_end.max(span.end_ms());
        let watermark = newest_end - GRACE;
        let mut out = Vec::new();
        assembler.push(
            decode_request(&request(&[span]), Encoding::Json).unwrap(),
            &mut out,
        );
        for a in out {
            let Assembled::Session(s) = a else {
                panic!("{a:?}")
            };
            // Released exactly when the watermark passed it: a conversation a grace after
            // its last root, a trace without conversation at its root's end.
            let wait = if s.session_id.starts_with("conv-") {
                GRACE + 1
            } else {
                0
            };
            assert!(
                watermark >= s.event_time + wait && previous_watermark < s.event_time + wait,
                "{} released at watermark {watermark}",
                s.session_id
            );
            before_finish += 1;
            got.insert(s.session_id.clone(), *s);
        }
    }
    let mut out = Vec::new();
    assembler.finish(&mut out);
    for a in out {
        let Assembled::Session(s) = a else {
            panic!("{a:?}")
        };
        got.insert(s.session_id.clone(), *s);
    }
    assert!(
        before_finish > 10,
        "{before_finish} released by the watermark"
    );
    assert_eq!(got.len(), expected.len());
    for (id, want) in &expected {
        assert_eq!(got.get(id), Some(want), "session {id}");
    }
    assert_eq!(
        expected.keys().filter(|k| k.starts_with("conv-")).count(),
        16
    );
}

/// `otel.groupBy` in `slawatch.yaml` is checked like every other key: an unknown value is an
/// error naming it, where it is and what is allowed.
#[test]
fn the_group_by_setting_is_validated() {
    let ok = slawatch::cli::parse_otel_config("otel:\n  groupBy: conversation\n  grace: 2m\n")
        .unwrap()
        .unwrap();
    assert_eq!((ok.group_by, ok.grace_ms), (GroupBy::Conversation, 120_000));
    let err = slawatch::cli::parse_otel_config("otel:\n  groupBy: conversations\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("conversations"), "{err}");
    assert!(
        err.contains("conversation") && err.contains("trace"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
}
