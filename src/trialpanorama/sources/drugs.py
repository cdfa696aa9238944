"""Drug vocabularies: the DrugBank open vocabulary CSV and the drug-named-entity-recognition dictionary.

- **DrugBank open vocabulary** (``drugbank vocabulary.csv``, CC0): ``DrugBank ID,Accession Numbers,Common name,
  CAS,UNII,Synonyms,Standard InChI Key``, double-quoted, multi-values ``|``-separated. Lines are read by Spark
  and parsed with Python's csv module on the executors, so a bad row (wrong field count, unclosed quote, an id
  that is not ``DB\\d{5}``, no name) is rejected with a reason while the good rows load.
- **drug-named-entity-recognition** ships ``drug_ner_dictionary.pkl.bz2`` (20,070 drugs, 107,360 names,
  DrugBank ids, MeSH tree numbers). It is a pickle, so it is read with ``RestrictedUnpickler``, which refuses
  every global except the plain containers and scalars; the package itself is never imported (its
  ``__init__`` runs code and downloads), the file is found with ``importlib.util.find_spec``.

The dictionary's ``mesh_id`` is kept as ``dictionary_mesh_id`` but not used as the drug's MeSH UI: it is often
the drug's pharmacological action (metformin -> D007004 Hypoglycemic Agents, shared by 30 drugs), whereas its
``mesh_tree`` positions name the drug's own descriptor (metformin -> D02.078.370.141.450 = Metformin).
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama.sources.duplicates import first_per_key
from trialpanorama.sources.files import decode_utf8

SOURCE_DRUGBANK = "drugbank_csv"
SOURCE_DICTIONARY = "drug_dictionary"
DRUGBANK_ID = re.compile(r"^DB\d{5}$")
HEADER = ["DrugBank ID", "Accession Numbers", "Common name", "CAS", "UNII", "Synonyms", "Standard InChI Key"]
_MULTI = re.compile(r"\s*\|\s*")

ROW_DDL = (
    "source STRING, drug_key STRING, drugbank_id STRING, name STRING, synonyms ARRAY<STRING>, "
    "brand_names ARRAY<STRING>, accession_numbers ARRAY<STRING>, cas STRING, unii STRING, inchikey STRING, "
    "mesh_tree ARRAY<STRING>, dictionary_mesh_id STRING, source_file STRING"
)


# --------------------------------------------------------------------------------- restricted pickle
class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only dict/list/set/frozenset/tuple/str/int/float/bool/None: any other global is refused.

    Protocol-2+ pickles build these containers with opcodes and name no global at all; older ones name
    ``builtins.set`` and friends, which are allowed. Anything else (``os.system``, a class) raises
    ``pickle.UnpicklingError`` before it is looked up, so nothing in the file can run code.
    """

    ALLOWED = frozenset({"dict", "list", "set", "frozenset", "tuple", "str", "int", "float", "bool"})

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in self.ALLOWED:
            return {"dict": dict, "list": list, "set": set, "frozenset": frozenset, "tuple": tuple, "str": str,
                    "int": int, "float": float, "bool": bool}[name]
        raise pickle.UnpicklingError(f"refused global {module}.{name}: only plain containers are allowed")


def restricted_load(data: bytes) -> Any:
    return RestrictedUnpickler(io.BytesIO(data)).load()


def dictionary_path(configured: str | None = None) -> Path | None:
    """The packaged dictionary file, located without importing the package; None when not installed."""
    if configured:
        return Path(configured)
    spec = importlib.util.find_spec("drug_named_entity_recognition")  # top-level: finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "drug_ner_dictionary.pkl.bz2"
        if path.is_file():
            return path
    return None


def load_dictionary(path: Path) -> dict[str, Any]:
    """The dictionary's three maps, read with the restricted unpickler."""
    with bz2.open(path, "rb") as fh:
        obj = restricted_load(fh.read())
    expected = {"drug_variant_to_canonical", "drug_canonical_to_data"}
    if not isinstance(obj, dict) or not expected <= set(obj):
        raise ValueError(f"{path}: not a drug dictionary (expected keys {sorted(expected)})")
    return obj


def dictionary_rows(obj: dict[str, Any], source_file: str) -> list[dict[str, Any]]:
    """One row per canonical drug: name, DrugBank id, every name variant, brand names, MeSH tree numbers."""
    canonical_data: dict[str, dict[str, Any]] = obj["drug_canonical_to_data"]
    variant_data: dict[str, dict[str, Any]] = obj.get("drug_variant_to_variant_data") or {}
    variants: dict[str, list[str]] = {}
    for variant, canonicals in obj["drug_variant_to_canonical"].items():
        for c in canonicals if isinstance(canonicals, list | tuple | set) else [canonicals]:
            variants.setdefault(str(c), []).append(str(variant))
    rows = []
    for canonical in sorted(set(canonical_data) | set(variants)):
        data = canonical_data.get(canonical) or {}
        name = str(data.get("name") or canonical)
        names = sorted(set(variants.get(canonical, [])) | {str(s) for s in data.get("synonyms") or []})
        brands = sorted(v for v in names if (variant_data.get(v) or {}).get("is_brand"))
        db_id = data.get("drugbank_id")
        rows.append({
            "source": SOURCE_DICTIONARY, "drug_key": db_id or f"DICT:{canonical}", "drugbank_id": db_id,
            "name": name, "synonyms": [v for v in names if v not in brands and v.lower() != name.lower()],
            "brand_names": brands, "accession_numbers": [], "cas": None, "unii": None, "inchikey": None,
            "mesh_tree": sorted(str(t) for t in data.get("mesh_tree") or []),
            "dictionary_mesh_id": data.get("mesh_id"), "source_file": source_file,
        })
    return rows


# -------------------------------------------------------------------------------------- DrugBank CSV
def parse_drugbank_line(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None) for a good line, (None, reason) for a bad one, (None, None) for the header or a blank."""
    if not line.strip():
        return None, None
    try:
        fields = next(csv.reader([line], strict=True))
    except (csv.Error, StopIteration) as exc:
        return None, f"unparseable CSV row: {exc}"
    if [f.strip() for f in fields] == HEADER:
        return None, None
    if len(fields) != len(HEADER):
        return None, f"expected {len(HEADER)} fields, got {len(fields)}"
    db_id, accessions, name, cas, unii, synonyms, inchikey = (f.strip() for f in fields)
    if not DRUGBANK_ID.match(db_id):
        return None, f"malformed DrugBank ID: {db_id!r}"
    if not name:
        return None, f"{db_id}: empty Common name"
    return {
        "source": SOURCE_DRUGBANK, "drug_key": db_id, "drugbank_id": db_id, "name": name,
        "synonyms": [s for s in _MULTI.split(synonyms) if s] if synonyms else [], "brand_names": [],
        "accession_numbers": [s for s in _MULTI.split(accessions) if s] if accessions else [],
        "cas": cas or None, "unii": unii or None, "inchikey": inchikey or None, "mesh_tree": [],
        "dictionary_mesh_id": None,
    }, None


def _parse_drugbank(batches: Iterator[Any]) -> Iterator[Any]:
    import pandas as pd

    cols = [c.split(" ")[0] for c in ROW_DDL.split(", ")] + ["raw", "reason"]
    for pdf in batches:
        out = []
        for source_file, data in zip(pdf["source_file"], pdf["value"], strict=True):
            line, bad_bytes = decode_utf8(data)
            row, reason = parse_drugbank_line(line)
            if row is not None and bad_bytes:  # a drug name with U+FFFD in it would match nothing
                row, reason = None, f"{row['drugbank_id']}: {bad_bytes}"
            if row is None and reason is None:
                continue
            if row is None:
                row = dict.fromkeys(cols)
                row.update(raw=line, reason=reason)
            else:
                row.update(raw=line, reason=None)  # kept until duplicates are resolved
            out.append({**row, "source_file": source_file})
        yield pd.DataFrame(out, columns=cols)


def read_drugbank(spark: SparkSession, files: list[str]) -> tuple[DataFrame, DataFrame]:
    """(rows, rejects) from DrugBank open vocabulary CSV files."""
    lines = spark.read.text(files).select(F.col("_metadata.file_path").alias("source_file"),
                                          F.col("value").cast("binary").alias("value"))
    parsed = lines.mapInPandas(_parse_drugbank, f"{ROW_DDL}, raw STRING, reason STRING")
    rows, dups = first_per_key(parsed.where("reason IS NULL").drop("reason"), ["source", "drug_key"], "DrugBank id")
    rejects = parsed.where("reason IS NOT NULL").select("source_file", "raw", "reason").unionByName(dups)
    return rows.drop("raw"), rejects
