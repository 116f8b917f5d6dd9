#!/usr/bin/env python3
"""Validates documents against a JSON Schema with the `jsonschema` package (draft-07).

Reads {"schema": {...}, "documents": {"name": document, ...}} as JSON on stdin and prints
{"name": ["error", ...], ...} — an empty list for a valid document. Used by tests/it/schema.rs
as a validator independent of slawatch's own decoder.
"""
import json
import sys

import jsonschema

request = json.load(sys.stdin)
validator = jsonschema.Draft7Validator(request["schema"])
jsonschema.Draft7Validator.check_schema(request["schema"])
report = {
    name: [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    for name, doc in request["documents"].items()
}
json.dump(report, sys.stdout)
