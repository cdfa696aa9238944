"""Multiple-choice machinery for arm, criteria and endpoint design (and the evidence-summary options).

Distractors come from other candidates of the same task, matched on a list of group keys tried in order
(e.g. condition MeSH + phase, then condition, then phase, then anything), so a lake with few same-topic
trials degrades gracefully to fewer related options instead of failing. Within a group, candidates are
visited around a hash ring starting at hash(sample key): deterministic, O(k) per sample, and no candidate
is favoured across samples. A distractor never repeats the correct text (compared normalized), never
repeats another option, and, for training samples, never comes from a barred (test) trial or PMID.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from trialpanorama.tasks.base import Record, option_order, stable_hash


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def group_index(recs: list[Record]) -> list[dict[str, list[Record]]]:
    """Per group level: group key -> candidates in ring order (hash of their key)."""
    levels = max((len(r.extra["groups"]) for r in recs), default=0)
    out: list[dict[str, list[Record]]] = [defaultdict(list) for _ in range(levels)]
    for r in sorted(recs, key=lambda r: stable_hash("ring", r.key)):
        for lvl, g in enumerate(r.extra["groups"]):
            if g is not None:
                out[lvl][g].append(r)
    return out


def pick(rec: Record, index: list[dict[str, list[Record]]], k: int, barred: Any,
         max_visits: int = 2000) -> list[Record]:
    """Up to ``k`` distractor records for ``rec`` from its groups, most specific level first."""
    chosen: list[Record] = []
    seen = {_norm(rec.data["option"])}
    for lvl, g in enumerate(rec.extra["groups"]):
        if g is None:
            continue
        ring = index[lvl].get(g, [])
        if not ring:
            continue
        start = int(stable_hash("start", rec.key, lvl)[:8], 16) % len(ring)
        for i in range(min(len(ring), max_visits)):
            cand = ring[(start + i) % len(ring)]
            if cand.key == rec.key or cand in chosen:
                continue
            if barred is not None and barred.touches(cand.trial_uids, cand.pmids):
                continue
            norm = _norm(cand.data["option"])
            if norm in seen:
                continue
            chosen.append(cand)
            seen.add(norm)
            if len(chosen) == k:
                return chosen
    return chosen


def assemble(rec: Record, pool: list[Record], ctx: Any, barred: Any, task: str, n_options: int,
             question: str, context: dict[str, Any]) -> dict[str, Any] | None:
    """A multiple-choice sample: options = rec's own text + distractors, correct letter by hash."""
    key = f"mc_index:{task}"
    if key not in ctx.cache:
        ctx.cache[key] = group_index(pool)
    distractors = pick(rec, ctx.cache[key], n_options - 1, barred)
    if not distractors:
        return None
    options, letter = option_order(rec.key, rec.data["option"], [d.data["option"] for d in distractors])
    letters = "ABCDEFGHIJ"
    return {
        "input": {"question": question, **context,
                  "options": {letters[i]: o for i, o in enumerate(options)}},
        "reference": {"answer_choice": letter, "answer_text": rec.data["option"],
                      "distractor_keys": [d.key for d in distractors]},
        "trial_uids": sorted({u for r in [rec, *distractors] for u in r.trial_uids}),
        "pmids": sorted({p for r in [rec, *distractors] for p in r.pmids}),
    }
