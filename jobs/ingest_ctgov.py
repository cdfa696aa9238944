"""Ingest ClinicalTrials.gov API v2 records (any envelope) into bronze/silver Delta tables.

    python jobs/ingest_ctgov.py --input ctg-studies.json.zip
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/ingest_ctgov.py --input s3a://bucket/ctgov/
"""

from pyspark.sql import functions as F

from trialpanorama.jobrun import JobContext, main_guard, run_job
from trialpanorama.sources import ctgov


def body(ctx: JobContext) -> dict:
    summary = ctgov.ingest(ctx.spark, ctx.cfg, ctx.inputs, F.lit(ctx.started_at).cast("timestamp"),
                           on_write=ctx.record_write)
    ctx.run.metrics(summary.metrics())
    return summary.as_result()


def main(argv: list[str] | None = None) -> dict:
    return run_job("ingest_ctgov", __doc__.splitlines()[0], body,
                   needs_input=True, default_input_key="sources.ctgov.default_input", argv=argv)


if __name__ == "__main__":
    main_guard(main)
