"""Cross-registry unification on a hand-built silver graph with known duplicates and known traps."""

from __future__ import annotations

from datetime import date

import pytest

from trialpanorama import unify
from trialpanorama.config import load_config, load_sibling_yaml

STUDIES = [
    # study_id, source, title, sponsor, start, enrollment, target, last_update
    ("NCT00000001", "ClinicalTrials.gov", "Metformin in early type 2 diabetes", "Example Pharma", date(2016, 3, 1), 120, None, date(2021, 2, 1)),
    ("EUCTR2015-004321-12", "EU CTR", "Metformin early diabetes (EU)", "Example Pharma GmbH", date(2016, 4, 1), None, 120, date(2022, 1, 1)),
    ("ChiCTR2000029308", "ChiCTR", "Metformin Chinese cohort", "Example Pharma", date(2016, 3, 1), None, 40, date(2020, 1, 1)),
    ("NCT00000002", "ClinicalTrials.gov", "Knee osteoarthritis exercise", "University Hospital", date(2019, 1, 1), 80, None, date(2023, 5, 5)),
    ("ISRCTN12345678", "ISRCTN", "Vitamin D in older adults", "Uni A", date(2018, 1, 1), None, 300, date(2020, 1, 1)),
    ("DRKS00012345", "DRKS", "Vitamin D bei älteren Menschen", "Uni A", date(2018, 2, 1), None, 300, date(2021, 1, 1)),
    ("NCT00000003", "ClinicalTrials.gov", "Grant trap trial one about asthma inhalers", "NIH Center", date(2015, 1, 1), 50, None, None),
    ("NCT00000004", "ClinicalTrials.gov", "Grant trap trial two about kidney stones", "NIH Center", date(2016, 1, 1), 60, None, None),
    ("NCT00000005", "ClinicalTrials.gov", "Umbrella part A", "Org", date(2019, 1, 1), 10, None, None),
    ("NCT00000006", "ClinicalTrials.gov", "Umbrella part B", "Org", date(2019, 1, 1), 10, None, None),
    ("EUCTR2019-000001-11", "EU CTR", "Umbrella protocol", "Org", date(2019, 1, 1), None, 20, None),
    ("NCT00000007", "ClinicalTrials.gov", "Alias trial", "Org B", date(2017, 1, 1), 30, None, None),
    ("ChiCTR1800000077", "ChiCTR", "Alias trial China", "Org B", date(2017, 1, 1), None, 30, None),
    ("NCT00000008", "ClinicalTrials.gov", "Effect of Drug X on Blood Pressure in Adults With Hypertension", "Acme Pharma Inc", date(2020, 1, 10), 100, None, None),
    ("ISRCTN87654321", "ISRCTN", "Effect of drug X on blood pressure in adults with hypertension", "ACME Pharma", date(2020, 2, 1), None, 110, None),
    ("NCT00000009", "ClinicalTrials.gov", "A Phase 3 Study of Drug Y in Moderate to Severe Plaque Psoriasis Study 301", "Beta Bio", date(2021, 1, 1), 500, None, None),
    ("NCT00000010", "ClinicalTrials.gov", "A Phase 3 Study of Drug Y in Moderate to Severe Plaque Psoriasis Study 302", "Beta Bio", date(2021, 1, 1), 500, None, None),
    ("ACTRN12620000001234", "ANZCTR", "Effect of Drug X on Blood Pressure in Adults With Hypertension", "Acme Pharma", date(2023, 6, 1), None, 100, None),
]
IDS = [
    # study_id, id_value, id_source, id_type
    ("NCT00000001", "2015-004321-12", "secondary_id", "EUDRACT_NUMBER"),
    ("NCT00000001", "U01DK098246", "secondary_id", "NIH"),
    ("NCT00000001", "EX-0001", "org_study_id", None),
    ("ChiCTR2000029308", "NCT00000001", "secondary_id", None),
    ("ISRCTN12345678", "U1111-1234-5678", "secondary_id", "UTN"),
    ("DRKS00012345", "U1111-1234-5678", "secondary_id", "UTN"),
    ("NCT00000003", "P60DK020579", "secondary_id", "OTHER"),
    ("NCT00000004", "P60DK020579", "secondary_id", "OTHER"),
    ("NCT00000005", "2019-000001-11", "secondary_id", "EUDRACT_NUMBER"),
    ("NCT00000006", "2019-000001-11", "secondary_id", "EUDRACT_NUMBER"),
    ("NCT00000007", "NCT00000077", "nct_alias", "NCT_ALIAS"),
    ("ChiCTR1800000077", "NCT00000077", "secondary_id", None),
    ("NCT00000009", "DRKS00099999", "secondary_id", "NIH"),  # registry-shaped but typed as a grant: ignored
    ("NCT00000010", "DRKS00099999", "secondary_id", "NIH"),
]
LABELLED = [
    ("NCT00000001", "EUCTR2015-004321-12", True), ("NCT00000001", "ChiCTR2000029308", True),
    ("EUCTR2015-004321-12", "ChiCTR2000029308", True), ("ISRCTN12345678", "DRKS00012345", True),
    ("NCT00000007", "ChiCTR1800000077", True), ("NCT00000008", "ISRCTN87654321", True),
    ("NCT00000003", "NCT00000004", False), ("NCT00000005", "NCT00000006", False),
    ("NCT00000005", "EUCTR2019-000001-11", False), ("NCT00000009", "NCT00000010", False),
    ("NCT00000008", "ACTRN12620000001234", False), ("NCT00000002", "NCT00000001", False),
]


def _inputs(spark):
    """The fixture studies and ids as unify reads them, and the default unify config."""
    from pyspark.sql import functions as F

    studies = spark.createDataFrame(STUDIES, "study_id STRING, study_source STRING, title STRING, sponsor STRING, "
                                    "start_date DATE, enrollment INT, target_accrual INT, last_update_date DATE")
    for col in ("phase", "recruitment_status", "study_type"):
        studies = studies.withColumn(col, F.lit(None).cast("string"))
    ids = spark.createDataFrame(IDS, "study_id STRING, id_value STRING, id_source STRING, id_type STRING")
    cfg = load_sibling_yaml(load_config(), "unify.yaml")
    return studies, ids, cfg


@pytest.fixture(scope="module")
def result(spark):
    studies, ids, cfg = _inputs(spark)
    res = unify.unify(spark, studies, ids, cfg)
    members = {r.study_id: r for r in res.members.collect()}
    return res, members


def test_registry_node_normalizes_ids(spark):
    cfg = load_sibling_yaml(load_config(), "unify.yaml")
    values = ["EUCTR2020-001039-29-GR", "2020-001039-29", "CTIS2023-503698-40-00", "chictr2300070727",
              "JPRN-UMIN000049383", "JPRN-jRCTs041220087", "CTRI/2023/04/052053", "nct 04339712", "P60DK020579",
              "U1111-1342-6778", "RBR-6qvdftm"]
    df = spark.createDataFrame([(v,) for v in values], "v STRING")
    got = [r.n for r in df.select(unify.registry_node(df.v, cfg["id_patterns"]).alias("n")).collect()]
    assert got == ["EUDRACT:2020-001039-29", "EUDRACT:2020-001039-29", "CTIS:2023-503698-40-00",
                   "CHICTR:CHICTR2300070727", "JPRN:UMIN000049383", "JPRN:JRCTS041220087",
                   "CTRI:CTRI/2023/04/052053", "NCT:NCT04339712", None, "UTN:U1111-1342-6778", "REBEC:RBR-6QVDFTM"]


def test_connected_components_are_transitive(spark):
    edges = spark.createDataFrame([("a", "b"), ("c", "b"), ("d", "c"), ("x", "y")], "src STRING, dst STRING")
    vertices = spark.createDataFrame([(v,) for v in "abcdxyz"], "node STRING")
    labels, rounds = unify.connected_components(edges, vertices)
    got = {r.node: r.label for r in labels.collect()}
    assert got == {"a": "a", "b": "a", "c": "a", "d": "a", "x": "x", "y": "x", "z": "z"}
    assert rounds >= 2


def test_known_duplicates_merge_and_traps_do_not(result):
    _, members = result
    assignment = {k: v.trial_uid for k, v in members.items()}
    metrics = unify.pair_precision_recall(assignment, LABELLED)
    assert metrics["false_merges"] == 0, metrics
    assert metrics["missed_merges"] == 0, metrics
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0


def test_canonical_record_and_evidence(result):
    res, members = result
    trials = {r.trial_uid: r for r in res.trials.collect()}
    t = trials[members["ChiCTR2000029308"].trial_uid]
    assert t.canonical_study_id == "NCT00000001" and t.n_members == 3
    assert t.member_sources == ["ChiCTR", "ClinicalTrials.gov", "EU CTR"]
    assert "NCT:NCT00000001" in t.registry_ids and "EUDRACT:2015-004321-12" in t.registry_ids
    assert members["NCT00000001"].is_canonical and not members["EUCTR2015-004321-12"].is_canonical
    assert "lists EUDRACT:2015-004321-12" in members["NCT00000001"].evidence
    assert "listed by ChiCTR2000029308" in members["NCT00000001"].evidence
    # without ClinicalTrials.gov, the most recently updated record is canonical
    t2 = trials[members["DRKS00012345"].trial_uid]
    assert t2.canonical_study_id == "DRKS00012345"
    assert members["NCT00000002"].link_type == "self"
    assert members["ISRCTN87654321"].link_type == "near_duplicate"


def test_ambiguous_ids_and_near_duplicates_are_recorded(result):
    res, _ = result
    rows = res.proposals.collect()
    amb = {(r.study_id_a, r.study_id_b) for r in rows if r.kind == "ambiguous_id"}
    assert amb == {("NCT00000005", "EUDRACT:2019-000001-11"), ("NCT00000006", "EUDRACT:2019-000001-11")}
    nd = {(r.study_id_a, r.study_id_b): r.decision for r in rows if r.kind == "near_duplicate"}
    assert nd[("ISRCTN87654321", "NCT00000008")] == "merged"
    assert nd[("NCT00000009", "NCT00000010")] == "proposed"  # twin trials in one registry are never merged
    assert ("ACTRN12620000001234", "NCT00000008") not in nd  # three years apart: gate fails
    assert res.stats["near_duplicate_merges"] == 1


def test_id_map_links_secondary_only_ids_to_their_trial(result):
    res, members = result
    id_map = {r.registry_id: r.trial_uid for r in res.id_map.collect()}
    assert id_map["NCT:NCT00000077"] == members["NCT00000007"].trial_uid
    assert id_map["UTN:U1111-1234-5678"] == members["ISRCTN12345678"].trial_uid
    assert "EUDRACT:2019-000001-11" in id_map  # the umbrella's own record still has its id
    assert id_map["EUDRACT:2019-000001-11"] != members["NCT00000005"].trial_uid


def test_precision_recall_arithmetic():
    m = unify.pair_precision_recall({"a": "1", "b": "1", "c": "2"}, [("a", "b", True), ("a", "c", True),
                                                                    ("b", "c", False), ("a", "x", False)])
    assert (m["precision"], m["recall"], m["missed_merges"]) == (1.0, 0.5, 1)


def test_oversized_lsh_buckets_are_skipped_and_counted(spark, result):
    """A bucket over max_bucket_size yields no pairs, and the skip is counted, not silent."""
    studies, ids, cfg = _inputs(spark)
    assert result[0].stats["near_duplicate_buckets_skipped"] == 0  # the default cap skips nothing here
    cfg["near_duplicates"] = {**cfg["near_duplicates"], "max_bucket_size": 1}  # every shared bucket is too big
    res = unify.unify(spark, studies, ids, cfg)
    assert res.stats["near_duplicate_pairs"] == 0 and res.stats["near_duplicate_merges"] == 0
    assert res.stats["near_duplicate_buckets_skipped"] > 0
