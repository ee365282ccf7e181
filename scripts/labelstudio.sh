#!/usr/bin/env bash
# A local Label Studio server for `curate push` / `curate pull`, the integration tests and the
# benchmark. Label Studio lives in its own virtualenv: its Django pins clash with the ML stack, so
# the project itself only depends on label-studio-sdk.
#
#   scripts/labelstudio.sh install   create the virtualenv and install label-studio (once)
#   scripts/labelstudio.sh start     install if needed, start on 127.0.0.1, wait until healthy and
#                                    the API token works; idempotent (a healthy server is reused)
#   scripts/labelstudio.sh stop      stop the server started from this data dir (pid file)
#   scripts/labelstudio.sh status    exit 0 and print the URL when running, exit 3 otherwise
#
# Settings (environment):
#   CURATE_LS_VENV        virtualenv                      (default: .venv-labelstudio)
#   CURATE_LS_DATA_DIR    data dir: SQLite db, media      (default: $CURATE_LS_VENV/data)
#   CURATE_LS_PORT        port on 127.0.0.1               (default: 8080; a busy port is an error)
#   CURATE_LS_USERNAME    admin e-mail, first boot only   (default: admin@curate.local)
#   CURATE_LS_PASSWORD    admin password, first boot only (default: random, kept in the data dir)
#   CURATE_LS_TOKEN       admin API token (6-40 chars), first boot only (default: random)
#   CURATE_LS_VERSION     label-studio version            (default: 1.23.2)
#   CURATE_LS_START_TIMEOUT  seconds to wait for /health  (default: 600; a fresh data dir spends
#                            about 80 s in migrations, a migrated one about 10 s)
#   PYTHON                interpreter for the virtualenv  (default: python3)
#
# The token is written to $CURATE_LS_DATA_DIR/curate-token (mode 600) and never printed: use
#   export LABEL_STUDIO_URL=http://127.0.0.1:8080
#   export LABEL_STUDIO_API_KEY="$(cat .venv-labelstudio/data/curate-token)"
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$(pwd)"

VENV="${CURATE_LS_VENV:-.venv-labelstudio}"
DATA_DIR="${CURATE_LS_DATA_DIR:-$VENV/data}"
PORT="${CURATE_LS_PORT:-8080}"
USERNAME_EMAIL="${CURATE_LS_USERNAME:-admin@curate.local}"
VERSION="${CURATE_LS_VERSION:-1.23.2}"
START_TIMEOUT="${CURATE_LS_START_TIMEOUT:-600}"
PYTHON_BIN="${PYTHON:-python3}"

# Absolute paths: label-studio and the pid file must not depend on the caller's directory.
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$REPO/$DATA_DIR" ;; esac

PID_FILE="$DATA_DIR/curate-server.pid"
PORT_FILE="$DATA_DIR/curate-server.port"
LOG_FILE="$DATA_DIR/curate-server.log"
TOKEN_FILE="$DATA_DIR/curate-token"
PASSWORD_FILE="$DATA_DIR/curate-password"
LS_BIN="$VENV/bin/label-studio"
VPY="$VENV/bin/python"

say() { printf 'labelstudio: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

installed() {
    [[ -x "$LS_BIN" ]] && "$VPY" -c "import importlib.metadata as m, sys; \
sys.exit(m.version('label-studio') != '$VERSION')" 2>/dev/null
}

install() {
    installed && return 0
    mkdir -p "$VENV"
    # Two starts at once (parallel test sessions) must not install twice into one venv.
    exec 9>"$VENV/.install.lock"
    flock 9
    if ! installed; then
        say "installing label-studio==$VERSION into $VENV (a few minutes, once)"
        [[ -x "$VPY" ]] || "$PYTHON_BIN" -m venv "$VENV"
        "$VPY" -m pip install -q --disable-pip-version-check --upgrade pip >"$VENV/install.log" 2>&1 \
            || { tail -20 "$VENV/install.log" >&2; die "pip upgrade failed (log: $VENV/install.log)"; }
        "$VPY" -m pip install -q --disable-pip-version-check "label-studio==$VERSION" \
            >>"$VENV/install.log" 2>&1 \
            || { tail -20 "$VENV/install.log" >&2; die "install failed (log: $VENV/install.log)"; }
    fi
    exec 9>&-
}

random_secret() { "$VPY" -c "import secrets; print(secrets.token_hex($1))"; }

server_pid() {
    # The pid from the pid file when that process is still alive, else nothing.
    [[ -f "$PID_FILE" ]] || return 0
    local pid
    pid="$(cat "$PID_FILE")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

# http_check URL [TOKEN]: exit 0 when GET answers 200 (with `Authorization: Token` when given).
http_check() {
    "$VPY" - "$@" <<'EOF'
import sys, urllib.request
url = sys.argv[1]
request = urllib.request.Request(url)
if len(sys.argv) > 2:
    request.add_header("Authorization", "Token " + open(sys.argv[2]).read().strip())
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

port_busy() {
    "$VPY" - "$1" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            if sock.connect_ex((host, port)) == 0:
                sys.exit(0)
        except OSError:
            pass
sys.exit(1)
EOF
}

print_where() {
    local port="$1"
    echo "Label Studio: http://127.0.0.1:$port"
    echo "  data dir:   $DATA_DIR"
    echo "  admin:      $(cat "$DATA_DIR/curate-username" 2>/dev/null || echo "$USERNAME_EMAIL")"
    echo "  API token:  in $TOKEN_FILE (never printed)"
    echo "  use:        export LABEL_STUDIO_URL=http://127.0.0.1:$port"
    echo "              export LABEL_STUDIO_API_KEY=\"\$(cat $TOKEN_FILE)\""
}

start() {
    install
    mkdir -p "$DATA_DIR"
    local pid
    pid="$(server_pid)"
    if [[ -n "$pid" ]]; then
        local running_port
        running_port="$(cat "$PORT_FILE" 2>/dev/null || echo "$PORT")"
        if http_check "http://127.0.0.1:$running_port/health"; then
            say "already running (pid $pid)"
            print_where "$running_port"
            return 0
        fi
        say "pid $pid is alive but not healthy: restarting it"
        stop
    fi
    rm -f "$PID_FILE" "$PORT_FILE"
    # Label Studio would silently move to the next free port: refuse instead.
    if port_busy "$PORT"; then
        die "port $PORT is in use (set CURATE_LS_PORT to a free port)"
    fi

    # First boot creates the admin user with this token; a copied data dir keeps its own.
    if [[ ! -s "$TOKEN_FILE" ]]; then
        (umask 077; printf '%s\n' "${CURATE_LS_TOKEN:-$(random_secret 20)}" >"$TOKEN_FILE")
    fi
    if [[ ! -s "$PASSWORD_FILE" ]]; then
        (umask 077; printf '%s\n' "${CURATE_LS_PASSWORD:-$(random_secret 12)}" >"$PASSWORD_FILE")
    fi
    [[ -s "$DATA_DIR/curate-username" ]] || printf '%s\n' "$USERNAME_EMAIL" >"$DATA_DIR/curate-username"
    local token_length
    token_length="$(tr -d '\n' <"$TOKEN_FILE" | wc -c)"
    ((token_length >= 6 && token_length <= 40)) || die "the API token must be 6-40 characters"

    say "starting on 127.0.0.1:$PORT (log: $LOG_FILE)"
    # Label Studio reads bare PORT, HOST, USERNAME, PASSWORD too (LABEL_STUDIO_ prefix optional):
    # drop any from the caller's environment so they cannot leak in.
    (
        cd "$DATA_DIR"
        exec env -u PORT -u HOST -u USERNAME -u PASSWORD -u USER_TOKEN \
            LABEL_STUDIO_USERNAME="$(cat "$DATA_DIR/curate-username")" \
            LABEL_STUDIO_PASSWORD="$(cat "$PASSWORD_FILE")" \
            LABEL_STUDIO_USER_TOKEN="$(tr -d '\n' <"$TOKEN_FILE")" \
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
            LABEL_STUDIO_BASE_DATA_DIR="$DATA_DIR" \
            SENTRY_DSN= FRONTEND_SENTRY_DSN= COLLECT_ANALYTICS=false LATEST_VERSION_CHECK=false \
            SSRF_PROTECTION_ENABLED=false DEBUG=false LOG_LEVEL=WARNING \
            setsid "$LS_BIN" start --no-browser --internal-host 127.0.0.1 --port "$PORT" \
            --data-dir "$DATA_DIR" --enable-legacy-api-token \
            </dev/null >"$LOG_FILE" 2>&1
    ) &
    echo $! >"$PID_FILE"
    echo "$PORT" >"$PORT_FILE"

    local deadline=$((SECONDS + START_TIMEOUT))
    until http_check "http://127.0.0.1:$PORT/health"; do
        if [[ -z "$(server_pid)" ]]; then
            tail -30 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "label-studio exited during startup (log: $LOG_FILE)"
        fi
        if ((SECONDS > deadline)); then
            tail -30 "$LOG_FILE" >&2 || true
            stop
            die "not healthy after ${START_TIMEOUT}s (log: $LOG_FILE)"
        fi
        sleep 1
    done
    # The port answered, but is it ours? Label Studio logs the port it picked.
    if grep -q "port $PORT is in use" "$LOG_FILE" 2>/dev/null; then
        stop
        die "port $PORT was taken while starting"
    fi
    if ! http_check "http://127.0.0.1:$PORT/api/current-user/whoami" "$TOKEN_FILE"; then
        die "the server is up but the token in $TOKEN_FILE is refused (a data dir from another \
first boot? remove $DATA_DIR to start over)"
    fi
    say "ready"
    print_where "$PORT"
}

stop() {
    local pid
    pid="$(server_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$PID_FILE" "$PORT_FILE"
        say "not running"
        return 0
    fi
    # setsid made the server the leader of its own process group: stop the whole group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= 30)); then
            say "still alive after 15 s: SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE" "$PORT_FILE"
    say "stopped (pid $pid)"
}

status() {
    local pid port
    pid="$(server_pid)"
    if [[ -z "$pid" ]]; then
        echo "Label Studio: not running (data dir $DATA_DIR)"
        return 3
    fi
    port="$(cat "$PORT_FILE" 2>/dev/null || echo "$PORT")"
    if [[ -x "$VPY" ]] && http_check "http://127.0.0.1:$port/health"; then
        echo "running (pid $pid)"
        print_where "$port"
        return 0
    fi
    echo "Label Studio: pid $pid alive but not healthy on port $port (log: $LOG_FILE)"
    return 3
}

case "${1:-}" in
    install) install; say "label-studio $VERSION in $VENV" ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 install|start|stop|status   (settings: see the top of this script)" >&2
        exit 2
        ;;
esac
