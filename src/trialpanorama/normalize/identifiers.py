"""Identifier normalization."""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F

NCT_PATTERN = r"^NCT\d{8}$"


def mesh_ui(col: Column, six_digit_below: Mapping[str, int]) -> Column:
    """MeSH UI as MeSH spells it: ``D000003731`` -> ``D003731``; ``D000068582`` stays 9-digit.

    ClinicalTrials.gov pads every UI to 10 characters; older UIs have 6 digits, newer ones 9. The number
    decides, with the bound from ``conf/normalize.yaml``.
    """
    s = F.upper(F.trim(col))
    letter = F.regexp_extract(s, r"^([A-Z])(\d+)$", 1)
    digits = F.regexp_extract(s, r"^([A-Z])(\d+)$", 2)
    number = digits.cast("long")
    six = F.concat(letter, F.lpad(number.cast("string"), 6, "0"))
    nine = F.concat(letter, F.lpad(number.cast("string"), 9, "0"))
    bound = F.lit(None).cast("long")
    for key, value in six_digit_below.items():
        bound = F.when(letter == key, F.lit(int(value))).otherwise(bound)
    return (
        F.when(letter == "", F.lit(None))
        .when((F.length(digits) <= 6) | (number < F.coalesce(bound, F.lit(0))), six)
        .otherwise(nine)
    )
