"""Unify trials across registries: gold `trials`, `trial_members`, `trial_id_map`, `merge_proposals`.

    python jobs/unify_trials.py --lake ./lakehouse
"""

from trialpanorama import unify
from trialpanorama.config import load_sibling_yaml
from trialpanorama.jobrun import JobContext, main_guard, run_job


def body(ctx: JobContext) -> dict:
    cfg = load_sibling_yaml(ctx.cfg, "unify.yaml")
    stats = unify.run(ctx.spark, ctx.lake, cfg, report=ctx.record_write,
                      record_input=lambda t, v: ctx.run.table_version(t, v, role="input"))
    ctx.run.metrics(stats)
    return stats


def main(argv: list[str] | None = None) -> dict:
    return run_job("unify_trials", __doc__.splitlines()[0], body, argv=argv)


if __name__ == "__main__":
    main_guard(main)
