"""The six real ClinicalTrials.gov API v2 records in ../shared/data/ctgov, ingested and checked for facts."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import SHARED_DATA
from tests.test_ctgov_ingest import run_ingest
from trialpanorama import lake

REAL = SHARED_DATA / "ctgov"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real records folder {REAL} is absent")


@pytest.fixture(scope="module")
def real_lake(tmp_path_factory, mlflow_server, spark):
    root = tmp_path_factory.mktemp("real") / "lake"
    summary = run_ingest(root, str(REAL))
    return str(root), summary


def test_all_six_real_records_are_accepted(real_lake):
    _, s = real_lake
    assert (s["records_in"], s["accepted"], s["rejected"]) == (6, 6, 0)


def test_completed_phase3_trial_facts(real_lake, spark):
    root, _ = real_lake
    st = lake.read_named(spark, root, "studies").where("study_id = 'NCT02552212'").first()
    assert (st.recruitment_status, st.phase, st.study_type) == ("COMPLETED", "PHASE3", "INTERVENTIONAL")
    assert (st.enrollment, st.enrollment_type, st.actual_accrual) == (317, "ACTUAL", 317)
    assert (st.start_date, st.start_date_precision) == (date(2015, 9, 1), "month")
    assert st.has_results is True
    ids = lake.read_named(spark, root, "study_ids").where("study_id = 'NCT02552212'").collect()
    assert ("2015-001894-41", "EUDRACT_NUMBER") in {(r.id_value, r.id_type) for r in ids}
    ae = lake.read_named(spark, root, "adverse_events").where("study_id = 'NCT02552212'")
    assert ae.where("is_serious").count() > 0 and ae.where("NOT is_serious").count() > 0
    disp = {r.intervention_name: r.number_of_subjects
            for r in lake.read_named(spark, root, "disposition").where("study_id = 'NCT02552212'").collect()}
    assert disp["Placebo"] == 158 and disp["CZP 200 mg Q2W"] == 159


def test_withdrawn_trial_facts(real_lake, spark):
    root, _ = real_lake
    st = lake.read_named(spark, root, "studies").where("study_id = 'NCT00973089'").first()
    assert st.recruitment_status == "WITHDRAWN" and st.enrollment == 0 and st.why_stopped
    out = lake.read_named(spark, root, "outcomes").where("study_id = 'NCT00973089'").first()
    assert out.outcome_type == "withdrawn" and out.why_terminated == st.why_stopped


def test_partial_record_is_a_valid_study_with_nulls(real_lake, spark):
    root, _ = real_lake
    st = lake.read_named(spark, root, "studies").where("study_id = 'NCT03453554'").first()
    assert st.title and st.phase is None and st.enrollment is None and st.start_date is None


def test_other_real_shapes(real_lake, spark):
    root, _ = real_lake
    st = {r.study_id: r for r in lake.read_named(spark, root, "studies").collect()}
    assert st["NCT05594173"].study_type == "OBSERVATIONAL" and st["NCT05594173"].has_results is True
    assert st["NCT06171568"].recruitment_status == "NOT_YET_RECRUITING"
    ids = lake.read_named(spark, root, "study_ids").where("study_id = 'NCT06171568'").collect()
    assert ("2023-A00386-39", "OTHER", "IDRCB") in {(r.id_value, r.id_type, r.id_domain) for r in ids}
    assert st["NCT04207047"].recruitment_status == "UNKNOWN"
    # ctgov's zero-padded MeSH ids are printed as MeSH spells them
    mesh = {r.condition_name: r.condition_mesh_id
            for r in lake.read_named(spark, root, "conditions").where("origin = 'ctgov_derived'").collect()}
    assert mesh["Dental Caries"] == "D003731"  # D000003731 in the API
    assert mesh["Spondylarthritis"] == "D025241"
    assert mesh["Axial Spondyloarthritis"] == "D000089183"  # a genuinely 9-digit UI stays
