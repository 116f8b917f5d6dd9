#!/usr/bin/env bash
# fuzz.sh — coverage-guided fuzzing of slawatch's parsers with AFL++ (cargo-afl), on the stable
# toolchain. Long runs only: CI runs the bounded proptest run in `cargo test` instead (see
# fuzz/README.md for why and the measured build time).
#
#   scripts/fuzz.sh TARGET SECONDS   fuzz TARGET for SECONDS (resumes fuzz/out/TARGET if it
#                                    exists), then print its figures
#   scripts/fuzz.sh --stats TARGET   print the figures of fuzz/out/TARGET
#   scripts/fuzz.sh --minimise TARGET
#                                    afl-cmin fuzz/seeds/TARGET plus the queue of
#                                    fuzz/out/TARGET into fuzz/corpus/TARGET
#   scripts/fuzz.sh --build          only build the instrumented harnesses
#
# TARGET: record, spec, policy, service_config, api_query (slawatch::fuzzing::TARGETS).
# Needs cargo-afl and its AFL++ build (`scripts/install-deps.sh --with-afl`). Runs one fuzzer
# process under `nice -n 10`. Crashes and hangs land in fuzz/out/TARGET/default/{crashes,hangs};
# copy each into fuzz/regressions/TARGET/ once fixed, so `cargo test` replays it for ever.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
TARGETS=(record spec policy service_config api_query)

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
die() { echo "fuzz.sh: $*" >&2; exit 2; }
check_target() {
    local t
    for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
    die "unknown target '$1'; expected one of: ${TARGETS[*]}"
}
dict() { case "$1" in record|api_query) echo "$FUZZ/dict/$1.dict" ;; *) echo "$FUZZ/dict/yaml.dict" ;; esac; }

# With an explicit --target, cargo-afl's RUSTFLAGS (coverage passes, codegen-units=1) reach only
# the target's code, not build scripts and proc macros; opt-level 1 (cargo-afl's default is 3)
# halves the build on 2 cores for a parser that stays fast enough.
HOST="$(rustc -vV | sed -n 's/^host: //p')"
BIN_DIR="$FUZZ/target/$HOST/release"
build() {
    command -v cargo-afl >/dev/null 2>&1 || die "cargo-afl is missing: run scripts/install-deps.sh --with-afl"
    (cd "$FUZZ" && AFL_OPT_LEVEL="${AFL_OPT_LEVEL:-1}" nice -n 10 cargo afl build --release --locked --target "$HOST")
}

# Unattended AFL++: no UI, no core-pattern or CPU-governor demands, no CPU pinning on a
# shared machine.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1

stats() {
    local f="$FUZZ/out/$1/default/fuzzer_stats"
    [ -f "$f" ] || die "no fuzzer_stats for $1 (run scripts/fuzz.sh $1 SECONDS first)"
    awk -v t="$1" -F' *: ' '
        { v[$1] = $2 }
        END {
            printf "%s: run_time %s s, execs %s, execs/s %s (last run), corpus %s, edges %s (%s), crashes %s, hangs %s\n",
                t, v["run_time"], v["execs_done"], v["execs_per_sec"], v["corpus_count"],
                v["edges_found"], v["bitmap_cvg"], v["saved_crashes"], v["saved_hangs"]
        }' "$f"
}

case "${1:-}" in
    -h|--help) usage ;;
    "") usage 2 ;;
    --build) build; exit 0 ;;
    --stats) check_target "${2:-}"; stats "$2"; exit 0 ;;
    --minimise)
        t="${2:-}"; check_target "$t"; build
        in="$(mktemp -d)"; trap 'rm -rf "$in"' EXIT
        cp "$FUZZ/seeds/$t/"* "$in/" 2>/dev/null || true
        cp "$FUZZ/corpus/$t/"* "$in/" 2>/dev/null || true
        q="$FUZZ/out/$t/default/queue"
        [ -d "$q" ] && find "$q" -maxdepth 1 -type f -exec cp {} "$in/" \;
        rm -rf "$FUZZ/corpus/$t.new"
        nice -n 10 cargo afl cmin -i "$in" -o "$FUZZ/corpus/$t.new" -t 2000 -- "$BIN_DIR/$t"
        # Names that say nothing but stay stable: the content's hash.
        rm -rf "$FUZZ/corpus/$t"; mkdir -p "$FUZZ/corpus/$t"
        for f in "$FUZZ/corpus/$t.new"/*; do
            cp "$f" "$FUZZ/corpus/$t/$(sha1sum "$f" | cut -c1-16)"
        done
        rm -rf "$FUZZ/corpus/$t.new"
        echo "fuzz/corpus/$t: $(ls "$FUZZ/corpus/$t" | wc -l) inputs"
        exit 0 ;;
esac

t="$1"; secs="${2:-}"
check_target "$t"
[[ "$secs" =~ ^[0-9]+$ ]] || die "SECONDS must be a whole number, found '${secs}'"
build
mkdir -p "$FUZZ/out/$t"
input=(-i "$FUZZ/corpus/$t")
[ -f "$FUZZ/out/$t/default/fuzzer_stats" ] && input=(-i -)   # resume
nice -n 10 cargo afl fuzz "${input[@]}" -o "$FUZZ/out/$t" -x "$(dict "$t")" -t 1000 -V "$secs" \
    -- "$BIN_DIR/$t" >"$FUZZ/out/$t.log" 2>&1 || {
    tail -n 30 "$FUZZ/out/$t.log" >&2
    die "afl-fuzz failed (log: fuzz/out/$t.log)"
}
stats "$t"
