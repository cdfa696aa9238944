"""Concurrent writers: two ingests into one lake at once, and one MERGE racing a commit in-process.

Delta's optimistic concurrency lets one of two conflicting commits win and refuses the other
(ConcurrentAppendException, ProtocolChangedException when both create the table, ...). ``lake`` re-runs a
refused write (bounded, ``lake.commit_retries``); every write is idempotent, so the outcome must be the
table a sequential run gives. Either both jobs succeed with that content, or one fails cleanly and its
retry gives it; never a corrupt or half-written table.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import job_argv, run_named_job
from tests.fault_helpers import (
    PY,
    ROOT,
    commit_versions,
    delta_content,
    delta_history,
    job_env,
    reap,
    spawn,
    table_dirs,
    tail,
)

pytestmark = pytest.mark.heavy
JOB = ROOT / "jobs" / "ingest_ctgov.py"
PER_BATCH = 12
SLOW_ROW_S = 6.0  # x 4 rows: the window in which the concurrent commit must land


def _run_in_process(lake: Path, inp: Path) -> dict:
    return run_named_job("ingest_ctgov", lake, "--input", str(inp))


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    """Two disjoint batches of one generated world's ClinicalTrials.gov records."""
    base = tmp_path_factory.mktemp("conc-inputs")
    subprocess.run([PY, str(ROOT / "jobs" / "generate_world.py"), "--records", "300", "--seed", "5",
                    "--out", str(base / "world"), "--workers", "1", "--no-progress"],
                   check=True, capture_output=True, timeout=300)
    with zipfile.ZipFile(base / "world" / "ctgov" / "ctg-studies.json.zip") as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    out = {}
    for label, part in (("X", members[:PER_BATCH]), ("Y", members[PER_BATCH:2 * PER_BATCH])):
        (base / label).mkdir()
        with zipfile.ZipFile(base / label / "ctg-studies.json.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in part:
                zf.writestr(name, data)
        out[label] = base / label
    return out


@pytest.fixture(scope="module")
def reference(batches, spark, mlflow_server, tmp_path_factory) -> dict:
    """Sequential runs: X alone, then X followed by Y."""
    base = tmp_path_factory.mktemp("conc-ref")
    _run_in_process(base / "x", batches["X"])
    shutil.copytree(base / "x", base / "xy")
    _run_in_process(base / "xy", batches["Y"])
    return {"x_lake": base / "x", "XY": delta_content(spark, base / "xy")}


def _race(lake: Path, inputs: list[Path], mlflow_uri: str, tag: str) -> list[dict]:
    """Start one ingest process per input at the same moment; wait for all; their exit codes and logs."""
    procs = []
    for i, inp in enumerate(inputs):
        log = lake.parent / f"{tag}-{i}.log"
        procs.append((spawn([PY, str(JOB), *job_argv(lake, "--input", str(inp))], log,
                            env=job_env(MLFLOW_TRACKING_URI=mlflow_uri)), log, inp))
    out = []
    for proc, log, inp in procs:
        rc = reap(proc, timeout=900)
        text = tail(log, 200_000)
        out.append({"rc": rc, "input": inp, "log": log, "retries": text.count("concurrent commit ("),
                    "tail": text[-3000:]})
    return out


def _settle(lake: Path, results: list[dict], mlflow_uri: str) -> list[dict]:
    """A job that failed is retried once, alone (what an orchestrator does); it must then succeed."""
    for r in results:
        if r["rc"] != 0:
            log = r["log"].with_suffix(".retry.log")
            proc = spawn([PY, str(JOB), *job_argv(lake, "--input", str(r["input"]))], log,
                         env=job_env(MLFLOW_TRACKING_URI=mlflow_uri))
            r["retry_rc"] = reap(proc, timeout=900)
            assert r["retry_rc"] == 0, tail(log)
    return results


def _assert_sound(spark, lake: Path, expected: dict) -> None:
    for name, folder in table_dirs(lake).items():
        versions = commit_versions(folder)
        assert delta_history(spark, folder) == list(range(versions[-1] + 1)), name
    got = delta_content(spark, lake)
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for name in expected:
        assert got[name] == expected[name], f"{name}: {got[name]} != sequential {expected[name]}"


def test_two_ingests_of_different_inputs_into_an_empty_lake(batches, reference, spark, mlflow_server, tmp_path):
    """Both create every table at once (the creation race), then MERGE into each other's commits."""
    t0 = time.monotonic()
    lake = tmp_path / "lake"
    results = _settle(lake, _race(lake, [batches["X"], batches["Y"]], mlflow_server, "diff"), mlflow_server)
    _assert_sound(spark, lake, reference["XY"])
    print(f"\nCONCURRENT different-inputs: rc={[r['rc'] for r in results]} "
          f"retries={[r['retries'] for r in results]} retry_rc={[r.get('retry_rc') for r in results]} "
          f"test_s={time.monotonic() - t0:.0f}")
    for r in results:  # a failure must be a clean one: the job's own error, not a hang or a signal
        assert r["rc"] in (0, 1), r["tail"]


def test_two_ingests_of_the_same_input_at_once(batches, reference, spark, mlflow_server, tmp_path):
    """The same batch twice at once into a lake holding X: both MERGE the same keys into the same tables."""
    t0 = time.monotonic()
    lake = tmp_path / "lake"
    shutil.copytree(reference["x_lake"], lake)
    results = _settle(lake, _race(lake, [batches["Y"], batches["Y"]], mlflow_server, "same"), mlflow_server)
    _assert_sound(spark, lake, reference["XY"])
    print(f"\nCONCURRENT same-input: rc={[r['rc'] for r in results]} "
          f"retries={[r['retries'] for r in results]} retry_rc={[r.get('retry_rc') for r in results]} "
          f"test_s={time.monotonic() - t0:.0f}")
    for r in results:
        assert r["rc"] in (0, 1), r["tail"]


# ------------------------------------------------------------------------------- in-process race
def _studies(spark, ids: list[str], title: str):
    from trialpanorama.schemas import TABLES

    schema = TABLES["studies"].schema
    rows = [{f.name: None for f in schema.fields} | {"study_id": i, "title": title, "record_hash": f"{i}-{title}"}
            for i in ids]
    return spark.createDataFrame(rows, schema)


def _slow_merge_vs_commit(spark, root: Path) -> tuple[list[BaseException], list[str]]:
    """Thread: an upsert whose MERGE source takes seconds to compute; while it computes (the MERGE has
    started its transaction on the current version), the main thread commits to the same table."""
    from pyspark.sql import functions as F

    from trialpanorama import lake

    marker = str(root.parent / f"{root.name}.merging")

    @F.udf("string")
    def slow(x: str) -> str:
        Path(marker).touch()  # runs only once the MERGE executes, i.e. after its snapshot is taken
        time.sleep(SLOW_ROW_S)
        return x

    lake.upsert(spark, str(root), "studies", _studies(spark, ["NCT00000001", "NCT00000002"], "base"))
    src = _studies(spark, [f"NCT1000000{i}" for i in range(4)], "slow").coalesce(1)
    src = src.withColumn("title", slow("title"))
    errors: list[BaseException] = []

    def merge() -> None:
        try:
            lake.upsert(spark, str(root), "studies", src)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    t = threading.Thread(target=merge)
    t.start()
    deadline = time.monotonic() + 600
    while not Path(marker).exists() and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert t.is_alive(), f"the slow MERGE finished before the concurrent commit could be made: {errors}"
    lake.upsert(spark, str(root), "studies", _studies(spark, ["NCT20000001"], "winner"))
    t.join(timeout=600)
    ids = sorted(r.study_id for r in lake.read_named(spark, str(root), "studies").collect())
    return errors, ids


def test_merge_that_loses_a_commit_race_is_retried(spark, base_cfg, tmp_path, capfd):
    from trialpanorama import lake

    retries = str(int(base_cfg.require("lake.commit_retries")))
    assert int(retries) > 0
    previous = spark.conf.get(lake.RETRIES_CONF, retries)
    try:
        spark.conf.set(lake.RETRIES_CONF, "0")  # without retry: Delta refuses the losing commit
        errors, ids = _slow_merge_vs_commit(spark, tmp_path / "no-retry")
        assert len(errors) == 1 and lake.is_commit_conflict(errors[0]), errors
        assert ids == ["NCT00000001", "NCT00000002", "NCT20000001"]  # the loser left nothing behind
        spark.conf.set(lake.RETRIES_CONF, retries)
        capfd.readouterr()
        errors, ids = _slow_merge_vs_commit(spark, tmp_path / "retry")
        assert errors == []
        assert ids == ["NCT00000001", "NCT00000002", *[f"NCT1000000{i}" for i in range(4)], "NCT20000001"]
        assert "studies: concurrent commit (" in capfd.readouterr().err
        root = lake.table_uri(str(tmp_path / "retry"), "studies")
        assert delta_history(spark, Path(root)) == [0, 1, 2]  # base, winner, the retried MERGE
    finally:
        spark.conf.set(lake.RETRIES_CONF, previous)
