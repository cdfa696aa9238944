"""Ontology linking end to end on real Spark + Delta + an MLflow server.

One lake for the module: the ClinicalTrials.gov fixtures and the six real records (when ../shared/data has
them) ingested by jobs/ingest_ctgov.py, a study of another registry with hard names written the way an ingest
writes child rows, the vocabularies loaded by jobs/load_vocabularies.py from the real-format fixtures (with
their malformed variants) and the real 2019 MeSH tree, then jobs/link_ontologies.py and
jobs/evaluate_linking.py. The drug dictionary is tested without Spark (tests/test_linking_text.py) to keep
this module fast.
"""

from __future__ import annotations

import mlflow
import pytest
from pyspark.sql import functions as F

from tests.conftest import FIXTURES, SHARED_DATA, run_named_job
from trialpanorama import lake
from trialpanorama.config import load_config, load_sibling_yaml
from trialpanorama.linking import evaluate
from trialpanorama.schemas import TABLES

VOCAB = FIXTURES / "vocab"
REAL = SHARED_DATA / "ctgov"
REAL_TREE = SHARED_DATA / "mesh" / "mesh_tree_terms.tsv"
OTHER = "ISRCTN12345678"


def _other_registry_rows(spark, root: str) -> None:
    """Child rows of a study from another registry, replaced the way every ingest replaces them."""
    conditions = [
        "Healthy Volunteers", "Standard of care", "TYPE 2 DIABETES MELLITUS", "Diabetes mellitus type II",
        "knee osteoarthritis", "Osteoarthritis of the knee", "Breast cancer", "Metastatic breast cancer",
        "E11.9 - Type 2 diabetes mellitus", "I10", "Diabetis mellitus type 2", "Hypothyroidsm",
    ]
    drugs = [
        ("Metformin 500 mg oral tablet", "DRUG"), ("Placebo oral tablet", "DRUG"), ("Aspirin", "DRUG"),
        ("Paracetamol 1 g IV", "DRUG"), ("Vitamin D", "DIETARY_SUPPLEMENT"), ("Metformine", "DRUG"),
        ("Standard of care", "OTHER"), ("Exercise program", "BEHAVIORAL"), ("Keytruda", "BIOLOGICAL"),
    ]
    cond_rows = [(OTHER, n, None, None, None, "registry", None, None) for n in conditions]
    drug_rows = [(OTHER, n, t, None, None, None, "registry", None, None, None, None, None, None) for n, t in drugs]
    keys = spark.createDataFrame([(OTHER,)], "study_id STRING")
    lake.replace_for_keys(spark, root, "conditions", spark.createDataFrame(cond_rows, TABLES["conditions"].schema), keys)
    lake.replace_for_keys(spark, root, "drugs", spark.createDataFrame(drug_rows, TABLES["drugs"].schema), keys)
    if "publications" in TABLES:  # a PubMed article whose MeSH headings carry UIs the tree file lacks
        schema = TABLES["publications"].schema
        row = dict.fromkeys(schema.fieldNames())
        row.update(pmid="31234567", mesh_headings=[
            {"descriptor_ui": "D001249", "descriptor_name": "Asthma", "major_topic": True, "qualifiers": []}])
        lake.upsert(spark, root, "publications", spark.createDataFrame([row], schema))


@pytest.fixture(scope="module")
def linked(tmp_path_factory, mlflow_server, spark):
    root = tmp_path_factory.mktemp("linking") / "lake"
    inputs = [str(FIXTURES / "ctgov")] + ([str(REAL)] if REAL.is_dir() else [])
    summaries = {"ingest": run_named_job("ingest_ctgov", root, "--input", *inputs)}
    _other_registry_rows(spark, str(root))
    trees = [str(VOCAB / "mesh_tree_terms.tsv")] + ([str(REAL_TREE)] if REAL_TREE.is_file() else [])
    summaries["vocab"] = run_named_job(
        "load_vocabularies", root,
        "--mesh-xml", str(VOCAB / "desc2025.xml"), str(VOCAB / "desc2025_truncated.xml"),
        "--mesh-supp-xml", str(VOCAB / "supp2025.xml"), "--drugbank-csv", str(VOCAB / "drugbank_vocabulary.csv"),
        "--mesh-tree", *trees, "--no-drug-dictionary", "--icd10-systems", "ICD-10")
    summaries["link"] = run_named_job("link_ontologies", root)
    return str(root), summaries


def table(spark, root, name):
    return lake.read_named(spark, root, name)


def rows_of(spark, root, name, study):
    return {r[1]: r for r in table(spark, root, name).where(f"study_id = '{study}' AND origin = 'registry'").collect()}


# ----------------------------------------------------------------------------------------- loaders
def test_vocabularies_load_from_real_formats(linked, spark):
    root, s = linked
    mesh = {r.mesh_key: r for r in table(spark, root, "vocab_mesh").collect()}
    t2 = mesh["D003924"]
    assert t2.mesh_name == "Diabetes Mellitus, Type 2" and "NIDDM" in t2.entry_terms
    assert "C18.452.394.750.149" in t2.tree_numbers and "mesh_xml" in t2.sources and "mesh_tree" in t2.sources
    assert "D000000001" not in mesh  # a nested DescriptorUI never makes a record
    assert mesh["D008687"].pharm_actions == ["D007004"]
    pem = mesh["C582435"]
    assert (pem.record_type, pem.mapped_to, "Keytruda" in pem.entry_terms) == ("supplementary", ["D061067"], True)
    # Tree-only descriptors have no UI; UIs harvested from the lake attach to the tree's names.
    assert mesh["N:pneumonia"].mesh_ui is None and mesh["N:pneumonia"].tree_numbers == ["C08.381.677", "C08.730.610"]
    assert "lake_ctgov" in mesh["D006973"].sources
    if "publications" in TABLES:  # PubMed headings give the tree's "Asthma" its UI
        assert "N:asthma" not in mesh and {"lake_pubmed", "mesh_tree"} <= set(mesh["D001249"].sources)
    drugs = {(r.source, r.drug_key): r for r in table(spark, root, "vocab_drugs").collect()}
    assert drugs[("drugbank_csv", "DB00945")].synonyms == ["2-Acetoxybenzoic acid", "Aspirin", "Acetylsalicylate", "ASA"]
    icd = table(spark, root, "vocab_icd10")
    assert icd.where("system = 'ICD-10' AND code = 'E11.9'").count() == 1 and icd.count() > 12_000
    assert s["vocab"]["icd10_codes"] == {"ICD-10": icd.count()}


def test_malformed_vocabulary_rows_are_rejected_one_by_one(linked, spark):
    root, s = linked
    rejected = s["vocab"]["rejected"]
    assert rejected["drugbank_csv"] == {"DB00999: empty Common name": 1, "expected 7 fields, got 6": 1,
                                        "malformed DrugBank ID: 'DB00XYZ'": 1,
                                        "unparseable CSV row: ',' expected after '\"'": 1}
    assert rejected["mesh_tree"] == {"expected 2 tab-separated fields, got 1": 1,
                                     "malformed tree number: not-a-tree-number": 1}
    assert rejected["mesh_supp_xml"] == {"SupplementalRecord without a direct SupplementalRecordUI": 1}
    xml = rejected["mesh_xml"]
    assert xml.pop("truncated file: no closing </DescriptorRecordSet>") == 1
    # The truncated file is a partial re-download: its two complete records repeat desc2025.xml's.
    assert xml.pop("duplicate MeSH UI D003920 in this load") == 1
    assert xml.pop("duplicate MeSH UI D006973 in this load") == 1
    assert sum(xml.values()) == 2 and all(k.startswith("malformed DescriptorRecord XML") for k in xml)
    rej = table(spark, root, "rejects").where(F.col("source").isin("mesh_xml", "mesh_supp_xml", "mesh_tree",
                                                                    "drugbank_csv")).collect()
    assert len(rej) == 12 and all(r.reason and r.source_file for r in rej)
    assert all(r.raw and "D003920" in r.raw and r.source_file.endswith("desc2025_truncated.xml")
               for r in rej if r.reason == "duplicate MeSH UI D003920 in this load")  # the later file's copy
    assert any(r.raw and "<DescriptorUI>D001249</DescriptorUI>" in r.raw for r in rej)  # the bad record, kept raw
    # The good rows of the same files loaded (the truncated file's complete records from desc2025.xml), 8 DrugBank rows.
    assert s["vocab"]["vocab_rows"]["vocab_drugs"] == 8


# ------------------------------------------------------------------------------------------ links
def test_registry_conditions_are_linked_with_method_and_score(linked, spark):
    root, _ = linked
    c = rows_of(spark, root, "conditions", OTHER)
    got = {n: (r.condition_mesh_term, r.link_method) for n, r in c.items()}
    assert got["TYPE 2 DIABETES MELLITUS"] == ("Diabetes Mellitus, Type 2", "synonym")  # case only
    assert got["Diabetes mellitus type II"] == ("Diabetes Mellitus, Type 2", "normalized")  # order, numeral
    assert got["knee osteoarthritis"] == ("Osteoarthritis, Knee", "synonym")
    assert got["Osteoarthritis of the knee"] == ("Osteoarthritis, Knee", "normalized")
    assert got["Breast cancer"] == ("Breast Neoplasms", "normalized")
    assert got["Metastatic breast cancer"] == ("Breast Neoplasms", "normalized")
    assert got["E11.9 - Type 2 diabetes mellitus"] == ("Diabetes Mellitus, Type 2", "synonym")
    assert got["I10"][0] == "Essential Hypertension"  # via the ICD-10 description
    assert got["Diabetis mellitus type 2"] == ("Diabetes Mellitus, Type 2", "fuzzy")
    assert got["Hypothyroidsm"] == ("Hypothyroidism", "fuzzy")
    assert c["TYPE 2 DIABETES MELLITUS"].condition_mesh_id == "D003924"
    assert c["TYPE 2 DIABETES MELLITUS"].link_score == 0.97 and c["Breast cancer"].link_score == 0.92
    assert 0.9 <= c["Hypothyroidsm"].link_score < 1.0
    # ClinicalTrials.gov's own registry names, and NLM's rows left as ingested.
    nct = table(spark, root, "conditions").where("study_id = 'NCT90000001'").collect()
    assert {(r.origin, r.condition_mesh_id, r.link_method) for r in nct} == {
        ("registry", "D003924", "normalized"), ("ctgov_derived", "D003924", "ctgov_derived")}


@pytest.mark.parametrize("name", ["Healthy Volunteers", "Standard of care"])
def test_names_that_must_not_link_stay_unlinked_with_a_reason(linked, spark, name):
    root, _ = linked
    row = rows_of(spark, root, "conditions", OTHER)[name]
    assert (row.condition_mesh_id, row.condition_mesh_term, row.link_method) == (None, None, None)
    cand = table(spark, root, "link_candidates").where(F.col("name") == name).collect()
    assert [(c.vocabulary, c.decision) for c in cand] == [("none", "excluded")] * len(cand) and cand
    assert cand[0].reason.startswith("never_link")


def test_registry_drugs_are_linked_to_drugbank_and_mesh(linked, spark):
    root, _ = linked
    d = rows_of(spark, root, "drugs", OTHER)
    got = {n: (r.drugbank_id, r.drugbank_name, r.link_method) for n, r in d.items()}
    assert got["Metformin 500 mg oral tablet"] == ("DB00331", "Metformin", "normalized")
    assert d["Metformin 500 mg oral tablet"].drug_mesh_id == "D008687"  # UI from the descriptor XML
    assert got["Aspirin"] == ("DB00945", "Acetylsalicylic acid", "exact")  # DrugBank synonym, MeSH exact name
    assert got["Paracetamol 1 g IV"] == ("DB00316", "Acetaminophen", "normalized")
    assert got["Metformine"] == ("DB00331", "Metformin", "fuzzy")
    assert d["Keytruda"].drug_mesh_id == "C582435" and d["Keytruda"].link_method == "synonym"
    for never in ("Placebo oral tablet", "Standard of care", "Exercise program"):  # excluded, or a skipped type
        assert (d[never].drugbank_id, d[never].drug_mesh_id, d[never].link_method) == (None, None, None)
    # Registry ClinicalTrials.gov rows: metformin everywhere it is the intervention.
    met = table(spark, root, "drugs").where("origin = 'registry' AND drug_name = 'Metformin'").collect()
    assert met and {(r.drugbank_id, r.drug_mesh_id, r.link_method) for r in met} == {("DB00331", "D008687", "exact")}


def test_ambiguous_matches_stay_visible(linked, spark):
    root, _ = linked
    cands = table(spark, root, "link_candidates").where("name = 'Vitamin D' AND vocabulary = 'drugs'").collect()
    assert sorted((c.concept_id, c.decision) for c in cands) == [("DB00153", "ambiguous"), ("DB00169", "ambiguous")]
    row = rows_of(spark, root, "drugs", OTHER)["Vitamin D"]
    assert row.drugbank_id is None  # no guess between ergocalciferol and cholecalciferol
    assert row.link_method == "exact"  # the MeSH descriptor "Vitamin D" still links


def test_unlinked_names_say_why(linked, spark):
    root, _ = linked
    why = {r.name: r.reason for r in table(spark, root, "link_candidates").where("vocabulary = 'none'").collect()}
    assert why["Placebo oral tablet"].startswith("never_link")
    if REAL.is_dir():
        assert why["Dysphagia"] == "no candidate in any vocabulary"  # an entry term the tree file lacks


def test_rerun_commits_nothing(linked, spark):
    root, s = linked
    names = ["conditions", "drugs", "link_candidates", "vocab_mesh", "vocab_terms", "vocab_mesh_sources",
             "vocab_drugs", "vocab_icd10", "rejects"]
    before = {n: lake.table_version(spark, lake.table_uri(root, n)) for n in names}
    again = run_named_job("link_ontologies", root)
    assert again["tables"] == {} and again["names_linked_now"] == {"condition": 0, "drug": 0}
    assert again["rows_updated"] == {"conditions": 0, "drugs": 0}
    assert {n: lake.table_version(spark, lake.table_uri(root, n)) for n in names} == before


def test_rows_replaced_by_a_reingest_are_linked_again(linked, spark):
    root, _ = linked
    keys = spark.createDataFrame([(OTHER,)], "study_id STRING")
    fresh = table(spark, root, "conditions").where(f"study_id = '{OTHER}'").select(
        "study_id", "condition_name", *[F.lit(None).alias(c) for c in
                                        ("condition_mesh_id", "condition_mesh_term", "condition_mesh_type")],
        "origin", F.lit(None).alias("link_method"), F.lit(None).alias("link_score"))
    lake.replace_for_keys(spark, root, "conditions", fresh, keys)
    assert rows_of(spark, root, "conditions", OTHER)["Breast cancer"].link_method is None
    again = run_named_job("link_ontologies", root)
    assert set(again["tables"]) == {"conditions"} and again["names_linked_now"] == {"condition": 0, "drug": 0}
    assert again["rows_updated"]["conditions"] == 10
    assert rows_of(spark, root, "conditions", OTHER)["Breast cancer"].condition_mesh_term == "Breast Neoplasms"


# ------------------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def evaluated(linked):
    root, _ = linked
    return run_named_job("evaluate_linking", root, "--group", "fixtures=^NCT9", "--group", "real=^NCT0")


def _ratios(fig):
    for part in ("levels", "by_method"):
        for vals in fig[part].values():
            yield vals["precision"]
            yield vals["recall"]


def test_evaluation_figures_are_computed_and_logged(evaluated, mlflow_server):
    s = evaluated
    for entity in ("conditions", "drugs"):
        figs = [s[entity], *s[entity]["groups"].values()]
        assert all(v is None or 0.0 <= v <= 1.0 for f in figs for v in _ratios(f))
    fx = s["conditions"]["groups"]["fixtures"]
    # NLM mapped three fixture conditions; the linker finds all three without seeing the mapping.
    assert fx["references"] == 3 and fx["levels"]["non_fuzzy"]["precision"] == 1.0
    assert fx["levels"]["non_fuzzy"]["recall"] == 1.0
    assert s["excluded_sources"] == ["lake_ctgov"]
    run_ = mlflow.MlflowClient(mlflow_server).get_run(s["mlflow_run_id"])
    assert run_.data.metrics["fixtures.conditions.non_fuzzy.recall"] == 1.0
    assert "conditions.exact_or_synonym.precision" in run_.data.metrics
    assert run_.data.tags["delta.input.vocab_mesh_sources.version"]


def test_real_records_evaluation(evaluated):
    if not REAL.is_dir() or not REAL_TREE.is_file():
        pytest.skip(f"real records or MeSH tree absent under {SHARED_DATA}")
    real = evaluated["conditions"]["groups"]["real"]
    # Dental Caries, Deglutition Disorders, Brain Injuries, and four Spondyloarthritis meshes (two NLM took from
    # keywords, two post-2019 descriptors) over four studies.
    assert real["references"] == 7 and real["studies"] == 4
    assert real["levels"]["non_fuzzy"]["precision"] == 1.0
    assert real["levels"]["non_fuzzy"]["found"] >= 2  # "Caries, Dental" (word order) and "Brain Injuries"
    drugs = evaluated["drugs"]["groups"]["real"]
    assert drugs["references"] == 1 and drugs["levels"]["exact"]["found"] == 1  # Certolizumab Pegol


def test_a_broken_vocabulary_lowers_the_figures(linked, evaluated, spark):
    root, _ = linked
    lcfg = load_sibling_yaml(load_config(), "linking.yaml")
    # The same MeSH sources with every name and entry term reversed: nothing should be found any more.
    broken = table(spark, root, "vocab_mesh_sources").withColumn("mesh_name", F.reverse("mesh_name")) \
        .withColumn("entry_terms", F.transform("entry_terms", lambda t: F.reverse(t)))
    bad = evaluate.evaluate(spark, root, lcfg, mesh_sources=broken, groups={"fixtures": "^NCT9"})
    good = evaluated["conditions"]["groups"]["fixtures"]["levels"]["all"]
    worse = bad["conditions"]["groups"]["fixtures"]["levels"]["all"]
    assert good["recall"] == 1.0 and worse["recall"] == 0.0
    assert bad["conditions"]["levels"]["all"]["found"] < evaluated["conditions"]["levels"]["all"]["found"]
    # Drugs still reach DrugBank, but their MeSH descriptor (what NLM's mapping is compared with) is gone.
    assert bad["drugs"]["levels"]["all"]["found"] < evaluated["drugs"]["levels"]["all"]["found"]


def test_duplicate_vocabulary_keys_in_one_load_are_rejected_not_dropped(spark, tmp_path):
    """A second copy of a MeSH UI or DrugBank id in one load is a reject with a reason: a silent
    dropDuplicates downstream would break in = out + rejected."""
    from trialpanorama.sources import drugs as drug_src
    from trialpanorama.sources import mesh as mesh_src

    xml = (VOCAB / "desc2025.xml").read_text()
    first = xml[xml.index("<DescriptorRecord "):xml.index("</DescriptorRecord>") + len("</DescriptorRecord>")]
    dup = tmp_path / "desc_dup.xml"
    dup.write_text(xml.replace("</DescriptorRecordSet>", first.replace("Diabetes Mellitus</String></D",
                                                                      "Diabetes (copy)</String></D", 1)
                               + "\n</DescriptorRecordSet>"))
    n_plain = mesh_src.read_xml(spark, [str(VOCAB / "desc2025.xml")], "descriptor")[0].count()
    records, rejects = mesh_src.read_xml(spark, [str(dup)], "descriptor")
    assert records.count() == n_plain and records.where("mesh_ui = 'D003920'").count() == 1
    reasons = [r.reason for r in rejects.collect()]
    assert reasons == ["duplicate MeSH UI D003920 in this load"]

    csv = (VOCAB / "drugbank_vocabulary.csv").read_text().splitlines()
    (tmp_path / "db.csv").write_text("\n".join([*csv, csv[1]]) + "\n")
    plain_rows, plain_rej = drug_src.read_drugbank(spark, [str(VOCAB / "drugbank_vocabulary.csv")])
    rows, rej = drug_src.read_drugbank(spark, [str(tmp_path / "db.csv")])
    assert rows.count() == plain_rows.count()
    extra = [r for r in rej.collect() if r.reason.startswith("duplicate")]
    assert [(r.reason, r.raw) for r in extra] == [("duplicate DrugBank id drugbank_csv/DB00331 in this load", csv[1])]
    assert rej.count() == plain_rej.count() + 1
