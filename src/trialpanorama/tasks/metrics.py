"""Metrics shared by the tasks, computed the same way for every model.

Classification metrics come from scikit-learn. An ``UNPARSEABLE`` prediction is scored wrong: in accuracy
and per-class metrics it is simply a label that never matches (for binary include/exclude it becomes the
opposite of the reference, so it costs a false positive or a false negative), and every scorer reports
``n`` and ``unparseable`` counts. Ranking metrics are written out here because scikit-learn's assume every
relevant item is among the scored ones, while a search engine misses some (recall must count those).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from trialpanorama.tasks.base import UNPARSEABLE


def _count(preds: Sequence[object]) -> dict[str, float]:
    return {"n": float(len(preds)), "unparseable": float(sum(1 for p in preds if p == UNPARSEABLE))}


def choice_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over the reference labels (an unparseable answer is a miss for its class)."""
    if not refs:
        return {"accuracy": 0.0, "macro_f1": 0.0, **_count(preds)}
    labels = sorted(set(refs))
    preds = [str(p) for p in preds]
    return {
        "accuracy": float(accuracy_score(refs, preds)),
        "macro_f1": float(f1_score(refs, preds, labels=labels, average="macro", zero_division=0)),
        **_count(preds),
    }


def binary_scores(preds: Sequence[str], refs: Sequence[str], positive: str, negative: str) -> dict[str, float]:
    """Accuracy, precision, recall, F1, specificity of a positive class; unparseable -> the wrong label."""
    fixed = [(negative if r == positive else positive) if p not in (positive, negative) else p
             for p, r in zip(preds, refs, strict=True)]
    if not refs:
        return {k: 0.0 for k in ("accuracy", "precision", "recall", "f1", "specificity")} | _count(preds)
    y = [r == positive for r in refs]
    yhat = [p == positive for p in fixed]
    return {
        "accuracy": float(accuracy_score(y, yhat)),
        "precision": float(precision_score(y, yhat, zero_division=0)),
        "recall": float(recall_score(y, yhat, zero_division=0)),
        "f1": float(f1_score(y, yhat, zero_division=0)),
        "specificity": float(recall_score(y, yhat, pos_label=False, zero_division=0)),
        **_count(preds),
    }


def balanced_accuracy(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean recall over the classes present in the references (an unparseable answer recalls nothing).

    Equal to scikit-learn's ``balanced_accuracy_score`` when predictions use only reference labels, but
    does not let an extra predicted label (``unparseable``) become a class of its own.
    """
    if not refs:
        return 0.0
    return float(recall_score(list(refs), [str(p) for p in preds], labels=sorted(set(refs)),
                              average="macro", zero_division=0))


def regression_scores(preds: Sequence[int | str], refs: Sequence[int], tolerance: float = 0.2) -> dict[str, float]:
    """Share within ±tolerance of the reference (unparseable = outside), and MAE / median APE over the
    parseable answers (an error cannot be measured on an unreadable answer; its count is reported)."""
    ok = [(float(p), float(r)) for p, r in zip(preds, refs, strict=True) if p != UNPARSEABLE]
    within = sum(1 for p, r in ok if abs(p - r) <= tolerance * r)
    out = {
        "accuracy_within_20pct": within / len(refs) if refs else 0.0,
        "mae": statistics.fmean(abs(p - r) for p, r in ok) if ok else math.nan,
        "median_ape": statistics.median(abs(p - r) / r for p, r in ok if r) if ok else math.nan,
    }
    return {**out, **_count(preds)}


def rouge_l(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, stemmed); an empty or unparseable prediction scores 0."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    vals = [scorer.score(r or "", p or "")["rougeL"].fmeasure if p and p != UNPARSEABLE else 0.0
            for p, r in zip(preds, refs, strict=True)]
    return float(statistics.fmean(vals)) if vals else 0.0


# ------------------------------------------------------------------------------------- ranking
def ranking_scores(ranked: Sequence[str], relevant: set[str], ks: Sequence[int]) -> dict[str, float]:
    """Recall/precision/F1/nDCG at each k, and average precision over the ranked list, for one query.

    precision@k divides by k (the list is padded with misses when shorter), nDCG is binary-gain with
    log2 discount, the ideal ranking putting every relevant item first; AP divides by |relevant|.
    """
    out: dict[str, float] = {}
    n_rel = len(relevant)
    for k in ks:
        hits = sum(1 for d in ranked[:k] if d in relevant)
        rec = hits / n_rel if n_rel else 0.0
        prec = hits / k
        out[f"recall@{k}"] = rec
        out[f"precision@{k}"] = prec
        out[f"f1@{k}"] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(n_rel, k)))
        out[f"ndcg@{k}"] = dcg / idcg if idcg else 0.0
    hits, ap = 0, 0.0
    for i, d in enumerate(ranked):
        if d in relevant:
            hits += 1
            ap += hits / (i + 1)
    out["ap"] = ap / n_rel if n_rel else 0.0
    return out


def mean_dicts(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of per-query metric dicts (MAP is the mean of AP)."""
    if not rows:
        return {}
    out = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    if "ap" in out:
        out["map"] = out.pop("ap")
    return out
