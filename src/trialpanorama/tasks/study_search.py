"""study_search: from a review's background, objectives and selection criteria, write a PubMed query.

Reference: the review's included studies in the lake (``_review``). The query is run against the project's
literature index of the same lake (``trialpanorama.search``, tantivy BM25, PubMed syntax translated by
``search.pubmed_query``) and scored by Recall@100/@500 plus P/R/F1/nDCG@k and MAP (ks in conf/tasks.yaml).
Decided here: the review title is part of the input (a searcher knows it); the reference answer text is a
heuristic query (the review's topical MeSH headings OR'ed, AND'ed with trial publication types), since
real search strategies are not in the lake; its scores are logged as a baseline so nobody mistakes it for a
gold standard. An unparseable answer or a query with a syntax error retrieves nothing (recall 0, counted).
"""

from __future__ import annotations

import os
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from trialpanorama.tasks import _review
from trialpanorama.tasks.base import (
    SYSTEM_PROMPT,
    UNPARSEABLE,
    Record,
    answer_json,
    extract_json,
    get_key,
    load_json,
)
from trialpanorama.tasks.metrics import mean_dicts, ranking_scores

NAME = "study_search"
VERSION = "1.0"
KIND = "review"
TRIAL_FILTER = '("randomized controlled trial"[pt] OR "clinical trial"[pt])'


def collect(ctx: Any) -> list[Record]:
    min_inc = int(ctx.cfg[NAME]["min_included"])
    out = []
    for rv in _review.reviews(ctx):
        inp = _review.review_input(rv)
        if len(rv["included"]) < min_inc or not (set(inp) - {"title"}):
            continue
        out.append(Record(rv["pmid"], rv["trial_uids"], [rv["pmid"], *rv["included"]], {"review": rv}))
    return out


def reference_query(rv: dict[str, Any]) -> str:
    names = rv["mesh_names"]
    if not names:
        words = [w for w in rv["title"].split() if len(w) > 3][:4]
        topic = " AND ".join(f"{w.strip(':,.;')}[tiab]" for w in words) or rv["title"]
    else:
        topic = " OR ".join(f'"{n}"[mh]' for n in names)
    return f"({topic}) AND {TRIAL_FILTER}"


def assemble(rec: Record, pool: list[Record], ctx: Any, barred: Any) -> dict[str, Any] | None:
    rv = rec.data["review"]
    ref = {"included_pmids": rv["included"], "publications_version": ctx.data.versions.get("publications"),
           "query": reference_query(rv), "title": rv["title"]}
    return {"input": _review.review_input(rv), "reference": ref, "trial_uids": rec.trial_uids, "pmids": rec.pmids}


def build(spark: SparkSession, lake: str, cfg: dict[str, Any]) -> DataFrame:
    from trialpanorama.tasks.build import build_one

    return build_one(NAME, spark, lake, cfg)



def to_messages(sample: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    inp, ref = load_json(sample["input"]), load_json(sample["reference"])
    user = ("Write a PubMed Boolean search query that finds the studies this systematic review should include. "
            "Use AND/OR/NOT, parentheses, quoted phrases, * truncation and field tags ([tiab], [ti], [mh], [pt])."
            "\n\nReview:\n" + "\n".join(f"{k.replace('_', ' ').title()}: {v}" for k, v in inp.items())
            + '\n\nAnswer in JSON: {"query": "..."}')
    return ([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
            answer_json({"query": ref["query"]}))


def parse(text: str | None) -> str:
    """The query string from {"query": ...}, else a fenced/plain single-line query, else ``unparseable``."""
    obj = extract_json(text)
    if obj is not None:
        q = get_key(obj, "query", "search_query", "pubmed_query")
        return q.strip() if isinstance(q, str) and q.strip() else UNPARSEABLE
    lines = [ln.strip().strip("`") for ln in (text or "").strip().splitlines() if ln.strip().strip("`")]
    if len(lines) == 1 and any(tok in lines[0] for tok in (" AND ", " OR ", "[", '"')):
        return lines[0]
    return UNPARSEABLE


def open_index(index: Any = None) -> Any:
    from trialpanorama.search.index import LiteratureIndex

    if index is None:
        index = os.environ.get("TRIALPANORAMA_SEARCH_INDEX")
        if not index:
            raise ValueError("study_search.score needs the literature index: pass index= or set "
                             "TRIALPANORAMA_SEARCH_INDEX to <lake>/search/publications-v<N>")
    return LiteratureIndex(index) if isinstance(index, (str, os.PathLike)) else index


def score(predictions: list[str], references: list[Any], index: Any = None,
          ks: tuple[int, ...] = (10, 50, 100, 500)) -> dict[str, float]:
    """Mean ranking metrics over reviews; an unparseable answer or a bad query retrieves nothing."""
    ix = open_index(index)
    rows, bad = [], 0
    for pred, ref in zip(predictions, references, strict=True):
        ref = load_json(ref)
        ranked: list[str] = []
        if pred != UNPARSEABLE:
            res = ix.search(pred, limit=max(ks))
            bad += res.error is not None
            ranked = res.pmids
        rows.append(ranking_scores(ranked, set(ref["included_pmids"]), ks))
    out = mean_dicts(rows)
    out.update({"n": float(len(references)), "unparseable": float(sum(p == UNPARSEABLE for p in predictions)),
                "query_errors": float(bad)})
    return out
