"""Training throughput: the Ray Train loop vs a plain single-process loop, and the effect of packing.

    python benchmarks/bench_train.py [--lake LAKE] [--steps 20] [--warmup 3] [--out bench-out/train.json]

Same tiny model, same tokenized data (the token cache), same micro-batch, accumulation and steps. The
Ray side is the real entry (``finetune`` with one worker, so both sides use one process for compute);
the plain side is a bare PyTorch loop over the same cached tokens using the library's loss and collate.
Tokens/s counts real (non-padding) tokens, measured after ``--warmup`` steps, checkpointing only at the
end (excluded from the timing). Target: Ray overhead <= 15% at steady state.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "conf" / "train" / "tiny-cpu.yaml"
FIXTURE_LAKE = ROOT / "tests" / "fixtures" / "train" / "lake"
TASKS = ["arm_design", "trial_completion_assessment"]


def plain_loop(model_dir: Path, entries: dict, steps: int, warmup: int, micro: int, accum: int,
               max_len: int, packing: bool, threads: int) -> float:
    """The baseline: no Ray, no DDP, data already on local disk, same math as the worker loop."""
    import numpy as np
    import pyarrow.dataset as pads
    import torch
    from transformers import AutoModelForCausalLM

    from trialpanorama.train import data as D
    from trialpanorama.train.loop import loss_sum, to_device

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tok = D.load_tokenizer(str(model_dir))
    examples = []
    for entry in entries.values():
        t = pads.dataset(entry["dir"], format="parquet").to_table(columns=["split", "input_ids", "labels",
                                                                           "n_tokens"])
        for sp, x, y, n in zip(t["split"].to_pylist(), t["input_ids"].to_pylist(), t["labels"].to_pylist(),
                               t["n_tokens"].to_pylist(), strict=True):
            if sp == "train" and n > 0:
                examples.append((x, y))
    if packing:
        rows = list(D.pack_examples(examples, max_len, tok.pad_token_id))
        batches = [D.collate({k: np.stack([r[k] for r in rows[i:i + micro]]) for k in rows[0]}, True,
                             tok.pad_token_id) for i in range(0, len(rows) - micro + 1, micro)]
    else:
        batches = [D.collate({"input_ids": [np.array(x) for x, _ in examples[i:i + micro]],
                              "labels": [np.array(y) for _, y in examples[i:i + micro]]}, False, tok.pad_token_id)
                   for i in range(0, len(examples) - micro + 1, micro)]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95))
    device = torch.device("cpu")
    off = torch.autocast("cpu", enabled=False)
    i = 0
    t0, tok0, tokens = None, 0, 0
    for step in range(steps):
        mbs = [batches[(i + k) % len(batches)] for k in range(accum)]
        i += accum
        denom = max(1, sum(int((m["labels"][:, 1:] != D.IGNORE).sum()) for m in mbs))
        for mb in mbs:
            (loss_sum(model, to_device(mb, device), off) / denom).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(int(m["n_tokens"]) for m in mbs)
        if step + 1 == warmup:
            t0, tok0 = time.perf_counter(), tokens
    return (tokens - tok0) / (time.perf_counter() - t0)


def ray_loop(work: Path, lake: Path, steps: int, warmup: int, packing: bool, workers: int, tag: str) -> float:
    from trialpanorama.train.run import finetune

    stage = ("stages=[{name: sft, max_steps: " + str(steps) + ", tasks: {arm_design: {weight: 1.0}, "
             "trial_completion_assessment: {weight: 1.0}}}]")
    overrides = [
        f"model.path={work / 'model'}", f"data.cache_dir={work / 'cache'}",
        f"checkpoint.storage_path={work / 'runs'}", stage, f"checkpoint.every_steps={steps}",
        "eval.every_steps=null", "mlflow.enabled=false", f"resources.num_workers={workers}",
        f"batch.global_batch={4 * 2 * workers}", f"data.packing={str(packing).lower()}",
        f"logging.steady_after_steps={warmup}", "logging.every_steps=1000", f"run.name=bench-{tag}",
    ]
    summary = finetune(RECIPE, overrides, str(lake), address=None)
    return float(summary["stages"]["sft"]["final_metrics"]["steady_tokens_per_s"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default=None, help="lake with tasks/<task> (default: the test fixture tables)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="Ray workers for the comparison (1 = same compute)")
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "train.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from trialpanorama.train import data as D
    from trialpanorama.train.recipe import load_recipe
    from trialpanorama.train.tiny import ensure_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    lake = Path(args.lake) if args.lake else work / "lake"
    if not args.lake:
        shutil.copytree(FIXTURE_LAKE, lake)
    cfg = load_recipe(RECIPE)
    max_len = int(cfg.require("data.max_seq_len"))
    paths = {t: str(lake / "tasks" / t) for t in TASKS}
    ensure_tiny_model(work / "model", list(paths.values()), cfg.get("model.build_tiny"), 2048)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        entries = {t: D.tokenized_table(work / "cache", t, p, D.delta_version(p), str(work / "model"), None,
                                        max_len) for t, p in paths.items()}
        threads = int(cfg.get("resources.torch_threads") or 1)
        res: dict[str, float] = {}
        for packing in (True, False):
            key = "packed" if packing else "unpacked"
            res[f"plain_{key}"] = plain_loop(work / "model", entries, args.steps, args.warmup, 4, 2, max_len,
                                             packing, threads)
            res[f"ray_{key}"] = ray_loop(work, lake, args.steps, args.warmup, packing, args.workers, key)
    finally:
        ray.shutdown()
    out = {
        "steps": args.steps, "warmup": args.warmup, "workers": args.workers, "tokens_per_s": res,
        "ray_over_plain": {k: res[f"ray_{k}"] / res[f"plain_{k}"] for k in ("packed", "unpacked")},
        "overhead_pct": {k: 100 * (1 - res[f"ray_{k}"] / res[f"plain_{k}"]) for k in ("packed", "unpacked")},
        "packing_speedup": {s: res[f"{s}_packed"] / res[f"{s}_unpacked"] for s in ("plain", "ray")},
        "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
