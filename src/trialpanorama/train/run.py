"""The driver side of fine-tuning: recipe -> data versions -> token cache -> TorchTrainer per stage -> MLflow.

``ray_apps/finetune.py`` is a thin wrapper over :func:`finetune`. The run id is derived from the resolved
recipe (``<recipe name>-<hash>``, or ``run.name``); it names the MLflow run and prefixes each stage's Ray
Train run (``<run id>-<stage>``) in the same storage path. Re-submitting the same recipe therefore lands
on the same Ray runs (Train V2 reloads their latest checkpoint) and the same MLflow run (found by tag),
and stages already finished are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from trialpanorama.config import Config
from trialpanorama.train import data as D
from trialpanorama.train.recipe import (
    Plan,
    StagePlan,
    load_recipe,
    resolve,
    resolve_path,
    run_id_for,
    steps_for_epochs,
)

RUN_TAG = "trialpanorama.run_id"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """Connect to the cluster (``ray job submit`` sets RAY_ADDRESS) or start a local one.

    ``address="local"`` forces a fresh local cluster even if another one runs on this machine.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)


# ---------------------------------------------------------------- MLflow (driver) ------------------------

def absolute_sqlite_uri(uri: str | None) -> str | None:
    """``sqlite:///mlflow.db`` names a file relative to the current directory; Ray workers run in another one,
    so they would open a different, empty store and not find the driver's run. Pin it to the driver's path."""
    prefix = "sqlite:///"
    if uri and uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


class DriverTracking:
    """The run's MLflow record: params, lineage, final model. Metrics come from rank 0 of the workers."""

    def __init__(self, plan: Plan, cfg: Config):
        import mlflow

        self.enabled = bool(cfg.get("mlflow.enabled", True))
        self.uri = absolute_sqlite_uri(os.environ.get("MLFLOW_TRACKING_URI") or cfg.get("mlflow.tracking_uri"))
        self.run_id: str | None = None
        if not self.enabled or not self.uri:
            self.enabled = False
            return
        mlflow.set_tracking_uri(self.uri)
        exp = mlflow.set_experiment(str(cfg.get("mlflow.experiment", "finetune")))
        client = mlflow.MlflowClient()
        found = client.search_runs([exp.experiment_id], f"tags.`{RUN_TAG}` = '{plan.run_name}'",
                                   max_results=1)
        if found:
            self.run_id = found[0].info.run_id
            self.resumed = True
            client.update_run(self.run_id, status="RUNNING")
        else:
            run = client.create_run(exp.experiment_id, run_name=plan.run_name, tags={
                RUN_TAG: plan.run_name, "job": "finetune", "recipe": plan.name})
            self.run_id = run.info.run_id
            self.resumed = False
            params = {f"recipe.{k}": v for k, v in _flatten(plan.recipe).items()}
            params.update({f"plan.{k}": v for k, v in _flatten(plan.summary()).items()})
            from mlflow.entities import Param

            items = [Param(k, json.dumps(v, default=str) if not isinstance(v, str) else v)
                     for k, v in params.items()]
            for i in range(0, len(items), 90):
                client.log_batch(self.run_id, params=[Param(p.key, p.value[:6000]) for p in items[i:i + 90]])
        self.client = client

    def lineage(self, stage: str, task: str, path: str, version: int, meta: dict[str, Any]) -> None:
        """Tag ``delta.input.<task>.version`` and log the table as an MLflow dataset input."""
        if not self.enabled:
            return
        import mlflow
        from mlflow.data.delta_dataset_source import DeltaDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        self.client.set_tag(self.run_id, f"delta.input.{task}.version", str(version))
        self.client.set_tag(self.run_id, f"delta.input.{task}.path", path)
        self.client.set_tag(self.run_id, f"tokens.{stage}.{task}", str(meta.get("tokens")))
        ds = MetaDataset(DeltaDatasetSource(path=path, delta_table_version=version), name=f"tasks/{task}",
                         digest=f"{meta['key'][:8]}")
        with mlflow.start_run(run_id=self.run_id):
            mlflow.log_input(ds, context=f"training:{stage}")

    def tag(self, key: str, value: Any) -> None:
        if self.enabled:
            self.client.set_tag(self.run_id, key, str(value))

    def final(self, hf_dir: Path, cfg: Config, summary: dict[str, Any]) -> dict[str, Any]:
        """Log the exported HF folder as an MLflow model (with its chat template) and register it."""
        if not self.enabled:
            return {}
        import mlflow

        out: dict[str, Any] = {}
        with mlflow.start_run(run_id=self.run_id):
            mlflow.log_dict(summary, "summary.json")
            mlflow.log_artifact(str(hf_dir / "chat_template.jinja"))
            mlflow.set_tag("model.checkpoint_uri", str(hf_dir))
            registered = cfg.get("mlflow.registered_model")
            if (hf_dir / "adapter_config.json").is_file():  # LoRA: the adapter folder, base by reference
                mlflow.log_artifacts(str(hf_dir), "adapter")
                mlflow.set_tag("model.base", str(cfg.get("model.path")))
                out["adapter_uri"] = f"runs:/{self.run_id}/adapter"
            elif cfg.get("mlflow.log_weights", True):
                from transformers import AutoModelForCausalLM, AutoTokenizer

                # the exported folder, loaded back: MLflow re-saves it with save_pretrained, tokenizer
                # and its chat template included, so the registry holds exactly the trained weights
                parts = {"model": AutoModelForCausalLM.from_pretrained(hf_dir),
                         "tokenizer": AutoTokenizer.from_pretrained(hf_dir)}
                info = mlflow.transformers.log_model(
                    transformers_model=parts, name="model", task="text-generation",
                    registered_model_name=registered or None,
                    pip_requirements=["transformers", "torch", "accelerate"],
                    metadata={"trialpanorama_run": summary["run_name"],
                              "chat_template_file": "chat_template.jinja"})
                out["model_uri"] = info.model_uri
                if registered:
                    out["registered_model"] = registered
                    out["registered_version"] = info.registered_model_version
            else:  # 8B: keep weights in the checkpoint store; log everything but the weight files
                for f in sorted(hf_dir.iterdir()):
                    if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".pt")):
                        mlflow.log_artifact(str(f), "model_ref")
            self.client.set_terminated(self.run_id, "FINISHED")
        return out

    def failed(self) -> None:
        if self.enabled and self.run_id:
            self.client.set_terminated(self.run_id, "FAILED")


# ---------------------------------------------------------------- data per stage ------------------------

def stage_data(plan: Plan, stage: StagePlan, cfg: Config, template: str | None,
               tracking: DriverTracking) -> tuple[Any, Any, dict[str, Any]]:
    """Tokenize (or reuse the cache) and mix the stage's tables; return (train, eval, info)."""
    import ray.data

    tok_path = str(plan.tokenizer_path)
    train_entries, eval_entries, info = {}, {}, {"tasks": {}}
    split, eval_split = str(cfg.get("data.split", "train")), str(cfg.get("eval.split", "test"))
    for task, spec in stage.tasks.items():
        version = int(spec["version"])  # resolved and checked by pin_data at submission
        entry = D.tokenized_table(plan.cache_dir, task, spec["path"], version, tok_path, template,
                                  plan.max_seq_len, plan.long_prompts)
        stats = D.split_stats(entry, split)
        if not stats["rows"]:
            hint = "" if plan.long_prompts == "keep_tail" else " (data.long_prompts: keep_tail keeps them, prompt cut)"
            raise ValueError(f"{spec['path']}@v{version} has no usable {split!r} rows: none fits "
                             f"max_seq_len={plan.max_seq_len}{hint}")
        train_entries[task] = entry
        info["tasks"][task] = {"version": version, **stats, "cache_hit": entry["hit"], "cache_key": entry["key"]}
        tracking.lineage(stage.name, task, spec["path"], version, {**entry, "tokens": stats["tokens"]})
        if cfg.get("eval.every_steps") and D.split_stats(entry, eval_split)["rows"]:
            eval_entries[task] = entry
    seed = int(cfg.get("data.seed", 0))
    pad_id = D.load_tokenizer(tok_path, template).pad_token_id
    weights = {t: s["weight"] for t, s in stage.tasks.items()}
    materialize = bool(cfg.get("data.materialize", False))
    # Small sets (tiny recipe, tests) are mixed on the driver and handed to Ray Data as one in-memory table,
    # so neither the mix nor epochs 2..n pay Ray Data's per-read start-up; big sets stream from the cache.
    if materialize:
        train = ray.data.from_arrow(D.mixed_table(train_entries, weights, seed, split))
    else:
        train = D.mixed_dataset(train_entries, weights, seed, split)
    tokens = sum(D.split_stats(e, split)["tokens"] * weights[t] for t, e in train_entries.items())
    rows = sum(D.split_stats(e, split)["rows"] * weights[t] for t, e in train_entries.items())
    eval_ds = None
    if eval_entries:  # a few batches of the test split: always small, so always mixed on the driver
        eval_ds = ray.data.from_arrow(D.mixed_table(eval_entries, {t: 1.0 for t in eval_entries}, seed, eval_split))
    if plan.packing:
        kw = {"max_len": plan.max_seq_len, "pad_id": pad_id}
        train = train.map_batches(D.pack_batch, batch_format="numpy", batch_size=256, fn_kwargs=kw)
        if eval_ds is not None:
            eval_ds = eval_ds.map_batches(D.pack_batch, batch_format="numpy", batch_size=256, fn_kwargs=kw)
    if eval_ds is not None:
        eval_ds = eval_ds.limit(int(cfg.get("eval.batches", 8)) * plan.micro_batch_size).materialize()
    if materialize:  # packed once into the object store (not the driver)
        train = train.materialize()
    info["sequences"] = D.expected_sequences(int(tokens), int(rows), plan.max_seq_len, plan.packing)
    return train, eval_ds, info


# ---------------------------------------------------------------- the run ------------------------------

def worker_config(plan: Plan, cfg: Config, stage: StagePlan, total_steps: int, init_from: str | None,
                  template: str | None, tracking: DriverTracking, step_offset: int, has_eval: bool) -> dict:
    return {
        "recipe": plan.recipe, "stage": stage.name, "model_path": str(plan.model_path),
        "tokenizer_path": str(plan.tokenizer_path), "chat_template": template, "init_from": init_from,
        "method": plan.method, "lora": cfg.get("lora") or {}, "parallelism": plan.parallelism,
        "precision": plan.precision, "activation_checkpointing": bool(cfg.get("activation_checkpointing")),
        "attn_implementation": cfg.get("model.attn_implementation"),
        "micro_batch_size": plan.micro_batch_size, "grad_accum": plan.grad_accum, "packing": plan.packing,
        "max_seq_len": plan.max_seq_len, "total_steps": total_steps, "optim": cfg.get("optim") or {},
        "seed": int(cfg.get("data.seed", 0)), "ckpt_every": int(cfg.require("checkpoint.every_steps")),
        "eval_every": int(cfg.get("eval.every_steps") or 0) or total_steps,
        "eval_batches": int(cfg.get("eval.batches", 8)), "has_eval": has_eval,
        "steady_after_steps": int(cfg.get("logging.steady_after_steps", 2)),
        "log_every": int(cfg.get("logging.every_steps", 1)), "use_gpu": plan.use_gpu,
        "peak_tflops": cfg.get("resources.gpu_peak_tflops"), "torch_threads": cfg.get("resources.torch_threads"),
        "mlflow": {"tracking_uri": tracking.uri if tracking.enabled else None, "run_id": tracking.run_id,
                   "step_offset": step_offset},
        "debug": cfg.get("debug") or {},
    }


def run_stage(plan: Plan, cfg: Config, stage: StagePlan, wcfg: dict[str, Any], train: Any,
              eval_ds: Any) -> Any:
    """One Ray Train run. Same name + storage path as a previous submission = resume from its checkpoint."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from trialpanorama.train.loop import train_func

    resources = {"CPU": plan.cpus_per_worker}
    if plan.use_gpu:
        resources["GPU"] = 1
    datasets = {"train": train}
    if eval_ds is not None:
        datasets["eval"] = eval_ds
    trainer = TorchTrainer(
        train_func,
        train_loop_config=wcfg,
        torch_config=TorchConfig(backend="nccl" if plan.use_gpu else "gloo",
                                 timeout_s=int(cfg.get("resources.collective_timeout_s", 1800))),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.num_workers, use_gpu=plan.use_gpu, resources_per_worker=resources,
            placement_strategy=str(cfg.get("resources.placement_strategy", "PACK"))),
        run_config=ray.train.RunConfig(
            name=f"{plan.run_name}-{stage.name}", storage_path=str(plan.storage_path),
            failure_config=ray.train.FailureConfig(max_failures=int(cfg.get("checkpoint.max_failures", 3))),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=int(cfg.require("checkpoint.keep")))),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    return trainer.fit()


def pin_data(plan: Plan, cfg: Config) -> Plan:
    """Resolve every task table's version once, at submission, and name the run after them.

    A stage then reads exactly the version its run is named for, even if the lake moves on while an earlier
    stage trains; and a recipe re-submitted after the task tables changed starts a new run instead of
    resuming (or skipping, as finished) the run trained on the old data.
    """
    tables: dict[str, Any] = {}
    stages = []
    for stage in plan.stages:
        tasks = {}
        for task, spec in stage.tasks.items():
            version, table_id = D.delta_identity(spec["path"], spec["version"])
            tasks[task] = {**spec, "version": version}
            tables[f"{stage.name}/{task}"] = [table_id, version]
        stages.append(dataclasses.replace(stage, tasks=tasks))
    run_name = plan.run_name if cfg.get("run.name") else run_id_for(plan.recipe, tables)
    return dataclasses.replace(plan, stages=stages, run_name=run_name)


def finetune(config: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = (),
             lake: str | None = None, address: str | None = None) -> dict[str, Any]:
    """Run every stage of a recipe; returns a summary (also logged to MLflow as summary.json)."""
    started = time.monotonic()
    cfg = load_recipe(config, overrides)
    plan = resolve(cfg, lake)
    init_ray(address, cfg.get("resources.ray_num_cpus"))
    if cfg.get("model.build_tiny") is not None and not (plan.model_path / "config.json").is_file():
        from trialpanorama.train.tiny import ensure_tiny_model

        paths = sorted({s["path"] for st in plan.stages for s in st.tasks.values()})
        ensure_tiny_model(plan.model_path, paths, cfg.get("model.build_tiny") or {},
                          max_position_embeddings=max(2048, plan.max_seq_len))
        plan = resolve(cfg, lake)  # the arch now comes from the built config.json
    plan = pin_data(plan, cfg)
    template = D.read_template(cfg.get("model.chat_template"))
    if template is not None and str(cfg.get("model.chat_template")).endswith(".jinja"):
        template = D.read_template(str(resolve_path(cfg.get("model.chat_template"))))
    tracking = DriverTracking(plan, cfg)
    marker_dir = plan.storage_path / "_stages"
    marker_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"run_name": plan.run_name, "mlflow_run_id": tracking.run_id,
                               "plan": plan.summary(), "stages": {}}
    init_from: str | None = None
    step_offset = 0
    try:
        for stage in plan.stages:
            marker = marker_dir / f"{plan.run_name}-{stage.name}.json"
            if marker.is_file():  # finished in an earlier submission
                done = json.loads(marker.read_text())
                summary["stages"][stage.name] = {**done, "skipped": True}
                init_from, step_offset = done["hf_dir"], step_offset + done["steps"]
                continue
            t0 = time.monotonic()
            train, eval_ds, info = stage_data(plan, stage, cfg, template, tracking)
            total = stage.max_steps or steps_for_epochs(stage.epochs or 1.0, info["sequences"],
                                                        plan.micro_batch_size, plan.world_size,
                                                        plan.grad_accum)
            wcfg = worker_config(plan, cfg, stage, total, init_from, template, tracking, step_offset,
                                 eval_ds is not None)
            data_s = time.monotonic() - t0
            result = run_stage(plan, cfg, stage, wcfg, train, eval_ds)
            if result.error:
                raise result.error
            ckpt_path = Path(result.checkpoint.path)
            done = {"steps": total, "final_metrics": result.metrics, "checkpoint": str(ckpt_path),
                    "hf_dir": str(ckpt_path / "hf"), "data": info, "data_seconds": round(data_s, 2),
                    "train_seconds": round(time.monotonic() - t0 - data_s, 2)}
            marker.write_text(json.dumps(done, indent=1, default=str))
            summary["stages"][stage.name] = done
            tracking.tag(f"ray.run_name.{stage.name}", f"{plan.run_name}-{stage.name}")
            init_from, step_offset = done["hf_dir"], step_offset + total
        summary["seconds"] = round(time.monotonic() - started, 2)
        assert init_from is not None
        summary["model"] = tracking.final(Path(init_from), cfg, summary)
    except BaseException:
        tracking.failed()
        raise
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python ray_apps/finetune.py --config conf/train/tiny-cpu.yaml [--set k=v ...]``."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="recipe YAML (conf/train/*.yaml)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override any recipe key (dotted), repeatable")
    ap.add_argument("--lake", default=None, help="lake root holding tasks/<task> (default: data.lake)")
    ap.add_argument("--address", default=None, help="Ray address; 'local' = start a private local cluster")
    ap.add_argument("--validate-only", action="store_true", help="resolve and print the plan, train nothing")
    args = ap.parse_args(argv)
    if args.validate_only:
        plan = resolve(load_recipe(args.config, args.overrides), args.lake)
        print(json.dumps(plan.summary(), default=str))
        return 0
    import ray

    owned = not ray.is_initialized()
    try:
        summary = finetune(args.config, args.overrides, args.lake, args.address)
    finally:
        if owned and ray.is_initialized():
            ray.shutdown()  # a local cluster we started must not outlive the command
    print(json.dumps(summary, default=str))
    sys.stdout.flush()
    return 0
