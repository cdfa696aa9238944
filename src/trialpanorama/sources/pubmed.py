"""MEDLINE/PubMed XML (baseline and update files, gzipped or not) to bronze ``pubmed_raw`` and silver
``publications``, ``publication_trial_ids`` and ``publication_deletions``.

Files are read as bytes by Spark's ``binaryFile`` source (any Hadoop-compatible URI) and parsed by lxml
inside the tasks (``mapInArrow``, pubmed_xml.py): a gzip file is not splittable, so the unit of
parallelism is the file, and nothing loops over records on the driver.

Two kinds of records share the bronze table, keyed by PMID:
- articles (and book articles), staged with ``staging.stage`` into ``publications`` and its child table;
- ``DeleteCitation`` PMIDs, staged as tombstones: their silver write upserts ``publication_deletions`` and
  empties ``publications`` / ``publication_trial_ids`` for those PMIDs (``replace_for_keys`` with no rows).
A tombstone stays in bronze with its source_version, so re-ingesting an older file later finds the article
"superseded" and does not resurrect it; a newer version of the article (higher PMID@Version, or a later
file) replaces the tombstone and leaves ``publication_deletions`` again. Bad input (broken article XML, a
missing PMID, an unreadable gzip) goes to ``rejects``; records in = accepted + rejected + deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

from trialpanorama import lake
from trialpanorama.config import Config
from trialpanorama.normalize.registry_ids import Registry, load_registries
from trialpanorama.progress import progress
from trialpanorama.schemas import TABLES
from trialpanorama.sources import staging
from trialpanorama.sources.files import list_files
from trialpanorama.sources.pubmed_xml import parse_file
from trialpanorama.sources.staging import IngestSummary

SOURCE = "pubmed"
XML_SUFFIXES = (".xml", ".xml.gz")  # NLM's folders also hold .md5 checksums and READMEs
CHILD_TABLES = ("publication_trial_ids",)
_BATCH_ROWS = 1000  # records per Arrow batch handed back to Spark

# What a parsing task returns: one row per record (article, deleted PMID, or reject).
PARSED_DDL = " ".join("""
    source_file STRING, seq INT, kind STRING, pmid STRING, pmid_version INT, raw STRING, reason STRING,
    source_version STRING, record_type STRING, title STRING, abstract STRING,
    abstract_sections ARRAY<STRUCT<label: STRING, nlm_category: STRING, text: STRING>>,
    journal STRING, journal_iso STRING, issn STRING, year INT, languages ARRAY<STRING>,
    authors ARRAY<STRUCT<last_name: STRING, fore_name: STRING, initials: STRING, collective_name: STRING,
                         affiliations: ARRAY<STRING>>>,
    publication_types ARRAY<STRUCT<ui: STRING, name: STRING>>,
    mesh_headings ARRAY<STRUCT<descriptor_ui: STRING, descriptor_name: STRING, major_topic: BOOLEAN,
                               qualifiers: ARRAY<STRUCT<ui: STRING, name: STRING, major_topic: BOOLEAN>>>>,
    keywords ARRAY<STRING>, databanks ARRAY<STRUCT<databank_name: STRING, accession_numbers: ARRAY<STRING>>>,
    trial_ids ARRAY<STRUCT<registry: STRING, trial_id: STRING, raw_id: STRING, origin: STRING,
                           databank_name: STRING>>,
    registry_ids ARRAY<STRING>, doi STRING, pmcid STRING, cited_pmids ARRAY<STRING>, medline_status STRING,
    date_revised STRING""".split())


# ------------------------------------------------------------------------------------------ reading
def _parser(registries: list[Registry], arrow_schema: pa.Schema) -> Callable[[Iterator[pa.RecordBatch]],
                                                                            Iterator[pa.RecordBatch]]:
    """The mapInArrow function: file rows (source_file, content) in, record batches out."""
    names = arrow_schema.names

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            files, contents = batch.column("source_file"), batch.column("content")
            for i in range(batch.num_rows):
                rows: list[dict[str, Any]] = []
                for rec in parse_file(files[i].as_py(), contents[i].as_py(), registries):
                    rows.append({n: rec.get(n) for n in names})
                    if len(rows) >= _BATCH_ROWS:
                        yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)
                        rows = []
                if rows:
                    yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    return parse


def read_records(spark: SparkSession, files: list[str], registries: list[Registry]) -> DataFrame:
    """Every record of the files, parsed by the tasks; adds record_hash (of the raw XML)."""
    schema = StructType.fromDDL(PARSED_DDL)
    arrow_schema = to_arrow_schema(schema)
    content = spark.read.format("binaryFile").load(files).select(F.col("path").alias("source_file"), "content")
    return content.mapInArrow(_parser(registries, arrow_schema), schema).withColumn(
        "record_hash", F.sha2(F.col("raw"), 256))


# ------------------------------------------------------------------------------------------- silver
def publications_frame(changed: DataFrame, updated_at: Column) -> DataFrame:
    cols = [f.name for f in TABLES["publications"].schema.fields
            if f.name not in ("date_revised", "updated_at")]
    return changed.select(*cols, F.try_to_date("date_revised", "yyyy-MM-dd").alias("date_revised"),
                          updated_at.alias("updated_at"))


def trial_ids_frame(changed: DataFrame) -> DataFrame:
    return changed.select("pmid", F.explode("trial_ids").alias("t")).select("pmid", "t.*")


def _empty(spark: SparkSession, table: str) -> DataFrame:
    return spark.createDataFrame([], TABLES[table].schema)


def article_frames(changed: DataFrame, updated_at: Column, root: str) -> dict[str, DataFrame]:
    """Silver rows of new/updated articles; a re-added PMID also leaves ``publication_deletions`` (once that
    table exists: before the first DeleteCitation there is nothing to leave)."""
    spark = changed.sparkSession
    frames = {"publications": publications_frame(changed, updated_at), "publication_trial_ids": trial_ids_frame(changed)}
    if lake.table_exists(spark, lake.table_uri(root, "publication_deletions")):
        frames["publication_deletions"] = _empty(spark, "publication_deletions")
    return frames


def deletion_frames(changed: DataFrame, deleted_at: Column) -> dict[str, DataFrame]:
    """Silver rows of new/updated tombstones: a deletions row, and no rows left in the publication tables."""
    spark = changed.sparkSession
    deletions = changed.select("pmid", "pmid_version", "source_file", "source_version", "record_hash",
                               deleted_at.alias("deleted_at"))
    return {"publication_deletions": deletions, "publications": _empty(spark, "publications"),
            **{t: _empty(spark, t) for t in CHILD_TABLES}}


def bronze_frame(changed: DataFrame, ingested_at: Column) -> DataFrame:
    return changed.select("pmid", "pmid_version", "kind", "raw", "source_file", "record_hash", "source_version",
                          ingested_at.alias("ingested_at"))


# ------------------------------------------------------------------------------------------- ingest
@dataclass
class PubmedSummary:
    """Articles and deletes are staged apart; their counts add up to the records read."""

    files: int
    articles: IngestSummary  # accepted articles + all rejects
    deletes: IngestSummary  # DeleteCitation PMIDs
    skipped_files: list[str]

    @property
    def records_in(self) -> int:
        return self.articles.records_in + self.deletes.records_in

    def reconciles(self) -> bool:
        return (self.articles.reconciles() and self.deletes.reconciles() and self.deletes.rejected == 0
                and self.records_in == self.articles.accepted + self.articles.rejected + self.deletes.accepted)

    def as_result(self) -> dict[str, Any]:
        a, d = self.articles, self.deletes
        return {
            "files": self.files, "skipped_files": self.skipped_files, "records_in": self.records_in,
            "accepted": a.accepted, "rejected": a.rejected, "deleted": d.accepted,
            "reconciliation": f"{self.records_in} records in = {a.accepted} accepted + {a.rejected} rejected"
                              f" + {d.accepted} deleted",
            "accepted_detail": {"new": a.new, "updated": a.updated, "unchanged": a.unchanged,
                                "superseded": a.superseded},
            "deleted_detail": {"new": d.new, "updated": d.updated, "unchanged": d.unchanged,
                               "superseded": d.superseded},
            "rejected_by_reason": a.rejected_by_reason,
        }

    def metrics(self) -> dict[str, int]:
        a, d = self.articles, self.deletes
        return {"files": self.files, "records_in": self.records_in, "accepted": a.accepted,
                "rejected": a.rejected, "deleted": d.accepted, "new": a.new, "updated": a.updated,
                "unchanged": a.unchanged, "superseded": a.superseded, "deletes_applied": d.new + d.updated}


def ingest(spark: SparkSession, cfg: Config, inputs: list[str], ingested_at: Column,
           on_write: Callable[[lake.WriteResult], None] | None = None) -> PubmedSummary:
    """Parse the files once, then stage articles (and rejects) and deletes against the same bronze table.

    Articles go first so that a file holding both an article and its DeleteCitation ends with the PMID
    deleted; re-running the same input writes nothing at all.
    """
    listed = list_files(spark, inputs)
    files = [f for f in listed if f.lower().endswith(XML_SUFFIXES)]
    skipped = sorted(set(listed) - set(files))
    progress(f"pubmed: {len(files)} input files ({len(skipped)} without .xml/.xml.gz skipped)")
    if not files:
        return PubmedSummary(0, IngestSummary(0, 0, 0, 0), IngestSummary(0, 0, 0, 0), skipped)
    cache_level = staging.cache_level(cfg)
    records = read_records(spark, files, load_registries(cfg)).persist(cache_level)
    try:
        common = dict(key="pmid", bronze_table="pubmed_raw", bronze_key="pmid", n_files=len(files),
                      ingested_at=ingested_at, bronze=lambda changed: bronze_frame(changed, ingested_at),
                      report=on_write, parent_key="pmid",
                      max_reasons=staging.summary_max_reasons(cfg), persist_parsed=False,
                      storage_level=cache_level)
        articles = staging.stage(
            spark, cfg.lake_root, source=SOURCE, parsed=records.where("kind <> 'delete'"),
            silver=lambda changed: article_frames(changed, ingested_at, cfg.lake_root), parent_table="publications",
            **common)
        deleted = records.where("kind = 'delete'")
        deletes = IngestSummary(len(files), 0, 0, 0) if deleted.isEmpty() else staging.stage(
            spark, cfg.lake_root, source=f"{SOURCE} deletes", parsed=deleted,
            silver=lambda changed: deletion_frames(changed, ingested_at), parent_table="publication_deletions",
            **common)
    finally:
        records.unpersist()
    summary = PubmedSummary(len(files), articles, deletes, skipped)
    if not summary.reconciles():
        raise RuntimeError(f"pubmed ingest counts do not reconcile: {summary}")
    return summary
