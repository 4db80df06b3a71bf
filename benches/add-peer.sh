#!/usr/bin/env bash
# Benchmark: `bulwarkctl add-peer` against `wg set` of one peer directly, with
# 10 and 1,000 peers already on the interface (userspace backend, as on the
# development machines: no WireGuard kernel module there).
#
# Runs inside a throw-away network namespace with a temporary --root; the
# machine's own interfaces are never touched. Needs root, wireguard-go and a
# built workspace (release binaries when present).
#
#   benches/add-peer.sh [RUNS]      # default 10 runs per measurement; prints medians
set -euo pipefail

runs=${1:-10}
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/target/release"
[ -x "$bin/bulwarkd" ] || bin="$top/target/debug"
[ -x "$bin/bulwarkd" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "needs root (creates a network namespace)" >&2; exit 1; }

ns="bwk-bench-wg-$$"
iface="wgb$(( $$ % 100000 ))"   # /var/run/wireguard is shared across namespaces: unique name
root=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  # wireguard-go children of the daemon live in the namespace: end them by it.
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up

cat >"$root/profile.toml" <<TOML
[profile]
name = "bench-wg"
[wireguard]
interface = "$iface"
address = "10.80.0.1/16"
endpoint = "192.0.2.1:51820"
backend = "userspace"
TOML
sock="$root/run/bulwark/bulwarkd.sock"
ip netns exec "$ns" "$bin/bulwarkd" --root "$root" --profile "$root/profile.toml" >"$root/bulwarkd.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.1; done
ctl() { "$bin/bulwarkctl" --socket "$sock" "$@"; }

median_ms() {
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]}'
}
now_us() { echo $(( $(date +%s%N) / 1000 )); }

count=0
printf '%-15s %16s %12s %8s\n' "existing peers" "add-peer ms" "wg set ms" "ratio"
for target in 10 1000; do
  while [ "$count" -lt "$target" ]; do
    ctl add-peer "fill$count" >/dev/null 2>&1
    count=$((count + 1))
  done
  t_ctl=() t_wg=()
  for i in $(seq "$runs"); do
    s=$(now_us); ctl add-peer "bench$target-$i" >/dev/null 2>&1; e=$(now_us)
    t_ctl+=("$(awk -v d=$((e - s)) 'BEGIN { print d / 1000 }')")
    ctl remove-peer --yes "bench$target-$i" >/dev/null
    key=$(wg genkey | wg pubkey)
    s=$(now_us)
    ip netns exec "$ns" wg set "$iface" peer "$key" allowed-ips "10.80.200.$i/32"
    e=$(now_us)
    t_wg+=("$(awk -v d=$((e - s)) 'BEGIN { print d / 1000 }')")
    ip netns exec "$ns" wg set "$iface" peer "$key" remove
  done
  a=$(median_ms "${t_ctl[@]}"); w=$(median_ms "${t_wg[@]}")
  printf '%-15s %16s %12s %8s\n' "$target" "$a" "$w" "$(awk -v a="$a" -v w="$w" 'BEGIN { printf "%.1fx", a / w }')"
done
