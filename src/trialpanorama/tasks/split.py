"""Deterministic, leak-free train/test assignment shared by all eight tasks.

Every trial_uid and review PMID gets a number ``u = hash(seed, kind, key)`` in [0, 1). Each task puts its
``n_test`` lowest-``u`` candidate samples in test (trial tasks rank by trial_uid, review tasks by review
PMID), so the trial tasks mostly pick the SAME test trials. Test samples of all tasks are assembled first,
with distractors drawn only from test records (of any task); every trial_uid and PMID they touch (their
own, their distractors', their candidates') is then barred from training: a training candidate touching one is dropped, and training distractors / hard negatives are drawn
only from the rest. Hence no trial (by trial_uid, so cross-registered duplicates count once) and no
publication of any test sample appears in any training sample of any task; ``jobs/check_leakage.py``
proves it on the written tables.

Reviews and trials are linked (a review includes trials), so the two kinds are split together: review
tasks choose their test reviews first, and trial tasks then rank trials in three tiers before the hash:
(0) trials a test review includes, (1) trials no review includes, (2) trials a training review includes.
Without the tiers a 20% trial test split hits most reviews (a review with 5 included trials keeps all of
them in training with probability 0.8^5 = 0.33), and every review touching a test trial is lost to
training; with them, training reviews lose only the trials they share with test reviews.

``n_test`` is the configured test size (the study's: 100 reviews for search/screening, 1,000 otherwise),
or ``max_test_fraction`` of the candidates on a lake too small for it (at least one when there are two).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from trialpanorama.tasks.base import Record, unit


def test_size(task: str, cfg: dict[str, Any]) -> int:
    sizes = cfg["split"]["test_size"]
    return int(sizes.get(task, sizes["default"]))


def n_test(n_candidates: int, task: str, cfg: dict[str, Any]) -> int:
    """Test samples for a task with ``n_candidates``: the configured size, capped by the fraction."""
    if n_candidates < 2:
        return 0
    frac = float(cfg["split"]["max_test_fraction"])
    return max(1, min(test_size(task, cfg), math.floor(n_candidates * frac)))


def rank_key(rec: Record, kind: str, seed: Any) -> tuple[float, str]:
    return unit(seed, kind, rec.key), rec.key


def choose_test(task: str, kind: str, records: list[Record], cfg: dict[str, Any],
                tier: Callable[[str], int] | None = None) -> set[str]:
    """Keys of a task's test samples: its ``n_test`` lowest (tier, hash) candidates."""
    seed = cfg["split"]["seed"]
    ranked = sorted(records, key=lambda r: ((tier(r.key) if tier else 0), *rank_key(r, kind, seed)))
    return {r.key for r in ranked[:n_test(len(records), task, cfg)]}


def choose_tests(kinds: dict[str, str], records: dict[str, list[Record]],
                 cfg: dict[str, Any]) -> dict[str, set[str]]:
    """Test keys of every task: review tasks by hash first, then trial tasks in the tiers of the docstring."""
    out = {n: choose_test(n, k, records[n], cfg) for n, k in kinds.items() if k != "trial"}
    in_test: set[str] = set()
    in_train: set[str] = set()
    for n, keys in out.items():
        for r in records[n]:
            (in_test if r.key in keys else in_train).update(r.trial_uids)

    def tier(trial_uid: str) -> int:
        return 0 if trial_uid in in_test else 2 if trial_uid in in_train else 1

    for n, k in kinds.items():
        if k == "trial":
            out[n] = choose_test(n, k, records[n], cfg, tier)
    return out


def touches(trial_uids: list[str], pmids: list[str], barred_trials: set[str], barred_pmids: set[str]) -> bool:
    return bool(set(trial_uids) & barred_trials or set(pmids) & barred_pmids)
