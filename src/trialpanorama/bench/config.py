"""The benchmark's configuration, validated once before any Ray actor or MLflow run starts.

A benchmark YAML (``conf/bench/*.yaml``) names the models, the tasks, the Delta versions of the test
splits, the generation settings and where results go. It is loaded with ``trialpanorama.config.load_config``
(so ``--set key=value`` works the same as for every job) and turned into typed specs here, so a typo in a
backend name or a secret pasted into the file fails fast instead of after an 8B model has loaded.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trialpanorama.config import Config, ConfigError
from trialpanorama.tasks.registry import TASKS

BACKENDS = ("hf", "vllm", "openai")
# Keys that must never hold a secret in a config file: the key is read from the env var the config names.
_SECRET_KEYS = re.compile(r"^(api_key|apikey|key|token|secret|password|authorization)$", re.I)

HF_DEFAULTS: dict[str, Any] = {
    "batch_size": 8,          # rows per Ray Data batch handed to one actor
    "micro_batch_size": 8,    # rows per generate() call inside the actor (sorted by length: less padding)
    "pool_size": 1,           # actors (model replicas)
    "num_cpus": 1,
    "num_gpus": 0,
    "dtype": "auto",
    "max_input_tokens": 2048, # prompts are cut from the left so the answer-format instruction survives
    "torch_threads": 1,
}
OPENAI_DEFAULTS: dict[str, Any] = {
    "base_url": "http://127.0.0.1:8000/v1",
    "model": None,            # model name sent to the endpoint (default: the model's name)
    "api_key_env": None,      # name of the env var holding the key; None = no Authorization header
    "max_concurrency": 4,     # requests in flight per actor
    "requests_per_minute": 600,
    "max_retries": 4,
    "backoff_s": 0.5,         # first retry wait; doubles each retry, with jitter
    "timeout_s": 60.0,
    "pool_size": 1,
    "batch_size": 16,
}
VLLM_DEFAULTS: dict[str, Any] = {
    "tensor_parallel_size": 1,
    "pipeline_parallel_size": 1,
    "enable_prefix_caching": True,   # every prompt of a task shares the system prompt and instructions
    "enable_chunked_prefill": True,
    "max_model_len": 8192,
    "max_num_batched_tokens": 8192,
    "gpu_memory_utilization": 0.90,
    "batch_size": 32,
    "concurrency": 1,                # vLLM engine replicas, each with tensor_parallel_size GPUs
    "max_concurrent_batches": 8,
    "accelerator_type": None,
    "dtype": "auto",
}


@dataclass(frozen=True)
class ModelSpec:
    """One model to benchmark: a name for tables and charts, a backend, where its weights or endpoint are."""

    name: str
    backend: str
    path: str | None
    options: dict[str, Any]

    @property
    def from_registry(self) -> bool:
        return bool(self.path and self.path.startswith("models:/"))


@dataclass(frozen=True)
class Generation:
    max_new_tokens: int = 256
    temperature: float = 0.0  # greedy by default: reruns and resumed runs give the same answers
    top_p: float = 1.0


@dataclass(frozen=True)
class BenchSpec:
    run_id: str
    lake_root: str
    tasks: tuple[str, ...]
    task_versions: dict[str, int | None]
    models: tuple[ModelSpec, ...]
    generation: Generation
    output_dir: Path
    limit: int | None
    flush_rows: int
    search_index: str | None
    experiment: str
    ray: dict[str, Any] = field(default_factory=dict)
    leaderboard: dict[str, Any] = field(default_factory=dict)


def _check_no_secret(where: str, options: dict[str, Any]) -> None:
    for k, v in options.items():
        if _SECRET_KEYS.match(str(k)) and v not in (None, ""):
            raise ConfigError(f"{where}.{k}: secrets never go in a config file; name the env var that holds "
                              "it in api_key_env instead")
        if isinstance(v, dict):
            _check_no_secret(f"{where}.{k}", v)


def model_spec(raw: dict[str, Any], index: int) -> ModelSpec:
    """A validated ModelSpec from one ``models:`` entry, with the backend's defaults filled in."""
    if not isinstance(raw, dict):
        raise ConfigError(f"models[{index}] must be a mapping")
    name = str(raw.get("name") or "").strip()
    backend = str(raw.get("backend") or "").strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9._\-]+", name):
        raise ConfigError(f"models[{index}].name {name!r}: use letters, digits, '.', '_' or '-'")
    if backend not in BACKENDS:
        raise ConfigError(f"models[{index}].backend {backend!r}: one of {', '.join(BACKENDS)}")
    given = dict(raw.get(backend) or {})
    _check_no_secret(f"models[{index}].{backend}", given)
    _check_no_secret(f"models[{index}]", {k: v for k, v in raw.items() if k != backend})
    defaults = {"hf": HF_DEFAULTS, "openai": OPENAI_DEFAULTS, "vllm": VLLM_DEFAULTS}[backend]
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigError(f"models[{index}].{backend}: unknown keys {sorted(unknown)}; known {sorted(defaults)}")
    options = {**defaults, **given}
    path = raw.get("path")
    if backend in ("hf", "vllm") and not path:
        raise ConfigError(f"models[{index}] ({backend}) needs path: a local HF folder, a hub id or models:/name/version")
    if backend == "vllm":
        tp, pp = int(options["tensor_parallel_size"]), int(options["pipeline_parallel_size"])
        if tp < 1 or pp < 1 or (tp & (tp - 1)):
            raise ConfigError(f"models[{index}].vllm.tensor_parallel_size {tp}: a power of two >= 1")
        if not 0.0 < float(options["gpu_memory_utilization"]) <= 1.0:
            raise ConfigError(f"models[{index}].vllm.gpu_memory_utilization must be in (0, 1]")
    if backend == "openai":
        options["model"] = options["model"] or name
        if not str(options["base_url"]).startswith(("http://", "https://")):
            raise ConfigError(f"models[{index}].openai.base_url must be an http(s) URL")
        env = options["api_key_env"]
        if env is not None and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", str(env)):
            raise ConfigError(f"models[{index}].openai.api_key_env {env!r} must be an env var NAME")
    for key in ("batch_size", "pool_size"):
        if key in options and int(options[key]) < 1:
            raise ConfigError(f"models[{index}].{backend}.{key} must be >= 1")
    return ModelSpec(name, backend, str(path) if path else None, options)


def load_bench(cfg: Config) -> BenchSpec:
    """The validated benchmark spec of a loaded config."""
    tasks_raw = cfg.get("tasks", "all")
    tasks = tuple(TASKS) if tasks_raw in ("all", None) else tuple(
        t.strip() for t in (tasks_raw.split(",") if isinstance(tasks_raw, str) else tasks_raw) if t.strip())
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
    versions_raw = cfg.get("task_versions") or {}
    if not isinstance(versions_raw, dict):
        raise ConfigError("task_versions must map task -> Delta version")
    versions = {t: (None if versions_raw.get(t) is None else int(versions_raw[t])) for t in tasks}
    models_raw = cfg.get("models") or {}
    if isinstance(models_raw, dict):  # name -> spec, so `--set models.<name>.path=...` works; null = skip
        models_raw = [{"name": k, **v} for k, v in models_raw.items() if v is not None]
    if not models_raw:
        raise ConfigError("models: at least one model is required")
    models = tuple(model_spec(m, i) for i, m in enumerate(models_raw))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique: {names}")
    gen = cfg.get("generation") or {}
    generation = Generation(int(gen.get("max_new_tokens", 256)), float(gen.get("temperature", 0.0)),
                            float(gen.get("top_p", 1.0)))
    run_id = str(cfg.get("run_id") or f"bench-{uuid.uuid4().hex[:12]}")
    if not re.fullmatch(r"[A-Za-z0-9._\-]+", run_id):
        raise ConfigError(f"run_id {run_id!r}: letters, digits, '.', '_' or '-'")
    limit = cfg.get("limit")
    return BenchSpec(
        run_id=run_id, lake_root=cfg.lake_root, tasks=tasks, task_versions=versions, models=models,
        generation=generation, output_dir=Path(str(cfg.get("output_dir", "bench_out"))).expanduser(),
        limit=None if limit in (None, "", 0) else int(limit), flush_rows=int(cfg.get("flush_rows", 64)),
        search_index=cfg.get("search_index"), experiment=str(cfg.get("mlflow.experiment", "benchmark")),
        ray=dict(cfg.get("ray") or {}), leaderboard=dict(cfg.get("leaderboard") or {}),
    )
