#!/usr/bin/env bash
# Benchmark: `bulwarkctl apply` against raw `nft -f` of the same ruleset, for
# profiles with 10, 1,000 and 50,000 admin CIDRs, plus a no-op re-apply.
#
# Everything runs inside a throw-away network namespace with a temporary
# --root; the machine's own ruleset is never touched. Needs root and a built
# workspace (release binaries are used when present: `cargo build --release`).
#
#   benches/apply.sh [RUNS]        # default 5 runs per measurement; prints medians
set -euo pipefail

runs=${1:-5}
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/target/release"
[ -x "$bin/bulwarkd" ] || bin="$top/target/debug"
[ -x "$bin/bulwarkd" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "needs root (creates a network namespace)" >&2; exit 1; }

ns="bwk-bench-$$"
root=$(mktemp -d)
pid=""
cleanup() {
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
ip netns exec "$ns" "$bin/bulwarkd" --root "$root" >"$root/bulwarkd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
ctl() { "$bin/bulwarkctl" --socket "$sock" "$@"; }

# Median wall time in milliseconds of a command run $runs times.
median_ms() {
  local t=()
  for _ in $(seq "$runs"); do
    local s e
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    t+=($(( (e - s) / 1000000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# A profile with N distinct, non-adjacent /32 admin networks, written compactly (the API
# takes bodies up to 1 MiB).
profile() {
  local n=$1 variant=$2
  python3 - "$n" "$variant" <<'PY'
import sys
n, variant = int(sys.argv[1]), int(sys.argv[2])
# Every other address: adjacent /32s would merge into a few prefixes.
cidrs = ",".join(f'"10.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/32"' for a in (2 * i for i in range(n)))
print(f'[profile]\nname = "bench-{n}"\n[firewall]\nadmin_cidrs = [{cidrs}]\nadmin_tcp = [22, {1000 + variant}]\npublic_tcp = [443]')
PY
}

printf '%-8s %12s %12s %8s %14s\n' "CIDRs" "apply ms" "nft -f ms" "ratio" "no-op apply ms"
for n in 10 1000 50000; do
  profile "$n" 0 >"$root/a.toml"
  profile "$n" 1 >"$root/b.toml"
  # Alternate two profiles so each apply really changes the ruleset.
  apply_ab() { ctl apply "$root/a.toml" && ctl apply "$root/b.toml"; }
  t_apply=$(median_ms apply_ab)
  t_apply=$(( t_apply / 2 ))
  t_noop=$(median_ms ctl apply "$root/b.toml")
  # The same ruleset through nft directly, as one atomic replace.
  { echo "add table inet bulwark"; echo "delete table inet bulwark";
    ip netns exec "$ns" nft list table inet bulwark; } >"$root/raw.nft"
  t_raw=$(median_ms ip netns exec "$ns" nft -f "$root/raw.nft")
  ratio=$(awk -v a="$t_apply" -v r="$t_raw" 'BEGIN { printf "%.2f", (r > 0 ? a / r : 0) }')
  printf '%-8s %12s %12s %8s %14s\n' "$n" "$t_apply" "$t_raw" "${ratio}x" "$t_noop"
done
