#!/usr/bin/env python3
"""Smoke test: does the local tansu broker behave like Kafka for a real client?

Not used by CI. Run it by hand after `scripts/install-deps.sh --with-smoke`
(which puts confluent-kafka, with its bundled librdkafka, into .tools/venv):

    .tools/venv/bin/python scripts/kafka_smoke.py            # starts its own broker
    .tools/venv/bin/python scripts/kafka_smoke.py --bootstrap 127.0.0.1:9092

It creates a topic with 3 partitions, produces 1000 keyed records, consumes
them all in a consumer group (session.timeout.ms=6000,
heartbeat.interval.ms=500, max.poll.interval.ms=7000), commits, checks the
committed offsets, then lets a second member join the group and times the
rebalance. It prints the timings and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

try:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit(
        "confluent-kafka is missing: run `scripts/install-deps.sh --with-smoke` "
        "and use .tools/venv/bin/python"
    )

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = 1000
PARTITIONS = 3
GROUP_CONF = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "max.poll.interval.ms": 7000,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
}


def log(msg: str) -> None:
    print(f"[kafka_smoke] {msg}", flush=True)


def consumer(bootstrap: str, group: str, name: str) -> Consumer:
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": name}
    conf.update(GROUP_CONF)
    return Consumer(conf)


def subscribe(c: Consumer, name: str, topic: str, events: list) -> None:
    def on_assign(_c, parts):
        events.append((time.monotonic(), name, "assign", sorted(p.partition for p in parts)))

    def on_revoke(_c, parts):
        events.append((time.monotonic(), name, "revoke", sorted(p.partition for p in parts)))

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)


def run(bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    group = f"smoke-group-{uuid.uuid4().hex[:8]}"

    admin = AdminClient({"bootstrap.servers": bootstrap})
    t0 = time.monotonic()
    fut = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    fut[topic].result(timeout=30)
    md = admin.list_topics(topic=topic, timeout=10)
    nparts = len(md.topics[topic].partitions)
    log(f"created topic {topic} with {nparts} partitions in {time.monotonic() - t0:.3f}s")
    assert nparts == PARTITIONS, f"expected {PARTITIONS} partitions, got {nparts}"

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    delivered: list[int] = []
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(msg.partition())

    t0 = time.monotonic()
    for i in range(RECORDS):
        producer.produce(topic, key=f"key-{i % 37}", value=f"value-{i}", on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(30)
    log(f"produced {len(delivered)} records in {time.monotonic() - t0:.3f}s")
    assert remaining == 0 and not errors, f"produce failed: remaining={remaining} errors={errors[:3]}"
    per_part = {p: delivered.count(p) for p in range(PARTITIONS)}
    log(f"records per partition: {per_part}")

    events: list = []
    c1 = consumer(bootstrap, group, "c1")
    t_sub = time.monotonic()
    subscribe(c1, "c1", topic, events)
    seen: dict[tuple[int, int], str] = {}
    deadline = time.monotonic() + 60
    while len(seen) < RECORDS and time.monotonic() < deadline:
        msg = c1.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        seen[(msg.partition(), msg.offset())] = msg.value().decode()
    first_assign = next((e for e in events if e[1] == "c1" and e[2] == "assign"), None)
    assert first_assign is not None, "consumer never got an assignment"
    log(f"first group assignment after {first_assign[0] - t_sub:.3f}s: partitions {first_assign[3]}")
    log(f"consumed {len(seen)} records in {time.monotonic() - t_sub:.3f}s (incl. join)")
    assert len(seen) == RECORDS, f"consumed {len(seen)} of {RECORDS}"
    assert sorted(seen.values(), key=lambda v: int(v.split("-")[1])) == [
        f"value-{i}" for i in range(RECORDS)
    ], "payload mismatch"

    c1.commit(asynchronous=False)
    committed = c1.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    offsets = {tp.partition: tp.offset for tp in committed}
    log(f"committed offsets: {offsets}")
    assert offsets == per_part, f"committed {offsets} != produced {per_part}"

    # A second member joins: measure the time until both hold partitions.
    c2 = consumer(bootstrap, group, "c2")
    t_join = time.monotonic()
    subscribe(c2, "c2", topic, events)
    deadline = time.monotonic() + 60
    owners: dict[str, list[int]] = {}
    while time.monotonic() < deadline:
        c1.poll(0.1)
        c2.poll(0.1)
        owners = {}
        for _, who, kind, parts in events:
            if kind == "assign":
                owners[who] = parts
            elif kind == "revoke":
                owners[who] = []
        if owners.get("c1") and owners.get("c2"):
            break
    took = time.monotonic() - t_join
    log(f"rebalance with 2 members took {took:.3f}s: {owners}")
    assert owners.get("c1") and owners.get("c2"), f"rebalance incomplete: {owners}"
    assert sorted(owners["c1"] + owners["c2"]) == list(range(PARTITIONS)), owners

    t0 = time.monotonic()
    c2.close()
    c1.close()
    log(f"consumers closed in {time.monotonic() - t0:.3f}s")

    # A fresh consumer in the same group resumes from the committed offsets.
    # Known tansu 0.6.0 issue: when the last members of a group leave at (nearly)
    # the same moment, as c1 and c2 just did, the group can get stuck and a new
    # member is never assigned (seen for > 150 s). Staggered leaves are fine.
    events.clear()
    c3 = consumer(bootstrap, group, "c3")
    t0 = time.monotonic()
    subscribe(c3, "c3", topic, events)
    extra = 0
    assigned_at = None
    while time.monotonic() - t0 < 20:
        msg = c3.poll(0.2)
        if msg is not None and not msg.error():
            extra += 1
        if assigned_at is None and any(e[2] == "assign" for e in events):
            assigned_at = time.monotonic() - t0
        if assigned_at is not None and time.monotonic() - t0 > assigned_at + 1:
            break
    c3.close()
    if assigned_at is None:
        log(
            "WARNING: rejoin after both members left together: no assignment within 20s "
            "(known tansu group bug; use a fresh group id per test)"
        )
    else:
        log(f"rejoin after close: assignment after {assigned_at:.3f}s, re-delivered {extra} records")
    assert extra == 0, f"{extra} records re-delivered despite commit"

    # Same again, but the members leave one after the other.
    group2 = f"{group}-b"
    events.clear()
    d1, d2 = consumer(bootstrap, group2, "d1"), consumer(bootstrap, group2, "d2")
    subscribe(d1, "d1", topic, events)
    subscribe(d2, "d2", topic, events)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        d1.poll(0.1)
        d2.poll(0.1)
        names = {e[1] for e in events if e[2] == "assign"}
        if {"d1", "d2"} <= names and events[-1][2] == "assign":
            break
    d2.close()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        d1.poll(0.1)
        if events[-1][1] == "d1" and events[-1][2] == "assign" and len(events[-1][3]) == PARTITIONS:
            break
    log(f"d1 took over all partitions {time.monotonic() - t0:.3f}s after d2 left")
    d1.close()
    events.clear()
    d3 = consumer(bootstrap, group2, "d3")
    t0 = time.monotonic()
    subscribe(d3, "d3", topic, events)
    while time.monotonic() - t0 < 30 and not events:
        d3.poll(0.2)
    d3.close()
    assert events, "rejoin after staggered leaves: no assignment within 30s"
    log(f"rejoin after staggered leaves: assignment after {time.monotonic() - t0:.3f}s")
    log("OK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", help="host:port of a running broker (default: start one)")
    args = ap.parse_args()
    if args.bootstrap:
        run(args.bootstrap)
        return
    script = os.path.join(ROOT, "scripts", "tansu.sh")
    out = subprocess.run(["bash", script, "start"], check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    port = open(os.path.join(ROOT, ".tools", "run", "tansu.port")).read().strip()
    try:
        run(f"127.0.0.1:{port}")
    finally:
        subprocess.run(["bash", script, "stop"], check=False)


if __name__ == "__main__":
    main()
