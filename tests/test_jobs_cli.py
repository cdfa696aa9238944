"""Jobs as users run them: `python jobs/X.py` and `spark-submit jobs/X.py`, in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, TEST_OVERRIDES
from trialpanorama import jars
from trialpanorama.config import load_config

JOBS = sorted((ROOT / "jobs").glob("*.py"))
# The world generator writes raw source files, not a lake, and the chaos suite builds its own throwaway
# lakes under --workdir: neither takes --lake.
NO_LAKE = {"generate_world", "chaos"}


def _env(mlflow_uri: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if mlflow_uri:
        env["MLFLOW_TRACKING_URI"] = mlflow_uri
    return env


@pytest.mark.parametrize("job", JOBS, ids=[j.stem for j in JOBS])
def test_every_job_has_help(job: Path):
    out = subprocess.run([sys.executable, str(job), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout and "--set" in out.stdout
    assert ("--lake" in out.stdout) != (job.stem in NO_LAKE)


def _sets() -> list[str]:
    args: list[str] = []
    for item in TEST_OVERRIDES:
        args += ["--set", item]
    return args


@pytest.mark.heavy
def test_python_job_prints_one_json_line(tmp_path, mlflow_server):
    lake_dir = tmp_path / "lake"
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "ingest_ctgov.py"), "--lake", str(lake_dir),
         "--input", str(FIXTURES / "ctgov" / "page"), *_sets()],
        capture_output=True, text=True, timeout=600, env=_env(mlflow_server), cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, out.stdout
    summary = json.loads(lines[0])
    assert summary["records_in"] == 3 and summary["accepted"] == 3 and summary["rejected"] == 0
    assert summary["tables"]["studies"]["version"] == 0 and summary["mlflow_run_id"]
    assert "ctgov: 3 records parsed" in out.stderr  # progress goes to stderr


@pytest.mark.heavy
def test_run_pipeline_runs_steps_in_one_session_each_as_its_own_job(tmp_path, mlflow_server):
    lake_dir = tmp_path / "lake"
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "run_pipeline.py"), "--lake", str(lake_dir), *_sets(),
         "--step", f"ingest_ctgov --input {FIXTURES / 'ctgov' / 'page'}", "--step", "lake_stats"],
        capture_output=True, text=True, timeout=600, env=_env(mlflow_server), cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    ingest, stats, pipeline = (json.loads(line) for line in out.stdout.splitlines() if line.strip())
    assert ingest["job"] == "ingest_ctgov" and ingest["accepted"] == 3 and ingest["mlflow_run_id"]
    assert stats["job"] == "lake_stats" and stats["tables"]["silver/studies"]["rows"] == 3  # the step before's lake
    assert [s["job"] for s in pipeline["steps"]] == ["ingest_ctgov", "lake_stats"]
    assert pipeline["steps"][0]["mlflow_run_id"] == ingest["mlflow_run_id"]
    assert "== step 2/2" in out.stderr
    assert out.stderr.count("Setting default log level") == 1  # one JVM for both steps


def test_run_pipeline_refuses_a_misspelt_step_before_running_any(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "run_pipeline.py"), "--lake", str(tmp_path / "lake"),
         "--step", "lake_stats", "--step", "unify_trails"],
        capture_output=True, text=True, timeout=120, env=_env(),
    )
    assert out.returncode == 1 and "no job 'unify_trails'" in out.stderr
    assert not (tmp_path / "lake").exists() and "== step" not in out.stderr


@pytest.mark.heavy
def test_missing_input_exits_nonzero_with_a_message(tmp_path, mlflow_server):
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "ingest_ctgov.py"), "--lake", str(tmp_path / "lake"),
         "--input", str(tmp_path / "nothing-here"), *_sets()],
        capture_output=True, text=True, timeout=600, env=_env(mlflow_server),
    )
    assert out.returncode == 1
    assert "input not found" in out.stderr


@pytest.mark.heavy
def test_spark_submit_runs_the_same_file_without_adding_packages_twice(tmp_path, mlflow_server):
    cached = jars.cached_jars(load_config())
    assert cached
    spark_submit = Path(sys.executable).parent / "spark-submit"
    lake_dir = tmp_path / "lake"
    env = _env(mlflow_server)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    out = subprocess.run(
        [str(spark_submit), "--master", "local[2]", "--jars", ",".join(cached),
         "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
         str(ROOT / "jobs" / "ingest_ctgov.py"), "--lake", str(lake_dir),
         "--input", str(FIXTURES / "ctgov" / "array")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["accepted"] == 2
    assert "spark.jars.packages" not in out.stderr  # nothing resolved from Maven under spark-submit
    assert "no Delta jar" not in out.stderr
