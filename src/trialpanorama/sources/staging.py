"""The incremental write path every registry ingest shares: classify, count, write silver then bronze.

A source module parses its files into one frame with a ``reason`` column (NULL = accepted), a record key,
``record_hash`` and ``source_version``; this module decides which records are new, updated, unchanged or
superseded against the source's bronze table, writes the changed ones (silver first, bronze last, so a
crash between writes is healed by a rerun), appends unseen rejects, and checks that counts reconcile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from trialpanorama import lake
from trialpanorama.config import Config
from trialpanorama.progress import progress

OTHER_REASONS = "other reasons (see the rejects table)"


def summary_max_reasons(cfg: Config) -> int:
    """How many reject reasons a job summary lists (``sources.summary_max_reasons``)."""
    return int(cfg.require("sources.summary_max_reasons"))


def cache_level(cfg: Config) -> StorageLevel:
    """Where an ingest keeps the frames it reads more than once (``sources.cache_storage_level``).

    They carry every record's raw text, so in memory they compete with the write's sorts for the heap: one
    real PubMed file (20K articles, 233 MB of XML) cached MEMORY_AND_DISK left a 1 GB driver retrying page
    allocations, and a 2 GB test JVM that earlier tests had partly filled died in it; DISK_ONLY ran it in 768 MB.
    """
    name = str(cfg.require("sources.cache_storage_level"))
    level = getattr(StorageLevel, name, None)
    if not isinstance(level, StorageLevel):
        raise ValueError(f"sources.cache_storage_level: {name!r} is not a pyspark StorageLevel "
                         "(e.g. DISK_ONLY, MEMORY_AND_DISK)")
    return level


def top_reasons(counts: dict[str, int], limit: int | None) -> dict[str, int]:
    """The most frequent reasons, the rest summed under one key.

    Reasons carry the offending value ("malformed PMID: 'PMID3929x'"), so a large dump with many bad
    values would otherwise print and log one key per bad record; the rejects table keeps every reason.
    """
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if limit is None or len(ranked) <= limit:
        return dict(ranked)
    kept = dict(ranked[: max(limit - 1, 0)])
    kept[OTHER_REASONS] = sum(n for _, n in ranked[max(limit - 1, 0):])
    return kept


@dataclass
class IngestSummary:
    files: int
    records_in: int
    accepted: int
    rejected: int
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def reconciles(self) -> bool:
        return (self.records_in == self.accepted + self.rejected
                and self.accepted == self.new + self.updated + self.unchanged + self.superseded)

    def as_result(self) -> dict[str, Any]:
        """The job's JSON fields."""
        return {"files": self.files, "records_in": self.records_in, "accepted": self.accepted,
                "rejected": self.rejected,
                "accepted_detail": {"new": self.new, "updated": self.updated, "unchanged": self.unchanged,
                                    "superseded": self.superseded},
                "rejected_by_reason": self.rejected_by_reason}

    def metrics(self) -> dict[str, int]:
        return {"files": self.files, "records_in": self.records_in, "accepted": self.accepted,
                "rejected": self.rejected, "new": self.new, "updated": self.updated,
                "unchanged": self.unchanged, "superseded": self.superseded}


def rejects_frame(parsed: DataFrame, ingested_at: Column, source: str) -> DataFrame:
    """Rows for the shared ``rejects`` table; the id hashes source, file, reason and raw text.

    The same bad line twice in one file is two rejects, not one: the second and later copies get their
    occurrence number in the id (the first keeps the plain hash, so ids already in a lake stay valid). The
    ids are still the same on every run over the same input, so a re-run adds nothing.
    """
    base = F.sha2(F.concat_ws("\u0001", F.lit(source), "source_file", "reason", "raw"), 256)
    occurrence = F.row_number().over(Window.partitionBy("_base").orderBy(F.lit(1)))
    return parsed.where(F.col("reason").isNotNull()).withColumn("_base", base).select(
        F.when(occurrence == 1, F.col("_base"))
        .otherwise(F.sha2(F.concat_ws("\u0001", "_base", occurrence.cast("string")), 256)).alias("reject_id"),
        F.lit(source).alias("source"), "source_file", "raw", "reason", ingested_at.alias("ingested_at"),
    )


def write_rejects(spark: SparkSession, root: str, parsed: DataFrame, ingested_at: Column, source: str,
                  report: Callable[[lake.WriteResult], None]) -> None:
    """Append the rejects not already recorded (same source, file, reason, raw), committing nothing if none."""
    known = lake.read_named(spark, root, "rejects").select("reject_id")
    fresh = rejects_frame(parsed, ingested_at, source).join(known, "reject_id", "left_anti")
    if not fresh.isEmpty():
        report(lake.upsert(spark, root, "rejects", fresh, hash_col="reject_id"))


def stage(
    spark: SparkSession,
    root: str,
    *,
    source: str,
    parsed: DataFrame,
    key: str,
    bronze_table: str,
    bronze_key: str,
    n_files: int,
    ingested_at: Column,
    silver: Callable[[DataFrame], dict[str, DataFrame]],
    bronze: Callable[[DataFrame], DataFrame],
    report: Callable[[lake.WriteResult], None] | None = None,
    parent_table: str = "studies",
    parent_key: str = "study_id",
    max_reasons: int | None = None,
    persist_parsed: bool = True,
    storage_level: StorageLevel,
) -> IngestSummary:
    """Count, classify and write one parsed batch. ``parsed`` needs: reason, ``key``, record_hash, source_version.

    ``silver(changed)`` returns table -> frame (the parent table is upserted, the others replace the child
    rows of every changed parent); ``bronze(changed)`` returns the bronze rows. ``max_reasons`` caps the
    summary's reason list (``sources.summary_max_reasons``); the counts are never capped. ``parsed`` and the
    changed records are persisted at ``storage_level`` (``cache_level(cfg)``). A caller whose ``parsed`` is a
    filter of a frame it has already persisted passes ``persist_parsed=False``: caching the filter again
    holds a second copy of every record (with its raw text).
    """
    report = report or (lambda result: None)
    if persist_parsed:
        parsed = parsed.persist(storage_level)
    changed: DataFrame | None = None
    try:
        by_reason = {r["reason"]: r["n"] for r in parsed.groupBy("reason").agg(F.count("*").alias("n")).collect()}
        accepted_n = by_reason.pop(None, 0)
        rejected_n = sum(by_reason.values())
        records_in = accepted_n + rejected_n
        progress(f"{source}: {records_in} records parsed, {accepted_n} accepted, {rejected_n} rejected")

        accepted = parsed.where(F.col("reason").isNull())
        w = Window.partitionBy(key).orderBy(F.col("source_version").desc(), F.col("record_hash").desc())
        latest = accepted.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")
        stored = lake.read_named(spark, root, bronze_table).select(
            F.col(bronze_key).alias(key), F.col("record_hash").alias("_old_hash"),
            F.col("source_version").alias("_old_version"))
        joined = latest.join(stored, key, "left").withColumn(
            "_state",
            F.when(F.col("_old_hash").isNull(), "new")
            .when(F.col("_old_hash") == F.col("record_hash"), "unchanged")
            .when(F.col("source_version") >= F.col("_old_version"), "updated")
            .otherwise("superseded"),
        )
        changed = joined.where(F.col("_state").isin("new", "updated")).persist(storage_level)
        states = {r["_state"]: r["n"] for r in joined.groupBy("_state").agg(F.count("*").alias("n")).collect()}
        summary = IngestSummary(
            files=n_files, records_in=records_in, accepted=accepted_n, rejected=rejected_n,
            new=states.get("new", 0), updated=states.get("updated", 0), unchanged=states.get("unchanged", 0),
            # duplicates of a key inside the batch are superseded by the batch's newest record
            superseded=states.get("superseded", 0) + (accepted_n - sum(states.values())),
            rejected_by_reason=top_reasons(by_reason, max_reasons),
        )
        if not summary.reconciles():
            raise RuntimeError(f"{source} ingest counts do not reconcile: {summary}")
        progress(f"{source}: {summary.new} new, {summary.updated} updated, {summary.unchanged} unchanged, "
                 f"{summary.superseded} superseded")

        if summary.new + summary.updated:
            frames = silver(changed)
            keys = frames[parent_table].select(parent_key).distinct()
            report(lake.upsert(spark, root, parent_table, frames.pop(parent_table)))
            for table, frame in frames.items():
                report(lake.replace_for_keys(spark, root, table, frame, keys, key=parent_key))
                progress(f"{source}: wrote {table}")
            report(lake.upsert(spark, root, bronze_table, bronze(changed)))
        if rejected_n:
            write_rejects(spark, root, parsed, ingested_at, source, report)
        return summary
    finally:
        if changed is not None:
            changed.unpersist()
        if persist_parsed:
            parsed.unpersist()
