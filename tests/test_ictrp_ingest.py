"""WHO ICTRP ingest end to end on real Spark + Delta + an MLflow server, over the fixtures.

The fixtures (tests/fixtures/ictrp, see its README) hold all four shapes: the no-header full export, the header
CSV variant, the search-portal XML and the registry feed XML, plus a broken XML file and bad CSV rows. One
module-scoped ingest feeds most tests; the rerun and member-state update tests then run in file order on the
same lake, as in test_ctgov_ingest.py.
"""

from __future__ import annotations

import json
from datetime import date

import mlflow
import pytest
from pyspark.sql import functions as F

from tests.conftest import FIXTURES, run_named_job
from trialpanorama import lake
from trialpanorama.sources import ictrp_formats

ICTRP = FIXTURES / "ictrp"
EUCTR = "EUCTR2015-004321-12"


def run_ingest(lake_root, *inputs: str) -> dict:
    return run_named_job("ingest_ictrp", lake_root, "--input", *inputs)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, mlflow_server, spark):
    root = tmp_path_factory.mktemp("ictrp") / "lake"
    return root, run_ingest(root, str(ICTRP))


def table(spark, root, name):
    return lake.read_named(spark, str(root), name)


def rows_by(spark, root, name, key="study_id"):
    return {r[key]: r for r in table(spark, root, name).collect()}


def test_counts_reconcile_and_every_reject_has_a_reason(ingested, spark):
    root, s = ingested
    assert (s["records_in"], s["accepted"], s["rejected"]) == (27, 23, 4)
    assert s["accepted_detail"] == {"new": 23, "updated": 0, "unchanged": 0, "superseded": 0}
    reasons = s["rejected_by_reason"]
    xml_reason = next(r for r in reasons if r.startswith("unparseable XML: "))
    assert reasons == {
        "wrong column count: 62 (expected 63)": 1,
        "impossible date in date_registration: 31/02/2020": 1,
        "unknown registry id: XYZR-2024-0001": 1,
        xml_reason: 1,
    }
    rejects = {r.reason: r for r in table(spark, root, "rejects").collect()}
    assert len(rejects) == 4 and all(r.source == "ictrp" and r.raw and r.source_file for r in rejects.values())
    broken = rejects[xml_reason]
    assert broken.source_file.endswith("broken_truncated.xml") and "A download that stopped half way" in broken.raw
    assert rejects["wrong column count: 62 (expected 63)"].raw.startswith('"SLCTR/2023/010",')
    # 23 accepted = 20 studies + NCT90000003 (bronze only) + 2 more EU CTR member states of one study
    assert table(spark, root, "ictrp_raw").count() == 23
    assert table(spark, root, "studies").count() == 20


def test_every_format_is_read(ingested, spark):
    root, s = ingested
    assert s["formats"] == {"csv_header": 1, "export": 1, "feed_xml": 1, "portal_xml": 2}
    raw = rows_by(spark, root, "ictrp_raw", key="trial_id")
    shapes = {t: raw[t].source_format for t in
              ("EUCTR2015-004321-12-DE", "KCT0008394", "EUCTR2015-004321-12-NL", "RBR-74547s2")}
    assert shapes == {"EUCTR2015-004321-12-DE": "export", "KCT0008394": "csv_header",
                      "EUCTR2015-004321-12-NL": "portal_xml", "RBR-74547s2": "feed_xml"}
    export_fields = json.loads(raw["IRCT20080904001199N7"].raw)
    assert len(export_fields) == 63 and export_fields[0] == "IRCT20080904001199N7" and export_fields[2] is None
    header = json.loads(raw["ChiCTR2000030001"].raw)
    assert header["Extra notes (not an ICTRP column)"] == "ignored"  # unknown column kept in bronze
    assert header["Inclusion Criteria"] == "1. Confirmed COVID-19 pneumonia;\n2. Aged 18 to 75 years;"
    assert raw["ChiCTR2000029308"].raw.startswith("<Trial>") and raw["RBR-6qvdftm"].raw.startswith("<trial>")
    assert raw["EUCTR2015-004321-12-DE"].source_version == "2025-02-17"  # Last_Refreshed_on as ISO
    assert raw["RBR-74547s2"].source_version == ""  # the feed has no refresh date


def test_vocabularies_are_mapped_per_registry(ingested, spark):
    root, _ = ingested
    st = rows_by(spark, root, "studies")
    got = {sid: (r.study_source, r.phase, r.recruitment_status, r.study_type, r.sex) for sid, r in st.items()}
    assert got[EUCTR] == ("EU CTR", "PHASE2/PHASE3", "ACTIVE_NOT_RECRUITING", "INTERVENTIONAL", "ALL")
    assert got["CTIS2023-501234-11-00"] == ("CTIS", "PHASE1", "RECRUITING", "INTERVENTIONAL", "ALL")
    assert got["ISRCTN10175490"] == ("ISRCTN", "NA", "COMPLETED", "INTERVENTIONAL", "ALL")
    assert got["CTRI/2023/04/052053"] == ("CTRI", "NA", "RECRUITING", "INTERVENTIONAL", "ALL")
    assert got["DRKS00031815"] == ("DRKS", "PHASE2", "RECRUITING", "INTERVENTIONAL", "ALL")
    assert got["JPRN-UMIN000049383"] == ("JPRN", "PHASE3", "COMPLETED", "INTERVENTIONAL", "FEMALE")
    assert got["IRCT20080904001199N7"] == ("IRCT", "PHASE2/PHASE3", "ACTIVE_NOT_RECRUITING", "INTERVENTIONAL", "ALL")
    assert got["ChiCTR2000030001"] == ("ChiCTR", "NA", "RECRUITING", "INTERVENTIONAL", "ALL")
    assert got["ChiCTR2000029308"][1] == "PHASE4"
    assert got["RBR-6qvdftm"] == ("ReBEC", "PHASE3", "WITHDRAWN", "INTERVENTIONAL", "ALL")  # ReBEC's "B"
    assert got["RPCEC00000423"][1:3] == ("PHASE4", "NOT_YET_RECRUITING")
    assert got["PACTR202304525632216"][2] == "RECRUITING"  # the export's """Recruiting"""
    assert {r.study_source for r in st.values()} >= {"ANZCTR", "CRiS", "LBCTR", "REPEC", "TCTR", "ITMCTR"}
    assert not any(sid.startswith("NCT") for sid in st)


def test_ages_dates_and_sizes_are_normalized(ingested, spark):
    root, _ = ingested
    st = rows_by(spark, root, "studies")
    ages = {sid: (st[sid].min_age, st[sid].max_age) for sid in
            ("CTRI/2023/04/052053", "JPRN-UMIN000049383", "JPRN-jRCTs041220087", "KCT0008394", "RBR-74547s2")}
    assert ages == {"CTRI/2023/04/052053": (30.0, 65.0), "JPRN-UMIN000049383": (20.0, 45.0),
                    "JPRN-jRCTs041220087": (20.0, 45.0), "KCT0008394": (19.0, 80.0), "RBR-74547s2": (18.0, None)}
    assert st["RBR-6qvdftm"].min_age == pytest.approx(0.5, abs=1e-6)  # "6M"
    assert st["ACTRN12625000115437"].max_age is None  # "No limit"
    eu = st[EUCTR]
    assert (eu.first_submitted_date, eu.last_update_date) == (date(2016, 1, 14), date(2025, 2, 17))
    assert (eu.start_date, eu.start_date_precision, eu.start_year, eu.start_date_type) == (date(2016, 3, 1), "day", 2016, "ACTUAL")
    assert st["JPRN-UMIN000049383"].first_submitted_date == date(2022, 11, 8)  # 2022/11/08
    assert (st["KCT0008394"].start_date, st["KCT0008394"].start_date_precision) == (date(2023, 5, 1), "month")
    assert st["ChiCTR2000029308"].first_submitted_date == date(2020, 1, 23)
    isrctn = st["ISRCTN10175490"]
    assert (isrctn.enrollment, isrctn.enrollment_type, isrctn.actual_accrual, isrctn.target_accrual) == (76, "ACTUAL", 76, 80)
    assert (isrctn.completion_date, isrctn.has_results) == (date(2018, 11, 30), True)
    sizes = {sid: (st[sid].target_accrual, st[sid].enrollment_type) for sid in
             (EUCTR, "CTRI/2023/04/052053", "ChiCTR2000030001", "ChiCTR2000029308")}
    assert sizes == {EUCTR: (120, "ESTIMATED"), "CTRI/2023/04/052053": (200, "ESTIMATED"),
                     "ChiCTR2000030001": (200, "ESTIMATED"), "ChiCTR2000029308": (160, "ESTIMATED")}
    design = (eu.allocation, eu.masking, eu.intervention_model)
    assert design == ("RANDOMIZED", "DOUBLE", "PARALLEL")
    assert st["KCT0008394"].masking == "QUADRUPLE" and st["ACTRN12625000115437"].primary_purpose == "TREATMENT"


def test_unmapped_values_are_kept_verbatim_and_counted(ingested, spark):
    root, s = ingested
    assert s["unmapped_values"] == {"phase": {"Pilot clinical trial": 1}, "study_type": {"Basic Science": 1}}
    itm = rows_by(spark, root, "studies")["ITMCTR2023000002"]
    assert (itm.phase, itm.study_type, itm.recruitment_status) == ("Pilot clinical trial", "Basic Science", "RECRUITING")


def test_eu_ctr_member_states_are_one_study(ingested, spark):
    root, _ = ingested
    st = table(spark, root, "studies").where(F.col("study_id").startswith("EUCTR")).collect()
    assert [r.study_id for r in st] == [EUCTR]
    assert st[0].countries == ["France", "Germany", "Netherlands"]  # DE + FR from the CSV, NL from the XML
    members = table(spark, root, "ictrp_raw").where(F.col("study_id") == EUCTR).collect()
    assert sorted(r.member_state for r in members) == ["DE", "FR", "NL"]
    ids = table(spark, root, "study_ids").where(f"study_id = '{EUCTR}' AND id_type = 'EUCTR_MEMBER_STATE'").collect()
    assert sorted(r.id_value for r in ids) == [f"{EUCTR}-DE", f"{EUCTR}-FR", f"{EUCTR}-NL"]


def test_secondary_ids_utn_bridges_and_grants(ingested, spark):
    root, _ = ingested
    ids = {(r.study_id, r.id_value): (r.id_source, r.id_type, r.id_domain)
           for r in table(spark, root, "study_ids").where("id_source <> 'ictrp_bridge'").collect()}
    bridges = {(r.study_id, r.id_value, r.id_type) for r in
               table(spark, root, "study_ids").where("id_source = 'ictrp_bridge'").collect()}
    assert ids[(EUCTR, "NCT90000001")] == ("secondary_id", "REGISTRY", "ClinicalTrials.gov")
    assert ids[(EUCTR, "EX-0001")] == ("secondary_id", "OTHER", None)
    assert ids[("CTIS2023-501234-11-00", "NCT90000004")][1:] == ("REGISTRY", "ClinicalTrials.gov")
    assert ids[("TCTR20230512003", "NCT90000006")][1] == "REGISTRY"  # portal <SecondaryIDs> element
    # the UTN shared by the ANZCTR and ReBEC registrations of one trial
    assert ids[("RBR-74547s2", "U1111-1342-6778")] == ("utn", "UTN", "WHO UTN")
    assert ids[("ACTRN12625000115437", "U1111-1342-6778")][1] == "UTN"
    assert ids[("RBR-74547s2", "ACTRN12625000115437")] == ("secondary_id", "REGISTRY", "ANZCTR")
    assert ids[("RBR-74547s2", "71234523.4.0000.5327")] == ("secondary_id", "OTHER", "Plataforma Brasil")
    assert ids[("JPRN-jRCTs041220087", "UMIN000049383")][1:] == ("REGISTRY", "JPRN")
    # the shared NIH grant is typed as a grant in both unrelated trials
    assert ids[("CTRI/2023/04/052053", "P60DK020579")][1] == "NIH"
    assert ids[("DRKS00031815", "P60DK020579")][1] == "NIH"
    assert bridges == {(EUCTR, "NCT90000001", "BRIDGE_PARENT"),
                       ("JPRN-UMIN000049383", "JPRN-jRCTs041220087", "BRIDGE_CHILD")}
    values = {v for _, v in ids}
    assert "Nil known" not in values and "JPRN-UMIN000049383" not in values  # null words and own ids dropped


def test_child_tables(ingested, spark):
    root, _ = ingested
    cond = {(r.condition_name, r.origin) for r in table(spark, root, "conditions").where(f"study_id = '{EUCTR}'").collect()}
    assert cond == {("Type 2 diabetes mellitus", "registry"), ("Type 2 diabetes mellitus", "registry_meddra")}
    eu_drugs = table(spark, root, "drugs").where(f"study_id = '{EUCTR}'").collect()
    assert [(d.drug_name, d.intervention_type, sorted(d.other_names)) for d in eu_drugs] == [
        ("Metformin", "DRUG", ["Glucophage", "METFORMIN HYDROCHLORIDE"])]
    chictr = {(d.drug_name, tuple(d.arm_labels or ())) for d in
              table(spark, root, "drugs").where("study_id = 'ChiCTR2000030001'").collect()}
    assert chictr == {("Favipiravir tablets", ("Case series",)), ("Standard treatment", ("Control group",))}
    typed = {d.drug_name: d.intervention_type for d in table(spark, root, "drugs").where("study_id = 'KCT0008394'").collect()}
    assert typed == {"Multi-strain probiotic capsule": "DIETARY_SUPPLEMENT", "Placebo capsule": "OTHER"}
    ends = table(spark, root, "endpoints").where(f"study_id = '{EUCTR}'").orderBy("endpoint_type", "seq").collect()
    assert [(e.endpoint_type, e.seq, e.measure, e.time_frame) for e in ends] == [
        ("primary", 1, "Change in HbA1c from baseline", "Week 24"),
        ("secondary", 1, "Fasting plasma glucose", None), ("secondary", 2, "Body weight", None)]
    elig = rows_by(spark, root, "eligibility")
    assert elig[EUCTR].inclusion_criteria == ["Adults with type 2 diabetes", "HbA1c between 7% and 10%"]
    assert elig[EUCTR].exclusion_criteria == ["Type 1 diabetes", "eGFR < 30 mL/min"]
    assert (elig["JPRN-jRCTs041220087"].min_age_raw, elig["JPRN-jRCTs041220087"].sex) == ("20age old", "FEMALE")
    out = {r.study_id: (r.overall_status, r.outcome_type) for r in table(spark, root, "outcomes").collect()}
    assert out["RBR-6qvdftm"] == ("WITHDRAWN", "withdrawn") and out["ISRCTN10175490"] == ("COMPLETED", "completed")


def test_ctgov_copies_stay_in_bronze_and_contacts_out_of_silver(ingested, spark):
    root, s = ingested
    assert s["bronze_only"] == {"ClinicalTrials.gov": 1}
    assert table(spark, root, "ictrp_raw").where("trial_id = 'NCT90000003'").count() == 1
    for name in ("studies", "conditions", "drugs", "endpoints", "eligibility", "outcomes", "study_ids"):
        text = table(spark, root, name).select(F.to_json(F.struct("*")).alias("j"))
        leaked = text.where(F.col("j").contains("jane.roe") | F.col("j").contains("ana.souza")
                            | F.col("j").contains("NCT90000003")).count()
        assert leaked == 0, name
    assert "jane.roe@example.org" in rows_by(spark, root, "ictrp_raw", key="trial_id")[f"{EUCTR}-DE"].raw


def test_job_is_logged_to_mlflow(ingested, mlflow_server):
    _, s = ingested
    run = mlflow.MlflowClient(mlflow_server).get_run(s["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["job"] == "ingest_ictrp"
    assert str(ICTRP) in run.data.params["inputs"]
    m = run.data.metrics
    assert (m["records_in"], m["rejected"], m["bronze_only"]) == (27, 4, 1)
    assert m["unmapped.phase"] == 1 and m["unmapped.study_type.Basic Science"] == 1
    assert m["studies.inserted"] == 20 and m["ictrp_raw.inserted"] == 23
    assert run.data.tags["delta.studies.version"] == "0" and run.data.tags["delta.ictrp_raw.version"] == "0"


def test_rerun_changes_nothing(ingested, spark):
    root, first = ingested
    before = {n: lake.table_version(spark, lake.table_uri(str(root), n)) for n in first["tables"]}
    snapshot = sorted(repr(r.asDict()) for r in table(spark, root, "studies").collect())
    again = run_ingest(root, str(ICTRP))
    assert again["accepted_detail"] == {"new": 0, "updated": 0, "unchanged": 23, "superseded": 0}
    assert again["tables"] == {} and again["unmapped_values"] == {}  # counted for what a run writes
    assert {n: lake.table_version(spark, lake.table_uri(str(root), n)) for n in first["tables"]} == before
    assert sorted(repr(r.asDict()) for r in table(spark, root, "studies").collect()) == snapshot
    assert table(spark, root, "rejects").count() == 4


def test_one_member_state_update_keeps_every_country(ingested, spark, tmp_path):
    """A later export that carries only the German record (and a stale French one) rebuilds the study from the
    new German row and the stored French and Dutch rows; the stale record changes nothing."""
    root, _ = ingested
    lines = (ICTRP / "ictrp_full_export.csv").read_text().splitlines()
    de = next(x for x in lines if x.startswith(f'"{EUCTR}-DE"'))
    fr = next(x for x in lines if x.startswith(f'"{EUCTR}-FR"'))
    newer_de = de.replace('"17 February 2025"', '"3 March 2025"').replace('"Not Recruiting"', '"Completed"')
    older_fr = fr.replace('"17 February 2025"', '"1 January 2025"').replace('"France"', '"Belgium"')
    assert newer_de != de and older_fr != fr
    (tmp_path / "weekly.csv").write_text(newer_de + "\n" + older_fr + "\n")
    s = run_ingest(root, str(tmp_path / "weekly.csv"))
    assert s["records_in"] == 2 and s["accepted_detail"] == {"new": 0, "updated": 1, "unchanged": 0, "superseded": 1}
    st = table(spark, root, "studies").where(f"study_id = '{EUCTR}'").collect()
    assert len(st) == 1
    assert st[0].countries == ["France", "Germany", "Netherlands"]  # not Belgium: the stale FR row lost
    assert (st[0].recruitment_status, st[0].last_update_date) == ("COMPLETED", date(2025, 3, 3))
    assert st[0].first_submitted_date == date(2016, 1, 14)  # the earliest member registration
    members = table(spark, root, "study_ids").where(f"study_id = '{EUCTR}' AND id_type = 'EUCTR_MEMBER_STATE'")
    assert members.count() == 3
    assert table(spark, root, "outcomes").where(f"study_id = '{EUCTR}'").first().outcome_type == "completed"
    assert table(spark, root, "studies").count() == 20


# ------------------------------------------------------------------------------- formats (no Spark)
def test_sniff_tells_the_shapes_apart():
    assert ictrp_formats.sniff(b'"EUCTR2020-001039-29-GR","17 February 2025",NULL') == ("export", ())
    shape, header = ictrp_formats.sniff("\ufeffTrialID,Last Refreshed on,Public title\nX,Y,Z\n".encode())
    assert shape == "csv_header" and header == ("TrialID", "Last Refreshed on", "Public title")
    assert ictrp_formats.sniff(b'<?xml version="1.0"?>\n<!-- x --><Trials_downloaded_from_ICTRP>')[0] == "portal_xml"
    assert ictrp_formats.sniff(b"<trials><trial>")[0] == "feed_xml"
    assert ictrp_formats.sniff(b"<html><body>")[0] == "xml"


def test_xml_documents_parse_or_become_one_reject():
    rows = ictrp_formats.parse_xml_document("x.xml", b"<other><Trial/></other>")
    assert [(r[1], r[4]) for r in rows] == [("xml", "unrecognized XML root element <other>")]
    evil = b'<!DOCTYPE t [<!ENTITY e SYSTEM "file:///etc/passwd">]><trials><trial><main><trial_id>&e;</trial_id></main></trial></trials>'
    rows = ictrp_formats.parse_xml_document("e.xml", evil)
    assert all("root:" not in (r[3] or "") for r in rows)  # external entities are never resolved
    portal = (b"<Trials_downloaded_from_ICTRP><Trial><TrialID>KCT0000001</TrialID><Secondary_ID>A1</Secondary_ID>"
              b"<secondaryid>B2</secondaryid><Inclusion_Criteria>a<br/>b</Inclusion_Criteria></Trial>"
              b"</Trials_downloaded_from_ICTRP>")
    (row,) = ictrp_formats.parse_xml_document("p.xml", portal)
    fields = json.loads(row[3])
    assert (row[1], fields["secondary_ids"], fields["inclusion_criteria"]) == ("portal_xml", "A1;B2", "a<br>b")
