"""Import of the published TrialPanorama database (parquet) on real Spark + Delta + an MLflow server.

The fixtures (tests/fixtures/panorama, written by make_panorama_fixtures.py) follow the published tables
and columns, with `studies` split in two files of different schemas, registry spellings of phases and
statuses, and bad rows.
"""

from __future__ import annotations

import importlib.util
import shutil
from datetime import date

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import FIXTURES, run_named_job
from tests.test_ctgov_ingest import run_ingest as run_ctgov
from trialpanorama import lake
from trialpanorama.sources import panorama

PANORAMA = FIXTURES / "panorama"


def _load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_import(lake_root, *inputs: str) -> dict:
    return run_named_job("import_panorama", lake_root, "--input", *inputs)


@pytest.fixture(scope="module")
def imported(tmp_path_factory, mlflow_server, spark):
    root = tmp_path_factory.mktemp("panorama") / "lake"
    return root, run_import(root, str(PANORAMA))


def table(spark, root, name):
    return lake.read_named(spark, str(root), name)


def test_counts_reconcile_and_bad_rows_are_rejected(imported, spark):
    root, s = imported
    assert s["rows_read"] == {"adverse_events": 2, "biomarkers": 1, "conditions": 8, "disposition": 2, "drugs": 4,
                              "endpoints": 3, "outcomes": 3, "relations": 6, "results": 2, "studies": 7}
    # records: 6 studies rows with an id, 1 study_id with child rows only, 2 rows without a study_id
    assert (s["records_in"], s["accepted"], s["rejected"]) == (9, 6, 3)
    assert s["records_in"] == s["accepted"] + s["rejected"]
    # NCT80000001 is in both studies files: one record supersedes the other
    assert s["accepted_detail"] == {"new": 5, "updated": 0, "unchanged": 0, "superseded": 1}
    assert s["rejected_by_reason"] == {"missing study_id (conditions)": 1, "missing study_id (studies)": 1,
                                       "no studies row for this study_id (rows in: conditions)": 1}
    assert s["relations"] == {"rows_in": 6, "accepted": 5, "rejected": 1, "new": 4}
    rejects = table(spark, root, "rejects").collect()
    assert len(rejects) == 4 and all(r.source == "panorama" and r.raw and r.reason and r.source_file for r in rejects)
    orphan = [r for r in rejects if r.reason.startswith("no studies row")][0]
    assert "Asthma" in orphan.raw and orphan.source_file.endswith("conditions.parquet")
    assert table(spark, root, "studies").count() == 5 == table(spark, root, "panorama_raw").count()


def test_files_and_columns_are_accounted_for(imported):
    _, s = imported
    assert s["files"] == 11
    assert {k.rsplit("/", 1)[-1]: v.split(":")[0] for k, v in s["skipped_files"].items()} == {
        "README.md": "not a parquet file", "drug_moa.parquet": "not imported"}
    assert s["unmapped_columns"] == {"drugs": ["drug_moa_id", "ema_approved", "fda_approved", "rx_mapping_id"],
                                     "endpoints": ["primary_endpoint_domain", "primary_endpoint_subdomain"],
                                     "studies": ["trial_type"]}
    assert s["missing_columns"] == {}


def test_studies_are_mapped_and_normalized(imported, spark):
    root, _ = imported
    st = {r.study_id: r for r in table(spark, root, "studies").collect()}
    chi = st["ChiCTR2000012345"]
    assert (chi.study_source, chi.study_type, chi.phase, chi.recruitment_status) == (
        "ChiCTR", "INTERVENTIONAL", "PHASE2/PHASE3", "RECRUITING")
    assert (chi.target_accrual, chi.actual_accrual, chi.enrollment, chi.enrollment_type) == (120, None, 120, "ESTIMATED")
    assert (chi.start_year, chi.start_date, chi.start_date_precision) == (2020, date(2020, 1, 1), "year")
    assert (chi.min_age, chi.max_age, chi.sex, chi.healthy_volunteers) == (18.0, 65.0, "ALL", True)
    assert chi.source_version == "panorama|2025-05" and chi.record_hash
    eu = st["EUCTR2015-001234-56-GB"]
    assert (eu.phase, eu.recruitment_status, eu.min_age, eu.max_age, eu.sex) == (
        "PHASE2", "ACTIVE_NOT_RECRUITING", 18.0, None, "FEMALE")
    isrctn = st["ISRCTN11111111"]  # from studies_part_2.parquet: numeric ages, boolean healthy volunteers
    assert (isrctn.phase, isrctn.min_age, isrctn.max_age, isrctn.healthy_volunteers, isrctn.study_type) == (
        "NA", 0.5, 17.0, True, "OBSERVATIONAL")
    assert isrctn.abstract is None
    nct = st["NCT90000001"]
    assert (nct.phase, nct.actual_accrual, nct.enrollment_type, nct.healthy_volunteers) == (
        "PHASE2/PHASE3", 120, "ACTUAL", False)
    assert st["NCT80000001"].title == "Semaglutide in Adults with Obesity"


def test_child_tables(imported, spark):
    root, _ = imported
    cond = {(r.study_id, r.condition_name): (r.condition_mesh_id, r.origin, r.link_method)
            for r in table(spark, root, "conditions").collect()}
    assert cond[("NCT80000001", "Obesity")] == ("D009765", "panorama", "panorama")
    assert cond[("ISRCTN11111111", "Vision screening")] == (None, "panorama", None)
    assert "NCT80009999" not in {k[0] for k in cond}
    drugs = {r.drug_name: r for r in table(spark, root, "drugs").collect()}
    assert (drugs["Herceptin"].rx_normalized_name, drugs["Herceptin"].drugbank_id, drugs["Herceptin"].drug_mesh_id) == (
        "trastuzumab", "DB00072", "D000068878")
    ends = table(spark, root, "endpoints").where("study_id = 'NCT80000001'").orderBy("seq").collect()
    assert [(e.endpoint_type, e.seq, e.measure) for e in ends] == [("primary", 1, "Change in body weight"),
                                                                   ("primary", 2, "HbA1c")]
    out = {r.study_id: (r.overall_status, r.outcome_type, r.why_terminated) for r in table(spark, root, "outcomes").collect()}
    assert out["EUCTR2015-001234-56-GB"] == ("TERMINATED", "terminated", "Slow accrual")
    disp = {r.group_id: (r.group_type, r.intervention_name, r.number_of_subjects)
            for r in table(spark, root, "disposition").collect()}
    assert disp == {"G1": ("EXPERIMENTAL", "Semaglutide", 300), "G2": ("PLACEBO_COMPARATOR", "Placebo", 300)}
    res = {r.group_type: r.interventions for r in table(spark, root, "results").collect()}
    assert res["EXPERIMENTAL"] == "Semaglutide 2.4 mg weekly; Lifestyle counselling"
    ae = {r.adverse_event_name: (r.is_serious, r.meddra_id) for r in table(spark, root, "adverse_events").collect()}
    assert ae == {"Nausea": (False, "10028813"), "Pancreatitis acute": (True, "10033647")}
    bio = table(spark, root, "biomarkers").first()
    assert (bio.biomarker_name, bio.biomarker_genes) == ("HER2", "ERBB2")
    rel = {(r.head_id, r.tail_id, r.relation_type) for r in table(spark, root, "panorama_relations").collect()}
    assert ("NCT90000001", "31234567", "has_result") in rel and len(rel) == 4
    raw = table(spark, root, "panorama_raw").where("study_id = 'NCT80000001'").first().raw
    assert '"trial_type":"drug"' in raw and '"primary_endpoint_domain":"efficacy"' in raw  # bronze keeps it all


def test_rerun_changes_nothing(imported, spark):
    root, first = imported
    before = {n: lake.table_version(spark, lake.table_uri(str(root), n)) for n in first["tables"]}
    again = run_import(root, str(PANORAMA))
    assert again["accepted_detail"] == {"new": 0, "updated": 0, "unchanged": 5, "superseded": 1}
    assert again["relations"]["new"] == 0 and again["tables"] == {}
    assert {n: lake.table_version(spark, lake.table_uri(str(root), n)) for n in first["tables"]} == before
    assert table(spark, root, "rejects").count() == 4


def test_newer_release_replaces_a_study_but_never_a_registry_record(imported, spark, tmp_path):
    root, _ = imported
    run_ctgov(root, str(FIXTURES / "ctgov" / "single"))  # NCT90000001 from ClinicalTrials.gov itself
    fx = _load("make_panorama_fixtures", FIXTURES / "make_panorama_fixtures.py")
    tables = fx.tables()
    part1 = pq.read_table(PANORAMA / "studies.parquet").to_pylist()
    part1[1]["title"] = "Acupuncture for Migraine Prophylaxis (updated)"
    part2 = pq.read_table(PANORAMA / "studies_part_2.parquet").to_pylist()
    part2[1]["title"] = "A published title that must not replace the registry's"
    conds = [r for r in fx.CONDITIONS if r[0] != "ChiCTR2000012345"] + [("ChiCTR2000012345", "Headache", "D006261", "x")]
    tables["studies.parquet"] = pa.Table.from_pylist(part1, schema=fx.STUDIES)
    tables["studies_part_2.parquet"] = pa.Table.from_pylist(part2, schema=fx.STUDIES_PART_2)
    tables["conditions.parquet"] = fx._table(conds, ["study_id", "condition_name", "condition_mesh_id",
                                                     "condition_mesh_type"], [fx.S] * 4)
    newer = tmp_path / "release2"
    fx.write(newer, tables_=tables)
    s = run_import(root, str(newer))
    assert s["accepted_detail"] == {"new": 0, "updated": 2, "unchanged": 3, "superseded": 1}
    assert s["kept_registry_version"] == 1
    st = {r.study_id: r for r in table(spark, root, "studies").collect()}
    assert st["ChiCTR2000012345"].title == "Acupuncture for Migraine Prophylaxis (updated)"
    assert st["NCT90000001"].title == "Metformin Versus Placebo in Early Type 2 Diabetes"
    assert not st["NCT90000001"].source_version.startswith("panorama|")  # still the ClinicalTrials.gov record
    names = {r.condition_name for r in table(spark, root, "conditions").where("study_id = 'ChiCTR2000012345'").collect()}
    assert names == {"Headache"}  # child rows replaced, not added to
    shutil.rmtree(newer)


def test_job_is_logged_to_mlflow(imported, mlflow_server):
    _, s = imported
    run = mlflow.MlflowClient(mlflow_server).get_run(s["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["job"] == "import_panorama"
    m = run.data.metrics
    assert (m["records_in"], m["accepted"], m["rejected"], m["relations_new"]) == (9, 6, 3, 4)
    assert run.data.tags["delta.studies.version"] == "0" and run.data.tags["delta.panorama_raw.version"] == "0"
    assert run.data.tags["delta.panorama_relations.version"] == "0"
    assert run.data.tags["delta.rejects.version"] == "1"  # study rejects, then the relation reject


def test_file_names_map_to_tables():
    known = {"studies", "conditions", "adverse_events"}
    assert panorama.table_of("file:/d/studies_part_2.parquet", known) == "studies"
    assert panorama.table_of("s3a://b/db/conditions-00001-of-00003.parquet", known) == "conditions"
    assert panorama.table_of("file:/d/adverse_events/train/0000.parquet", known) == "adverse_events"
    assert panorama.table_of("file:/d/notes.parquet", known) is None
