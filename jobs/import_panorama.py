"""Import the published TrialPanorama database (parquet files) into the bronze/silver Delta tables.

    python jobs/import_panorama.py --input ~/data/TrialPanorama-database/
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/import_panorama.py --input s3a://bucket/panorama/

Which published column fills which silver column: conf/panorama.yaml.
"""

from pyspark.sql import functions as F

from trialpanorama.jobrun import JobContext, main_guard, run_job
from trialpanorama.sources import panorama


def body(ctx: JobContext) -> dict:
    summary = panorama.ingest(ctx.spark, ctx.cfg, ctx.inputs, F.lit(ctx.started_at).cast("timestamp"),
                              on_write=ctx.record_write)
    ctx.run.metrics(summary.metrics())
    return summary.as_result()


def main(argv: list[str] | None = None) -> dict:
    return run_job("import_panorama", __doc__.splitlines()[0], body,
                   needs_input=True, default_input_key="sources.panorama.default_input", argv=argv)


if __name__ == "__main__":
    main_guard(main)
