#!/usr/bin/env bash
# tansu.sh — run a local tansu Kafka broker (in-memory storage, 127.0.0.1 only).
#
#   tansu.sh start [PORT]                 start (a free port if none given) and
#                                         wait until it answers a Kafka
#                                         ApiVersions request; prints the
#                                         bootstrap address 127.0.0.1:PORT
#   tansu.sh stop                         stop it (SIGTERM, then SIGKILL) and
#                                         verify it is gone
#   tansu.sh status                       exit 0 and print the address if it
#                                         is up and answering, 3 otherwise
#   tansu.sh create-topic NAME PARTITIONS create a topic (`tansu topic create`);
#                                         an existing topic with the same
#                                         partition count is fine
#   tansu.sh list-topics                  print the topics as JSON
#
# State lives in .tools/run/tansu.{pid,port,log}. Install tansu first with
# scripts/install-deps.sh. TANSU_READY_TIMEOUT (seconds, default 30) bounds
# the readiness wait.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
RUN="$TOOLS/run"
TANSU="${SLAWATCH_TANSU_BIN:-$TOOLS/bin/tansu}"
PID_FILE="$RUN/tansu.pid"
PORT_FILE="$RUN/tansu.port"
LOG_FILE="$RUN/tansu.log"
READY_TIMEOUT="${TANSU_READY_TIMEOUT:-30}"

die() { printf 'tansu.sh: %s\n' "$*" >&2; exit 1; }
help() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
usage() { help >&2; exit 2; }

if [ -x "$TOOLS/venv/bin/python" ]; then PY="$TOOLS/venv/bin/python"; else PY="$(command -v python3 || true)"; fi
[ -n "$PY" ] || die "python3 is needed (it does the port and protocol checks)"

need_tansu() {
    [ -x "$TANSU" ] || die "tansu not found at $TANSU: run scripts/install-deps.sh"
}

# A free port on 127.0.0.1 outside the kernel's ephemeral range (so no
# outgoing connection can grab it), or a bind-to-0 port if that range is odd.
free_port() {
    "$PY" - <<'EOF'
import random, socket
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    lo = 32768
for _ in range(200):
    port = random.randrange(20000, lo) if lo > 21000 else 0
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        print(s.getsockname()[1])
        break
    except OSError:
        continue
    finally:
        s.close()
else:
    raise SystemExit("no free port found")
EOF
}

port_free() {
    "$PY" -c 'import socket,sys
s=socket.socket()
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}

# Real Kafka-protocol check: ApiVersions v0 must come back with error_code 0.
kafka_ready() {
    "$PY" - "$1" <<'EOF'
import socket, struct, sys
port = int(sys.argv[1])
client = b"slawatch-ready"
body = struct.pack(">hhih", 18, 0, 7411, len(client)) + client
try:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.settimeout(2)
        s.sendall(struct.pack(">i", len(body)) + body)
        buf = b""
        while len(buf) < 4:
            chunk = s.recv(4 - len(buf))
            if not chunk:
                sys.exit(1)
            buf += chunk
        (size,) = struct.unpack(">i", buf)
        if not 10 <= size <= 1 << 20:
            sys.exit(1)
        resp = b""
        while len(resp) < size:
            chunk = s.recv(size - len(resp))
            if not chunk:
                sys.exit(1)
            resp += chunk
except OSError:
    sys.exit(1)
corr, err, n = struct.unpack(">ihi", resp[:10])
keys = [struct.unpack(">hhh", resp[10 + 6 * i:16 + 6 * i])[0] for i in range(max(n, 0))]
ok = corr == 7411 and err == 0 and n > 0 and size == 10 + 6 * n and 18 in keys
sys.exit(0 if ok else 1)
EOF
}

is_tansu_pid() {
    local pid="$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'tansu'
}

running_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid="$(cat "$PID_FILE")"
    is_tansu_pid "$pid" && echo "$pid"
}

cmd_start() {
    need_tansu
    mkdir -p "$RUN"
    local pid port
    if pid="$(running_pid)"; then
        port="$(cat "$PORT_FILE")"
        if [ -n "${1:-}" ] && [ "$1" != "$port" ]; then
            die "already running (pid $pid) on port $port, not $1: run '$0 stop' first"
        fi
        echo "tansu already running (pid $pid)" >&2
        echo "127.0.0.1:$port"
        return 0
    fi
    rm -f "$PID_FILE" "$PORT_FILE"
    if [ -n "${1:-}" ]; then
        port="$1"
        if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then die "bad port '$port'"; fi
        port_free "$port" || die "port $port on 127.0.0.1 is in use"
    else
        port="$(free_port)"
    fi
    local url="tcp://127.0.0.1:$port"
    # Flags beat the LISTENER_URL/STORAGE_ENGINE/... environment variables tansu reads.
    (cd "$RUN" && exec nohup "$TANSU" broker \
        --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine memory://tansu/ \
        </dev/null >"$LOG_FILE" 2>&1) &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "$port" >"$PORT_FILE"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until kafka_ready "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE" "$PORT_FILE"
            tail -n 30 "$LOG_FILE" >&2 || true
            die "tansu exited during startup (log: $LOG_FILE)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$LOG_FILE" >&2 || true
            cmd_stop >/dev/null 2>&1 || true
            die "tansu did not answer ApiVersions on 127.0.0.1:$port within ${READY_TIMEOUT}s (log: $LOG_FILE)"
        fi
        sleep 0.1
    done
    # A failed bind makes tansu exit; make sure it was ours that answered.
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$LOG_FILE" >&2; rm -f "$PID_FILE" "$PORT_FILE"; die "tansu exited right after startup"; }
    echo "tansu $("$TANSU" --version 2>/dev/null | sed 's/^tansu //') up: pid $pid, 127.0.0.1:$port, log $LOG_FILE" >&2
    echo "127.0.0.1:$port"
}

cmd_stop() {
    local pid
    if ! [ -f "$PID_FILE" ]; then
        echo "tansu not running (no $PID_FILE)" >&2
        return 0
    fi
    pid="$(cat "$PID_FILE")"
    if ! is_tansu_pid "$pid"; then
        echo "tansu not running (stale pid file, pid '$pid')" >&2
        rm -f "$PID_FILE" "$PORT_FILE"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do          # up to 10 s for a clean exit
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "tansu (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        die "could not stop tansu (pid $pid)"
    fi
    rm -f "$PID_FILE" "$PORT_FILE"
    echo "tansu stopped (pid $pid)" >&2
}

cmd_status() {
    local pid port
    if pid="$(running_pid)"; then
        port="$(cat "$PORT_FILE")"
        if kafka_ready "$port"; then
            echo "running: pid $pid, 127.0.0.1:$port"
            return 0
        fi
        echo "pid $pid alive but not answering on 127.0.0.1:$port"
        return 3
    fi
    echo "not running"
    return 3
}

current_port() {
    running_pid >/dev/null || die "tansu is not running: '$0 start' first"
    cat "$PORT_FILE"
}

cmd_list_topics() {
    need_tansu
    "$TANSU" topic list --broker "tcp://127.0.0.1:$(current_port)"
}

cmd_create_topic() {
    [ $# -eq 2 ] || usage
    local name="$1" parts="$2" port out
    [[ "$parts" =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive integer, got '$parts'"
    need_tansu
    port="$(current_port)"
    if out="$("$TANSU" topic create --broker "tcp://127.0.0.1:$port" --partitions "$parts" "$name" 2>&1)"; then
        echo "created topic $name ($parts partitions)" >&2
        return 0
    fi
    if [[ "$out" == *"already exists"* ]]; then
        local have
        have="$("$TANSU" topic list --broker "tcp://127.0.0.1:$port" | "$PY" -c '
import json, sys
name = sys.argv[1]
for t in json.load(sys.stdin):
    if t.get("name") == name:
        print(len(t.get("partitions") or []))
        break
else:
    print(0)' "$name")"
        [ "$have" = "$parts" ] || die "topic $name exists with $have partitions, not $parts"
        echo "topic $name already exists ($parts partitions)" >&2
        return 0
    fi
    printf '%s\n' "$out" >&2
    die "could not create topic $name"
}

case "${1:-}" in
    start) shift; [ $# -le 1 ] || usage; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    create-topic) shift; cmd_create_topic "$@" ;;
    list-topics) cmd_list_topics ;;
    -h|--help|help) help ;;
    *) usage ;;
esac
