"""Hostile WHO ICTRP exports: the 63-column full-export CSV and the search-portal / feed XML.

CSV: one generated case per CSV record, in a few export files; an unclosed quote (which swallows the rest
of a file by design of CSV) and a duplicate-header CSV are files of their own. XML: the record-level
attacks are ``<Trial>`` elements of a few portal files (a file that does not parse is one reject by design,
so each whole-file attack gets its own file); every entity attack is a file with its DOCTYPE.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from xml.sax.saxutils import escape

from trialpanorama.chaos.payloads import (
    BAD_DATES,
    INJECTIONS,
    INVALID_UTF8,
    Batch,
    Case,
    Picker,
    big_text,
    token,
)
from trialpanorama.chaos.settings import ChaosSettings
from trialpanorama.chaos.xml_attacks import attack_dtds
from trialpanorama.sources.ictrp_formats import EXPORT_COLUMNS

COL = {name: i for i, name in enumerate(EXPORT_COLUMNS)}


def trial_id(serial: int) -> str:
    return f"ISRCTN9{serial:07d}"


def export_row(serial: int, tok: str) -> list[str]:
    row = ["NULL"] * len(EXPORT_COLUMNS)
    values = {"trial_id": trial_id(serial), "last_refreshed_on": "17 February 2025", "public_title": f"Chaos {tok}",
              "date_registration": "01/02/2020", "target_size": "40", "recruitment_status": "Recruiting",
              "countries": "Greece;Italy", "conditions": "Asthma", "public_contact_email": f"c{serial}@example.org"}
    for k, v in values.items():
        row[COL[k]] = v
    return row


def _csv_line(row: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(row)
    return buf.getvalue().encode("utf-8")


def csv_case(serial: int, pick: Picker, s: ChaosSettings, big_left: list[int]) -> Case:
    tok = token(serial)
    row = export_row(serial, tok)
    kind = serial % 12
    if kind == 0:
        return Case(tok, "valid", _csv_line(row))
    if kind == 1:
        row[0] = pick.choice(INJECTIONS) + tok
        return Case(tok, "injection in id", _csv_line(row))
    if kind == 2:
        cut = pick.choice([1, 2, 40, 62])
        extra = pick.choice([True, False])
        cells = row + ["x", tok] if extra else row[:cut - 1] + [tok]
        return Case(tok, "wrong column count", _csv_line(cells))
    if kind == 3:
        cells = ["NULL"] * len(EXPORT_COLUMNS)
        cells[COL["public_title"]] = tok
        return Case(tok, "nulls everywhere (no id)", _csv_line(cells))
    if kind == 4:
        row[COL["date_registration"]] = pick.choice(BAD_DATES)
        row[COL["date_enrollment"]] = pick.choice(BAD_DATES)
        row[COL["last_refreshed_on"]] = pick.choice(BAD_DATES)
        return Case(tok, "dates out of range", _csv_line(row))
    if kind == 5:
        row[COL["target_size"]] = pick.choice(["-40", "-1", "99999999999999", "1e9", "forty", "NaN"])
        row[COL["results_actual_enrollment"]] = "-5"
        return Case(tok, "negative enrollment", _csv_line(row))
    if kind == 6:
        line = _csv_line(row)
        at = line.index(tok.encode()) + len(tok)
        return Case(tok, "invalid UTF-8", line[:at] + pick.choice(INVALID_UTF8) + line[at:])
    if kind == 7:
        bad = pick.choice(INJECTIONS)
        for c in ("scientific_title", "primary_sponsor", "conditions", "interventions", "countries"):
            row[COL[c]] = bad
        row[COL["public_title"]] = f'{bad} "quoted" {tok}\nsecond line, with comma'
        return Case(tok, "injection in text", _csv_line(row))
    if kind == 8 and big_left[0] > 0:
        big_left[0] -= 1
        row[COL["inclusion_criteria"]] = big_text(s.big_text_bytes, tok)
        return Case(tok, "10 MB text field", _csv_line(row))
    if kind == 9:
        row[COL["public_title"]] = f"nul\x00 ctl\x01\x1b[31m rtl\u202e {tok}"
        return Case(tok, "control characters", _csv_line(row))
    if kind == 10:
        row[COL["age_min"]] = pick.choice(["-18 Years", "999999999999 Years", "18 Lightyears", "Y", ""])
        row[COL["gender"]] = pick.choice(INJECTIONS)
        row[COL["phase"]] = pick.choice(INJECTIONS)
        return Case(tok, "wrong types", _csv_line(row))
    row = export_row(serial - 11, tok)
    return Case(tok, "duplicate TrialID", _csv_line(row), note=f"dup:{token(serial - 11)}")


def _xml_trial(serial: int, tok: str, title: str | None = None, extra: str = "", tid: str | None = None) -> str:
    return (f"<Trial><TrialID>{escape(tid if tid is not None else trial_id(serial))}</TrialID>"
            f"<Public_title>{title if title is not None else escape('Chaos ' + tok)}</Public_title>"
            f"<Date_registration>01/02/2020</Date_registration><Recruitment_Status>Recruiting</Recruitment_Status>"
            f"<Target_size>40</Target_size><Contact_Email>x{serial}@example.org</Contact_Email>{extra}</Trial>")


def xml_case(serial: int, pick: Picker, s: ChaosSettings, big_left: list[int]) -> Case:
    tok = token(serial)
    kind = serial % 10
    if kind == 0:
        return Case(tok, "valid", _xml_trial(serial, tok).encode())
    if kind == 1:
        return Case(tok, "injection in id", _xml_trial(serial, tok, tid=pick.choice(INJECTIONS) + tok).encode())
    if kind == 2:
        return Case(tok, "nulls everywhere (no id)", f"<Trial><TrialID/><Public_title>{tok}</Public_title>"
                    "<Date_registration/><Target_size/><Phase></Phase></Trial>".encode())
    if kind == 3:
        extra = (f"<TrialID>{trial_id(serial + 500000)}</TrialID><Public_title>second</Public_title>"
                 f"<Secondary_ID>{escape(pick.choice(INJECTIONS))}</Secondary_ID><Secondary_ID>NCT00000000</Secondary_ID>")
        return Case(tok, "duplicate elements", _xml_trial(serial, tok, extra=extra).encode())
    if kind == 4:
        extra = (f"<Date_enrollement>{escape(pick.choice(BAD_DATES))}</Date_enrollement>"
                 f"<Last_Refreshed_on>{escape(pick.choice(BAD_DATES))}</Last_Refreshed_on>"
                 "<Target_size>-40</Target_size><Inclusion_agemin>-5 Years</Inclusion_agemin>")
        return Case(tok, "dates out of range", _xml_trial(serial, tok, extra=extra).encode())
    if kind == 5:
        depth = s.deep_nesting
        title = "<i>" * depth + escape(tok) + "</i>" * depth
        return Case(tok, "deep nesting", _xml_trial(serial, tok, title=title).encode())
    if kind == 6 and big_left[0] > 0:
        big_left[0] -= 1
        return Case(tok, "10 MB text field", _xml_trial(serial, tok, title=escape(big_text(s.big_text_bytes, tok))).encode())
    if kind == 7:
        bad = escape(pick.choice(INJECTIONS))
        return Case(tok, "injection in text", _xml_trial(serial, tok, title=f"{bad} <![CDATA[ ]]]]><![CDATA[> {tok} ]]>",
                                                         extra=f"<Condition>{bad}</Condition>").encode())
    if kind == 8:
        return Case(tok, "undefined entity", _xml_trial(serial, tok, title=f"&undefined; {tok}").encode(),
                    note="file-breaking")
    return Case(tok, "unknown elements", _xml_trial(serial, tok, extra=f"<Unknown a='{tok}'><x/></Unknown>").encode())


def _portal(trials: list[bytes], doctype: str = "") -> bytes:
    head = b'<?xml version="1.0" encoding="UTF-8"?>\n' + doctype.encode() + b"\n<Trials_downloaded_from_ICTRP>\n"
    return head + b"\n".join(trials) + b"\n</Trials_downloaded_from_ICTRP>\n"


def generate_csv(folder: Path, n: int, s: ChaosSettings) -> Batch:
    folder.mkdir(parents=True, exist_ok=True)
    pick = Picker(s.seed, "ictrp_csv")
    batch = Batch()
    big_left = [s.big_text_records]
    singles: list[tuple[str, Case]] = []
    tok = token(n)
    line = _csv_line(export_row(n, tok))
    singles.append(("unclosed_quote.csv", Case(tok, "truncated file (unclosed quote)", line[: line.index(tok.encode())
                                                                                          + len(tok)])))
    tok = token(n + 1)
    header = ["TrialID", "TrialID", "Public_title", "Public_title", "Date_registration"]
    body = _csv_line(header) + _csv_line([trial_id(n + 1), pick.choice(INJECTIONS), tok, "x", "01/02/2020"])
    singles.append(("dup_header.csv", Case(tok, "duplicate header names", body)))
    tok = token(n + 2)
    singles.append(("bom_crlf.csv", Case(tok, "BOM and CRLF", b"\xef\xbb\xbf" + _csv_line(export_row(n + 2, tok))
                                          .replace(b"\n", b"\r\n"))))
    cases = [csv_case(i, pick, s, big_left) for i in range(n - len(singles))]
    for k in range(0, len(cases), s.records_per_file):
        path = folder / f"export_{k // s.records_per_file:03d}.csv"
        path.write_bytes(b"".join(c.data for c in cases[k:k + s.records_per_file]))
        batch.files.append(str(path))
    batch.cases += cases
    for name, case in singles:
        (folder / name).write_bytes(case.data)
        batch.add_single(str(folder / name), case)
    return batch


def generate_xml(folder: Path, n: int, s: ChaosSettings) -> Batch:
    folder.mkdir(parents=True, exist_ok=True)
    pick = Picker(s.seed, "ictrp_xml")
    batch = Batch()
    big_left = [s.big_text_records]
    attacks = attack_dtds("Trials_downloaded_from_ICTRP", s.marker_file, s.fetch_url)
    n_singles = len(attacks) + 4
    cases = [xml_case(i, pick, s, big_left) for i in range(n - n_singles)]
    breaking = [c for c in cases if c.note == "file-breaking"]
    kept = [c for c in cases if c.note != "file-breaking"]
    for k in range(0, len(kept), s.records_per_file):
        path = folder / f"portal_{k // s.records_per_file:03d}.xml"
        path.write_bytes(_portal([c.data for c in kept[k:k + s.records_per_file]]))
        batch.files.append(str(path))
    # records that break their whole file (by design one reject per file): together in one file
    if breaking:
        path = folder / "portal_undefined_entities.xml"
        path.write_bytes(_portal([c.data for c in breaking]))
        batch.files.append(str(path))
    batch.cases += cases
    serial = n - n_singles
    for name, doctype, entity in attacks:
        tok = token(serial)
        data = _portal([_xml_trial(serial, tok, title=f"&{entity}; {tok}").encode()], doctype)
        path = folder / f"{name.replace(' ', '_')}.xml"
        path.write_bytes(data)
        batch.add_single(str(path), Case(tok, name, data))
        serial += 1
    singles = []
    tok = token(serial)
    singles.append(("truncated.xml", Case(tok, "truncated file",
                                          pick.cut_after(_portal([_xml_trial(serial, tok).encode()]), tok.encode()))))
    serial += 1
    tok = token(serial)
    doc = _portal([_xml_trial(serial, tok).encode()])
    at = doc.index(tok.encode()) + len(tok)
    singles.append(("invalid_utf8.xml", Case(tok, "invalid UTF-8 (file)", doc[:at] + b"\xff\xfe\x80" + doc[at:])))
    serial += 1
    tok = token(serial)
    singles.append(("unknown_root.xml", Case(tok, "unknown root element", f"<clinical_study>{tok}</clinical_study>"
                                             .encode())))
    serial += 1
    tok = token(serial)
    feed = (f"<trials><trial><main><trial_id>{escape(pick.choice(INJECTIONS))}RBR-{tok}</trial_id>"
            f"<date_registration>{escape(pick.choice(BAD_DATES))}</date_registration></main>"
            f"<secondary_ids><secondary_id><sec_id>{escape(pick.choice(INJECTIONS))}</sec_id></secondary_id>"
            f"<secondary_id/></secondary_ids><contacts><contact><firstname>{tok}</firstname></contact></contacts>"
            f"</trial><trial/></trials>")
    singles.append(("feed.xml", Case(tok, "feed with hostile ids", feed.encode())))
    for name, case in singles:
        (folder / name).write_bytes(case.data)
        batch.add_single(str(folder / name), case)
    return batch
