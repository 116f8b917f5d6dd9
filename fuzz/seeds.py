#!/usr/bin/env python3
"""Writes the raw seed inputs of every fuzz target into fuzz/seeds/<target>/ from the repo's own
inputs; `scripts/fuzz.sh --minimise` turns them into fuzz/corpus/<target>/ with afl-cmin.

Sources: records from tests/data (decode cases, sample sessions), the contract's examples and a
`slawatch simulate` stream with dirty lines; specs from sla-specs/ and tests/data/specs/; the
shipped and the test notification policies; slawatch.example.yaml and variants; API query
strings for every question. Run from anywhere: python3 fuzz/seeds.py [path/to/slawatch].
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def records(slawatch):
    for i, line in enumerate((ROOT / "tests/data/decode/cases.jsonl").read_text().splitlines()):
        case = json.loads(line)
        body = case["raw"] if "raw" in case else json.dumps(case["line"])
        write("record", f"case-{i:02}", body)
    sample = (ROOT / "tests/data/sample-sessions.jsonl").read_text().splitlines()
    for i in range(0, len(sample), 400):
        write("record", f"sample-{i:04}", sample[i])
    contract = (ROOT / "docs/contract/session-record-v1.md").read_text()
    for i, block in enumerate(re.findall(r"```json\n(.*?)```", contract, re.S)):
        for j, line in enumerate(l for l in block.splitlines() if l.startswith("{")):
            write("record", f"contract-{i}-{j}", line)
    # A simulated stream with incidents and every kind of dirty line (oversized ones skipped:
    # AFL wants small inputs, and the size check is a single comparison).
    out = subprocess.run(
        [slawatch, "simulate", "--seed", "7", "--duration", "6h", "--rate", "60", "--demo",
         "--dirty-fraction", "0.2", "--duplicate-fraction", "0.05"],
        check=True, capture_output=True).stdout
    for i, line in enumerate(out.split(b"\n")):
        if line and len(line) < 4096 and i % 7 == 0:
            write("record", f"sim-{i:05}", line)


def specs():
    for p in sorted((ROOT / "sla-specs").glob("*.yaml")):
        write("spec", p.name, p.read_bytes())
    for p in sorted((ROOT / "tests/data/specs").rglob("*.yaml")):
        write("spec", f"{p.parent.name}-{p.name}", p.read_bytes())
    write("spec", "fleet-drift.yaml", (ROOT / "benches/fleet/drift.yaml").read_bytes())


def policies():
    shipped = (ROOT / "policies/notification.yaml").read_text()
    write("policy", "notification.yaml", shipped)
    alerts = (ROOT / "tests/it/alerts.rs").read_text()
    test = re.search(r'TEST_POLICY: &str = "\\\n(.*?)";', alerts, re.S).group(1)
    write("policy", "test.yaml", test)
    write("policy", "minimal.yaml",
          "apiVersion: slawatch/v1\nkind: NotificationPolicy\nmetadata: {name: m}\n"
          "spec:\n  receivers: {oncall: [a@b.test]}\n  routes:\n    - receivers: [oncall]\n")
    write("policy", "two-docs.yaml", shipped + "\n---\n" + shipped)
    write("policy", "empty.yaml", "")


def service_configs():
    example = (ROOT / "slawatch.example.yaml").read_text()
    write("service_config", "example.yaml", example)
    write("service_config", "minimal.yaml", "kafka:\n  brokers: localhost:9092\n")
    write("service_config", "empty.yaml", "")
    write("service_config", "no-kafka.yaml", "{}\n")
    write("service_config", "flow.yaml",
          "kafka: {brokers: 'a:1,b:2', topics: [t], groupId: g, idleTimeout: 30s, "
          "checkpointInterval: 2s, topology: single, properties: {client.id: x}}\n")


QUERIES = [
    "", "last=1h", "last=24h&group_by=key", "day=today&limit=10", "day=2026-11-01",
    "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z", "from=2026-11-01T00:00:00%2B02:00",
    "agent=support-bot&prompt_version=sp-v1&model=m-2026-09", "segment=channel%3Dweb&group_by=segment",
    "compare=7d&top_percent=1%25", "limit=10000&last=7d", "last=yesterday&group_by=colour&limit=0",
    "last=1h&day=today", "agent=a&agent=b", "to=2026-11-01T00:00:00Z", "last=1.5h+30m",
]


def queries():
    for q, name in enumerate(["latency", "slowest", "outcomes", "changes", "cost", "pii", "status"]):
        for i, s in enumerate(QUERIES):
            if (i + q) % 3 == 0 or name in ("latency", "cost"):
                write("api_query", f"{name}-{i:02}", bytes([q]) + s.encode())


def main():
    slawatch = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/debug/slawatch")
    shutil.rmtree(OUT, ignore_errors=True)
    records(slawatch)
    specs()
    policies()
    service_configs()
    queries()
    for d in sorted(OUT.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
