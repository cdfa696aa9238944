"""Every Delta table's schema in one file, so the data model reads in one place.

Silver tables use the table and column names of the published TrialPanorama database where they exist
(``studies``, ``conditions``, ``drugs``, ``endpoints``, ``outcomes``, ``adverse_events``, ``disposition``),
keyed by ``study_id``; columns the published database lacks (dates with their precision, design fields,
provenance) are added beside them. A table is declared once here and written only through ``lake``,
which conforms frames to these schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from pyspark.sql.types import StructType


@dataclass(frozen=True)
class TableSpec:
    layer: str  # bronze | silver | gold
    ddl: str
    keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    doc: str = ""

    @cached_property
    def schema(self) -> StructType:
        """Parsed on first use: Spark parses DDL only once a session exists."""
        return StructType.fromDDL(self.ddl)


def _ddl(text: str) -> str:
    return " ".join(text.split())


_PROVENANCE = "source_version STRING, record_hash STRING, updated_at TIMESTAMP"

TABLES: dict[str, TableSpec] = {
    # ------------------------------------------------------------------------------------- bronze
    "ctgov_raw": TableSpec(
        "bronze",
        _ddl("nct_id STRING NOT NULL, raw STRING, source_file STRING, envelope STRING, record_hash STRING,"
             " source_version STRING, ingested_at TIMESTAMP"),
        ("nct_id",),
        doc="One raw ClinicalTrials.gov API v2 record per study, newest version wins.",
    ),
    "rejects": TableSpec(
        "bronze",
        _ddl("reject_id STRING NOT NULL, source STRING, source_file STRING, raw STRING, reason STRING,"
             " ingested_at TIMESTAMP"),
        ("reject_id",),
        partition_by=("source",),
        doc="Every record a job could not accept, with its raw text and the reason.",
    ),
    # ------------------------------------------------------------------------------------- silver
    "studies": TableSpec(
        "silver",
        _ddl(f"""study_id STRING NOT NULL, study_source STRING, org_study_id STRING, title STRING,
             official_title STRING, acronym STRING, abstract STRING, detailed_description STRING,
             study_type STRING, phase STRING, recruitment_status STRING, last_known_status STRING,
             why_stopped STRING,
             start_date DATE, start_date_precision STRING, start_date_type STRING, start_year INT,
             primary_completion_date DATE, primary_completion_date_precision STRING,
             completion_date DATE, completion_date_precision STRING, completion_date_type STRING,
             first_submitted_date DATE, last_update_date DATE,
             enrollment INT, enrollment_type STRING, actual_accrual INT, target_accrual INT,
             sponsor STRING, sponsor_class STRING, allocation STRING, intervention_model STRING,
             primary_purpose STRING, masking STRING, number_of_arms INT, has_results BOOLEAN,
             countries ARRAY<STRING>, keywords ARRAY<STRING>,
             sex STRING, min_age DOUBLE, max_age DOUBLE, healthy_volunteers BOOLEAN, {_PROVENANCE}"""),
        ("study_id",),
        doc="One row per registry record. Ages in years; dates as DATE with a day/month/year precision.",
    ),
    "conditions": TableSpec(
        "silver",
        _ddl("""study_id STRING NOT NULL, condition_name STRING, condition_mesh_id STRING,
             condition_mesh_term STRING, condition_mesh_type STRING, origin STRING, link_method STRING,
             link_score DOUBLE"""),
        ("study_id", "condition_name", "origin"),
        doc="Registry condition names (origin=registry) and NLM's derived MeSH matches (origin=ctgov_derived).",
    ),
    "drugs": TableSpec(
        "silver",
        _ddl("""study_id STRING NOT NULL, drug_name STRING, intervention_type STRING, description STRING,
             other_names ARRAY<STRING>, arm_labels ARRAY<STRING>, origin STRING, drug_mesh_id STRING,
             rx_normalized_name STRING, drugbank_name STRING, drugbank_id STRING, link_method STRING,
             link_score DOUBLE"""),
        ("study_id", "drug_name", "origin"),
        doc="Interventions of every type; derived MeSH interventions carry origin=ctgov_derived.",
    ),
    "arms": TableSpec(
        "silver",
        _ddl("""study_id STRING NOT NULL, arm_label STRING, group_type STRING, description STRING,
             intervention_names ARRAY<STRING>"""),
        ("study_id", "arm_label"),
    ),
    "endpoints": TableSpec(
        "silver",
        _ddl("""study_id STRING NOT NULL, endpoint_type STRING, seq INT, measure STRING, description STRING,
             time_frame STRING"""),
        ("study_id", "endpoint_type", "seq"),
        doc="Long form: one row per primary / secondary / other outcome measure.",
    ),
    "eligibility": TableSpec(
        "silver",
        _ddl("""study_id STRING NOT NULL, criteria STRING, inclusion_criteria ARRAY<STRING>,
             exclusion_criteria ARRAY<STRING>, sex STRING, min_age DOUBLE, max_age DOUBLE,
             min_age_raw STRING, max_age_raw STRING, healthy_volunteers BOOLEAN, std_ages ARRAY<STRING>,
             study_population STRING, sampling_method STRING"""),
        ("study_id",),
    ),
    "outcomes": TableSpec(
        "silver",
        _ddl("study_id STRING NOT NULL, overall_status STRING, outcome_type STRING, why_terminated STRING"),
        ("study_id",),
    ),
    "study_ids": TableSpec(
        "silver",
        _ddl("study_id STRING NOT NULL, id_value STRING, id_source STRING, id_type STRING, id_domain STRING,"
             " id_link STRING"),
        ("study_id", "id_value", "id_source"),
        doc="Every other identifier a record carries: org study id, secondary ids with their type, NCT aliases.",
    ),
    "study_references": TableSpec(
        "silver",
        _ddl("study_id STRING NOT NULL, pmid STRING, reference_type STRING, citation STRING"),
        ("study_id", "pmid", "citation"),
    ),
    "adverse_events": TableSpec(
        "silver",
        _ddl("""study_id STRING NOT NULL, adverse_event_name STRING, adverse_event_description STRING,
             organ_system STRING, is_serious BOOLEAN, meddra_id STRING, meddra_id_type STRING,
             num_events INT, num_affected INT, num_at_risk INT"""),
        ("study_id", "adverse_event_name", "is_serious"),
        doc="One row per reported event term, counts summed over the result groups.",
    ),
    "disposition": TableSpec(
        "silver",
        _ddl("""study_id STRING NOT NULL, group_id STRING, group_type STRING, intervention_type STRING,
             intervention_name STRING, intervention_description STRING, number_of_subjects INT"""),
        ("study_id", "group_id"),
        doc="Participant-flow groups with the number who started the first period.",
    ),
    # ---- ictrp (issue 3): WHO ICTRP tables go here ----
    # ---- end ictrp ----
    # ---- pubmed + panorama (issue 3): literature tables go here ----
    # ---- end pubmed ----
    # ---- gold (issue 3): trials, trial_members, merge_proposals, relations go here ----
    "trials": TableSpec(
        "gold",
        _ddl("""trial_uid STRING NOT NULL, canonical_study_id STRING, study_source STRING, title STRING,
             phase STRING, recruitment_status STRING, study_type STRING, start_date DATE, enrollment INT,
             sponsor STRING, n_members INT, member_study_ids ARRAY<STRING>, member_sources ARRAY<STRING>,
             registry_ids ARRAY<STRING>"""),
        ("trial_uid",),
        doc="One row per real-world trial; fields from the canonical member (source priority, then recency).",
    ),
    "trial_members": TableSpec(
        "gold",
        _ddl("""study_id STRING NOT NULL, trial_uid STRING, study_source STRING, is_canonical BOOLEAN,
             link_type STRING, evidence ARRAY<STRING>"""),
        ("study_id",),
        doc="study_id -> trial_uid with how it was linked: self (alone), id (shared registry ids), near_duplicate.",
    ),
    "trial_id_map": TableSpec(
        "gold",
        _ddl("registry_id STRING NOT NULL, registry STRING, trial_uid STRING"),
        ("registry_id",),
        doc="Every normalized registry id seen (primary or secondary) -> trial_uid, for linking papers to trials.",
    ),
    "merge_proposals": TableSpec(
        "gold",
        _ddl("""study_id_a STRING NOT NULL, study_id_b STRING NOT NULL, kind STRING, title_similarity DOUBLE,
             sponsor_similarity DOUBLE, start_diff_days INT, size_ratio DOUBLE, decision STRING, evidence STRING"""),
        ("study_id_a", "study_id_b", "kind"),
        doc="Near-duplicate pairs with their evidence (merged or only proposed) and ambiguous ids left unlinked.",
    ),
    "relations": TableSpec(
        "gold",
        _ddl("""head_id STRING NOT NULL, head_type STRING, tail_id STRING NOT NULL, tail_type STRING,
             relation_type STRING NOT NULL, evidence ARRAY<STRING>"""),
        ("head_id", "tail_id", "relation_type"),
        doc="trial -> publication and review -> publication edges on trial_uid and PMID, with every source that says so.",
    ),
    # ---- end gold ----
    # ---- vocabularies + linking (issue 4): vocab_mesh, vocab_drugs, vocab_icd10, link tables go here ----
    # ---- end vocabularies ----
}

SILVER_CHILD_TABLES = (
    "conditions", "drugs", "arms", "endpoints", "eligibility", "outcomes", "study_ids",
    "study_references", "adverse_events", "disposition",
)
