"""Ingest rate of the WHO ICTRP job on N records cloned from the fixtures (a full-export CSV + a portal XML).

    python benchmarks/bench_ingest_ictrp.py --records 3000

Prints one JSON line: records, seconds for the first ingest (all new) and for a rerun (all unchanged), and
records per second. Records are the accepted fixture records of tests/fixtures/ictrp with new ids (the
longest digit run of each TrialID replaced by a counter, so every clone is its own study in its own
register), half as full-export CSV lines and half as portal XML <Trial> elements.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "ictrp"
REJECTED = {"TCTR20230429001", "XYZR-2024-0001", "SLCTR/2023/010"}
BRONZE_ONLY = re.compile(r"^NCT\d{8}$")


def new_id(trial_id: str, n: int) -> str:
    """The TrialID with its longest digit run replaced by ``n``, zero-padded to the same width."""
    runs = list(re.finditer(r"\d+", trial_id))
    run = max(runs, key=lambda m: len(m.group(0)))
    return trial_id[:run.start()] + str(n).zfill(len(run.group(0))) + trial_id[run.end():]


def export_templates() -> list[list[str]]:
    with (FIXTURES / "ictrp_full_export.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if len(r) == 63]
    return [r for r in rows if r[0] not in REJECTED and not BRONZE_ONLY.match(r[0])]


def export_line(fields: list[str]) -> str:
    return ",".join("NULL" if v == "NULL" else '"' + v.replace('"', '""') + '"' for v in fields)


def write_inputs(out: Path, n: int) -> list[str]:
    from lxml import etree

    rows = export_templates()
    trials = etree.parse(str(FIXTURES / "ictrp_search_export.xml")).getroot().findall("Trial")
    half = n // 2
    with (out / "bench_export.csv").open("w", encoding="utf-8") as fh:
        for i in range(half):
            fields = list(rows[i % len(rows)])
            fields[0] = new_id(fields[0], 100000 + i)
            fields[3] = f"{fields[3]} #{i}"
            fh.write(export_line(fields) + "\n")
    root = etree.Element("Trials_downloaded_from_ICTRP")
    for i in range(half, n):
        trial = etree.fromstring(etree.tostring(trials[i % len(trials)]))
        trial.find("TrialID").text = new_id(trial.find("TrialID").text, 100000 + i)
        trial.find("Public_title").text += f" #{i}"
        root.append(trial)
    etree.ElementTree(root).write(str(out / "bench_portal.xml"), encoding="UTF-8", xml_declaration=True)
    return [str(out / "bench_export.csv"), str(out / "bench_portal.xml")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    from pyspark.sql import functions as F

    from trialpanorama.config import load_config
    from trialpanorama.lake import get_spark
    from trialpanorama.sources import ictrp

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        inputs = write_inputs(tmpdir, args.records)
        cfg = load_config(None, [f"lake.root={tmpdir / 'lake'}", *args.overrides])
        spark = get_spark(cfg, app_name="bench-ingest-ictrp")
        now = F.current_timestamp()
        t0 = time.monotonic()
        first = ictrp.ingest(spark, cfg, inputs, now)
        t1 = time.monotonic()
        second = ictrp.ingest(spark, cfg, inputs, now)
        t2 = time.monotonic()
        assert first.staged.new == args.records and second.staged.unchanged == args.records, (first, second)
        print(json.dumps({
            "records": args.records, "cpu_cores": os.cpu_count(), "unmapped_values": first.unmapped,
            "first_ingest_s": round(t1 - t0, 1), "first_records_per_s": round(args.records / (t1 - t0), 1),
            "rerun_s": round(t2 - t1, 1), "rerun_records_per_s": round(args.records / (t2 - t1), 1),
        }))
        spark.stop()


if __name__ == "__main__":
    main()
