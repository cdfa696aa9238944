"""The reader fixes the hostile-input suite forced (issue 10), each checked on its own, without Spark.

`make chaos` found that invalid UTF-8 in a MeSH or DrugBank file failed the Arrow hand-over into the pandas
parser (the whole ingest died), that a PMID Version too large for an INT failed the PubMed batch, and that a
MeSH reject carried its file's DOCTYPE (a 300 KB entity definition) instead of its record's text, and that one
bad trial in an ICTRP XML export rejected the whole file with all its good trials.
"""

from __future__ import annotations

import json

import pandas as pd

from trialpanorama.chaos.pubmed import article
from trialpanorama.sources import drugs, mesh
from trialpanorama.sources.files import decode_utf8
from trialpanorama.sources.ictrp_formats import parse_xml_document
from trialpanorama.sources.pubmed_xml import parse_file

BAD_BYTE = b"\xff"


def test_decode_utf8_names_the_first_bad_byte_and_keeps_the_rest():
    assert decode_utf8("text") == ("text", None)
    assert decode_utf8(None) == ("", None)
    assert decode_utf8("Müller".encode()) == ("Müller", None)
    text, reason = decode_utf8(b"Chaosmab \xff\xfe end")
    assert text == "Chaosmab \ufffd\ufffd end"
    assert reason == "invalid UTF-8 at byte 9"


def test_drugbank_line_with_invalid_utf8_is_a_reject_with_its_text():
    good = b'"DB00001","BTD00024","Lepirudin","138068-37-8","Y43GF64R34","Hirudin","XX-UHFFFAOYSA-N"'
    bad = good.replace(b"Lepirudin", b"Lepi\xffrudin").replace(b"DB00001", b"DB00002")
    pdf = pd.DataFrame({"source_file": ["f.csv", "f.csv"], "value": [good, bad]})
    (out,) = list(drugs._parse_drugbank(iter([pdf])))
    rows = out.to_dict("records")
    assert rows[0]["reason"] is None and rows[0]["name"] == "Lepirudin"
    assert rows[1]["reason"] == f"DB00002: invalid UTF-8 at byte {bad.index(BAD_BYTE)}"
    assert "Lepi\ufffdrudin" in rows[1]["raw"] and rows[1]["name"] is None


def _descriptor(ui: str, name: bytes) -> bytes:
    return (f"<DescriptorRecord DescriptorClass=\"1\"><DescriptorUI>{ui}</DescriptorUI><DescriptorName><String>"
            .encode() + name + b"</String></DescriptorName><ConceptList><Concept PreferredConceptYN=\"Y\">"
            b"<ConceptUI>M0000001</ConceptUI><TermList><Term><String>x</String></Term></TermList></Concept>"
            b"</ConceptList>")


def test_mesh_record_with_invalid_utf8_is_rejected_and_a_reject_has_no_prolog():
    prolog = b'<?xml version="1.0"?>\n<!DOCTYPE DescriptorRecordSet [ <!ENTITY big "' + b"lol" * 1000 + b'"> ]>\n'
    first = prolog + b"<DescriptorRecordSet>" + _descriptor("D000001", b"&big;")
    second = _descriptor("D000002", b"Aspirin \xff")
    third = _descriptor("D000003", b"Aspirin")
    pdf = pd.DataFrame({"source_file": ["d.xml"] * 3, "value": [first, second, third]})
    (out,) = list(mesh._parse_partition("descriptor")(iter([pdf])))
    rows = {r["raw"][:60]: r for r in out.to_dict("records")}
    assert len(rows) == 3
    by_ui = {next(u for u in ("D000001", "D000002", "D000003") if u in r["raw"]): r for r in rows.values()}
    assert by_ui["D000001"]["raw"].startswith("<DescriptorRecord ") and "lollol" not in by_ui["D000001"]["raw"]
    assert by_ui["D000002"]["reason"] == f"D000002: invalid UTF-8 at byte {second.index(BAD_BYTE)}"
    assert by_ui["D000003"]["reason"] is None and by_ui["D000003"]["mesh_name"] == "Aspirin"


def test_pubmed_version_out_of_range_is_a_reject_not_a_failed_batch():
    doc = ("<PubmedArticleSet>" + article("101", "ok", version="2") + article("102", "huge", version="99999999999")
           + article("103", "neg", version="-1") + "</PubmedArticleSet>").encode()
    recs = list(parse_file("v.xml", doc, []))
    assert [(r["pmid"], r["pmid_version"], r["reason"]) for r in recs] == [
        ("101", 2, None),
        ("102", 1, "PMID 102: Version out of range: '99999999999'"),
        ("103", 1, "PMID 103: Version out of range: '-1'"),
    ]


def _trial(tid: str, title: str = "A trial") -> bytes:
    return f"<Trial><TrialID>{tid}</TrialID><Public_title>{title}</Public_title></Trial>".encode()


def test_an_ictrp_xml_file_that_does_not_parse_loses_only_its_bad_records():
    deep = b"<Trial><TrialID>ISRCTN3</TrialID>" + b"<x>" * 5000 + b"</x>" * 5000 + b"</Trial>"
    bad_utf8 = _trial("ISRCTN4", "Caf").replace(b"Caf", b"Caf" + BAD_BYTE)
    doc = (b'<?xml version="1.0"?>\n<Trials_downloaded_from_ICTRP>\n' + _trial("ISRCTN1") + b"\n"
           + _trial("ISRCTN2", "&undefined;") + b"\n" + deep + b"\n" + bad_utf8
           + b"\njunk\n" + _trial("ISRCTN5") + b"\n<Trial><TrialID>ISRCTN6</TrialID><Public_ti")
    rows = parse_xml_document("portal.xml", doc)
    kept = [json.loads(r[3])["trial_id"] for r in rows if r[4] is None]
    reasons = [r[4] for r in rows if r[4]]
    assert kept == ["ISRCTN1", "ISRCTN5"]
    assert [r.split(":")[0].split(" (")[0] for r in reasons] == [
        "unparseable XML record", "unparseable XML record", f"invalid UTF-8 at byte {bad_utf8.index(BAD_BYTE)}",
        "text between records of a file that does not parse", "not a complete record"]
    assert "Entity 'undefined' not defined" in reasons[0] and "Excessive depth" in reasons[1]
    assert all(r[0] == "portal.xml" and r[1] == "portal_xml" for r in rows)
    rejects = [r for r in rows if r[4]]
    assert "ISRCTN6" in rejects[-1][2] and rejects[3][2].strip() == "junk"  # every reject keeps its text


def test_an_xml_file_of_no_ictrp_shape_stays_one_reject():
    rows = parse_xml_document("other.xml", b"<clinical_study><x>&y;</x></clinical_study>")
    assert len(rows) == 1 and rows[0][3] is None and rows[0][4].startswith("unparseable XML: ")
