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
    "ictrp_raw": TableSpec(
        "bronze",
        _ddl("""trial_id STRING NOT NULL, study_id STRING, registry STRING, member_state STRING,
             source_format STRING, raw STRING, fields STRING, source_file STRING, record_hash STRING,
             source_version STRING, ingested_at TIMESTAMP"""),
        ("trial_id",),
        doc="One WHO ICTRP record per TrialID as received (EU CTR: one per member state), newest version wins."
            " raw = the record as received (CSV: its fields as a JSON array, or object by header; XML: the"
            " element); fields = the canonical record as JSON, from which the merged silver study is rebuilt"
            " when another member state of it changes. source_version = Last_Refreshed_on (ISO date).",
    ),
    # ---- end ictrp ----
    # ---- pubmed + panorama (issue 3): literature tables go here ----
    "pubmed_raw": TableSpec(
        "bronze",
        _ddl("pmid STRING NOT NULL, pmid_version INT, kind STRING, raw STRING, source_file STRING,"
             " record_hash STRING, source_version STRING, ingested_at TIMESTAMP"),
        ("pmid",),
        doc="The newest PubMed record per PMID as received: article XML (kind article|book_article) or a"
            " DeleteCitation tombstone (kind delete), so an older file ingested later cannot resurrect it.",
    ),
    "publications": TableSpec(
        "silver",
        _ddl(f"""pmid STRING NOT NULL, pmid_version INT, record_type STRING, title STRING, abstract STRING,
             abstract_sections ARRAY<STRUCT<label: STRING, nlm_category: STRING, text: STRING>>,
             journal STRING, journal_iso STRING, issn STRING, year INT, languages ARRAY<STRING>,
             authors ARRAY<STRUCT<last_name: STRING, fore_name: STRING, initials: STRING,
                                  collective_name: STRING, affiliations: ARRAY<STRING>>>,
             publication_types ARRAY<STRUCT<ui: STRING, name: STRING>>,
             mesh_headings ARRAY<STRUCT<descriptor_ui: STRING, descriptor_name: STRING, major_topic: BOOLEAN,
                                        qualifiers: ARRAY<STRUCT<ui: STRING, name: STRING, major_topic: BOOLEAN>>>>,
             keywords ARRAY<STRING>,
             databanks ARRAY<STRUCT<databank_name: STRING, accession_numbers: ARRAY<STRING>>>,
             registry_ids ARRAY<STRING>, doi STRING, pmcid STRING, cited_pmids ARRAY<STRING>,
             medline_status STRING, date_revised DATE, source_file STRING, {_PROVENANCE}"""),
        ("pmid",),
        doc="One row per live PMID (newest version). Title and abstract text whole (inline markup flattened"
            " in reading order); abstract = 'LABEL: text' lines of abstract_sections.",
    ),
    "publication_trial_ids": TableSpec(
        "silver",
        _ddl("pmid STRING NOT NULL, registry STRING, trial_id STRING, raw_id STRING, origin STRING,"
             " databank_name STRING"),
        ("pmid", "trial_id", "origin"),
        doc="Trial registry ids of a publication: curated DataBankList accessions (origin=databank) and ids"
            " found in the title/abstract (origin=title|abstract), normalized by conf/registry_ids.yaml.",
    ),
    "publication_deletions": TableSpec(
        "silver",
        _ddl("pmid STRING NOT NULL, pmid_version INT, source_file STRING, source_version STRING,"
             " record_hash STRING, deleted_at TIMESTAMP"),
        ("pmid",),
        doc="PMIDs that NLM deleted (DeleteCitation) and that are no longer in publications.",
    ),
    "panorama_raw": TableSpec(
        "bronze",
        _ddl("study_id STRING NOT NULL, raw STRING, source_file STRING, record_hash STRING,"
             " source_version STRING, ingested_at TIMESTAMP"),
        ("study_id",),
        doc="One study of the published TrialPanorama database as JSON: its studies row and its rows of every"
            " study-keyed table, as published (column names and values untouched).",
    ),
    "results": TableSpec(
        "silver",
        _ddl("study_id STRING NOT NULL, population STRING, interventions STRING, outcomes STRING,"
             " group_type STRING"),
        ("study_id", "group_type", "population", "interventions", "outcomes"),
        doc="Published TrialPanorama `results` rows (result groups as text).",
    ),
    "biomarkers": TableSpec(
        "silver",
        _ddl("study_id STRING NOT NULL, biomarker_type STRING, biomarker_name STRING, biomarker_genes STRING"),
        ("study_id", "biomarker_type", "biomarker_name"),
        doc="Published TrialPanorama `biomarkers` rows.",
    ),
    "panorama_relations": TableSpec(
        "silver",
        _ddl("head_id STRING NOT NULL, head_type STRING, tail_id STRING NOT NULL, tail_type STRING,"
             " relation_type STRING, source_file STRING, ingested_at TIMESTAMP"),
        ("head_id", "head_type", "tail_id", "tail_type", "relation_type"),
        doc="Published study <-> publication <-> review relations, as published, for the gold relations job.",
    ),
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
    "vocab_mesh_sources": TableSpec(
        "gold",
        _ddl("""source STRING NOT NULL, mesh_key STRING NOT NULL, mesh_ui STRING, mesh_name STRING,
             record_type STRING, descriptor_class STRING, tree_numbers ARRAY<STRING>, entry_terms ARRAY<STRING>,
             mapped_to ARRAY<STRING>, pharm_actions ARRAY<STRING>, roles ARRAY<STRING>, source_file STRING"""),
        ("source", "mesh_key"),
        doc="MeSH records as each source gives them (mesh_xml, mesh_supp_xml, mesh_tree, lake_ctgov, lake_pubmed,"
            " drug_dictionary); a load replaces only the sources it read. mesh_key = UI, or N:<name> without one.",
    ),
    "vocab_mesh": TableSpec(
        "gold",
        _ddl("""mesh_key STRING NOT NULL, mesh_ui STRING, mesh_name STRING, record_type STRING,
             descriptor_class STRING, tree_numbers ARRAY<STRING>, entry_terms ARRAY<STRING>,
             mapped_to ARRAY<STRING>, pharm_actions ARRAY<STRING>, roles ARRAY<STRING>, sources ARRAY<STRING>"""),
        ("mesh_key",),
        doc="One row per MeSH descriptor or supplementary concept merged over vocab_mesh_sources; mesh_ui is NULL"
            " for a descriptor known only by name (the packaged 2019 tree has no UIs).",
    ),
    "vocab_drugs": TableSpec(
        "gold",
        _ddl("""source STRING NOT NULL, drug_key STRING NOT NULL, drugbank_id STRING, name STRING,
             synonyms ARRAY<STRING>, brand_names ARRAY<STRING>, accession_numbers ARRAY<STRING>, cas STRING,
             unii STRING, inchikey STRING, mesh_tree ARRAY<STRING>, dictionary_mesh_id STRING,
             source_file STRING"""),
        ("source", "drug_key"),
        doc="Drugs per source (drugbank_csv, drug_dictionary); drug_key = DrugBank id, or DICT:<name> without one."
            " dictionary_mesh_id is the dictionary's own field, often a pharmacological action: not the drug's UI.",
    ),
    "vocab_icd10": TableSpec(
        "gold",
        _ddl("""system STRING NOT NULL, code STRING NOT NULL, code_compact STRING, description STRING,
             level STRING, parent_code STRING, is_leaf BOOLEAN, source_version STRING"""),
        ("system", "code"),
        doc="ICD-10-CM and WHO ICD-10 code lists (chapter, block, category, subcategory) with descriptions.",
    ),
    "vocab_terms": TableSpec(
        "gold",
        _ddl("""entity STRING NOT NULL, vocabulary STRING NOT NULL, concept_key STRING NOT NULL,
             term STRING NOT NULL, term_type STRING, concept_id STRING, concept_name STRING, mesh_ui STRING,
             mesh_name STRING, trees ARRAY<STRING>, t_exact STRING, t_norm STRING, keys_version STRING"""),
        ("entity", "vocabulary", "concept_key", "term"),
        doc="Every name and synonym the linker matches against, with its exact and normalized keys, per entity"
            " (condition|drug) and vocabulary (mesh|drugs); keys_version changes with conf/linking.yaml.",
    ),
    "link_candidates": TableSpec(
        "gold",
        _ddl("""entity STRING NOT NULL, name STRING NOT NULL, vocabulary STRING NOT NULL,
             concept_key STRING NOT NULL, concept_id STRING, concept_name STRING, mesh_ui STRING,
             mesh_name STRING, method STRING, score DOUBLE, decision STRING, reason STRING,
             vocab_version STRING"""),
        ("entity", "name", "vocabulary", "concept_key"),
        doc="Every candidate concept of every distinct registry name (entity condition|drug; vocabulary mesh|"
            "drugs|icd10), decision chosen|ambiguous|candidate|rejected; names left unlinked have one row with"
            " vocabulary 'none', decision excluded|unlinked and the reason. vocab_version: the vocabularies and"
            " settings the row was computed with (rows of another version are recomputed).",
    ),
    # ---- end vocabularies ----
    # ---- tasks (issue 6) ----
    **{
        task: TableSpec(
            "tasks",
            _ddl("""sample_id STRING NOT NULL, task STRING, task_version STRING, split STRING, input STRING,
                 reference STRING, messages ARRAY<STRUCT<role: STRING, content: STRING>>, answer STRING,
                 trial_uids ARRAY<STRING>, pmids ARRAY<STRING>, source_key STRING"""),
            ("sample_id",),
            doc=f"Samples of task {task} (src/trialpanorama/tasks/{task}.py): input/reference as JSON, the chat"
                " prompt, the reference answer text, and the trial_uids/PMIDs each sample is built from;"
                " source_key = the trial_uid or review PMID the sample is about.",
        )
        for task in (
            "study_search", "study_screening", "evidence_summary", "arm_design", "eligibility_criteria_design",
            "endpoint_design", "sample_size_estimation", "trial_completion_assessment",
        )
    },
    # ---- end tasks ----
    # ---- bench (issue 8) ----
    "predictions": TableSpec(
        "bench",
        _ddl("""run_id STRING NOT NULL, model STRING NOT NULL, task STRING NOT NULL, sample_id STRING NOT NULL,
             task_version STRING, dataset_version BIGINT, backend STRING, model_source STRING, raw_output STRING,
             parsed STRING, reference STRING, score DOUBLE, correct BOOLEAN, unparseable BOOLEAN, error STRING,
             tokens_in BIGINT, tokens_out BIGINT, latency_s DOUBLE, created_at TIMESTAMP"""),
        ("run_id", "model", "task", "sample_id"),
        doc="One benchmark answer per (run_id, model, task, sample_id): raw output, parsed answer (JSON), the"
            " sample's reference, its score on the task's headline metric (correct = score 1), unparseable and"
            " error flags, tokens and latency; dataset_version = the test table's Delta version. Written by"
            " trialpanorama.bench.store (delta-rs MERGE; a resumed run skips keys already present).",
    ),
    # ---- end bench ----
}

SILVER_CHILD_TABLES = (
    "conditions", "drugs", "arms", "endpoints", "eligibility", "outcomes", "study_ids",
    "study_references", "adverse_events", "disposition",
)
