#!/usr/bin/env bash
# Property-based API tests: schemathesis (PyPI) against every service's own
# OpenAPI document (GET /openapi.json), on a dev fleet this script boots and
# always tears down. Fails on any 5xx or any response that breaks its
# documented schema or status codes.
#
#   scripts/schemathesis.sh                 # all services
#   scripts/schemathesis.sh catalog claims  # some
#
# The BFF is run twice: anonymous (`bff`), and with a seeded customer's
# bearer token (`bff-as-customer`: alice, from identity's password grant),
# so checkout and claims get past authentication.
#
# Environment: SCHEMATHESIS_PORT_BASE (default 26400), SCHEMATHESIS_MAX_EXAMPLES
# (per operation, default 30), SCHEMATHESIS_MAX_TIME (seconds per service,
# default 60), STOREFRONT_TOOLS (default .storefront/tools).
# Expects target/debug/storefront and the service binaries built
# (`cargo build --workspace`), as scripts/test.sh does before calling it.
#
# One worker: with two, schemathesis 4.32 on CPython 3.11 once died in its own
# code ("SystemError: AST constructor recursion depth mismatch", parsing
# lambdas on two threads), which counts as a failure here.
#
# Lab routes need the admin token and are not in the documents, so they are
# never called. Webhook signatures can't be forged by a fuzzer: those
# operations are tested for "no 5xx, every answer as documented" (401/400).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

tools=${STOREFRONT_TOOLS:-$root/.storefront/tools}
venv=$tools/schemathesis-venv
port_base=${SCHEMATHESIS_PORT_BASE:-26400}
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-30}
max_time=${SCHEMATHESIS_MAX_TIME:-60}
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(catalog claims identity payments checkout bff bff-as-customer)

say() { printf '==> %s\n' "$*"; }

if [ -x "$venv/bin/schemathesis" ]; then
  say "schemathesis already installed: $("$venv/bin/schemathesis" --version)"
else
  say "installing schemathesis (PyPI) into $venv"
  mkdir -p "$tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check schemathesis
fi

state=$(mktemp -d -t storefront-schemathesis-XXXXXX)
sf() { target/debug/storefront --state-dir "$state" --port-base "$port_base" "$@"; }
cleanup() { sf down --purge >/dev/null 2>&1 || true; rm -rf "$state"; }
trap cleanup EXIT

say "booting a dev fleet (port base $port_base)"
sf up >"$state/up.log" 2>&1 || { cat "$state/up.log"; exit 1; }

# The first ready instance of each service, from fleet.json.
url_of() {
  python3 - "$state/fleet.json" "$1" <<'EOF'
import json, sys
fleet = json.load(open(sys.argv[1]))
name = sys.argv[2]
def walk(node):
    if isinstance(node, dict):
        if node.get("service") == name or node.get("name") in (name, f"{name}-0", f"{name}-1"):
            url = node.get("url") or node.get("base_url")
            if url:
                print(url.rstrip("/")); sys.exit(0)
        for child in node.values():
            walk(child)
    elif isinstance(node, list):
        for child in node:
            walk(child)
walk(fleet)
sys.exit(f"no URL for {name} in fleet.json")
EOF
}

failed=()
summary=()
# An access token for a seeded customer (password `<name>-password`).
customer_token() {
  curl -fsS -X POST "$(url_of identity)/token" -H 'content-type: application/json' \
    -d '{"grant_type":"password","username":"alice","password":"alice-password"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

for service in "${services[@]}"; do
  auth=()
  if [ "$service" = bff-as-customer ]; then
    token=$(customer_token)
    auth=(-H "Authorization: Bearer $token")
  fi
  base=$(url_of "${service%-as-customer}")
  doc=$base/openapi.json
  [ "${service%-as-customer}" = bff ] && doc=$base/api/openapi.json
  say "$service: $doc"
  log=$state/$service.log
  set +e
  # From the state dir, so its example database (.schemathesis/) goes with it.
  (cd "$state" && "$venv/bin/schemathesis" run "$doc" --url "$base" "${auth[@]}" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance \
    --max-examples "$max_examples" --max-time "$max_time" \
    --request-timeout 10 --workers 1 --no-color \
    --suppress-health-check too_slow,filter_too_much,data_too_large) \
    2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  # "Tested: N" under "API Operations:", and the line after "Test cases:".
  operations=$(grep -m1 -E '^[[:space:]]+Tested: ' "$log" | tr -s ' ' | sed 's/^ //')
  cases=$(grep -A1 -E '^Test cases:' "$log" | tail -1 | tr -s ' ' | sed 's/^ //')
  summary+=("$service (exit $rc): operations ${operations:-?}; test cases ${cases:-?}")
  [ "$rc" -eq 0 ] || failed+=("$service")
done

say "summary"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  say "schemathesis failed for: ${failed[*]}"
  exit 1
fi
say "schemathesis: every service passed"
