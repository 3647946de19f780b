#!/usr/bin/env bash
# Times the fleet's lifecycle on the release build, RUNS times (default 5):
# cold `up` (fresh state dir: includes initdb), `down`, warm `up` (data kept),
# `down --purge`; and, from the same runs, RabbitMQ's own boot (spawn → AMQP
# greeting), which bounds how fast `up` can be. Prints per-run figures and
# medians, in seconds, plus the cold-up / RabbitMQ-boot ratio.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${RUNS:-5}
base=${BENCH_PORT_BASE:-25100}
bin=target/release/storefront
[ -x "$bin" ] || cargo build --release --workspace
out=$(mktemp)
for i in $(seq 1 "$runs"); do
  state=$(mktemp -d -t storefront-bench-XXXXXX)
  sf() { "$bin" --state-dir "$state" --port-base "$base" "$@"; }
  t0=$(date +%s.%N); sf up --json >"$state.cold.json"; t1=$(date +%s.%N)
  sf down --json >"$state.down.json"; t2=$(date +%s.%N)
  sf up --json >"$state.warm.json"; t3=$(date +%s.%N)
  sf down --purge --json >/dev/null
  python3 - "$state" "$t0" "$t1" "$t2" "$t3" >>"$out" <<'PY'
import json, sys
state, t0, t1, t2, t3 = sys.argv[1], *map(float, sys.argv[2:])
def comps(name):
    return {c["name"]: c["boot_ms"] / 1000 for c in json.load(open(f"{state}.{name}.json"))["components"]}
cold, warm = comps("cold"), comps("warm")
print(json.dumps({"cold_up": t1 - t0, "down": t2 - t1, "warm_up": t3 - t2,
                  "rabbit_cold": cold["rabbitmq"], "rabbit_warm": warm["rabbitmq"],
                  "cold": cold, "warm": warm}))
PY
  rm -rf "$state" "$state".*.json
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda k: statistics.median(r[k] for r in rows)
for i, r in enumerate(rows, 1):
    print(f"run {i}: cold up {r['cold_up']:.2f}s (rabbitmq {r['rabbit_cold']:.2f}s)  down {r['down']:.2f}s  warm up {r['warm_up']:.2f}s (rabbitmq {r['rabbit_warm']:.2f}s)")
print(f"\nmedians of {len(rows)} runs:")
for k in ["cold_up", "rabbit_cold", "down", "warm_up", "rabbit_warm"]:
    print(f"  {k:<12} {med(k):.2f}s")
print("  per component, cold boot (spawn → ready):")
for name in rows[0]["cold"]:
    print(f"    {name:<10} cold {statistics.median(r['cold'][name] for r in rows):.2f}s   warm {statistics.median(r['warm'][name] for r in rows):.2f}s")
ratios = [r["cold_up"] / r["rabbit_cold"] for r in rows]
print(f"  cold up / RabbitMQ boot: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}); target <= 1.30x")
PY
rm -f "$out"
