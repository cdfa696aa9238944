"""The lake helpers on real Spark + Delta: locations, idempotent MERGE, child-row replacement, time travel."""

from datetime import datetime

import pytest
from pyspark.sql import functions as F

from trialpanorama import jars, lake


def _studies(spark, rows):
    """Minimal `studies` rows: (study_id, title, record_hash); other columns NULL."""
    from trialpanorama.schemas import TABLES

    df = spark.createDataFrame(rows, "study_id STRING, title STRING, record_hash STRING")
    for field in TABLES["studies"].schema.fields:
        if field.name not in df.columns:
            df = df.withColumn(field.name, F.lit(None).cast(field.dataType))
    return df


def test_table_uri_works_for_any_hadoop_uri(tmp_path):
    assert lake.table_uri("s3a://bucket/lake/", "studies") == "s3a://bucket/lake/silver/studies"
    assert lake.table_uri("abfss://c@acct.dfs.core.windows.net/tp", "ctgov_raw") == (
        "abfss://c@acct.dfs.core.windows.net/tp/bronze/ctgov_raw")
    assert lake.table_uri("hdfs://nn:8020/tp", "rejects") == "hdfs://nn:8020/tp/bronze/rejects"
    assert lake.table_uri(str(tmp_path), "studies") == f"{tmp_path}/silver/studies"
    with pytest.raises(KeyError):
        lake.table_uri("/x", "no_such_table")


def test_a_write_reports_its_own_commit_when_another_commit_follows(spark, lake_cfg):
    """The version a write reports is the commit it made, not whatever is latest when it looks (a concurrent
    writer's commit can land in between): here a second, untagged commit lands before the lookup."""
    root = lake_cfg.lake_root
    first = lake.upsert(spark, root, "studies", _studies(spark, [("S1", "a", "h1")]))
    uri = first.uri

    def ours_then_theirs() -> None:
        _studies(spark, [("S2", "b", "h2")]).write.format("delta").mode("append").save(uri)  # ours: tagged
        tag = spark.conf.get(lake.USER_METADATA_CONF)
        spark.conf.unset(lake.USER_METADATA_CONF)  # "another writer": no tag of ours
        try:
            spark.sql(f"UPDATE delta.`{uri}` SET title = 'x' WHERE study_id = 'S1'")
        finally:
            spark.conf.set(lake.USER_METADATA_CONF, tag)

    version = lake.committed_write(spark, uri, "studies", ours_then_theirs)
    assert (first.version, version, lake.table_version(spark, uri)) == (0, 1, 2)
    assert spark.conf.get(lake.USER_METADATA_CONF, None) is None  # the tag does not outlive the write
    assert lake.operation_metrics(spark, uri, 1) == {"inserted": 1}  # an append: rows in, nothing updated
    assert spark.sql(f"DESCRIBE HISTORY delta.`{uri}` LIMIT 1").first()["operation"] == "UPDATE"  # theirs


def test_commit_files_agree_with_delta_history(spark, lake_cfg, monkeypatch):
    """The commit-file reader (no Spark job) must say what DESCRIBE HISTORY says, for every version: the writes'
    versions and row counts come from it. A tag older than the scanned window is still found (Delta's history)."""
    root = lake_cfg.lake_root
    uri = lake.upsert(spark, root, "studies", _studies(spark, [("S1", "a", "h1")])).uri
    lake.upsert(spark, root, "studies", _studies(spark, [("S1", "a2", "h1b"), ("S2", "b", "h2")]))
    spark.sql(f"DELETE FROM delta.`{uri}` WHERE study_id = 'S2'")
    history = {r["version"]: r for r in spark.sql(f"DESCRIBE HISTORY delta.`{uri}`").collect()}
    assert lake.commit_versions(spark, uri) == sorted(history, reverse=True) == [2, 1, 0]
    assert lake.table_version(spark, uri) == 2
    for version, row in history.items():
        entry = lake.commit_info(spark, uri, version)
        assert (entry["version"], entry["operation"], entry["userMetadata"]) == (
            version, row["operation"], row["userMetadata"])
        assert entry["operationMetrics"] == dict(row["operationMetrics"])
    assert lake.operation_metrics(spark, uri, 1) == {"inserted": 1, "updated": 1, "deleted": 0}
    assert lake.operation_metrics(spark, uri)["deleted"] == 1
    tag = history[0]["userMetadata"]
    assert tag.startswith("trialpanorama-write-")
    monkeypatch.setattr(lake, "_COMMIT_FILES_SCANNED", 1)  # version 0 is now beyond the commit files read
    assert lake.history_entry(spark, uri, "userMetadata", tag)["version"] == 0
    assert lake.history_entry(spark, uri, "userMetadata", "no-such-tag") is None
    assert lake.commit_versions(spark, lake.table_uri(root, "arms")) == []
    assert lake.table_version(spark, lake.table_uri(root, "arms")) is None


def test_upsert_is_idempotent_and_updates_only_changed_hashes(spark, lake_cfg):
    root = lake_cfg.lake_root
    first = lake.upsert(spark, root, "studies", _studies(spark, [("S1", "a", "h1"), ("S2", "b", "h2")]))
    assert first.version == 0
    again = lake.upsert(spark, root, "studies", _studies(spark, [("S1", "a", "h1"), ("S2", "b", "h2")]))
    assert lake.operation_metrics(spark, again.uri) == {"inserted": 0, "updated": 0, "deleted": 0}
    changed = lake.upsert(spark, root, "studies", _studies(spark, [("S1", "a2", "h1b"), ("S3", "c", "h3"),
                                                                    ("S3", "c", "h3")]))
    assert lake.operation_metrics(spark, changed.uri) == {"inserted": 1, "updated": 1, "deleted": 0}
    rows = {r.study_id: r.title for r in lake.read_table(spark, changed.uri).collect()}
    assert rows == {"S1": "a2", "S2": "b", "S3": "c"}
    # time travel: version 0 still has the original title
    v0 = {r.study_id: r.title for r in lake.read_table(spark, changed.uri, version=0).collect()}
    assert v0 == {"S1": "a", "S2": "b"}


def test_replace_for_keys_swaps_all_child_rows_of_changed_parents_in_one_commit(spark, lake_cfg):
    root = lake_cfg.lake_root
    schema = "study_id STRING, arm_label STRING, group_type STRING, description STRING, intervention_names ARRAY<STRING>"
    rows = spark.createDataFrame([("S1", "A", None, None, None), ("S1", "B", None, None, None),
                                  ("S2", "A", None, None, None)], schema)
    keys = rows.select("study_id").distinct()
    first = lake.replace_for_keys(spark, root, "arms", rows, keys)
    new_rows = spark.createDataFrame([("S1", "C", None, None, None)], schema)
    second = lake.replace_for_keys(spark, root, "arms", new_rows, spark.createDataFrame([("S1",)], "study_id STRING"))
    assert second.version == first.version + 1
    got = sorted((r.study_id, r.arm_label) for r in lake.read_table(spark, second.uri).collect())
    assert got == [("S1", "C"), ("S2", "A")]
    # a parent whose new version has no child rows loses its old ones
    third = lake.replace_for_keys(spark, root, "arms", new_rows.limit(0), spark.createDataFrame([("S2",)], "study_id STRING"))
    assert sorted((r.study_id, r.arm_label) for r in lake.read_table(spark, third.uri).collect()) == [("S1", "C")]


def test_conform_refuses_frames_missing_declared_columns(spark, lake_cfg):
    df = spark.createDataFrame([("S1",)], "study_id STRING")
    with pytest.raises(ValueError, match="lacks columns"):
        lake.upsert(spark, lake_cfg.lake_root, "studies", df)


def test_list_tables_and_stats_find_every_delta_table(spark, lake_cfg):
    root = lake_cfg.lake_root
    assert lake.list_tables(spark, root) == []
    lake.upsert(spark, root, "studies", _studies(spark, [("S1", "a", "h1")]))
    rejects = spark.createDataFrame([("r1", "ctgov", "f", "raw", "why", datetime(2026, 1, 1))],
                                    "reject_id STRING, source STRING, source_file STRING, raw STRING, reason STRING,"
                                    " ingested_at TIMESTAMP")
    lake.upsert(spark, root, "rejects", rejects, hash_col="reject_id")
    stats = lake.table_stats(spark, root)
    assert stats == {"bronze/rejects": {"rows": 1, "version": 0}, "silver/studies": {"rows": 1, "version": 0}}


def test_delta_jars_are_cached_for_offline_runs(base_cfg):
    cached = jars.cached_jars(base_cfg)
    assert cached, "make setup caches the Delta jars; a second run must not need the network"
    assert any("delta-spark_4.2_2.13" in j for j in cached)
    assert jars.delta_packages(base_cfg) == ["io.delta:delta-spark_4.2_2.13:4.4.0"]


def test_java_17_is_selected(base_cfg, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    home = lake.resolve_java_home(base_cfg)
    assert lake._java_major(__import__("pathlib").Path(home)) == 17
