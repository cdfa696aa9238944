"""ClinicalTrials.gov ingest end to end on real Spark + Delta + an MLflow server, over the fixtures.

The fixtures (tests/fixtures/ctgov, written by make_ctgov_fixtures.py) hold every envelope: a single
pretty-printed study, a search page, a website JSON array, JSON lines with a truncated line and a newer
version of a study, a sharded bulk zip, and bad records.
"""

from __future__ import annotations

import copy
import json
from datetime import date

import mlflow
import pytest
from pyspark.sql import functions as F

from tests.conftest import FIXTURES, run_named_job
from trialpanorama import lake
from trialpanorama.sources import ctgov

CTGOV = FIXTURES / "ctgov"



def run_ingest(lake_root, *inputs: str) -> dict:
    return run_named_job("ingest_ctgov", lake_root, "--input", *inputs)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, mlflow_server, spark):
    root = tmp_path_factory.mktemp("ctgov") / "lake"
    summary = run_ingest(root, str(CTGOV))
    return root, summary


def table(spark, root, name):
    return lake.read_named(spark, str(root), name)


def test_counts_reconcile_and_every_bad_record_has_a_reason(ingested, spark):
    root, s = ingested
    assert s["records_in"] == 20
    assert s["records_in"] == s["accepted"] + s["rejected"]
    assert s["accepted_detail"] == {"new": 13, "updated": 0, "unchanged": 0, "superseded": 1}
    assert s["rejected_by_reason"] == {
        "invalid JSON": 2,  # the truncated file and the truncated JSON line
        "legacy classic API format": 1,
        "malformed NCT id: NCT123": 1,
        "missing NCT id (protocolSection.identificationModule.nctId)": 1,
        "wrong field types in protocolSection.designModule": 1,
    }
    rejects = table(spark, root, "rejects").collect()
    assert len(rejects) == 6
    assert all(r.source == "ctgov" and r.raw and r.reason and r.source_file for r in rejects)
    truncated = [r for r in rejects if r.source_file.endswith("truncated.json")]
    assert truncated and truncated[0].raw.startswith("{")
    assert table(spark, root, "studies").count() == 13 == table(spark, root, "ctgov_raw").count()


def test_every_envelope_is_read(ingested, spark):
    root, _ = ingested
    env = {r.nct_id: (r.envelope, r.source_file) for r in table(spark, root, "ctgov_raw").collect()}
    assert env["NCT90000001"][0] == "single"
    assert env["NCT90000003"][0] == "page"
    assert env["NCT90000005"][0] == "array"
    assert env["NCT90000007"][0] == "jsonl"
    assert env["NCT90000002"][0] == "jsonl"  # the newer version from the JSON-lines file won
    assert env["NCT90000012"][0] == "single" and env["NCT90000012"][1].endswith("ctg-studies.json.zip!/12/NCT90000012.json")


def test_study_fields_are_normalized(ingested, spark):
    root, _ = ingested
    st = {r.study_id: r for r in table(spark, root, "studies").collect()}
    s1 = st["NCT90000001"]
    assert (s1.study_source, s1.phase, s1.study_type) == ("ClinicalTrials.gov", "PHASE2/PHASE3", "INTERVENTIONAL")
    assert (s1.start_date, s1.start_date_precision, s1.start_year) == (date(2016, 3, 1), "month", 2016)
    assert (s1.completion_date, s1.completion_date_precision) == (date(2019, 11, 30), "day")
    assert (s1.enrollment, s1.enrollment_type, s1.actual_accrual, s1.target_accrual) == (120, "ACTUAL", 120, None)
    assert (s1.allocation, s1.masking, s1.number_of_arms, s1.has_results) == ("RANDOMIZED", "DOUBLE", 2, True)
    assert (s1.min_age, s1.max_age, s1.sex) == (18.0, 75.0, "ALL")
    assert st["NCT90000002"].enrollment == 76 and st["NCT90000002"].recruitment_status == "COMPLETED"
    s3 = st["NCT90000003"]
    assert (s3.start_date, s3.start_date_precision, s3.why_stopped) == (date(2018, 1, 1), "year", "Slow accrual")
    s4 = st["NCT90000004"]
    assert (s4.start_date_precision, s4.max_age, s4.target_accrual, s4.actual_accrual) == ("day", None, 200, None)
    assert s4.countries == ["France", "Germany"]
    assert st["NCT90000005"].min_age == pytest.approx(0.5, abs=1e-6)
    assert st["NCT90000002"].phase == "NA"


def test_child_tables(ingested, spark):
    root, _ = ingested
    cond = table(spark, root, "conditions").where("study_id = 'NCT90000001'").collect()
    assert {(c.condition_name, c.origin, c.condition_mesh_id) for c in cond} == {
        ("Type 2 Diabetes", "registry", None), ("Diabetes Mellitus, Type 2", "ctgov_derived", "D003924")}
    drugs = table(spark, root, "drugs").where("study_id = 'NCT90000001' AND origin = 'registry'").collect()
    assert [(d.drug_name, d.intervention_type, d.other_names) for d in drugs] == [("Metformin", "DRUG", ["Glucophage"])]
    elig = {r.study_id: r for r in table(spark, root, "eligibility").collect()}
    assert elig["NCT90000001"].inclusion_criteria == ["Adults with type 2 diabetes", "HbA1c between 7% and 10%"]
    assert elig["NCT90000001"].exclusion_criteria == ["Type 1 diabetes", "eGFR < 30 mL/min"]
    assert elig["NCT90000006"].inclusion_criteria == ["Adults hospitalized with pneumonia", "No prior antibiotics"]
    assert elig["NCT90000006"].exclusion_criteria is None
    ends = table(spark, root, "endpoints").where("study_id = 'NCT90000001'").orderBy("endpoint_type", "seq").collect()
    assert [(e.endpoint_type, e.seq, e.measure) for e in ends] == [
        ("primary", 1, "Change in HbA1c"), ("secondary", 1, "Fasting plasma glucose"), ("secondary", 2, "Body weight")]
    ids = {(r.id_value, r.id_source, r.id_type) for r in table(spark, root, "study_ids").where("study_id='NCT90000001'").collect()}
    assert ("2015-004321-12", "secondary_id", "EUDRACT_NUMBER") in ids and ("EX-0001", "org_study_id", None) in ids
    out = {r.study_id: (r.outcome_type, r.why_terminated) for r in table(spark, root, "outcomes").collect()}
    assert out["NCT90000003"] == ("terminated", "Slow accrual") and out["NCT90000005"][0] == "withdrawn"
    disp = {r.intervention_name: r.number_of_subjects for r in table(spark, root, "disposition").collect()}
    assert disp == {"Metformin": 61, "Placebo": 59}
    ae = {(r.adverse_event_name, r.is_serious): (r.num_affected, r.num_at_risk) for r in table(spark, root, "adverse_events").collect()}
    assert ae == {("Lactic acidosis", True): (1, 120), ("Diarrhoea", False): (11, 120)}
    refs = table(spark, root, "study_references").where("study_id='NCT90000001'").collect()
    assert [(r.pmid, r.reference_type) for r in refs] == [("31234567", "RESULT")]


def test_contact_persons_do_not_reach_silver(ingested, spark):
    root, _ = ingested
    raw = table(spark, root, "ctgov_raw").where("nct_id = 'NCT90000001'").first().raw
    assert "jane.roe@example.org" in raw  # bronze keeps the record as received
    for name in ("studies", "conditions", "drugs", "arms", "eligibility", "study_ids", "study_references"):
        text = table(spark, root, name).select(F.to_json(F.struct("*")).alias("j"))
        assert text.where(F.col("j").contains("jane.roe") | F.col("j").contains("555-0100")).count() == 0, name


def test_rerun_changes_nothing(ingested, spark):
    root, first = ingested
    before = {n: lake.table_version(spark, lake.table_uri(str(root), n)) for n in first["tables"]}
    snapshot = sorted(r.asDict().__repr__() for r in table(spark, root, "studies").collect())
    again = run_ingest(root, str(CTGOV))
    assert again["accepted_detail"] == {"new": 0, "updated": 0, "unchanged": 13, "superseded": 1}
    assert again["tables"] == {}
    after = {n: lake.table_version(spark, lake.table_uri(str(root), n)) for n in first["tables"]}
    assert after == before
    assert sorted(r.asDict().__repr__() for r in table(spark, root, "studies").collect()) == snapshot
    assert table(spark, root, "rejects").count() == 6


def test_newer_version_replaces_older_and_older_is_ignored(ingested, spark, tmp_path):
    root, _ = ingested
    record = json.loads((CTGOV / "single" / "NCT90000001.json").read_text())
    older = copy.deepcopy(record)
    older["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] = "2019-01-01"
    older["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = 999
    (tmp_path / "older.json").write_text(json.dumps(older))
    s = run_ingest(root, str(tmp_path / "older.json"))
    assert s["accepted_detail"]["superseded"] == 1 and s["tables"] == {}
    newer = copy.deepcopy(record)
    newer["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] = "2025-06-01"
    newer["protocolSection"]["conditionsModule"]["conditions"] = ["Prediabetes"]
    newer["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = 130
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    s = run_ingest(root, str(tmp_path / "newer.json"))
    assert s["accepted_detail"]["updated"] == 1
    st = table(spark, root, "studies").where("study_id = 'NCT90000001'").collect()
    assert len(st) == 1 and st[0].enrollment == 130
    names = {r.condition_name for r in table(spark, root, "conditions")
             .where("study_id = 'NCT90000001' AND origin = 'registry'").collect()}
    assert names == {"Prediabetes"}
    assert table(spark, root, "studies").groupBy("study_id").count().where("count > 1").count() == 0


def test_job_is_logged_to_mlflow(ingested, mlflow_server):
    _, s = ingested
    run = mlflow.MlflowClient(mlflow_server).get_run(s["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["job"] == "ingest_ctgov"
    assert str(CTGOV) in run.data.params["inputs"]
    assert run.data.metrics["records_in"] == 20 and run.data.metrics["rejected"] == 6
    assert run.data.metrics["studies.inserted"] == 13
    assert run.data.tags["delta.studies.version"] == "0" and run.data.tags["delta.rejects.version"] == "0"
    exp = mlflow.MlflowClient(mlflow_server).get_experiment(run.info.experiment_id)
    assert exp.name == "pipeline"


def test_missing_input_is_a_user_error(tmp_path, mlflow_server, spark):
    with pytest.raises(FileNotFoundError):
        run_ingest(tmp_path / "lake", str(tmp_path / "does-not-exist"))


def test_unreadable_zip_is_rejected_not_fatal(tmp_path, mlflow_server, spark):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    s = run_ingest(tmp_path / "lake", str(tmp_path / "broken.zip"))
    assert s["records_in"] == 1 and s["rejected"] == 1
    assert next(iter(s["rejected_by_reason"])).startswith("unreadable zip archive")


def test_split_envelopes_handles_empty_page_and_pretty_single(spark):
    texts = spark.createDataFrame(
        [("a.json", "whole", '{"studies": [], "nextPageToken": null}'),
         ("b.json", "whole", '{\n  "protocolSection": {"identificationModule": {"nctId": "NCT00000001"}}\n}\n')],
        "source_file STRING, kind STRING, text STRING")
    rows = ctgov.split_envelopes(texts).collect()
    assert [(r.source_file, r.envelope) for r in rows] == [("b.json", "single")]
