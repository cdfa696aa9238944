"""The benchmark SIGKILLed mid-run (a real ``ray_apps/benchmark.py`` process and its Ray cluster), then resumed.

The kill point is a state of the predictions table on disk: its first flush committed, the run far from
done. The process group (driver and its local Ray cluster) is killed at once. The re-run with the same
``run_id`` must answer only the samples the killed attempt did not commit (rows counted before and after),
and its final metrics, computed from the table, must equal those of an uninterrupted run: decoding is
greedy, so every answer is reproducible.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fault_helpers import PY, ROOT, commit_versions, job_env, kill_when, reap, spawn, tail

pytestmark = pytest.mark.heavy
N_TEST = 4          # test samples per task: 8 tasks x 4 = 32 predictions
FLUSH = 4           # rows per predictions MERGE: the killed run commits a few flushes at most


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    from trialpanorama.bench import synthetic

    root = tmp_path_factory.mktemp("benchkill")
    rows = synthetic.task_rows(N_TEST, 2)
    synthetic.write_tables(root / "lake", rows)
    model = synthetic.tiny_model(root / "tiny", rows)
    total = sum(1 for rs in rows.values() for r in rs if r["split"] == "test")
    return {"root": root, "lake": root / "lake", "model": model, "total": total}


def _cmd(w: dict, run_id: str) -> list[str]:
    sets = [f"lake.root={w['lake']}", f"run_id={run_id}", f"output_dir={w['root'] / 'out'}",
            "generation.max_new_tokens=24", f"flush_rows={FLUSH}", "ray.address=local",
            f"models.tiny-untrained.path={w['model']}", "models.tiny-untrained.hf.batch_size=4",
            "models.tiny-untrained.hf.micro_batch_size=4", "models.tiny-finetuned=null"]
    cmd = [PY, str(ROOT / "ray_apps" / "benchmark.py"), "--config", str(ROOT / "conf" / "bench" / "tiny-cpu.yaml")]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def _run(w: dict, run_id: str, uri: str) -> dict:
    log = w["root"] / f"{run_id}.log"
    proc = spawn(_cmd(w, run_id), log, env=job_env(MLFLOW_TRACKING_URI=uri))
    assert reap(proc, timeout=900) == 0, tail(log)
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith('{"')]
    return json.loads(lines[-1])["models"]["tiny-untrained"]


def _rows(w: dict, run_id: str) -> list[dict]:
    from trialpanorama.bench import store

    return store.read(str(w["lake"]), run_id, "tiny-untrained").to_pylist()


def test_killed_benchmark_resumes_skipping_answered_samples(world, mlflow_server):
    from trialpanorama.lake import table_uri

    t0 = time.monotonic()
    reference = _run(world, "uninterrupted", mlflow_server)
    assert reference["complete"]
    ref_s = time.monotonic() - t0

    predictions = Path(table_uri(str(world["lake"]), "predictions"))
    last = commit_versions(predictions)[-1]
    log = world["root"] / "killed.log"
    proc = spawn(_cmd(world, "killed"), log, env=job_env(MLFLOW_TRACKING_URI=mlflow_server))

    def first_flush() -> str | None:
        v = commit_versions(predictions)
        return f"predictions v{v[-1]} committed" if v and v[-1] > last else None

    report = kill_when(proc, "bench-after-first-flush", first_flush, timeout=900, poll_s=0.05)
    assert report.fired, f"the benchmark ended before its first flush was seen: {report.detail}\n{tail(log)}"
    before = _rows(world, "killed")
    keys = [(r["task"], r["sample_id"]) for r in before]
    assert 0 < len(before) < world["total"], len(before)
    assert len(keys) == len(set(keys)) and len(before) % FLUSH == 0  # whole flushes only, no duplicates
    done_before = {k for k, r in zip(keys, before, strict=True) if r["error"] is None}

    resumed = _run(world, "killed", mlflow_server)
    after = _rows(world, "killed")
    keys_after = [(r["task"], r["sample_id"]) for r in after]
    assert resumed["complete"]
    assert len(after) == world["total"] and len(keys_after) == len(set(keys_after))
    assert resumed["throughput"]["rows"] == world["total"] - len(done_before)  # only the rest was run
    for task, metrics in reference["tasks"].items():
        assert resumed["tasks"][task] == pytest.approx(metrics, nan_ok=True), task
    ref_raw = {(r["task"], r["sample_id"]): r["raw_output"] for r in _rows(world, "uninterrupted")}
    assert {(r["task"], r["sample_id"]): r["raw_output"] for r in after} == ref_raw

    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    runs = mlflow.search_runs(experiment_names=["benchmark"], output_format="list",
                              filter_string="tags.`bench.run_id` = 'killed'")
    assert len(runs) == 1 and runs[0].info.run_id == resumed["mlflow_run_id"]  # both attempts: one run
    print(f"\nBENCH kill: {report.detail} after {report.seconds}s; rows before={len(before)} "
          f"resumed ran={resumed['throughput']['rows']:.0f} total={world['total']}; uninterrupted run "
          f"{ref_s:.0f}s; test_s={time.monotonic() - t0:.0f}")
