"""`ray job submit --working-dir .` on a real two-node Ray cluster: a head and a second node process.

``ray start --head`` and ``ray start --address`` run here as two separate node processes (each its own
raylet, object store, temp dir and free ports, 1 CPU each), exactly like two machines would. The small
benchmark of the tiny model is submitted through the Jobs CLI with the repository as its working dir;
its status, logs and runtime env are then read back through the Jobs API, and its run through MLflow.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests.cluster_helpers import BIN, ROOT, RayCluster, ray_env, wait_until

pytestmark = pytest.mark.heavy
TASKS = ["arm_design", "trial_completion_assessment"]  # two tasks keep it small; study_search needs an index
N_TEST = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray_cluster = RayCluster(tmp_path_factory.mktemp("raycluster"))
    try:
        ray_cluster.start_head(num_cpus=1)
        ray_cluster.add_node(num_cpus=1)
        yield ray_cluster
    finally:
        ray_cluster.stop()


@pytest.fixture(scope="module")
def bench_inputs(tmp_path_factory):
    """Task tables (delta-rs) and the tiny random-init model, as in the benchmark's own e2e test."""
    from trialpanorama.bench import synthetic

    root = tmp_path_factory.mktemp("raybench")
    rows = synthetic.task_rows(N_TEST, 2, tasks=tuple(TASKS))
    versions = synthetic.write_tables(root / "lake", rows)
    model = synthetic.tiny_model(root / "tiny", rows)
    return {"root": root, "lake": root / "lake", "model": model, "versions": versions}


def test_two_node_cluster_runs_the_benchmark_job(cluster, bench_inputs, mlflow_server):
    from ray.job_submission import JobStatus, JobSubmissionClient

    def two_nodes() -> list[dict] | None:
        nodes = cluster.alive_nodes()
        return nodes if len(nodes) == 2 else None

    nodes = wait_until(two_nodes, "two alive nodes", cluster.nodes, timeout=180)
    assert sorted(bool(n["is_head_node"]) for n in nodes) == [False, True]
    assert len({n["node_id"] for n in nodes}) == 2 and all(n["resources_total"]["CPU"] == 1 for n in nodes)

    run_id = f"cluster-{uuid.uuid4().hex[:8]}"
    submission = f"tp-bench-{run_id}"
    # .venv, .cache and data folders are git-ignored, which Ray's packaging honours; the excludes say it
    # again so the upload stays small even from a checkout without .gitignore.
    runtime_env = {"excludes": [".venv", ".cache", ".git", "lakehouse", "dist", "mlruns", "bench_out"],
                   "env_vars": {"MLFLOW_TRACKING_URI": mlflow_server, "HF_HUB_OFFLINE": "1",
                                "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}}
    entry = ["python", "ray_apps/benchmark.py", "--config", "conf/bench/tiny-cpu.yaml",
             "--set", f"lake.root={bench_inputs['lake']}", "--set", f"run_id={run_id}",
             "--set", f"output_dir={bench_inputs['root'] / 'out'}", "--set", f"tasks=[{','.join(TASKS)}]",
             "--set", "models.tiny-finetuned=null", "--set", f"models.tiny-untrained.path={bench_inputs['model']}",
             "--set", "models.tiny-untrained.hf.micro_batch_size=2", "--set", "generation.max_new_tokens=8",
             "--set", "flush_rows=8"]
    deadline = time.monotonic() + 180
    while True:  # the dashboard answers before the head's job agent: Ray says "No available agent"
        job = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard,
                              "--submission-id", submission, "--working-dir", ".",
                              "--runtime-env-json", json.dumps(runtime_env), "--", *entry],
                             capture_output=True, text=True, timeout=600, env=ray_env(), cwd=ROOT)
        if "No available agent" not in job.stdout + job.stderr or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]

    client = JobSubmissionClient(cluster.dashboard)
    assert client.get_job_status(submission) == JobStatus.SUCCEEDED
    info = client.get_job_info(submission)
    assert info.entrypoint.startswith("python ray_apps/benchmark.py")
    assert info.runtime_env["working_dir"].startswith("gcs://_ray_pkg_")  # uploaded, not a local path
    logs = client.get_job_logs(submission)
    summary = json.loads(next(line for line in reversed(logs.splitlines()) if line.startswith("{")))
    res = summary["models"]["tiny-untrained"]
    assert res["complete"] and sorted(res["tasks"]) == sorted(TASKS)
    assert all(m["samples"] == N_TEST for m in res["tasks"].values())

    from mlflow import MlflowClient

    run = MlflowClient(mlflow_server).get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["bench.run_id"] == run_id
    for task in TASKS:
        assert run.data.tags[f"delta.input.{task}.version"] == str(bench_inputs["versions"][task])
    assert run.data.metrics["throughput.rows_per_s"] > 0
