"""Build the task tables: collect candidates per task, split them globally, assemble, render, hash.

Order matters for leakage: (1) every task collects its candidate records, (2) each task's test keys are
chosen by hash (``split``), (3) test samples of ALL tasks are assembled, their distractors drawn only from
test records of any task (``TestPool``: so a small lake does not lose its training set to the trials that
merely served as test distractors; screening hard negatives may be any paper whose trials are test
trials; a test sample the pool cannot serve draws from all records instead), (4) every trial_uid / PMID the test samples touch is barred, (5) training samples are assembled
from unbarred records with unbarred distractors and negatives only. ``build_all`` returns plain rows in the task table contract.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from trialpanorama.tasks import data as lakedata
from trialpanorama.tasks import split
from trialpanorama.tasks.base import Record, dumps, stable_hash

CONTRACT_COLS = ["sample_id", "task", "task_version", "split", "input", "reference", "messages", "answer",
                 "trial_uids", "pmids", "source_key"]


@dataclass
class BuildContext:
    """What task modules read while building: the lake data, the config, the literature index."""

    spark: SparkSession
    lake_root: str
    cfg: dict[str, Any]
    data: lakedata.LakeData
    index_dir: Path | None = None
    _index: Any = None
    cache: dict[str, Any] = field(default_factory=dict)

    def index(self) -> Any:
        """The literature index of this publications version (built on first use if absent)."""
        if self._index is None:
            from trialpanorama.search import build as sbuild

            path = sbuild.ensure_index(self.lake_root, self.cfg, self.data.versions.get("publications"),
                                       self.data.publications.values())
            from trialpanorama.search.index import LiteratureIndex

            self.index_dir = path
            self._index = LiteratureIndex(path)
        return self._index


@dataclass
class Barred:
    trials: set[str] = field(default_factory=set)
    pmids: set[str] = field(default_factory=set)

    def touches(self, trial_uids: list[str], pmids: list[str]) -> bool:
        return split.touches(trial_uids, pmids, self.trials, self.pmids)

    def admits_negative(self, trial_uids: list[str], pmid: str) -> bool:
        return not self.touches(trial_uids, [pmid])


@dataclass
class TestPool:
    """While assembling test samples: distractors may come only from test records (their trials/papers)."""

    trials: set[str] = field(default_factory=set)
    pmids: set[str] = field(default_factory=set)

    def touches(self, trial_uids: list[str], pmids: list[str]) -> bool:
        return not (set(trial_uids) <= self.trials and set(pmids) <= self.pmids)

    def admits_negative(self, trial_uids: list[str], pmid: str) -> bool:
        """A screening hard negative: any paper, as long as the trials it reports are test trials."""
        return set(trial_uids) <= self.trials


def render(mod: ModuleType, key: str, split_name: str, sample: dict[str, Any]) -> dict[str, Any]:
    """One task-table row from an assembled sample (input/reference dicts + provenance)."""
    row = {
        "sample_id": f"{mod.NAME}-{stable_hash(mod.NAME, key)[:16]}",
        "task": mod.NAME, "task_version": mod.VERSION, "split": split_name,
        "input": dumps(sample["input"]), "reference": dumps(sample["reference"]),
        "trial_uids": sorted(set(sample["trial_uids"])), "pmids": sorted(set(sample["pmids"])),
        "source_key": key,
    }
    messages, answer = mod.to_messages(row)
    row["messages"] = messages
    row["answer"] = answer
    return row


def build_all(spark: SparkSession, lake_root: str, cfg: dict[str, Any], names: list[str],
              record_input: Callable[[str, int], None] | None = None) -> tuple[dict[str, list[dict]], dict]:
    """Rows per task and build statistics (candidates, dropped for leakage, per split)."""
    data = lakedata.load(spark, lake_root, list(cfg["review_publication_types"]), record_input)
    return assemble_all(BuildContext(spark, lake_root, cfg, data), names)


def assemble_all(ctx: BuildContext, names: list[str]) -> tuple[dict[str, list[dict]], dict]:
    """The split-then-assemble procedure of the module docstring on already loaded lake data."""
    from trialpanorama.tasks.registry import load_task

    cfg = ctx.cfg
    mods = {n: load_task(n) for n in names}
    recs: dict[str, list[Record]] = {n: sorted(m.collect(ctx), key=lambda r: r.key) for n, m in mods.items()}
    test_keys = split.choose_tests({n: mods[n].KIND for n in names}, recs, cfg)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    stats: dict[str, dict[str, int]] = {n: {"candidates": len(recs[n]), "test": 0, "train": 0,
                                            "dropped_leak": 0, "dropped_assembly": 0} for n in names}
    pool = TestPool()
    for n in names:
        for rec in recs[n]:
            if rec.key in test_keys[n]:
                pool.trials.update(rec.trial_uids)
                pool.pmids.update(rec.pmids)
    barred = Barred()
    for n, m in mods.items():
        for rec in recs[n]:
            if rec.key not in test_keys[n]:
                continue
            # distractors from the test pool; a pool without any (tiny lakes) falls back to all records
            sample = m.assemble(rec, recs[n], ctx, pool) or m.assemble(rec, recs[n], ctx, None)
            if sample is None:
                stats[n]["dropped_assembly"] += 1
                continue
            rows[n].append(render(m, rec.key, "test", sample))
            stats[n]["test"] += 1
    for n in names:
        for r in rows[n]:
            barred.trials.update(r["trial_uids"])
            barred.pmids.update(r["pmids"])
    for n, m in mods.items():
        for rec in recs[n]:
            if rec.key in test_keys[n]:
                continue
            if barred.touches(rec.trial_uids, rec.pmids):
                stats[n]["dropped_leak"] += 1
                continue
            sample = m.assemble(rec, recs[n], ctx, barred)
            if sample is None:
                stats[n]["dropped_assembly"] += 1
                continue
            if barred.touches(sample["trial_uids"], sample["pmids"]):  # a module bug: never ship it
                raise AssertionError(f"{n}: training sample {rec.key} touches a test trial/publication")
            rows[n].append(render(m, rec.key, "train", sample))
            stats[n]["train"] += 1
    for n in names:
        rows[n].sort(key=lambda r: r["sample_id"])
    index_dir = str(ctx.index_dir) if ctx.index_dir else None
    info = {"stats": stats, "versions": ctx.data.versions, "index_dir": index_dir}
    return rows, info


def content_hash(rows: list[dict[str, Any]]) -> str:
    """SHA-256 over the rows in sample_id order, every contract column included."""
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: r["sample_id"]):
        h.update(dumps({k: r[k] for k in CONTRACT_COLS}).encode())
        h.update(b"\n")
    return h.hexdigest()


def frame_hash(df: DataFrame) -> str:
    """The same content hash computed from a task table read back from Delta."""
    rows = [r.asDict(recursive=True) for r in df.select(*CONTRACT_COLS).collect()]
    return content_hash(rows)


def to_frame(spark: SparkSession, task: str, rows: list[dict[str, Any]]) -> DataFrame:
    """The rows as a DataFrame with the task table's declared schema (``schemas.TABLES[task]``)."""
    from trialpanorama.schemas import TABLES

    schema = TABLES[task].schema
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def build_one(name: str, spark: SparkSession, lake_root: str, cfg: dict[str, Any]) -> DataFrame:
    """One task's table as a DataFrame (the job builds all tasks together so their splits are joint)."""
    rows, _ = build_all(spark, lake_root, cfg, [name])
    return to_frame(spark, name, rows[name])
