"""Fine-tuning recipes: load ``conf/train/<recipe>.yaml``, apply ``--set`` overrides, validate, resolve.

A recipe is plain YAML (torchtune style, one file per method). Validation happens on the driver before
any Ray worker starts, because a wrong world size or an 8B model that cannot fit is cheaper to catch here
than after twenty minutes of NCCL start-up. :func:`resolve` returns a :class:`Plan` with what the run
will really do: world size, global batch, per-GPU memory estimate, and a stable run id.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trialpanorama.config import PROJECT_ROOT, Config, ConfigError, load_config
from trialpanorama.train import data as D

TASKS = (
    "study_search", "study_screening", "evidence_summary", "arm_design", "eligibility_criteria_design",
    "endpoint_design", "sample_size_estimation", "trial_completion_assessment",
)
METHODS = ("full", "lora")
PARALLELISMS = ("ddp", "fsdp")
PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("cosine", "linear", "constant")
GIB = 1024**3


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a recipe with the project's one config loader, so ``--set a.b=c`` means the same everywhere.

    Recipes also hold lists (``stages``), which ``apply_overrides`` cannot address; here a key part may
    be a list index or a stage's name: ``--set stages.1.epochs=5`` = ``--set stages.stage2.epochs=5``.
    """
    plain = [o for o in overrides if not _through_list(load_config(path).data, o)]
    cfg = load_config(path, plain)
    data = cfg.data
    listed = [o for o in overrides if o not in plain]
    for item in listed:
        _set_through_list(data, item)
    return Config(data, cfg.source, tuple(overrides))


def _through_list(data: dict[str, Any], item: str) -> bool:
    node: Any = data
    for part in item.split("=", 1)[0].strip().split("."):
        if isinstance(node, list):
            return True
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return False


def _set_through_list(data: dict[str, Any], item: str) -> None:
    import yaml

    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if part.isdigit() and int(part) < len(node):
                idx = int(part)
            else:
                idx = next((j for j, x in enumerate(node) if isinstance(x, dict) and x.get("name") == part),
                           None)
                if idx is None:
                    raise ConfigError(f"override {item!r}: no list element {part!r}")
            if last:
                node[idx] = yaml.safe_load(raw)
                return
            node = node[idx]
        else:
            if last:
                node[part] = yaml.safe_load(raw) if raw.strip() else ""
                return
            node = node.setdefault(part, {})


def resolve_path(value: str | os.PathLike[str] | None) -> Path | None:
    """Relative paths in a recipe are relative to the project root, so a recipe works from any cwd."""
    if value in (None, ""):
        return None
    p = Path(os.path.expandvars(os.path.expanduser(str(value))))
    return p if p.is_absolute() else PROJECT_ROOT / p


@dataclass(frozen=True)
class Arch:
    """The numbers of a decoder-only transformer that determine its parameter count and activations."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_embeddings: bool = False
    qk_norm: bool = False

    @classmethod
    def from_mapping(cls, m: dict[str, Any]) -> Arch:
        """Accept either HF ``config.json`` names or the recipe's ``model.arch`` block (same names)."""
        heads = int(m.get("num_attention_heads", m.get("num_heads", 0)))
        hidden = int(m["hidden_size"])
        return cls(
            vocab_size=int(m["vocab_size"]),
            hidden_size=hidden,
            num_layers=int(m.get("num_hidden_layers", m.get("num_layers", 0))),
            intermediate_size=int(m["intermediate_size"]),
            num_heads=heads,
            num_kv_heads=int(m.get("num_key_value_heads", m.get("num_kv_heads", heads))),
            head_dim=int(m.get("head_dim") or hidden // heads),
            tie_embeddings=bool(m.get("tie_word_embeddings", m.get("tie_embeddings", False))),
            qk_norm=bool(m.get("qk_norm", str(m.get("model_type", "")).startswith("qwen3"))),
        )

    def layer_params(self) -> int:
        h, hd = self.hidden_size, self.head_dim
        attn = h * self.num_heads * hd * 2 + h * self.num_kv_heads * hd * 2  # q, o + k, v
        mlp = 3 * h * self.intermediate_size  # gate, up, down
        norms = 2 * h + (2 * hd if self.qk_norm else 0)
        return attn + mlp + norms

    def num_params(self) -> int:
        emb = self.vocab_size * self.hidden_size
        head = 0 if self.tie_embeddings else emb
        return emb + head + self.num_layers * self.layer_params() + self.hidden_size

    def lora_params(self, r: int, targets: list[str]) -> int:
        """LoRA adds r*(d_in + d_out) per targeted projection per layer."""
        h, hd, i = self.hidden_size, self.head_dim, self.intermediate_size
        shapes = {
            "q_proj": (h, self.num_heads * hd), "k_proj": (h, self.num_kv_heads * hd),
            "v_proj": (h, self.num_kv_heads * hd), "o_proj": (self.num_heads * hd, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }
        unknown = [t for t in targets if t not in shapes]
        if unknown:
            raise ConfigError(f"lora.target_modules: unknown module(s) {unknown}; known: {sorted(shapes)}")
        return self.num_layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU bytes, split the way people reason about them (ZeRO paper terms)."""

    params: float
    grads: float
    optimizer: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations + self.logits

    def as_gib(self) -> dict[str, float]:
        return {k: round(v / GIB, 2) for k, v in {
            "params": self.params, "grads": self.grads, "optimizer": self.optimizer,
            "activations": self.activations, "logits": self.logits, "total": self.total}.items()}


def estimate_memory(arch: Arch, *, method: str, parallelism: str, world: int, micro_batch: int,
                    seq_len: int, precision: str, activation_checkpointing: bool,
                    lora_r: int = 0, lora_targets: list[str] | None = None) -> MemoryEstimate:
    """Rough per-device memory for one training step, good enough to reject recipes that cannot fit.

    Full fine-tuning with AdamW under mixed precision keeps fp32 master weights (4 B/param), fp32 grads
    (4 B) and two fp32 Adam moments (8 B): 16 B/param, divided by the world size under FSDP full shard
    and not divided under DDP. LoRA keeps the frozen base in the compute dtype (2 B bf16, 4 B fp32;
    sharded only under FSDP) and pays the 16 B only on the adapter parameters. Activations: with
    activation checkpointing one hidden-state tensor per layer plus one layer being recomputed; without,
    every layer's ~(18h + 4i) values per token are kept. Logits are materialized in fp32 for the loss.
    """
    p = arch.num_params()
    compute_bytes = 2 if precision == "bf16" else 4
    shard = world if parallelism == "fsdp" else 1
    if method == "full":
        params, grads, optim = 4 * p / shard, 4 * p / shard, 8 * p / shard
    else:
        lp = arch.lora_params(lora_r, lora_targets or [])
        params = compute_bytes * p / shard + 4 * lp
        grads, optim = 4 * lp, 8 * lp
    tokens = micro_batch * seq_len
    h, i = arch.hidden_size, arch.intermediate_size
    per_layer_full = tokens * (18 * h + 4 * i) * compute_bytes
    if activation_checkpointing:
        acts = arch.num_layers * tokens * h * compute_bytes + per_layer_full
    else:
        acts = arch.num_layers * per_layer_full
    logits = tokens * arch.vocab_size * 4 * 2  # fp32 logits and their gradient
    return MemoryEstimate(params, grads, optim, acts, logits)


@dataclass(frozen=True)
class StagePlan:
    name: str
    tasks: dict[str, dict[str, Any]]  # task -> {"weight": float, "version": int | None, "path": str}
    epochs: float | None
    max_steps: int | None


@dataclass(frozen=True)
class Plan:
    """Everything the driver and the workers need, resolved once and logged as MLflow params."""

    recipe: dict[str, Any]
    name: str
    run_name: str
    method: str
    parallelism: str
    precision: str
    num_workers: int
    use_gpu: bool
    gpus_per_worker: int
    cpus_per_worker: float
    micro_batch_size: int
    grad_accum: int
    max_seq_len: int
    packing: bool
    long_prompts: str
    stages: list[StagePlan]
    model_path: Path
    tokenizer_path: Path
    storage_path: Path
    cache_dir: Path
    arch: Arch | None
    memory: MemoryEstimate | None
    gpu_memory_gb: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.num_workers

    @property
    def global_batch(self) -> int:
        return self.micro_batch_size * self.grad_accum * self.world_size

    def summary(self) -> dict[str, Any]:
        return {
            "run_name": self.run_name, "method": self.method, "parallelism": self.parallelism,
            "precision": self.precision, "world_size": self.world_size, "global_batch": self.global_batch,
            "micro_batch_size": self.micro_batch_size, "grad_accum": self.grad_accum,
            "num_params": self.arch.num_params() if self.arch else None,
            "memory_gib_per_gpu": self.memory.as_gib() if self.memory else None,
            "stages": [s.name for s in self.stages], "warnings": self.warnings,
        }


def _req(cfg: Config, key: str) -> Any:
    return cfg.require(key)


def _int(cfg: Config, key: str, default: int | None = None, minimum: int = 1) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise ConfigError(f"recipe key {key!r} is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"recipe key {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _choice(cfg: Config, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = cfg.get(key, default)
    if value not in choices:
        raise ConfigError(f"recipe key {key!r} must be one of {choices}, got {value!r}")
    return str(value)


def _arch(cfg: Config, model_path: Path) -> Arch | None:
    config_json = model_path / "config.json"
    if config_json.is_file():
        return Arch.from_mapping(json.loads(config_json.read_text()))
    block = cfg.get("model.arch")
    return Arch.from_mapping(block) if isinstance(block, dict) else None


def run_id_for(recipe: dict[str, Any], data_tables: dict[str, Any] | None = None) -> str:
    """A stable id from the resolved recipe and the task tables it reads: the same recipe re-submitted on the
    same data gets the same run (and resumes); new data (a new Delta version, or a rebuilt table) a new run.

    ``run.name`` in the recipe wins; ``run.resume_key`` lets a user force a fresh run of the same recipe.
    """
    body = {k: v for k, v in recipe.items() if k not in ("run", "debug")}
    if data_tables:
        body["_data_tables"] = data_tables
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{recipe.get('name', 'finetune')}-{digest}"


def resolve(cfg: Config, lake_root: str | None = None) -> Plan:
    """Validate a loaded recipe and compute the derived numbers; raise ConfigError on anything wrong."""
    data = cfg.data
    name = str(_req(cfg, "name"))
    method = _choice(cfg, "method", METHODS)
    parallelism = _choice(cfg, "parallelism", PARALLELISMS)
    precision = _choice(cfg, "precision", PRECISIONS)
    use_gpu = bool(cfg.get("resources.use_gpu", False))
    num_workers = _int(cfg, "resources.num_workers")
    gpus_per_worker = _int(cfg, "resources.gpus_per_worker", 1 if use_gpu else 0, minimum=0)
    if use_gpu and gpus_per_worker != 1:
        raise ConfigError("resources.gpus_per_worker must be 1: one Ray Train worker drives one GPU")
    if not use_gpu and gpus_per_worker:
        raise ConfigError("resources.gpus_per_worker > 0 needs resources.use_gpu: true")
    nodes = cfg.get("resources.num_nodes")
    if nodes is not None:
        per_node = cfg.get("resources.workers_per_node")
        if per_node is None or int(nodes) * int(per_node) != num_workers:
            raise ConfigError(f"resources.num_workers={num_workers} must equal num_nodes x workers_per_node "
                              f"({nodes} x {per_node})")
    if precision == "bf16" and not use_gpu:
        raise ConfigError("precision bf16 is for GPUs; CPU recipes use fp32")
    if parallelism == "fsdp" and method == "lora" and not cfg.get("lora.allow_fsdp", False):
        raise ConfigError("LoRA with FSDP is not supported by this loop; use parallelism: ddp for LoRA")
    micro = _int(cfg, "batch.micro_batch_size")
    accum = _int(cfg, "batch.grad_accum")
    expected = cfg.get("batch.global_batch")
    if expected is not None and int(expected) != micro * accum * num_workers:
        raise ConfigError(f"batch.global_batch={expected} but micro_batch_size x grad_accum x world = "
                          f"{micro} x {accum} x {num_workers} = {micro * accum * num_workers}")
    max_len = _int(cfg, "data.max_seq_len", minimum=16)
    long_prompts = _choice(cfg, "data.long_prompts", D.LONG_PROMPTS, "drop")
    lr = cfg.get("optim.lr")
    if not isinstance(lr, (int, float)) or not (0 < float(lr) < 1):
        raise ConfigError(f"optim.lr must be a number in (0, 1), got {lr!r}")
    _choice(cfg, "optim.schedule", SCHEDULES, "cosine")
    if method == "lora":
        _int(cfg, "lora.r")
        targets = cfg.get("lora.target_modules")
        if not targets or not isinstance(targets, list):
            raise ConfigError("lora.target_modules must be a non-empty list")
    _int(cfg, "checkpoint.every_steps")
    _int(cfg, "checkpoint.keep")

    lake = lake_root or os.environ.get("TRIALPANORAMA_LAKE") or cfg.get("data.lake", "lakehouse")
    stages_raw = cfg.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ConfigError("stages must be a non-empty list")
    stages: list[StagePlan] = []
    for idx, st in enumerate(stages_raw):
        if not isinstance(st, dict) or not st.get("name"):
            raise ConfigError(f"stages[{idx}] needs a name")
        tasks = st.get("tasks")
        if not isinstance(tasks, dict) or not tasks:
            raise ConfigError(f"stages[{idx}].tasks must map task names to {{weight, version}}")
        resolved: dict[str, dict[str, Any]] = {}
        for task, spec in tasks.items():
            if task not in TASKS:
                raise ConfigError(f"stages[{idx}].tasks: unknown task {task!r}; known: {TASKS}")
            spec = spec or {}
            weight = float(spec.get("weight", 1.0))
            if weight <= 0:
                raise ConfigError(f"stages[{idx}].tasks.{task}.weight must be > 0")
            version = spec.get("version")
            if version is not None and (not isinstance(version, int) or version < 0):
                raise ConfigError(f"stages[{idx}].tasks.{task}.version must be a Delta version >= 0 or null")
            path = str(resolve_path(spec.get("path") or f"{lake}/tasks/{task}"))
            resolved[task] = {"weight": weight, "version": version, "path": path}
        epochs, steps = st.get("epochs"), st.get("max_steps")
        if (epochs is None) == (steps is None):
            raise ConfigError(f"stages[{idx}] ({st['name']}) needs exactly one of epochs or max_steps")
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"stages[{idx}].max_steps must be a positive integer")
        if epochs is not None and float(epochs) <= 0:
            raise ConfigError(f"stages[{idx}].epochs must be > 0")
        stages.append(StagePlan(str(st["name"]), resolved, None if epochs is None else float(epochs), steps))
    if len({s.name for s in stages}) != len(stages):
        raise ConfigError("stage names must be unique")

    model_path = resolve_path(_req(cfg, "model.path"))
    assert model_path is not None
    tokenizer_path = resolve_path(cfg.get("model.tokenizer")) or model_path
    arch = _arch(cfg, model_path)
    ac = bool(cfg.get("activation_checkpointing", False))
    memory = None
    warnings: list[str] = []
    if arch is not None:
        memory = estimate_memory(
            arch, method=method, parallelism=parallelism, world=num_workers, micro_batch=micro,
            seq_len=max_len, precision=precision, activation_checkpointing=ac,
            lora_r=int(cfg.get("lora.r", 0) or 0), lora_targets=cfg.get("lora.target_modules"))
    elif use_gpu:
        warnings.append("no config.json and no model.arch: memory not estimated")
    gpu_mem = cfg.get("resources.gpu_memory_gb")
    if use_gpu and memory is not None and gpu_mem is not None:
        usable = float(gpu_mem) * float(cfg.get("resources.gpu_memory_headroom", 0.9))
        if memory.total / GIB > usable:
            raise ConfigError(
                f"estimated {memory.total / GIB:.1f} GiB per GPU exceeds {usable:.1f} GiB usable of "
                f"{gpu_mem} GiB ({memory.as_gib()}); use fsdp, lora, activation checkpointing or a "
                "smaller micro batch")

    run_name = str(cfg.get("run.name") or run_id_for(data))
    storage = resolve_path(cfg.get("checkpoint.storage_path") or os.environ.get("TRIALPANORAMA_RUNS")
                           or ".cache/ray_runs")
    cache = resolve_path(cfg.get("data.cache_dir") or ".cache/tokenized")
    assert storage is not None and cache is not None
    return Plan(
        recipe=data, name=name, run_name=run_name, method=method, parallelism=parallelism,
        precision=precision, num_workers=num_workers, use_gpu=use_gpu, gpus_per_worker=gpus_per_worker,
        cpus_per_worker=float(cfg.get("resources.cpus_per_worker", 1)), micro_batch_size=micro,
        grad_accum=accum, max_seq_len=max_len, packing=bool(cfg.get("data.packing", True)),
        long_prompts=long_prompts, stages=stages,
        model_path=model_path, tokenizer_path=tokenizer_path, storage_path=storage, cache_dir=cache,
        arch=arch, memory=memory, gpu_memory_gb=None if gpu_mem is None else float(gpu_mem),
        warnings=warnings,
    )


def steps_for_epochs(epochs: float, sequences: int, micro: int, world: int, accum: int) -> int:
    """Optimizer steps that cover ``epochs`` passes over ``sequences`` (packed rows or examples)."""
    per_step = micro * world * accum
    return max(1, math.ceil(epochs * sequences / per_step))
