"""Build gold `relations`: trial -> publication (registry references, PubMed databanks, ids in abstracts) and
review -> cited publication, all on trial_uid and PMID.

    python jobs/build_relations.py --lake ./lakehouse
"""

from trialpanorama import relations
from trialpanorama.config import load_sibling_yaml
from trialpanorama.jobrun import JobContext, main_guard, run_job


def body(ctx: JobContext) -> dict:
    cfg = load_sibling_yaml(ctx.cfg, "relations.yaml")
    patterns = load_sibling_yaml(ctx.cfg, "unify.yaml")["id_patterns"]
    counts = relations.run(ctx.spark, ctx.lake, cfg, patterns, report=ctx.record_write,
                           record_input=lambda t, v: ctx.run.table_version(t, v, role="input"))
    ctx.run.metrics(counts)
    return counts


def main(argv: list[str] | None = None) -> dict:
    return run_job("build_relations", __doc__.splitlines()[0], body, argv=argv)


if __name__ == "__main__":
    main_guard(main)
