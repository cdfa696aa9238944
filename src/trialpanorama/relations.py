"""Gold ``relations``: trial -> publication and review -> publication edges on trial_uid and PMID.

Sources, each kept as evidence on the edge: ClinicalTrials.gov references of type RESULT/DERIVED (the trial's
own papers), PubMed DataBankList accessions and registry ids found in titles/abstracts (mapped to trials
through gold ``trial_id_map``, so a paper citing a trial's EU or Chinese id finds the same trial_uid), a
systematic review's reference list, and the published TrialPanorama relations when imported. Two trials
citing one paper stay two trials: these are trial->paper edges, never identity edges.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama import lake
from trialpanorama.progress import progress
from trialpanorama.unify import registry_node

_EDGE_COLS = ["head_id", "head_type", "tail_id", "tail_type", "relation_type", "evidence"]


def _edge(df: DataFrame, head: str, head_type: str, tail: str, tail_type: str, rel: str, ev) -> DataFrame:
    return df.select(F.col(head).alias("head_id"), F.lit(head_type).alias("head_type"),
                     F.col(tail).alias("tail_id"), F.lit(tail_type).alias("tail_type"),
                     F.lit(rel).alias("relation_type"), ev.alias("evidence"))


def ctgov_reference_edges(refs: DataFrame, members: DataFrame, cfg: dict[str, Any]) -> DataFrame:
    types = [t.upper() for t in cfg["ctgov_reference_types"]]
    own = refs.where(F.upper("reference_type").isin(types) & F.col("pmid").rlike(r"^\d+$")).join(members, "study_id")
    return _edge(own, "trial_uid", "trial", "pmid", "publication", cfg["relation_types"]["trial_publication"],
                 F.concat(F.lit("ctgov_reference:"), F.upper("reference_type"), F.lit(":"), F.col("study_id")))


def publication_trial_edges(trial_ids: DataFrame, id_map: DataFrame, patterns: dict[str, str],
                            cfg: dict[str, Any]) -> DataFrame:
    """Paper -> trial links from PubMed's curated DataBankList and from ids written in the title/abstract.

    ``trial_ids`` is silver ``publication_trial_ids`` (one row per paper and registry id, with its origin).
    """
    ids = trial_ids.select("pmid", "origin", "trial_id",
                           registry_node(F.col("trial_id"), patterns).alias("registry_id"))
    linked = ids.join(id_map.select("registry_id", "trial_uid"), "registry_id")
    return _edge(linked, "trial_uid", "trial", "pmid", "publication", cfg["relation_types"]["trial_publication"],
                 F.concat(F.lit("pubmed_"), F.col("origin"), F.lit(":"), F.col("trial_id")))


def review_citation_edges(pubs: DataFrame, cfg: dict[str, Any]) -> DataFrame:
    review_uis = list(cfg["review_publication_types"])
    reviews = pubs.where(F.exists("publication_types", lambda p: p.getField("ui").isin(review_uis)))
    cited = reviews.select("pmid", F.explode("cited_pmids").alias("cited")).where(F.col("cited").rlike(r"^\d+$"))
    return _edge(cited, "pmid", "review", "cited", "publication", cfg["relation_types"]["review_citation"],
                 F.lit("pubmed_reference_list"))


def panorama_edges(rel: DataFrame) -> DataFrame:
    """Relations of the published database as given (its ids are its own study ids and PMIDs)."""
    return rel.select("head_id", "head_type", "tail_id", "tail_type", "relation_type",
                      F.lit("trialpanorama_published").alias("evidence"))


def build(spark: SparkSession, lake_root: str, cfg: dict[str, Any], patterns: dict[str, str],
          record_input=None) -> tuple[DataFrame, dict[str, int]]:
    """All edges, one row per (head, tail, relation) with every piece of evidence, and counts per source."""
    def read(name: str) -> DataFrame | None:
        uri = lake.table_uri(lake_root, name)
        version = lake.table_version(spark, uri)
        if version is None:
            return None
        if record_input:
            record_input(name, version)
        return lake.read_table(spark, uri, version)

    members, id_map = read("trial_members"), read("trial_id_map")
    if members is None or id_map is None:
        raise FileNotFoundError(f"gold trial tables are missing under {lake_root}: run jobs/unify_trials.py first")
    parts: dict[str, DataFrame] = {}
    refs = read("study_references")
    if refs is not None:
        parts["ctgov_references"] = ctgov_reference_edges(refs, members.select("study_id", "trial_uid"), cfg)
    trial_ids = read("publication_trial_ids")
    if trial_ids is not None:
        parts["pubmed_trial_ids"] = publication_trial_edges(trial_ids, id_map, patterns, cfg)
    pubs = read("publications")
    if pubs is not None:
        parts["review_citations"] = review_citation_edges(pubs, cfg)
    panorama = read("panorama_relations")
    if panorama is not None:
        parts["trialpanorama_published"] = panorama_edges(panorama)
    counts = {f"edges_from_{k}": v.count() for k, v in parts.items()}
    if not parts:
        empty = spark.createDataFrame([], lake.TABLES["relations"].schema)
        return empty, counts
    edges = None
    for df in parts.values():
        edges = df if edges is None else edges.unionByName(df)
    out = edges.groupBy("head_id", "head_type", "tail_id", "tail_type", "relation_type") \
        .agg(F.array_sort(F.collect_set("evidence")).alias("evidence"))
    progress(f"relations: {', '.join(f'{k}={v}' for k, v in counts.items())}")
    return out.select(_EDGE_COLS), counts


def run(spark: SparkSession, lake_root: str, cfg: dict[str, Any], patterns: dict[str, str],
        report=None, record_input=None) -> dict[str, int]:
    edges, counts = build(spark, lake_root, cfg, patterns, record_input)
    written = lake.sync_snapshot(spark, lake_root, "relations", edges)
    if written is not None and report:
        report(written)
    rel = lake.read_named(spark, lake_root, "relations")
    counts["relations"] = rel.count()
    counts["trials_with_publications"] = rel.where("head_type = 'trial'").select("head_id").distinct().count()
    return counts
