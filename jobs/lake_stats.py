"""Print every Delta table under the lake with its row count and current version, as one line of JSON.

    python jobs/lake_stats.py --lake ./lakehouse [--format table]
"""

import sys

from trialpanorama import lake
from trialpanorama.jobrun import JobContext, main_guard, run_job


def body(ctx: JobContext) -> dict:
    stats = lake.table_stats(ctx.spark, ctx.lake)
    if ctx.args.format == "table":
        print(f"lake: {ctx.lake}", file=sys.stderr)
        for name, s in stats.items():
            print(f"  {name:32s} rows={s['rows']:>9}  version={s['version']}", file=sys.stderr)
    return {"lake": ctx.lake, "tables": stats}


def add_args(parser) -> None:
    parser.add_argument("--format", choices=["json", "table"], default="json", help="also print a table on stderr")


def main(argv: list[str] | None = None) -> dict:
    return run_job("lake_stats", __doc__.splitlines()[0], body, track=False, add_args=add_args, argv=argv)


if __name__ == "__main__":
    main_guard(main)
