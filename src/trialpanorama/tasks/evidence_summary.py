"""evidence_summary: choose a review's own AUTHORS' CONCLUSIONS among conclusions of related reviews.

Candidates: reviews with a conclusions section (label AUTHORS' CONCLUSIONS/CONCLUSIONS or NLM category
CONCLUSIONS) and at least ``min_included`` included studies in the lake. Input: the review's title,
background and objectives (never its results or conclusions) and its included studies' titles and abstracts
cut to a character budget (~4 characters per token). Distractors: conclusions of other reviews sharing the
most topical MeSH descriptors (check tags ignored), ties by hash, then any review; ``n_options`` in total
when the pool allows, at least 2. Correct letter = hash(review PMID) mod n.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from trialpanorama.tasks import _review, mc
from trialpanorama.tasks.base import (
    Record,
    answer_json,
    load_json,
    mc_messages,
    option_order,
    parse_choice,
    stable_hash,
)
from trialpanorama.tasks.metrics import choice_scores

NAME = "evidence_summary"
VERSION = "1.0"
KIND = "review"


def collect(ctx: Any) -> list[Record]:
    min_inc = int(ctx.cfg[NAME].get("min_included", 1))
    out = []
    for rv in _review.reviews(ctx):
        concl = rv["sections"]["conclusions"]
        if not concl or len(rv["included"]) < min_inc:
            continue
        out.append(Record(rv["pmid"], rv["trial_uids"], [rv["pmid"], *rv["included"]],
                          {"option": concl, "review": rv}, extra={"mesh": rv["mesh"]}))
    return out


def _distractors(rec: Record, pool: list[Record], ctx: Any, barred: Any, k: int) -> list[Record]:
    key = f"mesh_postings:{NAME}"
    if key not in ctx.cache:
        postings: dict[str, list[Record]] = defaultdict(list)
        for r in pool:
            for m in r.extra["mesh"]:
                postings[m].append(r)
        ctx.cache[key] = postings
    shared: Counter[str] = Counter()
    by_key = {}
    for m in rec.extra["mesh"]:
        for r in ctx.cache[key].get(m, ()):
            shared[r.key] += 1
            by_key[r.key] = r
    ranked = sorted(by_key.values(), key=lambda r: (-shared[r.key], stable_hash("ev", rec.key, r.key)))
    chosen: list[Record] = []
    seen = {mc._norm(rec.data["option"])}
    fallback = sorted(pool, key=lambda r: stable_hash("ev-any", rec.key, r.key))
    for r in [*ranked, *fallback]:
        if r.key == rec.key or r in chosen or mc._norm(r.data["option"]) in seen:
            continue
        if barred is not None and barred.touches(r.trial_uids, r.pmids):
            continue
        chosen.append(r)
        seen.add(mc._norm(r.data["option"]))
        if len(chosen) == k:
            break
    return chosen


def assemble(rec: Record, pool: list[Record], ctx: Any, barred: Any) -> dict[str, Any] | None:
    rv = rec.data["review"]
    cfg = ctx.cfg[NAME]
    distractors = _distractors(rec, pool, ctx, barred, int(cfg["n_options"]) - 1)
    if not distractors:
        return None
    options, letter = option_order(rec.key, rec.data["option"], [d.data["option"] for d in distractors])
    budget = int(cfg["included_budget_chars"])
    studies, used = [], 0
    for p in rv["included"]:
        card = _review.study_card(p, ctx.data, max(200, budget // max(1, len(rv["included"]))))
        used += len(card["title"]) + len(card["abstract"])
        if used > budget and studies:
            break
        studies.append(card)
    review = {k: v for k, v in {"title": rv["title"], "background": rv["sections"]["background"],
                                "objectives": rv["sections"]["objectives"]}.items() if v}
    inp = {"review": review, "included_studies": studies,
           "options": {"ABCDEFGHIJ"[i]: o for i, o in enumerate(options)}}
    ref = {"answer_choice": letter, "answer_text": rec.data["option"], "distractor_keys": [d.key for d in distractors]}
    return {"input": inp, "reference": ref,
            "trial_uids": sorted({u for r in [rec, *distractors] for u in r.trial_uids}),
            "pmids": sorted({p for r in [rec, *distractors] for p in r.pmids})}


def build(spark: SparkSession, lake: str, cfg: dict[str, Any]) -> DataFrame:
    from trialpanorama.tasks.build import build_one

    return build_one(NAME, spark, lake, cfg)



def to_messages(sample: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    inp, ref = load_json(sample["input"]), load_json(sample["reference"])
    review = "\n".join(f"{k.title()}: {v}" for k, v in inp["review"].items())
    studies = "\n\n".join(f"PMID {s['PMID']}: {s['title']}\n{s['abstract']}" for s in inp["included_studies"])
    question = (f"Review:\n{review}\n\nIncluded studies:\n{studies or '(none in the lake)'}\n\n"
                "Which of the following is this systematic review's conclusion?")
    messages = mc_messages(question, inp["options"], "Choose the conclusion the evidence supports.")
    answer = answer_json({"step_by_step_thinking": f"The included studies support option {ref['answer_choice']}.",
                          "answer_choice": ref["answer_choice"]})
    return messages, answer


def parse(text: str | None) -> str:
    return parse_choice(text)


def score(predictions: list[str], references: list[Any]) -> dict[str, float]:
    """Accuracy and macro-F1 over the reference letters."""
    return choice_scores(predictions, [load_json(r)["answer_choice"] for r in references])
