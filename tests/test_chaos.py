"""Hostile input per source format (issue 10, part 1), with the real parsers and the real ingest jobs.

The parser-level tests run the XML parsers of every XML source on entity bombs and external entities (fast,
no Spark). The heavy test is `make chaos` in small: a few hundred generated records per format through the
real ingest (one Spark run per format) into a lake per format, then the lake is read back: no crash, records
in = accepted + rejected, every reject with a reason, every generated record found kept or rejected, no
entity expanded or fetched.
"""

from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import ROOT
from trialpanorama.chaos import pubmed as g_pubmed
from trialpanorama.chaos.settings import ChaosSettings
from trialpanorama.chaos.xml_attacks import (
    EXPANSION_NEEDLE,
    FetchCounter,
    attack_dtds,
    marker_for,
    write_marker_file,
)
from trialpanorama.config import load_sibling_yaml


@pytest.fixture
def target(tmp_path):
    marker = marker_for("test")
    path = write_marker_file(tmp_path / "secret", marker)
    with FetchCounter("127.0.0.1", marker) as listener:
        yield path, marker, listener


def _docs(root: str, body: str, target) -> list[tuple[str, bytes]]:  # noqa: ANN001
    path, _, listener = target
    return [(name, (f'<?xml version="1.0"?>\n{dtd}\n' + body.replace("ENT", entity)).encode())
            for name, dtd, entity in attack_dtds(root, path, listener.url)]


def test_pubmed_parser_expands_and_fetches_nothing(target):
    from trialpanorama.sources.pubmed_xml import parse_file

    _, marker, listener = target
    body = f"<PubmedArticleSet>{g_pubmed.article('12345', '&ENT; title')}</PubmedArticleSet>"
    for name, doc in _docs("PubmedArticleSet", body, target):
        for fname, data in ((f"{name}.xml", doc), (f"{name}.xml.gz", gzip.compress(doc))):
            recs = list(parse_file(fname, data, []))
            text = json.dumps(recs, default=str)
            assert recs and marker not in text and EXPANSION_NEEDLE not in text, name
    assert listener.requests == []


def test_ictrp_and_mesh_parsers_expand_and_fetch_nothing(target):
    from trialpanorama.sources.ictrp_formats import parse_xml_document
    from trialpanorama.sources.mesh import parse_record

    _, marker, listener = target
    trial = "<Trials_downloaded_from_ICTRP><Trial><TrialID>ISRCTN1</TrialID><Public_title>&ENT; t</Public_title>" \
            "</Trial></Trials_downloaded_from_ICTRP>"
    for name, doc in _docs("Trials_downloaded_from_ICTRP", trial, target):
        text = repr(parse_xml_document(f"{name}.xml", doc))
        assert marker not in text and EXPANSION_NEEDLE not in text, name
    desc = "<DescriptorRecordSet><DescriptorRecord><DescriptorUI>D000001</DescriptorUI><DescriptorName><String>" \
           "&ENT;</String></DescriptorName><ConceptList/></DescriptorRecord></DescriptorRecordSet>"
    for name, doc in _docs("DescriptorRecordSet", desc, target):
        recs = [parse_record(c, "descriptor") for c in doc.decode().split("</DescriptorRecord>")]
        text = repr(recs)
        assert any(r and r["reason"] for r in recs) and marker not in text and EXPANSION_NEEDLE not in text, name
    assert listener.requests == []


def test_generators_are_deterministic_and_sized(tmp_path, target):
    from trialpanorama.chaos.runner import FORMATS

    path, marker, listener = target
    s = ChaosSettings(7, 50, 1000, 1, 40, path, marker, listener.url)
    for fmt, spec in FORMATS.items():
        a = spec.generate(tmp_path / "a" / fmt, 120, s)
        b = spec.generate(tmp_path / "b" / fmt, 120, s)
        assert len(a.cases) == 120 and len(a.tokens) == 120, fmt  # one unique token per record
        assert len(a.by_attack()) >= 8, (fmt, a.by_attack())
        for fa, fb in zip(a.files, b.files, strict=True):
            assert open(fa, "rb").read() == open(fb, "rb").read(), fa


@pytest.mark.heavy
def test_every_format_survives_hostile_input(spark, base_cfg, tmp_path):
    from trialpanorama.chaos.report import table
    from trialpanorama.chaos.suite import run_suite

    conf = load_sibling_yaml(base_cfg, "chaos.yaml")
    results = run_suite(spark, base_cfg, conf, tmp_path, records=150, big_text_bytes=1_000_000)
    print(table(results))
    assert [r.format for r in results] == conf["formats"]
    for r in results:
        assert r.tried >= 150 and r.records_in > 0, r.format
        assert not r.marker_hits and r.fetches == 0, (r.format, r.marker_hits)
        assert r.crashes == 0, (r.format, r.crash)
        assert r.counts_reconcile and r.rejects_without_reason == 0, r.as_dict()
        assert not r.tokens_missing, (r.format, r.tokens_missing[:10])


@pytest.mark.heavy
def test_ctgov_broken_gzip_is_one_reject(spark, lake_cfg, tmp_path):
    from pyspark.sql import functions as F

    from trialpanorama.sources import ctgov

    good = tmp_path / "NCT90000001.json"
    good.write_text(json.dumps({"protocolSection": {"identificationModule": {"nctId": "NCT90000001"}}}))
    (tmp_path / "broken.json.gz").write_bytes(gzip.compress(good.read_bytes())[:20])
    (tmp_path / "not-gzip.jsonl.gz").write_text("plain text")
    lines = tmp_path / "two.jsonl.gz"
    lines.write_bytes(gzip.compress(b'{"protocolSection": {"identificationModule": {"nctId": "NCT90000002"}}}\n\n'
                                    b'{"protocolSection": {"identificationModule": {"nctId": "NCT90000003"}}}\n'))
    summary = ctgov.ingest(spark, lake_cfg, [str(tmp_path)], F.current_timestamp())
    assert summary.accepted == 3 and summary.rejected == 2, summary


def test_make_chaos_target_runs_the_job():
    text = (ROOT / "Makefile").read_text()
    assert "\nchaos: setup" in text and "jobs/chaos.py --records" in text
