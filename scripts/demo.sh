#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, boot the
# fleet, show it, exercise it, run the experiments, and tear it all down
# (also on failure or Ctrl-C). Exit code: the experiments' verdict.
#
# CI runs this same script to its end (scripts/test.sh), so a step that dies
# here fails CI. Knobs, all optional:
#   DEMO_BUILD=debug|release   which build to run (default release)
#   DEMO_JUNIT=FILE            also write verify's JUnit report there
#   DEMO_CARGO_FLAGS="..."     more flags for its cargo build (CI passes
#                              --all-targets: the build its tests already made)
#   STOREFRONT_STATE_DIR, STOREFRONT_PORT_BASE   where the fleet lives
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# A step that fails says which one, instead of ending the script silently.
trap 'rc=$?; echo "demo.sh: line $LINENO: \`$BASH_COMMAND\` exited $rc" >&2' ERR
say() { printf '\n==> %s\n' "$*"; }

build=${DEMO_BUILD:-release}
case "$build" in
  release) build_flags=(--release) ;;
  debug) build_flags=() ;;
  *) echo "demo.sh: DEMO_BUILD must be debug or release, not '$build'" >&2; exit 64 ;;
esac
read -r -a extra_flags <<<"${DEMO_CARGO_FLAGS:-}"
build_flags+=("${extra_flags[@]}")

say "setup (installs only what is missing)"
scripts/setup.sh
say "cargo build ${build_flags[*]:-} --workspace"
cargo build "${build_flags[@]}" --workspace --locked
sf=target/$build/storefront

# As root, PostgreSQL runs as the `postgres` account, which must pass through
# every directory above the state dir. A clone inside a private directory
# (mktemp -d is mode 0700) would stop `up` there, so the demo's fleet then
# lives in a fresh directory under /tmp instead, removed at the end.
tmp_state=
if [ -z "${STOREFRONT_STATE_DIR:-}" ] && [ "$(id -u)" -eq 0 ] &&
   id -u postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$root"; then
  tmp_state=$(mktemp -d /tmp/storefront-demo-XXXXXX)
  export STOREFRONT_STATE_DIR=$tmp_state
  echo "demo.sh: the postgres account cannot reach $root, so the fleet's state lives in $tmp_state (removed at the end)"
fi
cleanup() {
  if [ -n "$tmp_state" ]; then
    $sf down --purge >/dev/null 2>&1 || true
    rm -rf "$tmp_state"
  else
    $sf down >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

say "doctor"
$sf doctor
say "up"
$sf up
$sf status
catalog=$($sf status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"]["catalog"][0])')
say "GET $catalog/products?limit=3"
# Read the whole answer, then print it: a pipe into `head` would close early,
# kill the writer with SIGPIPE, and (pipefail + set -e) end the demo here.
products=$(curl -fsS "$catalog/products?limit=3")
python3 -c '
import json, sys
page = json.loads(sys.argv[1])
items = page.get("items", page) if isinstance(page, dict) else page
for p in items[:3]:
    print("  #%s  %s  %s cents  stock %s" % (p.get("id"), p.get("name"), p.get("price_cents"), p.get("stock")))
' "$products"

# Every experiment (each control arm must be caught) and the smoke load,
# on the running fleet; then the headline ones at full size. Each runs even
# if an earlier one failed; the exit code is the first failure's.
rc=0
run() {
  say "storefront $*"
  local code=0
  $sf "$@" || code=$?
  if [ "$code" -ne 0 ]; then
    echo "demo.sh: \`storefront $*\` exited $code" >&2
    [ "$rc" -ne 0 ] || rc=$code
  fi
}
verify_args=()
[ -n "${DEMO_JUNIT:-}" ] && verify_args=(--junit "$DEMO_JUNIT")
run verify "${verify_args[@]}"
run race --n 50 --rounds 5
run replay --n 50 --keys 20
run saga --orders 200 --fail-at mixed

say "down"
if [ -n "$tmp_state" ]; then
  $sf down --purge
  rm -rf "$tmp_state"
else
  $sf down
fi
trap - EXIT
if [ "$rc" -eq 0 ]; then
  echo "demo: PASS (every experiment's invariants held; fleet stopped)"
else
  echo "demo: FAIL (exit $rc; see the failing step above)" >&2
fi
exit $rc
