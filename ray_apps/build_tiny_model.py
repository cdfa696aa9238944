"""Build the tiny Llama model + BPE tokenizer of a recipe from the lake's task tables.

    python ray_apps/build_tiny_model.py --config conf/train/tiny-cpu.yaml [--lake lakehouse] [--force]

``finetune.py`` builds it on first use anyway; this is for building it ahead (e.g. in ``make demo``).
"""

from __future__ import annotations

import argparse
import shutil
import sys

from trialpanorama.train.recipe import load_recipe, resolve
from trialpanorama.train.tiny import ensure_tiny_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--lake", default=None)
    ap.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    args = ap.parse_args(argv)
    cfg = load_recipe(args.config, args.overrides)
    plan = resolve(cfg, args.lake)
    if args.force and plan.model_path.exists():
        shutil.rmtree(plan.model_path)
    paths = sorted({s["path"] for st in plan.stages for s in st.tasks.values()})
    out = ensure_tiny_model(plan.model_path, paths, cfg.get("model.build_tiny") or {},
                            max_position_embeddings=max(2048, plan.max_seq_len))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
