#!/usr/bin/env python3
"""Render a kustomization the way `kubectl kustomize` does, for the subset
deploy/ uses, where neither kubectl nor kustomize is installed.

Supported (anything else is refused, so a kustomization that grows past it
fails loudly instead of rendering wrong):
  resources   files, or directories holding a kustomization.yaml
  namespace   set on every namespaced object; renames the Namespace object
  images      name -> newName / newTag
  patches     JSON 6902 patch files (path + target kind/name)

Usage: kustomize.py DIR   (prints the rendered YAML stream on stdout)
"""
import os
import sys

import yaml

KNOWN = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def pointer(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def walk(doc, parts):
    for p in parts:
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    return doc


def apply_op(doc, op):
    parts = pointer(op["path"])
    parent, last = walk(doc, parts[:-1]), parts[-1]
    kind = op["op"]
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(idx, op["value"])
        elif kind == "replace":
            parent[idx] = op["value"]
        elif kind == "remove":
            del parent[idx]
        else:
            raise SystemExit(f"patch op {kind!r} is not supported")
    else:
        if kind in ("replace", "remove") and last not in parent:
            raise SystemExit(f"patch {op['op']} {op['path']}: no such field")
        if kind in ("add", "replace"):
            parent[last] = op["value"]
        elif kind == "remove":
            del parent[last]
        else:
            raise SystemExit(f"patch op {kind!r} is not supported")


def set_image(container, images):
    name, _, tag = container["image"].partition(":")
    for img in images:
        if img["name"] == name:
            container["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag or 'latest')}"


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec")


def render(directory):
    k = load_docs(os.path.join(directory, "kustomization.yaml"))[0]
    unknown = set(k) - KNOWN
    if unknown:
        raise SystemExit(f"{directory}/kustomization.yaml: {sorted(unknown)} not supported by this renderer")
    docs = []
    for r in k.get("resources", []):
        path = os.path.join(directory, r)
        docs.extend(render(path) if os.path.isdir(path) else load_docs(path))
    for p in k.get("patches", []):
        ops = load_docs(os.path.join(directory, p["path"]))[0]
        target = p["target"]
        hits = [d for d in docs if all(d[f] == target[f] if f == "kind" else d["metadata"][f] == target[f]
                                       for f in ("kind", "name") if f in target)]
        if not hits:
            raise SystemExit(f"patch {p['path']}: no resource matches {target}")
        for d in hits:
            for op in ops:
                apply_op(d, op)
    for d in docs:
        spec = pod_spec(d)
        for c in (spec or {}).get("initContainers", []) + (spec or {}).get("containers", []):
            set_image(c, k.get("images", []))
        if "namespace" in k:
            if d["kind"] == "Namespace":
                d["metadata"]["name"] = k["namespace"]
            elif d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    return docs


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    yaml.safe_dump_all(render(sys.argv[1]), sys.stdout, sort_keys=True)
