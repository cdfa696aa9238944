"""Validate infra/k8s manifests against the committed schemas (infra/k8s/schemas, see fetch_crd_schemas.py).

    python scripts/validate_k8s.py [FILE_OR_DIR ...]     # default: every manifest under infra/k8s; exit 1 on error

Why stricter than the bare CRD schema: the API server silently prunes fields a structural schema does not
declare, so a misspelt ``shutdownAfterJobFinished`` would be dropped, not refused, and the job would keep its
cluster forever. Objects that declare ``properties`` (and neither ``additionalProperties`` nor
``x-kubernetes-preserve-unknown-fields``) therefore refuse unknown keys here, as kubectl's strict field
validation does; the core kinds use kubernetes-validate's strict variant for the same reason. The CRDs'
CEL rules (x-kubernetes-validations) are not evaluated.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "infra" / "k8s"
SCHEMAS = K8S / "schemas"
DEFS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = f"{DEFS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Files under infra/k8s that are not Kubernetes objects.
NOT_MANIFESTS = {"stages.yaml", "kustomization.yaml"}


def strict(node: Any) -> Any:
    """Refuse undeclared keys wherever the schema declares its keys (see module docstring)."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def crd_schema(schema: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """A CRD's openAPIV3Schema as a standalone JSON Schema for one apiVersion/kind, metadata as ObjectMeta."""
    out = strict(copy.deepcopy(schema))
    props = out.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = {"$ref": OBJECT_META}
    out["required"] = sorted(set(out.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    return out


def load_validators(schema_dir: Path = SCHEMAS) -> dict[tuple[str, str], Draft202012Validator]:
    """(apiVersion, kind) -> validator, for every schema committed under schema_dir."""
    defs = json.loads((schema_dir / "core" / "_definitions.json").read_text())
    resources = [(DEFS_ID, Resource.from_contents(defs))]
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((schema_dir / "core").glob("*.json")):
        if path.name.startswith("_"):
            continue
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
        for gvk in schema["x-kubernetes-group-version-kind"]:
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            schemas[(api_version, gvk["kind"])] = schema
    for source in json.loads((schema_dir / "SOURCES.json").read_text()):
        if "kind" not in source:
            continue
        raw = json.loads((schema_dir / source["file"]).read_text())
        schemas[(source["apiVersion"], source["kind"])] = crd_schema(raw, source["apiVersion"], source["kind"])
    registry = Registry().with_resources(resources)
    return {key: Draft202012Validator(schema, registry=registry) for key, schema in schemas.items()}


def manifest_files(root: Path = K8S) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml") if "schemas" not in p.relative_to(root).parts
                  and p.name not in NOT_MANIFESTS)


def documents(path: Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is not None:
            yield doc


def validate_document(doc: Any, validators: dict[tuple[str, str], Draft202012Validator]) -> list[str]:
    """Every schema violation of one object, as 'path: message' lines; an unknown kind is an error too."""
    if not isinstance(doc, dict):
        return [f"not a mapping: {type(doc).__name__}"]
    key = (doc.get("apiVersion"), doc.get("kind"))
    validator = validators.get(key)  # type: ignore[arg-type]
    if validator is None:
        return [f"no schema for apiVersion={key[0]!r} kind={key[1]!r}"]
    return [f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def validate_paths(paths: list[Path]) -> list[str]:
    validators = load_validators()
    problems = []
    for path in paths:
        for doc in documents(path):
            name = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} {doc.get('kind')}/" \
                   f"{(doc.get('metadata') or {}).get('name')}"
            problems += [f"{name}: {msg}" for msg in validate_document(doc, validators)]
    return problems


def main(argv: list[str]) -> int:
    paths: list[Path] = []
    for arg in argv or [str(K8S)]:
        p = Path(arg)
        paths += manifest_files(p) if p.is_dir() else [p]
    problems = validate_paths(paths)
    for line in problems:
        print(line)
    print(f"{len(paths)} files, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
