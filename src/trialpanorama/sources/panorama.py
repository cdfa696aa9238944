"""The published TrialPanorama database (parquet) into the same silver tables the registry ingests fill.

A user who has the Hugging Face download gets a full lake without the raw registry dumps. Which published
column fills which silver column lives in ``conf/panorama.yaml``; this module only knows how to apply it.

The unit of change is a study: its ``studies`` row plus its rows of every study-keyed table (conditions,
drugs, endpoints, ...), assembled into one JSON record per study_id. That record is what ``staging.stage``
compares with the bronze ``panorama_raw`` table, so a study whose rows changed in a newer release replaces
all of its silver rows, and re-importing the same files writes nothing. Rows without a study_id, and
study_ids that have child rows but no studies row, go to ``rejects``. The study-less ``relations`` table
goes to ``panorama_relations`` as published (insert-only) for the gold relations job.

Registry data wins over the published snapshot: a silver ``studies`` row whose source_version does not
start with ``panorama|`` was written by a registry ingest, and the import leaves that study alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from pathlib import PurePosixPath
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, NumericType, StructType
from pyspark.sql.window import Window

from trialpanorama import lake
from trialpanorama.config import Config, load_sibling_yaml
from trialpanorama.normalize.ages import age_in_years
from trialpanorama.progress import progress
from trialpanorama.schemas import TABLES
from trialpanorama.sources import staging
from trialpanorama.sources.files import list_files, local_path, quoted_column, salvage_file
from trialpanorama.sources.staging import IngestSummary

SOURCE = "panorama"
VERSION_PREFIX = "panorama|"
CONF_NAME = "panorama.yaml"
_SPLIT_SUFFIX = re.compile(r"(?:[_-]part[_-]?\d+|-\d{5}-of-\d{5})$", re.IGNORECASE)
TRANSFORMS = ("str", "text", "upper", "phase", "bool", "age_years", "int", "double")
_TRUE = ("true", "t", "yes", "y", "1", "accepts healthy volunteers")
_FALSE = ("false", "f", "no", "n", "0")


# ------------------------------------------------------------------------------------------ mapping
@dataclass(frozen=True)
class TableMap:
    """How one published table becomes one silver table (from conf/panorama.yaml)."""

    name: str
    silver: str
    columns: dict[str, Any]
    keyed_by_study: bool = True
    sequence: dict[str, Any] | None = None

    def sources(self) -> set[str]:
        """The published columns this mapping reads."""
        out = set()
        for spec in self.columns.values():
            if isinstance(spec, str):
                out.add(spec)
            elif "from" in spec:
                out.add(spec["from"])
        return out


@dataclass(frozen=True)
class Mapping:
    release: str
    tables: dict[str, TableMap]
    not_imported: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return VERSION_PREFIX + self.release


def load_mapping(cfg: Config) -> Mapping:
    """conf/panorama.yaml, checked against schemas.py so a typo fails at job start, not mid-write."""
    data = load_sibling_yaml(cfg, CONF_NAME)
    tables = {}
    for name, spec in (data.get("tables") or {}).items():
        tm = TableMap(name, spec["silver"], dict(spec.get("columns") or {}), bool(spec.get("keyed_by_study", True)),
                      spec.get("sequence"))
        declared = {f.name for f in TABLES[tm.silver].schema.fields}
        unknown = set(tm.columns) - declared
        if unknown:
            raise ValueError(f"{CONF_NAME}: {name} maps to columns {sorted(unknown)} that {tm.silver} lacks")
        bad = {v["as"] for v in tm.columns.values() if isinstance(v, dict) and v.get("as") not in (None, *TRANSFORMS)}
        if bad:
            raise ValueError(f"{CONF_NAME}: {name} uses unknown transforms {sorted(bad)}; known: {TRANSFORMS}")
        tables[name] = tm
    if "studies" not in tables:
        raise ValueError(f"{CONF_NAME}: a `studies` table mapping is required")
    return Mapping(str(data.get("release", "unknown")), tables, dict(data.get("not_imported") or {}))


def table_of(uri: str, known: set[str]) -> str | None:
    """The published table a parquet file belongs to: its stem without a split suffix, else the nearest
    parent folder that names a table (``adverse_events/train/0000.parquet``); None if neither does."""
    path = PurePosixPath(uri.split("://", 1)[-1])
    stem = _SPLIT_SUFFIX.sub("", path.stem)
    if stem in known:
        return stem
    return next((p for p in reversed(path.parent.parts) if p in known), None)


def group_files(files: list[str], mapping: Mapping) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Parquet files per published table, and every other file with the reason it is skipped."""
    known = set(mapping.tables) | set(mapping.not_imported)
    tables: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for uri in files:
        name = PurePosixPath(uri).name
        table = table_of(uri, known) if name.lower().endswith(".parquet") else None
        if not name.lower().endswith(".parquet"):
            skipped[uri] = "not a parquet file"
        elif table is None:
            skipped[uri] = "not a table of the published database"
        elif table in mapping.not_imported:
            skipped[uri] = f"not imported: {mapping.not_imported[table]}"
        else:
            tables.setdefault(table, []).append(uri)
    return tables, skipped


# --------------------------------------------------------------------------------------- transforms
def _text(c: Column, dtype: DataType) -> Column:
    if isinstance(dtype, ArrayType):
        c = F.array_join(F.transform(c, lambda x: x.try_cast("string")), "; ")
    s = F.trim(c.try_cast("string"))
    return F.when(s != "", s)


def _upper(c: Column, dtype: DataType) -> Column:
    s = F.regexp_replace(F.upper(_text(c, dtype)), r"[^A-Z0-9]+", "_")
    return F.regexp_replace(s, r"^_+|_+$", "")


def _phase(c: Column, dtype: DataType) -> Column:
    """ClinicalTrials.gov spelling: "Phase 2/Phase 3", "PHASE2, PHASE3" -> PHASE2/PHASE3; N/A -> NA."""
    s = F.upper(_text(c, dtype))
    s = F.regexp_replace(s, r"^(N/A|NOT APPLICABLE)$", "NA")
    s = F.regexp_replace(s, r"EARLY\s*PHASE\s*", "EARLY_PHASE")
    s = F.regexp_replace(s, r"PHASE\s*", "PHASE")
    for roman, digit in (("IV", "4"), ("III", "3"), ("II", "2"), ("I", "1")):
        s = F.regexp_replace(s, rf"PHASE{roman}\b", f"PHASE{digit}")
    parts = F.filter(F.transform(F.split(s, r"\s*(?:/|,|;|\||&|\bAND\b)\s*"), F.trim), lambda x: x != "")
    return F.when(s.isNotNull(), F.array_join(F.array_sort(F.array_distinct(parts)), "/"))


def _bool(c: Column, dtype: DataType) -> Column:
    """Booleans however written (True, "Yes", "y", "1", "Accepts Healthy Volunteers"); anything else NULL."""
    s = F.lower(_text(c, dtype))
    return F.when(s.isin(*_TRUE), F.lit(True)).when(s.isin(*_FALSE), F.lit(False))


def _age(units: dict[str, float]) -> Callable[[Column, DataType], Column]:
    """Ages in years: numbers as they are, "6 Months"-style text through the shared age units."""

    def age(c: Column, dtype: DataType) -> Column:
        s = _text(c, dtype)
        return F.coalesce(s.try_cast("double"), age_in_years(s, units))
    return age


def transforms(units: dict[str, float]) -> dict[str, Callable[[Column, DataType], Column]]:
    """The `as:` names conf/panorama.yaml may use. Every one is NULL-safe and never raises under ANSI mode."""
    return {
        "str": _text, "text": _text, "upper": _upper, "phase": _phase, "bool": _bool, "age_years": _age(units),
        "int": lambda c, t: _text(c, t).try_cast("double").try_cast("int"),
        "double": lambda c, t: _text(c, t).try_cast("double"),
    }


class Mapper:
    """Builds silver columns from a struct of published columns, per conf/panorama.yaml."""

    def __init__(self, mapping: Mapping, fields: dict[str, StructType], units: dict[str, float]):
        self.mapping = mapping
        self.fields = fields  # published table -> its schema as read
        self.transforms = transforms(units)

    def columns(self, table: str, struct: str) -> dict[str, Column]:
        """Silver column -> expression over ``struct`` (a column holding one published row)."""
        tm, schema = self.mapping.tables[table], self.fields[table]
        types = {f.name: f.dataType for f in schema.fields}
        out = {}
        for silver, spec in tm.columns.items():
            spec = {"from": spec} if isinstance(spec, str) else spec
            if "value" in spec:
                out[silver] = F.lit(spec["value"])
            elif spec["from"] not in types:
                out[silver] = F.lit(None)
            else:
                fn = self.transforms[spec.get("as", "str")]
                out[silver] = fn(F.col(struct).getField(spec["from"]), types[spec["from"]])
        return out

    def frame(self, rows: DataFrame, table: str, struct: str, extra: dict[str, Column]) -> DataFrame:
        """The silver table's columns (declared order and types) for rows holding ``struct``."""
        tm = self.mapping.tables[table]
        cols = {**self.columns(table, struct), **extra}
        if tm.sequence:
            order = [cols[c] for c in sorted(tm.columns)]
            n = F.row_number().over(Window.partitionBy("study_id").orderBy(*order))
            prefix = tm.sequence.get("prefix")
            cols[tm.sequence["column"]] = F.concat(F.lit(prefix), n.cast("string")) if prefix else n
        schema = TABLES[tm.silver].schema
        return rows.select(*[cols.get(f.name, F.lit(None)).try_cast(f.dataType).alias(f.name) for f in schema.fields])


# ------------------------------------------------------------------------------------------ reading
def _as_string(c: Column, dtype: DataType) -> Column:
    return F.to_json(c) if isinstance(dtype, (ArrayType, StructType, MapType)) else c.cast("string")


def open_parquet(spark: SparkSession, files: list[str]) -> tuple[list[DataFrame], dict[str, str]]:
    """Each file as a frame with its source_file, and the files Spark cannot open (a truncated part whose
    footer is gone, a file that only looks like parquet) with the reason: those become rejects, not a failed
    import. A part whose footer reads but whose pages are corrupt still fails the job when read."""
    frames, unreadable = [], {}
    for f in files:
        try:
            frames.append(spark.read.parquet(f).withColumn("source_file", F.col("_metadata.file_path")))
        except (PySparkException, Py4JJavaError) as exc:
            unreadable[f] = f"unreadable parquet file: {str(exc).strip().splitlines()[0][:500]}"
    return frames, unreadable


def read_table(frames: list[DataFrame]) -> DataFrame:
    """One published table from its parquet files' frames, unioned by name: parts may lack columns, and a
    column whose type differs between parts is read as text (union's own coercion would cast "18 Years" to
    a number, which fails under ANSI mode); numbers of different widths are left to union to widen."""
    types: dict[str, set[DataType]] = {}
    for df in frames:
        for f in df.schema.fields:
            types.setdefault(f.name, set()).add(f.dataType)
    mixed = {name for name, ts in types.items()
             if len(ts) > 1 and not all(isinstance(t, NumericType) for t in ts)}
    frames = [df.select(*[_as_string(quoted_column(f.name), f.dataType).alias(f.name) if f.name in mixed
                          else quoted_column(f.name) for f in df.schema.fields]) for df in frames]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def count_rows(tables: dict[str, DataFrame]) -> dict[str, int]:
    """Rows per published table, in one Spark job."""
    if not tables:
        return {}
    tagged = reduce(DataFrame.unionByName, [df.select(F.lit(t).alias("t")) for t, df in tables.items()])
    counts = {r["t"]: r["n"] for r in tagged.groupBy("t").agg(F.count("*").alias("n")).collect()}
    return {t: counts.get(t, 0) for t in sorted(tables)}


def _published_names(df: DataFrame) -> list[str]:
    return [c for c in df.columns if c != "source_file"]


def _published(df: DataFrame) -> list[Column]:
    return [quoted_column(c) for c in _published_names(df)]


def _study_id(df: DataFrame) -> Column:
    sid = F.trim(F.col("study_id").try_cast("string")) if "study_id" in df.columns else F.lit(None).cast("string")
    return F.when(sid != "", sid)


def _rows_without_study(df: DataFrame, table: str) -> DataFrame:
    return df.where(_study_id(df).isNull()).select(
        F.lit(None).cast("string").alias("study_id"), "source_file",
        F.to_json(F.struct(*_published(df))).alias("raw"), F.lit(f"missing study_id ({table})").alias("reason"))


def _with_unreadable(spark: SparkSession, records: DataFrame | None, unreadable: dict[str, str],
                     mapping: Mapping, cfg: Config) -> DataFrame | None:
    """The records plus one reject per unreadable file, carrying the file's readable start as raw text."""
    if not unreadable:
        return records
    limit = int(cfg.require("sources.broken_file_raw_bytes"))
    bad = spark.createDataFrame([(f, salvage_file(local_path(f), limit), why) for f, why in sorted(unreadable.items())],
                                "source_file STRING, raw STRING, reason STRING").select(
        F.lit(None).cast("string").alias("study_id"), "source_file", "raw", "reason",
        F.sha2(F.concat_ws("\u0001", "source_file", "raw"), 256).alias("record_hash"),
        F.lit(mapping.version).alias("source_version"))
    return bad if records is None else records.unionByName(bad, allowMissingColumns=True)


def study_records(tables: dict[str, DataFrame], mapping: Mapping) -> DataFrame | None:
    """One record per studies row (with all child rows of its study_id), one per orphan study_id, one per
    row without a study_id. Columns: study_id, source_file, raw, reason, record_hash, source_version, and one
    column per published table (the studies struct, sorted arrays of child structs).

    All tables are stacked into one wide frame (one struct column per table) and grouped once by
    study_id: one shuffle, where joining table by table would take one per table.
    """
    keyed = [t for t, tm in mapping.tables.items() if tm.keyed_by_study and t in tables]
    if not keyed:
        return None
    children = [t for t in keyed if t != "studies"]
    wide = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), [
        tables[t].where(_study_id(tables[t]).isNotNull()).select(
            _study_id(tables[t]).alias("study_id"), F.lit(t).alias("_table"),
            (F.struct(F.struct(*_published(tables[t])).alias("row"), F.col("source_file").alias("file"))
             if t == "studies" else F.struct(*_published(tables[t]))).alias(t),
            "source_file")
        for t in keyed])
    grouped = wide.groupBy("study_id").agg(
        *[F.collect_list(t).alias(t) for t in keyed],  # collect_list skips the other tables' NULLs
        *[F.min(F.when(F.col("_table") == t, F.col("source_file"))).alias(f"_file_{t}") for t in children])
    studies = (F.explode_outer("studies") if "studies" in keyed
               else F.lit(None).cast("struct<row: struct<study_id: string>, file: string>"))
    records = grouped.select("study_id", studies.alias("_s"), *[F.array_sort(t).alias(t) for t in children],
                             *[f"_file_{t}" for t in children])
    present = [F.when(F.size(t) > 0, F.lit(t)) for t in children]
    records = records.select(
        "study_id", F.col("_s.row").alias("studies"), *children,
        F.coalesce(F.col("_s.file"), *[F.col(f"_file_{t}") for t in children]).alias("source_file"),
        F.to_json(F.struct(F.col("_s.row").alias("studies"), *children)).alias("raw"),
        F.when(F.col("_s").isNull(), F.concat(F.lit("no studies row for this study_id (rows in: "),
                                              F.concat_ws(", ", *present), F.lit(")"))).alias("reason"),
    )
    for t in keyed:
        records = records.unionByName(_rows_without_study(tables[t], t), allowMissingColumns=True)
    return records.withColumn("record_hash", F.sha2("raw", 256)).withColumn("source_version", F.lit(mapping.version))


# ------------------------------------------------------------------------------------------- silver
def registry_owned(spark: SparkSession, root: str) -> DataFrame:
    """study_ids whose silver studies row came from a registry ingest, not from this import."""
    studies = lake.read_named(spark, root, "studies")
    return studies.where(~F.coalesce(F.col("source_version"), F.lit("")).startswith(VERSION_PREFIX)).select("study_id")


def silver_frames(changed: DataFrame, mapper: Mapper, updated_at: Column) -> dict[str, DataFrame]:
    """studies plus every study-keyed silver table (empty where the input had no such table, so a changed
    study never keeps rows of its previous version)."""
    mapping = mapper.mapping
    acc = mapper.columns("studies", "studies")
    none = F.lit(None).cast("int")
    actual, target, year = (acc.get(c, none) for c in ("actual_accrual", "target_accrual", "start_year"))
    # make_date raises on impossible years under ANSI mode: keep to plausible ones
    start = F.when(year.between(1800, 2200), F.make_date(year, F.lit(1), F.lit(1)))
    studies = mapper.frame(changed, "studies", "studies", {
        "study_id": F.col("study_id"),
        "enrollment": F.coalesce(actual, target),
        "enrollment_type": F.when(actual.isNotNull(), F.lit("ACTUAL")).when(target.isNotNull(), F.lit("ESTIMATED")),
        "start_date": start, "start_date_precision": F.when(start.isNotNull(), F.lit("year")),
        "source_version": F.lit(mapping.version), "record_hash": F.col("record_hash"), "updated_at": updated_at,
    })
    frames = {"studies": studies}
    spark = changed.sparkSession
    for t, tm in mapping.tables.items():
        if t == "studies" or not tm.keyed_by_study:
            continue
        if t not in changed.columns:
            frames[tm.silver] = spark.createDataFrame([], TABLES[tm.silver].schema)
            continue
        rows = changed.select("study_id", F.explode(t).alias("r"))
        extra: dict[str, Column] = {"study_id": F.col("study_id")}
        cols = mapper.columns(t, "r")
        if tm.silver in ("conditions", "drugs"):
            code = cols.get("condition_mesh_id" if tm.silver == "conditions" else "drugbank_id", F.lit(None))
            extra["link_method"] = F.when(code.isNotNull(), F.lit("panorama"))  # the published annotator's code
        frames[tm.silver] = mapper.frame(rows, t, "r", extra)
    return frames


# ---------------------------------------------------------------------------------------- relations
def import_relations(spark: SparkSession, root: str, df: DataFrame, mapper: Mapper, ingested_at: Column,
                     report: Callable[[lake.WriteResult], None]) -> dict[str, int]:
    """Insert the relations not yet in ``panorama_relations``; rows lacking an end go to rejects."""
    tm = mapper.mapping.tables["relations"]
    cols = mapper.columns("relations", "_row")
    rows = df.select(F.struct(*_published(df)).alias("_row"), "source_file").select(
        *[c.alias(n) for n, c in cols.items()], "source_file", F.to_json("_row").alias("raw"))
    rows = rows.withColumn("reason", F.when(F.col("head_id").isNull() | F.col("tail_id").isNull(),
                                            F.lit("missing head_id or tail_id (relations)")))
    counts = {r["bad"]: r["n"] for r in rows.groupBy(F.col("reason").isNotNull().alias("bad"))
              .agg(F.count("*").alias("n")).collect()}
    keys = TABLES[tm.silver].keys
    good = rows.where("reason IS NULL").dropDuplicates(list(keys))
    known = lake.read_named(spark, root, tm.silver).select(*keys)
    on = reduce(lambda a, b: a & b, [good[k].eqNullSafe(known[k]) for k in keys])
    fresh = good.join(known, on, "left_anti").withColumn("ingested_at", ingested_at)
    new = fresh.count()
    if new:
        report(lake.upsert(spark, root, tm.silver, fresh))
    if counts.get(True):
        staging.write_rejects(spark, root, rows, ingested_at, SOURCE, report)
    return {"rows_in": counts.get(False, 0) + counts.get(True, 0), "accepted": counts.get(False, 0),
            "rejected": counts.get(True, 0), "new": new}


# ------------------------------------------------------------------------------------------- ingest
@dataclass
class PanoramaSummary:
    files: int
    skipped_files: dict[str, str]
    rows_read: dict[str, int]
    studies: IngestSummary
    relations: dict[str, int]
    kept_registry_version: int
    unmapped_columns: dict[str, list[str]]
    missing_columns: dict[str, list[str]]

    def as_result(self) -> dict[str, Any]:
        return {"files": self.files, "skipped_files": self.skipped_files, "rows_read": self.rows_read,
                **{k: v for k, v in self.studies.as_result().items() if k != "files"},
                "kept_registry_version": self.kept_registry_version, "relations": self.relations,
                "unmapped_columns": self.unmapped_columns, "missing_columns": self.missing_columns}

    def metrics(self) -> dict[str, int]:
        return {**self.studies.metrics(), "files": self.files, "skipped_files": len(self.skipped_files),
                "kept_registry_version": self.kept_registry_version,
                **{f"relations_{k}": v for k, v in self.relations.items()}}


def _column_report(tables: dict[str, DataFrame], mapping: Mapping) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    unmapped, missing = {}, {}
    for t, df in tables.items():
        published, used = set(_published_names(df)), mapping.tables[t].sources() | {"study_id"}
        if published - used:
            unmapped[t] = sorted(published - used)
        if used - published - {"study_id"}:
            missing[t] = sorted(used - published - {"study_id"})
    return unmapped, missing


def ingest(spark: SparkSession, cfg: Config, inputs: list[str], ingested_at: Column,
           on_write: Callable[[lake.WriteResult], None] | None = None) -> PanoramaSummary:
    """Import the parquet files of the published database; re-importing the same files writes nothing."""
    report = on_write or (lambda result: None)
    mapping = load_mapping(cfg)
    files = list_files(spark, inputs)
    by_table, skipped = group_files(files, mapping)
    n_files = sum(len(v) for v in by_table.values())
    progress(f"panorama: {n_files} parquet files of {len(by_table)} tables, {len(skipped)} files skipped")
    tables, unreadable = {}, {}
    for t, fs in sorted(by_table.items()):
        frames, bad = open_parquet(spark, fs)
        unreadable.update(bad)
        if frames:
            tables[t] = read_table(frames)
    rows_read = count_rows(tables)
    mapper = Mapper(mapping, {t: df.schema for t, df in tables.items()},
                    load_sibling_yaml(cfg, "normalize.yaml")["age_units_in_years"])
    kept = {"n": 0}

    def silver(changed: DataFrame) -> dict[str, DataFrame]:
        if lake.table_exists(spark, lake.table_uri(cfg.lake_root, "studies")):
            owned = registry_owned(spark, cfg.lake_root)
            kept["n"] = changed.join(owned, "study_id", "left_semi").count()
            changed = changed.join(owned, "study_id", "left_anti")
        return silver_frames(changed, mapper, ingested_at)

    records = _with_unreadable(spark, study_records(tables, mapping), unreadable, mapping, cfg)
    summary = IngestSummary(n_files, 0, 0, 0) if records is None else staging.stage(
        spark, cfg.lake_root, source=SOURCE, parsed=records, key="study_id", bronze_table="panorama_raw",
        bronze_key="study_id", n_files=n_files, ingested_at=ingested_at, silver=silver,
        bronze=lambda c: c.select("study_id", "raw", "source_file", "record_hash", "source_version",
                                  ingested_at.alias("ingested_at")),
        report=report, parent_table="studies", parent_key="study_id",
        max_reasons=staging.summary_max_reasons(cfg), storage_level=staging.cache_level(cfg))
    relations = ({"rows_in": 0, "accepted": 0, "rejected": 0, "new": 0} if "relations" not in tables
                 else import_relations(spark, cfg.lake_root, tables["relations"], mapper, ingested_at, report))
    if kept["n"]:
        progress(f"panorama: {kept['n']} changed studies left as their registry ingest wrote them")
    unmapped, missing = _column_report(tables, mapping)
    return PanoramaSummary(n_files, skipped, rows_read, summary, relations, kept["n"], unmapped, missing)
