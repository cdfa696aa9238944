"""sample_size_estimation: from a completed trial's design, predict its actual enrollment (an integer).

Candidates: trials whose status is in ``statuses`` (COMPLETED) with enrollment of type ACTUAL (the number
who took part, not the target). Input: title, conditions, phase and design fields, arms, primary endpoints
(the study's "design + statistical assumptions"; registries rarely state power assumptions, so none are
invented). The brief summary is left out: registry summaries often state the planned enrollment.
Correct = within ±20% of the actual enrollment. Parsing takes ``sample_size_needed`` from JSON (numbers or
strings such as "1,200 participants"), else a number right after "sample size" in prose.
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
from trialpanorama.tasks.metrics import regression_scores

NAME = "sample_size_estimation"
VERSION = "1.0"
KIND = "trial"


def collect(ctx: Any) -> list[Record]:
    cfg = ctx.cfg[NAME]
    statuses = {s.upper() for s in cfg["statuses"]}
    out = []
    for uid, t in ctx.data.trials.items():
        status = (t.get("overall_status") or t.get("recruitment_status") or "").upper()
        n = t.get("enrollment")
        if status not in statuses or n is None or n < int(cfg["min_enrollment"]):
            continue
        if (t.get("enrollment_type") or "").upper() != str(cfg["enrollment_type"]).upper():
            continue
        out.append(Record(uid, [uid], [], {"enrollment": int(n)}))
    return out


def assemble(rec: Record, pool: list[Record], ctx: Any, barred: Any) -> dict[str, Any] | None:
    t = ctx.data.trials[rec.key]
    desc = {k: v for k, v in trial_text.description(t).items() if k != "brief_summary"}
    inp = {**desc, "arms": trial_text.arms(t),
           "primary_endpoints": trial_text.primary_endpoints(t)}
    ref = {"sample_size": rec.data["enrollment"], "phase": t.get("phase"),
           "condition_group": trial_text.condition_group(t)}
    return {"input": inp, "reference": ref, "trial_uids": rec.trial_uids, "pmids": []}


def build(spark: SparkSession, lake: str, cfg: dict[str, Any]) -> DataFrame:
    from trialpanorama.tasks.build import build_one

    return build_one(NAME, spark, lake, cfg)


def to_messages(sample: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    inp, ref = load_json(sample["input"]), load_json(sample["reference"])
    user = ("Estimate the number of participants this clinical trial needs to enroll.\n\nTrial:\n"
            + json.dumps(inp, ensure_ascii=False, indent=1)
            + '\n\nAnswer in JSON: {"step_by_step_thinking": "...", "sample_size_needed": <integer>}')
    answer = answer_json({"step_by_step_thinking": "Based on the design, phase, arms and primary endpoint, "
                          f"the trial needs about {ref['sample_size']} participants.",
                          "sample_size_needed": ref["sample_size"]})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}], answer



def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(round(v)) if v >= 0 else None
    if isinstance(v, str):
        m = re.search(r"\d[\d,]*(?:\.\d+)?", v)
        if m:
            return int(round(float(m.group(0).replace(",", ""))))
    return None


def parse(text: str | None) -> int | str:
    """The integer sample size, or ``unparseable``."""
    obj = extract_json(text)
    if obj is not None:
        n = _int(get_key(obj, "sample_size_needed", "sample_size", "n"))
        if n is not None:
            return n
    m = re.search(r"sample[ _]size(?:[ _]needed)?\D{0,40}?(\d[\d,]*)", text or "", re.I)
    if m:
        return int(m.group(1).replace(",", ""))
    return UNPARSEABLE


def score(predictions: list[int | str], references: list[Any]) -> dict[str, float]:
    """Accuracy within ±20%, MAE and median absolute percentage error (unparseable counted, see metrics)."""
    return regression_scores(predictions, [int(load_json(r)["sample_size"]) for r in references])
