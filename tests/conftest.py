"""Shared fixtures: one real local Spark session with Delta, one real MLflow tracking server process.

Nothing is mocked: the session is the same ``lake.get_spark`` every job uses (``local[2]``, UI off), and
the tracking server is ``mlflow server`` on a free port of 127.0.0.1 with a SQLite store in a temp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"

TEST_OVERRIDES = [
    "spark.master=local[2]",
    "spark.conf.spark.ui.enabled=false",
    "spark.conf.spark.sql.shuffle.partitions=2",
    "spark.conf.spark.default.parallelism=2",
    "spark.conf.spark.driver.memory=2g",
    "spark.conf.spark.databricks.delta.snapshotPartitions=2",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300,
              auth_counts_as_up: bool = False) -> None:
    """Poll ``url`` until it answers 200 (or 401/403 from a server behind auth, when asked), or fail with the
    tail of the server's log once it died or ``timeout`` passed (a loaded 2-core CI box can take minutes)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if auth_counts_as_up and exc.code in (401, 403):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{url} did not come up: {log.read_text()[-3000:]}")
        time.sleep(0.5)


# MLflow 3's server starts a huey job runner (four consumer processes, ~280 MB each) for GenAI evaluation jobs
# that nothing here uses; on a 2-core box they cost every test session seconds of start-up and memory.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real ``mlflow server`` process; MLFLOW_TRACKING_URI points every job at it."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [exe, "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
         "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **MLFLOW_SERVER_ENV},
    )
    uri = f"http://127.0.0.1:{port}"
    wait_http(f"{uri}/health", proc, home / "server.log")
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def base_cfg():
    from trialpanorama.config import load_config

    return load_config(None, TEST_OVERRIDES)


@pytest.fixture(scope="session")
def spark(base_cfg):
    from trialpanorama.lake import get_spark

    session = get_spark(base_cfg, app_name="trialpanorama-tests")
    yield session
    session.stop()


@pytest.fixture
def lake_cfg(base_cfg, tmp_path):
    """A config whose lake is a fresh temp folder."""
    return base_cfg.with_overrides([f"lake.root={tmp_path / 'lake'}"])


def job_argv(lake: Path | str, *extra: str) -> list[str]:
    """Command-line arguments for running a job in-process against a test lake."""
    argv = ["--lake", str(lake)]
    for item in TEST_OVERRIDES:
        argv += ["--set", item]
    return argv + list(extra)
