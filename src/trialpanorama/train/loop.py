"""The training loop that runs in every Ray Train worker (``TorchTrainer(train_loop_per_worker=...)``).

It is written out in full on purpose (nanoGPT style): model, optimizer and schedule are built here, the
step loop is visible, and checkpoint save/restore is two plain functions. One code path serves DDP on
CPU (gloo, the tests) and FSDP2 on GPUs (NCCL, the 8B recipes); the only differences are the wrapper
and the autocast dtype.

Checkpoints are torch.distributed.checkpoint (DCP) folders: each rank writes its own shard files, Ray
merges every rank's files into one checkpoint folder in the run's storage path, so the same save works
for replicated (DDP) and sharded (FSDP) states. Next to them: ``trainer.pt`` (step, scheduler, tokens)
and ``rank<r>.pt`` (that rank's RNG states and data position), so a restarted worker group continues
from the exact micro-batch where the checkpoint was taken.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from trialpanorama.train.data import IGNORE, collate, load_tokenizer

PEAK_TFLOPS_DEFAULT = 989.0  # H100/H200 SXM dense bf16


# ---------------------------------------------------------------- model -------------------------------

def build_model(cfg: dict[str, Any], device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Load the HF model (or the previous stage's weights), add LoRA, wrap for DDP/FSDP.

    Returns (wrapped, inner): ``inner`` is the plain HF/PEFT module whose ``save_pretrained`` is used
    at the end.
    """
    from transformers import AutoModelForCausalLM

    source = cfg["init_from"] or cfg["model_path"]
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch.float32, attn_implementation=cfg.get("attn_implementation") or "sdpa")
    model.config.use_cache = False
    if cfg["method"] == "lora":
        from peft import LoraConfig, get_peft_model

        lora = cfg["lora"]
        model = get_peft_model(model, LoraConfig(
            r=int(lora["r"]), lora_alpha=int(lora.get("alpha", 2 * int(lora["r"]))),
            lora_dropout=float(lora.get("dropout", 0.0)), target_modules=list(lora["target_modules"]),
            task_type="CAUSAL_LM"))
    if cfg["activation_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg["method"] == "lora":
            model.enable_input_require_grads()
    if cfg["parallelism"] == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        model.to(device)
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if cfg["precision"] == "bf16" else MixedPrecisionPolicy()
        layers = model.get_decoder().layers if hasattr(model, "get_decoder") else model.model.layers
        for layer in layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model, model
    import ray.train.torch

    wrapped = ray.train.torch.prepare_model(model, move_to_device=device, parallel_strategy="ddp")
    return wrapped, model


def lr_lambda(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Linear warmup then cosine/linear decay to ``min_ratio`` of the peak, or constant."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
    return min_ratio + (1 - min_ratio) * decay


# ---------------------------------------------------------------- checkpoint ----------------------------

def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: dict[str, Any], rank: int) -> None:
    """Collective: every rank writes its shard of model+optimizer, its RNG and data position."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(folder / "dcp"))
    torch.save({"rng": _rng_state(), "data": {"epoch": state["epoch"], "micro": state["micro"]}},
               folder / f"rank{rank}.pt")
    if rank == 0:
        torch.save({"step": state["step"], "tokens": state["tokens"], "scheduler": scheduler.state_dict()},
                   folder / "trainer.pt")


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: dict[str, Any], rank: int) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    msd, osd = get_state_dict(model, optimizer)
    sd = {"model": msd, "optim": osd}
    dcp.load(sd, checkpoint_id=str(folder / "dcp"))
    set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    trainer = torch.load(folder / "trainer.pt", weights_only=False)
    scheduler.load_state_dict(trainer["scheduler"])
    state["step"], state["tokens"] = trainer["step"], trainer["tokens"]
    mine = folder / f"rank{rank}.pt"
    if mine.is_file():  # a resize of the group leaves new ranks without one: they keep fresh RNG
        per_rank = torch.load(mine, weights_only=False)
        _set_rng_state(per_rank["rng"])
        state["epoch"], state["micro"] = per_rank["data"]["epoch"], per_rank["data"]["micro"]
    else:
        per_rank = torch.load(folder / "rank0.pt", weights_only=False)
        state["epoch"], state["micro"] = per_rank["data"]["epoch"], per_rank["data"]["micro"]


def _rng_state() -> dict[str, Any]:
    out = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def _set_rng_state(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state(s["cuda"])


def export_hf(folder: Path, model: torch.nn.Module, inner: torch.nn.Module, cfg: dict[str, Any],
              rank: int) -> None:
    """Collective: write the final model as a normal HF folder (weights, tokenizer, chat template)."""
    state_dict = None
    if cfg["parallelism"] == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state_dict = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                          cpu_offload=True))
    if rank != 0:
        return
    hf = folder / "hf"
    if cfg["method"] == "lora" and state_dict is None:
        # The adapter alone for users who ship adapters, and the merged model as the stage's output: the next
        # stage, the registry and the benchmark then load one ordinary HF folder, whatever the method.
        inner.save_pretrained(folder / "adapter")
        inner = inner.merge_and_unload()
    inner.save_pretrained(hf, state_dict=state_dict)
    tok = load_tokenizer(cfg["tokenizer_path"], cfg.get("chat_template"))
    tok.save_pretrained(hf)
    (hf / "chat_template.jinja").write_text(tok.chat_template)  # the template trained on, always
    (hf / "training_recipe.json").write_text(json.dumps(cfg["recipe"], indent=1, default=str))


# ---------------------------------------------------------------- data ------------------------------

def micro_stream(shard: Any, cfg: dict[str, Any], state: dict[str, Any], pad_id: int) -> Iterator[dict]:
    """Endless micro-batches from this worker's shard, epoch after epoch, resuming at state's position.

    ``drop_last`` keeps every micro-batch full, so every rank yields the same count per epoch.
    """
    skip = state["micro"]
    while True:
        for i, batch in enumerate(shard.iter_batches(batch_size=cfg["micro_batch_size"], batch_format="numpy",
                                                     drop_last=True, prefetch_batches=2)):
            if i < skip:
                continue
            state["micro"] = i + 1
            yield collate(batch, cfg["packing"], pad_id)
        skip = 0
        state["epoch"] += 1
        state["micro"] = 0


def to_device(mb: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    out = {"input_ids": torch.as_tensor(np.array(mb["input_ids"])).to(device)}
    for key in ("position_ids", "attention_mask"):
        if key in mb:
            out[key] = torch.as_tensor(np.array(mb[key])).to(device)
    out["labels"] = torch.as_tensor(np.array(mb["labels"])).to(device)
    return out


def loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor], autocast: Any) -> torch.Tensor:
    """Summed next-token loss over answer tokens only (labels -100 elsewhere)."""
    labels = batch.pop("labels")
    with autocast:
        logits = model(**batch).logits
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


# ---------------------------------------------------------------- the loop --------------------------

def train_func(cfg: dict[str, Any]) -> None:
    """Ray Train entry: one call per worker; Ray has set up the process group before it runs."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    debug = cfg.get("debug") or {}
    if debug.get("pid_dir"):
        Path(debug["pid_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(debug["pid_dir"]) / f"rank{rank}.pid").write_text(str(os.getpid()))
    seed = int(cfg["seed"])
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed)  # same init on all ranks; data order differs by shard
    torch.set_num_threads(max(1, int(cfg.get("torch_threads") or 1)))

    tok = load_tokenizer(cfg["tokenizer_path"], cfg.get("chat_template"))
    model, inner = build_model(cfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg["optim"]
    optimizer = torch.optim.AdamW(params, lr=float(o["lr"]), weight_decay=float(o.get("weight_decay", 0.0)),
                                  betas=tuple(o.get("betas", (0.9, 0.95))), fused=False)
    total = int(cfg["total_steps"])
    warmup = int(o.get("warmup_steps", 0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(
        s, total, warmup, o.get("schedule", "cosine"), float(o.get("min_lr_ratio", 0.1))))
    state = {"step": 0, "epoch": 0, "micro": 0, "tokens": 0}

    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            load_checkpoint(Path(d), model, optimizer, scheduler, state, rank)
        if debug.get("pid_dir"):
            (Path(debug["pid_dir"]) / f"resumed_rank{rank}.json").write_text(json.dumps(
                {"step": state["step"], "pid": os.getpid()}))

    logger = RankZeroLogger(cfg) if rank == 0 else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg["precision"] == "bf16" \
        else torch.autocast(device.type, enabled=False)
    stream = micro_stream(ray.train.get_dataset_shard("train"), cfg, state, tok.pad_token_id)
    eval_shard = ray.train.get_dataset_shard("eval") if cfg.get("has_eval") else None
    accum = int(cfg["grad_accum"])
    flops_per_token = 6 * sum(p.numel() for p in model.parameters())
    if cfg["parallelism"] == "fsdp":
        flops_per_token *= world  # parameters are sharded: numel() is this rank's shard
    model.train()
    t_last, tok_last = time.perf_counter(), state["tokens"]
    # steady-state throughput: from the end of step `warm` (start-up, first batches) to the last step
    warm = min(int(cfg.get("steady_after_steps", 2)), max(0, total - 1))
    t_steady, tok_steady = None, 0
    start_step = state["step"]

    while state["step"] < total:
        micro = [next(stream) for _ in range(accum)]
        n_label = torch.tensor(sum(int((m["labels"][:, 1:] != IGNORE).sum()) for m in micro),
                               dtype=torch.float64, device=device)
        n_tok = torch.tensor(sum(int(m["n_tokens"]) for m in micro), dtype=torch.float64, device=device)
        counts = torch.stack([n_label, n_tok])
        if world > 1:
            dist.all_reduce(counts)
        # Normalize by the global answer-token count: DDP/FSDP average gradients over ranks, hence * world.
        denom = max(1.0, float(counts[0])) / world
        step_loss = 0.0
        for i, mb in enumerate(micro):
            batch = to_device(mb, device)
            sync = i == accum - 1 or cfg["parallelism"] != "ddp" or world == 1
            ctx_mgr = model.no_sync() if not sync and hasattr(model, "no_sync") else _null()
            with ctx_mgr:
                loss = loss_sum(model, batch, autocast) / denom
                loss.backward()
            step_loss += float(loss.detach())
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float(o.get("grad_clip", 1.0)))
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        state["step"] += 1
        state["tokens"] += int(counts[1])
        if t_steady is None and state["step"] >= max(warm, start_step + 1):  # resumed runs: from restart
            t_steady, tok_steady = time.perf_counter(), state["tokens"]
        if debug.get("step_sleep_s"):
            time.sleep(float(debug["step_sleep_s"]))
        if debug.get("pid_dir"):  # lets a test see how far each worker got
            (Path(debug["pid_dir"]) / f"progress_rank{rank}.json").write_text(json.dumps(
                {"step": state["step"], "pid": os.getpid()}))

        # the loss summed over ranks / global answer tokens = the mean answer-token loss of this step
        loss_t = torch.tensor([step_loss], device=device)
        if world > 1:
            dist.all_reduce(loss_t)
        if logger and (state["step"] % int(cfg["log_every"]) == 0 or state["step"] == total):
            now = time.perf_counter()
            tps = (state["tokens"] - tok_last) / max(1e-9, now - t_last)
            t_last, tok_last = now, state["tokens"]
            metrics = {"loss": float(loss_t) / world, "lr": lr, "grad_norm": float(grad_norm),
                       "tokens_per_s": tps, "epoch": state["epoch"], "tokens": state["tokens"]}
            if cfg["use_gpu"]:
                peak = float(cfg.get("peak_tflops") or PEAK_TFLOPS_DEFAULT) * 1e12
                metrics["mfu"] = flops_per_token * tps / (world * peak)
            logger.log(metrics, state["step"])

        if eval_shard is not None and (state["step"] % int(cfg["eval_every"]) == 0 or state["step"] == total):
            ev = evaluate(model, eval_shard, cfg, tok.pad_token_id, device, autocast, rank, world)
            if logger:
                logger.log({"eval_loss": ev}, state["step"])

        last = state["step"] == total
        if state["step"] % int(cfg["ckpt_every"]) == 0 or last:
            with tempfile.TemporaryDirectory(prefix="tp-ckpt-") as tmp:
                folder = Path(tmp)
                save_checkpoint(folder, model, optimizer, scheduler, state, rank)
                if last:
                    export_hf(folder, model, inner, cfg, rank)
                report = {"step": state["step"], "loss": float(loss_t) / world, "tokens": state["tokens"]}
                if last and t_steady is not None and time.perf_counter() > t_steady:
                    report["steady_tokens_per_s"] = (state["tokens"] - tok_steady) / (time.perf_counter()
                                                                                     - t_steady)
                    if logger:
                        logger.log({"steady_tokens_per_s": report["steady_tokens_per_s"]}, state["step"])
                ray.train.report(
                    report,
                    checkpoint=ray.train.Checkpoint.from_directory(tmp),
                    checkpoint_dir_name=f"checkpoint_{state['step']:07d}")
        if debug.get("fail_at_step") and state["step"] == int(debug["fail_at_step"]) and rank == 1 \
                and not ckpt:
            os._exit(1)  # simulate a crash once (the restarted group has a checkpoint and skips this)


@torch.no_grad()
def evaluate(model: torch.nn.Module, shard: Any, cfg: dict[str, Any], pad_id: int, device: torch.device,
             autocast: Any, rank: int, world: int) -> float:
    """Mean answer-token loss on the first ``eval_batches`` micro-batches of the eval split.

    The eval set is not split across workers; rank r takes micro-batches r, r+world, ... so the ranks
    together see each batch once and the collective calls stay matched.
    """
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for mb in _eval_batches(shard, cfg, pad_id, rank, world):
        n = float((mb["labels"][:, 1:] != IGNORE).sum())
        total += torch.tensor([float(loss_sum(model, to_device(mb, device), autocast)), n],
                              dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return float(total[0] / max(1.0, float(total[1])))


_EVAL_CACHE: dict[int, list[dict[str, np.ndarray]]] = {}


def _eval_batches(shard: Any, cfg: dict[str, Any], pad_id: int, rank: int, world: int) -> list[dict]:
    """This rank's eval micro-batches, read once per worker process: the eval set is small and fixed,
    and re-running its Ray Data pipeline at every eval would cost more than the eval itself."""
    key = id(shard)
    if key not in _EVAL_CACHE:
        limit = int(cfg.get("eval_batches", 8))
        mine = []
        for i, batch in enumerate(shard.iter_batches(batch_size=cfg["micro_batch_size"],
                                                     batch_format="numpy")):
            if i >= limit:
                break
            if i % world == rank:
                mine.append(collate(batch, cfg["packing"], pad_id))
        _EVAL_CACHE.clear()
        _EVAL_CACHE[key] = mine
    return _EVAL_CACHE[key]


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class RankZeroLogger:
    """MLflow metrics from rank 0 into the run the driver opened (same id as the Ray run name).

    Uses the client API with an explicit run id: no global "active run" in the worker, so a restarted
    worker group keeps appending to the same run instead of creating a duplicate (ray#64253).

    A restart (worker lost, driver re-submitted) resumes from the last checkpoint and replays the steps
    after it, which the lost attempt may already have logged; MLflow keeps every logged value, so the
    history would hold those steps twice. Each key's logged steps are therefore read back once per worker
    process and a step already there is not logged again: the history keeps one value per step, and the
    replayed steps (same weights, data position and RNG as the first time) add nothing new.
    """

    def __init__(self, cfg: dict[str, Any]):
        m = cfg.get("mlflow") or {}
        self.client = None
        if m.get("run_id") and m.get("tracking_uri"):
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=m["tracking_uri"])
            self.run_id = m["run_id"]
        self.offset = int(m.get("step_offset", 0))
        self.prefix = str(m.get("prefix", ""))
        self._logged: dict[str, set[int]] = {}

    def _already(self, key: str) -> set[int]:
        if key not in self._logged:
            self._logged[key] = {int(x.step) for x in self.client.get_metric_history(self.run_id, key)}
        return self._logged[key]

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        at = self.offset + step
        fresh = [Metric(f"{self.prefix}{k}", float(v), ts, at) for k, v in metrics.items()
                 if at not in self._already(f"{self.prefix}{k}")]
        if fresh:
            self.client.log_batch(self.run_id, metrics=fresh)
            for m in fresh:
                self._logged[m.key].add(at)
