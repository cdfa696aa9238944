"""Ages such as "18 Years" or "6 Months" as a number of years (DOUBLE).

"N/A", empty and unparseable values are NULL: a missing maximum age means no upper limit.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F

_AGE = r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+?)s?\s*$"


def age_in_years(col: Column, units: Mapping[str, float]) -> Column:
    number = F.regexp_extract(col, _AGE, 1)
    unit = F.lower(F.regexp_extract(col, _AGE, 2))
    factor = F.lit(None).cast("double")
    for name, value in units.items():
        factor = F.when(unit == name, F.lit(float(value))).otherwise(factor)
    return F.when(number != "", number.cast("double") * factor)
