"""Deterministic, leak-free train/test assignment shared by all eight tasks.

Every trial_uid and review PMID gets a number ``u = hash(seed, kind, key)`` in [0, 1). Each task puts its
``n_test`` lowest-``u`` candidate samples in test (trial tasks rank by trial_uid, review tasks by review
PMID), so the trial tasks mostly pick the SAME test trials. Test samples of all tasks are assembled first,
with distractors drawn only from test records (of any task); every trial_uid and PMID they touch (their
own, their distractors', their candidates') is then barred from training: a training candidate touching one is dropped, and training distractors / hard negatives are drawn
only from the rest. Hence no trial (by trial_uid, so cross-registered duplicates count once) and no
publication of any test sample appears in any training sample of any task; ``jobs/check_leakage.py``
proves it on the written tables.

``n_test`` is the configured test size (the study's: 100 reviews for search/screening, 1,000 otherwise),
or ``max_test_fraction`` of the candidates on a lake too small for it (at least one when there are two).
"""

from __future__ import annotations

import math
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


def choose_test(task: str, kind: str, records: list[Record], cfg: dict[str, Any]) -> set[str]:
    """Keys of a task's test samples: its ``n_test`` lowest-hash candidates."""
    seed = cfg["split"]["seed"]
    ranked = sorted(records, key=lambda r: rank_key(r, kind, seed))
    return {r.key for r in ranked[:n_test(len(records), task, cfg)]}


def touches(trial_uids: list[str], pmids: list[str], barred_trials: set[str], barred_pmids: set[str]) -> bool:
    return bool(set(trial_uids) & barred_trials or set(pmids) & barred_pmids)
