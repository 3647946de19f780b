#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, boot the
# fleet, show it, exercise it, run the experiments, and tear it all down
# (also on failure or Ctrl-C). Exit code: the experiments' verdict.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/setup.sh
cargo build --release --workspace
sf=target/release/storefront
trap '$sf down >/dev/null 2>&1 || true' EXIT

$sf doctor
$sf up
$sf status
catalog=$($sf status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"]["catalog"][0])')
echo "GET $catalog/products?limit=3"
curl -fsS "$catalog/products?limit=3" | python3 -m json.tool | head -30

# Every experiment (each control arm must be caught) and the smoke load,
# on the running fleet; then the headline ones at full size.
rc=0
$sf verify || rc=$?
$sf race --n 50 --rounds 5 || rc=$?
$sf replay --n 50 --keys 20 || rc=$?
$sf saga --orders 200 --fail-at mixed || rc=$?
$sf down
trap - EXIT
exit $rc
