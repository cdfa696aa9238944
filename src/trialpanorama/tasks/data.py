"""The lake as the task builders see it: one nested record per trial and per publication, read once.

Spark does the joins (canonical member study of each gold trial + its silver child rows, aggregated into
arrays) and the driver receives one dict per trial; every table is read at a pinned Delta version that is
reported for lineage. Assembling samples on the driver keeps each task module short and readable; it
fits the study's scale (tens of thousands of samples per task), not a billion-row lake.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama import lake

TRIAL_STUDY_COLS = [
    "title", "official_title", "abstract", "detailed_description", "study_type", "phase", "recruitment_status",
    "why_stopped", "enrollment", "enrollment_type", "allocation", "intervention_model", "primary_purpose",
    "masking", "number_of_arms", "sex", "min_age", "max_age", "healthy_volunteers", "start_year", "sponsor",
    "keywords",
]


@dataclass
class LakeData:
    versions: dict[str, int | None]
    trials: dict[str, dict[str, Any]]  # trial_uid -> canonical study fields + children
    publications: dict[str, dict[str, Any]]  # pmid -> row
    pub_trials: dict[str, set[str]]  # pmid -> trial_uids reporting in it
    review_cites: dict[str, list[str]]  # review pmid -> cited pmids (sorted)
    cache: dict[str, Any] = field(default_factory=dict)


def _reader(spark: SparkSession, lake_root: str, versions: dict[str, int | None],
            record_input: Callable[[str, int], None] | None) -> Callable[[str], DataFrame]:
    def read(table: str) -> DataFrame:
        uri = lake.table_uri(lake_root, table)
        version = lake.table_version(spark, uri)
        versions[table] = version
        if version is None:
            return lake.read_named(spark, lake_root, table)
        if record_input:
            record_input(table, version)
        return lake.read_table(spark, uri, version)
    return read


def load(spark: SparkSession, lake_root: str, review_types: list[str],
         record_input: Callable[[str, int], None] | None = None) -> LakeData:
    """Read trials (with conditions, arms, endpoints, eligibility, outcomes, drugs), publications, relations."""
    versions: dict[str, int | None] = {}
    read = _reader(spark, lake_root, versions, record_input)
    trials = read("trials").select("trial_uid", F.col("canonical_study_id").alias("study_id"))
    studies = read("studies").select("study_id", *TRIAL_STUDY_COLS)
    conds = read("conditions").groupBy("study_id").agg(F.sort_array(F.collect_list(F.struct(
        "origin", "condition_name", "condition_mesh_id", "condition_mesh_term"))).alias("conditions"))
    arms = read("arms").groupBy("study_id").agg(F.sort_array(F.collect_list(F.struct(
        "arm_label", "group_type", "description", "intervention_names"))).alias("arms"))
    ends = read("endpoints").groupBy("study_id").agg(F.sort_array(F.collect_list(F.struct(
        "endpoint_type", "seq", "measure", "description", "time_frame"))).alias("endpoints"))
    elig = read("eligibility").select("study_id", F.struct(
        "criteria", "inclusion_criteria", "exclusion_criteria", "sex", "min_age", "max_age",
        "healthy_volunteers").alias("eligibility"))
    outc = read("outcomes").select("study_id", "overall_status", "why_terminated")
    drugs = read("drugs").where(F.col("origin") != "ctgov_derived").groupBy("study_id").agg(F.sort_array(
        F.collect_list(F.struct("drug_name", "intervention_type", "description"))).alias("interventions"))
    members = read("trial_members")
    docs = (trials.join(studies, "study_id").join(conds, "study_id", "left").join(arms, "study_id", "left")
            .join(ends, "study_id", "left").join(elig, "study_id", "left").join(outc, "study_id", "left")
            .join(drugs, "study_id", "left"))
    trial_rows = {r["trial_uid"]: r.asDict(recursive=True) for r in docs.collect()}
    _ = members  # read for lineage: trial_uids in samples are canonical gold ids (duplicates merged)

    review_uis = list(review_types)
    is_review = F.exists("publication_types", lambda p: p.getField("ui").isin(review_uis))
    # only what the tasks and the index use: sections and reference lists of reviews, MeSH without qualifiers
    pubs = read("publications").select(
        "pmid", "title", "abstract", "publication_types", "keywords", "year",
        F.transform("mesh_headings", lambda m: F.struct(m.getField("descriptor_ui").alias("descriptor_ui"),
                                                        m.getField("descriptor_name").alias("descriptor_name")))
        .alias("mesh_headings"),
        F.when(is_review, F.col("abstract_sections")).alias("abstract_sections"),
        F.when(is_review, F.col("cited_pmids")).alias("cited_pmids"))
    pub_rows = {r["pmid"]: r.asDict(recursive=True) for r in pubs.collect()}
    rel = read("relations").select("head_id", "head_type", "tail_id", "tail_type", "relation_type").collect()
    pub_trials: dict[str, set[str]] = defaultdict(set)
    cites: dict[str, set[str]] = defaultdict(set)
    for r in rel:
        if r.head_type == "trial" and r.tail_type == "publication":
            pub_trials[r.tail_id].add(r.head_id)
        elif r.head_type == "review" and r.tail_type == "publication":
            cites[r.head_id].add(r.tail_id)
    return LakeData(versions, trial_rows, pub_rows, dict(pub_trials), {k: sorted(v) for k, v in cites.items()})
