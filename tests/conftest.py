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


# The slowest modules first (by their time on the 2-core box): pytest-xdist's --dist loadfile hands
# out whole modules in collection order, so a long module collected last leaves the other worker idle for its
# whole length. Longest-first keeps both workers busy to the end. Unlisted modules keep their order, after these.
# The real-PubMed module goes first although it is not the longest: it needs the most heap, and a fresh test JVM
# has the most to give.
SLOW_MODULES_FIRST = (
    "test_pubmed_real", "test_crash_consistency", "test_concurrent_writers", "test_train_faults", "test_tasks_build",
    "test_secrets", "test_gold_jobs", "test_chaos", "test_bench_kill", "test_train_ray", "test_mlflow_postgres",
    "test_linking", "test_cluster_spark", "test_bench_e2e", "test_cluster_ray",
)


# Modules that share one session-scoped lake run in one pytest-xdist worker, so the lake is built once: under
# --dist loadfile they count as one file. (xdist's own loadgroup cannot do it with pytest 9.2: it renames
# node ids through an attribute pytest 9 no longer reads.)
SHARED_LAKE_GROUPS = {"test_pii.py": "test_tasks_build.py"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedLakeFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            folder, _, name = path.rpartition("/")
            return f"{folder}/{SHARED_LAKE_GROUPS[name]}" if name in SHARED_LAKE_GROUPS else path

    # pytest-xdist 3.8 re-sorts the modules by their number of tests unless told not to, which undid the
    # slowest-first order above and left the memory-heavy real-PubMed module to run late in a worker whose test
    # JVM had been filling for twenty minutes (in CI an OutOfMemoryError there killed that JVM and failed every
    # Spark test after it).
    config.option.loadscopereorder = False
    return SharedLakeFileScheduling(config, log)


def run_named_job(name: str, lake_root: Path | str, *extra: str) -> dict:
    """Run ``jobs/<name>.py`` in-process against a test lake, through its own ``main(argv)``."""
    from trialpanorama.jobrun import load_job

    return load_job(ROOT / "jobs", name).main(job_argv(lake_root, *extra))


@pytest.fixture(scope="session")
def task_lake(tmp_path_factory, mlflow_server, spark):
    """The fixture lake up to the task tables, shared by test_tasks_build and test_pii (one xdist group):
    ClinicalTrials.gov fixtures plus the real records in shared/data, the ICTRP fixtures in all four shapes,
    the PubMed fixtures and the review fixtures of tests/fixtures/tasks/pubmed. Tests must not change it
    (a test that needs to break it works on a copy). Returns (root, search index summary, build summary)."""
    root = tmp_path_factory.mktemp("tasks") / "lake"
    ctgov = [str(FIXTURES / "ctgov")] + ([str(SHARED_DATA / "ctgov")] if (SHARED_DATA / "ctgov").is_dir() else [])
    run_named_job("ingest_ctgov", root, "--input", *ctgov)
    run_named_job("ingest_ictrp", root, "--input", str(FIXTURES / "ictrp"))
    run_named_job("ingest_pubmed", root, "--input", str(FIXTURES / "pubmed" / "pubmed99n0001.xml"),
                  str(FIXTURES / "tasks" / "pubmed"))
    run_named_job("unify_trials", root)
    run_named_job("build_relations", root)
    index = run_named_job("build_search_index", root)
    first = run_named_job("build_tasks", root)
    return str(root), index, first


@pytest.fixture(scope="session")
def task_exports(task_lake) -> tuple[Path, dict]:
    """export_tasks run once over the shared task lake: (folder, job summary)."""
    out = Path(task_lake[0]).parent / "export"
    return out, run_named_job("export_tasks", task_lake[0], "--out", str(out))
