"""Generate a synthetic registry world in the real source formats, with its ground truth.

    python jobs/generate_world.py --records 3000 --seed 7 --out /tmp/world
    python jobs/generate_world.py --records 1600000 --seed 7 --out /data/world --workers 16

Writes ctgov/ctg-studies*.json.zip (API v2, sharded member folders), ictrp/*.csv (63-column export) and
ictrp/*.xml (portal export), pubmed/*.xml.gz, vocab/desc2025.xml + vocab/drugbank vocabulary.csv, truth/*.jsonl
and manifest.json; prints one JSON line (counts, seconds, records/s). Proportions and sizes: conf/synth.yaml.
"""

from __future__ import annotations

import argparse
import json
import os

from trialpanorama.synth.world import generate


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="generate_world", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, required=True, help="number of trials in the world")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)"
    )
    p.add_argument("--config", default=None, help="synth YAML (default: conf/synth.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a synth config key (dotted), e.g. --set cross_registration.share=0.2")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    result = generate(
        a.records, a.seed, a.out, workers=a.workers, config=a.config, show_progress=not a.no_progress,
        overrides=a.overrides,
    )
    summary = {"job": "generate_world", "out": a.out, **{k: v for k, v in result.items() if k != "files"}}
    print(json.dumps(summary, default=str), flush=True)
    return summary


if __name__ == "__main__":
    main()
