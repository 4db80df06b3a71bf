#!/usr/bin/env bash
# Benchmark: the API under load from a local user. Measures, over the raw
# socket (curl and python3, no CLI start-up in the figures):
#   - 500 concurrent `GET /v1/status` by root, and by a reader (group bulwark),
#     with curl --parallel: how many are answered, p50/p99/max latency;
#   - root's `GET /v1/status` latency idle (the baseline), while a reader holds
#     1,000 idle connections and reconnects every one the daemon closes, and
#     while a reader sends 10,000 refused `POST /v1/apply`; each as p50/p99
#     and as a ratio to the idle baseline.
#
# Everything runs inside a throw-away network namespace with a temporary
# --root; the reader is uid 61010 in gid 61000 (setpriv), no /etc/group entry
# needed. Needs root, Debian's python3 and a built workspace (release
# binaries when present: `cargo build --release`).
#
#   benches/api.sh [SAMPLES] [ROUNDS]   # root's status calls per phase (200),
#                                      # rounds of each 500-call burst (3)
#   BULWARK_BIN_DIR=DIR benches/api.sh  # measure other binaries (an older build)
set -euo pipefail

samples=${1:-200}
rounds=${2:-3}
top=$(cd "$(dirname "$0")/.." && pwd)
bin="${BULWARK_BIN_DIR:-$top/target/release}"
[ -x "$bin/bulwarkd" ] || bin="$top/target/debug"
[ -x "$bin/bulwarkd" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "needs root (creates a network namespace)" >&2; exit 1; }
# By path: the reader uid cannot run a python3 found first on root's PATH.
py=/usr/bin/python3
[ -x "$py" ] || { echo "needs $py (scripts/install-deps installs it)" >&2; exit 1; }

reader=61010
read_gid=61000
ns="bwk-bench-api-$$"
root=$(mktemp -d)
chmod 755 "$root"   # the reader must reach the socket under it
pid=""
loads=()
cleanup() {
  for p in "${loads[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up

sock="$root/run/bulwark/bulwarkd.sock"
ip netns exec "$ns" "$bin/bulwarkd" --root "$root" --read-group "$read_gid" --admin-group 61001 \
  >"$root/bulwarkd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "bulwarkd did not start:" >&2; cat "$root/bulwarkd.log" >&2; exit 1; }

cat >"$root/load.py" <<'PY'
import json, selectors, socket, sys, threading, time

STATUS = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

def call(path, raw):
    t0 = time.perf_counter()
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(path)
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        code = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "no answer"
    except OSError as e:
        code = type(e).__name__
    return code, (time.perf_counter() - t0) * 1000

def summary(results):
    ms = sorted(t for _, t in results)
    codes = {}
    for c, _ in results:
        codes[c] = codes.get(c, 0) + 1
    pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 2)
    return {"n": len(ms), "codes": codes, "p50": pick(0.50), "p99": pick(0.99), "max": round(ms[-1], 2)}

mode, path = sys.argv[1], sys.argv[2]
if mode == "probe":
    n, gap = int(sys.argv[3]), float(sys.argv[4])
    results = []
    for _ in range(n):
        results.append(call(path, STATUS))
        time.sleep(gap)
    print(json.dumps(summary(results)))
elif mode == "idle":
    n = int(sys.argv[3])
    sel = selectors.DefaultSelector()
    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            return
        sel.register(s, selectors.EVENT_READ)
    for _ in range(n):
        connect()
    print("ready", flush=True)
    while True:
        for key, _ in sel.select(timeout=0.2):
            sel.unregister(key.fileobj)
            key.fileobj.close()
            connect()
elif mode == "refuse":
    n, threads = int(sys.argv[3]), int(sys.argv[4])
    body = b'{"profile": "[profile]\\nname = \\"x\\"\\n"}'
    raw = (b"POST /v1/apply HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body) + body)
    results, lock = [], threading.Lock()
    def worker(k):
        for _ in range(k):
            r = call(path, raw)
            with lock:
                results.append(r)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    s = summary(results)
    s["per_s"] = round(len(results) / (time.perf_counter() - t0))
    print(json.dumps(s))
PY

# load WHO MODE ARGS...: the load generator as root or as the reader. Always
# called in a subshell ($(...) or &), which it replaces: $! is python's PID.
load() {
  local who=$1 mode=$2
  shift 2
  if [ "$who" = root ]; then
    exec "$py" "$root/load.py" "$mode" "$sock" "$@"
  fi
  exec setpriv --reuid "$reader" --regid "$reader" --groups "$read_gid" -- "$py" "$root/load.py" "$mode" "$sock" "$@"
}
field() { "$py" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", (b > 0 ? a / b : 0) }'; }
answered() { "$py" -c 'import json, sys; print(json.loads(sys.argv[1])["codes"].get(sys.argv[2], 0))' "$1" "$2"; }
row() { # label, summary json, baseline json[, expected status]
  printf '%-44s %6s %6s %9s %9s %9s %8s\n' "$1" "$(field "$2" n)" "$(answered "$2" "${4:-200}")" \
    "$(field "$2" p50)" "$(field "$2" p99)" "$(field "$2" max)" "$(ratio "$(field "$2" p50)" "$(field "$3" p50)")"
}

echo "binaries: $bin"
"$bin/bulwarkctl" --socket "$sock" status >/dev/null
printf '%-44s %6s %6s %9s %9s %9s %8s\n' "measurement" "calls" "200" "p50 ms" "p99 ms" "max ms" "p50/idle"
idle=$(load root probe "$samples" 0.01)
row "root status, idle (baseline)" "$idle" "$idle"

# burst WHO [PATH]: 500 concurrent `GET PATH` (default /v1/status) by curl
# --parallel (one connection each, kept alive as curl does); prints the
# summary JSON.
burst() {
  local as=() path=${2:-/v1/status}
  [ "$1" = root ] || as=(setpriv --reuid "$reader" --regid "$reader" --groups "$read_gid" --)
  "${as[@]}" curl -s --no-progress-meter --unix-socket "$sock" --parallel --parallel-immediate --parallel-max 500 \
    -w '%{stderr}%{http_code} %{time_total}\n' "http://localhost$path?[1-500]" >/dev/null 2>"$root/burst.out" || true
  "$py" -c '
import json, re, sys
# Lines of the write-out only: curl may put a progress meter on stderr too.
rows = [l.split() for l in open(sys.argv[1]) if re.fullmatch(r"\d{3} [\d.]+", l.strip())]
ms = sorted(float(t) * 1000 for _, t in rows)
codes = {}
for c, _ in rows:
    codes[c] = codes.get(c, 0) + 1
pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 2)
print(json.dumps({"n": len(ms), "codes": codes, "p50": pick(0.5), "p99": pick(0.99), "max": round(ms[-1], 2)}))
' "$root/burst.out"
}

# The floor: the same burst on the route that reads no state at all.
b=$(burst root /version)
row "500 concurrent GET /version by root (floor)" "$b" "$idle"
for who in root reader; do
  for r in $(seq "$rounds"); do
    b=$(burst "$who")
    row "500 concurrent status by $who, round $r" "$b" "$idle"
  done
done

load reader idle 1000 >"$root/idle.out" &
loads+=($!)
for _ in $(seq 100); do grep -q ready "$root/idle.out" 2>/dev/null && break; sleep 0.1; done
sleep 2
flood=$(load root probe "$samples" 0.05)
row "root status, reader holds 1000 idle conns" "$flood" "$idle"
kill "${loads[@]}" 2>/dev/null || true
wait "${loads[@]}" 2>/dev/null || true
loads=()
sleep 1

load reader refuse 10000 8 >"$root/refuse.out" &
loads+=($!)
sleep 0.5
during=$(load root probe "$samples" 0.02)
wait "${loads[@]}" || true
loads=()
row "root status, reader sends 10000 refused POSTs" "$during" "$idle"
refused=$(cat "$root/refuse.out")
echo "  the refused POSTs: $(answered "$refused" 403) answered 403 of $(field "$refused" n), $(field "$refused" per_s)/s, p50 $(field "$refused" p50) ms"
sleep 11
events=$(grep -c '"event":"BWK-API-0001"' "$root/var/log/bulwark/audit.log" || true)
echo "  audit events for them: $events ($(stat -c %s "$root/var/log/bulwark/audit.log") bytes of audit log in all)"
