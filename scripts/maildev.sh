#!/usr/bin/env bash
# maildev.sh — run a local maildev SMTP server + HTTP API on 127.0.0.1 only.
#
#   maildev.sh start [SMTP_PORT [WEB_PORT]]   start (free ports if none given)
#                                             and wait until GET /api/email
#                                             answers 200; prints
#                                             "SMTP_PORT WEB_PORT"
#   maildev.sh stop                           stop it (SIGTERM, then SIGKILL)
#                                             and verify it is gone
#   maildev.sh status                         exit 0 and print the ports if it
#                                             is up and answering, 3 otherwise
#
# Mail is kept in memory (nothing survives a stop). State lives in
# .tools/run/maildev.{pid,ports,log}. Install maildev first with
# scripts/install-deps.sh. MAILDEV_READY_TIMEOUT (seconds, default 30)
# bounds the readiness wait.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
RUN="$TOOLS/run"
MAILDEV="${SLAWATCH_MAILDEV_BIN:-$TOOLS/bin/maildev}"
PID_FILE="$RUN/maildev.pid"
PORTS_FILE="$RUN/maildev.ports"
LOG_FILE="$RUN/maildev.log"
WORK_DIR="$RUN/maildev.d"
READY_TIMEOUT="${MAILDEV_READY_TIMEOUT:-30}"

die() { printf 'maildev.sh: %s\n' "$*" >&2; exit 1; }
help() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
usage() { help >&2; exit 2; }

if [ -x "$TOOLS/venv/bin/python" ]; then PY="$TOOLS/venv/bin/python"; else PY="$(command -v python3 || true)"; fi
[ -n "$PY" ] || die "python3 is needed (it does the port and HTTP checks)"

# Two distinct free ports on 127.0.0.1 outside the kernel's ephemeral range.
free_ports() {
    "$PY" - <<'EOF'
import random, socket
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    lo = 32768
ports, held = [], []
for _ in range(400):
    if len(ports) == 2:
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(20000, lo) if lo > 21000 else 0))
    except OSError:
        s.close()
        continue
    held.append(s)
    ports.append(s.getsockname()[1])
for s in held:
    s.close()
if len(ports) != 2:
    raise SystemExit("no free ports found")
print(*ports)
EOF
}

port_free() {
    "$PY" -c 'import socket,sys
s=socket.socket()
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}

# 200 from GET /api/email with a JSON array body, and an SMTP 220 greeting.
maildev_ready() {
    "$PY" - "$1" "$2" <<'EOF'
import json, socket, sys, urllib.request
smtp, web = int(sys.argv[1]), int(sys.argv[2])
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/email", timeout=2) as r:
        if r.status != 200 or not isinstance(json.load(r), list):
            sys.exit(1)
    with socket.create_connection(("127.0.0.1", smtp), timeout=2) as s:
        s.settimeout(2)
        if not s.recv(512).startswith(b"220"):
            sys.exit(1)
        s.sendall(b"QUIT\r\n")
except (OSError, ValueError):
    sys.exit(1)
EOF
}

is_maildev_pid() {
    local pid="$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'maildev'
}

running_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid="$(cat "$PID_FILE")"
    is_maildev_pid "$pid" && echo "$pid"
}

cmd_start() {
    [ -x "$MAILDEV" ] || die "maildev not found at $MAILDEV: run scripts/install-deps.sh"
    mkdir -p "$RUN"
    local pid smtp web
    if pid="$(running_pid)"; then
        read -r smtp web <"$PORTS_FILE"
        if [ -n "${1:-}" ] && [ "$1 ${2:-$web}" != "$smtp $web" ]; then
            die "already running (pid $pid) on ports $smtp $web: run '$0 stop' first"
        fi
        echo "maildev already running (pid $pid)" >&2
        echo "$smtp $web"
        return 0
    fi
    rm -f "$PID_FILE" "$PORTS_FILE"
    if [ -n "${1:-}" ]; then
        smtp="$1"
        if [ -n "${2:-}" ]; then web="$2"; else
            web="$(free_ports | cut -d' ' -f1)"
            [ "$web" != "$smtp" ] || web="$(free_ports | cut -d' ' -f2)"
        fi
        for p in "$smtp" "$web"; do
            if ! [[ "$p" =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then die "bad port '$p'"; fi
            port_free "$p" || die "port $p on 127.0.0.1 is in use"
        done
        [ "$smtp" != "$web" ] || die "SMTP and web ports must differ"
    else
        read -r smtp web < <(free_ports)
    fi
    # maildev looks for config files in its cwd and the parents, and keeps
    # .eml files in $TMPDIR/maildev: give it a private directory for both.
    rm -rf "$WORK_DIR"
    mkdir -p "$WORK_DIR/tmp"
    (cd "$WORK_DIR" && unset "${!MAILDEV_@}" && TMPDIR="$WORK_DIR/tmp" exec nohup "$MAILDEV" \
        --smtp "$smtp" --ip 127.0.0.1 --web "$web" --web-ip 127.0.0.1 \
        </dev/null >"$LOG_FILE" 2>&1) &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "$smtp $web" >"$PORTS_FILE"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until maildev_ready "$smtp" "$web"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE" "$PORTS_FILE"
            tail -n 30 "$LOG_FILE" >&2 || true
            die "maildev exited during startup (log: $LOG_FILE)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$LOG_FILE" >&2 || true
            cmd_stop >/dev/null 2>&1 || true
            die "maildev not ready on 127.0.0.1:$smtp/$web within ${READY_TIMEOUT}s (log: $LOG_FILE)"
        fi
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$LOG_FILE" >&2; rm -f "$PID_FILE" "$PORTS_FILE"; die "maildev exited right after startup"; }
    echo "maildev up: pid $pid, smtp 127.0.0.1:$smtp, web http://127.0.0.1:$web/, log $LOG_FILE" >&2
    echo "$smtp $web"
}

cmd_stop() {
    local pid
    if ! [ -f "$PID_FILE" ]; then
        echo "maildev not running (no $PID_FILE)" >&2
        return 0
    fi
    pid="$(cat "$PID_FILE")"
    if ! is_maildev_pid "$pid"; then
        echo "maildev not running (stale pid file, pid '$pid')" >&2
        rm -f "$PID_FILE" "$PORTS_FILE"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do          # it shuts down gracefully in about 1 s
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "maildev (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    kill -0 "$pid" 2>/dev/null && die "could not stop maildev (pid $pid)"
    rm -f "$PID_FILE" "$PORTS_FILE"
    rm -rf "$WORK_DIR"
    echo "maildev stopped (pid $pid)" >&2
}

cmd_status() {
    local pid smtp web
    if pid="$(running_pid)"; then
        read -r smtp web <"$PORTS_FILE"
        if maildev_ready "$smtp" "$web"; then
            echo "running: pid $pid, smtp 127.0.0.1:$smtp, web http://127.0.0.1:$web/"
            return 0
        fi
        echo "pid $pid alive but not answering on 127.0.0.1:$smtp/$web"
        return 3
    fi
    echo "not running"
    return 3
}

case "${1:-}" in
    start) shift; [ $# -le 2 ] || usage; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    -h|--help|help) help ;;
    *) usage ;;
esac
