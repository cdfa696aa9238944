"""Vocabulary tables: load each source into the lake, and build the concept/term views the linker joins on.

Per-source tables (``vocab_mesh_sources``, ``vocab_drugs``, ``vocab_icd10``) are written with ``sync_scoped``:
a load replaces only the rows of the sources it read, committing nothing when they are unchanged, so loading
the DrugBank CSV once and later only the packaged defaults never drops the CSV's rows. ``vocab_mesh`` is the
merge of all MeSH sources (one row per descriptor or supplementary concept), recomputed with ``sync_snapshot``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama import lake
from trialpanorama.config import PROJECT_ROOT, Config, load_sibling_yaml
from trialpanorama.progress import progress
from trialpanorama.schemas import TABLES
from trialpanorama.sources import drugs as drug_src
from trialpanorama.sources import icd10 as icd_src
from trialpanorama.sources import mesh as mesh_src
from trialpanorama.sources import staging

Report = Callable[[lake.WriteResult], None]


def linking_config(cfg: Config) -> dict[str, Any]:
    return load_sibling_yaml(cfg, "linking.yaml")


def resolve_path(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (PROJECT_ROOT / p).resolve()


# ------------------------------------------------------------------------------------ scoped sync
def _conform(df: DataFrame, table: str) -> DataFrame:
    schema = TABLES[table].schema
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"{table}: frame lacks columns {missing}")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def fingerprint(df: DataFrame) -> tuple[int, int, int]:
    """An order-independent content fingerprint: row count, XOR and modular sum of per-row 64-bit hashes.

    Two frames of distinct rows with equal fingerprints hold the same rows (up to a 2^-64-scale collision); one
    aggregation per side instead of the two shuffles of ``exceptAll``.
    """
    h = F.xxhash64(*[F.col(c) for c in df.columns])
    row = df.select(F.count(F.lit(1)).alias("n"), F.bit_xor(h).alias("x"),
                    F.sum(F.pmod(h, F.lit(2_147_483_647))).alias("s")).first()
    return int(row["n"]), int(row["x"] or 0), int(row["s"] or 0)


def sync_full(spark: SparkSession, lake_root: str, table: str, df: DataFrame) -> lake.WriteResult | None:
    """``lake.sync_snapshot``, skipped (no commit, no diff shuffles) when the content fingerprint is unchanged."""
    uri = lake.table_uri(lake_root, table)
    df = _conform(df, table).dropDuplicates(list(TABLES[table].keys)).localCheckpoint()
    if lake.table_exists(spark, uri) and fingerprint(df) == fingerprint(lake.read_table(spark, uri)):
        return None
    return lake.sync_snapshot(spark, lake_root, table, df)


def sync_scoped(spark: SparkSession, lake_root: str, table: str, df: DataFrame, scope_col: str,
                scope_values: list[str], compare: bool = True) -> lake.WriteResult | None:
    """Make the rows of ``table`` whose ``scope_col`` is in ``scope_values`` equal to ``df``; others untouched.

    Like ``lake.sync_snapshot`` but for one slice (one vocabulary source) of a table: one MERGE that inserts,
    updates and deletes only what differs inside the slice, and no commit at all when nothing does.
    """
    spec = TABLES[table]
    uri = lake.table_uri(lake_root, table)
    if compare:  # (callers passing compare=False hand over a conformed, deduplicated, checkpointed frame)
        df = _conform(df, table).dropDuplicates(list(spec.keys))
    if not lake.table_exists(spark, uri):
        if df.isEmpty():
            return None
        df.write.format("delta").mode("append").save(uri)
        return lake.WriteResult(table, uri, lake.table_version(spark, uri), -1)
    in_scope = F.col(scope_col).isin(scope_values)
    if compare:
        df = df.localCheckpoint()
        current = lake.read_table(spark, uri).where(in_scope)
        if fingerprint(df) == fingerprint(current):
            return None
    from delta.tables import DeltaTable

    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.keys)
    others = [f.name for f in spec.schema.fields if f.name not in spec.keys]
    differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in others) or "false"
    values = ", ".join("'" + v.replace("'", "''") + "'" for v in scope_values)
    (
        DeltaTable.forPath(spark, uri).alias("t").merge(df.alias("s"), on)
        .whenMatchedUpdateAll(condition=differs)
        .whenNotMatchedInsertAll()
        .whenNotMatchedBySourceDelete(condition=f"t.`{scope_col}` IN ({values})")
        .execute()
    )
    return lake.WriteResult(table, uri, lake.table_version(spark, uri), -1)


def fingerprints_by(df: DataFrame, col: str) -> dict[str, tuple[int, int, int]]:
    h = F.xxhash64(*[F.col(c) for c in df.columns])
    rows = df.groupBy(col).agg(F.count(F.lit(1)).alias("n"), F.bit_xor(h).alias("x"),
                               F.sum(F.pmod(h, F.lit(2_147_483_647))).alias("s")).collect()
    return {r[col]: (int(r["n"]), int(r["x"] or 0), int(r["s"] or 0)) for r in rows}


def sync_sources(spark: SparkSession, lake_root: str, table: str, frames: dict[str, DataFrame],
                 scope_col: str = "source") -> tuple[lake.WriteResult | None, list[str]]:
    """Replace the slices of ``table`` for the given sources (scope values) in at most one commit.

    Slices are compared by fingerprint (one aggregation per side); only the sources whose content differs
    are merged. Returns the write (None when nothing changed) and the changed sources.
    """
    if not frames:
        return None, []
    union = None
    for df in frames.values():
        df = _conform(df, table)
        union = df if union is None else union.unionByName(df)
    union = union.dropDuplicates(list(TABLES[table].keys)).localCheckpoint()
    uri = lake.table_uri(lake_root, table)
    if lake.table_exists(spark, uri):
        new = fingerprints_by(union, scope_col)
        old = fingerprints_by(lake.read_table(spark, uri).where(F.col(scope_col).isin(list(frames))), scope_col)
        changed = sorted(s for s in frames if new.get(s) != old.get(s))
    else:
        changed = sorted(frames)
    if not changed:
        return None, []
    result = sync_scoped(spark, lake_root, table, union.where(F.col(scope_col).isin(changed)), scope_col, changed,
                         compare=False)
    return result, changed


def write_vocab_rejects(spark: SparkSession, root: str, rejects: dict[str, DataFrame], at: Column,
                        report: Report, stats: dict[str, Any], max_reasons: int | None = None) -> None:
    """Append the rejects of every vocabulary source not already recorded, in one commit (none if none).

    ``stats["rejected"]`` lists each source's reasons capped like the registry ingests' (``staging.top_reasons``).
    """
    if not rejects:
        return
    union = None
    for source, df in rejects.items():
        df = df.select("source_file", "raw", "reason", F.lit(source).alias("_source"))
        union = df if union is None else union.unionByName(df)
    union = union.localCheckpoint()
    by_source: dict[str, dict[str, int]] = {}
    for r in union.groupBy("_source", "reason").agg(F.count("*").alias("n")).collect():
        by_source.setdefault(r["_source"], {})[r["reason"]] = r["n"]
    sources = sorted(by_source)
    for source in sources:
        stats.setdefault("rejected", {})[source] = staging.top_reasons(by_source[source], max_reasons)
    if not sources:
        return
    fresh = None
    for source in sources:
        f = staging.rejects_frame(union.where(F.col("_source") == source), at, source)
        fresh = f if fresh is None else fresh.unionByName(f)
    known = lake.read_named(spark, root, "rejects").select("reject_id")
    fresh = fresh.join(known, "reject_id", "left_anti").localCheckpoint()
    if not fresh.isEmpty():
        report(lake.upsert(spark, root, "rejects", fresh, hash_col="reject_id"))


# ------------------------------------------------------------------------------------------ loading
@dataclass
class LoadOptions:
    mesh_xml: list[str] = field(default_factory=list)
    mesh_supp_xml: list[str] = field(default_factory=list)
    mesh_tree: list[str] | None = None    # None: the configured default; [] : skip
    drugbank_csv: list[str] = field(default_factory=list)
    drug_dictionary: bool = True
    dictionary_path: str | None = None
    icd10_systems: list[str] | None = None
    harvest_lake: bool = True
    only: tuple[str, ...] = ("mesh", "drugs", "icd10")


def load_mesh(spark: SparkSession, cfg: Config, lcfg: dict[str, Any], opts: LoadOptions, report: Report,
              record_input: Callable[[str, int], None], stats: dict[str, Any],
              pending_rejects: dict[str, DataFrame]) -> None:
    root = cfg.lake_root
    mcfg = (lcfg.get("vocabularies") or {}).get("mesh") or {}
    loaded: dict[str, DataFrame] = {}
    rejects: dict[str, DataFrame] = {}
    for source, files, kind in ((mesh_src.SOURCE_DESC, opts.mesh_xml, "descriptor"),
                                (mesh_src.SOURCE_SUPP, opts.mesh_supp_xml, "supplementary")):
        if files:
            records, rejects[source] = mesh_src.read_xml(spark, files, kind)
            loaded[source] = mesh_src.xml_rows(records, source)
    trees = opts.mesh_tree if opts.mesh_tree is not None else [str(mcfg.get("tree_tsv") or "")]
    paths = []
    for tree in (t for t in trees if t):
        path = tree if "://" in tree else str(resolve_path(tree))
        if "://" in path or Path(path).is_file():
            paths.append(path)
        else:
            msg = f"MeSH tree file {path} is absent: skipped (MeSH names then come from the lake and the other sources)"
            progress(msg)
            stats.setdefault("skipped", []).append(msg)
    if paths:
        loaded[mesh_src.SOURCE_TREE], rejects[mesh_src.SOURCE_TREE] = mesh_src.read_tree(spark, paths)
    if opts.harvest_lake and mcfg.get("harvest_lake", True):
        bounds = (load_sibling_yaml(cfg, "normalize.yaml").get("mesh") or {}).get("six_digit_below") or {}
        ctgov_rows, versions = mesh_src.harvest_ctgov(spark, root, bounds)
        pubmed_rows, pv = mesh_src.harvest_pubmed(spark, root)
        for t, v in {**versions, **pv}.items():
            record_input(t, v)
        loaded[mesh_src.SOURCE_LAKE_CTGOV] = ctgov_rows
        if pubmed_rows is not None:
            loaded[mesh_src.SOURCE_LAKE_PUBMED] = pubmed_rows
        else:
            stats.setdefault("skipped", []).append("no publications table with mesh_headings: PubMed MeSH not harvested")
    if opts.drug_dictionary:
        # The dictionary's tree positions name MeSH descriptors (and so add post-2019 ones to the tree).
        rows = _dictionary_frame(spark, lcfg, opts, stats)
        if rows is not None:
            loaded["drug_dictionary"] = dictionary_mesh_rows(rows)
    pending_rejects.update(rejects)
    result, changed = sync_sources(spark, root, "vocab_mesh_sources", loaded)
    if result is not None:
        report(result)
    progress(f"vocab_mesh_sources: loaded {sorted(loaded)}, changed {changed}")
    stats["mesh_sources"] = {"loaded": sorted(loaded), "changed": changed}


def dictionary_mesh_rows(drug_rows: DataFrame) -> DataFrame:
    """The drug dictionary's MeSH tree positions as MeSH source rows (name + tree numbers, no UI)."""
    d = drug_rows.where(F.size("mesh_tree") > 0)
    return d.select(
        F.lit("drug_dictionary").alias("source"), F.concat(F.lit("N:"), F.lower("name")).alias("mesh_key"),
        F.lit(None).cast("string").alias("mesh_ui"), F.col("name").alias("mesh_name"),
        F.lit("descriptor").alias("record_type"), F.lit(None).cast("string").alias("descriptor_class"),
        F.col("mesh_tree").alias("tree_numbers"), F.array().cast("array<string>").alias("entry_terms"),
        F.array().cast("array<string>").alias("mapped_to"), F.array().cast("array<string>").alias("pharm_actions"),
        F.array().cast("array<string>").alias("roles"), "source_file")


_DICT_CACHE: dict[str, DataFrame] = {}


def _dictionary_frame(spark: SparkSession, lcfg: dict[str, Any], opts: LoadOptions,
                      stats: dict[str, Any]) -> DataFrame | None:
    dcfg = (lcfg.get("vocabularies") or {}).get("drugs") or {}
    if not dcfg.get("use_dictionary", True):
        return None
    path = drug_src.dictionary_path(opts.dictionary_path or dcfg.get("dictionary_path") or None)
    if path is None or not path.is_file():
        msg = "drug-named-entity-recognition's dictionary is not installed: skipped"
        progress(msg)
        stats.setdefault("skipped", []).append(msg)
        return None
    key = f"{path}|{id(spark)}"
    if key not in _DICT_CACHE:
        rows = drug_src.dictionary_rows(drug_src.load_dictionary(path), f"file://{path}")
        import pandas as pd

        pdf = pd.DataFrame(rows, columns=[c.split(" ")[0] for c in drug_src.ROW_DDL.split(", ")])
        _DICT_CACHE[key] = spark.createDataFrame(pdf, drug_src.ROW_DDL)
    return _DICT_CACHE[key]


def load_drugs(spark: SparkSession, root: str, lcfg: dict[str, Any], opts: LoadOptions, report: Report,
               stats: dict[str, Any], pending_rejects: dict[str, DataFrame]) -> None:
    loaded: dict[str, DataFrame] = {}
    rejects: dict[str, DataFrame] = {}
    if opts.drugbank_csv:
        loaded[drug_src.SOURCE_DRUGBANK], rejects[drug_src.SOURCE_DRUGBANK] = \
            drug_src.read_drugbank(spark, opts.drugbank_csv)
    if opts.drug_dictionary:
        rows = _dictionary_frame(spark, lcfg, opts, stats)
        if rows is not None:
            loaded[drug_src.SOURCE_DICTIONARY] = rows
    pending_rejects.update(rejects)
    result, changed = sync_sources(spark, root, "vocab_drugs", loaded)
    if result is not None:
        report(result)
    progress(f"vocab_drugs: loaded {sorted(loaded)}, changed {changed}")
    stats["drug_sources"] = {"loaded": sorted(loaded), "changed": changed}


def load_icd10(spark: SparkSession, root: str, lcfg: dict[str, Any], opts: LoadOptions, report: Report,
               stats: dict[str, Any]) -> None:
    systems = opts.icd10_systems or list(((lcfg.get("vocabularies") or {}).get("icd10") or {}).get("systems")
                                         or [icd_src.SYSTEM_CM, icd_src.SYSTEM_WHO])
    import pandas as pd

    rows = icd_src.load(systems)
    pdf = pd.DataFrame(rows, columns=[c.split(" ")[0] for c in icd_src.ROW_DDL.split(", ")])
    df = spark.createDataFrame(pdf, icd_src.ROW_DDL)
    result, _ = sync_sources(spark, root, "vocab_icd10", {s: df.where(F.col("system") == s) for s in systems},
                             scope_col="system")
    if result is not None:
        report(result)
    progress(f"vocab_icd10: {', '.join(systems)} {'written' if result else 'unchanged'}")
    stats["icd10_codes"] = {s: int((pdf["system"] == s).sum()) for s in systems}


def stored_terms_version(spark: SparkSession, root: str) -> str | None:
    uri = lake.table_uri(root, "vocab_terms")
    if not lake.table_exists(spark, uri):
        return None
    row = lake.read_table(spark, uri).select("keys_version").limit(1).collect()
    return row[0][0] if row else None


def refresh_terms(spark: SparkSession, root: str, lcfg: dict[str, Any], report: Report, force: bool) -> None:
    """Recompute ``vocab_terms`` (the keys of every vocabulary term) when a vocabulary or the normalization
    settings changed; otherwise leave it as it is without reading the vocabularies again."""
    from trialpanorama.linking import match

    if not force and stored_terms_version(spark, root) == match.keys_version(lcfg):
        progress("vocab_terms: unchanged")
        return
    terms = match.build_terms(lake.read_named(spark, root, "vocab_mesh"), lake.read_named(spark, root, "vocab_drugs"),
                              lcfg)
    result = sync_full(spark, root, "vocab_terms", terms)
    if result is not None:
        report(result)
    progress(f"vocab_terms: {'written' if result else 'unchanged'}")


def load(spark: SparkSession, cfg: Config, opts: LoadOptions, at: Column, report: Report | None = None,
         record_input: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Load the requested vocabularies into the lake; returns the job's summary fields."""
    root = cfg.lake_root
    lcfg = linking_config(cfg)
    outer = report or (lambda r: None)
    written: set[str] = set()

    def report(result: lake.WriteResult) -> None:
        written.add(result.table)
        outer(result)

    record_input = record_input or (lambda t, v: None)
    stats: dict[str, Any] = {}
    pending_rejects: dict[str, DataFrame] = {}
    if "mesh" in opts.only:
        load_mesh(spark, cfg, lcfg, opts, report, record_input, stats, pending_rejects)
    if "drugs" in opts.only:
        load_drugs(spark, root, lcfg, opts, report, stats, pending_rejects)
    write_vocab_rejects(spark, root, pending_rejects, at, report, stats, staging.summary_max_reasons(cfg))
    if "mesh" in opts.only:
        sources = lake.read_named(spark, root, "vocab_mesh_sources")
        result = sync_full(spark, root, "vocab_mesh", mesh_src.merge_concepts(sources))
        if result is not None:
            report(result)
        progress(f"vocab_mesh: {'written' if result else 'unchanged'}")
    if {"mesh", "drugs"} & set(opts.only):
        refresh_terms(spark, root, lcfg, report, force=bool({"vocab_mesh", "vocab_drugs"} & written))
    if "icd10" in opts.only:
        load_icd10(spark, root, lcfg, opts, report, stats)
    counts = {}
    for table in ("vocab_mesh_sources", "vocab_mesh", "vocab_drugs", "vocab_terms", "vocab_icd10"):
        counts[table] = lake.read_named(spark, root, table).count()
    stats["vocab_rows"] = counts
    progress(f"vocabularies: {counts}")
    return stats
