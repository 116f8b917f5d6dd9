#!/usr/bin/env bash
# soak.sh — the soak of issue 11 (item 8): `slawatch run --topology partitioned` on a real
# broker (tansu) under a generated stream at a steady rate, with a SIGHUP carrying a changed
# spec half way through. It is `tests/it/soak.rs` run longer and faster, with every assertion of
# the test (nothing lost, readiness held, lag bounded, RSS flat, the reload judged by the new
# limit); it prints the table of its scrapes (every 2 s): time, records produced and consumed,
# consume rate, RSS (`process_resident_memory_bytes`), consumer lag (input + repartition
# topics), event time between the newest record produced and the service's frontier, and the
# mean window-evaluation latency since the previous scrape. Results: benches/README.md, "Soak".
#
#   benches/soak.sh              # 300 s at 500 records/s
#   benches/soak.sh 600 800      # SECONDS RATE
#
# It builds the test binary in the test profile (debug, like the suite), so rates are those of
# an unoptimised build. Needs what scripts/install-deps.sh installs (tansu, the Python venv).
set -euo pipefail
cd "$(dirname "$0")/.."
export SLAWATCH_SOAK_SECONDS="${1:-300}" SLAWATCH_SOAK_RATE="${2:-500}"
exec cargo test --locked --test it -- --exact \
    soak::soak_steady_stream_with_a_reload_loses_nothing_and_stays_flat --nocapture
