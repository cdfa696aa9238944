"""Run the linker over the lake: every registry name of silver ``conditions`` and ``drugs`` is linked, the
candidates go to gold ``link_candidates``, and the chosen links are written onto the silver rows.

Only registry rows are touched (origins in ``link_origins``: ``registry``, and ``registry_meddra`` for EU CTR's
MedDRA terms); NLM's ``ctgov_derived`` rows stay as ingested. Linking is
incremental: ``link_candidates`` rows carry the version of the vocabularies and settings they were computed
with, and only names without current rows are linked again (all of them after a vocabulary or settings change).
Writes are diffs: a silver row is updated only when its link differs from what it holds, and a table is not
committed at all when no row differs, so a rerun on an unchanged lake changes no table version, and rows that
an ingest replaced (with empty links) are filled again by the next run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from trialpanorama import lake
from trialpanorama.linking import match
from trialpanorama.linking.vocab import stored_terms_version, sync_full
from trialpanorama.progress import progress

KINDS = ("condition", "drug")


def _version(spark: SparkSession, root: str, table: str) -> int | None:
    return lake.table_version(spark, lake.table_uri(root, table))


def _read(spark: SparkSession, root: str, table: str, record_input: Callable[[str, int], None] | None,
          required: bool = False) -> DataFrame:
    version = _version(spark, root, table)
    if version is None:
        if required:
            raise FileNotFoundError(f"table {table} is missing under {root}: run "
                                    + ("jobs/load_vocabularies.py" if table.startswith("vocab") else "an ingest job")
                                    + " first")
        return spark.createDataFrame([], lake.TABLES[table].schema)
    if record_input:
        record_input(table, version)
    return lake.read_table(spark, lake.table_uri(root, table), version)


# ------------------------------------------------------------------------------------------- names
def skip_types(lcfg: dict[str, Any]) -> list[str]:
    return [str(t).upper() for t in lcfg.get("drug_skip_intervention_types") or []]


def registry(df: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    """The rows a registry wrote (origins in ``link_origins``; never NLM's ``ctgov_derived`` mapping)."""
    origins = [str(o) for o in lcfg.get("link_origins") or ["registry"]]
    return df.where(F.col("origin").isin(origins))


def condition_names(conditions: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    return registry(conditions, lcfg).select(F.trim("condition_name").alias("name"))


def linkable_drugs(drugs: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    skip = skip_types(lcfg)
    t = F.upper(F.trim(F.coalesce(F.col("intervention_type"), F.lit(""))))
    return registry(drugs, lcfg).where(~t.isin(skip) if skip else F.lit(True))


def drug_names(drugs: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    d = linkable_drugs(drugs, lcfg)
    return d.select(F.trim("drug_name").alias("name")).unionByName(
        d.select(F.explode("other_names").alias("name")).select(F.trim("name").alias("name")))


def names_of(kind: str, conditions: DataFrame, drugs: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    names = condition_names(conditions, lcfg) if kind == "condition" else drug_names(drugs, lcfg)
    return names.where(F.col("name").isNotNull() & (F.col("name") != "")).distinct()


# ------------------------------------------------------------------------------------------- links
def condition_row_links(conditions: DataFrame, links: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    rows = registry(conditions, lcfg).select("study_id", "condition_name", "origin")
    return rows.join(links.where("entity = 'condition'").drop("entity"),
                     F.trim(rows["condition_name"]) == links["name"]).drop("name")


def drug_row_links(drugs: DataFrame, links: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    """Per registry drug row: the link of its name, else of its first other name that links (ambiguous last)."""
    d = linkable_drugs(drugs, lcfg).select("study_id", "drug_name", "origin", "other_names")
    names = d.select("study_id", "drug_name", "origin", F.posexplode(
        F.concat(F.array("drug_name"), F.coalesce("other_names", F.array().cast("array<string>")))).alias("pos", "n"))
    lk = links.where("entity = 'drug'").drop("entity")
    j = names.join(lk, F.trim(names["n"]) == lk["name"]).where(F.col("link_method").isNotNull())
    rank = F.when(F.col("link_method") == "ambiguous", 1).otherwise(0)
    w = Window.partitionBy("study_id", "drug_name", "origin").orderBy(rank, "pos")
    return j.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").select(
        "study_id", "drug_name", "origin", "drugbank_id", "drugbank_name", "mesh_ui", "mesh_name", "link_method", "link_score")


def _differs(cols: list[str]):
    cond = F.lit(False)
    for c in cols:
        cond = cond | ~F.col(c).eqNullSafe(F.col(f"new_{c}"))
    return cond


CONDITION_COLS = ["condition_mesh_id", "condition_mesh_term", "condition_mesh_type", "link_method", "link_score"]
DRUG_COLS = ["drug_mesh_id", "drugbank_name", "drugbank_id", "link_method", "link_score"]


def condition_updates(conditions: DataFrame, links: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    key = ["study_id", "condition_name", "origin"]
    r = condition_row_links(conditions, links, lcfg).select(
        *key, F.col("mesh_ui").alias("new_condition_mesh_id"),
        F.col("mesh_name").alias("new_condition_mesh_term"),
        F.when(F.col("mesh_name").isNotNull(), F.lit("direct")).alias("new_condition_mesh_type"),
        F.col("link_method").alias("new_link_method"), F.col("link_score").alias("new_link_score"),
    ).dropDuplicates(key)
    j = registry(conditions, lcfg).join(r, key, "left")
    return j.where(_differs(CONDITION_COLS)).select(*key, *[f"new_{c}" for c in CONDITION_COLS]).dropDuplicates(key)


def drug_updates(drugs: DataFrame, row_links: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    key = ["study_id", "drug_name", "origin"]
    r = row_links.select(
        *key, F.col("mesh_ui").alias("new_drug_mesh_id"),
        F.col("drugbank_name").alias("new_drugbank_name"), F.col("drugbank_id").alias("new_drugbank_id"),
        F.col("link_method").alias("new_link_method"), F.col("link_score").alias("new_link_score"),
    ).dropDuplicates(key)
    j = registry(drugs, lcfg).join(r, key, "left")
    return j.where(_differs(DRUG_COLS)).select(*key, *[f"new_{c}" for c in DRUG_COLS]).dropDuplicates(key)


def _merge_updates(spark: SparkSession, root: str, table: str, updates: DataFrame, name_col: str,
                   cols: list[str]) -> lake.WriteResult | None:
    """Update the registry rows listed in ``updates`` (study_id, name_col, new_<col>...) in one MERGE."""
    if updates.isEmpty():
        return None
    from delta.tables import DeltaTable

    uri = lake.table_uri(root, table)
    on = f"t.study_id = s.study_id AND t.`{name_col}` <=> s.`{name_col}` AND t.origin = s.origin"
    DeltaTable.forPath(spark, uri).alias("t").merge(updates.alias("s"), on) \
        .whenMatchedUpdate(set={c: f"s.`new_{c}`" for c in cols}).execute()
    return lake.WriteResult(table, uri, lake.table_version(spark, uri), -1)


# ------------------------------------------------------------------------------------- vocabularies
def settings_version(lcfg: dict[str, Any]) -> str:
    """Hash of the settings that shape candidates and decisions (beyond the term keys)."""
    relevant = {k: lcfg.get(k) for k in ("fuzzy", "scores")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_vocabularies(spark: SparkSession, root: str, lcfg: dict[str, Any],
                      record_input: Callable[[str, int], None] | None = None,
                      mesh: DataFrame | None = None) -> tuple[match.Vocabularies, str | None]:
    """(vocabularies, version): the stored ``vocab_terms`` when they match the current settings, with a version
    naming them; else terms computed from the vocabularies (``mesh`` given: from that MeSH frame, as the
    evaluation does), with version None (their candidates are never reused)."""
    icd = _read(spark, root, "vocab_icd10", record_input)
    icd_v = _version(spark, root, "vocab_icd10")
    icd = None if icd_v is None else icd
    if mesh is None and stored_terms_version(spark, root) == match.keys_version(lcfg):
        terms_v = _version(spark, root, "vocab_terms")
        version = f"terms@{terms_v}|icd10@{icd_v}|{match.keys_version(lcfg)}|{settings_version(lcfg)}"
        return match.Vocabularies(_read(spark, root, "vocab_terms", record_input), icd), version
    if mesh is None:
        progress("vocab_terms missing or built with other settings: recomputing them (rerun jobs/load_vocabularies.py"
                 " to store them)")
        mesh = _read(spark, root, "vocab_mesh", record_input, required=True)
    drugs = _read(spark, root, "vocab_drugs", record_input)
    return match.Vocabularies(match.build_terms(mesh, drugs, lcfg).localCheckpoint(), icd), None


def all_names(conditions: DataFrame, drugs: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    """Distinct (entity, name) of every registry row to link."""
    return names_of("condition", conditions, drugs, lcfg).withColumn("entity", F.lit("condition")) \
        .unionByName(names_of("drug", conditions, drugs, lcfg).withColumn("entity", F.lit("drug")))


def link_all(spark: SparkSession, vocabs: match.Vocabularies, conditions: DataFrame, drugs: DataFrame,
             lcfg: dict[str, Any], known: DataFrame | None = None) -> tuple[DataFrame, dict[str, int]]:
    """Candidates for every registry name; names in ``known`` (entity, name) are skipped. Returns the new
    candidate rows and how many names were linked per kind."""
    names = all_names(conditions, drugs, lcfg)
    if known is not None:
        names = names.join(known, ["entity", "name"], "left_anti")
    names = names.localCheckpoint()
    counts = {r["entity"]: r["n"] for r in names.groupBy("entity").agg(F.count("*").alias("n")).collect()}
    linked = {kind: counts.get(kind, 0) for kind in KINDS}
    if not sum(linked.values()):
        return spark.createDataFrame([], lake.TABLES["link_candidates"].schema).drop("vocab_version"), linked
    return match.link_names(names, vocabs, lcfg), linked


def run(spark: SparkSession, root: str, lcfg: dict[str, Any], report: Callable[[lake.WriteResult], None] | None = None,
        record_input: Callable[[str, int], None] | None = None, full: bool = False) -> dict[str, Any]:
    """Link the lake's registry names; ``full`` relinks every name even when its candidates are current."""
    report = report or (lambda r: None)
    conditions = _read(spark, root, "conditions", record_input)
    drugs = _read(spark, root, "drugs", record_input)
    vocabs, version = load_vocabularies(spark, root, lcfg, record_input)

    stored = lake.read_named(spark, root, "link_candidates")
    current_names = all_names(conditions, drugs, lcfg)
    reuse = stored.where(F.col("vocab_version") == F.lit(version)) if (version and not full) else None
    if reuse is not None:
        reuse = reuse.join(current_names, ["entity", "name"], "left_semi").localCheckpoint()
    new, n_linked = link_all(spark, vocabs, conditions, drugs, lcfg,
                             known=reuse.select("entity", "name").distinct() if reuse is not None else None)
    new = new.withColumn("vocab_version", F.lit(version or "adhoc"))
    candidates = new if reuse is None else reuse.unionByName(new)
    candidates = candidates.localCheckpoint()
    written = sync_full(spark, root, "link_candidates", candidates)
    if written is not None:
        report(written)

    links = match.links_from_candidates(candidates).localCheckpoint()
    c_updates = condition_updates(conditions, links, lcfg).localCheckpoint()
    d_updates = drug_updates(drugs, drug_row_links(drugs, links, lcfg), lcfg).localCheckpoint()
    n_c, n_d = c_updates.count(), d_updates.count()
    for table, updates, name_col, cols in (("conditions", c_updates, "condition_name", CONDITION_COLS),
                                           ("drugs", d_updates, "drug_name", DRUG_COLS)):
        written = _merge_updates(spark, root, table, updates, name_col, cols)
        if written is not None:
            report(written)
    stats = {"names_linked_now": n_linked, "rows_updated": {"conditions": n_c, "drugs": n_d},
             "vocab_version": version, **link_stats(spark, root, candidates)}
    progress(f"link_ontologies: {n_linked} names linked now, {stats['rows_updated']} rows updated")
    return stats


def link_stats(spark: SparkSession, root: str, candidates: DataFrame) -> dict[str, Any]:
    """Registry rows by link method (as the lake now holds them), and names by decision."""
    out: dict[str, Any] = {"rows_by_method": {}, "names_by_decision": {}}
    for table in ("conditions", "drugs"):
        df = lake.read_named(spark, root, table).where("origin <> 'ctgov_derived'")
        out["rows_by_method"][table] = {
            (r["m"] or "unlinked"): r["n"]
            for r in df.groupBy(F.col("link_method").alias("m")).agg(F.count("*").alias("n")).collect()}
    best = candidates.groupBy("entity", "name").agg(F.min(
        F.when(F.col("decision") == "chosen", 0).when(F.col("decision") == "ambiguous", 1)
        .when(F.col("decision") == "excluded", 2).otherwise(3)).alias("d"))
    label = {0: "linked", 1: "ambiguous", 2: "excluded", 3: "unlinked"}
    for r in best.groupBy("entity", "d").agg(F.count("*").alias("n")).collect():
        out["names_by_decision"].setdefault(r["entity"], {})[label[r["d"]]] = r["n"]
    return out
