"""`spark-submit --master spark://...` on a real Spark standalone cluster: a master and a worker process.

Both daemons come from the installed pyspark (``spark-class``) on Java 17, bound to 127.0.0.1 on free
ports. The ClinicalTrials.gov ingest is submitted the way a user submits it to a cluster: the package as
a ``--py-files`` zip built here from src/, the cached Delta jars as ``--jars``. Driver and executors run
on an interpreter that cannot import the project except from that zip, so the run also proves the
packaged code is complete. The worker's work dir and the master's JSON API show where it ran.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyspark
import pytest

from tests.cluster_helpers import (
    BIN,
    ROOT,
    free_ports,
    http_json,
    java17_home,
    pyfiles_zip,
    python_without_project,
    run_in_group,
    start_service,
    wait_until,
)
from tests.conftest import FIXTURES

pytestmark = pytest.mark.heavy
PAGE = FIXTURES / "ctgov" / "page"


def _spark_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "JAVA_HOME": java17_home(), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_CONF_DIR": str(home / "spark-conf")}  # an empty conf dir: no stray spark-defaults.conf
    # the daemons and spark-submit all come from the installed pyspark (its own find-spark-home would ask
    # whatever `python3` is first on PATH)
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    (home / "spark-conf").mkdir(exist_ok=True)
    return env


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """A standalone master and one worker (2 cores, 1 GiB); both process groups stopped at the end."""
    home = tmp_path_factory.mktemp("standalone")
    env = _spark_env(home)
    port, webui, worker_port, worker_webui = free_ports(4)
    master = start_service("spark-master", [BIN / "spark-class", "org.apache.spark.deploy.master.Master",
                                            "--host", "127.0.0.1", "--port", port, "--webui-port", webui],
                           home, env=env)
    services = [master]
    try:
        state_url = f"http://127.0.0.1:{webui}/json/"
        wait_until(lambda: (http_json(state_url) or {}).get("status") == "ALIVE", "spark master", services)
        services.append(start_service(
            "spark-worker", [BIN / "spark-class", "org.apache.spark.deploy.worker.Worker",
                             f"spark://127.0.0.1:{port}", "--host", "127.0.0.1", "--port", worker_port,
                             "--webui-port", worker_webui, "--cores", "2", "--memory", "1g",
                             "--work-dir", home / "work"], home, env=env))
        wait_until(lambda: (http_json(state_url) or {}).get("aliveworkers") == 1, "spark worker registers",
                   services)
        yield {"master": f"spark://127.0.0.1:{port}", "state_url": state_url, "env": env, "home": home}
    finally:
        for svc in reversed(services):
            svc.stop()


def test_spark_submit_ingest_runs_on_the_standalone_cluster(standalone, tmp_path, mlflow_server):
    from deltalake import DeltaTable

    from trialpanorama import jars
    from trialpanorama.config import load_config
    from trialpanorama.lake import table_uri

    cached = jars.cached_jars(load_config())
    assert cached, "make setup caches the Delta jars under .cache/ivy"
    package = pyfiles_zip(tmp_path / "pkg")
    python = python_without_project(tmp_path / "py")
    lake_dir = tmp_path / "lake"
    env = {**standalone["env"], "MLFLOW_TRACKING_URI": mlflow_server, "PYSPARK_PYTHON": str(python),
           "PYSPARK_DRIVER_PYTHON": str(python), "PYTHONUNBUFFERED": "1"}
    out = run_in_group(
        [BIN / "spark-submit", "--master", standalone["master"], "--deploy-mode", "client",
         "--py-files", str(package), "--jars", ",".join(cached),
         "--conf", "spark.executor.memory=768m", "--conf", "spark.cores.max=2",
         "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.ui.enabled=false",
         str(ROOT / "jobs" / "ingest_ctgov.py"), "--config", str(ROOT / "conf" / "pipeline.yaml"),
         "--lake", str(lake_dir), "--input", str(PAGE),
         "--set", "spark.conf.spark.sql.shuffle.partitions=2", "--set", "spark.conf.spark.default.parallelism=2"],
        timeout=1500, env=env, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])

    # the lake: exactly the fixture's studies, read back without Spark (delta-rs)
    page = json.loads((PAGE / "studies_page1.json").read_text())
    expected = {s["protocolSection"]["identificationModule"]["nctId"] for s in page["studies"]}
    studies = DeltaTable(table_uri(str(lake_dir), "studies")).to_pyarrow_table(columns=["study_id"])
    assert sorted(studies.column("study_id").to_pylist()) == sorted(expected)
    assert summary["records_in"] == len(expected) == summary["accepted"] and summary["rejected"] == 0
    assert summary["tables"]["studies"]["version"] == 0

    # where it ran: the driver registered with this master, an executor was granted on this worker and
    # left its logs in the worker's work dir, and the master lists the application as finished
    app_id = re.search(r"Connected to Spark cluster with app ID (app-[\w-]+)", out.stderr).group(1)
    assert re.search(rf"Granted executor ID {app_id}/\d+ on hostPort 127\.0\.0\.1:", out.stderr)
    executor_dirs = list((standalone["home"] / "work" / app_id).iterdir())
    assert executor_dirs and (executor_dirs[0] / "stderr").stat().st_size > 0

    def finished() -> dict | None:
        apps = (http_json(standalone["state_url"]) or {}).get("completedapps", [])
        return next((a for a in apps if a["id"] == app_id), None)

    app = wait_until(finished, "the master lists the finished app", timeout=60)
    assert app["state"] == "FINISHED" and app["name"] == "ingest_ctgov"

    import mlflow

    run = mlflow.MlflowClient(mlflow_server).get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["job"] == "ingest_ctgov"
