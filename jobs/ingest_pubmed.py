"""Ingest MEDLINE/PubMed XML (baseline and update files, .xml or .xml.gz) into bronze/silver Delta tables.

    python jobs/ingest_pubmed.py --input pubmed25n0001.xml.gz pubmed25n1275.xml.gz
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/ingest_pubmed.py --input s3a://bucket/pubmed/
"""

from pyspark.sql import functions as F

from trialpanorama.jobrun import JobContext, main_guard, run_job
from trialpanorama.sources import pubmed


def body(ctx: JobContext) -> dict:
    summary = pubmed.ingest(ctx.spark, ctx.cfg, ctx.inputs, F.lit(ctx.started_at).cast("timestamp"),
                            on_write=ctx.record_write)
    ctx.run.metrics(summary.metrics())
    return summary.as_result()


def main(argv: list[str] | None = None) -> dict:
    return run_job("ingest_pubmed", __doc__.splitlines()[0], body,
                   needs_input=True, default_input_key="sources.pubmed.default_input", argv=argv)


if __name__ == "__main__":
    main_guard(main)
