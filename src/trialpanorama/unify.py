"""One trial id across registries: an identity graph over registry ids, plus gated near-duplicate merges.

Why a graph: a trial registered in ClinicalTrials.gov, EU CTR and ChiCTR is linked by ids that each record
lists for the others, often only in one direction, and transitively (A lists B, C lists B). Connected
components of "record -> the registry ids it lists" give the clusters. Only ids that parse as a trial
registration (conf/unify.yaml ``id_patterns``) are edges; grant, ethics and sponsor numbers never are, and an
id that several records of one registry list (an umbrella protocol) is set aside as ambiguous.

Records that share no id but look alike (title MinHash LSH, gated by sponsor, start date and size) are
proposed with their evidence, and merged only across registries and above a configured similarity.
Components are computed by Spark-native min-label propagation (no collect to the driver).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from trialpanorama.progress import progress


# ----------------------------------------------------------------------------------- identifiers
def registry_node(col: Column, patterns: dict[str, str]) -> Column:
    """``<REGISTRY>:<id>`` for an id that is a trial registration, NULL otherwise."""
    s = F.upper(F.regexp_replace(F.trim(col), r"\s+", ""))
    out = F.lit(None).cast("string")
    for registry, pattern in reversed(list(patterns.items())):
        out = F.when(s.rlike(pattern), F.concat(F.lit(f"{registry}:"), F.regexp_extract(s, pattern, 1))).otherwise(out)
    return out


# ------------------------------------------------------------------------------ connected components
def connected_components(edges: DataFrame, vertices: DataFrame, max_iter: int = 50) -> tuple[DataFrame, int]:
    """Min-label propagation: every vertex gets the smallest vertex id of its component.

    ``edges``: src, dst; ``vertices``: node. Each round costs one join + aggregate; rounds = the graph's
    diameter (registry cross-links give diameters of 2-4). Lineage is cut each round.
    """
    und = edges.select("src", "dst").unionByName(edges.select(F.col("dst").alias("src"), F.col("src").alias("dst")))
    und = und.where("src <> dst").distinct().localCheckpoint()
    labels = vertices.select("node").distinct().withColumn("label", F.col("node")).localCheckpoint()
    for i in range(1, max_iter + 1):
        spread = und.join(labels, und.src == labels.node).select(F.col("dst").alias("node"), "label")
        new = labels.unionByName(spread).groupBy("node").agg(F.min("label").alias("label")).localCheckpoint()
        changed = new.alias("n").join(labels.alias("o"), "node").where("n.label <> o.label").count()
        labels = new
        if changed == 0:
            return labels, i
    raise RuntimeError(f"connected components did not converge in {max_iter} rounds")


# ------------------------------------------------------------------------------- near-duplicates
def _tokens(col: Column) -> Column:
    words = F.filter(F.split(F.lower(F.regexp_replace(col, r"[^A-Za-z0-9]+", " ")), " "),
                     lambda w: F.length(w) > 2)
    return F.array_distinct(words)


def _hash_with(seed: int) -> Callable[[Column], Column]:
    return lambda shingle: F.xxhash64(F.lit(seed), shingle)


def _band_keys(shingles: Column, bands: int, rows: int) -> Column:
    """MinHash LSH with AND-amplification: ``bands`` keys, each the hash of ``rows`` min-hashes of the set.

    Two sets of Jaccard similarity s share at least one key with probability 1 - (1 - s^rows)^bands
    (20 x 3: 0.96 at 0.5, 0.999 at 0.7, 1.0 at the 0.85 merge threshold). Pure column expressions: no UDF.
    """
    mins = [F.array_min(F.transform(shingles, _hash_with(i))) for i in range(bands * rows)]
    return F.array(*[F.xxhash64(F.lit(b), *mins[b * rows:(b + 1) * rows]) for b in range(bands)])


def near_duplicate_pairs(spark: SparkSession, studies: DataFrame, cfg: dict[str, Any],
                         stats: dict[str, int] | None = None) -> DataFrame:
    """Candidate pairs by title MinHash LSH, blocked by start date, with every gate's evidence computed.

    Why not Spark ML's ``MinHashLSH.approxSimilarityJoin``: it buckets on single min-hashes (OR only), so
    templated titles ("A Phase 2 Study of X in Y") fall in huge buckets whose pairs grow with the square of
    the registry: 235 s at 16K generated trials, over 70 min unfinished at 160K. Here a bucket is a band of
    ``rows_per_band`` min-hashes *and* a ``start_within_days`` window (each study also sits in the next
    window, so every pair within the gate shares one), since a pair outside the window can never pass the
    start gate. For the same reason studies with no start date, sponsor or size are not compared (their
    gates are unknown, so they are never merged or proposed either way). A bucket larger than
    ``max_bucket_size`` is skipped and counted (``stats['near_duplicate_buckets_skipped']``), never silently.
    Similarity is the exact Jaccard of the shingle sets.
    """
    shingle = int(cfg.get("shingle_size", 2))
    days = int(cfg["start_within_days"])
    bands, rows = int(cfg.get("lsh_bands", 20)), int(cfg.get("lsh_rows_per_band", 3))
    cap = int(cfg.get("max_bucket_size", 200))
    base = studies.select("study_id", "study_source", "title", "sponsor", "start_date", "size", "component") \
        .withColumn("words", _tokens(F.col("title"))) \
        .withColumn("sponsor_tokens", _tokens(F.col("sponsor"))) \
        .where((F.size("words") >= int(cfg.get("min_title_tokens", 4))) & (F.size("sponsor_tokens") > 0)
               & F.col("start_date").isNotNull() & F.col("size").isNotNull())
    grams = F.transform(F.sequence(F.lit(0), F.size("words") - shingle),
                        lambda i: F.array_join(F.slice("words", i + 1, shingle), " "))
    base = base.withColumn("shingles", F.array_distinct(F.concat("words", grams))) \
        .withColumn("window", F.floor(F.datediff("start_date", F.lit("1970-01-01")) / days).cast("long")) \
        .localCheckpoint()
    keyed = base.select("study_id", "window", F.posexplode(_band_keys(F.col("shingles"), bands, rows))
                        .alias("band", "bucket")) \
        .select("study_id", "band", "bucket", F.explode(F.array("window", F.col("window") + 1)).alias("win"))
    bucket = Window.partitionBy("band", "bucket", "win")
    keyed = keyed.withColumn("_n", F.count("*").over(bucket)).localCheckpoint()
    if stats is not None:
        stats["near_duplicate_buckets_skipped"] = keyed.where(F.col("_n") > cap) \
            .select("band", "bucket", "win").distinct().count()
    keyed = keyed.where((F.col("_n") > 1) & (F.col("_n") <= cap)).drop("_n")
    cand = keyed.alias("x").join(keyed.alias("y"), ["band", "bucket", "win"]) \
        .where(F.col("x.study_id") < F.col("y.study_id")) \
        .select(F.col("x.study_id").alias("id_a"), F.col("y.study_id").alias("id_b")).distinct()
    side = base.select("study_id", "study_source", "start_date", "size", "component", "shingles", "sponsor_tokens")
    a = side.select([F.col(c).alias(f"a_{c}") for c in side.columns])
    b = side.select([F.col(c).alias(f"b_{c}") for c in side.columns])
    pairs = cand.join(a, F.col("id_a") == F.col("a_study_id")).join(b, F.col("id_b") == F.col("b_study_id")) \
        .where(F.col("a_component") != F.col("b_component"))
    jaccard = lambda x, y: F.size(F.array_intersect(x, y)) / F.size(F.array_union(x, y))  # noqa: E731
    title_sim = jaccard(F.col("a_shingles"), F.col("b_shingles"))
    pairs = pairs.withColumn("title_similarity", title_sim) \
        .where(F.col("title_similarity") >= 1 - float(cfg.get("max_jaccard_distance", 0.5)))
    size_ratio = F.abs(F.col("a_size") - F.col("b_size")) / F.greatest("a_size", "b_size")
    return pairs.select(
        F.col("a_study_id").alias("study_id_a"), F.col("b_study_id").alias("study_id_b"),
        F.col("a_study_source").alias("source_a"), F.col("b_study_source").alias("source_b"),
        "title_similarity", jaccard(F.col("a_sponsor_tokens"), F.col("b_sponsor_tokens")).alias("sponsor_similarity"),
        F.abs(F.datediff("a_start_date", "b_start_date")).alias("start_diff_days"),
        F.when(F.greatest("a_size", "b_size") > 0, size_ratio).otherwise(F.lit(0.0)).alias("size_ratio"),
    )


def decide_near_duplicates(pairs: DataFrame, cfg: dict[str, Any]) -> DataFrame:
    """Mark pairs merged (all gates pass, cross-registry, similar enough) or proposed (gates pass)."""
    gates = (
        (F.col("sponsor_similarity") >= float(cfg["sponsor_min_similarity"]))
        & (F.col("start_diff_days") <= int(cfg["start_within_days"]))
        & (F.col("size_ratio") <= float(cfg["size_within_ratio"]))
    )
    cross = F.col("source_a") != F.col("source_b")
    strong = F.col("title_similarity") >= float(cfg["merge_min_title_similarity"])
    decision = F.when(F.coalesce(gates, F.lit(False)) & cross & strong, "merged") \
        .when(F.coalesce(gates, F.lit(False)), "proposed")
    evidence = F.format_string(
        "title %.2f, sponsor %.2f, start diff %s d, size ratio %.2f, %s vs %s",
        F.col("title_similarity"), F.coalesce(F.col("sponsor_similarity"), F.lit(-1.0)),
        F.coalesce(F.col("start_diff_days").cast("string"), F.lit("?")),
        F.coalesce(F.col("size_ratio"), F.lit(-1.0)), F.col("source_a"), F.col("source_b"))
    return pairs.withColumn("decision", decision).where(F.col("decision").isNotNull()) \
        .withColumn("kind", F.lit("near_duplicate")).withColumn("evidence", evidence)


# -------------------------------------------------------------------------------------- unify
@dataclass
class UnifyResult:
    trials: DataFrame
    members: DataFrame
    id_map: DataFrame
    proposals: DataFrame
    stats: dict[str, int]


def unify(spark: SparkSession, studies: DataFrame, study_ids: DataFrame, cfg: dict[str, Any]) -> UnifyResult:
    patterns: dict[str, str] = cfg["id_patterns"]
    non_identity = [t.upper() for t in cfg.get("non_identity_id_types", [])]
    max_per_registry = int(cfg.get("max_studies_per_registry_per_id", 1))

    st = studies.select(
        "study_id", "study_source", "title", "sponsor", "start_date", "phase", "recruitment_status",
        "study_type", "enrollment", "last_update_date",
        F.coalesce("enrollment", "target_accrual").alias("size"),
        F.coalesce(registry_node(F.col("study_id"), patterns), F.concat(F.lit("SELF:"), "study_id")).alias("node"),
    ).localCheckpoint()

    ids = study_ids.where(~F.upper(F.coalesce("id_type", F.lit(""))).isin(non_identity)).select(
        "study_id", "id_source", "id_value", registry_node(F.col("id_value"), patterns).alias("id_node"))
    ids = ids.where(F.col("id_node").isNotNull()).join(st.select("study_id", "node", "study_source"), "study_id") \
        .where(F.col("id_node") != F.col("node"))
    # Aliases are identity by definition; other ids are checked for ambiguity within each registry.
    per_registry = Window.partitionBy("id_node", "study_source")
    ids = ids.withColumn("n_same_registry", F.size(F.collect_set("study_id").over(per_registry)))
    ambiguous = ids.where((F.col("id_source") != "nct_alias") & (F.col("n_same_registry") > max_per_registry))
    links = ids.where((F.col("id_source") == "nct_alias") | (F.col("n_same_registry") <= max_per_registry))
    id_edges = links.select(F.col("node").alias("src"), F.col("id_node").alias("dst"))
    vertices = st.select("node").unionByName(links.select(F.col("id_node").alias("node"))).distinct()

    labels, rounds_ids = connected_components(id_edges, vertices)
    st_comp = st.join(labels.withColumnRenamed("node", "n"), F.col("node") == F.col("n")).drop("n") \
        .withColumnRenamed("label", "component")

    nd_cfg = cfg.get("near_duplicates", {})
    lsh_stats: dict[str, int] = {}
    empty_pairs = "study_id_a STRING, study_id_b STRING, source_a STRING, source_b STRING, title_similarity DOUBLE, " \
                  "sponsor_similarity DOUBLE, start_diff_days INT, size_ratio DOUBLE, decision STRING, kind STRING, " \
                  "evidence STRING"
    if nd_cfg.get("enabled", True):
        decided = decide_near_duplicates(near_duplicate_pairs(spark, st_comp, nd_cfg, lsh_stats), nd_cfg) \
            .localCheckpoint()
    else:
        decided = spark.createDataFrame([], empty_pairs)
    merged = decided.where("decision = 'merged'")
    fuzzy_edges = merged.join(st.select(F.col("study_id").alias("study_id_a"), F.col("node").alias("src")), "study_id_a") \
        .join(st.select(F.col("study_id").alias("study_id_b"), F.col("node").alias("dst")), "study_id_b") \
        .select("src", "dst")
    n_merged_pairs = merged.count()
    rounds_all = 0
    if n_merged_pairs:
        labels, rounds_all = connected_components(id_edges.unionByName(fuzzy_edges), vertices)

    uid = F.concat(F.lit("TP-"), F.substring(F.sha2(F.col("label"), 256), 1, 16))
    node_uid = labels.select("node", uid.alias("trial_uid")).localCheckpoint()
    st_uid = st.join(node_uid, "node")

    prio = cfg.get("source_priority", {})
    rank = F.lit(int(prio.get("default", 9)))
    for source, r in prio.items():
        if source != "default":
            rank = F.when(F.col("study_source") == source, F.lit(int(r))).otherwise(rank)
    w = Window.partitionBy("trial_uid").orderBy(rank, F.col("last_update_date").desc_nulls_last(), "study_id")
    ranked = st_uid.withColumn("_rank", F.row_number().over(w))

    # Evidence of each member: the ids it lists that link, the records that list it, near-duplicate partners.
    listed = links.select("study_id", F.concat(F.lit("lists "), F.col("id_node")).alias("ev"))
    listed_by = links.join(st.select(F.col("study_id").alias("other"), F.col("node").alias("id_node")), "id_node") \
        .select(F.col("other").alias("study_id"), F.concat(F.lit("listed by "), F.col("study_id")).alias("ev"))
    fuzzy_ev = merged.select(F.col("study_id_a").alias("study_id"),
                             F.concat(F.lit("near duplicate of "), F.col("study_id_b"), F.lit(": "), F.col("evidence")).alias("ev")) \
        .unionByName(merged.select(F.col("study_id_b").alias("study_id"),
                                   F.concat(F.lit("near duplicate of "), F.col("study_id_a"), F.lit(": "), F.col("evidence")).alias("ev")))
    evidence = listed.unionByName(listed_by).unionByName(fuzzy_ev).groupBy("study_id") \
        .agg(F.array_sort(F.collect_set("ev")).alias("evidence"))
    sizes = st_uid.groupBy("trial_uid").agg(F.count("*").alias("n_members"))
    members = ranked.join(evidence, "study_id", "left").join(sizes, "trial_uid").select(
        "study_id", "trial_uid", "study_source", (F.col("_rank") == 1).alias("is_canonical"),
        F.when(F.col("n_members") == 1, "self")
        .when(F.exists(F.coalesce("evidence", F.array()), lambda e: e.startswith("l")), "id")
        .otherwise("near_duplicate").alias("link_type"),
        F.coalesce("evidence", F.array().cast("array<string>")).alias("evidence"),
    )

    id_map = node_uid.where(~F.col("node").startswith("SELF:")).select(
        F.col("node").alias("registry_id"), F.split("node", ":").getItem(0).alias("registry"), "trial_uid")
    reg_ids = id_map.groupBy("trial_uid").agg(F.array_sort(F.collect_set("registry_id")).alias("registry_ids"))
    agg = st_uid.groupBy("trial_uid").agg(
        F.array_sort(F.collect_set("study_id")).alias("member_study_ids"),
        F.array_sort(F.collect_set("study_source")).alias("member_sources"))
    trials = ranked.where("_rank = 1").join(sizes, "trial_uid").join(agg, "trial_uid").join(reg_ids, "trial_uid", "left") \
        .select("trial_uid", F.col("study_id").alias("canonical_study_id"), "study_source", "title", "phase",
                "recruitment_status", "study_type", "start_date", "enrollment", "sponsor", "n_members",
                "member_study_ids", "member_sources",
                F.coalesce("registry_ids", F.array().cast("array<string>")).alias("registry_ids"))

    amb_rows = ambiguous.select(
        "study_id", F.col("id_node").alias("study_id_b"), F.lit("ambiguous_id").alias("kind"),
        F.format_string("%s is listed by %d %s records: not used as a link", F.col("id_node"),
                        F.col("n_same_registry"), F.col("study_source")).alias("evidence"),
    ).withColumnRenamed("study_id", "study_id_a")
    proposals = decided.select("study_id_a", "study_id_b", "kind", "title_similarity", "sponsor_similarity",
                               "start_diff_days", "size_ratio", "decision", "evidence") \
        .unionByName(amb_rows, allowMissingColumns=True)

    stats = {
        "studies": st.count(), "id_links": links.count(), "ambiguous_id_links": ambiguous.count(),
        "cc_rounds": max(rounds_ids, rounds_all), "near_duplicate_pairs": decided.count(),
        "near_duplicate_merges": n_merged_pairs, **lsh_stats,
    }
    progress(f"unify: {stats['studies']} studies, {stats['id_links']} id links, "
             f"{stats['near_duplicate_merges']} near-duplicate merges")
    return UnifyResult(trials, members, id_map, proposals, stats)


def run(spark: SparkSession, lake_root: str, cfg: dict[str, Any], report=None, record_input=None) -> dict[str, int]:
    """Read silver at its current versions, unify, and sync the gold tables (commit-free when unchanged)."""
    from trialpanorama import lake

    frames = {}
    for name in ("studies", "study_ids"):
        uri = lake.table_uri(lake_root, name)
        version = lake.table_version(spark, uri)
        if version is None:
            raise FileNotFoundError(f"silver table {name} is missing under {lake_root}: run an ingest job first")
        frames[name] = lake.read_table(spark, uri, version)
        if record_input:
            record_input(name, version)
    result = unify(spark, frames["studies"], frames["study_ids"], cfg)
    report = report or (lambda r: None)
    for table, df in (("trials", result.trials), ("trial_members", result.members),
                      ("trial_id_map", result.id_map), ("merge_proposals", result.proposals)):
        written = lake.sync_snapshot(spark, lake_root, table, df)
        if written is not None:
            report(written)
    trials = lake.read_named(spark, lake_root, "trials")
    stats = dict(result.stats)
    stats["trials"] = trials.count()
    stats["multi_registry_trials"] = trials.where("n_members > 1").count()
    return stats


def pair_precision_recall(assignment: dict[str, str], labelled: list[tuple[str, str, bool]]) -> dict[str, float]:
    """Precision and recall of merges on labelled pairs (a, b, same_trial), given study_id -> trial_uid.

    A pair counts as predicted-same when both ids got the same trial_uid; pairs naming an id that was not
    unified count as predicted-different (a missed merge, or a correct non-merge).
    """
    tp = fp = fn = tn = 0
    for a, b, same in labelled:
        predicted = a in assignment and assignment.get(a) == assignment.get(b)
        if predicted and same:
            tp += 1
        elif predicted:
            fp += 1
        elif same:
            fn += 1
        else:
            tn += 1
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "true_merges": tp, "false_merges": fp, "missed_merges": fn, "true_separations": tn,
    }
