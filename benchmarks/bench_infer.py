"""Inference throughput of the benchmark's Ray Data ``hf`` path vs a plain single-process loop, same prompts.

    python benchmarks/bench_infer.py --prompts 1000 [--prompts 10000] [--max-new-tokens 16] [--pool 1]

Setup (timed apart): a temporary lake with synthetic test sets of all eight tasks (prompts rendered by the task
modules, lengths varied) and the tiny random-init Llama. Then the same prompts run (1) through
``trialpanorama.bench.runner`` (Delta read -> prepare -> Predictor actor pool -> parse/score -> predictions
MERGE), and (2) through ``HFBackend.generate`` in this process in chunks of the same batch size. Reported:
rows/s and generated tokens/s of both, their ratio, and where the time goes: actor start-up (first batch out
of the flow vs the plain loop's model load), tokenization, generate, and padding waste with and without the
length sort the backend does inside each batch. Prints one JSON line per prompt count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def padding_waste(lengths: list[int], batch: int, micro: int, sort: bool) -> float:
    """Share of prompt positions that are padding when rows are micro-batched as the backend does."""
    real = padded = 0
    for s in range(0, len(lengths), batch):
        chunk = lengths[s:s + batch]
        if sort:
            chunk = sorted(chunk)
        for m in range(0, len(chunk), micro):
            part = chunk[m:m + micro]
            real += sum(part)
            padded += max(part) * len(part)
    return 1 - real / padded if padded else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, action="append", help="repeatable; default 200 (1000 and 10000 for the report)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32, help="rows per Ray Data batch / per plain-loop chunk")
    ap.add_argument("--micro-batch", type=int, default=16, help="rows per generate() call")
    ap.add_argument("--pool", type=int, default=1, help="Predictor actors")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--skip-plain", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from trialpanorama.bench import synthetic
    from trialpanorama.bench.config import load_bench
    from trialpanorama.bench.lm import HFBackend
    from trialpanorama.bench.runner import run_benchmark
    from trialpanorama.config import load_config
    from trialpanorama.tasks.registry import TASKS

    work = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    t0 = time.perf_counter()
    model = synthetic.tiny_model(work / "tiny", synthetic.task_rows(4, 4, long_prompts=True))
    setup_model_s = time.perf_counter() - t0
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=512 * 2**20)
    try:
        for n in args.prompts or [200]:
            per_task = max(1, n // len(TASKS))
            lake = work / f"lake-{n}"
            rows = synthetic.task_rows(per_task, 0, long_prompts=True, seed=n)
            synthetic.write_tables(lake, rows)
            convs = [r["messages"] for t in TASKS for r in rows[t]]
            cfg = load_config(ROOT / "conf" / "bench" / "tiny-cpu.yaml", [
                f"lake.root={lake}", f"run_id=bench-{n}", f"output_dir={work / 'out'}",
                f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}", f"generation.max_new_tokens={args.max_new_tokens}",
                "flush_rows=256", "models.tiny-finetuned=null", f"models.tiny-untrained.path={model}",
                f"models.tiny-untrained.hf.batch_size={args.batch_size}",
                f"models.tiny-untrained.hf.micro_batch_size={args.micro_batch}",
                f"models.tiny-untrained.hf.pool_size={args.pool}",
                f"models.tiny-untrained.hf.torch_threads={args.torch_threads}"])
            t0 = time.perf_counter()
            out = run_benchmark(load_bench(cfg), cfg.tracking_uri)["models"]["tiny-untrained"]
            total_s = time.perf_counter() - t0
            thr = out["throughput"]
            tokens_out = sum(m["tokens_out"] for m in out["tasks"].values())
            result = {"prompts": len(convs), "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
                      "micro_batch": args.micro_batch, "pool": args.pool, "setup_model_s": round(setup_model_s, 1),
                      "ray": {"wall_s": round(thr["wall_s"], 2), "rows_per_s": round(thr["rows_per_s"], 2),
                              "tokens_out_per_s": round(thr["tokens_out_per_s"], 1),
                              "first_batch_s": round(thr["first_batch_s"], 2),
                              "steady_rows_per_s": round((thr["rows"] - args.batch_size) /
                                                         max(1e-9, thr["wall_s"] - thr["first_batch_s"]), 2),
                              "with_mlflow_and_scoring_s": round(total_s, 2), "tokens_out": tokens_out}}
            if not args.skip_plain:
                t0 = time.perf_counter()
                lm = HFBackend(str(model), micro_batch_size=args.micro_batch, torch_threads=args.torch_threads,
                               max_input_tokens=1536)
                load_s = time.perf_counter() - t0
                t1 = time.perf_counter()
                gen_tokens = 0
                for s in range(0, len(convs), args.batch_size):
                    gen_tokens += sum(g.tokens_out for g in lm.generate(convs[s:s + args.batch_size],
                                                                        args.max_new_tokens))
                loop_s = time.perf_counter() - t1
                st = lm.stats
                lengths = [len(x) for x in lm.encode(convs)]
                result["plain"] = {"load_s": round(load_s, 2), "loop_s": round(loop_s, 2),
                                   "rows_per_s": round(len(convs) / loop_s, 2),
                                   "rows_per_s_incl_load": round(len(convs) / (loop_s + load_s), 2),
                                   "tokens_out_per_s": round(gen_tokens / loop_s, 1),
                                   "tokenize_s": round(st["tokenize_s"], 2), "generate_s": round(st["generate_s"], 2)}
                result["ratio_ray_over_plain"] = round(thr["rows_per_s"] / result["plain"]["rows_per_s_incl_load"], 3)
                result["ratio_steady_over_plain_loop"] = round(result["ray"]["steady_rows_per_s"] /
                                                               result["plain"]["rows_per_s"], 3)
                result["padding_waste"] = {
                    "sorted_in_batch": round(padding_waste(lengths, args.batch_size, args.micro_batch, True), 3),
                    "unsorted": round(padding_waste(lengths, args.batch_size, args.micro_batch, False), 3),
                    "measured": round(1 - st["prompt_tokens"] / max(1, st["padded_prompt_tokens"]), 3)}
                result["prompt_tokens_mean"] = round(sum(lengths) / len(lengths), 1)
            print(json.dumps(result, sort_keys=True), flush=True)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
