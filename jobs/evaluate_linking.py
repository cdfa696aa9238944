"""Precision and recall of the linker against NLM's MeSH mapping of ClinicalTrials.gov records, to MLflow.

    python jobs/evaluate_linking.py --lake ./lakehouse [--group fixtures='^NCT9'] [--format table]

For each ClinicalTrials.gov study with derived meshes, its registry condition and intervention names are linked
with a vocabulary that leaves out what was harvested from those derived meshes, and compared with them. Logs
metrics (conditions.exact_or_synonym.precision, ...), the table as linking_precision_recall.md and item outcomes
as linking_outcomes.json. Writes no table.
"""

import sys

from trialpanorama.jobrun import JobContext, main_guard, run_job


def body(ctx: JobContext) -> dict:
    from trialpanorama.linking import evaluate, vocab

    groups = {}
    for item in ctx.args.group:
        name, sep, pattern = item.partition("=")
        if not sep or not name or not pattern:
            raise ValueError(f"--group {item!r} is not NAME=REGEX")
        groups[name] = pattern
    result = evaluate.run(ctx.spark, ctx.lake, vocab.linking_config(ctx.cfg), log_run=ctx.run, groups=groups,
                          record_input=lambda t, v: ctx.run.table_version(t, v, role="input"))
    if ctx.args.format == "table":
        print(evaluate.table(result), file=sys.stderr)
    return result


def add_args(p) -> None:
    p.add_argument("--format", choices=["json", "table"], default="json",
                   help="also print the precision/recall table on stderr")
    p.add_argument("--group", action="append", default=[], metavar="NAME=REGEX",
                   help="also report the studies whose study_id matches REGEX as group NAME (repeatable)")


def main(argv: list[str] | None = None) -> dict:
    return run_job("evaluate_linking", __doc__.splitlines()[0], body, add_args=add_args, argv=argv)


if __name__ == "__main__":
    main_guard(main)
