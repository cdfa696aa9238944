"""Prove that no test trial or publication leaks into training: exit 1 (loudly) if one does.

    python jobs/check_leakage.py --lake ./lakehouse

Reads every task table, collects the trial_uids and PMIDs of all test samples of all tasks, and fails if
any training sample of any task carries one of them. trial_uids are gold ids, so a cross-registered
duplicate of a test trial counts as that trial; a trial id that is not a gold trial_uid also fails (it
would escape the check). Prints the offending sample ids.
"""

from __future__ import annotations

import sys

from trialpanorama.jobrun import JobContext, main_guard, run_job
from trialpanorama.tasks.leakage import find_leaks


def body(ctx: JobContext) -> dict:
    report = find_leaks(ctx.spark, ctx.lake, record_input=lambda t, v: ctx.run.table_version(t, v, role="input"))
    ctx.run.metrics({"leaks": report["leaks"], "unknown_trial_uids": report["unknown_trial_uids"]})
    if report["leaks"] or report["unknown_trial_uids"]:
        print(f"LEAKAGE: {report}", file=sys.stderr)
        raise SystemExit(1)
    return report


def main(argv: list[str] | None = None) -> dict:
    return run_job("check_leakage", __doc__.splitlines()[0], body, argv=argv)


if __name__ == "__main__":
    main_guard(main)
