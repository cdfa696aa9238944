"""The benchmark as users run it: real local Ray, a real MLflow server, real Delta tables, a real model server.

One synthetic lake (the eight task tables in the contract, rendered by the task modules themselves) and the
training engineer's tiny random-init model. Four Ray Data flows: the tiny model through ``hf`` on every task;
an interrupted run (``limit``) of its registry version (``models:/``) and its resumption; the same model
behind ``ray_apps/serve.py`` through the ``openai`` backend with a bearer key, which must never appear in
MLflow params, tags, artifacts or any log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_http
from trialpanorama.bench import store, synthetic
from trialpanorama.bench.config import load_bench
from trialpanorama.bench.runner import PRIMARY, run_benchmark, score_from_table
from trialpanorama.config import load_config
from trialpanorama.tasks.registry import TASKS, load_task

pytestmark = pytest.mark.heavy
KEY_ENV = "TP_BENCH_TEST_KEY"
KEY = "tp-secret-" + os.urandom(8).hex()
N_TEST = 3


@pytest.fixture(scope="module")
def bench(tmp_path_factory, mlflow_server):
    os.environ[KEY_ENV] = KEY  # before ray.init: actors inherit the driver's environment
    import ray

    root = tmp_path_factory.mktemp("bench")
    rows = synthetic.task_rows(N_TEST, 2)
    synthetic.write_tables(root / "lake", rows)
    versions = synthetic.write_tables(root / "lake", rows)  # version 1: MLflow's Delta source drops a 0
    model = synthetic.tiny_model(root / "tiny", rows)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
    yield {"root": root, "lake": str(root / "lake"), "model": str(model), "versions": versions, "rows": rows,
           "uri": mlflow_server}
    ray.shutdown()
    os.environ.pop(KEY_ENV, None)


def spec_of(b: dict, run_id: str, models: dict, *extra: str):
    cfg = load_config(ROOT / "conf" / "bench" / "tiny-cpu.yaml",
                      [f"lake.root={b['lake']}", f"run_id={run_id}", f"output_dir={b['root'] / 'out'}",
                       "generation.max_new_tokens=24", "flush_rows=8", "models.tiny-untrained=null",
                       "models.tiny-finetuned=null", *extra])
    data = dict(cfg.data)
    data["models"] = models
    return load_bench(type(cfg)(data, cfg.source, cfg.overrides))


def hf_model(path: str, mbs: int = 4) -> dict:
    return {"backend": "hf", "path": path, "hf": {"batch_size": 8, "micro_batch_size": mbs, "torch_threads": 1}}


@pytest.fixture(scope="module")
def full_run(bench):
    spec = spec_of(bench, "full", {"tiny": hf_model(bench["model"])})
    return run_benchmark(spec, bench["uri"])


def test_hf_every_task_metrics_match_predictions_table(bench, full_run):
    import mlflow

    res = full_run["models"]["tiny"]
    assert res["complete"] and set(res["tasks"]) == set(TASKS)
    lake = bench["lake"]
    for task in TASKS:
        table = store.read(lake, "full", "tiny", task).to_pylist()
        assert len(table) == N_TEST and {r["sample_id"] for r in table} == {
            r["sample_id"] for r in bench["rows"][task] if r["split"] == "test"}
        mod = load_task(task)
        for r in table:  # each row re-checks: parse(raw) == parsed, its own score, flags
            assert store.parsed_value(r["parsed"]) == mod.parse(r["raw_output"])
            assert r["dataset_version"] == bench["versions"][task] and r["tokens_in"] > 0
            assert r["unparseable"] in (True, False) and r["correct"] == (r["score"] >= 1.0)
            assert r["latency_s"] > 0 and r["error"] is None
        index = str(Path(lake).parent / "lake" / "search" / "publications-v-1")
        again = score_from_table(lake, "full", "tiny", task, index)
        assert again == pytest.approx(res["tasks"][task], nan_ok=True)
        assert PRIMARY[task] in again
    run = mlflow.get_run(res["mlflow_run_id"])
    assert run.data.tags["bench.run_id"] == "full" and run.data.tags["bench.complete"] == "true"
    assert run.data.metrics["arm_design.accuracy"] == res["tasks"]["arm_design"]["accuracy"]
    assert run.data.metrics["throughput.rows_per_s"] > 0 and "study_search.recall_at_100" in run.data.metrics
    assert run.data.tags["delta.input.arm_design.version"] == str(bench["versions"]["arm_design"])
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{t}-test" for t in TASKS}
    v = bench["versions"]["arm_design"]
    assert v == 1 and f'"delta_table_version": {v}' in inputs["arm_design-test"].dataset.source
    assert {t.key: t.value for t in inputs["arm_design-test"].tags}["delta_table_version"] == str(v)
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "predictions")}
    assert f"predictions/{TASKS[0]}.json" in arts


def test_interrupted_registry_run_resumes_to_the_same_metrics(bench, full_run):
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mlflow.set_tracking_uri(bench["uri"])
    # Logged as objects: mlflow 3.17's local-checkpoint path (transformers_model=<folder>) fails in
    # build_flavor_config_from_local_checkpoint ('str' object has no attribute '__name__').
    components = {"model": AutoModelForCausalLM.from_pretrained(bench["model"]),
                  "tokenizer": AutoTokenizer.from_pretrained(bench["model"])}
    with mlflow.start_run(run_name="register-tiny"):
        info = mlflow.transformers.log_model(transformers_model=components, name="model", task="text-generation",
                                             registered_model_name="bench-tiny",
                                             pip_requirements=["transformers", "torch"])
    uri = f"models:/bench-tiny/{info.registered_model_version}"
    models = {"tiny-reg": hf_model(uri, mbs=1)}
    first = run_benchmark(spec_of(bench, "resume", models, "limit=1"), bench["uri"])["models"]["tiny-reg"]
    assert not first["complete"] and all(m["samples"] == 1 for m in first["tasks"].values())
    assert first["registry_version"] == str(info.registered_model_version)
    second = run_benchmark(spec_of(bench, "resume", models), bench["uri"])["models"]["tiny-reg"]
    assert second["complete"] and second["mlflow_run_id"] == first["mlflow_run_id"]
    assert second["throughput"]["rows"] == (N_TEST - 1) * len(TASKS)  # only the rest was run
    full = full_run["models"]["tiny"]["tasks"]
    for task in TASKS:
        assert second["tasks"][task] == pytest.approx(full[task], nan_ok=True), task
        a = {r["sample_id"]: r["raw_output"] for r in store.read(bench["lake"], "full", "tiny", task).to_pylist()}
        b = {r["sample_id"]: r["raw_output"] for r in store.read(bench["lake"], "resume", "tiny-reg", task).to_pylist()}
        assert a == b
    tags = mlflow.get_run(second["mlflow_run_id"]).data.tags
    assert tags["model.registry_version"] == str(info.registered_model_version)


@pytest.fixture(scope="module")
def server(bench):
    port = free_port()
    log = open(bench["root"] / "serve.log", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, KEY_ENV: KEY}
    proc = subprocess.Popen([sys.executable, str(ROOT / "ray_apps" / "serve.py"), "--model", f"tiny={bench['model']}",
                             "--port", str(port), "--api-key-env", KEY_ENV, "--torch-threads", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc, bench["root"] / "serve.log", timeout=180)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_openai_backend_against_own_server_and_key_never_leaks(bench, full_run, server, tmp_path):
    import mlflow

    req = urllib.request.Request(f"{server}/v1/models")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401
    req.add_header("Authorization", f"Bearer {KEY}")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert b'"tiny"' in r.read()
    models = {"tiny": {"backend": "openai", "openai": {"base_url": f"{server}/v1", "model": "tiny",
                                                       "api_key_env": KEY_ENV, "max_concurrency": 4,
                                                       "requests_per_minute": 6000, "timeout_s": 120}}}
    spec = spec_of(bench, "served", models)
    out = run_benchmark(spec, bench["uri"])
    res = out["models"]["tiny"]
    assert res["complete"]
    for task in TASKS:
        rows = store.read(bench["lake"], "served", "tiny", task).to_pylist()
        assert all(r["error"] is None and r["tokens_out"] > 0 for r in rows)
        served = {r["sample_id"]: r["raw_output"] for r in rows}
        local = {r["sample_id"]: r["raw_output"] for r in store.read(bench["lake"], "full", "tiny", task).to_pylist()}
        assert served == local  # same weights, greedy: HTTP changes nothing
        assert res["tasks"][task] == pytest.approx(full_run["models"]["tiny"]["tasks"][task], nan_ok=True)

    from trialpanorama.bench.report import leaderboard_for_run

    board = leaderboard_for_run(spec, bench["uri"], out)
    assert Path(board["png"]).is_file() and "| tiny | this run |" in Path(board["markdown"]).read_text()

    # the key: nowhere in MLflow (params, tags, metrics names, every artifact) nor in any log
    client = mlflow.MlflowClient()
    texts: list[str] = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            texts += [str(run.data.params), str(run.data.tags), str(list(run.data.metrics))]
            dst = tmp_path / run.info.run_id
            mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(dst))
            texts += [p.read_bytes().decode("utf-8", "replace") for p in dst.rglob("*") if p.is_file()]
    import ray

    session = Path(ray._private.worker._global_node.get_session_dir_path())
    logs = [p for p in session.rglob("*") if p.is_file() and p.stat().st_size < 50 * 2**20]
    logs += [bench["root"] / "serve.log", *Path(bench["root"] / "out").rglob("*.json")]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in logs]
    assert len(texts) > 20 and not any(KEY in t for t in texts)


def test_spark_reads_predictions_with_the_declared_schema(bench, full_run, spark):
    from trialpanorama import lake
    from trialpanorama.schemas import TABLES

    df = lake.read_named(spark, bench["lake"], "predictions")
    assert [(f.name, f.dataType) for f in df.schema.fields] == [
        (f.name, f.dataType) for f in TABLES["predictions"].schema.fields]
    assert df.where("run_id = 'full'").count() == N_TEST * len(TASKS)
