"""The lake: a Spark session with Delta, table locations, and idempotent writes.

Every job goes through ``get_spark`` so that Java, Delta and the jar cache are set up the same way under
plain ``python`` and under ``spark-submit``. Table locations are plain string joins on the lake root, so any
Hadoop-compatible URI (``s3a://``, ``abfss://``, ``hdfs://``, ``file:``) works as a root.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama import jars
from trialpanorama.config import Config
from trialpanorama.schemas import TABLES

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# lake.commit_retries / lake.commit_retry_backoff_s (conf/pipeline.yaml) travel in the session's conf, so
# the write functions below, which only get a session, honour the job's config.
RETRIES_CONF = "spark.trialpanorama.lake.commitRetries"
BACKOFF_CONF = "spark.trialpanorama.lake.commitRetryBackoffS"


# --------------------------------------------------------------------------------------------- Java
def _java_major(java_home: Path) -> int | None:
    release = java_home / "release"
    if not release.is_file():
        return None
    match = re.search(r'JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text(errors="replace"))
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def resolve_java_home(cfg: Config) -> str:
    """Pick the JDK Spark runs on: JAVA_HOME if set, else the first configured Java 17 install.

    A newer JDK may be the machine's default ``java``; Spark 4.2 is built and tested for 17, so we never
    fall back to whatever is on PATH silently.
    """
    wanted = int(cfg.get("spark.java_version", 17))
    env_home = os.environ.get("JAVA_HOME")
    if env_home:
        major = _java_major(Path(env_home))
        if major is not None and major != wanted:
            print(f"warning: JAVA_HOME={env_home} is Java {major}; Spark here is tested on Java {wanted}",
                  file=sys.stderr)
        return env_home
    for cand in cfg.get("spark.java_home_candidates") or []:
        path = Path(cand)
        if _java_major(path) == wanted:
            return str(path)
    raise RuntimeError(
        f"no Java {wanted} found: set JAVA_HOME to a Java {wanted} JDK or add it to spark.java_home_candidates"
    )


# -------------------------------------------------------------------------------------------- Spark
def _under_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands the Python driver its gateway port.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _submitted_conf_keys() -> set[str]:
    """The keys spark-submit already set (``--conf``, ``--properties-file``); empty under plain python.

    The JVM spark-submit started holds them as system properties; ``SparkConf()`` reads them once the
    Python side is attached to that JVM (``_ensure_initialized`` attaches, it starts nothing new here).
    """
    if not _under_spark_submit():
        return set()
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return {k for k, _ in SparkConf().getAll()}


def get_spark(cfg: Config, app_name: str | None = None) -> SparkSession:
    """A SparkSession with Delta enabled.

    Under ``spark-submit`` the submitter's --master/--packages/--jars win and nothing is added twice; under
    plain ``python`` the session is local (``spark.master``), the Delta jars come from the project cache
    when present, else from Maven Central through Spark's resolver (then cached for the next run).
    """
    builder = SparkSession.builder.appName(app_name or cfg.get("spark.app_name", "trialpanorama"))
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    submitted = _submitted_conf_keys()
    for key, value in (cfg.get("spark.conf") or {}).items():
        if key not in submitted:  # a cluster's --conf / spark-defaults.conf beat pipeline.yaml's laptop defaults
            builder = builder.config(key, str(value))
    builder = builder.config(RETRIES_CONF, str(int(cfg.get("lake.commit_retries", 0))))
    builder = builder.config(BACKOFF_CONF, str(float(cfg.get("lake.commit_retry_backoff_s", 1.0))))

    resolving = False
    if not _under_spark_submit():
        os.environ["JAVA_HOME"] = resolve_java_home(cfg)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers must run the same interpreter (and so see the same installed package) as the driver.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(str(cfg.get("spark.master", "local[*]")))
        cached = jars.cached_jars(cfg)
        if cached:
            builder = builder.config("spark.jars", ",".join(cached))
        else:
            resolving = True
            builder = builder.config("spark.jars.packages", ",".join(jars.delta_packages(cfg)))
            builder = builder.config("spark.jars.ivy", str(jars.ivy_dir(cfg)))
    try:
        spark = builder.getOrCreate()
    except Exception as exc:
        if not resolving:
            raise
        # Spark's resolver could not fetch the jars (no route to Maven Central, a flaky mirror): fetch the
        # same artifacts with Maven into the cache and start again with them as plain spark.jars.
        print(f"Spark's resolver failed ({exc.__class__.__name__}); fetching the Delta jars with Maven",
              file=sys.stderr)
        fetched = jars.fetch_with_maven(cfg)
        builder = builder.config("spark.jars.packages", "").config("spark.jars", ",".join(fetched))
        resolving = False
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(str(cfg.get("spark.log_level", "WARN")))
    if resolving:
        jars.record_resolved_jars(cfg, spark.sparkContext.getConf().get("spark.jars", ""))
    elif _under_spark_submit():
        conf = spark.sparkContext.getConf()
        added = " ".join(conf.get(k, "") for k in ("spark.jars", "spark.jars.packages", "spark.driver.extraClassPath"))
        if "delta" not in added:
            print("warning: no Delta jar in --packages/--jars; assuming the runtime ships Delta", file=sys.stderr)
    return spark


# ------------------------------------------------------------------------------------------- tables
def table_uri(lake_root: str, table: str) -> str:
    """Location of a named table: ``<root>/<layer>/<table>`` (layer from the schema registry)."""
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; known: {sorted(TABLES)}")
    root = lake_root.rstrip("/")
    if "://" not in root and not root.startswith("file:"):
        root = str(Path(root).expanduser().resolve())
    return f"{root}/{TABLES[table].layer}/{table}"


def table_exists(spark: SparkSession, uri: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, uri)


# The table's own commit files, read through Hadoop's FileSystem: ``DeltaTable.history()`` is a Spark job (0.3-2 s
# each here, and every write asks for its version and row counts), while a path-based table's history is
# exactly one ``NNNN.json`` per version in ``_delta_log``, each holding that commit's ``commitInfo``.
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
# How many commit files back ``history_entry`` reads before it asks Delta for the whole history instead.
_COMMIT_FILES_SCANNED = 20


def _delta_log(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    log = jvm.org.apache.hadoop.fs.Path(uri.rstrip("/") + "/_delta_log")
    return log.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), log


def commit_versions(spark: SparkSession, uri: str) -> list[int]:
    """Versions that have a commit file, newest first ([] when there is no table, or a ``_delta_log`` without a
    commit, e.g. the leftover of a job killed before its first commit). The newest commit file is never cleaned
    up, so the first one is the current version."""
    fs, log = _delta_log(spark, uri)
    if not fs.exists(log):
        return []
    names = (st.getPath().getName() for st in fs.listStatus(log))
    return sorted((int(m.group(1)) for m in map(_COMMIT_FILE.match, names) if m), reverse=True)


def table_version(spark: SparkSession, uri: str) -> int | None:
    """Current Delta version of a table, None if it does not exist (a file listing, no Spark job)."""
    versions = commit_versions(spark, uri)
    return versions[0] if versions else None


def commit_info(spark: SparkSession, uri: str, version: int) -> dict[str, Any] | None:
    """The ``commitInfo`` of one version, shaped like a row of ``DeltaTable.history()`` (``version``,
    ``operation``, ``operationMetrics``, ``userMetadata``, ...); None when that commit file is gone."""
    fs, log = _delta_log(spark, uri)
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(log, f"{version:020d}.json")
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        text = spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
    for line in text.splitlines():
        if '"commitInfo"' in line:
            action = json.loads(line)
            if "commitInfo" in action:
                return {"userMetadata": None, "operationMetrics": {}, **action["commitInfo"], "version": version}
    return None


def read_table(spark: SparkSession, uri: str, version: int | None = None) -> DataFrame:
    """Read a Delta table, optionally as of a given version (time travel)."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    return reader.load(uri)


def read_named(spark: SparkSession, lake_root: str, table: str, version: int | None = None) -> DataFrame:
    """Read a table by name; an absent table reads as empty with its declared schema."""
    uri = table_uri(lake_root, table)
    if version is None and not table_exists(spark, uri):
        return spark.createDataFrame([], TABLES[table].schema)
    return read_table(spark, uri, version)


def _conform(df: DataFrame, table: str) -> DataFrame:
    """Select the declared columns in declared order and types, so writes never drift from schemas.py."""
    schema = TABLES[table].schema
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"{table}: frame lacks columns {missing}")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _create(df: DataFrame, uri: str, table: str) -> None:
    spec = TABLES[table]
    writer = df.write.format("delta").mode("append")
    if spec.partition_by:
        writer = writer.partitionBy(*spec.partition_by)
    writer.save(uri)


# ------------------------------------------------------------------------------------ commit retry
# Delta's optimistic concurrency: a commit that lost to a concurrent one on the same table raises one of
# these (Java names; PySpark surfaces them as delta.exceptions.* or inside a Py4J/Spark error).
_CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
              "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
              "ProtocolChangedException", "DeltaConcurrentModificationException")


def is_commit_conflict(exc: BaseException) -> bool:
    """True when ``exc`` is Delta refusing a commit because another writer committed first."""
    try:
        from delta.exceptions import DeltaConcurrentModificationException

        if isinstance(exc, DeltaConcurrentModificationException):
            return True
    except ImportError:  # pragma: no cover - delta-spark is a dependency
        pass
    text = f"{type(exc).__name__}: {exc}"
    return any(name in text for name in _CONFLICTS)


USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def committed_write(spark: SparkSession, uri: str, table: str, write: Callable[[], None]) -> int | None:
    """``write`` under ``with_commit_retry``; returns the Delta version *this* write committed.

    The write is tagged (commitInfo.userMetadata, a fresh id), and its version is the history entry with that
    tag (``history_entry``): under a concurrent writer, "the table's latest version" after our commit may be
    the other job's.
    """
    tag = f"trialpanorama-write-{uuid.uuid4().hex}"
    previous = spark.conf.get(USER_METADATA_CONF, None)
    spark.conf.set(USER_METADATA_CONF, tag)
    try:
        with_commit_retry(spark, table, write)
    finally:
        if previous is None:
            spark.conf.unset(USER_METADATA_CONF)
        else:
            spark.conf.set(USER_METADATA_CONF, previous)
    row = history_entry(spark, uri, "userMetadata", tag)
    return int(row["version"]) if row is not None else table_version(spark, uri)


def history_entry(spark: SparkSession, uri: str, column: str, value: Any) -> Any:
    """The history entry whose ``column`` equals ``value`` (None if none), newest first: from the commit files
    (``commit_info``; a concurrent writer puts at most a few commits after ours), and from Delta's whole
    history only when the newest ``_COMMIT_FILES_SCANNED`` commits do not hold it."""
    versions = commit_versions(spark, uri)
    if column == "version":
        versions = [v for v in versions if v == value]
    for version in versions[:_COMMIT_FILES_SCANNED]:
        entry = commit_info(spark, uri, version)
        if entry is not None and entry.get(column) == value:
            return entry
    if len(versions) <= _COMMIT_FILES_SCANNED and column != "version":
        return None
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, uri).history().where(F.col(column) == value).first()
    return row.asDict() if row is not None else None


def with_commit_retry(spark: SparkSession, table: str, write: Callable[[], None]) -> int:
    """Run ``write`` (one whole idempotent write: existence check, then create or MERGE) until it commits.

    A lost commit wrote nothing visible (Delta commits are all-or-nothing), and every write here is a MERGE
    on keys or a create-then-MERGE, so running it again against the winner's version gives the same table
    as if the two writers had run one after the other. Bounded (lake.commit_retries) with jittered
    exponential backoff, so two writers do not collide again in lockstep. Returns the retries used.
    """
    retries = int(spark.conf.get(RETRIES_CONF, "0"))
    backoff = float(spark.conf.get(BACKOFF_CONF, "1.0"))
    attempt = 0
    while True:
        try:
            write()
            return attempt
        except Exception as exc:
            if attempt >= retries or not is_commit_conflict(exc):
                raise
            attempt += 1
            wait = backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            print(f"lake: {table}: concurrent commit ({first}); retry {attempt}/{retries} in {wait:.1f}s",
                  file=sys.stderr, flush=True)
            time.sleep(wait)


@dataclass
class WriteResult:
    table: str
    uri: str
    version: int | None
    rows_written: int


def upsert(spark: SparkSession, lake_root: str, table: str, df: DataFrame,
           hash_col: str = "record_hash") -> WriteResult:
    """Idempotent MERGE on the table's keys: insert new keys, update a key only if its hash changed.

    The source is deduplicated on the keys first (MERGE refuses two source rows for one target row);
    among duplicates the greatest hash wins, so the outcome does not depend on input order.
    """
    spec = TABLES[table]
    uri = table_uri(lake_root, table)
    df = _conform(df, table)
    if hash_col in df.columns:
        from pyspark.sql.window import Window

        w = Window.partitionBy(*spec.keys).orderBy(F.col(hash_col).desc())
        df = df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")
    else:
        df = df.dropDuplicates(list(spec.keys))

    def write() -> None:
        if not table_exists(spark, uri):
            _create(df, uri, table)
            return
        from delta.tables import DeltaTable

        on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.keys)
        merge = DeltaTable.forPath(spark, uri).alias("t").merge(df.alias("s"), on)
        if hash_col in df.columns:
            merge = merge.whenMatchedUpdateAll(condition=f"NOT (t.`{hash_col}` <=> s.`{hash_col}`)")
        merge.whenNotMatchedInsertAll().execute()

    return WriteResult(table, uri, committed_write(spark, uri, table, write), -1)


def replace_for_keys(spark: SparkSession, lake_root: str, table: str, rows: DataFrame,
                     changed_keys: DataFrame, key: str = "study_id") -> WriteResult:
    """Replace every row of the given parent keys with ``rows``, in one atomic Delta commit.

    Child tables (conditions, arms, ...) have no stable row key across versions of a study, so a new
    version of a study replaces all of its child rows. The MERGE source is the new rows (never matching)
    plus one marker row per changed key (matching, and deleting, that key's old rows).
    """
    uri = table_uri(lake_root, table)
    rows = _conform(rows, table)
    from delta.tables import DeltaTable

    new_rows = rows.withColumn("_merge_key", F.lit(None).cast("string")).withColumn("_is_row", F.lit(True))
    markers = changed_keys.select(F.col(key).cast("string").alias("_merge_key")).distinct()
    for field in TABLES[table].schema.fields:
        markers = markers.withColumn(field.name, F.lit(None).cast(field.dataType))
    markers = markers.withColumn("_is_row", F.lit(False)).select(new_rows.columns)
    source = new_rows.unionByName(markers)
    cols = {f.name: f"s.`{f.name}`" for f in TABLES[table].schema.fields}

    def write() -> None:
        if not table_exists(spark, uri):
            _create(rows, uri, table)
            return
        (
            DeltaTable.forPath(spark, uri).alias("t")
            .merge(source.alias("s"), f"t.`{key}` = s._merge_key")
            .whenMatchedDelete()
            .whenNotMatchedInsert(condition="s._is_row", values=cols)
            .execute()
        )

    return WriteResult(table, uri, committed_write(spark, uri, table, write), -1)


def list_tables(spark: SparkSession, lake_root: str) -> list[tuple[str, str]]:
    """Every Delta table under the lake root as (relative name, uri), found through Hadoop's FileSystem."""
    root = lake_root.rstrip("/")
    if "://" not in root and not root.startswith("file:"):
        root = str(Path(root).expanduser().resolve())
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    root_path = jvm.org.apache.hadoop.fs.Path(root)
    fs = root_path.getFileSystem(hconf)
    if not fs.exists(root_path):
        return []
    root_path = fs.makeQualified(root_path)
    found: list[tuple[str, str]] = []
    stack = [root_path]
    while stack:
        path = stack.pop()
        statuses = fs.listStatus(path)
        names = {s.getPath().getName() for s in statuses}
        if "_delta_log" in names:
            uri = path.toString()
            found.append((uri[len(root_path.toString()):].lstrip("/"), uri))
            continue
        stack.extend(s.getPath() for s in statuses if s.isDirectory() and not s.getPath().getName().startswith(("_", ".")))
    return sorted(found)


def operation_metrics(spark: SparkSession, uri: str, version: int | None = None) -> dict[str, int]:
    """Row counts of one commit (``version``; default the latest), from Delta's own history (no scan of the data).

    A job reporting its own write passes the version it committed: with a concurrent writer, the latest commit
    may be the other job's by the time the history is read.
    """
    if version is None:
        version = table_version(spark, uri)
        if version is None:
            return {}
    row = history_entry(spark, uri, "version", version)
    if row is None:
        return {}
    metrics = row["operationMetrics"] or {}
    wanted = {
        "numTargetRowsInserted": "inserted", "numTargetRowsUpdated": "updated",
        "numTargetRowsDeleted": "deleted", "numDeletedRows": "deleted", "numOutputRows": "output_rows",
    }
    out = {short: int(metrics[key]) for key, short in wanted.items() if key in metrics}
    if row["operation"] == "WRITE" and "output_rows" in out:
        out["inserted"] = out.pop("output_rows")
    out.pop("output_rows", None)
    return out


def table_stats(spark: SparkSession, lake_root: str) -> dict[str, dict[str, int | None]]:
    """Row count and current version of every Delta table under the root, keyed by ``layer/table``."""
    stats: dict[str, dict[str, int | None]] = {}
    for name, uri in list_tables(spark, lake_root):
        stats[name] = {"rows": read_table(spark, uri).count(), "version": table_version(spark, uri)}
    return stats


def sync_snapshot(spark: SparkSession, lake_root: str, table: str, df: DataFrame) -> WriteResult | None:
    """Make the table equal to ``df`` (a full snapshot keyed by the table's keys), committing only a diff.

    Derived tables (gold) are recomputed whole; writing them with one MERGE that inserts, updates and
    deletes only what differs keeps re-runs commit-free and the Delta history meaningful. Returns None
    when nothing differs.
    """
    spec = TABLES[table]
    uri = table_uri(lake_root, table)
    df = _conform(df, table).dropDuplicates(list(spec.keys))
    from delta.tables import DeltaTable

    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.keys)
    others = [f.name for f in spec.schema.fields if f.name not in spec.keys]
    differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in others) or "false"
    wrote = []

    def write() -> None:
        if not table_exists(spark, uri):
            _create(df, uri, table)
            wrote.append(True)
            return
        current = read_table(spark, uri)
        if df.exceptAll(current).isEmpty() and current.exceptAll(df).isEmpty():
            return
        (
            DeltaTable.forPath(spark, uri).alias("t").merge(df.alias("s"), on)
            .whenMatchedUpdateAll(condition=differs)
            .whenNotMatchedInsertAll()
            .whenNotMatchedBySourceDelete()
            .execute()
        )
        wrote.append(True)

    with_commit_retry(spark, table, write)
    if not wrote:
        return None
    return WriteResult(table, uri, table_version(spark, uri), -1)
