#!/usr/bin/env bash
# api_load.sh — p50/p99 latency of every question of the HTTP API under concurrent load, with
# 8 days of retained history at 1 M sessions/day, plus the retained bytes per day and the
# memory of the serving process. Results: benches/README.md, "API under load".
#
#   benches/api_load.sh                  # everything (data generated once under $WORK)
#   CONNS=8 SECS=20 benches/api_load.sh  # load per endpoint (defaults)
#   WORK=/tmp/x DAYS=8 RATE=41667 ...    # where the stream and data directory go; size
#
# Steps (each skipped when its output is already in $WORK for the same parameters):
#   1. `slawatch simulate` 8 days at 41,667 sessions/h (= 1,000,008/day), 4 agents, every
#      record with its cost, seed 42 (a ~5 GB file).
#   2. `slawatch replay --data-dir` fills the history (segments by attributes.channel).
#   3. `du` of the sled directory (Store::history_bytes, keys + values by resolution, is not
#      reported yet: no CLI exposes it).
#   4. `slawatch run --input /dev/null --serve` on that directory, 127.0.0.1:0; once /readyz
#      answers, wrk (Debian's `wrk`; installed here if missing) loads each endpoint in turn with
#      $CONNS connections on 2 threads for $SECS s after a 2 s warm-up, on loopback only.
#      benches/api_load.lua prints the percentiles. VmRSS/VmHWM of the server at the end.
# The release binary is built if missing. Nothing is written inside the repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WORK="${WORK:-/tmp/slawatch-api-bench}"
DAYS="${DAYS:-8}"
DURATION="${DURATION:-${DAYS}d}"   # overrides DAYS, e.g. 12h
RATE="${RATE:-41667}"
SEED="${SEED:-42}"
CONNS="${CONNS:-8}"
SECS="${SECS:-20}"
BIN="${SLAWATCH:-target/release/slawatch}"
ENDPOINTS=(
    "/v1/latency?last=1h"
    "/v1/latency?last=24h&group_by=key"
    "/v1/slowest?day=today"
    "/v1/outcomes?last=24h"
    "/v1/changes"
    "/v1/cost?day=today"
    "/v1/pii?last=7d"
    "/v1/status"
    "/"
)

log() { printf '[api_load] %s\n' "$*" >&2; }
[ -x "$BIN" ] || { log "building $BIN"; cargo build --release --quiet --bin slawatch; }
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
mkdir -p "$WORK"
params="seed=$SEED rate=$RATE duration=$DURATION"
stream="$WORK/sessions.jsonl"
data="$WORK/data"

if [ "$(cat "$WORK/stream.params" 2>/dev/null)" != "$params" ]; then
    log "simulate: $params"
    rm -rf "$data" "$WORK/data.params"
    /usr/bin/time -f '%e s, max RSS %M KB' -o "$WORK/simulate.time" \
        "$BIN" simulate --seed "$SEED" --rate "$RATE" --duration "$DURATION" \
        --agent support-bot:sp-v1:m-2026-09 --agent refund-agent:rf-v3:m-2026-09 \
        --agent triage-bot:tr-v2:m-2026-07 --agent billing-bot:bb-v1:m-2026-09 \
        --omit-cost-fraction 0 --late-fraction 0.01 --out "$stream"
    echo "$params" >"$WORK/stream.params"
fi
if [ "$(cat "$WORK/data.params" 2>/dev/null)" != "$params" ]; then
    log "replay into $data"
    rm -rf "$data"
    /usr/bin/time -f '%e s, max RSS %M KB' -o "$WORK/replay.time" \
        "$BIN" replay "$stream" --data-dir "$data" --specs sla-specs \
        --history-segment-by attributes.channel --no-progress --out /dev/null
    echo "$params" >"$WORK/data.params"
fi

sessions=$(wc -l <"$stream")
sled_bytes=$(du -sb "$data/state" | cut -f1)

"$BIN" run --input /dev/null --data-dir "$data" --specs sla-specs \
    --history-segment-by attributes.channel --listen 127.0.0.1:0 --serve --api-rate-limit 0 >"$WORK/run.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
addr=""
for _ in $(seq 1 3000); do
    kill -0 "$server" 2>/dev/null || { tail -20 "$WORK/run.log" >&2; exit 1; }
    [ -z "$addr" ] && [ -s "$data/api.json" ] \
        && addr="$(sed -n 's/.*"address" *: *"\([^"]*\)".*/\1/p' "$data/api.json")"
    [ -n "$addr" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")" = 200 ] && break
    sleep 0.1
done
case "$addr" in 127.0.0.1:*) ;; *) log "no loopback address from the server"; exit 1 ;; esac
rss() { awk -v k="$1:" '$1==k {print $2}' "/proc/$server/status"; }
rss_idle=$(rss VmRSS)

results="$WORK/results.tsv"
: >"$results"
for ep in "${ENDPOINTS[@]}"; do
    url="http://$addr$ep"
    code=$(curl -s -o "$WORK/body" -w '%{http_code}' "$url")
    [ "$code" = 200 ] || { log "$ep answered $code: $(head -c 300 "$WORK/body")"; exit 1; }
    bytes=$(wc -c <"$WORK/body")
    WRK_PATH="$ep" WRK_NAME="$ep" wrk -t2 -c"$CONNS" -d2s -s benches/api_load.lua "$url" >/dev/null
    line=$(WRK_PATH="$ep" WRK_NAME="$ep" wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s \
        -s benches/api_load.lua "$url" | grep '^RESULT')
    printf '%s\tbody_bytes=%s\n' "$line" "$bytes" | tee -a "$results"
done
rss_end=$(rss VmRSS)
hwm=$(rss VmHWM)

echo
echo "sessions in the stream: $sessions ($DURATION at $RATE/h)"
echo "sled directory: $sled_bytes bytes"
echo "server memory: VmRSS idle $rss_idle kB, after load $rss_end kB, VmHWM $hwm kB"
for f in simulate replay; do [ -f "$WORK/$f.time" ] && echo "$f: $(cat "$WORK/$f.time")"; done
echo "load: wrk -t2 -c$CONNS -d${SECS}s per endpoint (after 2 s warm-up), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| endpoint | p50 ms | p90 ms | p99 ms | max ms | req/s | body bytes |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '{
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    printf "| `%s` | %s | %s | %s | %s | %s | %s |\n", $2, v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"], v["rps"], v["body_bytes"]
    if (v["non2xx"] + v["errors"] > 0) printf "|  (%s non-2xx, %s socket errors) |||||||\n", v["non2xx"], v["errors"]
}' "$results"
