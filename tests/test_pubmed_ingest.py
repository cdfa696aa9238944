"""PubMed ingest end to end on real Spark + Delta + an MLflow server, over the hand-written fixtures.

The fixtures (tests/fixtures/pubmed, written by make_pubmed_fixtures.py) hold a systematic review with
labelled abstract sections citing the trial papers, trial papers linked to the ClinicalTrials.gov fixtures
by DataBankList or only in their abstract, inline markup, a book article, a gzipped update file with a
newer PMID version and a DeleteCitation, and bad files. The real baseline file is in test_pubmed_real.py.
"""

from __future__ import annotations

import gzip
from datetime import date

import mlflow
import pytest

from tests.conftest import FIXTURES, run_named_job
from trialpanorama import lake
from trialpanorama.normalize.registry_ids import find_trial_ids, load_registries
from trialpanorama.sources import pubmed_xml

PUBMED = FIXTURES / "pubmed"
CTGOV_FIXTURE_IDS = {f"NCT9000000{i}" for i in range(1, 8)}


def run_ingest(lake_root, *inputs: str) -> dict:
    return run_named_job("ingest_pubmed", lake_root, "--input", *inputs)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, mlflow_server, spark):
    root = tmp_path_factory.mktemp("pubmed") / "lake"
    return root, run_ingest(root, str(PUBMED))


def table(spark, root, name):
    return lake.read_named(spark, str(root), name)


def publications(spark, root) -> dict:
    return {r.pmid: r for r in table(spark, root, "publications").collect()}


# ------------------------------------------------------------------------------------------ counts
def test_counts_reconcile_and_every_bad_record_has_a_reason(ingested, spark):
    root, s = ingested
    assert (s["files"], s["records_in"], s["accepted"], s["rejected"], s["deleted"]) == (5, 19, 13, 4, 2)
    assert s["records_in"] == s["accepted"] + s["rejected"] + s["deleted"]
    assert s["reconciliation"] == "19 records in = 13 accepted + 4 rejected + 2 deleted"
    # 31234570 version 1 is superseded by its version 2 in the update file
    assert s["accepted_detail"] == {"new": 12, "updated": 0, "unchanged": 0, "superseded": 1}
    # 31234575 existed (its tombstone updates the article), 31234599 never did
    assert s["deleted_detail"] == {"new": 1, "updated": 1, "unchanged": 0, "superseded": 0}
    reasons = s["rejected_by_reason"]
    assert sum(reasons.values()) == 4
    assert reasons["missing PMID (MedlineCitation/PMID)"] == 1
    assert reasons["unreadable gzip: not a gzipped file (starts with b'PK\\x03\\x04')"] == 1
    assert [r for r in reasons if r.startswith("invalid XML: Opening and ending tag mismatch: i")]
    assert [r for r in reasons if r.startswith("unreadable gzip: compressed file ended") and "cut short" in r]
    rejects = table(spark, root, "rejects").collect()
    assert len(rejects) == 4
    assert all(r.source == "pubmed" and r.raw and r.reason and r.source_file for r in rejects)
    broken = [r for r in rejects if r.reason.startswith("invalid XML")][0]
    assert "A broken <i>title" in broken.raw and broken.source_file.endswith("bad/pubmed99n0003.xml")
    # the articles around the broken one, and the first article of the cut-short gzip, are kept
    assert {"31234581", "31234583", "31234584"} <= set(publications(spark, root))
    assert table(spark, root, "publications").count() == 11  # 12 PMIDs, one deleted


def test_systematic_review_fields(ingested, spark):
    root, _ = ingested
    r = publications(spark, root)["31234560"]
    assert [s.label for s in r.abstract_sections] == [
        "BACKGROUND", "OBJECTIVES", "SELECTION CRITERIA", "MAIN RESULTS", "AUTHORS' CONCLUSIONS"]
    assert [s.nlm_category for s in r.abstract_sections] == ["BACKGROUND", "OBJECTIVE", "METHODS", "RESULTS",
                                                             "CONCLUSIONS"]
    assert r.abstract_sections[2].text == ("Randomised controlled trials of metformin versus placebo lasting at least"
                                           " 12 weeks in adults with HbA1c between 7% and 10%.")
    assert r.abstract.splitlines()[0].startswith("BACKGROUND: Metformin is the usual first drug")
    assert r.abstract.splitlines()[4] == "AUTHORS' CONCLUSIONS: Metformin improves glycaemic control in early type 2 diabetes."
    assert ("D000078182", "Systematic Review") in {(p.ui, p.name) for p in r.publication_types}
    assert r.year == 2021  # from <MedlineDate>2021 Jan-Feb</MedlineDate>
    assert (r.journal, r.journal_iso) == ("The Cochrane database of systematic reviews", "Cochrane Database Syst Rev")
    assert (r.doi, r.pmcid, r.languages) == ("10.1002/14651858.CD000001.pub2", "PMC8000001", ["eng"])
    assert r.cited_pmids == ["31234567", "31234568", "31234569", "99999999"]  # order kept, duplicate dropped
    t2d = r.mesh_headings[0]
    assert (t2d.descriptor_ui, t2d.descriptor_name, t2d.major_topic) == ("D003924", "Diabetes Mellitus, Type 2", True)
    assert [(q.ui, q.name, q.major_topic) for q in t2d.qualifiers] == [("Q000188", "drug therapy", True)]
    assert [(a.last_name, a.fore_name, a.initials) for a in r.authors] == [("Smith", "Anna", "A"), ("Lee", "Min", "M")]
    assert r.authors[0].affiliations == ["Example University, Springfield, USA."]
    assert (r.date_revised, r.medline_status, r.record_type) == (date(2021, 6, 7), "MEDLINE", "journal_article")


def test_inline_markup_comes_out_whole_and_in_order(ingested, spark):
    root, _ = ingested
    pubs = publications(spark, root)
    assert pubs["31234569"].title == ("Immunogenicity of an adjuvanted vaccine in adults aged 65 years or older: CD4+"
                                      " T-cell responses to Influenza A (H3N2).")
    assert pubs["31234570"].abstract == "Mortality followed y=x2 over days of treatment."  # MathML
    assert pubs["31234567"].abstract_sections[2].text == "HbA1c fell by 0.9% with metformin."


def test_trial_ids_from_databanks_and_abstract_text(ingested, spark):
    root, _ = ingested
    links = {(r.pmid, r.trial_id, r.registry, r.origin) for r in table(spark, root, "publication_trial_ids").collect()}
    assert {(t, g, o) for p, t, g, o in links if p == "31234567"} == {
        ("NCT90000001", "ClinicalTrials.gov", "databank"), ("2015-004321-12", "EudraCT", "abstract")}
    assert {(t, o) for p, t, _, o in links if p == "31234569"} == {
        ("NCT90000004", "abstract"), ("ISRCTN87654321", "abstract")}  # written "NCT 90000004", "ISRCTN-87654321"
    assert {(t, g) for p, t, g, _ in links if p == "31234568"} == {
        ("NCT90000002", "ClinicalTrials.gov"), ("NCT90000003", "ClinicalTrials.gov"), ("ISRCTN12345678", "ISRCTN")}
    # every NCT id the fixture papers carry is a ClinicalTrials.gov fixture study
    ncts = {t for _, t, g, _ in links if g == "ClinicalTrials.gov"}
    assert ncts == CTGOV_FIXTURE_IDS - {"NCT90000005"}
    assert publications(spark, root)["31234567"].registry_ids == ["NCT90000001", "2015-004321-12"]


def test_deletes_and_newer_versions(ingested, spark):
    root, _ = ingested
    pubs = publications(spark, root)
    assert "31234575" not in pubs
    deletions = {r.pmid: r for r in table(spark, root, "publication_deletions").collect()}
    assert set(deletions) == {"31234575", "31234599"}
    assert deletions["31234575"].source_file.endswith("pubmed99n0002.xml.gz")
    bronze = {r.pmid: r for r in table(spark, root, "pubmed_raw").collect()}
    assert bronze["31234575"].kind == "delete" and bronze["31234575"].raw.startswith("<DeleteCitation><PMID")
    v2 = pubs["31234570"]
    assert v2.pmid_version == 2 and v2.title.endswith("community-acquired pneumonia (version 2).")
    assert bronze["31234570"].source_file.endswith("pubmed99n0002.xml.gz")
    book = pubs["31234580"]
    assert (book.record_type, book.title, book.year) == ("book_article", "Example Hereditary Condition", 1993)


def test_rerun_changes_nothing(ingested, spark):
    root, first = ingested
    names = ("pubmed_raw", "publications", "publication_trial_ids", "publication_deletions", "rejects")
    before = {n: lake.table_version(spark, lake.table_uri(str(root), n)) for n in names}
    snapshot = sorted(repr(r.asDict()) for r in table(spark, root, "publications").collect())
    again = run_ingest(root, str(PUBMED))
    # the deleted article of pubmed99n0001 is now older than its tombstone
    assert again["accepted_detail"] == {"new": 0, "updated": 0, "unchanged": 11, "superseded": 2}
    assert again["deleted_detail"] == {"new": 0, "updated": 0, "unchanged": 2, "superseded": 0}
    assert again["tables"] == {}
    assert {n: lake.table_version(spark, lake.table_uri(str(root), n)) for n in names} == before
    assert sorted(repr(r.asDict()) for r in table(spark, root, "publications").collect()) == snapshot
    assert table(spark, root, "rejects").count() == 4


def _rewrite(text: str, pmid: str, title: str) -> str:
    start = text.index(f'<PMID Version="1">{pmid}</PMID>')
    start = text.rindex("<PubmedArticle>", 0, start)
    end = text.index("</PubmedArticle>", start) + len("</PubmedArticle>")
    article = text[start:end]
    head = article[article.index("<ArticleTitle>"):article.index("</ArticleTitle>") + len("</ArticleTitle>")]
    return article.replace(head, f"<ArticleTitle>{title}</ArticleTitle>").replace(
        "<AccessionNumber>NCT90000001</AccessionNumber>", "<AccessionNumber>NCT90000005</AccessionNumber>")


def test_older_file_cannot_resurrect_and_later_file_replaces(ingested, spark, tmp_path):
    root, _ = ingested
    base = (PUBMED / "pubmed99n0001.xml").read_text()
    head, tail = base[: base.index("<PubmedArticle>")], "</PubmedArticleSet>\n"
    body = _rewrite(base, "31234567", "An older title.") + _rewrite(base, "31234575", "Deleted, but in an older file.")
    (tmp_path / "pubmed98n0001.xml").write_text(head + body + tail)
    (tmp_path / "pubmed98n0001.xml.md5").write_text("MD5(pubmed98n0001.xml)= 0123456789abcdef\n")
    s = run_ingest(root, str(tmp_path))
    assert s["files"] == 1 and [f.rsplit("/", 1)[-1] for f in s["skipped_files"]] == ["pubmed98n0001.xml.md5"]
    assert s["accepted_detail"] == {"new": 0, "updated": 0, "unchanged": 0, "superseded": 2} and s["tables"] == {}
    assert "31234575" not in publications(spark, root)

    body = _rewrite(base, "31234567", "A corrected title.") + _rewrite(base, "31234575", "Re-added later.")
    (tmp_path / "pubmed99n0009.xml.gz").write_bytes(gzip.compress((head + body + tail).encode()))
    s = run_ingest(root, str(tmp_path / "pubmed99n0009.xml.gz"))
    assert s["accepted_detail"] == {"new": 0, "updated": 2, "unchanged": 0, "superseded": 0}
    pubs = publications(spark, root)
    assert pubs["31234567"].title == "A corrected title." and pubs["31234575"].title == "Re-added later."
    links = {r.trial_id for r in table(spark, root, "publication_trial_ids").where("pmid = '31234567'").collect()}
    assert links == {"NCT90000005", "2015-004321-12"}  # child rows replaced, not added to
    assert {r.pmid for r in table(spark, root, "publication_deletions").collect()} == {"31234599"}
    assert table(spark, root, "publications").groupBy("pmid").count().where("count > 1").count() == 0


def test_job_is_logged_to_mlflow(ingested, mlflow_server):
    _, s = ingested
    run = mlflow.MlflowClient(mlflow_server).get_run(s["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["job"] == "ingest_pubmed"
    assert str(PUBMED) in run.data.params["inputs"]
    m = run.data.metrics
    assert (m["records_in"], m["accepted"], m["rejected"], m["deleted"], m["deletes_applied"]) == (19, 13, 4, 2, 2)
    assert run.data.tags["delta.publications.version"] == "1"  # articles inserted, then 31234575 deleted
    assert run.data.tags["delta.pubmed_raw.version"] == "1"  # articles, then tombstones
    assert run.data.tags["delta.publication_deletions.version"] == "0"  # created by the deletes
    assert run.data.tags["delta.rejects.version"] == "0"


# ------------------------------------------------------------------------------- parser, no Spark
REGISTRIES = load_registries()


@pytest.mark.parametrize("text, expected", [
    ("registered at ClinicalTrials.gov (NCT-01234567) and nct 07654321", ["NCT01234567", "NCT07654321"]),
    ("EudraCT 2004-000123-12; EUCTR2010-012345-67-GB", ["2004-000123-12", "2010-012345-67"]),
    ("EU CT number 2023-501234-11-00", ["2023-501234-11-00"]),
    ("ACTRN 12617000863336, ChiCTR-IOR-15006626, ChiCTR2000029308", ["ACTRN12617000863336",
                                                                     "ChiCTR-IOR-15006626", "ChiCTR2000029308"]),
    ("CTRI/2021/03/031686, DRKS00013972, UMIN 000042071, jRCTs031180001", [
        "CTRI/2021/03/031686", "DRKS00013972", "UMIN000042071", "jRCTs031180001"]),
    ("IRCT20191130045556N1, PACTR201805003381361, RBR-5q5t5z, KCT0005083, TCTR20190123001", [
        "IRCT20191130045556N1", "PACTR201805003381361", "RBR-5q5t5z", "KCT0005083", "TCTR20190123001"]),
    ("NCT0123456 is too short and 2004-00012-12 is no EudraCT number", []),
])
def test_registry_ids_in_text(text, expected):
    assert [m.trial_id for m in find_trial_ids(text, REGISTRIES)] == expected


def test_a_later_record_always_sorts_higher():
    v = pubmed_xml.source_version
    assert v(2, "pubmed21n0001", 0) > v(1, "pubmed25n1300", 99)  # PMID version first
    assert v(1, "pubmed25n0001", 0) > v(1, "pubmed24n1200", 99)  # then file order
    assert v(1, "pubmed25n0001", 5) > v(1, "pubmed25n0001", 4)  # then position (DeleteCitation comes last)
    assert pubmed_xml.file_key("s3a://bucket/pubmed/pubmed25n0001.xml.gz") == "pubmed25n0001"


def test_a_broken_file_keeps_every_readable_record():
    data = (PUBMED / "bad" / "pubmed99n0003.xml").read_bytes()
    recs = list(pubmed_xml.parse_file("pubmed99n0003.xml", data, REGISTRIES))
    assert [(r["kind"], r["pmid"]) for r in recs] == [
        ("article", "31234581"), ("error", None), ("error", None), ("article", "31234583")]
    assert [r["seq"] for r in recs] == [0, 1, 2, 3]
    # a file that is not XML at all is one reject, not an exception
    recs = list(pubmed_xml.parse_file("notes.xml", b"just some text", REGISTRIES))
    assert len(recs) == 1 and recs[0]["reason"].startswith("invalid XML")
    recs = list(pubmed_xml.parse_file("other.xml", b"<foo><bar/></foo>", REGISTRIES))
    assert [r["reason"] for r in recs] == ["not a PubMed XML file (root element <foo>)"]
    assert list(pubmed_xml.parse_file("empty.xml", b"<PubmedArticleSet></PubmedArticleSet>", REGISTRIES)) == []
