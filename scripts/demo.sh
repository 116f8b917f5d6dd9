#!/usr/bin/env bash
# The main job on embedded defaults, no broker needed: generate a two-day stream of a support
# agent with one incident per SLA dimension, then run slawatch over it with state in sled under
# ./demo/data and alert mail written as .eml files to ./demo/data/outbox.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p demo
cargo build --release --quiet --bin slawatch
bin=target/release/slawatch
$bin simulate --seed 7 --duration 48h --demo --dirty-fraction 0.002 --duplicate-fraction 0.005 --out demo/sessions.jsonl
$bin validate sla-specs/
$bin run --input demo/sessions.jsonl --specs sla-specs/ --data-dir demo/data
echo
echo "Alert mails: $(ls demo/data/outbox | wc -l) in demo/data/outbox (open any .eml)"
