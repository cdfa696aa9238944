"""The linker: distinct registry names -> candidate concepts -> one decision per name and vocabulary.

Order of evidence, strongest first, each step only for names the previous ones left without a candidate:

1. ``exact``: the name's exact key equals a concept's preferred name; ``synonym``: an entry term, synonym or
   brand name (Spark equi-joins on the keys of ``text``);
2. ``normalized``: the word-sorted normalized keys are equal (case, order, punctuation, plural, dose and route
   words, abbreviations, registry phrasing); then the relaxed key (stage/severity or salt words dropped);
3. ``fuzzy``: rapidfuzz similarity of normalized keys in ``mapInPandas``, above a threshold from
   ``conf/linking.yaml``, with guards (same numbers, same contrastive prefixes such as hyper/hypo, every
   differing word a near-spelling of its counterpart).

Several candidates at the best step are resolved by specificity: a candidate that is a MeSH ancestor of another
(tree-number prefix) gives way to the more specific one. If several still remain, the name is ``ambiguous``:
nothing is chosen and every candidate stays visible in ``link_candidates``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from trialpanorama.linking.text import entity_keys_udf
from trialpanorama.sources import drugs as drug_src

TIER = {"exact": 1, "synonym": 2, "normalized": 3, "relaxed": 4, "fuzzy": 5}

# A registry condition that starts with (or is) an ICD-10 code: "E11.9", "C50 - Breast cancer", "I10: ...".
LEADING_CODE = r"^\s*(?:[A-Za-z ]{0,30}\d{0,2}\s*:\s*)?([A-TV-Z][0-9][0-9AB](?:\.?[0-9A-Z]{1,4})?)\s*(?:[-–:;,)]+\s*|$)"


# --------------------------------------------------------------------------------------- vocabularies
def _starts_with_any(col: Column, prefixes: list[str]) -> Column:
    out = F.lit(False)
    for p in prefixes:
        out = out | col.startswith(p)
    return out


def mesh_concepts(mesh: DataFrame, lcfg: dict[str, Any], kind: str) -> DataFrame:
    """MeSH concepts a name of this kind may link to (tree scope, or the role the lake saw them in)."""
    scope = lcfg.get("mesh_scope") or {}
    if kind == "condition":
        prefixes = [str(p) for p in scope.get("condition_tree_prefixes") or ["C", "F03"]]
        role_ok = F.exists("roles", lambda r: r.startswith("condition"))
        supp_ok = F.lit(False)
    else:
        prefixes = [str(p) for p in scope.get("drug_tree_prefixes") or ["D"]]
        role_ok = F.exists("roles", lambda r: r.startswith("intervention"))
        supp_ok = F.lit(bool(scope.get("drug_supplementary", True))) & (F.col("record_type") == "supplementary")
    in_tree = F.exists("tree_numbers", lambda t: _starts_with_any(t, prefixes))
    eligible = in_tree | ((F.size("tree_numbers") == 0) & (role_ok | supp_ok))
    return mesh.where(eligible).select(
        F.col("mesh_key").alias("concept_key"), F.col("mesh_ui").alias("concept_id"),
        F.col("mesh_name").alias("concept_name"), "mesh_ui", "mesh_name", F.col("tree_numbers").alias("trees"),
        F.concat(F.array(F.struct(F.col("mesh_name").alias("term"), F.lit("preferred").alias("term_type"))),
                 F.transform("entry_terms", lambda t: F.struct(t.alias("term"), F.lit("entry").alias("term_type"))))
        .alias("_terms"))


def drug_concepts(drugs: DataFrame, mesh: DataFrame) -> DataFrame:
    """One concept per drug (DrugBank id, else name) over all drug sources, with the MeSH descriptor its tree
    positions name (UI when the MeSH vocabulary knows it)."""
    prio = F.when(F.col("source") == drug_src.SOURCE_DRUGBANK, 0).otherwise(1)
    key = F.coalesce(F.col("drugbank_id"), F.concat(F.lit("N:"), F.lower(F.trim("name"))))
    grouped = drugs.withColumn("_prio", prio).withColumn("concept_key", key).groupBy("concept_key").agg(
        F.min(F.struct("_prio", F.col("name").alias("n"))).getField("n").alias("concept_name"),
        F.max("drugbank_id").alias("concept_id"),
        F.array_distinct(F.flatten(F.collect_list(F.concat("synonyms", "brand_names", F.array("name")))))
        .alias("_names"),
        F.array_distinct(F.flatten(F.collect_list("mesh_tree"))).alias("_trees"))
    tree_concepts = mesh.select(F.explode("tree_numbers").alias("tree"), "mesh_ui", "mesh_name")
    drug_mesh = grouped.select("concept_key", "concept_name", F.explode("_trees").alias("tree")) \
        .join(tree_concepts, "tree") \
        .withColumn("_same", (F.lower("mesh_name") == F.lower("concept_name")).cast("int")) \
        .groupBy("concept_key").agg(
            F.max(F.struct("_same", F.col("mesh_ui").isNotNull().cast("int").alias("_has"), "mesh_ui", "mesh_name"))
            .alias("m"),
            F.array_sort(F.collect_set("tree")).alias("trees"))
    return grouped.join(drug_mesh, "concept_key", "left").select(
        "concept_key", "concept_id", "concept_name", F.col("m.mesh_ui").alias("mesh_ui"),
        F.col("m.mesh_name").alias("mesh_name"), F.coalesce("trees", F.array().cast("array<string>")).alias("trees"),
        F.concat(F.array(F.struct(F.col("concept_name").alias("term"), F.lit("preferred").alias("term_type"))),
                 F.transform(F.filter("_names", lambda n: F.lower(n) != F.lower(F.col("concept_name"))),
                             lambda t: F.struct(t.alias("term"), F.lit("entry").alias("term_type"))))
        .alias("_terms"))


def keys_version(lcfg: dict[str, Any]) -> str:
    """Hash of everything that shapes a term's keys or scope: stored with ``vocab_terms`` to detect staleness."""
    import hashlib
    import json

    relevant = {k: lcfg.get(k) for k in ("normalize", "never_link", "never_link_patterns", "mesh_scope")}
    relevant["code"] = TERMS_CODE_VERSION
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


TERMS_CODE_VERSION = "1"


def _with_keys(df: DataFrame, text_col: str, lcfg: dict[str, Any], vocabulary_terms: bool) -> DataFrame:
    """Adds struct ``k`` (exact, norm, relaxed, excluded) for ``text_col``, normalized per ``entity``."""
    return df.withColumn("k", entity_keys_udf(lcfg, vocabulary_terms)(F.col("entity"), F.col(text_col)))


def concept_terms(concepts: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    """One row per (entity, vocabulary, concept, term) with the term's exact and normalized keys
    (``vocab_terms`` shape); ``concepts`` carries ``entity`` and ``vocabulary`` columns."""
    terms = concepts.select("*", F.explode("_terms").alias("t")).drop("_terms") \
        .select("*", F.col("t.term").alias("term"), F.col("t.term_type").alias("term_type")).drop("t") \
        .where(F.col("term").isNotNull() & (F.trim("term") != ""))
    # A term listed twice for one concept (preferred and entry) keeps its preferred row.
    w = Window.partitionBy("entity", "vocabulary", "concept_key", "term") \
        .orderBy(F.when(F.col("term_type") == "preferred", 0).otherwise(1))
    terms = terms.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")
    keyed = _with_keys(terms.select("entity", "term").distinct(), "term", lcfg, vocabulary_terms=True)
    return terms.join(keyed, ["entity", "term"]).select(
        "entity", "vocabulary", "concept_key", "term", "term_type", "concept_id", "concept_name", "mesh_ui",
        "mesh_name", "trees", F.col("k.exact").alias("t_exact"), F.col("k.norm").alias("t_norm"),
        F.lit(keys_version(lcfg)).alias("keys_version"))


def build_terms(mesh: DataFrame, drugs: DataFrame, lcfg: dict[str, Any]) -> DataFrame:
    """Every term of every vocabulary, for conditions (MeSH) and drugs (drug vocabularies, MeSH), in one pass."""
    def tag(df: DataFrame, entity: str, vocabulary: str) -> DataFrame:
        return df.withColumn("entity", F.lit(entity)).withColumn("vocabulary", F.lit(vocabulary))

    concepts = tag(mesh_concepts(mesh, lcfg, "condition"), "condition", "mesh") \
        .unionByName(tag(drug_concepts(drugs, mesh), "drug", "drugs")) \
        .unionByName(tag(mesh_concepts(mesh, lcfg, "drug"), "drug", "mesh"))
    return concept_terms(concepts, lcfg)


@dataclass
class Vocabularies:
    """The terms the linker joins names against (``vocab_terms`` shape), and the ICD-10 codes."""

    terms: DataFrame
    icd10: DataFrame | None = None


# --------------------------------------------------------------------------------------------- names
def name_keys(names: DataFrame, lcfg: dict[str, Any], icd10: DataFrame | None) -> DataFrame:
    """Distinct (entity, name) -> entity, name, icd_code, text (what is linked), exact, norm, relaxed, excluded.

    A condition that starts with an ICD-10 code is linked by the text after the code, or by the code's
    description when the name is only a code.
    """
    names = names.select("entity", "name").where(F.col("name").isNotNull() & (F.trim("name") != "")).distinct()
    is_cond = F.col("entity") == "condition"
    code = F.upper(F.regexp_replace(F.regexp_extract("name", LEADING_CODE, 1), r"\.", ""))
    rest = F.trim(F.regexp_replace("name", LEADING_CODE, ""))
    names = names.withColumn("icd_code", F.when(is_cond & (code != ""), code)).withColumn("_rest", rest)
    if icd10 is not None:
        # Only the (few) bare codes are looked up: the small side is broadcast, the code list is not shuffled.
        bare = names.where(F.col("icd_code").isNotNull() & (F.col("_rest") == "")).select("icd_code").distinct()
        desc = icd10.where(F.col("level").isin("category", "subcategory", "extended_subcategory")) \
            .join(F.broadcast(bare), F.col("code_compact") == F.col("icd_code")) \
            .withColumn("_rank", F.when(F.col("system") == "ICD-10-CM", 0).otherwise(1)) \
            .groupBy("icd_code").agg(F.min(F.struct("_rank", "description")).getField("description").alias("_desc"))
        names = names.join(desc, "icd_code", "left")
    else:
        names = names.withColumn("_desc", F.lit(None).cast("string"))
    text = F.when(F.col("icd_code").isNull(), F.col("name")) \
        .when(F.col("_rest") != "", F.col("_rest")).otherwise(F.col("_desc"))
    names = _with_keys(names.withColumn("text", text), "text", lcfg, vocabulary_terms=False)
    return names.select(
        "entity", "name", "icd_code", "text", F.col("k.exact").alias("exact"), F.col("k.norm").alias("norm"),
        F.col("k.relaxed").alias("relaxed"), F.col("k.excluded").alias("excluded"))


# ------------------------------------------------------------------------------------------ matching
_TERM_COLS = ["vocabulary", "concept_key", "concept_id", "concept_name", "mesh_ui", "mesh_name", "trees"]


def _joined(names: DataFrame, terms: DataFrame, name_key: str, term_key: str, method: Column, tier: Column,
            score: Column, reason: Column) -> DataFrame:
    t, n = terms.alias("t"), names.alias("n")
    on = (F.col(f"t.{term_key}") == F.col(f"n.{name_key}")) & (F.col("t.entity") == F.col("n.entity"))
    return t.join(n, on).select(
        F.col("n.entity").alias("entity"), F.col("n.name").alias("name"), *[F.col(f"t.{c}").alias(c) for c in _TERM_COLS],
        method.alias("method"), tier.alias("tier"), score.alias("score"), reason.alias("reason"))


def key_matches(names: DataFrame, terms: DataFrame, scores: dict[str, float]) -> DataFrame:
    """Exact, synonym, normalized and relaxed candidates of every name, as equi-joins (``names`` may be a
    broadcast frame)."""
    preferred = F.col("t.term_type") == "preferred"
    term = F.col("t.term")
    exact = _joined(names.where("exact IS NOT NULL"), terms.where("t_exact IS NOT NULL"), "exact", "t_exact",
                    F.when(preferred, "exact").otherwise("synonym"),
                    F.when(preferred, TIER["exact"]).otherwise(TIER["synonym"]),
                    F.when(preferred, scores["exact"]).otherwise(scores["synonym"]),
                    F.concat(F.lit("exact key of "), F.col("t.term_type"), F.lit(" term '"), term, F.lit("'")))
    norm = _joined(names.where("norm IS NOT NULL"), terms.where("t_norm IS NOT NULL"), "norm", "t_norm",
                   F.lit("normalized"), F.lit(TIER["normalized"]), F.lit(scores["normalized"]),
                   F.concat(F.lit("normalized key '"), F.col("t.t_norm"), F.lit("' of '"), term, F.lit("'")))
    relaxed = _joined(names.where("relaxed IS NOT NULL"), terms.where("t_norm IS NOT NULL"), "relaxed", "t_norm",
                      F.lit("normalized"), F.lit(TIER["relaxed"]), F.lit(scores["normalized_relaxed"]),
                      F.concat(F.lit("relaxed key '"), F.col("t.t_norm"), F.lit("' of '"), term, F.lit("'")))
    return exact.unionByName(norm).unionByName(relaxed)


# ------------------------------------------------------------------------------------------- fuzzy
_NUM = re.compile(r"\d+")


def _prefix(token: str, prefixes: list[str]) -> str:
    for p in prefixes:
        if token.startswith(p) and len(token) > len(p) + 2:
            return p
    return ""


def fuzzy_guard(query: str, choice: str, prefixes: list[str]) -> str | None:
    """Why a high-similarity pair is still not a match (None: it is one)."""
    from rapidfuzz import fuzz

    if sorted(_NUM.findall(query)) != sorted(_NUM.findall(choice)):
        return "numbers differ"
    q, c = set(query.split()), set(choice.split())
    dq, dc = sorted(q - c), sorted(c - q)
    if len(dq) != len(dc):
        # A compound written in one word or two ("nonradiographic" / "non radiographic") is a spelling variant.
        jq, jc = "".join(dq), "".join(dc)
        if not dq or not dc or fuzz.ratio(jq, jc) < 90:
            return "different number of words"
        if _prefix(jq, prefixes) != _prefix(jc, prefixes):
            return f"contrastive prefix: '{jq}' vs '{jc}'"
        return None
    for a in dq:
        best = max(dc, key=lambda b: fuzz.ratio(a, b)) if dc else ""
        if fuzz.ratio(a, best) < 75:
            return f"'{a}' has no near-spelling in '{choice}'"
        if _prefix(a, prefixes) != _prefix(best, prefixes):
            return f"contrastive prefix: '{a}' vs '{best}'"
        dc.remove(best)
    return None


def fuzzy_partition(choices: dict[str, list[str]], min_score: dict[str, float], limit: int, prefixes: list[str]):
    """mapInPandas function: (entity, name, norm) -> (entity, name, t_norm, fscore, rejected) candidates.

    Near misses down to 10 points below the threshold come back too, with the reason they were rejected.
    """
    import pandas as pd
    from rapidfuzz import fuzz, process

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            out: list[tuple[str, str, str, float, str | None]] = []
            for entity, name, norm in zip(pdf["entity"], pdf["name"], pdf["norm"], strict=True):
                cutoff = min_score.get(entity, 90.0)
                for choice, score, _ in process.extract(norm, choices.get(entity, []), scorer=fuzz.ratio,
                                                        limit=limit, score_cutoff=max(cutoff - 10.0, 50.0)):
                    why = None if score >= cutoff else f"similarity {score:.1f} below {cutoff:g}"
                    why = why or fuzzy_guard(norm, choice, prefixes)
                    out.append((entity, name, choice, float(score) / 100.0, why))
            yield pd.DataFrame(out, columns=["entity", "name", "t_norm", "fscore", "rejected"])

    return run


def fuzzy_matches(names: DataFrame, terms: DataFrame, fcfg: dict[str, Any]) -> DataFrame:
    """Fuzzy candidates (accepted, and rejected near misses with ``rejected`` set) for the given names."""
    min_score = {str(k): float(v) for k, v in (fcfg.get("min_score") or {}).items()}
    min_len = int(fcfg.get("min_key_length", 5))
    limit = int(fcfg.get("candidates", 5))
    prefixes = sorted((str(p) for p in fcfg.get("contrastive_prefixes") or []), key=len, reverse=True)
    todo = names.where(F.col("norm").isNotNull() & (F.length("norm") >= min_len)).select("entity", "name", "norm")
    choices: dict[str, list[str]] = {}
    for r in terms.where(F.length("t_norm") >= min_len).select("entity", "t_norm").distinct().collect():
        choices.setdefault(r["entity"], []).append(r["t_norm"])
    fn = fuzzy_partition({k: sorted(v) for k, v in choices.items()}, min_score, limit, prefixes)
    found = todo.mapInPandas(fn, "entity STRING, name STRING, t_norm STRING, fscore DOUBLE, rejected STRING") \
        .localCheckpoint()
    t, f = terms.alias("t"), F.broadcast(found).alias("f")
    return t.join(f, (F.col("t.t_norm") == F.col("f.t_norm")) & (F.col("t.entity") == F.col("f.entity"))).select(
        F.col("f.entity").alias("entity"), F.col("f.name").alias("name"), *[F.col(f"t.{c}").alias(c) for c in _TERM_COLS],
        F.lit("fuzzy").alias("method"), F.lit(TIER["fuzzy"]).alias("tier"), F.col("f.fscore").alias("score"),
        F.concat(F.lit("fuzzy "), F.format_number(F.col("f.fscore") * 100, 1), F.lit(" to '"), F.col("t.term"),
                 F.lit("'"), F.when(F.col("f.rejected").isNotNull(), F.concat(F.lit(" rejected: "), "f.rejected"))
                 .otherwise(F.lit(""))).alias("reason"),
        F.col("f.rejected").alias("rejected"))


# ----------------------------------------------------------------------------------------- decisions
def decide(cands: DataFrame, margin: float) -> DataFrame:
    """Per (entity, name, vocabulary): best tier (then best score within ``margin``), most specific MeSH wins."""
    g = ["entity", "name", "vocabulary"]
    # One row per concept: the strongest evidence (a concept reached through several of its terms counts once).
    per_concept = Window.partitionBy(*g, "concept_key").orderBy("tier", F.col("score").desc(), "reason")
    cands = cands.withColumn("_rn", F.row_number().over(per_concept)).where("_rn = 1").drop("_rn")
    w = Window.partitionBy(*g)
    c = cands.withColumn("_best_tier", F.min("tier").over(w))
    c = c.withColumn("_best_score", F.max(F.when(F.col("tier") == F.col("_best_tier"), F.col("score"))).over(w))
    top = (F.col("tier") == F.col("_best_tier")) & (F.col("score") >= F.col("_best_score") - F.lit(margin / 100.0))
    c = c.withColumn("_top", top)
    # A top candidate whose tree number is the prefix of another top candidate's is an ancestor: it gives way.
    tops = c.where("_top").select(*g, F.col("concept_key").alias("_other"), F.col("trees").alias("_other_trees"))
    anc = c.where("_top").join(tops, g).where(F.col("concept_key") != F.col("_other")).where(
        F.exists("trees", lambda t: F.exists("_other_trees", lambda o: o.startswith(F.concat(t, F.lit("."))))))
    anc = anc.groupBy(*g, "concept_key").agg(F.min("_other").alias("_more_specific"))
    c = c.join(anc, [*g, "concept_key"], "left")
    alive = F.col("_top") & F.col("_more_specific").isNull()
    c = c.withColumn("_alive", alive)
    c = c.withColumn("_n_alive", F.sum(F.col("_alive").cast("int")).over(w))
    c = c.withColumn("_n_top", F.sum(F.col("_top").cast("int")).over(w))
    decision = F.when(F.col("_alive") & (F.col("_n_alive") == 1), "chosen") \
        .when(F.col("_alive"), "ambiguous").otherwise("candidate")
    reason = F.when(F.col("_more_specific").isNotNull(),
                    F.concat(F.col("reason"), F.lit("; less specific than "), F.col("_more_specific"))) \
        .when(F.col("_alive") & (F.col("_n_alive") == 1) & (F.col("_n_top") > 1),
              F.concat(F.col("reason"), F.lit("; most specific of "), F.col("_n_top").cast("string"))) \
        .when(F.col("_alive") & (F.col("_n_alive") > 1),
              F.concat(F.col("reason"), F.lit("; tied with "), (F.col("_n_alive") - 1).cast("string"),
                       F.lit(" other candidate(s)"))) \
        .otherwise(F.col("reason"))
    return c.withColumn("decision", decision).withColumn("reason", reason).drop(
        "_best_tier", "_best_score", "_top", "_more_specific", "_alive", "_n_alive", "_n_top")


def link_names(names: DataFrame, vocabs: Vocabularies, lcfg: dict[str, Any]) -> DataFrame:
    """Link distinct (entity, name) pairs -> ``link_candidates`` rows (without vocab_version)."""
    scores = {k: float(v) for k, v in (lcfg.get("scores") or {}).items()}
    scores = {"exact": 1.0, "synonym": 0.97, "normalized": 0.92, "normalized_relaxed": 0.85, **scores}
    fcfg = lcfg.get("fuzzy") or {}
    keyed = name_keys(names, lcfg, vocabs.icd10).localCheckpoint()
    linkable = keyed.where("excluded IS NULL")
    # Distinct names are far fewer than vocabulary terms: broadcast them, so the terms are never shuffled.
    if keyed.count() <= int(lcfg.get("broadcast_names_max", 200_000)):
        linkable = F.broadcast(linkable)
    cands = key_matches(linkable, vocabs.terms, scores).localCheckpoint()
    margin = float(fcfg.get("ambiguity_margin", 1.0))
    if fcfg.get("enabled", True):
        left = keyed.where("excluded IS NULL").join(cands.select("entity", "name").distinct(), ["entity", "name"],
                                                    "left_anti")
        fz = fuzzy_matches(left, vocabs.terms, fcfg)
        decided = decide(cands.unionByName(fz.where("rejected IS NULL").drop("rejected")), margin)
        rejected = fz.where("rejected IS NOT NULL").drop("rejected").withColumn("decision", F.lit("rejected"))
        w = Window.partitionBy("entity", "name", "vocabulary", "concept_key").orderBy(F.col("score").desc())
        rejected = rejected.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")
        decided = decided.unionByName(rejected.join(decided.select("entity", "name").distinct(), ["entity", "name"],
                                                    "left_anti"))
    else:
        decided = decide(cands, margin)
    decided = decided.localCheckpoint()

    # ICD-10 codes written in condition names.
    parts = [decided]
    if vocabs.icd10 is not None:
        codes = vocabs.icd10.select(F.col("code_compact").alias("icd_code"), "system", "code", "description")
        parts.append(keyed.where("icd_code IS NOT NULL").join(codes, "icd_code").select(
            "entity", "name", F.lit("icd10").alias("vocabulary"), F.concat_ws(":", "system", "code").alias("concept_key"),
            F.col("code").alias("concept_id"), F.col("description").alias("concept_name"),
            F.lit(None).cast("string").alias("mesh_ui"), F.lit(None).cast("string").alias("mesh_name"),
            F.array().cast("array<string>").alias("trees"), F.lit("exact").alias("method"), F.lit(1).alias("tier"),
            F.lit(1.0).alias("score"), F.concat(F.lit("ICD-10 code "), "icd_code", F.lit(" in the name")).alias("reason"),
            F.lit("chosen").alias("decision")))

    # Names that link to nothing: one row saying why.
    has_any = decided.where(F.col("decision").isin("chosen", "ambiguous")).select("entity", "name").distinct()
    near = decided.where("decision = 'rejected'").groupBy("entity", "name").agg(
        F.max_by("reason", "score").alias("near_miss"))
    parts.append(keyed.join(has_any, ["entity", "name"], "left_anti").join(near, ["entity", "name"], "left").select(
        "entity", "name", F.lit("none").alias("vocabulary"), F.lit("").alias("concept_key"),
        F.lit(None).cast("string").alias("concept_id"), F.lit(None).cast("string").alias("concept_name"),
        F.lit(None).cast("string").alias("mesh_ui"), F.lit(None).cast("string").alias("mesh_name"),
        F.array().cast("array<string>").alias("trees"), F.lit(None).cast("string").alias("method"),
        F.lit(99).alias("tier"), F.lit(None).cast("double").alias("score"),
        F.coalesce("excluded", F.concat(F.lit("no candidate above threshold; nearest: "), "near_miss"),
                   F.when(F.col("norm").isNull(), F.lit("nothing left to match after normalization")),
                   F.lit("no candidate in any vocabulary")).alias("reason"),
        F.when(F.col("excluded").isNotNull(), "excluded").otherwise("unlinked").alias("decision")))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.drop("tier", "trees")


_METHOD_RANK = {"exact": 1, "synonym": 2, "normalized": 3, "fuzzy": 4}


def _rank(col: Column) -> Column:
    out = F.lit(9)
    for m, r in _METHOD_RANK.items():
        out = F.when(col == m, F.lit(r)).otherwise(out)
    return out


def links_from_candidates(cands: DataFrame) -> DataFrame:
    """One link per (entity, name) from ``link_candidates`` rows: drugbank_id, drugbank_name, mesh_ui,
    mesh_name, link_method (``ambiguous`` when only ties were found), link_score.

    Conditions take their chosen MeSH concept. Drugs take the chosen drug (DrugBank id and name, and the MeSH
    descriptor its tree positions name) and, when that gives no MeSH descriptor or a weaker match than a
    direct MeSH match, the chosen MeSH concept; the method and score are those of the strongest evidence.
    """
    c = cands.where(F.col("decision").isin("chosen", "ambiguous")).withColumn("_r", _rank(F.col("method")))
    chosen = c.where("decision = 'chosen'")
    amb = c.where("decision = 'ambiguous'").groupBy("entity", "name").agg(F.max("score").alias("amb_score"))
    key = ["entity", "name"]
    drug = chosen.where("vocabulary = 'drugs'").select(
        *key, F.col("concept_id").alias("drugbank_id"),
        F.when(F.col("concept_id").isNotNull(), F.col("concept_name")).alias("drugbank_name"),
        F.col("mesh_ui").alias("d_ui"), F.col("mesh_name").alias("d_name"), F.col("method").alias("d_method"),
        F.col("score").alias("d_score"), F.col("_r").alias("d_r"))
    mesh = chosen.where("vocabulary = 'mesh'").select(
        *key, F.col("mesh_ui").alias("m_ui"), F.col("mesh_name").alias("m_name"), F.col("method").alias("m_method"),
        F.col("score").alias("m_score"), F.col("_r").alias("m_r"))
    names = c.select(*key).distinct()
    j = names.join(drug, key, "left").join(mesh, key, "left").join(amb, key, "left")
    d_strength = F.struct(-F.col("d_r"), F.col("d_score"))
    m_strength = F.struct(-F.col("m_r"), F.col("m_score"))
    drug_first = F.col("d_method").isNotNull() & (F.col("m_method").isNull() | (d_strength >= m_strength))
    use_d_mesh = F.col("d_name").isNotNull() & (F.col("m_name").isNull() | (d_strength >= m_strength))
    return j.select(
        *key, "drugbank_id", "drugbank_name",
        F.when(use_d_mesh, F.col("d_ui")).otherwise(F.col("m_ui")).alias("mesh_ui"),
        F.when(use_d_mesh, F.col("d_name")).otherwise(F.col("m_name")).alias("mesh_name"),
        F.coalesce(F.when(drug_first, F.col("d_method")), F.col("m_method"), F.col("d_method"),
                   F.when(F.col("amb_score").isNotNull(), F.lit("ambiguous"))).alias("link_method"),
        F.coalesce(F.when(drug_first, F.col("d_score")), F.col("m_score"), F.col("d_score"),
                   F.col("amb_score")).alias("link_score"))
