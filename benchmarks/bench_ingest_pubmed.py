"""Ingest rate of the PubMed job on the real files `make setup` fetches (pubmed21n1298 + pubmed20n0014).

    python benchmarks/bench_ingest_pubmed.py [--input FILE ...] [--set spark.master=local[2]]

Prints one JSON line: records (articles + deleted PMIDs), seconds and records per second for the first
ingest (all new) and for a rerun of the same files (all unchanged, nothing written), plus the seconds of
the parse alone (lxml in the Spark tasks, one task per file, no Delta) for the same files.
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
DEFAULT = [ROOT / ".cache" / "test-data" / "pubmed" / n for n in ("pubmed21n1298.xml.gz", "pubmed20n0014.xml.gz")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", nargs="+", default=[str(p) for p in DEFAULT])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    missing = [p for p in args.input if not Path(p).is_file()]
    if missing:
        sys.exit(f"missing input {missing}: run `make setup` to fetch the real PubMed files")

    from pyspark.sql import functions as F

    from trialpanorama.config import load_config
    from trialpanorama.lake import get_spark
    from trialpanorama.normalize.registry_ids import load_registries
    from trialpanorama.sources import pubmed

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f"lake.root={Path(tmp) / 'lake'}", *args.overrides])
        spark = get_spark(cfg, app_name="bench-ingest-pubmed")
        now = F.current_timestamp()
        t0 = time.monotonic()
        parsed = pubmed.read_records(spark, [str(Path(p).resolve()) for p in args.input], load_registries(cfg))
        n_parsed = parsed.count()
        t1 = time.monotonic()
        first = pubmed.ingest(spark, cfg, args.input, now)
        t2 = time.monotonic()
        second = pubmed.ingest(spark, cfg, args.input, now)
        t3 = time.monotonic()
        assert second.articles.new == second.articles.updated == 0, second
        n = first.records_in
        print(json.dumps({
            "files": len(args.input), "records": n, "parsed_records": n_parsed, "deleted": first.deletes.accepted,
            "cpu_cores": os.cpu_count(), "spark_master": spark.sparkContext.master,
            "parse_only_s": round(t1 - t0, 1), "parse_only_records_per_s": round(n_parsed / (t1 - t0), 1),
            "first_ingest_s": round(t2 - t1, 1), "first_records_per_s": round(n / (t2 - t1), 1),
            "rerun_s": round(t3 - t2, 1), "rerun_records_per_s": round(n / (t3 - t2), 1),
            "load_avg_1m": round(os.getloadavg()[0], 1),
        }))
        spark.stop()


if __name__ == "__main__":
    main()
