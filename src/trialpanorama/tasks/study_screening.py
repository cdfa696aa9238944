"""study_screening: decide include/exclude for each candidate study of a systematic review.

Candidates: the review's included studies in the lake (up to ``max_included``, chosen by hash) and hard
negatives: the top BM25 hits of the literature index for the review's title, objectives and selection
criteria that the review does not cite (so a negative is on topic but was not included). Candidates are
shown in a hash-shuffled order with PMID, title and abstract. A training sample's negatives never come from
a test sample's publications or trials; a test sample's negatives report no training trial. Metrics pool every (review, candidate) decision: accuracy,
precision, recall, F1, specificity of "include". A candidate missing from the answer, or a whole answer
that cannot be read, is ``unparseable`` and scored wrong (the public code silently excluded it).
"""

from __future__ import annotations

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
    stable_hash,
)
from trialpanorama.tasks.metrics import binary_scores

NAME = "study_screening"
VERSION = "1.0"
KIND = "review"
ABSTRACT_CHARS = 1200


def collect(ctx: Any) -> list[Record]:
    out = []
    for rv in _review.reviews(ctx):
        if not rv["included"] or not _review.review_input(rv, with_title=False):
            continue
        cap = int(ctx.cfg[NAME]["max_included"])
        inc = sorted(rv["included"], key=lambda p: stable_hash("screen", rv["pmid"], p))[:cap]
        out.append(Record(rv["pmid"], _review.trials_of(inc, ctx.data), [rv["pmid"], *inc],
                          {"review": rv, "included": sorted(inc)}))
    return out


def assemble(rec: Record, pool: list[Record], ctx: Any, barred: Any) -> dict[str, Any] | None:
    rv = rec.data["review"]
    data = ctx.data
    text = " ".join([rv["title"], *_review.review_input(rv, with_title=False).values()])
    skip = set(rv["cited"]) | {rv["pmid"]} | set(data.review_cites)
    k = int(ctx.cfg[NAME]["hard_negatives"])
    negatives: list[str] = []
    for p in ctx.index().search_text(text, limit=k * 4 + 20, exclude=skip):
        if barred is not None and not barred.admits_negative(_review.trials_of([p], data), p):
            continue
        negatives.append(p)
        if len(negatives) == k:
            break
    cands = sorted(rec.data["included"] + negatives, key=lambda p: stable_hash("order", rv["pmid"], p))
    decisions = {p: ("include" if p in rec.data["included"] else "exclude") for p in cands}
    inp = {"review": _review.review_input(rv),
           "candidates": [_review.study_card(p, data, ABSTRACT_CHARS) for p in cands]}
    return {"input": inp, "reference": {"decisions": decisions},
            "trial_uids": _review.trials_of(cands, data), "pmids": [rv["pmid"], *cands]}


def build(spark: SparkSession, lake: str, cfg: dict[str, Any]) -> DataFrame:
    from trialpanorama.tasks.build import build_one

    return build_one(NAME, spark, lake, cfg)



def to_messages(sample: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    inp, ref = load_json(sample["input"]), load_json(sample["reference"])
    review = "\n".join(f"{k.replace('_', ' ').title()}: {v}" for k, v in inp["review"].items())
    cands = "\n\n".join(f"PMID: {c['PMID']}\nTitle: {c['title']}\nAbstract: {c['abstract']}" for c in inp["candidates"])
    user = ("Screen the candidate studies for this systematic review: include a study only if it meets the "
            f"review's selection criteria.\n\nReview:\n{review}\n\nCandidates:\n{cands}\n\n"
            'Answer in JSON: {"results": [{"PMID": "...", "decision": "include" or "exclude", '
            '"confidence": 0.0-1.0}, ...]}')
    answer = answer_json({"results": [{"PMID": c["PMID"], "decision": ref["decisions"][c["PMID"]], "confidence": 1.0}
                                      for c in inp["candidates"]]})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}], answer


def _decision(v: Any) -> str | None:
    s = str(v or "").strip().lower()
    if s.startswith("incl") or s in ("yes", "true", "1"):
        return "include"
    if s.startswith("excl") or s in ("no", "false", "0"):
        return "exclude"
    return None


def parse(text: str | None) -> dict[str, str] | str:
    """PMID -> include|exclude from {"results": [...]}, or ``unparseable`` for an unreadable answer."""
    obj = extract_json(text)
    if obj is None:
        return UNPARSEABLE
    results = get_key(obj, "results", "decisions")
    out: dict[str, str] = {}
    if isinstance(results, list):
        for item in results:
            if isinstance(item, dict):
                pmid, dec = get_key(item, "PMID", "pmid", "id"), _decision(get_key(item, "decision"))
                if pmid is not None and dec:
                    out[str(pmid).strip()] = dec
    elif isinstance(results, dict):
        out = {str(k): d for k, v in results.items() if (d := _decision(v))}
    return out or UNPARSEABLE


def score(predictions: list[dict[str, str] | str], references: list[Any]) -> dict[str, float]:
    """Pooled over all candidates; a candidate without a readable decision is unparseable (wrong)."""
    preds, refs = [], []
    for pred, ref in zip(predictions, references, strict=True):
        for pmid, truth in load_json(ref)["decisions"].items():
            refs.append(truth)
            preds.append(pred.get(pmid, UNPARSEABLE) if isinstance(pred, dict) else UNPARSEABLE)
    out = binary_scores(preds, refs, "include", "exclude")
    out["n_reviews"] = float(len(references))
    return out
