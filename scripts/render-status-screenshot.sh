#!/usr/bin/env bash
# render-status-screenshot.sh — regenerate docs/status-page.png, a screenshot of the status page
# at `/` as headless Chromium shows it.
#
# A deterministic demo stream (seed 7, 48 h, the demo incidents, both shipped agents) is served
# by `slawatch run --serve` on 127.0.0.1:0 with the shipped sla-specs/; once /readyz answers,
# Chromium (Debian's `chromium`, installed by scripts/install-deps.sh) takes the screenshot and
# the server is stopped. Nothing is fetched from anywhere but the server: the page has no
# external reference, and every host name but 127.0.0.1 resolves to NOTFOUND in the browser.
#
#   scripts/render-status-screenshot.sh                 # writes docs/status-page.png
#   OUT=/tmp/x.png scripts/render-status-screenshot.sh  # somewhere else
#   SLAWATCH=target/release/slawatch scripts/render-status-screenshot.sh   # skip the build
#   KEEP=1 ...                                          # keep the work dir (stream, data, logs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="${OUT:-docs/status-page.png}"
WIDTH="${WIDTH:-1280}"
HEIGHT="${HEIGHT:-1400}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$CHROMIUM" ]; then
    echo "render-status-screenshot: chromium not found (scripts/install-deps.sh installs it)" >&2
    exit 1
fi
if [ -z "${SLAWATCH:-}" ]; then
    cargo build --quiet --bin slawatch
    SLAWATCH=target/debug/slawatch
fi

work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "work dir kept: $work"; fi
}
trap cleanup EXIT

"$SLAWATCH" simulate --seed 7 --duration 48h --demo \
    --agent support-bot --agent refund-agent --out "$work/sessions.jsonl"
"$SLAWATCH" run --input "$work/sessions.jsonl" --data-dir "$work/data" --specs sla-specs/ \
    --history-segment-by attributes.channel --listen 127.0.0.1:0 --serve \
    >"$work/run.log" 2>&1 &
server=$!

# Wait for the address, then for /readyz (the whole input applied): poll, up to 5 minutes.
addr=""
for _ in $(seq 1 3000); do
    kill -0 "$server" 2>/dev/null || { echo "slawatch run exited:" >&2; tail -20 "$work/run.log" >&2; exit 1; }
    if [ -z "$addr" ] && [ -s "$work/data/api.json" ]; then
        addr="$(sed -n 's/.*"address" *: *"\([^"]*\)".*/\1/p' "$work/data/api.json")"
    fi
    if [ -n "$addr" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")" = 200 ]; then
        break
    fi
    sleep 0.1
done
[ -n "$addr" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")" = 200 ] \
    || { echo "render-status-screenshot: server not ready" >&2; tail -20 "$work/run.log" >&2; exit 1; }

mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
    --hide-scrollbars --user-data-dir="$work/profile" \
    --screenshot="$OUT" --window-size="$WIDTH,$HEIGHT" "http://$addr/" >"$work/chromium.log" 2>&1
[ -s "$OUT" ] || { echo "render-status-screenshot: chromium wrote no $OUT" >&2; tail -20 "$work/chromium.log" >&2; exit 1; }
echo "wrote $OUT"
