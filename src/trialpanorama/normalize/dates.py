"""Partial dates ("2015-09", "2015-09-17", "2015") as DATE plus a precision flag.

Registries publish month-precision dates; keeping the precision beside the first day of the period lets
later stages tell "September 2015" from "1 September 2015". Impossible dates (2020-02-31) become NULL.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def partial_date(col: Column) -> Column:
    """STRUCT<date: DATE, precision: STRING> from an ISO partial date string."""
    s = F.trim(col)
    day = s.rlike(r"^\d{4}-\d{2}-\d{2}$")
    month = s.rlike(r"^\d{4}-\d{2}$")
    year = s.rlike(r"^\d{4}$")
    date = (
        F.when(day, F.try_to_date(s, "yyyy-MM-dd"))
        .when(month, F.try_to_date(F.concat(s, F.lit("-01")), "yyyy-MM-dd"))
        .when(year, F.try_to_date(F.concat(s, F.lit("-01-01")), "yyyy-MM-dd"))
    )
    precision = F.when(date.isNull(), F.lit(None)).when(day, "day").when(month, "month").when(year, "year")
    return F.struct(date.alias("date"), precision.alias("precision"))
