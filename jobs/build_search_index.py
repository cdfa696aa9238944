"""Build the tantivy literature index of the lake's publications (study search is scored against it).

    python jobs/build_search_index.py --lake ./lakehouse

Writes <index_root>/publications-v<version>/ (index_root from conf/tasks.yaml, default <lake>/search) with a
manifest naming the publications table version and a content hash; an up-to-date index is left as is.
"""

from __future__ import annotations

import json

from trialpanorama import lake
from trialpanorama.config import load_sibling_yaml
from trialpanorama.jobrun import JobContext, main_guard, run_job
from trialpanorama.search.build import ensure_index

COLS = ["pmid", "title", "abstract", "mesh_headings", "publication_types", "keywords", "year"]


def body(ctx: JobContext) -> dict:
    cfg = load_sibling_yaml(ctx.cfg, "tasks.yaml")
    uri = lake.table_uri(ctx.lake, "publications")
    version = lake.table_version(ctx.spark, uri)
    if version is None:
        raise FileNotFoundError(f"no publications table under {ctx.lake}: run jobs/ingest_pubmed.py first")
    ctx.run.table_version("publications", version, role="input")
    pubs = lake.read_table(ctx.spark, uri, version).select(*COLS)
    rows = (r.asDict(recursive=True) for r in pubs.toLocalIterator())
    path = ensure_index(ctx.lake, cfg, version, rows)
    manifest = json.loads((path / "manifest.json").read_text())
    ctx.run.metrics({"documents": manifest["documents"]})
    return {"index": str(path), "publications_version": version, "documents": manifest["documents"],
            "content_hash": manifest["content_hash"]}


def main(argv: list[str] | None = None) -> dict:
    return run_job("build_search_index", __doc__.splitlines()[0], body, argv=argv)


if __name__ == "__main__":
    main_guard(main)
