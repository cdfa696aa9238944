"""Rebuild a benchmark run's leaderboard from the predictions table alone (no inference).

    python jobs/leaderboard.py --config conf/bench/tiny-cpu.yaml --set run_id=demo [--run-id other ...]

Every (run, model) in the predictions table is re-scored with its task's ``score``, so the numbers can be
re-checked at any time; extra ``--run-id``s put models of other runs on the same board. Writes
leaderboard.md/.png/.json under ``<output_dir>/<run_id>/`` and logs them to MLflow. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys

from trialpanorama.bench import store
from trialpanorama.bench.config import load_bench
from trialpanorama.bench.report import leaderboard_for_run
from trialpanorama.bench.runner import clean, default_index_path, score_from_table, task_version
from trialpanorama.config import load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--lake", default=None, help="lake root holding bench/predictions; overrides lake.root")
    ap.add_argument("--run-id", action="append", default=[], help="more runs to put on the board")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides + ([f"lake.root={args.lake}"] if args.lake else []))
    spec = load_bench(cfg)
    index = spec.search_index
    if not index and "study_search" in spec.tasks:
        index = default_index_path(spec.lake_root, task_version(spec.lake_root, "study_search",
                                                                spec.task_versions.get("study_search")))
    models: dict = {}
    for run_id in [spec.run_id, *args.run_id]:
        names = sorted(set(store.read(spec.lake_root, run_id, columns=["model"]).column("model").to_pylist()))
        for name in names:
            label = name if run_id == spec.run_id else f"{name}@{run_id}"
            models[label] = {"tasks": {t: score_from_table(spec.lake_root, run_id, name, t, index) for t in spec.tasks},
                             "mlflow_run_id": None}
    if not models:
        print(f"no predictions for run {spec.run_id}", file=sys.stderr)
        return 1
    paths = leaderboard_for_run(spec, cfg.tracking_uri, {"models": models})
    print(json.dumps(clean({"run_id": spec.run_id, "models": sorted(models), "leaderboard": paths})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
