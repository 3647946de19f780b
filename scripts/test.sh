#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, the unit tests, and the
# integration tests against real Postgres, Redis, RabbitMQ and OpenBao.
# The CLI's tests boot their own fleets; the services' own tests get an
# infrastructure-only fleet booted here and torn down on exit, pass or fail.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Each step says how long the one before it took: CI has a time budget.
step_name='' step_start=$SECONDS
step_took() { [ -z "$step_name" ] || printf '==> %s: %ds\n' "$step_name" $((SECONDS - step_start)); }
step() { step_took; step_name=$*; step_start=$SECONDS; printf '\n==> %s\n' "$*"; }

# CI builds from nothing, once: incremental compilation only writes caches
# no later build reads. Off, the build below took 442 s against 615 s (from
# nothing, on one 2-core machine). A developer's rerun keeps it on.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

step "setup (installs only what is missing)"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "deploy manifests and compose files, validated offline"
scripts/validate-deploy.sh

# One build for everything after it: with --all-targets the dependencies are
# compiled once, with the features the tests' dev-dependencies add (tokio's
# test-util, the kit's testing harness), and `cargo test` and the demo's own
# `cargo build --all-targets` find them built. A plain `cargo build` here had
# `cargo test` compile tokio and the 50-odd crates above it a second time
# (827 s for the two builds against 617 s, from nothing, on one 2-core machine).
step "cargo build --workspace --all-targets (the CLI's tests run the service binaries)"
cargo build --workspace --all-targets --locked

step "schemathesis against every service's OpenAPI document (bounded; its own fleet)"
SCHEMATHESIS_MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-10} SCHEMATHESIS_MAX_TIME=${SCHEMATHESIS_MAX_TIME:-20} \
  scripts/schemathesis.sh

step "infrastructure for the services' own tests"
state=$(mktemp -d -t storefront-test-infra-XXXXXX)
sf() { target/debug/storefront --fleet test-infra --state-dir "$state" --port-base "${STOREFRONT_TEST_PORT_BASE:-26100}" "$@"; }
cleanup() { sf down --purge >/dev/null 2>&1 || true; rm -rf "$state"; }
trap cleanup EXIT
sf up
fleet_json="$state/fleet.json"
TEST_DATABASE_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoints"]["postgres_admin_url"])' "$fleet_json")
TEST_REDIS_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoints"]["redis_url"])' "$fleet_json")
TEST_AMQP_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoints"]["amqp_url"])' "$fleet_json")
export TEST_DATABASE_URL TEST_REDIS_URL TEST_AMQP_URL

step "cargo test --workspace"
cargo test --workspace --locked --no-fail-fast

step "the README's first command, as a newcomer runs it (scripts/demo.sh, debug build)"
cleanup # the services' test infrastructure is done with
# demo.sh runs storefront verify (every experiment, control arms must fail,
# and the smoke load) and the headline experiments, to its very end: CI
# fails if any step of it dies. A throwaway state dir and a port range of its
# own; demo.sh stops its fleet whatever happens, and so does this trap.
demo_state=$(mktemp -d -t storefront-demo-XXXXXX)
trap 'STOREFRONT_STATE_DIR="$demo_state" target/debug/storefront down --purge >/dev/null 2>&1 || true; rm -rf "$demo_state"' EXIT
STOREFRONT_STATE_DIR="$demo_state" STOREFRONT_PORT_BASE="${STOREFRONT_VERIFY_PORT_BASE:-26200}" \
  DEMO_BUILD=debug DEMO_CARGO_FLAGS=--all-targets DEMO_JUNIT="$root/target/verify-junit.xml" scripts/demo.sh
step_took
printf '==> every step passed in %dm%02ds\n' $((SECONDS / 60)) $((SECONDS % 60))
