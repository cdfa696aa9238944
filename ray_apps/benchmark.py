"""Benchmark models on the eight tasks' test splits (Ray Data), into the predictions table and MLflow.

    python ray_apps/benchmark.py --config conf/bench/tiny-cpu.yaml [--set run_id=r1] [--set limit=5]
        [--leaderboard]

Re-running with the same ``run_id`` resumes: answered samples are skipped. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from trialpanorama.bench.config import load_bench
from trialpanorama.bench.runner import clean, run_benchmark
from trialpanorama.config import load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--leaderboard", action="store_true", help="also write and log the leaderboard")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    spec = load_bench(cfg)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is reserved for the JSON line
        out = run_benchmark(spec, cfg.tracking_uri)
        if args.leaderboard:
            from trialpanorama.bench.report import leaderboard_for_run

            out["leaderboard"] = leaderboard_for_run(spec, cfg.tracking_uri, out)
    print(json.dumps(clean(out), default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
