#!/usr/bin/env bash
# Catalog reads with Redis alive, dead, and alive again (issue 12, defect a):
# the release fleet, wrk on one catalog replica directly, GET /products/{id}
# over every product id (the 2 s L1 expires, so reads go to L2 or Postgres).
# With Redis dead, the L2 lookup must fail fast (a 250 ms timeout behind a
# 1 s circuit) and reads fall back to Postgres: the p99 must stay close.
#
#   scripts/bench-redis-dead.sh            # release build (built if missing)
#   BENCH_SECS=10 BENCH_PORT_BASE=25600 BENCH_BUILD=release|debug
#
# Prints one line per phase (req/s, non-2xx, p50, p99, p99.9, max) and the
# ratio of p99 dead to alive. Traffic goes only to 127.0.0.1; its own fleet
# in its own state dir, torn down by a trap whatever happens.
set -euo pipefail
trap 'echo "bench-redis-dead: line $LINENO: \`$BASH_COMMAND\` exited $?" >&2' ERR

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BENCH_BUILD:-release}
secs=${BENCH_SECS:-10}
port_base=${BENCH_PORT_BASE:-25600}
state=$(mktemp -d /tmp/storefront-bench-redis.XXXXXX)
bin="$root/target/$build/storefront"

command -v wrk >/dev/null || { echo "bench-redis-dead: wrk is missing: run scripts/setup.sh" >&2; exit 3; }
if [ ! -x "$bin" ] || [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    flag=(); [ "$build" = release ] && flag=(--release)
    (cd "$root" && cargo build "${flag[@]}" --workspace --quiet)
fi

sf() { "$bin" --state-dir "$state" --port-base "$port_base" "$@"; }
teardown() { sf down --purge >/dev/null 2>&1 || true; rm -rf "$state"; }
trap teardown EXIT

sf up >/dev/null
catalog=$(python3 -c 'import json,sys; f=json.load(open(sys.argv[1])); print(next(c["url"] for c in f["components"] if c["name"]=="catalog-1"))' "$state/fleet.json")
ids=$(curl -fsS "$catalog/products?limit=100" | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)["items"]))')
[ -n "$ids" ] || { echo "bench-redis-dead: no product ids from $catalog" >&2; exit 3; }

lua=$state/random.lua
cat > "$lua" <<EOF
local ids = { $(echo "$ids" | sed 's/ /, /g') }
math.randomseed(7)
request = function()
  return wrk.format("GET", "/products/" .. ids[math.random(#ids)])
end
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.0f %d %.2f %.2f %.2f %.2f\n",
    summary.requests / (summary.duration / 1e6), bad,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
EOF

phase() {
    local name=$1
    local line
    line=$(wrk -t2 -c16 -d"${secs}s" -s "$lua" "$catalog" | grep '^RESULT')
    read -r _ rps bad p50 p99 p999 max <<<"$line"
    printf '%-14s %9s req/s  non-2xx %-6s p50 %7s ms  p99 %7s ms  p99.9 %7s ms  max %7s ms\n' \
        "$name" "$rps" "$bad" "$p50" "$p99" "$p999" "$max"
    eval "p99_${name//-/_}=$p99"
}

echo "catalog-1 $catalog, ${secs}s each, wrk -t2 -c16, $(echo "$ids" | wc -w) product ids, $build build, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# A warm-up (not counted): the first pass fills the caches and the pools.
wrk -t2 -c16 -d"$(( secs / 2 + 1 ))s" -s "$lua" "$catalog" >/dev/null
phase alive
sf stop redis >/dev/null
phase redis-dead
sf start redis >/dev/null
phase alive-again
python3 - "$p99_alive" "$p99_redis_dead" "$p99_alive_again" <<'EOF'
import sys
a, d, b = map(float, sys.argv[1:])
base = (a + b) / 2
print(f"p99 with Redis dead / alive (mean of the two alive phases): {d:.2f} / {base:.2f} ms = {d / base:.2f}x")
EOF
