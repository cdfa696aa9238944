"""Non-LLM reference points for every task, scored on the test split with the task's own ``score``.

majority: the most frequent training answer (letter, decision, outcome + reason, or the median training
enrollment for the regression task); random: a seeded random answer per sample (a letter among its options,
a coin per candidate, a random training enrollment, random PMIDs from the index for search). Natural
non-LLM baselines where one exists: median enrollment by phase + condition (falling back to phase, then
all) for sample size; the review title as the query for study search (bare words, i.e. AND'ed, as PubMed
reads them; and OR'ed), plus the heuristic reference query the answer column carries.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter, defaultdict
from typing import Any

from trialpanorama.tasks.base import stable_hash
from trialpanorama.tasks.metrics import mean_dicts, ranking_scores
from trialpanorama.tasks.registry import load_task

MC_TASKS = {"arm_design", "eligibility_criteria_design", "endpoint_design", "evidence_summary"}


def _rng(seed: Any, *parts: Any) -> random.Random:
    return random.Random(int(stable_hash(seed, *parts)[:12], 16))


def _refs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(r["reference"]) for r in rows]


def _inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(r["input"]) for r in rows]


def run(task: str, rows: list[dict[str, Any]], seed: Any, index: Any = None) -> dict[str, dict[str, float]]:
    """Baseline name -> metrics on the test rows of ``task`` (empty when there is no test split)."""
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    if not test or (not train and task != "study_search"):
        return {}  # the majority / median / random draws need training answers (never test answers)
    mod = load_task(task)
    refs, tr_refs, inputs = _refs(test), _refs(train), _inputs(test)
    out: dict[str, dict[str, float]] = {}
    if task in MC_TASKS:
        common = Counter(r["answer_choice"] for r in tr_refs).most_common(1)
        major = common[0][0] if common else "A"
        out["majority"] = mod.score([major] * len(test), refs)
        out["random"] = mod.score([_rng(seed, task, r["sample_id"]).choice(sorted(i["options"]))
                                   for r, i in zip(test, inputs, strict=True)], refs)
    elif task == "study_screening":
        votes = Counter(d for r in tr_refs for d in r["decisions"].values()).most_common(1)
        major = votes[0][0] if votes else "exclude"
        out["majority"] = mod.score([dict.fromkeys(r["decisions"], major) for r in refs], refs)
        out["random"] = mod.score([{p: _rng(seed, task, row["sample_id"], p).choice(["include", "exclude"])
                                    for p in r["decisions"]} for row, r in zip(test, refs, strict=True)], refs)
    elif task == "sample_size_estimation":
        sizes = [r["sample_size"] for r in tr_refs]
        med = int(statistics.median(sizes))
        out["majority"] = mod.score([med] * len(test), refs)
        out["random"] = mod.score([_rng(seed, task, r["sample_id"]).choice(sizes) for r in test], refs)
        by_pc: dict[tuple, list[int]] = defaultdict(list)
        by_p: dict[Any, list[int]] = defaultdict(list)
        for r in tr_refs:
            by_pc[(r["phase"], r["condition_group"])].append(r["sample_size"])
            by_p[r["phase"]].append(r["sample_size"])
        preds = []
        for r in refs:
            pool = by_pc.get((r["phase"], r["condition_group"])) or by_p.get(r["phase"]) or sizes
            preds.append(int(statistics.median(pool)))
        out["median_by_phase_condition"] = mod.score(preds, refs)
    elif task == "trial_completion_assessment":
        outcome = Counter(r["outcome"] for r in tr_refs).most_common(1)
        reason = Counter(r["reason_class"] for r in tr_refs if r["reason_class"]).most_common(1)
        mo, mr = (outcome[0][0] if outcome else "complete"), (reason[0][0] if reason else "enrollment")
        out["majority"] = mod.score([{"outcome": mo, "reason": mr, "rationale": ""}] * len(test), refs)
        preds = []
        for r in test:
            g = _rng(seed, task, r["sample_id"])
            preds.append({"outcome": g.choice(["complete", "terminate"]), "reason": g.choice(list(mod.REASONS)),
                          "rationale": ""})
        out["random"] = mod.score(preds, refs)
    elif task == "study_search" and index is not None:
        words = [re.findall(r"[A-Za-z0-9]+", r["title"]) for r in refs]
        out["title_and"] = mod.score([" ".join(w) or "x" for w in words], refs, index=index)
        out["title_or"] = mod.score([" OR ".join(w) or "x" for w in words], refs, index=index)
        out["reference_query"] = mod.score([r["query"] for r in refs], refs, index=index)
        all_pmids = index.all_pmids()
        rows_ = []
        for row, r in zip(test, refs, strict=True):
            g = _rng(seed, task, row["sample_id"])
            ranked = g.sample(all_pmids, min(500, len(all_pmids)))
            rows_.append(ranking_scores(ranked, set(r["included_pmids"]), (10, 50, 100, 500)))
        out["random"] = mean_dicts(rows_)
    return out
