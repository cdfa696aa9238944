"""endpoint_design: given a trial's description without its endpoints, choose its true endpoints among distractors.

Options are the trial's own endpoints (rendered by ``trial_text.endpoints_text``) and those of other trials with the
same condition (first MeSH id, else name) and phase, falling back to the same condition, the same phase,
then any trial; 4 options when the pool allows, at least 2. The correct letter is hash(trial_uid) mod n, so
letters are evenly spread. Study silence decided here: the description keeps the brief summary (it may
mention the endpoints, as a registry reader would see it); samples need a non-empty endpoints.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession

from trialpanorama.tasks import _mc_trial, trial_text
from trialpanorama.tasks.base import Record

NAME = "endpoint_design"
VERSION = "1.0"
KIND = "trial"
QUESTION = "Which of the following are the primary outcome measures of this clinical trial?"
INSTRUCTION = "Choose the option listing this trial's primary outcome measures."


def collect(ctx: Any) -> list[Record]:
    return _mc_trial.collect(ctx, trial_text.endpoints_text)


def assemble(rec: Record, pool: list[Record], ctx: Any, barred: Any) -> dict[str, Any] | None:
    return _mc_trial.assemble(NAME, QUESTION, "endpoints", rec, pool, ctx, barred)


def build(spark: SparkSession, lake: str, cfg: dict[str, Any]) -> DataFrame:
    """This task's table alone (splits still leak-free across the tasks built together by the job)."""
    from trialpanorama.tasks.build import build_one

    return build_one(NAME, spark, lake, cfg)


def to_messages(sample: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    return _mc_trial.to_messages(sample, INSTRUCTION)


def parse(text: str | None) -> str:
    """The chosen letter, or ``unparseable``."""
    return _mc_trial.parse(text)


def score(predictions: list[str], references: list[Any]) -> dict[str, float]:
    """Accuracy and macro-F1 over the reference letters."""
    return _mc_trial.score(predictions, references)
