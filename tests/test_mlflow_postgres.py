"""MLflow's tracking server on a real PostgreSQL, with a Spark job and a Ray job logging to it at once.

The server is Debian's PostgreSQL package (scripts/install_postgres.sh: the system one, or the package
unpacked under .cache/postgres without root), initialised in a temp dir and bound to 127.0.0.1 on a free
port. ``mlflow server --backend-store-uri postgresql://...`` runs on it, as in the k8s manifests. Then the
ClinicalTrials.gov ingest (Spark + Delta) and the tiny-model benchmark (Ray Data) start together as
separate processes; both runs must end FINISHED with everything they logged, and PostgreSQL's own tables
must hold them. The driver is psycopg 3, which SQLAlchemy (2.1, under MLflow) uses for postgresql://.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.cluster_helpers import ROOT, Postgres, start_mlflow
from tests.conftest import FIXTURES, TEST_OVERRIDES

pytestmark = pytest.mark.heavy
TASKS = ["arm_design", "sample_size_estimation"]
N_TEST = 2


@pytest.fixture(scope="module")
def pg_mlflow(tmp_path_factory):
    home = tmp_path_factory.mktemp("pgmlflow")
    pg = Postgres.create(Postgres.install())
    server = None
    try:
        pg.start()
        server, url = start_mlflow(pg.create_database("mlflow"), home)
        yield {"pg": pg, "url": url, "home": home}
    finally:
        if server:
            server.stop(timeout=10)  # uvicorn and its job consumer; nothing to flush after the test
        pg.stop()


def _spawn(argv: list[str], env: dict[str, str], cwd) -> subprocess.Popen:
    return subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        return -9, out, err
    return proc.returncode, out, err


def test_spark_and_ray_jobs_log_concurrently_to_mlflow_on_postgres(pg_mlflow, tmp_path):
    from mlflow import MlflowClient

    from trialpanorama.bench import synthetic

    url = pg_mlflow["url"]
    rows = synthetic.task_rows(N_TEST, 2, tasks=tuple(TASKS))
    versions = synthetic.write_tables(tmp_path / "tasks", rows)
    model = synthetic.tiny_model(tmp_path / "tiny", rows)
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "PYTHONUNBUFFERED": "1", "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    sets = [a for item in TEST_OVERRIDES for a in ("--set", item)]
    spark_argv = [sys.executable, ROOT / "jobs" / "ingest_ctgov.py", "--lake", tmp_path / "lake",
                  "--input", FIXTURES / "ctgov" / "page", *sets]
    run_id = f"pg-{uuid.uuid4().hex[:8]}"
    ray_argv = [sys.executable, ROOT / "ray_apps" / "benchmark.py", "--config", ROOT / "conf" / "bench" / "tiny-cpu.yaml",
                "--set", f"lake.root={tmp_path / 'tasks'}", "--set", f"run_id={run_id}",
                "--set", f"output_dir={tmp_path / 'out'}", "--set", f"tasks=[{','.join(TASKS)}]",
                "--set", "models.tiny-finetuned=null", "--set", f"models.tiny-untrained.path={model}",
                "--set", "generation.max_new_tokens=8"]  # ray.num_cpus: 2 (1 for the model actor, 1 for reads)
    started = time.time()
    procs = {"spark": _spawn(spark_argv, env, tmp_path), "ray": _spawn(ray_argv, env, tmp_path)}
    try:
        results = {name: _finish(p, timeout=1500) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, 9)
    for name, (rc, _, err) in results.items():
        assert rc == 0, f"{name} job failed:\n{err[-4000:]}"
    spark_summary = json.loads(results["spark"][1].strip().splitlines()[-1])
    bench = json.loads(results["ray"][1].strip().splitlines()[-1])["models"]["tiny-untrained"]
    assert bench["complete"]

    client = MlflowClient(url)
    spark_run = client.get_run(spark_summary["mlflow_run_id"])
    ray_run = client.get_run(bench["mlflow_run_id"])
    # both complete, with what each logged
    assert spark_run.info.status == "FINISHED" and ray_run.info.status == "FINISHED"
    assert spark_run.data.tags["job"] == "ingest_ctgov" and spark_run.data.params["lake"] == str(tmp_path / "lake")
    assert spark_run.data.metrics["records_in"] == 3 == spark_run.data.metrics["accepted"]
    assert spark_run.data.tags["delta.studies.version"] == "0"
    assert "summary.json" in {a.path for a in client.list_artifacts(spark_run.info.run_id)}
    assert ray_run.data.tags["bench.run_id"] == run_id and ray_run.data.tags["bench.complete"] == "true"
    for task in TASKS:
        assert ray_run.data.tags[f"delta.input.{task}.version"] == str(versions[task])
        assert ray_run.data.metrics[f"{task}.samples"] == N_TEST
    # ... and they were logging at the same time: each run started before the other ended
    s, r = spark_run.info, ray_run.info
    assert started * 1000 <= min(s.start_time, r.start_time)
    assert max(s.start_time, r.start_time) < min(s.end_time, r.end_time), (s, r)

    # the store really is PostgreSQL: its own tables hold both runs, their params and metrics
    ids = [s.run_id, r.run_id]
    with pg_mlflow["pg"].connect("mlflow") as conn:
        runs = conn.execute("SELECT run_uuid, status FROM runs WHERE run_uuid = ANY(%s)", (ids,)).fetchall()
        assert dict(runs) == {s.run_id: "FINISHED", r.run_id: "FINISHED"}
        counts = dict(conn.execute("SELECT run_uuid, count(*) FROM metrics WHERE run_uuid = ANY(%s) "
                                   "GROUP BY run_uuid", (ids,)).fetchall())
        assert counts[s.run_id] >= len(spark_run.data.metrics) and counts[r.run_id] >= len(ray_run.data.metrics)
        params = conn.execute("SELECT count(*) FROM params WHERE run_uuid = ANY(%s)", (ids,)).fetchone()[0]
        assert params == len(spark_run.data.params) + len(ray_run.data.params)
