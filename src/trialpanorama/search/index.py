"""A tantivy (BM25) index over the lake's publications, tied to the publications table version.

Built once per publications version by ``jobs/build_search_index.py`` into
``<index_root>/publications-v<version>/`` with a ``manifest.json`` (table version, document count, content
hash). Documents are added in PMID order by one writer thread and committed once, so the same table
version gives the same index and the same doc order; search results are re-sorted by (score desc, PMID)
so equal scores never reorder between runs. A PubMed query is translated by ``pubmed_query`` into
tantivy ``Query`` objects (not a query string), so PubMed's semantics are ours to define, not the parser's.
Tantivy needs a local directory: on an object-store lake, point ``index_root`` at local disk.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tantivy

from trialpanorama.search.pubmed_query import Node, Term, parse_pubmed, tokenize_text

TEXT_FIELDS = ("title", "abstract", "mesh", "keywords", "pubtype")


def _schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_text_field("pmid", stored=True, tokenizer_name="raw")
    for name in TEXT_FIELDS:
        b.add_text_field(name, stored=name == "title", tokenizer_name="default")
    b.add_integer_field("year", stored=True, indexed=True)
    return b.build()


def doc_fields(row: dict[str, Any]) -> dict[str, Any]:
    """Index fields of one publications row (MeSH descriptor names, publication type names)."""
    return {
        "pmid": str(row["pmid"]),
        "title": row.get("title") or "",
        "abstract": row.get("abstract") or "",
        "mesh": " ; ".join(m["descriptor_name"] for m in row.get("mesh_headings") or [] if m["descriptor_name"]),
        "keywords": " ; ".join(row.get("keywords") or []),
        "pubtype": " ; ".join(p["name"] for p in row.get("publication_types") or [] if p["name"]),
        "year": int(row.get("year") or 0),
    }


def build_index(path: str | Path, rows: Iterable[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, Any]:
    """(Re)create the index at ``path`` from publication rows; returns the manifest written beside it."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    index = tantivy.Index(_schema(), path=str(path))
    writer = index.writer(heap_size=100_000_000, num_threads=1)
    n = 0
    for row in sorted(rows, key=lambda r: str(r["pmid"])):
        writer.add_document(tantivy.Document(**{k: [v] for k, v in doc_fields(row).items()}))
        n += 1
    writer.commit()
    writer.wait_merging_threads()
    manifest = {**manifest, "documents": n}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def index_path(index_root: str | Path, publications_version: int) -> Path:
    return Path(index_root) / f"publications-v{publications_version}"


@dataclass
class SearchResult:
    pmids: list[str]
    total_hits: int
    error: str | None = None


class LiteratureIndex:
    """Search the index with PubMed queries (``search``) or bag-of-words text (``search_text``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = json.loads((self.path / "manifest.json").read_text())
        self.index = tantivy.Index.open(str(self.path))
        self.index.reload()
        self.schema = self.index.schema
        self.searcher = self.index.searcher()

    # ------------------------------------------------------------------ query building
    def _word_query(self, field: str, words: tuple[str, ...], prefix: bool) -> tantivy.Query:
        if prefix:
            last = re.escape(words[-1]) + ".*"
            if len(words) == 1:
                return tantivy.Query.regex_query(self.schema, field, last)
            # phrase with a truncated last word: words AND'ed with the prefix (tantivy has no regex phrase
            # query over a mixed list here), an approximation documented in pubmed_query
            parts = [(tantivy.Occur.Must, tantivy.Query.term_query(self.schema, field, w)) for w in words[:-1]]
            parts.append((tantivy.Occur.Must, tantivy.Query.regex_query(self.schema, field, last)))
            return tantivy.Query.boolean_query(parts)
        if len(words) == 1:
            return tantivy.Query.term_query(self.schema, field, words[0])
        return tantivy.Query.phrase_query(self.schema, field, list(words))

    def to_query(self, node: Node) -> tantivy.Query:
        """The tantivy query of a PubMed AST: AND=Must+Must, OR=Should+Should, NOT=Must+MustNot."""
        if isinstance(node, Term):
            subs = [self._word_query(f, node.words, node.prefix) for f in node.fields]
            if len(subs) == 1:
                return subs[0]
            return tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in subs])
        left, right = self.to_query(node.left), self.to_query(node.right)
        if node.op == "AND":
            return tantivy.Query.boolean_query([(tantivy.Occur.Must, left), (tantivy.Occur.Must, right)])
        if node.op == "OR":
            return tantivy.Query.boolean_query([(tantivy.Occur.Should, left), (tantivy.Occur.Should, right)])
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, left), (tantivy.Occur.MustNot, right)])

    # ------------------------------------------------------------------ searching
    def _run(self, query: tantivy.Query, limit: int) -> SearchResult:
        total = self.searcher.search(query, limit=1, count=True).count
        fetch = max(limit, 1) * 2 + 50  # over-fetch, then break score ties by PMID deterministically
        hits = self.searcher.search(query, limit=fetch).hits
        scored = sorted(((-round(s, 6), self.searcher.doc(a)["pmid"][0]) for s, a in hits))
        return SearchResult([p for _, p in scored[:limit]], int(total))

    def search(self, pubmed_query: str, limit: int = 500) -> SearchResult:
        """PMIDs matching a PubMed Boolean query, best BM25 first; a syntax error gives no hits + error."""
        try:
            node = parse_pubmed(pubmed_query)
        except ValueError as exc:
            return SearchResult([], 0, str(exc))
        return self._run(self.to_query(node), limit)

    def all_pmids(self) -> list[str]:
        """Every PMID in the index, sorted (the random baseline samples from these)."""
        n = self.searcher.num_docs
        hits = self.searcher.search(tantivy.Query.all_query(), limit=max(n, 1)).hits
        return sorted(self.searcher.doc(a)["pmid"][0] for _, a in hits)

    def search_text(self, text: str, limit: int = 100, exclude: set[str] | None = None) -> list[str]:
        """PMIDs ranked by BM25 for a bag of words over title/abstract/MeSH (for hard negatives)."""
        words = sorted(set(tokenize_text(text)))[:256]
        if not words:
            return []
        clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, f, w))
                   for w in words for f in ("title", "abstract", "mesh")]
        res = self._run(tantivy.Query.boolean_query(clauses), limit + len(exclude or ()))
        return [p for p in res.pmids if p not in (exclude or set())][:limit]
