"""Ingest rate of the ClinicalTrials.gov job on N records cloned from the fixtures (JSON lines + a zip).

    python benchmarks/bench_ingest.py --records 3000

Prints one JSON line: records, seconds for the first ingest (all new) and for a rerun (all unchanged),
and records per second. Until the generator of issue 5 exists, records are the fixture studies with new
NCT ids, half as JSON lines and half as a sharded bulk zip.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))


def write_inputs(out: Path, n: int) -> list[str]:
    import make_ctgov_fixtures as fx

    templates = [fx.SINGLE, *fx.PAGE, *fx.ARRAY, *fx.LINES_OK, *fx.ZIPPED]
    half = n // 2
    lines_path = out / "bench.jsonl"
    zip_path = out / "bench.json.zip"
    with lines_path.open("w") as fh, zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            rec = json.loads(json.dumps(templates[i % len(templates)]))
            nct = f"NCT8{i:07d}"
            rec["protocolSection"]["identificationModule"]["nctId"] = nct
            rec["protocolSection"]["identificationModule"]["briefTitle"] += f" #{i}"
            if i < half:
                fh.write(json.dumps(rec) + "\n")
            else:
                zf.writestr(f"{nct[-2:]}/{nct}.json", json.dumps(rec, indent=1))
    return [str(lines_path), str(zip_path)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    from pyspark.sql import functions as F

    from trialpanorama.config import load_config
    from trialpanorama.lake import get_spark
    from trialpanorama.sources import ctgov

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        inputs = write_inputs(tmpdir, args.records)
        cfg = load_config(None, [f"lake.root={tmpdir / 'lake'}", *args.overrides])
        spark = get_spark(cfg, app_name="bench-ingest")
        now = F.current_timestamp()
        t0 = time.monotonic()
        first = ctgov.ingest(spark, cfg, inputs, now)
        t1 = time.monotonic()
        second = ctgov.ingest(spark, cfg, inputs, now)
        t2 = time.monotonic()
        assert first.new == args.records and second.unchanged == args.records, (first, second)
        print(json.dumps({
            "records": args.records, "cpu_cores": os.cpu_count(),
            "first_ingest_s": round(t1 - t0, 1), "first_records_per_s": round(args.records / (t1 - t0), 1),
            "rerun_s": round(t2 - t1, 1), "rerun_records_per_s": round(args.records / (t2 - t1), 1),
        }))
        spark.stop()


if __name__ == "__main__":
    main()
