#!/usr/bin/env bash
# Several load machines, on one: N `storefront load` processes at once against
# the running fleet, each as a worker of deploy/load/job/load-job.yaml runs
# (its share of TOTAL_RATE, seed SEED_BASE + i, --hdr-out into one shared
# directory, its own --json report), then `storefront report merge`, and a
# check that the merged exact totals equal the sum of the workers' own counts.
#
#   scripts/load-merge-local.sh [N] [TOTAL_RATE] [DURATION] [PROFILE] [VIA]
#   defaults:                    3   300          10s        browse    auto
#
# The fleet is found as every command finds it: STOREFRONT_STATE_DIR and
# STOREFRONT_PORT_BASE (or the defaults). Logs and reports stay in
# $OUT (default: a new directory under /tmp), printed at the end.
set -euo pipefail

n="${1:-3}" total="${2:-300}" duration="${3:-10s}" profile="${4:-browse}" via="${5:-auto}"
seed_base="${SEED_BASE:-1000}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sf="${STOREFRONT:-$root/target/debug/storefront}"
out="${OUT:-$(mktemp -d /tmp/storefront-load-merge.XXXXXX)}"
[ "$n" -ge 1 ] && [ "$total" -ge "$n" ] || { echo "need 1 <= N <= TOTAL_RATE" >&2; exit 64; }

pids=()
for ((i = 0; i < n; i++)); do
  share=$(( total / n + (i < total % n ? 1 : 0) ))
  mkdir -p "$out/worker-$i"
  echo "worker $i: $share/s of $total/s, seed $((seed_base + i))"
  "$sf" load --profile "$profile" --via "$via" --rate "$share" --duration "$duration" \
    --seed "$((seed_base + i))" --hdr-out "$out/worker-$i" --json \
    >"$out/worker-$i/report.json" 2>"$out/worker-$i/stderr" &
  pids+=("$!")
done
for i in "${!pids[@]}"; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  # 0 pass, 1 a threshold or invariant failed: measured either way.
  [ "$rc" -le 1 ] || { echo "worker $i failed (exit $rc): $(tail -3 "$out/worker-$i/stderr")" >&2; exit 3; }
done

"$sf" report merge "$out"/worker-*/*.hlog
"$sf" report merge --json "$out"/worker-*/*.hlog >"$out/merged.json"

python3 - "$out" "$n" <<'PY'
import collections, glob, json, sys
out, n = sys.argv[1], int(sys.argv[2])
want = collections.Counter()
requests = errors = 0
for path in sorted(glob.glob(f"{out}/worker-*/report.json")):
    for t in json.load(open(path))["transactions"]:
        requests += t["requests"]; errors += t["errors"]
        want.update(t["outcomes"])
merged = json.load(open(f"{out}/merged.json"))
got = merged["totals"]
same = (got["requests"], got["errors"], dict(got["outcomes"])) == (requests, errors, dict(want))
print(f"sum of the {n} workers' own reports: {requests} requests, {errors} errors, {dict(sorted(want.items()))}")
print(f"merged logs:                         {got['requests']} requests, {got['errors']} errors, {got['outcomes']}")
print("EXACT: the merged totals equal the sum" if same else "MISMATCH")
sys.exit(0 if same else 1)
PY
echo "logs and reports in $out"
