"""Hostile-input suite: every source format's ingest on generated malformed and adversarial records.

    python jobs/chaos.py                                   # conf/chaos.yaml: 1,000 records per format
    python jobs/chaos.py --records 200 --formats ctgov_json pubmed_xml --out chaos.json

Prints one table row per format (records tried, crashes, accepted, rejected, reconciled) and writes the
full figures as JSON. Exit status 1 when any format crashed or did not reconcile.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from trialpanorama.config import load_config, load_sibling_yaml


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="pipeline YAML (default: conf/pipeline.yaml)")
    ap.add_argument("--records", type=int, default=None, help="records per format (default: conf/chaos.yaml)")
    ap.add_argument("--formats", nargs="+", default=None, help="subset of conf/chaos.yaml formats")
    ap.add_argument("--workdir", default=None, help="where inputs and lakes go (default: a temp folder)")
    ap.add_argument("--out", default="chaos_report.json", help="JSON report path")
    ap.add_argument("--big-text-bytes", type=int, default=None, help="size of the big text fields")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    conf = load_sibling_yaml(cfg, "chaos.yaml")

    from trialpanorama.chaos.report import table
    from trialpanorama.chaos.suite import run_suite
    from trialpanorama.lake import get_spark

    spark = get_spark(cfg, app_name="chaos")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    results = run_suite(spark, cfg, conf, workdir, records=args.records, formats=args.formats,
                        big_text_bytes=args.big_text_bytes)
    print(table(results), file=sys.stderr)
    out = Path(args.out)
    out = out if out.is_absolute() else Path.cwd() / out
    out.write_text(json.dumps([r.as_dict() for r in results], indent=2, default=str))
    ok = all(r.reconciled for r in results)
    print(json.dumps({"job": "chaos", "report": str(out), "workdir": str(workdir), "ok": ok,
                      "formats": {r.format: {"tried": r.tried, "crashes": r.crashes, "accepted": r.accepted,
                                             "rejected": r.rejected, "reconciled": r.reconciled}
                                  for r in results}}), flush=True)
    spark.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
