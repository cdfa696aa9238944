"""trial_completion_assessment: will this trial complete or terminate, and if it terminates, why?

Candidates: trials whose overall status is COMPLETED (label complete) or TERMINATED (label terminate;
lists in conf/tasks.yaml). The termination reason class is the why_stopped text classified by
``why_stopped.ReasonClassifier`` (keyword rules in conf/why_stopped.yaml, measured on a labelled set); a
terminated trial without a why_stopped text keeps its outcome label with reason ``null`` and is left out
of the reason metrics. Input: title, design fields (allocation, intervention model, purpose, masking,
phase, number of arms), eligibility (criteria, sex, ages, healthy volunteers) and arms. Metrics: balanced
accuracy of the outcome, balanced accuracy of the reason class over terminated references with a class,
ROUGE-L of the rationale against the why_stopped text on the same subset.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from trialpanorama.tasks import trial_text
from trialpanorama.tasks.base import (
    SYSTEM_PROMPT,
    UNPARSEABLE,
    Record,
    answer_json,
    extract_json,
    get_key,
    load_json,
)
from trialpanorama.tasks.metrics import balanced_accuracy, rouge_l
from trialpanorama.tasks.why_stopped import ReasonClassifier

NAME = "trial_completion_assessment"
VERSION = "1.0"
KIND = "trial"
REASONS = ("enrollment", "feasibility", "lack_of_efficacy", "regulatory", "safety")
REASON_ALIASES = {
    "enrollment": "enrollment", "enrolment": "enrollment", "enrollment issues": "enrollment",
    "recruitment": "enrollment", "accrual": "enrollment",
    "feasibility": "feasibility", "business": "feasibility", "funding": "feasibility",
    "lack of efficacy": "lack_of_efficacy", "lack_of_efficacy": "lack_of_efficacy", "efficacy": "lack_of_efficacy",
    "futility": "lack_of_efficacy",
    "regulatory": "regulatory", "regulatory/approval": "regulatory", "approval": "regulatory",
    "safety": "safety", "safety issues": "safety", "toxicity": "safety",
}


def collect(ctx: Any) -> list[Record]:
    cfg = ctx.cfg[NAME]
    done = {s.upper() for s in cfg["complete_statuses"]}
    stop = {s.upper() for s in cfg["terminate_statuses"]}
    clf = ReasonClassifier.from_config()
    out = []
    for uid, t in ctx.data.trials.items():
        status = (t.get("overall_status") or t.get("recruitment_status") or "").upper()
        if status not in done | stop:
            continue
        why = (t.get("why_terminated") or t.get("why_stopped") or "").strip() or None
        outcome = "terminate" if status in stop else "complete"
        reason = clf.classify(why) if outcome == "terminate" else None
        out.append(Record(uid, [uid], [], {"outcome": outcome, "reason": reason, "why": why if reason else None}))
    return out


def assemble(rec: Record, pool: list[Record], ctx: Any, barred: Any) -> dict[str, Any] | None:
    t = ctx.data.trials[rec.key]
    inp = {"title": t.get("title") or "", **trial_text.design(t), "conditions": trial_text.conditions(t),
           "eligibility": trial_text.eligibility(t), "arms": trial_text.arms(t)}
    ref = {"outcome": rec.data["outcome"], "reason_class": rec.data["reason"], "reason_text": rec.data["why"]}
    return {"input": inp, "reference": ref, "trial_uids": rec.trial_uids, "pmids": []}


def build(spark: SparkSession, lake: str, cfg: dict[str, Any]) -> DataFrame:
    from trialpanorama.tasks.build import build_one

    return build_one(NAME, spark, lake, cfg)



def to_messages(sample: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    inp, ref = load_json(sample["input"]), load_json(sample["reference"])
    user = ("Assess whether this clinical trial will complete or terminate early. If it terminates, give the "
            f"reason class (one of: {', '.join(REASONS)}) and a short rationale.\n\nTrial:\n"
            + json.dumps(inp, ensure_ascii=False, indent=1)
            + '\n\nAnswer in JSON: {"outcome": "complete" or "terminate", "termination_reason": <class or null>,'
              ' "rationale": "..."}')
    rationale = ref["reason_text"] or ("The design, eligibility and arms raise no sign of early termination."
                                       if ref["outcome"] == "complete" else "The trial was stopped early.")
    answer = answer_json({"outcome": ref["outcome"], "termination_reason": ref["reason_class"],
                          "rationale": rationale})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}], answer


def _outcome(v: Any) -> str | None:
    s = str(v or "").lower()
    if re.search(r"terminat|stop|discontinu", s):
        return "terminate"
    if re.search(r"complet", s):
        return "complete"
    return None


def _reason(v: Any) -> str | None:
    s = re.sub(r"[_\s]+", " ", str(v or "").lower()).strip()
    if s in REASON_ALIASES:
        return REASON_ALIASES[s]
    hits = {cls for alias, cls in REASON_ALIASES.items() if alias in s}
    return hits.pop() if len(hits) == 1 else None


def parse(text: str | None) -> dict[str, Any]:
    """{"outcome", "reason", "rationale"}; outcome/reason are ``unparseable`` when unreadable."""
    obj = extract_json(text)
    if obj is not None:
        outcome = _outcome(get_key(obj, "outcome", "prediction", "decision"))
        reason = _reason(get_key(obj, "termination_reason", "reason_class", "reason"))
        rationale = str(get_key(obj, "rationale", "reason_text", "explanation") or "")
    else:
        words = set(re.findall(r"terminat\w*|complet\w*", (text or "").lower()))
        kinds = {_outcome(w) for w in words}
        outcome = kinds.pop() if len(kinds) == 1 else None
        reason = _reason(text) if outcome == "terminate" else None
        rationale = text or ""
    return {"outcome": outcome or UNPARSEABLE, "reason": reason or UNPARSEABLE, "rationale": rationale}


def score(predictions: list[dict[str, Any]], references: list[Any]) -> dict[str, float]:
    refs = [load_json(r) for r in references]
    out = {"balanced_accuracy_outcome": balanced_accuracy([p["outcome"] for p in predictions],
                                                          [r["outcome"] for r in refs])}
    pairs = [(p, r) for p, r in zip(predictions, refs, strict=True)
             if r["outcome"] == "terminate" and r["reason_class"]]
    out["balanced_accuracy_reason"] = balanced_accuracy([p["reason"] for p, _ in pairs],
                                                        [r["reason_class"] for _, r in pairs])
    out["rouge_l_rationale"] = rouge_l([p["rationale"] for p, _ in pairs], [r["reason_text"] for _, r in pairs])
    out["n"] = float(len(refs))
    out["n_reason"] = float(len(pairs))
    out["unparseable"] = float(sum(1 for p in predictions if p["outcome"] == UNPARSEABLE))
    return out
