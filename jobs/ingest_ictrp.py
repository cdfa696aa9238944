"""Ingest WHO ICTRP exports (full-export CSV, header CSV, search-portal XML, registry feed XML) into bronze/silver Delta tables.

    python jobs/ingest_ictrp.py --input ICTRPFullExport.csv ictrp_search.xml
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/ingest_ictrp.py --input s3a://bucket/ictrp/
"""

from pyspark.sql import functions as F

from trialpanorama.jobrun import JobContext, main_guard, run_job
from trialpanorama.sources import ictrp


def body(ctx: JobContext) -> dict:
    summary = ictrp.ingest(ctx.spark, ctx.cfg, ctx.inputs, F.lit(ctx.started_at).cast("timestamp"),
                           on_write=ctx.record_write)
    ctx.run.metrics(summary.metrics())
    return summary.as_result()


def main(argv: list[str] | None = None) -> dict:
    return run_job("ingest_ictrp", __doc__.splitlines()[0], body,
                   needs_input=True, default_input_key="sources.ictrp.default_input", argv=argv)


if __name__ == "__main__":
    main_guard(main)
