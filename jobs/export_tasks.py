"""Export the task tables as chat JSONL, the study's <task>/{train,test}.jsonl, and LLaMA-Factory alpaca JSON.

    python jobs/export_tasks.py --lake ./lakehouse --out ./exports
"""

from __future__ import annotations

from trialpanorama import lake
from trialpanorama.jobrun import JobContext, main_guard, run_job
from trialpanorama.tasks.export import export
from trialpanorama.tasks.registry import TASKS


def add_args(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (local path)")


def body(ctx: JobContext) -> dict:
    rows = {}
    for task in TASKS:
        uri = lake.table_uri(ctx.lake, task)
        version = lake.table_version(ctx.spark, uri)
        if version is None:
            continue
        ctx.run.table_version(task, version, role="input")
        rows[task] = [r.asDict(recursive=True) for r in lake.read_table(ctx.spark, uri, version).collect()]
    if not rows:
        raise FileNotFoundError(f"no task tables under {ctx.lake}: run jobs/build_tasks.py first")
    counts = export(rows, ctx.args.out)
    ctx.run.metrics({f"records.{k.replace('/', '.')}": v for k, v in counts.items()})
    return {"out": ctx.args.out, "files": counts}


def main(argv: list[str] | None = None) -> dict:
    return run_job("export_tasks", __doc__.splitlines()[0], body, add_args=add_args, argv=argv)


if __name__ == "__main__":
    main_guard(main)
