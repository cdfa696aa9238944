"""The PubMed -> tantivy query translator and the literature index (tantivy, no Spark)."""

from __future__ import annotations

import pytest

from trialpanorama.search.index import LiteratureIndex, build_index
from trialpanorama.search.pubmed_query import QuerySyntaxError, parse_pubmed, to_string

A = "title,abstract,mesh,keywords"


@pytest.mark.parametrize("query,expected", [
    ("asthma", f"asthma[{A}]"),
    ("a OR b AND c", f"((a[{A}] OR b[{A}]) AND c[{A}])"),  # PubMed: strictly left to right
    ("a OR (b AND c)", f"(a[{A}] OR (b[{A}] AND c[{A}]))"),
    ("a b", f"(a[{A}] AND b[{A}])"),  # implicit AND
    ('"heart failure"[tiab]', '"heart failure"[title,abstract]'),
    ("heart failure[tiab]", "(heart[title,abstract] AND failure[title,abstract])"),
    ("randomized controlled trial[pt]", '"randomized controlled trial"[pubtype]'),
    ("Diabetes Mellitus[MeSH Terms]", '"diabetes mellitus"[mesh]'),
    ("diabet*[tiab] NOT review[pt]", "(diabet*[title,abstract] NOT review[pubtype])"),
    ("child* [ti]", "child*[title]"),
    ("covid-19", f'"covid 19"[{A}]'),
    ("asthma[foo]", f"asthma[{A}]"),  # unknown tag: all fields
    ("cats and dogs", f"((cats[{A}] AND and[{A}]) AND dogs[{A}])"),  # lower-case and is a word
])
def test_translation(query, expected):
    assert to_string(parse_pubmed(query)) == expected


@pytest.mark.parametrize("query", ["(a OR b", "a OR", "AND b", "a)", "", "NOT a", "[tiab]"])
def test_syntax_errors(query):
    with pytest.raises(QuerySyntaxError):
        parse_pubmed(query)


ROWS = [
    {"pmid": "1", "title": "Metformin in type 2 diabetes", "abstract": "A randomized trial in adults.",
     "mesh_headings": [{"descriptor_name": "Diabetes Mellitus, Type 2"}],
     "publication_types": [{"name": "Randomized Controlled Trial"}]},
    {"pmid": "2", "title": "Diabetic foot ulcers", "abstract": "A review of wound care.",
     "mesh_headings": [{"descriptor_name": "Diabetic Foot"}], "publication_types": [{"name": "Review"}]},
    {"pmid": "3", "title": "Budesonide for asthma in children", "abstract": "Children with asthma were randomized.",
     "mesh_headings": [{"descriptor_name": "Asthma"}], "publication_types": [{"name": "Randomized Controlled Trial"}]},
    {"pmid": "4", "title": "Asthma and diabetes together", "abstract": "Cohort study.",
     "mesh_headings": [{"descriptor_name": "Asthma"}, {"descriptor_name": "Diabetes Mellitus, Type 2"}],
     "publication_types": [{"name": "Journal Article"}]},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = tmp_path_factory.mktemp("ix") / "publications-v0"
    build_index(path, ROWS, {"publications_version": 0})
    return LiteratureIndex(path)


@pytest.mark.parametrize("query,expected", [
    ("diabet*", {"1", "2", "4"}),
    ("diabet*[tiab] NOT review[pt]", {"1", "4"}),
    ("randomized controlled trial[pt]", {"1", "3"}),
    ('"type 2 diabetes"[ti]', {"1"}),
    ('"Diabetes Mellitus, Type 2"[mh]', {"1", "4"}),
    ("asthma AND diabetes", {"4"}),
    ("(asthma OR metformin) AND randomized controlled trial[pt]", {"1", "3"}),
    ("asthma OR metformin AND randomized controlled trial[pt]", {"1", "3"}),  # left to right
    ("asthma OR (metformin AND cohort)", {"3", "4"}),
    ("child*[ti] NOT diabetes", {"3"}),
    ("zebra", set()),
])
def test_search_hits(index, query, expected):
    res = index.search(query, limit=100)
    assert res.error is None and set(res.pmids) == expected and res.total_hits == len(expected)


def test_search_is_deterministic_and_reports_syntax_errors(index):
    a, b = index.search("asthma OR diabetes", 10), index.search("asthma OR diabetes", 10)
    assert a.pmids == b.pmids and set(a.pmids) == {"1", "3", "4"}
    bad = index.search("(asthma OR", 10)
    assert bad.pmids == [] and bad.error
    assert index.all_pmids() == ["1", "2", "3", "4"]
    assert index.search_text("asthma children budesonide", 2, exclude={"3"}) == ["4"]
