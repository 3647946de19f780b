#!/usr/bin/env python3
"""Checks the rendered manifests for what a schema cannot see: references
that resolve, probes and resources on every service, and NetworkPolicies
that admit exactly the connections the environment variables ask for.

Usage: lint.py RENDERED.yaml DOCKERFILE        Kubernetes manifests
       lint.py --compose CONFIG.json DOCKERFILE  `docker compose config --format json`
Exit 1 and one line per problem if any.
"""
import re
import sys

import yaml

SERVICES = {"catalog", "claims", "identity", "payments", "checkout", "bff"}
# What each service reads (services/*/src/config.rs, cli/src/fleet/services.rs).
NEEDS = {
    "catalog": {"DATABASE_URL", "REDIS_URL"},
    "claims": {"DATABASE_URL"},
    "identity": {"DATABASE_URL", "REDIS_URL", "VAULT_ADDR", "VAULT_TOKEN", "VAULT_DB_ROLE"},
    "payments": {"DATABASE_URL", "AMQP_URL", "STRIPE_WEBHOOK_SECRET", "PAYPAL_WEBHOOK_SECRET"},
    "checkout": {"DATABASE_URL", "AMQP_URL", "CATALOG_URLS"},
    "bff": {"REDIS_URL", "CATALOG_URLS", "CLAIMS_URLS", "IDENTITY_URLS", "CHECKOUT_URLS", "BFF_ADMIN_TOKEN"},
}
COMMON = {"SERVICE_NAME", "BIND_ADDR", "LAB_ENDPOINTS", "LAB_ADMIN_TOKEN"}
# host:port inside a URL (or a bare host:port value such as STOREFRONT_VAULT_PG_ADDR).
ENDPOINT = re.compile(r"(?:^|//)(?:[^@/\s]*@)?([a-z][a-z0-9-]*):(\d+)")
VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def image_binaries(dockerfile):
    """The binaries the Dockerfile installs (its `target/release/<bin>` lines)."""
    with open(dockerfile) as f:
        return set(re.findall(r"target/release/([a-z0-9_-]+)", f.read()))


def commands(containers, binaries, what):
    """Each container of our image must run a binary the image has."""
    errs = []
    for name, image, command in containers:
        if image.split(":")[0] != "storefront" or not command:
            continue
        if command[0] not in binaries | {"sh"}:
            errs.append(f"{what} {name}: runs `{command[0]}`, which the Dockerfile does not install ({sorted(binaries)})")
    return errs


def state_dir_below(what, command, env, mounts):
    """The CLI chmods its state directory to 700, which only its owner may:
    in a container it must be a directory the CLI creates itself, strictly
    below a writable mount (which belongs to root), never the mount itself."""
    if not command or command[0] != "storefront":
        return []
    d = (env.get("STOREFRONT_STATE_DIR") or "").rstrip("/")
    if not any(d.startswith(m.rstrip("/") + "/") for m in mounts):
        return [f"{what}: runs storefront with STOREFRONT_STATE_DIR={d or '(unset)'}, "
                f"which must lie strictly below one of its writable mounts {sorted(mounts)}"]
    return []


def check_compose(config, binaries):
    services = config["services"]
    errs = commands(((n, s.get("image", ""), s.get("command")) for n, s in services.items()), binaries, "compose service")
    for n, svc in services.items():
        mounts = [t.split(":")[0] for t in svc.get("tmpfs", [])] + [v["target"] for v in svc.get("volumes", [])]
        errs += state_dir_below(f"compose service {n}", svc.get("command"), svc.get("environment") or {}, mounts)
    bff = services.get("bff", {}).get("environment", {})
    for var in NEEDS["bff"]:
        if var not in bff:
            errs.append(f"compose service bff: missing {var}")
    for svc in SERVICES:
        if not any(n == svc or n.startswith(svc + "-") for n in services):
            errs.append(f"compose: no {svc} service in the full profile")
    return errs


def workloads(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield d, d["spec"]["template"]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def check(docs):
    errs = []
    by = lambda kind: {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
    secrets, configmaps, services = by("Secret"), by("ConfigMap"), by("Service")
    policies = list(by("NetworkPolicy").values())

    def secret_keys(name):
        s = secrets.get(name, {})
        return set(s.get("stringData", {})) | set(s.get("data", {}))

    for w, tpl in workloads(docs):
        wname = f'{w["kind"]}/{w["metadata"]["name"]}'
        for c in tpl["spec"]["containers"]:
            defined = set()
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef", {}).get("name")
                if ref and ref not in configmaps:
                    errs.append(f"{wname}: envFrom names ConfigMap {ref}, which does not exist")
                elif ref:
                    defined |= set(configmaps[ref].get("data", {}))
            for e in c.get("env", []):
                for v in VAR.findall(e.get("value", "")):
                    if v not in defined:
                        errs.append(f"{wname}: {e['name']} uses $({v}) before it is defined")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secret_keys(ref["name"]):
                    errs.append(f"{wname}: {e['name']} names key {ref['key']} missing from Secret {ref['name']}")
                defined.add(e["name"])
            name = w["metadata"]["name"]
            if w["kind"] == "Deployment" and name in SERVICES:
                missing = (NEEDS[name] | COMMON) - defined
                if missing:
                    errs.append(f"{wname}: missing env {sorted(missing)}")
                probes = {p: (c.get(p) or {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")}
                if probes != {"livenessProbe": "/health", "readinessProbe": "/ready"}:
                    errs.append(f"{wname}: probes must be liveness /health and readiness /ready, got {probes}")
            errs += state_dir_below(wname, c.get("command"), {e["name"]: e.get("value") for e in c.get("env", [])},
                                    [m["mountPath"] for m in c.get("volumeMounts", [])])
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                errs.append(f"{wname}: container {c['name']} needs resource requests and limits")
            errs += reachability(wname, tpl["metadata"]["labels"], c, services, policies, docs)
    catalog = next((d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "catalog"), None)
    if not catalog or catalog["spec"].get("replicas", 1) < 2:
        errs.append("Deployment/catalog: needs 2 or more replicas")
    errs += policy_shape(docs, policies)
    return errs


def reachability(wname, labels, container, services, policies, docs):
    """Every host:port this container is told to use must be a Service whose
    pods a NetworkPolicy opens to this workload's pods on that port."""
    errs = []
    for e in container.get("env", []):
        for host, port in ENDPOINT.findall(e.get("value", "")):
            if host in ("localhost",):
                continue
            svc = services.get(host)
            if svc is None:
                errs.append(f"{wname}: {e['name']} points at {host}:{port}, which is no Service")
                continue
            if int(port) not in {p["port"] for p in svc["spec"]["ports"]}:
                errs.append(f"{wname}: {e['name']} uses port {port}, Service {host} has no such port")
                continue
            if not admitted(svc["spec"]["selector"], labels, int(port), policies):
                errs.append(f"{wname}: {e['name']} needs {host}:{port} but no NetworkPolicy admits it")
    return errs


def admitted(target_labels, caller_labels, port, policies):
    for p in policies:
        if not matches(p["spec"]["podSelector"], target_labels):
            continue
        for rule in p["spec"].get("ingress", []):
            ports = {x["port"] for x in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            froms = rule.get("from")
            if not froms or any("podSelector" in f and "namespaceSelector" not in f
                                and matches(f["podSelector"], caller_labels) for f in froms):
                return True
    return False


def policy_shape(docs, policies):
    errs = []
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"]
            and not p["spec"].get("ingress")]
    if not deny:
        errs.append("NetworkPolicy: no default-deny ingress policy (podSelector {} and no ingress rules)")
    pods = {w["metadata"]["name"]: tpl["metadata"]["labels"] for w, tpl in workloads(docs)}
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            froms = rule.get("from")
            open_to_all = not froms or any("namespaceSelector" in f or "ipBlock" in f for f in froms)
            selected = [n for n, l in pods.items() if matches(p["spec"]["podSelector"], l)]
            if open_to_all and selected != ["bff"]:
                errs.append(f"NetworkPolicy/{p['metadata']['name']}: admits traffic from outside the namespace to {selected}; only the BFF may be")
            for f in froms or []:
                sel = f.get("podSelector")
                if sel and not any(matches(sel, l) for l in pods.values()) and "storefront.dev/lab-client" not in (sel.get("matchLabels") or {}):
                    errs.append(f"NetworkPolicy/{p['metadata']['name']}: from {sel} selects no pod")
    return errs


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compose":
        import json
        with open(sys.argv[2]) as f:
            problems = check_compose(json.load(f), image_binaries(sys.argv[3]))
    elif len(sys.argv) == 3:
        with open(sys.argv[1]) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        containers = ((f'{w["kind"]}/{w["metadata"]["name"]}', c["image"], c.get("command"))
                      for w, tpl in workloads(docs) for c in tpl["spec"]["containers"])
        problems = check(docs) + commands(containers, image_binaries(sys.argv[2]), "container")
    else:
        raise SystemExit(__doc__)
    for line in problems:
        print(f"lint: {line}", file=sys.stderr)
    sys.exit(1 if problems else 0)
