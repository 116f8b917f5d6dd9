#!/usr/bin/env bash
# fleet_false_alarms.sh — the drift false-alarm budget measured (issue 10 item 10):
#   1. a steady fleet: 40 keys (support-bot with prompt versions p01…p40, one behaviour) at
#      200 sessions/h each for 14 days (2.7 M sessions), drift objective of
#      sla-specs/support-bot.yaml at its defaults (benches/fleet/drift.yaml) → false drift
#      tickets per key-month;
#   2. a prompt update that scales output tokens by 1.3 at 200 sessions/h (tool mix unchanged)
#      → minutes and sessions until the first ticket;
#   3. the same with a 1.12 scale at 600 sessions/h.
# Results: benches/README.md, "Drift false alarms across a fleet". Nothing is written inside the
# repository; $WORK (default /tmp/slawatch-fleet) keeps the streams and findings.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORK="${WORK:-/tmp/slawatch-fleet}"
BIN="${SLAWATCH:-target/release/slawatch}"
SPECS="${SPECS:-benches/fleet}"
[ -x "$BIN" ] || cargo build --release --quiet --bin slawatch
mkdir -p "$WORK"
agents=()
for i in $(seq -w 1 40); do agents+=(--agent "support-bot:p$i:m-2026-09"); done
mix="search_kb/0.55+get_order/0.30+escalate/0.10+update_address/0.05"   # the agent's own mix

"$BIN" simulate --seed 7 --rate 8000 --duration 14d "${agents[@]}" --out "$WORK/steady.jsonl"
"$BIN" replay "$WORK/steady.jsonl" --specs "$SPECS" --no-progress --out "$WORK/steady.findings" >/dev/null
# The first 12 h of every key are its baseline learning (no tests): 13.5 tested days.
python3 benches/fleet/count.py steady "$WORK/steady.findings" 40 13.5

"$BIN" simulate --seed 11 --rate 200 --duration 4d --agent support-bot:sp-v1:m-2026-09 \
    --incident "prompt-change@3d:prompt=sp-v2,scale=1.3,tools=$mix" --out "$WORK/shift30.jsonl"
"$BIN" replay "$WORK/shift30.jsonl" --specs "$SPECS" --no-progress --out "$WORK/shift30.findings" >/dev/null
python3 benches/fleet/count.py delay "$WORK/shift30.findings" 2026-11-04T00:00:00Z sp-v2

"$BIN" simulate --seed 12 --rate 600 --duration 4d --agent support-bot:sp-v1:m-2026-09 \
    --incident "prompt-change@3d:prompt=sp-v2,scale=1.12,tools=$mix" --out "$WORK/shift12.jsonl"
"$BIN" replay "$WORK/shift12.jsonl" --specs "$SPECS" --no-progress --out "$WORK/shift12.findings" >/dev/null
python3 benches/fleet/count.py delay "$WORK/shift12.findings" 2026-11-04T00:00:00Z sp-v2
