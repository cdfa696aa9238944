"""Gold jobs as users run them, on a lake built from the fixtures: unify_trials, then build_relations."""

from __future__ import annotations

import mlflow
import pytest

from tests.conftest import FIXTURES, run_named_job
from tests.test_ctgov_ingest import run_ingest
from trialpanorama import lake

# Cross-registrations planted in tests/fixtures/ictrp (see its README) and traps that must stay apart.
LABELLED = [
    ("EUCTR2015-004321-12", "NCT90000001", True), ("ISRCTN10175490", "NCT90000002", True),
    ("CTIS2023-501234-11-00", "NCT90000004", True), ("RBR-6qvdftm", "NCT90000005", True),
    ("TCTR20230512003", "NCT90000006", True), ("ACTRN12625000115437", "RBR-74547s2", True),
    ("JPRN-UMIN000049383", "JPRN-jRCTs041220087", True),
    ("CTRI/2023/04/052053", "DRKS00031815", False),  # share the NIH grant P60DK020579
    ("ChiCTR2000029308", "ChiCTR2000030001", False),  # similar titles, different trials
    ("NCT90000001", "NCT90000002", False), ("EUCTR2015-004321-12", "NCT90000004", False),
]


@pytest.fixture(scope="module")
def gold_lake(tmp_path_factory, mlflow_server, spark):
    root = tmp_path_factory.mktemp("gold") / "lake"
    run_ingest(root, str(FIXTURES / "ctgov"))
    run_named_job("ingest_ictrp", root, "--input", str(FIXTURES / "ictrp"))
    run_named_job("ingest_pubmed", root, "--input", str(FIXTURES / "pubmed"))
    unify_summary = run_named_job("unify_trials", root)
    rel_summary = run_named_job("build_relations", root)
    return str(root), unify_summary, rel_summary


def test_unify_job_writes_gold_tables(gold_lake, spark):
    root, s, _ = gold_lake
    members = lake.read_named(spark, root, "trial_members")
    assert members.count() == s["studies"] == 33
    assert members.where("is_canonical").count() == s["trials"] < s["studies"]
    id_map = {r.registry_id: r.trial_uid for r in lake.read_named(spark, root, "trial_id_map").collect()}
    t1 = members.where("study_id = 'NCT90000001'").first().trial_uid
    # the EudraCT number NCT90000001 lists maps to its trial; its NIH grant number maps to nothing
    assert id_map["EUDRACT:2015-004321-12"] == t1 and id_map["NCT:NCT90000001"] == t1
    assert not any("U01DK098246" in k for k in id_map)
    assert set(s["tables"]) == {"trials", "trial_members", "trial_id_map"} | ({"merge_proposals"} & set(s["tables"]))


def test_merges_on_labelled_pairs_meet_precision_and_recall(gold_lake, spark):
    from trialpanorama.unify import pair_precision_recall

    root, _, _ = gold_lake
    assignment = {r.study_id: r.trial_uid for r in lake.read_named(spark, root, "trial_members").collect()}
    missing = {x for a, b, _ in LABELLED for x in (a, b)} - set(assignment)
    assert not missing, missing
    m = pair_precision_recall(assignment, LABELLED)
    assert m["precision"] >= 0.99 and m["recall"] >= 0.95, m
    trials = {r.canonical_study_id: r for r in lake.read_named(spark, root, "trials").collect()}
    assert trials["NCT90000001"].member_sources == ["ClinicalTrials.gov", "EU CTR"]


def test_relations_from_registry_references(gold_lake, spark):
    root, _, r = gold_lake
    rel = lake.read_named(spark, root, "relations")
    assert r["edges_from_ctgov_references"] == 13
    row = rel.where("tail_id = '31234567' AND head_type = 'trial'").first()
    assert (row.head_type, row.tail_type, row.relation_type) == ("trial", "publication", "reported_in")
    # the fixture review cites the same paper: a review -> publication edge, kept apart
    assert rel.where("tail_id = '31234567' AND head_type = 'review'").first().relation_type == "cites"
    assert row.evidence[0].startswith("ctgov_reference:RESULT:NCT9")


def test_relations_from_pubmed_databanks(gold_lake, spark):
    root, _, r = gold_lake
    assert r["edges_from_pubmed_trial_ids"] > 0
    t1 = lake.read_named(spark, root, "trial_members").where("study_id = 'NCT90000001'").first().trial_uid
    row = lake.read_named(spark, root, "relations").where(f"head_id = '{t1}' AND tail_id = '31234567'").first()
    # PubMed's DataBankList and the registry's own reference agree on the same edge
    assert "pubmed_databank:NCT90000001" in row.evidence and any(e.startswith("ctgov_reference") for e in row.evidence)


def test_gold_reruns_commit_nothing(gold_lake, spark):
    root, first, _ = gold_lake
    before = {t: lake.table_version(spark, lake.table_uri(root, t)) for t in ("trials", "trial_members", "relations")}
    again = run_named_job("unify_trials", root)
    rel_again = run_named_job("build_relations", root)
    assert again["tables"] == {} and rel_again["tables"] == {}
    after = {t: lake.table_version(spark, lake.table_uri(root, t)) for t in before}
    assert after == before and again["trials"] == first["trials"]


def test_gold_runs_record_their_input_versions(gold_lake, mlflow_server, spark):
    root, s, r = gold_lake
    client = mlflow.MlflowClient(mlflow_server)
    tags = client.get_run(s["mlflow_run_id"]).data.tags
    for table in ("studies", "study_ids"):  # silver is not written by the gold jobs, so still that version
        assert tags[f"delta.input.{table}.version"] == str(lake.table_version(spark, lake.table_uri(root, table)))
    assert tags["delta.trials.version"] == "0"
    rtags = client.get_run(r["mlflow_run_id"]).data.tags
    assert rtags["delta.input.trial_members.version"] == "0" and "delta.relations.version" in rtags


def test_unify_without_silver_is_a_clear_error(tmp_path, mlflow_server, spark):
    with pytest.raises(FileNotFoundError, match="run an ingest job first"):
        run_named_job("unify_trials", tmp_path / "empty")
