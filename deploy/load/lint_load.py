#!/usr/bin/env python3
"""Checks the distributed load (deploy/load) as rendered with the fleet
(deploy/load/with-fleet): what a schema cannot see.

- the workers are an Indexed Job whose completions and parallelism equal the
  ConfigMap's WORKERS (else shares of TOTAL_RATE would not add up, or the
  merge would wait for workers that never run);
- each worker derives its seed and its rate share from JOB_COMPLETION_INDEX,
  writes its log with --hdr-out under /hdr, and is a lab client (the
  NetworkPolicies admit it);
- the merge Job mounts the same claim, which is ReadWriteMany.

Usage: lint_load.py RENDERED.yaml      Exit 1 and one line per problem if any.
"""
import sys

import yaml


def script(job):
    c = job["spec"]["template"]["spec"]["containers"][0]
    return " ".join(c.get("command", []) + c.get("args", []))


def claims(job):
    vols = job["spec"]["template"]["spec"].get("volumes", [])
    return {v["persistentVolumeClaim"]["claimName"] for v in vols if "persistentVolumeClaim" in v}


def check(docs):
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    errs = []
    cm = by.get(("ConfigMap", "storefront-load"))
    workers = by.get(("Job", "storefront-load"))
    merge = by.get(("Job", "storefront-load-merge"))
    if not (cm and workers and merge):
        return ["deploy/load: needs ConfigMap storefront-load, Job storefront-load and Job storefront-load-merge"]
    data = cm.get("data", {})
    n = int(data.get("WORKERS", "0"))
    spec = workers["spec"]
    if spec.get("completionMode") != "Indexed":
        errs.append("Job/storefront-load: completionMode must be Indexed (each worker's index picks its seed and share)")
    for field in ("completions", "parallelism"):
        if spec.get(field) != n:
            errs.append(f"Job/storefront-load: {field} is {spec.get(field)}, ConfigMap storefront-load says WORKERS={n}")
    if n < 1 or int(data.get("TOTAL_RATE", "0")) < n:
        errs.append(f"ConfigMap/storefront-load: TOTAL_RATE must be at least WORKERS ({n}): a worker's share would be 0")
    s = script(workers)
    for need in ("JOB_COMPLETION_INDEX", "SEED_BASE + i", "TOTAL_RATE / WORKERS", "--rate", "--seed", "--hdr-out", "/hdr/"):
        if need not in s:
            errs.append(f"Job/storefront-load: the worker's command lacks `{need}`")
    labels = spec["template"]["metadata"]["labels"]
    if labels.get("storefront.dev/lab-client") != "true":
        errs.append("Job/storefront-load: pods need the label storefront.dev/lab-client: \"true\" (NetworkPolicies)")
    if "report merge" not in script(merge):
        errs.append("Job/storefront-load-merge: does not run `storefront report merge`")
    shared = claims(workers) & claims(merge)
    if not shared:
        errs.append("the worker and merge Jobs mount no PersistentVolumeClaim in common")
    for name in shared:
        pvc = by.get(("PersistentVolumeClaim", name))
        if not pvc:
            errs.append(f"PersistentVolumeClaim/{name}: mounted but not defined")
        elif "ReadWriteMany" not in pvc["spec"].get("accessModes", []):
            errs.append(f"PersistentVolumeClaim/{name}: workers on several nodes write it: needs ReadWriteMany")
    return errs


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        problems = check([d for d in yaml.safe_load_all(f) if d])
    for line in problems:
        print(f"lint_load: {line}", file=sys.stderr)
    sys.exit(1 if problems else 0)
