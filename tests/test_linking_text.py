"""Linking building blocks without Spark: name keys, never-link names, vocabulary parsers, the restricted
unpickler on the real packaged drug dictionary, ICD-10 code lists."""

from __future__ import annotations

import bz2
import pickle

import pytest

from tests.conftest import FIXTURES
from trialpanorama.config import load_config, load_sibling_yaml
from trialpanorama.linking.match import fuzzy_guard
from trialpanorama.linking.text import Normalizer
from trialpanorama.sources import drugs as drug_src
from trialpanorama.sources import icd10, mesh

VOCAB = FIXTURES / "vocab"


@pytest.fixture(scope="module")
def lcfg():
    return load_sibling_yaml(load_config(), "linking.yaml")


@pytest.fixture(scope="module")
def cond(lcfg):
    return Normalizer(lcfg, "condition")


@pytest.fixture(scope="module")
def drug(lcfg):
    return Normalizer(lcfg, "drug")


@pytest.mark.parametrize("a, b", [
    ("Diabetes Mellitus, Type 2", "type 2 DIABETES mellitus"),      # case and word order
    ("Caries, Dental", "Dental Caries"),                              # inverted MeSH heading
    ("Non-Small-Cell Lung Carcinoma", "carcinoma (non small cell), lung"),  # punctuation
    ("Brain Injuries", "brain injury"),                               # plural
    ("Breast Neoplasms", "Breast Cancer"),                            # registry phrasing -> MeSH phrasing
    ("Alzheimer Disease", "Alzheimer's disease"),                     # possessive
    ("Sjögren Syndrome", "Sjogren's syndrome"),                       # accents
    ("Diabetes Mellitus, Type 2", "T2DM"),                            # capitalised abbreviation
    ("Hepatitis B", "HBV"),
])
def test_condition_names_differing_in_case_order_punctuation_plural_share_a_key(cond, a, b):
    assert cond.keys(a).norm == cond.keys(b).norm


@pytest.mark.parametrize("a, b", [
    ("Diabetes Mellitus, Type 1", "Diabetes Mellitus, Type 2"),       # numbers matter
    ("Hypothyroidism", "Hyperthyroidism"),
    ("Interleukin-2", "Interleukin-6"),
])
def test_different_concepts_keep_different_keys(cond, a, b):
    assert cond.keys(a).norm != cond.keys(b).norm


def test_abbreviations_expand_only_when_written_in_capitals(cond):
    assert cond.keys("MS").norm == cond.keys("Multiple Sclerosis").norm
    assert cond.keys("ms").norm == "ms"  # a lower-case word is not taken for an abbreviation


def test_stage_and_severity_words_are_dropped_only_in_the_relaxed_key(cond):
    k = cond.keys("Metastatic Breast Cancer")
    assert k.norm != cond.keys("Breast Neoplasms").norm
    assert k.relaxed == cond.keys("Breast Neoplasms").norm
    assert cond.keys("Stage IV Colon Cancer").relaxed == cond.keys("Colonic Neoplasms").norm


@pytest.mark.parametrize("raw", ["Metformin 500 mg oral tablet", "metformin", "METFORMIN 850mg BID PO",
                                 "Metformin (extended release) 1,000 mg once daily", "Metformin HCl"])
def test_dose_and_route_words_are_stripped_from_drug_names(drug, raw):
    k = drug.keys(raw)
    assert "metformin" in (k.norm, k.relaxed)
    assert drug.keys(raw).norm in ("metformin", "hcl metformin")


def test_numbers_that_are_part_of_a_drug_name_stay(drug):
    assert drug.keys("Interleukin-2 1 MIU/m2").norm == "2 interleukin"
    assert drug.keys("Vitamin B12 1000 mcg").norm == "12 b vitamin"


@pytest.mark.parametrize("name", ["Placebo", "placebo oral tablet", "Matching placebo", "Placebo to match metformin",
                                  "Standard of care", "Standard-of-care chemotherapy", "Healthy Volunteers",
                                  "healthy volunteer", "Healthy", "Sham", "Usual care", "No intervention"])
def test_names_that_must_never_link(cond, drug, name):
    assert drug.excluded(name) or cond.excluded(name)


@pytest.mark.parametrize("name", ["Metformin", "Breast Cancer", "Healthy aging", "Care of the dying"])
def test_ordinary_names_are_not_excluded(cond, name):
    assert cond.excluded(name) is None


def test_fuzzy_guard_accepts_typos_and_refuses_contrastive_or_numeric_changes(lcfg):
    prefixes = lcfg["fuzzy"]["contrastive_prefixes"]
    assert fuzzy_guard("diabete mellitus", "diabetes mellitus", prefixes) is None
    assert fuzzy_guard("hyperthyroidism", "hypothyroidism", prefixes)
    assert fuzzy_guard("1 diabetes mellitus", "2 diabetes mellitus", prefixes) == "numbers differ"
    assert fuzzy_guard("carcinoma cell lung small", "carcinoma cell lung non small", prefixes)


# ----------------------------------------------------------------------------------------- formats
def _records(path, kind, closing):
    return [r for r in (mesh.parse_record(c, kind) for c in path.read_text().split(closing)) if r]


def test_descriptor_xml_reads_only_the_direct_child_descriptor_ui():
    recs = {r["mesh_ui"]: r for r in _records(VOCAB / "desc2025.xml", "descriptor", "</DescriptorRecord>")}
    assert "D000000001" not in recs  # nested in SeeRelatedList of D003924
    t2 = recs["D003924"]
    assert t2["mesh_name"] == "Diabetes Mellitus, Type 2"
    assert t2["tree_numbers"] == ["C18.452.394.750.149", "C19.246.300"]
    assert "Type 2 Diabetes Mellitus" in t2["entry_terms"] and "NIDDM" in t2["entry_terms"]
    assert not any("Permuted" in t for t in t2["entry_terms"])  # IsPermutedTermYN="Y" terms are skipped
    metformin = recs["D008687"]
    assert metformin["pharm_actions"] == ["D007004"]  # the nested UI is a pharmacological action, not the record
    assert "Metformin Hydrochloride" in metformin["entry_terms"]  # terms of every concept
    assert recs["D005260"]["tree_numbers"] == []  # TreeNumberList is optional (check tags)


def test_supplementary_xml_and_a_record_without_ui():
    recs = _records(VOCAB / "supp2025.xml", "supplementary", "</SupplementalRecord>")
    good = [r for r in recs if not r.get("reason")]
    assert [(r["mesh_ui"], r["mesh_name"], r["mapped_to"]) for r in good] == [("C582435", "pembrolizumab", ["D061067"])]
    assert [r["reason"] for r in recs if r.get("reason")] == ["SupplementalRecord without a direct SupplementalRecordUI"]


def test_truncated_descriptor_xml_keeps_complete_records_and_rejects_the_rest():
    recs = _records(VOCAB / "desc2025_truncated.xml", "descriptor", "</DescriptorRecord>")
    assert [r["mesh_ui"] for r in recs if not r.get("reason")] == ["D003920", "D006973"]
    reasons = [r["reason"] for r in recs if r.get("reason")]
    assert len(reasons) == 2 and all(r.startswith("malformed DescriptorRecord XML") for r in reasons)


def test_drugbank_csv_rows_are_accepted_or_rejected_one_by_one():
    results = [drug_src.parse_drugbank_line(line) for line in (VOCAB / "drugbank_vocabulary.csv").read_text().splitlines()]
    good = [r for r, why in results if r]
    bad = [why for r, why in results if why]
    assert [r["drugbank_id"] for r in good] == ["DB00331", "DB00945", "DB09037", "DB00316", "DB01050", "DB00641",
                                                "DB00153", "DB00169"]
    assert good[1]["synonyms"] == ["2-Acetoxybenzoic acid", "Aspirin", "Acetylsalicylate", "ASA"]
    assert good[2]["inchikey"] is None  # biologics have no InChI key
    assert sorted(bad) == sorted(["malformed DrugBank ID: 'DB00XYZ'", "expected 7 fields, got 6",
                                  "DB00999: empty Common name", "unparseable CSV row: ',' expected after '\"'"])


# ------------------------------------------------------------------------------------ drug dictionary
def test_restricted_unpickler_refuses_any_other_global():
    evil = b"cos\ngetcwd\n)R."  # protocol-0 pickle calling os.getcwd()
    with pytest.raises(pickle.UnpicklingError, match="refused global os.getcwd"):
        drug_src.restricted_load(evil)
    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict"):
        import collections

        drug_src.restricted_load(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    assert drug_src.restricted_load(pickle.dumps({"a": [1, {2}, "x", 1.5]}, protocol=0)) == {"a": [1, {2}, "x", 1.5]}


def test_packaged_drug_dictionary_loads_with_the_restricted_unpickler(tmp_path):
    import sys

    path = drug_src.dictionary_path()
    if path is None:
        pytest.skip("drug-named-entity-recognition is not installed")
    assert "drug_named_entity_recognition" not in sys.modules  # located, never imported
    obj = drug_src.load_dictionary(path)
    rows = {r["name"]: r for r in drug_src.dictionary_rows(obj, str(path))}
    assert len(rows) >= 20_000
    met = rows["Metformin"]
    assert met["drugbank_id"] == "DB00331" and met["mesh_tree"] == ["D02.078.370.141.450"]
    assert "glucophage" in met["brand_names"] + met["synonyms"]
    # A dictionary file smuggling a global is refused, not executed.
    bad = tmp_path / "evil.pkl.bz2"
    bad.write_bytes(bz2.compress(b"cos\ngetcwd\n)R."))
    with pytest.raises(pickle.UnpicklingError):
        drug_src.load_dictionary(bad)


# -------------------------------------------------------------------------------------------- ICD-10
def test_icd10_code_lists_load_from_the_packages():
    rows = icd10.load([icd10.SYSTEM_CM, icd10.SYSTEM_WHO])
    by = {(r["system"], r["code"]): r for r in rows}
    assert sum(r["system"] == icd10.SYSTEM_CM for r in rows) > 90_000
    assert sum(r["system"] == icd10.SYSTEM_WHO for r in rows) > 12_000
    e119 = by[(icd10.SYSTEM_CM, "E11.9")]
    assert (e119["code_compact"], e119["level"], e119["parent_code"], e119["is_leaf"]) == ("E119", "subcategory", "E11", True)
    assert by[(icd10.SYSTEM_WHO, "E11")]["description"] == "Type 2 diabetes mellitus"
    assert icd10.find_codes("Health condition 1: E11.9 - Type 2 diabetes; I10") == ["E119", "I10"]
