"""Run a benchmark: per model, one Ray Data flow over every task's test split into the predictions table.

    test samples (Delta, pinned version) -> messages -> inference (actor pool / vLLM / HTTP) -> parse ->
    per-sample score -> ``predictions`` (Delta, MERGE per flush) -> task metrics re-computed from the table

Why the metrics are computed from the table and not from the stream: the table is the record; anyone can
re-check a leaderboard number with ``score_from_table`` and get the same value, and a resumed run (same
``run_id``) scores the union of what every attempt wrote. Samples to run are chosen on the driver (test ids
at the pinned version, minus ids already answered without error, first ``limit`` in id order), so an
interrupted run and its resumption together answer exactly the samples one uninterrupted run would.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from trialpanorama.bench import store
from trialpanorama.bench.config import BenchSpec, ModelSpec
from trialpanorama.lake import table_uri
from trialpanorama.tasks.base import UNPARSEABLE
from trialpanorama.tasks.registry import load_task

# The per-sample score of a task: its headline metric computed on that one sample.
PRIMARY: dict[str, str] = {
    "study_search": "recall@100", "study_screening": "accuracy", "evidence_summary": "accuracy",
    "arm_design": "accuracy", "eligibility_criteria_design": "accuracy", "endpoint_design": "accuracy",
    "sample_size_estimation": "accuracy_within_20pct", "trial_completion_assessment": "balanced_accuracy_outcome",
}
TASK_COLUMNS = ["sample_id", "task", "task_version", "split", "reference", "input", "messages"]


def _local(path: str) -> str:
    return path.removeprefix("file://").removeprefix("file:")


def is_unparseable(pred: Any) -> bool:
    """The task modules' explicit outcome: the string, or a dict whose main field is it (completion)."""
    if isinstance(pred, str):
        return pred == UNPARSEABLE
    if isinstance(pred, dict):
        return pred.get("outcome") == UNPARSEABLE
    return pred is None


@lru_cache(maxsize=4)
def _open_index(path: str) -> Any:
    from trialpanorama.search.index import LiteratureIndex

    return LiteratureIndex(path)


def score_kwargs(task: str, index_path: str | None) -> dict[str, Any]:
    """Extra arguments a task's ``score`` takes (study_search: the literature index)."""
    mod = load_task(task)
    if "index" in inspect.signature(mod.score).parameters:
        if not index_path:
            raise ValueError(f"{task} needs the literature index: set search_index in the bench config")
        return {"index": _open_index(index_path)}
    return {}


def score_batch(batch: Any, index_path: str | None = None) -> Any:
    """Ray Data stage: parse each raw output with its task's ``parse`` and score the sample alone."""
    parsed, scores, correct, unparseable = [], [], [], []
    for task, raw, ref in zip(batch["task"], batch["raw_output"], batch["reference"], strict=True):
        mod = load_task(task)
        pred = mod.parse(raw)
        kwargs = score_kwargs(task, index_path if task == "study_search" else None)
        value = float(mod.score([pred], [ref], **kwargs).get(PRIMARY[task], 0.0))
        value = 0.0 if math.isnan(value) else value
        parsed.append(json.dumps(pred, ensure_ascii=False, sort_keys=True))
        scores.append(value)
        correct.append(value >= 1.0 - 1e-9)
        unparseable.append(is_unparseable(pred))
    batch = batch.copy()
    batch["parsed"], batch["score"], batch["correct"], batch["unparseable"] = parsed, scores, correct, unparseable
    return batch.drop(columns=[c for c in ("messages_json",) if c in batch.columns])


def prepare_batch(batch: Any, selected: frozenset[str], dataset_version: int) -> Any:
    """Ray Data stage: keep the selected test rows, render messages as JSON (the task's own prompt)."""
    import pandas as pd

    keep = batch[(batch["split"] == "test") & batch["sample_id"].isin(selected)]
    messages = []
    for row in keep.itertuples(index=False):
        msgs = row.messages
        if msgs is None or len(msgs) == 0:
            msgs, _ = load_task(row.task).to_messages({"input": row.input, "reference": row.reference})
        messages.append(json.dumps([{"role": m["role"], "content": m["content"]} for m in msgs],
                                   ensure_ascii=False))
    return pd.DataFrame({
        "sample_id": keep["sample_id"].astype(str).tolist(), "task": keep["task"].astype(str).tolist(),
        "task_version": keep["task_version"].astype(str).tolist(), "dataset_version": [int(dataset_version)] * len(keep),
        "reference": keep["reference"].astype(str).tolist(), "messages_json": messages,
    })


# ------------------------------------------------------------------------------------------ test sets
def task_version(lake_root: str, task: str, pinned: int | None) -> int:
    from deltalake import DeltaTable

    path = _local(table_uri(lake_root, task))
    if not DeltaTable.is_deltatable(path):
        raise FileNotFoundError(f"task table {task} not found at {path}: run jobs/build_tasks.py first")
    return int(pinned) if pinned is not None else int(DeltaTable(path).version())


def test_ids(lake_root: str, task: str, version: int) -> list[str]:
    """sample_ids of the test split at ``version``, sorted (delta-rs on the driver: two small columns)."""
    from deltalake import DeltaTable

    t = DeltaTable(_local(table_uri(lake_root, task)), version=version).to_pyarrow_table(columns=["sample_id", "split"])
    return sorted(s for s, sp in zip(t.column("sample_id").to_pylist(), t.column("split").to_pylist(), strict=True)
                  if sp == "test")


def default_index_path(lake_root: str, version: int) -> str | None:
    """The literature index study_search's references were built against (``<lake>/search/publications-vN``)."""
    from deltalake import DeltaTable

    t = DeltaTable(_local(table_uri(lake_root, "study_search")), version=version).to_pyarrow_table(
        columns=["reference", "split"])
    for ref, sp in zip(t.column("reference").to_pylist(), t.column("split").to_pylist(), strict=True):
        if sp == "test":
            v = json.loads(ref).get("publications_version")
            from trialpanorama.search.build import index_root
            from trialpanorama.search.index import index_path

            return str(index_path(index_root(lake_root, {}), -1 if v is None else v))
    return None


def score_from_table(lake_root: str, run_id: str, model: str, task: str,
                     index_path: str | None = None) -> dict[str, float]:
    """The task's metrics re-computed from the predictions table alone (what the leaderboard shows)."""
    t = store.read(lake_root, run_id, model, task, columns=["sample_id", "parsed", "reference", "unparseable",
                                                           "tokens_in", "tokens_out", "error"])
    if t.num_rows == 0:
        return {}
    rows = sorted(t.to_pylist(), key=lambda r: r["sample_id"])
    mod = load_task(task)
    preds = [store.parsed_value(r["parsed"]) for r in rows]
    metrics = dict(mod.score(preds, [r["reference"] for r in rows], **score_kwargs(task, index_path)))
    metrics.update({"samples": float(len(rows)), "unparseable_count": float(sum(bool(r["unparseable"]) for r in rows)),
                    "errors": float(sum(1 for r in rows if r["error"])),
                    "tokens_in": float(sum(r["tokens_in"] or 0 for r in rows)),
                    "tokens_out": float(sum(r["tokens_out"] or 0 for r in rows))})
    return metrics


# ---------------------------------------------------------------------------------------------- Ray
def init_ray(spec: BenchSpec) -> bool:
    """Start (or join) Ray; returns True when this call started it (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = spec.ray.get("address") or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:  # "local": a private cluster, never one that happens to run on this machine (ray_current_cluster)
        ray.init(address="local", num_cpus=int(spec.ray.get("num_cpus", 2)), num_gpus=spec.ray.get("num_gpus"),
                 include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
                 object_store_memory=int(spec.ray.get("object_store_mb", 256)) * 2**20)
    ctx = __import__("ray").data.DataContext.get_current()
    ctx.enable_progress_bars = bool(spec.ray.get("progress_bars", False))
    return True


def build_flow(spec: BenchSpec, model: ModelSpec, model_path: str, plan: dict[str, dict[str, Any]],
               index_path: str | None) -> Any:
    """The lazy Ray Dataset of one model over every task still to run (None when nothing is left)."""
    import ray

    task_cpus = float(spec.ray.get("task_cpus", 1))
    parts = []
    for task, p in plan.items():
        if not p["selected"]:
            continue
        ds = ray.data.read_delta(_local(table_uri(spec.lake_root, task)), version=p["version"], columns=TASK_COLUMNS,
                                 num_cpus=task_cpus)
        parts.append(ds.map_batches(prepare_batch, batch_format="pandas", zero_copy_batch=True, num_cpus=task_cpus,
                                    fn_kwargs={"selected": frozenset(p["selected"]),
                                               "dataset_version": p["version"]}))
    if not parts:
        return None
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    generation = asdict(spec.generation)
    opts = dict(model.options)
    if model.backend == "vllm":
        from trialpanorama.bench.lm import vllm_processor

        ds = vllm_processor(model_path, opts, generation)(ds)
    else:
        from trialpanorama.bench.lm import Predictor

        pool, batch_size = int(opts.pop("pool_size")), int(opts.pop("batch_size"))
        num_cpus = float(opts.pop("num_cpus", 0.25 if model.backend == "openai" else 1))
        num_gpus = float(opts.pop("num_gpus", 0))
        if spec.ray.get("check_resources", True):
            _check_room(model.name, pool, num_cpus, task_cpus)
        remote = {"num_cpus": num_cpus}
        if num_gpus:
            remote["num_gpus"] = num_gpus
        ds = ds.map_batches(Predictor, batch_size=batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=pool),
                            fn_constructor_kwargs={"backend": model.backend, "path": model_path, "name": model.name,
                                                   "options": opts, "generation": generation}, **remote)
    return ds.map_batches(score_batch, batch_format="pandas", num_cpus=task_cpus, fn_kwargs={"index_path": index_path})


def _check_room(model: str, pool: int, actor_cpus: float, task_cpus: float) -> None:
    """Fail fast instead of hanging: Ray Data's read and scoring tasks need room beside the model pool.

    Ray Data waits forever, without an error, when the actor pool takes the CPUs its read and scoring tasks
    need (seen with ray.num_cpus=1 and an hf pool of 1 CPU, with an openai pool of 0.25 CPU, and on two
    1-CPU nodes with two 0.5-CPU replicas, one per node, leaving half a CPU on each where a task asks for
    one). The check is per node, on the alive nodes of the cluster as it is now; an autoscaling cluster,
    which adds nodes on demand, turns it off with ray.check_resources=false.
    """
    import ray

    nodes = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    problem = placement_problem(nodes, pool, actor_cpus, task_cpus)
    if problem:
        raise ValueError(f"model {model}: {problem} (lower models.<name>.hf.num_cpus or pool_size, or "
                         "ray.task_cpus, or give the cluster more CPUs; ray.check_resources=false skips this "
                         "check on an autoscaling cluster)")


def placement_problem(node_cpus: list[float], pool: int, actor_cpus: float, task_cpus: float) -> str | None:
    """Why `pool` actors of `actor_cpus` and one task of `task_cpus` may not all run on these nodes, or None.

    Ray's default placement packs a node up to half its CPUs, then spreads; it is neither of the two
    extremes, so both are tried: actors packed onto as few nodes as possible, and each actor on the node
    with the most CPUs free. Either way every actor must fit, and some node must keep room for a task.
    """
    eps = 1e-9
    total = sum(node_cpus)
    if pool * actor_cpus > total + eps:
        return f"its actor pool needs {pool * actor_cpus:g} CPUs of the cluster's {total:g}"
    for how in ("packed", "spread"):
        free = sorted(node_cpus, reverse=True)
        for _ in range(pool):
            fits = [i for i, f in enumerate(free) if f + eps >= actor_cpus]
            if not fits:
                return (f"{pool} actors of {actor_cpus:g} CPUs do not fit on nodes of {node_cpus} CPUs "
                        f"when placed {how}")
            pick = (min(fits, key=lambda i: free[i]) if how == "packed" else max(fits, key=lambda i: free[i]))
            free[pick] -= actor_cpus
        if max(free, default=0) + eps < task_cpus:
            return (f"its actor pool of {pool} x {actor_cpus:g} CPUs, placed {how} on nodes of {node_cpus} CPUs, "
                    f"leaves no node with the {task_cpus:g} CPUs a read or scoring task asks for")
    return None


def _to_table(batch: pa.Table, run_id: str, model: ModelSpec, source: str) -> pa.Table:
    n = batch.num_rows
    now = pa.array([time.time_ns() // 1000] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    cols = {name: batch.column(name) for name in batch.column_names}
    err = [e or None for e in cols["error"].to_pylist()] if "error" in cols else [None] * n
    cols.update({"run_id": pa.array([run_id] * n), "model": pa.array([model.name] * n),
                 "backend": pa.array([model.backend] * n), "model_source": pa.array([source] * n),
                 "error": pa.array(err, pa.string()), "created_at": now})
    return store.conform(pa.table(cols))


# ------------------------------------------------------------------------------------------- MLflow
def _mlflow_run(spec: BenchSpec, model: ModelSpec, tracking_uri: str) -> Any:
    """The MLflow run of (run_id, model): resumed when a previous attempt created it."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.set_experiment(spec.experiment)
    found = mlflow.search_runs([exp.experiment_id], output_format="list", max_results=1,
                               filter_string=f"tags.`bench.run_id` = '{spec.run_id}' and tags.`bench.model` = '{model.name}'")
    if found:
        return mlflow.start_run(run_id=found[0].info.run_id)
    return mlflow.start_run(run_name=f"{model.name}@{spec.run_id}",
                            tags={"job": "benchmark", "bench.run_id": spec.run_id, "bench.model": model.name,
                                  "bench.backend": model.backend})


def _metric_key(*parts: str) -> str:
    return ".".join(parts).replace("@", "_at_")


def run_model(spec: BenchSpec, model: ModelSpec, tracking_uri: str) -> dict[str, Any]:
    """Benchmark one model on every task; returns its metrics per task and the run's throughput."""
    import mlflow

    from trialpanorama.bench.lm import resolve_model_path

    model_path, registry_version = (resolve_model_path(model.path, tracking_uri) if model.path else ("", None))
    plan: dict[str, dict[str, Any]] = {}
    for task in spec.tasks:
        version = task_version(spec.lake_root, task, spec.task_versions.get(task))
        ids = test_ids(spec.lake_root, task, version)
        done = store.done_ids(spec.lake_root, spec.run_id, model.name, task)
        todo = [i for i in ids if i not in done]
        if spec.limit is not None:
            todo = todo[: spec.limit]
        plan[task] = {"version": version, "n_test": len(ids), "done_before": len(done & set(ids)), "selected": todo}
    index_path = spec.search_index or os.environ.get("TRIALPANORAMA_SEARCH_INDEX")
    if "study_search" in plan and not index_path:
        index_path = default_index_path(spec.lake_root, plan["study_search"]["version"])
    with _mlflow_run(spec, model, tracking_uri) as run:
        params = {"model": model.name, "backend": model.backend, "model_source": model.path or "",
                  "tasks": ",".join(spec.tasks), "generation": json.dumps(asdict(spec.generation)),
                  "options": json.dumps(model.options, sort_keys=True, default=str),
                  **{f"task_version.{t}": p["version"] for t, p in plan.items()}}
        existing = run.data.params if hasattr(run, "data") else {}
        mlflow.log_params({k: v for k, v in params.items() if k not in existing})
        if registry_version:
            mlflow.set_tags({"model.registry_uri": model.path, "model.registry_version": registry_version})
        for task, p in plan.items():
            mlflow.set_tag(f"delta.input.{task}.version", str(p["version"]))
        t0 = time.perf_counter()
        written, tokens_out, tokens_in = 0, 0, 0
        flow = build_flow(spec, model, model_path, plan, index_path)
        first_row_s = None
        if flow is not None:
            for batch in flow.iter_batches(batch_size=spec.flush_rows, batch_format="pyarrow"):
                if first_row_s is None:
                    first_row_s = time.perf_counter() - t0
                table = _to_table(batch, spec.run_id, model, model.path or "")
                store.write(spec.lake_root, table)
                written += table.num_rows
                tokens_out += sum(table.column("tokens_out").to_pylist())
                tokens_in += sum(table.column("tokens_in").to_pylist())
        wall = time.perf_counter() - t0
        results: dict[str, dict[str, float]] = {}
        metrics: dict[str, float] = {}
        for task in plan:
            m = score_from_table(spec.lake_root, spec.run_id, model.name, task, index_path)
            results[task] = m
            metrics.update({_metric_key(task, k): v for k, v in m.items() if isinstance(v, (int, float)) and v == v})
        throughput = {"rows": float(written), "wall_s": wall, "rows_per_s": written / wall if wall else 0.0,
                      "tokens_out_per_s": tokens_out / wall if wall else 0.0,
                      "tokens_in_per_s": tokens_in / wall if wall else 0.0,
                      "first_batch_s": float(first_row_s or 0.0)}
        metrics.update({_metric_key("throughput", k): v for k, v in throughput.items()})
        mlflow.log_metrics(metrics)
        _log_tables_and_inputs(spec, model, plan)
        pv = store.version(spec.lake_root)
        if pv is not None:
            mlflow.set_tag("delta.predictions.version", str(pv))
        complete = all(results.get(t, {}).get("samples", 0) >= p["n_test"] for t, p in plan.items())
        mlflow.set_tag("bench.complete", str(complete).lower())
        mlflow_run_id = run.info.run_id
    return {"model": model.name, "backend": model.backend, "mlflow_run_id": mlflow_run_id,
            "registry_version": registry_version, "tasks": results, "throughput": throughput,
            "complete": complete, "task_versions": {t: p["version"] for t, p in plan.items()},
            "n_test": {t: p["n_test"] for t, p in plan.items()}}


def _log_tables_and_inputs(spec: BenchSpec, model: ModelSpec, plan: dict[str, dict[str, Any]]) -> None:
    """Predictions as MLflow tables (one per task) and each test set as an eval dataset with its version."""
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    for task, p in plan.items():
        t = store.read(spec.lake_root, spec.run_id, model.name, task,
                       columns=["sample_id", "raw_output", "parsed", "reference", "score", "correct", "unparseable",
                                "error", "tokens_in", "tokens_out", "latency_s"])
        df = t.to_pandas()
        if len(df):
            mlflow.log_table(data=df, artifact_file=f"predictions/{task}.json")
        ids = test_ids(spec.lake_root, task, p["version"])
        import pandas as pd

        source = DeltaDatasetSource(path=table_uri(spec.lake_root, task), delta_table_version=int(p["version"]))
        ds = mlflow.data.from_pandas(pd.DataFrame({"sample_id": ids}), source=source, name=f"{task}-test")
        # MLflow's DeltaDatasetSource drops a version of 0 (falsy), so the version is also an input tag.
        mlflow.log_input(ds, context="eval", tags={"split": "test", "task": task,
                                                   "delta_table_version": str(p["version"])})


def clean(obj: Any) -> Any:
    """NaN (an undefined metric, e.g. MAE with no parseable answer) as null, so the JSON is valid."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj


def run_benchmark(spec: BenchSpec, tracking_uri: str) -> dict[str, Any]:
    """Every model of the spec, one after another on one Ray cluster; writes ``<output>/<run_id>/``."""
    import ray

    started = init_ray(spec)
    out: dict[str, Any] = {"run_id": spec.run_id, "models": {}}
    try:
        for model in spec.models:
            print(f"benchmark {spec.run_id}: {model.name} ({model.backend})", file=sys.stderr)
            out["models"][model.name] = run_model(spec, model, tracking_uri)
    finally:
        if started:
            ray.shutdown()
    folder = Path(spec.output_dir) / spec.run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(clean(out), indent=1, sort_keys=True, default=str))
    out["output_dir"] = str(folder)
    return out
