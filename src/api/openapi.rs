//! The OpenAPI 3.1 document of the API, built from the same question list and parameter names
//! the handlers validate against, so it cannot name a parameter the API would reject.

use serde_json::{Value, json};

use super::questions::{COMMON_PARAMS, Question};

fn describe(param: &str) -> (&'static str, Value) {
    match param {
        "agent" => ("Only sessions of this agent.", json!({"type": "string"})),
        "prompt_version" => ("Only this prompt version.", json!({"type": "string"})),
        "model" => ("Only this model.", json!({"type": "string"})),
        "segment" => (
            "Only this segment of a configured attribute, e.g. `channel=web`.",
            json!({"type": "string"}),
        ),
        "from" => (
            "Range start (RFC 3339), inclusive.",
            json!({"type": "string", "format": "date-time"}),
        ),
        "to" => (
            "Range end (RFC 3339), exclusive.",
            json!({"type": "string", "format": "date-time"}),
        ),
        "last" => (
            "The last duration up to now (event time of the newest session), e.g. `24h`.",
            json!({"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d|w)$"}),
        ),
        "day" => (
            "A UTC day: `today` or `YYYY-MM-DD`.",
            json!({"type": "string"}),
        ),
        "group_by" => (
            "Group rows by `none`, `agent`, `key` (agent × prompt version × model) or `segment`.",
            json!({"type": "string", "enum": ["none", "agent", "key", "segment"]}),
        ),
        "limit" => (
            "How many sessions (or ids) to list.",
            json!({"type": "integer", "minimum": 1, "maximum": 10000}),
        ),
        "compare" => (
            "How far back the comparison range lies (default `7d`: the same hours last week).",
            json!({"type": "string"}),
        ),
        "top_percent" => (
            "Share of the costliest sessions to list (default 1).",
            json!({"type": "number", "exclusiveMinimum": 0, "maximum": 100}),
        ),
        _ => ("", json!({"type": "string"})),
    }
}

fn summary(q: Question) -> &'static str {
    match q {
        Question::Latency => "p50 / p95 / p99 session latency per agent, key or segment",
        Question::Slowest => {
            "The slowest sessions and why (status, error, turns, tokens, tool calls, fallback)"
        }
        Question::Outcomes => "Sessions that succeeded, errored, timed out or were abandoned",
        Question::Changes => {
            "New prompt versions and models, what they replaced, and the drift verdict against it"
        }
        Question::Cost => {
            "Average cost per session vs the same hours a week earlier, and the costliest 1 %"
        }
        Question::Pii => {
            "Personal data that entered agent context: types, handling, destinations, sessions (never the data)"
        }
        Question::Status => {
            "Where every SLA objective stands: state, budget left, open incidents, latest findings"
        }
    }
}

/// The document served at `/v1/openapi.json`.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for q in Question::ALL {
        let mut names: Vec<&str> = COMMON_PARAMS.to_vec();
        names.extend(q.extra_params());
        let parameters: Vec<Value> = names
            .iter()
            .map(|n| {
                let (d, schema) = describe(n);
                json!({"name": n, "in": "query", "required": false, "description": d, "schema": schema})
            })
            .collect();
        paths.insert(
            format!("/v1/{}", q.name()),
            json!({"get": {
                "operationId": q.name(),
                "summary": summary(q),
                "parameters": parameters,
                "responses": {
                    "200": {"description": "The answer", "content": {"application/json": {"schema": {"type": "object", "required": ["question", "now"]}}}},
                    "400": {"$ref": "#/components/responses/Problem"},
                    "401": {"$ref": "#/components/responses/Problem"}
                }
            }}),
        );
    }
    let finding_params: Vec<Value> = ["spec", "objective", "agent"]
        .iter()
        .map(|n| json!({"name": n, "in": "query", "schema": {"type": "string"}}))
        .collect();
    paths.insert(
        "/v1/findings".into(),
        json!({"get": {"operationId": "findings", "summary": "Stored findings, oldest window first",
            "parameters": finding_params,
            "responses": {"200": {"description": "Findings", "content": {"application/json": {"schema": {"type": "array"}}}},
                          "400": {"$ref": "#/components/responses/Problem"}}}}),
    );
    let id = json!({"name": "id", "in": "path", "required": true, "description": "Incident record id (`inc-…`, from /v1/incidents)", "schema": {"type": "string"}});
    paths.insert(
        "/v1/incidents".into(),
        json!({"get": {"operationId": "incidents", "summary": "Incident records (open and resolved, within the retention), newest first",
            "parameters": [
                {"name": "status", "in": "query", "required": false, "description": "`open` or `resolved`", "schema": {"type": "string", "enum": ["open", "resolved"]}},
                {"name": "since", "in": "query", "required": false, "description": "Only incidents detected at or after this RFC 3339 time", "schema": {"type": "string", "format": "date-time"}}
            ],
            "responses": {"200": {"description": "Incident records", "content": {"application/json": {"schema": {"type": "array"}}}},
                          "400": {"$ref": "#/components/responses/Problem"}}}}),
    );
    paths.insert(
        "/v1/incidents/{id}".into(),
        json!({"get": {"operationId": "incident", "summary": "One incident: timeline, onset, layer attribution, runbooks, affected counts; `format=markdown` drafts the postmortem's facts section",
            "parameters": [id.clone(),
                {"name": "format", "in": "query", "required": false, "description": "`json` (default), `markdown` or `text`; or `Accept: text/markdown`", "schema": {"type": "string", "enum": ["json", "markdown", "text"]}}],
            "responses": {"200": {"description": "The incident", "content": {"application/json": {"schema": {"type": "object", "required": ["id", "timeline", "affected"]}}, "text/markdown": {"schema": {"type": "string"}}}},
                          "400": {"$ref": "#/components/responses/Problem"},
                          "404": {"$ref": "#/components/responses/Problem"}}}}),
    );
    paths.insert(
        "/v1/incidents/{id}/affected".into(),
        json!({"get": {"operationId": "incidentAffected", "summary": "The sessions that count against the incident's objective: session id, event time, key, segment, reason (no content)",
            "parameters": [id,
                {"name": "format", "in": "query", "required": false, "description": "`jsonl` (default) or `csv`; or `Accept: text/csv`", "schema": {"type": "string", "enum": ["jsonl", "csv"]}}],
            "responses": {"200": {"description": "One session per line", "content": {"application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}}},
                          "400": {"$ref": "#/components/responses/Problem"},
                          "404": {"$ref": "#/components/responses/Problem"}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "slawatch API",
            "version": "1",
            "description": "Answers the operational questions about AI agents in production from slawatch's retained history. Times are event time; `now` is the newest session's event time."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Problem": {"description": "RFC 7807 problem", "content": {"application/problem+json": {"schema": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "invalid_params": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "reason": {"type": "string"}}}}
                }}}}}}
        },
        "security": [{"bearer": []}, {}]
    })
}
