"""A small agent instrumented with the real OpenTelemetry Python SDK (tests/it/otel_io.rs).

It "runs" a handful of agent sessions, creating the spans the GenAI semantic conventions
describe (`invoke_agent` root, `chat` model calls, `execute_tool` tool calls, `gen_ai.*`
attributes), exports them to slawatch over OTLP/HTTP with the official exporter (protobuf or
JSON, gzip), and writes down, independently of any span, the session record (contract v1) of
what it did, one per line, for the test to compare field by field with what slawatch assembled.

usage: agent.py ENDPOINT proto|json EXPECTED.jsonl
"""

import json
import sys
from datetime import datetime, timezone

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint, encoding, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
if encoding == "proto":
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint, compression=Compression.Gzip)
elif encoding == "json":
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint)
else:
    sys.exit(f"unknown encoding {encoding}")

provider = TracerProvider(resource=Resource.create({"service.name": "py-agents"}))
processor = BatchSpanProcessor(exporter, max_export_batch_size=64)
provider.add_span_processor(processor)
tracer = provider.get_tracer("slawatch-test-agent")

MS = 1_000_000  # ns


def rfc3339(ns):
    t = datetime.fromtimestamp(ns // MS / 1000, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(ns // MS) % 1000:03d}Z"


# What each session does: model calls (input, output tokens, and the cache-read, cache-creation
# and reasoning tokens among them, None when the provider does not report one), tools (name,
# ok?, ms), outcome.
SESSIONS = [
    dict(agent="support-bot", version="sp-v1", model="gpt-4o-2024-08-06",
         calls=[(1200, 340, 1024, None, None), (1500, 120, 1280, None, None)],
         tools=[("search_kb", True, 210)], error=None),
    dict(agent="support-bot", version="sp-v1", model="gpt-4o-2024-08-06",
         calls=[(900, 80, None, None, None)],
         tools=[("get_order", False, 95), ("get_order", True, 60)], error=None),
    dict(agent="refund-agent", version="rf-v3", model="claude-sonnet-4-20250514",
         calls=[(2200, 410, None, 2048, 150), (2600, 90, 2048, None, 40),
                (3000, 55, 2048, 256, None)],
         tools=[], error="provider_5xx"),
    dict(agent="refund-agent", version="rf-v3", model="claude-sonnet-4-20250514",
         calls=[(700, 200, 0, 512, 120)],
         tools=[("lookup_policy", True, 120), ("issue_refund", True, 340)], error=None),
    dict(agent="support-bot", version="sp-v2", model="gpt-4o-2024-08-06",
         calls=[(1000, 500, None, None, 300), (1100, 450, None, None, 280)],
         tools=[("search_kb", False, 1500)], error="tool_timeout"),
]

# The attribute names of the cache and reasoning counts: the current GenAI conventions for the
# first sessions, the older names instrumentations still write (OpenLLMetry's) for the last, so
# both are read.
CURRENT = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens",
           "gen_ai.usage.reasoning.output_tokens")
OLDER = ("gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cache_creation_input_tokens",
         "gen_ai.usage.reasoning_tokens")

PROVIDERS = {"gpt-4o-2024-08-06": "openai", "claude-sonnet-4-20250514": "anthropic"}

# Event time in the past and fixed, so records and spans agree to the millisecond.
t = 1_790_000_000_000 * MS
expected = []
for i, s in enumerate(SESSIONS):
    start = t + i * 60_000 * MS
    root = tracer.start_span(
        f"invoke_agent {s['agent']}",
        kind=SpanKind.INTERNAL,
        start_time=start,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": s["agent"],
            "gen_ai.provider.name": PROVIDERS[s["model"]],
            "gen_ai.request.model": s["model"],
            "slawatch.prompt_version": s["version"],
        },
    )
    from opentelemetry import trace as trace_api

    ctx = trace_api.set_span_in_context(root)
    cursor = start + 5 * MS
    tool_calls = []
    names = OLDER if i == len(SESSIONS) - 1 else CURRENT
    for n, (inp, out, *details) in enumerate(s["calls"]):
        detail_attributes = {k: v for k, v in zip(names, details) if v is not None}
        call = tracer.start_span(
            f"chat {s['model']}",
            context=ctx,
            kind=SpanKind.CLIENT,
            start_time=cursor,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": PROVIDERS[s["model"]],
                "gen_ai.request.model": s["model"],
                "gen_ai.response.model": s["model"],
                "gen_ai.usage.input_tokens": inp,
                "gen_ai.usage.output_tokens": out,
                **detail_attributes,
            },
        )
        cursor += 700 * MS
        call.end(end_time=cursor)
        if n < len(s["tools"]):
            name, ok, ms = s["tools"][n]
            tool = tracer.start_span(
                f"execute_tool {name}",
                context=ctx,
                kind=SpanKind.INTERNAL,
                start_time=cursor,
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name},
            )
            if not ok:
                tool.set_attribute("error.type", "tool_error")
                tool.set_status(Status(StatusCode.ERROR, "the tool failed"))
            cursor += ms * MS
            tool.end(end_time=cursor)
            tool_calls.append({"name": name, "status": "ok" if ok else "error",
                               "duration_ms": float(ms)})
    # Tools left after the last model call.
    for name, ok, ms in s["tools"][len(s["calls"]):]:
        tool = tracer.start_span(
            f"execute_tool {name}", context=ctx, start_time=cursor,
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name})
        if not ok:
            tool.set_attribute("error.type", "tool_error")
            tool.set_status(Status(StatusCode.ERROR, "the tool failed"))
        cursor += ms * MS
        tool.end(end_time=cursor)
        tool_calls.append({"name": name, "status": "ok" if ok else "error",
                           "duration_ms": float(ms)})
    end = cursor + 15 * MS
    if s["error"]:
        root.set_attribute("error.type", s["error"])
        root.set_status(Status(StatusCode.ERROR, s["error"]))
    trace_id = format(root.get_span_context().trace_id, "032x")
    root.end(end_time=end)

    record = {
        "session_id": trace_id,
        "agent": s["agent"],
        "prompt_version": s["version"],
        "model": s["model"],
        "provider": PROVIDERS[s["model"]],
        "started_at": rfc3339(start),
        "ended_at": rfc3339(end),
        "duration_ms": float((end - start) // MS),
        "status": "error" if s["error"] else "success",
        "turns": len(s["calls"]),
        # The largest context one model call sent.
        "context_tokens_max": max(c[0] for c in s["calls"]),
        "usage": {
            "input_tokens": sum(c[0] for c in s["calls"]),
            "output_tokens": sum(c[1] for c in s["calls"]),
        },
    }
    # Summed over the calls that report them; absent when none does.
    for k, field in enumerate(["cache_read_input_tokens", "cache_creation_input_tokens",
                               "reasoning_output_tokens"]):
        reported = [c[2 + k] for c in s["calls"] if c[2 + k] is not None]
        if reported:
            record["usage"][field] = sum(reported)
    if tool_calls:
        record["tool_calls"] = tool_calls
    if s["error"]:
        record["error_type"] = s["error"]
    expected.append(record)

# Export everything before saying what was sent.
if not provider.force_flush(30_000):
    sys.exit("the exporter did not flush")
provider.shutdown()
with open(expected_path, "w") as f:
    for r in expected:
        f.write(json.dumps(r, sort_keys=True) + "\n")
print(f"exported {len(expected)} sessions over OTLP/HTTP {encoding}")
