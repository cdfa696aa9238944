"""MeSH in every shape the project meets it: NLM's XML, the packaged 2019 tree, and the lake's own meshes.

- **Descriptor XML** (``descYYYY.xml``, ``DescriptorRecordSet/DescriptorRecord``) and **supplementary XML**
  (``suppYYYY.xml``, ``SupplementalRecordSet/SupplementalRecord``): Spark reads each file split on the record's
  closing tag, so every record is one row, parsed by lxml on the executors. Only the *direct* child
  ``DescriptorUI`` identifies a record (``PharmacologicalActionList``, ``SeeRelatedList`` and
  ``EntryCombinationList`` nest other ``DescriptorUI`` elements); entry terms are every ``Term/String`` of
  every concept. A record that does not parse, or lacks its UI, name or ``ConceptList`` (the DTD's last,
  required child, so a record cut short is caught), is rejected with its raw text and a reason; a file without
  its closing set tag is rejected as truncated, and its complete records still load.
- **Tree TSV** (``tree_number<TAB>name``, one row per tree position, no UIs): names and tree numbers.
- **Lake harvest**: UIs and names from ClinicalTrials.gov derived meshes (silver ``conditions``/``drugs``
  rows with origin ``ctgov_derived``, and the ``ancestors`` kept in bronze ``ctgov_raw``) and PubMed
  MeSH headings (``publications.mesh_headings``, read only when that table exists).

Every loader returns rows shaped like ``vocab_mesh_sources`` plus, for file formats, a rejects frame.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama.sources.duplicates import first_per_key
from trialpanorama.sources.files import decode_utf8

TREE_NUMBER = re.compile(r"^[A-Z]\d{2}(\.\d{3})*$")
MESH_UI = re.compile(r"^[CDQ]\d{6}(\d{3})?$")

SOURCE_DESC = "mesh_xml"
SOURCE_SUPP = "mesh_supp_xml"
SOURCE_TREE = "mesh_tree"
SOURCE_LAKE_CTGOV = "lake_ctgov"
SOURCE_LAKE_PUBMED = "lake_pubmed"

# The fields a source row carries (vocab_mesh_sources without source/mesh_key/source_file).
RECORD_DDL = (
    "reason STRING, mesh_ui STRING, mesh_name STRING, record_type STRING, descriptor_class STRING, "
    "tree_numbers ARRAY<STRING>, entry_terms ARRAY<STRING>, mapped_to ARRAY<STRING>, pharm_actions ARRAY<STRING>"
)


class _Spec:
    def __init__(self, record: str, ui: str, name: str, record_type: str, closing_set: str):
        self.record, self.ui, self.name, self.record_type, self.closing_set = record, ui, name, record_type, closing_set


SPECS = {
    "descriptor": _Spec("DescriptorRecord", "DescriptorUI", "DescriptorName", "descriptor", "</DescriptorRecordSet>"),
    "supplementary": _Spec("SupplementalRecord", "SupplementalRecordUI", "SupplementalRecordName",
                           "supplementary", "</SupplementalRecordSet>"),
}


# ------------------------------------------------------------------------------------- XML records
def _strip_star(ui: str | None) -> str | None:
    # HeadingMappedTo/DescriptorReferredTo/DescriptorUI marks starred (major) headings with a leading '*'.
    return ui.lstrip("*").strip() if ui else ui


def record_text(chunk: str, kind: str) -> str:
    """The record's own XML in a chunk (from its opening tag on; the split removed its closing tag), else the
    chunk: a reject's raw text. The first chunk of a file also holds the file's prolog (its DOCTYPE, whatever
    entities that defines), which is not the record's text."""
    start = re.search(rf"<{SPECS[kind].record}[\s>]", chunk)
    return chunk.strip() if start is None else chunk[start.start():].strip()


def parse_record(chunk: str, kind: str) -> dict[str, Any] | None:
    """One record's fields from the text before its closing tag; None for a chunk holding no record.

    ``reason`` is set (and the rest may be empty) when the record cannot be accepted.
    """
    from lxml import etree

    spec = SPECS[kind]
    start = re.search(rf"<{spec.record}[\s>]", chunk)
    if start is None:
        rest = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|</?\w+RecordSet[^>]*>", "", chunk).strip()
        if not rest:
            return None
        return {"reason": f"not a {spec.record}: unparseable fragment"}
    text = chunk[start.start():] + f"</{spec.record}>"
    try:
        root = etree.fromstring(text.encode("utf-8"), parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        return {"reason": f"malformed {spec.record} XML: {exc}"}
    ui = (root.findtext(spec.ui) or "").strip()  # direct child only
    name = (root.findtext(f"{spec.name}/String") or "").strip()
    if not ui:
        return {"reason": f"{spec.record} without a direct {spec.ui}"}
    if not MESH_UI.match(ui):
        return {"reason": f"malformed {spec.ui}: {ui}"}
    if not name:
        return {"reason": f"{spec.record} {ui} without {spec.name}/String"}
    concepts = root.find("ConceptList")
    if concepts is None:
        return {"reason": f"{spec.record} {ui} is incomplete: no ConceptList (record cut short?)"}
    terms: list[str] = []
    for term in concepts.iterfind("Concept/TermList/Term"):
        if term.get("IsPermutedTermYN") == "Y":
            continue
        s = (term.findtext("String") or "").strip()
        if s and s != name and s not in terms:
            terms.append(s)
    return {
        "reason": None, "mesh_ui": ui, "mesh_name": name, "record_type": spec.record_type,
        "descriptor_class": root.get("DescriptorClass") if kind == "descriptor" else None,
        "tree_numbers": sorted({(t.text or "").strip() for t in root.iterfind("TreeNumberList/TreeNumber")} - {""}),
        "entry_terms": terms,
        "mapped_to": [u for u in (_strip_star(e.text) for e in root.iterfind(
            "HeadingMappedToList/HeadingMappedTo/DescriptorReferredTo/DescriptorUI")) if u],
        "pharm_actions": [u for u in ((e.text or "").strip() for e in root.iterfind(
            "PharmacologicalActionList/PharmacologicalAction/DescriptorReferredTo/DescriptorUI")) if u],
    }


def _parse_partition(kind: str):
    import pandas as pd

    cols = ["source_file", "raw", "reason", "mesh_ui", "mesh_name", "record_type", "descriptor_class",
            "tree_numbers", "entry_terms", "mapped_to", "pharm_actions"]

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            out: list[dict[str, Any]] = []
            for source_file, data in zip(pdf["source_file"], pdf["value"], strict=True):
                chunk, bad_bytes = decode_utf8(data)
                rec = parse_record(chunk, kind)
                if rec is None:
                    continue
                if bad_bytes and rec.get("reason") is None:  # a vocabulary term with U+FFFD in it is garbage
                    rec = {"reason": f"{rec.get('mesh_ui') or kind}: {bad_bytes}"}
                # raw kept for every record until duplicates are resolved: a duplicate is a reject too
                out.append({"source_file": source_file, "raw": record_text(chunk, kind),
                            **{c: rec.get(c) for c in cols[2:]}})
            yield pd.DataFrame(out, columns=cols)

    return run


def read_xml(spark: SparkSession, files: list[str], kind: str) -> tuple[DataFrame, DataFrame]:
    """(records, rejects) from MeSH descriptor (``kind='descriptor'``) or supplementary XML files.

    records: source_file + RECORD_DDL fields; rejects: source_file, raw, reason.
    """
    spec = SPECS[kind]
    chunks = spark.read.option("lineSep", f"</{spec.record}>").text(files) \
        .select(F.col("_metadata.file_path").alias("source_file"), "value")
    parsed = chunks.select("source_file", F.col("value").cast("binary").alias("value")).mapInPandas(
        _parse_partition(kind), f"source_file STRING, raw STRING, {RECORD_DDL}")
    # A complete file ends with the record set's closing tag; a file without it was cut short.
    closed = chunks.groupBy("source_file").agg(
        F.max(F.col("value").contains(spec.closing_set).cast("int")).alias("closed"))
    truncated = closed.where("closed = 0").select(
        "source_file", F.lit(None).cast("string").alias("raw"),
        F.lit(f"truncated file: no closing {spec.closing_set}").alias("reason"))
    records, dups = first_per_key(parsed.where("reason IS NULL"), ["mesh_ui"], "MeSH UI")
    rejects = parsed.where("reason IS NOT NULL").select("source_file", "raw", "reason").unionByName(truncated) \
        .unionByName(dups)
    return records.drop("raw"), rejects


def xml_rows(records: DataFrame, source: str) -> DataFrame:
    return records.select(
        F.lit(source).alias("source"), F.col("mesh_ui").alias("mesh_key"), "mesh_ui", "mesh_name", "record_type",
        "descriptor_class", "tree_numbers", "entry_terms", "mapped_to", "pharm_actions",
        F.array().cast("array<string>").alias("roles"), "source_file")


# ------------------------------------------------------------------------------------------ tree TSV
def read_tree(spark: SparkSession, paths: list[str]) -> tuple[DataFrame, DataFrame]:
    """(rows, rejects) from tree TSV files: one row per descriptor name with all its tree numbers."""
    lines = spark.read.text(paths).select(F.col("_metadata.file_path").alias("source_file"),
                                         F.col("value").alias("raw")).where(F.trim("raw") != "")
    parts = F.split("raw", "\t")
    tree, name = F.trim(parts.getItem(0)), F.trim(parts.getItem(1))
    reason = (
        F.when(F.size(parts) != 2, F.format_string("expected 2 tab-separated fields, got %d", F.size(parts)))
        .when(~tree.rlike(TREE_NUMBER.pattern), F.concat(F.lit("malformed tree number: "), tree))
        .when(name == "", F.lit("empty descriptor name"))
    )
    checked = lines.withColumn("reason", reason).withColumn("tree", tree).withColumn("name", name)
    rejects = checked.where("reason IS NOT NULL").select("source_file", "raw", "reason")
    good = checked.where("reason IS NULL")
    rows = good.groupBy("name").agg(F.array_sort(F.collect_set("tree")).alias("tree_numbers"),
                                    F.min("source_file").alias("source_file"))
    rows = rows.select(
        F.lit(SOURCE_TREE).alias("source"), F.concat(F.lit("N:"), F.lower("name")).alias("mesh_key"),
        F.lit(None).cast("string").alias("mesh_ui"), F.col("name").alias("mesh_name"),
        F.lit("descriptor").alias("record_type"), F.lit(None).cast("string").alias("descriptor_class"),
        "tree_numbers", F.array().cast("array<string>").alias("entry_terms"),
        F.array().cast("array<string>").alias("mapped_to"), F.array().cast("array<string>").alias("pharm_actions"),
        F.array().cast("array<string>").alias("roles"), "source_file")
    return rows, rejects


# -------------------------------------------------------------------------------------- lake harvest
def _ui_term_rows(pairs: DataFrame, source: str) -> DataFrame:
    """(mesh_ui, mesh_name, role) pairs -> one row per UI: its most frequent name, the others as entry terms."""
    pairs = pairs.where(F.col("mesh_ui").rlike(MESH_UI.pattern) & F.col("mesh_name").isNotNull()
                        & (F.trim("mesh_name") != ""))
    counted = pairs.groupBy("mesh_ui", "mesh_name").agg(F.count("*").alias("n"),
                                                        F.collect_set("role").alias("roles"))
    per_ui = counted.groupBy("mesh_ui").agg(
        F.max_by("mesh_name", F.struct("n", "mesh_name")).alias("mesh_name"),
        F.array_sort(F.collect_set("mesh_name")).alias("names"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("roles")))).alias("roles"))
    return per_ui.select(
        F.lit(source).alias("source"), F.col("mesh_ui").alias("mesh_key"), "mesh_ui", "mesh_name",
        F.when(F.col("mesh_ui").startswith("C"), "supplementary").otherwise("descriptor").alias("record_type"),
        F.lit(None).cast("string").alias("descriptor_class"), F.array().cast("array<string>").alias("tree_numbers"),
        F.array_sort(F.array_except("names", F.array("mesh_name"))).alias("entry_terms"),
        F.array().cast("array<string>").alias("mapped_to"), F.array().cast("array<string>").alias("pharm_actions"),
        "roles", F.lit("lake").alias("source_file"))


def harvest_ctgov(spark: SparkSession, lake_root: str, mesh_bounds: dict[str, int]) -> tuple[DataFrame, dict[str, int]]:
    """UIs and names NLM assigned to ClinicalTrials.gov records: derived meshes and their ancestors."""
    from trialpanorama import lake
    from trialpanorama.normalize.identifiers import mesh_ui

    versions: dict[str, int] = {}
    parts: list[DataFrame] = []
    for table, ui_col, name_col, role in (("conditions", "condition_mesh_id", "condition_mesh_term", "condition"),
                                         ("drugs", "drug_mesh_id", "drug_name", "intervention")):
        uri = lake.table_uri(lake_root, table)
        v = lake.table_version(spark, uri)
        if v is None:
            continue
        versions[table] = v
        df = lake.read_table(spark, uri, v).where("origin = 'ctgov_derived'")
        parts.append(df.select(F.col(ui_col).alias("mesh_ui"), F.trim(name_col).alias("mesh_name"),
                               F.lit(role).alias("role")))
    uri = lake.table_uri(lake_root, "ctgov_raw")
    v = lake.table_version(spark, uri)
    if v is not None:
        versions["ctgov_raw"] = v
        raw = lake.read_table(spark, uri, v)
        for module, role in (("conditionBrowseModule", "condition"), ("interventionBrowseModule", "intervention")):
            anc = F.from_json(F.get_json_object("raw", f"$.derivedSection.{module}.ancestors"),
                              "ARRAY<STRUCT<id: STRING, term: STRING>>")
            parts.append(raw.select(F.explode(anc).alias("a")).select(
                mesh_ui(F.col("a.id"), mesh_bounds).alias("mesh_ui"), F.trim("a.term").alias("mesh_name"),
                F.lit(f"{role}_ancestor").alias("role")))
    if not parts:
        return _empty(spark), versions
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return _ui_term_rows(out, SOURCE_LAKE_CTGOV), versions


def harvest_pubmed(spark: SparkSession, lake_root: str) -> tuple[DataFrame | None, dict[str, int]]:
    """MeSH headings of PubMed articles, when a ``publications`` table with ``mesh_headings`` exists."""
    from trialpanorama import lake

    if "publications" not in lake.TABLES:
        return None, {}
    uri = lake.table_uri(lake_root, "publications")
    v = lake.table_version(spark, uri)
    if v is None:
        return None, {}
    pubs = lake.read_table(spark, uri, v)
    if "mesh_headings" not in pubs.columns:
        return None, {}
    item = pubs.schema["mesh_headings"].dataType.elementType  # type: ignore[attr-defined]
    fields = set(item.fieldNames())
    ui_field = next((f for f in ("descriptor_ui", "ui", "mesh_ui") if f in fields), None)
    name_field = next((f for f in ("descriptor_name", "name", "term") if f in fields), None)
    if not ui_field or not name_field:
        return None, {}
    pairs = pubs.select(F.explode("mesh_headings").alias("h")).select(
        F.upper(F.trim(F.col(f"h.{ui_field}"))).alias("mesh_ui"), F.trim(F.col(f"h.{name_field}")).alias("mesh_name"),
        F.lit("pubmed").alias("role"))
    return _ui_term_rows(pairs, SOURCE_LAKE_PUBMED), {"publications": v}


def _empty(spark: SparkSession) -> DataFrame:
    from trialpanorama.schemas import TABLES

    return spark.createDataFrame([], TABLES["vocab_mesh_sources"].schema)


# ------------------------------------------------------------------------------------ merged concepts
SOURCE_PRIORITY = {SOURCE_DESC: 0, SOURCE_SUPP: 1, SOURCE_LAKE_PUBMED: 2, SOURCE_LAKE_CTGOV: 3, SOURCE_TREE: 4,
                   "drug_dictionary": 5}


def _priority(col: Column) -> Column:
    out = F.lit(9)
    for source, rank in SOURCE_PRIORITY.items():
        out = F.when(col == source, F.lit(rank)).otherwise(out)
    return out


def merge_concepts(sources: DataFrame) -> DataFrame:
    """One row per MeSH concept from the per-source rows (``vocab_mesh_sources`` shape) -> ``vocab_mesh``.

    Rows with a UI are grouped by UI. A row without one (tree TSV, drug dictionary tree positions) joins the
    UI whose tree numbers it shares (XML), else the UI of the same descriptor name (lake, PubMed), else the
    tree row of the same name or tree number; what still has no UI is keyed by its name. The preferred name
    comes from the most authoritative source (XML, PubMed, ClinicalTrials.gov, tree, drug dictionary); the
    other names become entry terms, so a renamed descriptor is found under both names.
    """
    s = sources.withColumn("_prio", _priority(F.col("source"))).withColumn("_lname", F.lower(F.trim("mesh_name")))
    with_ui = s.where("mesh_ui IS NOT NULL")
    no_ui = s.where("mesh_ui IS NULL")

    # tree number -> UI (unique), name -> UI (unique): where a UI-less row belongs.
    tree_ui = with_ui.select(F.explode("tree_numbers").alias("tree"), "mesh_ui").distinct() \
        .groupBy("tree").agg(F.collect_set("mesh_ui").alias("uis")).where(F.size("uis") == 1) \
        .select("tree", F.col("uis")[0].alias("tree_ui"))
    name_ui = with_ui.select("_lname", "mesh_ui").distinct().groupBy("_lname") \
        .agg(F.collect_set("mesh_ui").alias("uis")).where(F.size("uis") == 1) \
        .select("_lname", F.col("uis")[0].alias("name_ui"))
    by_tree = no_ui.select("source", "mesh_key", F.explode("tree_numbers").alias("tree")).join(tree_ui, "tree") \
        .groupBy("source", "mesh_key").agg(F.collect_set("tree_ui").alias("uis")).where(F.size("uis") == 1) \
        .select("source", "mesh_key", F.col("uis")[0].alias("tree_ui"))
    no_ui = no_ui.join(by_tree, ["source", "mesh_key"], "left").join(name_ui, "_lname", "left")
    # UI-less rows without a UI: group by the tree TSV's descriptor (same name, or a shared tree number).
    tree_rows = no_ui.where(F.col("source") == SOURCE_TREE)
    tree_key_by_tree = tree_rows.select(F.explode("tree_numbers").alias("tree"), F.col("_lname").alias("_tree_name")) \
        .distinct()
    other_by_tree = no_ui.where(F.col("source") != SOURCE_TREE) \
        .select("source", "mesh_key", F.explode("tree_numbers").alias("tree")).join(tree_key_by_tree, "tree") \
        .groupBy("source", "mesh_key").agg(F.min("_tree_name").alias("_tree_name"))
    no_ui = no_ui.join(other_by_tree, ["source", "mesh_key"], "left")
    no_ui = no_ui.withColumn(
        "concept",
        F.coalesce("tree_ui", "name_ui", F.concat(F.lit("N:"), F.coalesce("_tree_name", "_lname"))))
    # A name-keyed concept whose name another row gives a UI for is that UI's concept.
    keyed = with_ui.withColumn("concept", F.col("mesh_ui")).unionByName(
        no_ui.drop("tree_ui", "name_ui", "_tree_name"), allowMissingColumns=True)

    best = F.min(F.struct("_prio", F.col("mesh_name").alias("n")))
    grouped = keyed.groupBy("concept").agg(
        best.getField("n").alias("mesh_name"),
        F.max("mesh_ui").alias("mesh_ui"),
        F.min(F.struct("_prio", "record_type")).getField("record_type").alias("record_type"),
        F.max("descriptor_class").alias("descriptor_class"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("tree_numbers")))).alias("tree_numbers"),
        F.array_distinct(F.flatten(F.collect_list(F.array_union(F.array("mesh_name"), "entry_terms")))).alias("_names"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("mapped_to")))).alias("mapped_to"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("pharm_actions")))).alias("pharm_actions"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("roles")))).alias("roles"),
        F.array_sort(F.collect_set("source")).alias("sources"),
    )
    # Only descriptors live in the trees: a tree number makes a record a descriptor.
    return grouped.select(
        F.col("concept").alias("mesh_key"), "mesh_ui", "mesh_name",
        F.when(F.size("tree_numbers") > 0, F.lit("descriptor")).otherwise(F.col("record_type")).alias("record_type"),
        "descriptor_class", "tree_numbers",
        F.array_sort(F.filter("_names", lambda x: x != F.col("mesh_name"))).alias("entry_terms"),
        "mapped_to", "pharm_actions", "roles", "sources",
    )
