"""One row per key within a single load, the other copies rejected with a reason.

Vocabulary tables are keyed (MeSH UI, DrugBank id) and written by MERGE/snapshot, which needs unique keys;
a plain ``dropDuplicates`` would keep one copy and lose the rest without a trace, breaking in = out +
rejected. Which copy is kept is deterministic (the first by source file, then raw text), so a rerun keeps
the same one.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def first_per_key(df: DataFrame, keys: list[str], what: str) -> tuple[DataFrame, DataFrame]:
    """(kept, rejects): ``df`` needs ``source_file`` and ``raw``; rejects are (source_file, raw, reason)."""
    order = Window.partitionBy(*keys).orderBy(F.col("source_file").asc_nulls_last(), F.col("raw").asc_nulls_last())
    ranked = df.withColumn("_copy", F.row_number().over(order))
    kept = ranked.where("_copy = 1").drop("_copy")
    label = F.concat_ws("/", *[F.coalesce(F.col(k).cast("string"), F.lit("null")) for k in keys])
    rejects = ranked.where("_copy > 1").select(
        "source_file", "raw", F.concat(F.lit(f"duplicate {what} "), label, F.lit(" in this load")).alias("reason"))
    return kept, rejects
