"""Import rate of the published-TrialPanorama job on generated parquet rows in the published schema.

    python benchmarks/bench_import_panorama.py --studies 3000

Prints one JSON line: studies and rows imported, seconds and studies (and rows) per second for the first
import (all new) and for a rerun (all unchanged, nothing written). Rows are the parquet fixtures plus
`--studies` generated studies with two conditions, one drug, one endpoint and one outcome each
(tests/fixtures/make_panorama_fixtures.py).
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
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=3000)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    import make_panorama_fixtures as fx
    from pyspark.sql import functions as F

    from trialpanorama.config import load_config
    from trialpanorama.lake import get_spark
    from trialpanorama.sources import panorama

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "db"
        fx.write(data, extra_studies=args.studies)
        cfg = load_config(None, [f"lake.root={Path(tmp) / 'lake'}", *args.overrides])
        spark = get_spark(cfg, app_name="bench-import-panorama")
        now = F.current_timestamp()
        t0 = time.monotonic()
        first = panorama.ingest(spark, cfg, [str(data)], now)
        t1 = time.monotonic()
        second = panorama.ingest(spark, cfg, [str(data)], now)
        t2 = time.monotonic()
        assert second.studies.new == second.studies.updated == 0, second
        studies, rows = first.studies.accepted, sum(first.rows_read.values())
        print(json.dumps({
            "studies": studies, "rows": rows, "cpu_cores": os.cpu_count(), "spark_master": spark.sparkContext.master,
            "first_import_s": round(t1 - t0, 1), "first_studies_per_s": round(studies / (t1 - t0), 1),
            "first_rows_per_s": round(rows / (t1 - t0), 1),
            "rerun_s": round(t2 - t1, 1), "rerun_studies_per_s": round(studies / (t2 - t1), 1),
            "load_avg_1m": round(os.getloadavg()[0], 1),
        }))
        spark.stop()


if __name__ == "__main__":
    main()
