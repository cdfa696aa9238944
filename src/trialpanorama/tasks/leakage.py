"""The leakage check behind jobs/check_leakage.py, in Spark over the written task tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama import lake
from trialpanorama.tasks.registry import TASKS


def _samples(spark: SparkSession, lake_root: str, record_input: Callable[[str, int], None] | None) -> DataFrame:
    frames = []
    for task in TASKS:
        uri = lake.table_uri(lake_root, task)
        v = lake.table_version(spark, uri)
        if v is None:
            continue
        if record_input:
            record_input(task, v)
        frames.append(lake.read_table(spark, uri, v).select("sample_id", "task", "split", "trial_uids", "pmids"))
    if not frames:
        raise FileNotFoundError(f"no task tables under {lake_root}: run jobs/build_tasks.py first")
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def find_leaks(spark: SparkSession, lake_root: str,
               record_input: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Counts (and up to 20 examples) of training samples sharing a trial_uid or PMID with any test sample."""
    s = _samples(spark, lake_root, record_input)
    items = (s.select("sample_id", "task", "split", F.explode("trial_uids").alias("id"), F.lit("trial").alias("kind"))
             .unionByName(s.select("sample_id", "task", "split", F.explode("pmids").alias("id"),
                                   F.lit("pmid").alias("kind"))))
    test_ids = items.where("split = 'test'").select("kind", "id").distinct()
    leaks = items.where("split = 'train'").join(test_ids, ["kind", "id"])
    examples = [r.asDict() for r in leaks.orderBy("task", "sample_id", "id").limit(20).collect()]
    trials = lake.read_named(spark, lake_root, "trials").select(F.col("trial_uid").alias("id"))
    unknown = items.where("kind = 'trial'").select("id").distinct().join(trials, "id", "left_anti")
    return {
        "samples": s.count(), "tasks": sorted({r.task for r in s.select("task").distinct().collect()}),
        "leaks": leaks.count(), "leaked_samples": leaks.select("sample_id").distinct().count(),
        "unknown_trial_uids": unknown.count(), "examples": examples,
    }
