"""Build (or find) the literature index of one publications table version.

The index lives at ``<index_root>/publications-v<version>`` (``index_root`` from conf/tasks.yaml, default
``<lake>/search``); an existing index whose manifest names the same version and content hash is reused,
so tasks built on the same lake version are scored against the same index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trialpanorama.search.index import build_index, doc_fields, index_path


def index_root(lake_root: str, cfg: dict[str, Any]) -> Path:
    root = (cfg.get("search") or {}).get("index_root")
    if root:
        return Path(root)
    if "://" in lake_root and not lake_root.startswith("file:"):
        raise ValueError("tantivy needs a local directory: set search.index_root in conf/tasks.yaml")
    return Path(lake_root.removeprefix("file:")).expanduser().resolve() / "search"


def docs_hash(rows: Iterable[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for f in sorted((doc_fields(r) for r in rows), key=lambda d: d["pmid"]):
        h.update(json.dumps(f, sort_keys=True).encode())
    return h.hexdigest()


def ensure_index(lake_root: str, cfg: dict[str, Any], version: int | None,
                 rows: Iterable[dict[str, Any]]) -> Path:
    """Path of the index for this publications version, building it when missing or stale."""
    rows = list(rows)
    path = index_path(index_root(lake_root, cfg), -1 if version is None else version)
    digest = docs_hash(rows)
    manifest = path / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if m.get("content_hash") == digest and m.get("publications_version") == version:
            return path
    build_index(path, rows, {"publications_version": version, "content_hash": digest, "lake": lake_root})
    return path
