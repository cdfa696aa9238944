"""Link registry conditions to MeSH and interventions to DrugBank/MeSH, on silver `conditions` and `drugs`.

    python jobs/link_ontologies.py --lake ./lakehouse

Reads the vocabularies written by jobs/load_vocabularies.py; writes link_method/link_score and the codes onto
every registry row (origin=registry), and every candidate (chosen, ambiguous, rejected near misses, unlinked
with the reason) to gold `link_candidates`. A rerun on an unchanged lake commits nothing.
"""

from trialpanorama.jobrun import JobContext, main_guard, run_job


def body(ctx: JobContext) -> dict:
    from trialpanorama.linking import apply, vocab

    stats = apply.run(ctx.spark, ctx.lake, vocab.linking_config(ctx.cfg), report=ctx.record_write,
                      record_input=lambda t, v: ctx.run.table_version(t, v, role="input"), full=ctx.args.full)
    ctx.run.metrics({f"rows_updated.{k}": v for k, v in stats["rows_updated"].items()})
    return stats


def add_args(p) -> None:
    p.add_argument("--full", action="store_true",
                   help="relink every name, even those whose candidates were computed with the current vocabularies")


def main(argv: list[str] | None = None) -> dict:
    return run_job("link_ontologies", __doc__.splitlines()[0], body, add_args=add_args, argv=argv)


if __name__ == "__main__":
    main_guard(main)
