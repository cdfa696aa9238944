"""Accuracy of the linker against NLM's own mapping of ClinicalTrials.gov records.

ClinicalTrials.gov records carry NLM's MeSH mapping of their conditions and interventions (``derivedSection``,
silver rows with ``origin = 'ctgov_derived'``). For every study that has such a mapping, the registry's own
names (``origin = 'registry'``) are linked as if the mapping were absent: the vocabulary is rebuilt from
``vocab_mesh_sources`` without the sources listed in ``evaluation.exclude_sources`` (by default the UIs and
names harvested from those same derived meshes), so the linker never sees the answer it is scored against.

A prediction is a (study, descriptor) pair; it is correct when the study's reference holds the same descriptor
(same UI, or the same name when the predicted descriptor has no known UI). Precision = correct / predicted;
recall = reference pairs found / reference pairs. Figures are given per vocabulary (conditions, drugs), by
method, and cumulatively: exact, exact_or_synonym, non_fuzzy (+ normalized) and all (+ fuzzy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from trialpanorama.linking import apply, match
from trialpanorama.sources import mesh as mesh_src

METHODS = ("exact", "synonym", "normalized", "fuzzy")
LEVELS = {"exact": ("exact",), "exact_or_synonym": ("exact", "synonym"),
          "non_fuzzy": ("exact", "synonym", "normalized"), "all": METHODS}
_RANK = {m: i for i, m in enumerate(METHODS)}


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _method_rank():
    out = F.lit(9)
    for m, r in _RANK.items():
        out = F.when(F.col("method") == m, F.lit(r)).otherwise(out)
    return out


def _groups_col(groups: dict[str, str]):
    """Array of the group names a study belongs to: always ``all``, plus every group whose regex matches."""
    parts = [F.lit("all")] + [F.when(F.col("study_id").rlike(p), F.lit(g)) for g, p in groups.items()]
    return F.filter(F.array(*parts), lambda x: x.isNotNull())


def score(preds: DataFrame, refs: DataFrame, groups: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """preds: study_id, mesh_ui, mesh_name, method; refs: study_id, ref_ui, ref_name -> figures per group
    (``all`` plus each named group), from one aggregation."""
    groups = groups or {}
    preds = preds.where(F.col("method").isin(*METHODS) & F.col("mesh_name").isNotNull()) \
        .withColumn("_k", F.coalesce(F.col("mesh_ui"), F.concat(F.lit("N:"), F.lower("mesh_name")))) \
        .withColumn("_r", _method_rank())
    w = Window.partitionBy("study_id", "_k").orderBy("_r")
    preds = preds.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")
    refs = refs.where(F.col("ref_name").isNotNull() | F.col("ref_ui").isNotNull()) \
        .dropDuplicates(["study_id", "ref_ui", "ref_name"])
    same = ((F.col("p.mesh_ui").isNotNull() & (F.col("p.mesh_ui") == F.col("r.ref_ui")))
            | (F.lower(F.col("p.mesh_name")) == F.lower(F.col("r.ref_name"))))
    pairs = preds.alias("p").join(refs.alias("r"), F.col("p.study_id") == F.col("r.study_id")).where(same) \
        .select(F.col("p.study_id").alias("study_id"), F.col("p._k").alias("_k"), F.col("p._r").alias("_r"),
                F.col("r.ref_ui").alias("ref_ui"), F.col("r.ref_name").alias("ref_name"))
    correct = pairs.select("study_id", "_k").distinct().withColumn("correct", F.lit(True))
    p = preds.join(correct, ["study_id", "_k"], "left").select(
        "study_id", F.lit("pred").alias("what"), F.col("_r").alias("r"),
        F.coalesce("correct", F.lit(False)).alias("correct"))
    found = pairs.groupBy("study_id", "ref_ui", "ref_name").agg(F.min("_r").alias("r")).select(
        "study_id", F.lit("found").alias("what"), "r", F.lit(True).alias("correct"))
    ref_rows = refs.select("study_id", F.lit("ref").alias("what"), F.lit(-1).alias("r"),
                           F.lit(True).alias("correct"))
    rows = p.unionByName(found).unionByName(ref_rows).withColumn("g", F.explode(_groups_col(groups))) \
        .groupBy("g", "what", "r", "correct").agg(F.count("*").alias("n"),
                                                  F.count_distinct("study_id").alias("studies")).collect()
    out: dict[str, dict[str, Any]] = {}
    for g in ["all", *groups]:
        mine = [r for r in rows if r["g"] == g]
        by_pred = {(METHODS[r["r"]], r["correct"]): r["n"] for r in mine if r["what"] == "pred"}
        by_found = {r["r"]: r["n"] for r in mine if r["what"] == "found"}
        n_refs = sum(r["n"] for r in mine if r["what"] == "ref")
        n_studies = sum(r["studies"] for r in mine if r["what"] == "ref")

        def level(methods: tuple[str, ...], by_pred=by_pred, by_found=by_found, n_refs=n_refs) -> dict[str, Any]:
            predicted = sum(by_pred.get((m, c), 0) for m in methods for c in (True, False))
            tp = sum(by_pred.get((m, True), 0) for m in methods)
            hit = sum(by_found.get(_RANK[m], 0) for m in methods)
            return {"predicted": predicted, "correct": tp, "found": hit, "precision": _ratio(tp, predicted),
                    "recall": _ratio(hit, n_refs)}

        out[g] = {"references": n_refs, "studies": n_studies,
                  "by_method": {m: level((m,)) for m in METHODS},
                  "levels": {name: level(ms) for name, ms in LEVELS.items()}}
    return out


def outcomes(preds: DataFrame, refs: DataFrame, limit: int = 2000) -> list[dict[str, Any]]:
    """Item-level outcomes for inspection (logged as an MLflow artifact)."""
    p = preds.select("study_id", "name", "mesh_ui", "mesh_name", "method", "score")
    r = refs.groupBy("study_id").agg(F.array_sort(F.collect_set("ref_name")).alias("reference"))
    rows = p.join(r, "study_id", "left").orderBy("study_id", "name").limit(limit).collect()
    out = []
    for row in rows:
        d = row.asDict()
        ref = [x.lower() for x in d.get("reference") or []]
        d["correct"] = bool(d["mesh_name"] and d["mesh_name"].lower() in ref) if d["method"] in METHODS else None
        out.append(d)
    return out


def evaluate(spark: SparkSession, root: str, lcfg: dict[str, Any],
             mesh_sources: DataFrame | None = None, exclude_sources: list[str] | None = None,
             groups: dict[str, str] | None = None,
             record_input: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Figures for conditions and drugs (overall, and per group of studies: name -> study_id regex), plus item
    outcomes under the key ``outcomes``."""
    ecfg = lcfg.get("evaluation") or {}
    exclude = list(ecfg.get("exclude_sources") or []) if exclude_sources is None else list(exclude_sources)
    if mesh_sources is None:
        mesh_sources = apply._read(spark, root, "vocab_mesh_sources", record_input, required=True)
    mesh = mesh_src.merge_concepts(mesh_sources.where(~F.col("source").isin(exclude) if exclude else F.lit(True)))
    vocabs, _ = apply.load_vocabularies(spark, root, lcfg, record_input, mesh=mesh)
    conditions = apply._read(spark, root, "conditions", record_input)
    drugs = apply._read(spark, root, "drugs", record_input)

    c_ref = conditions.where("origin = 'ctgov_derived'").select(
        "study_id", F.col("condition_mesh_id").alias("ref_ui"), F.col("condition_mesh_term").alias("ref_name"))
    d_ref = drugs.where("origin = 'ctgov_derived'").select(
        "study_id", F.col("drug_mesh_id").alias("ref_ui"), F.col("drug_name").alias("ref_name"))
    c_rows = conditions.where("origin = 'registry'").join(c_ref.select("study_id").distinct(), "study_id")
    d_rows = drugs.where("origin = 'registry'").join(d_ref.select("study_id").distinct(), "study_id")

    cands, _ = apply.link_all(spark, vocabs, c_rows, d_rows, lcfg)
    cands = cands.localCheckpoint()
    links = match.links_from_candidates(cands).localCheckpoint()
    c_pred = apply.condition_row_links(c_rows, links, lcfg).select(
        "study_id", F.col("condition_name").alias("name"), "mesh_ui", "mesh_name", F.col("link_method").alias("method"),
        F.col("link_score").alias("score")).localCheckpoint()
    d_pred = apply.drug_row_links(d_rows, links, lcfg).select(
        "study_id", F.col("drug_name").alias("name"), "mesh_ui", "mesh_name", F.col("link_method").alias("method"),
        F.col("link_score").alias("score")).localCheckpoint()
    c_ref, d_ref = c_ref.localCheckpoint(), d_ref.localCheckpoint()

    result: dict[str, Any] = {"excluded_sources": exclude, "outcomes": {}}
    decisions = cands.groupBy("entity", "name").agg(F.min(
        F.when(F.col("decision") == "chosen", 0).when(F.col("decision") == "ambiguous", 1)
        .when(F.col("decision") == "excluded", 2).otherwise(3)).alias("d"))
    counts = {(r["entity"], r["d"]): r["n"] for r in decisions.groupBy("entity", "d").agg(F.count("*").alias("n"))
              .collect()}
    for entity, kind, preds, refs in (("conditions", "condition", c_pred, c_ref), ("drugs", "drug", d_pred, d_ref)):
        by_group = score(preds, refs, groups)
        figures = by_group.pop("all")
        figures["names"] = {label: counts.get((kind, d), 0)
                            for d, label in enumerate(("linked", "ambiguous", "excluded", "unlinked"))}
        if by_group:
            figures["groups"] = by_group
        result[entity] = figures
        result["outcomes"][entity] = outcomes(preds, refs)
    c = result["conditions"]["levels"]
    targets = (float(ecfg.get("min_precision", 0.95)), float(ecfg.get("min_recall", 0.85)))
    for level in ("exact_or_synonym", "non_fuzzy"):
        p, r = c[level]["precision"], c[level]["recall"]
        result.setdefault("conditions_target_met", {})[level] = bool(
            p is not None and r is not None and p >= targets[0] and r >= targets[1])
    return result


def _flat(fig: dict[str, Any], prefix: str, out: dict[str, float]) -> None:
    out[f"{prefix}.references"] = float(fig["references"])
    for group in ("levels", "by_method"):
        for name, vals in fig[group].items():
            p = f"{prefix}.{name}" if group == "levels" else f"{prefix}.method.{name}"
            for k in ("precision", "recall", "predicted", "correct"):
                if vals[k] is not None:
                    out[f"{p}.{k}"] = float(vals[k])


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """``conditions.exact_or_synonym.precision``-style metrics for MLflow (undefined ratios left out); groups as
    ``<group>.conditions...``."""
    out: dict[str, float] = {}
    for entity in ("conditions", "drugs"):
        fig = result[entity]
        _flat(fig, entity, out)
        for k, v in fig["names"].items():
            out[f"{entity}.names.{k}"] = float(v)
        for gname, gfig in (fig.get("groups") or {}).items():
            _flat(gfig, f"{gname}.{entity}", out)
    return out


def table(result: dict[str, Any]) -> str:
    """The precision/recall table as Markdown (overall, then each group)."""
    lines = ["| studies | vocabulary | level / method | predicted | correct | precision | refs found | recall |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for entity in ("conditions", "drugs"):
        figs = [("all", result[entity])] + list((result[entity].get("groups") or {}).items())
        for gname, fig in figs:
            for group, label in (("levels", ""), ("by_method", "method ")):
                for name, v in fig[group].items():
                    p = "-" if v["precision"] is None else f"{v['precision']:.3f}"
                    r = "-" if v["recall"] is None else f"{v['recall']:.3f}"
                    lines.append(f"| {gname} | {entity} ({fig['references']} refs) | {label}{name} | "
                                 f"{v['predicted']} | {v['correct']} | {p} | {v['found']} | {r} |")
    return "\n".join(lines)


def run(spark: SparkSession, root: str, lcfg: dict[str, Any], log_run: Any | None = None,
        record_input: Callable[[str, int], None] | None = None, groups: dict[str, str] | None = None
        ) -> dict[str, Any]:
    result = evaluate(spark, root, lcfg, groups=groups, record_input=record_input)
    if log_run is not None:
        import mlflow

        log_run.metrics(flat_metrics(result))
        mlflow.log_dict(result["outcomes"], "linking_outcomes.json")
        mlflow.log_text(table(result), "linking_precision_recall.md")
    del result["outcomes"]
    return result

