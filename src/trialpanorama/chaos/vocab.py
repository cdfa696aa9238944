"""Hostile vocabulary files: MeSH descriptor XML and the DrugBank open-vocabulary CSV.

Both are read record by record (MeSH split on ``</DescriptorRecord>``, DrugBank line by line), so the
record-level attacks share a few files; a truncated file and the entity attacks (MeSH) are files of their own.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from xml.sax.saxutils import escape

from trialpanorama.chaos.payloads import INJECTIONS, INVALID_UTF8, Batch, Case, Picker, big_text, token
from trialpanorama.chaos.settings import ChaosSettings
from trialpanorama.chaos.xml_attacks import attack_dtds
from trialpanorama.sources.drugs import HEADER


# ------------------------------------------------------------------------------------------- MeSH
def mesh_ui(serial: int) -> str:
    return f"D9{serial:05d}"


def descriptor(ui: str, name: str, extra: str = "", concepts: bool = True, cls: str = "1") -> str:
    concept = ("<ConceptList><Concept PreferredConceptYN=\"Y\"><ConceptUI>M0000001</ConceptUI><TermList><Term>"
               f"<String>{name}</String></Term><Term><String>{name} entry</String></Term></TermList></Concept>"
               "</ConceptList>") if concepts else ""
    return (f'<DescriptorRecord DescriptorClass="{cls}"><DescriptorUI>{ui}</DescriptorUI><DescriptorName><String>'
            f"{name}</String></DescriptorName>{extra}<TreeNumberList><TreeNumber>C08.127</TreeNumber>"
            f"</TreeNumberList>{concept}</DescriptorRecord>")


def mesh_case(serial: int, pick: Picker, s: ChaosSettings, big_left: list[int]) -> Case:
    tok = token(serial)
    ui = mesh_ui(serial)
    name = f"Chaos term {tok}"
    kind = serial % 11
    if kind == 0:
        return Case(tok, "valid", descriptor(ui, name).encode())
    if kind == 1:
        return Case(tok, "injection in id", descriptor(escape(pick.choice(INJECTIONS)) + tok, name).encode())
    if kind == 2:
        return Case(tok, "nulls everywhere", f"<DescriptorRecord><DescriptorUI/><DescriptorName/><Chaos>{tok}</Chaos>"
                    "<ConceptList/></DescriptorRecord>".encode())
    if kind == 3:
        return Case(tok, "no ConceptList", descriptor(ui, name, concepts=False).encode())
    if kind == 4:
        nested = (f"<PharmacologicalActionList><PharmacologicalAction><DescriptorReferredTo><DescriptorUI>{ui}"
                  f"</DescriptorUI></DescriptorReferredTo></PharmacologicalAction></PharmacologicalActionList>")
        return Case(tok, "only a nested DescriptorUI", f"<DescriptorRecord>{nested}<DescriptorName><String>{name}"
                    "</String></DescriptorName><ConceptList/></DescriptorRecord>".encode())
    if kind == 5:
        depth = s.deep_nesting
        return Case(tok, "deep nesting", descriptor(ui, name, extra="<x>" * depth + tok + "</x>" * depth).encode())
    if kind == 6 and big_left[0] > 0:
        big_left[0] -= 1
        return Case(tok, "10 MB text field", descriptor(ui, escape(big_text(s.big_text_bytes, tok))).encode())
    if kind == 7:
        data = descriptor(ui, name).encode()
        at = data.index(tok.encode()) + len(tok)
        return Case(tok, "invalid UTF-8", data[:at] + pick.choice(INVALID_UTF8) + data[at:])
    if kind == 8:
        return Case(tok, "injection in text", descriptor(ui, escape(f"{pick.choice(INJECTIONS)} {name}"),
                                                         cls=escape(pick.choice(INJECTIONS))).encode())
    if kind == 9:
        return Case(tok, "undefined entity", descriptor(ui, f"&xxe; {name}").encode())
    return Case(tok, "duplicate DescriptorUI", descriptor(mesh_ui(serial - 10), name).encode(),
                note=f"dup:{token(serial - 10)}")


def _descriptor_set(records: list[bytes], doctype: str = "") -> bytes:
    return (b'<?xml version="1.0"?>\n' + doctype.encode() + b'\n<DescriptorRecordSet LanguageCode="eng">\n'
            + b"\n".join(records) + b"\n</DescriptorRecordSet>\n")


def generate_mesh(folder: Path, n: int, s: ChaosSettings) -> Batch:
    folder.mkdir(parents=True, exist_ok=True)
    pick = Picker(s.seed, "mesh")
    batch = Batch()
    big_left = [s.big_text_records]
    attacks = attack_dtds("DescriptorRecordSet", s.marker_file, s.fetch_url)
    cases = [mesh_case(i, pick, s, big_left) for i in range(n - len(attacks) - 1)]
    for k in range(0, len(cases), s.records_per_file):
        path = folder / f"desc_{k // s.records_per_file:03d}.xml"
        path.write_bytes(_descriptor_set([c.data for c in cases[k:k + s.records_per_file]]))
        batch.files.append(str(path))
    batch.cases += cases
    serial = len(cases)
    for name, doctype, entity in attacks:
        tok = token(serial)
        data = _descriptor_set([descriptor(mesh_ui(serial), f"&{entity}; {tok}").encode()], doctype)
        path = folder / f"{name.replace(' ', '_')}.xml"
        path.write_bytes(data)
        batch.add_single(str(path), Case(tok, name, data))
        serial += 1
    tok = token(serial)
    doc = _descriptor_set([descriptor(mesh_ui(serial), f"Chaos {tok}").encode()])
    data = doc[: doc.index(tok.encode()) + len(tok)]
    (folder / "truncated.xml").write_bytes(data)
    batch.add_single(str(folder / "truncated.xml"), Case(tok, "truncated file", data))
    return batch


# --------------------------------------------------------------------------------------- DrugBank
def drugbank_id(serial: int) -> str:
    return f"DB{serial:05d}"


def _line(fields: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(fields)
    return buf.getvalue().encode("utf-8")


def drug_fields(serial: int, tok: str) -> list[str]:
    return [drugbank_id(serial), drugbank_id(serial), f"Chaosmab {tok}", "657-24-9", "9100L32L2N",
            "Alpha | Beta", "XZWYZXLIPXDOLR-UHFFFAOYSA-N"]


def drug_case(serial: int, pick: Picker, s: ChaosSettings, big_left: list[int]) -> Case:
    tok = token(serial)
    f = drug_fields(serial, tok)
    kind = serial % 11
    if kind == 0:
        return Case(tok, "valid", _line(f))
    if kind == 1:
        f[0] = pick.choice(INJECTIONS) + tok
        return Case(tok, "injection in id", _line(f))
    if kind == 2:
        cells = pick.choice([f[:3], f + ["extra"], [tok]])
        return Case(tok, "wrong field count", _line(cells))
    if kind == 3:
        return Case(tok, "nulls everywhere", _line([drugbank_id(serial), "", "", "", "", tok, ""]))
    if kind == 4:
        line = _line(f)
        return Case(tok, "unclosed quote", line[: line.index(tok.encode()) + len(tok)] + b"\n")
    if kind == 5:
        f[5] = f"multi\nline {tok}\nsynonyms"
        return Case(tok, "embedded newline", _line(f), note="split")
    if kind == 6 and big_left[0] > 0:
        big_left[0] -= 1
        f[5] = " | ".join([big_text(s.big_text_bytes // 2, tok)] * 2)
        return Case(tok, "10 MB text field", _line(f))
    if kind == 7:
        line = _line(f)
        at = line.index(tok.encode()) + len(tok)
        return Case(tok, "invalid UTF-8", line[:at] + pick.choice(INVALID_UTF8) + line[at:])
    if kind == 8:
        f[2] = f"{pick.choice(INJECTIONS)} {tok}"
        f[5] = " | ".join(INJECTIONS[:5])
        return Case(tok, "injection in text", _line(f))
    if kind == 9:
        f[2] = f"nul\x00 esc\x1b[2J {tok}"
        return Case(tok, "control characters", _line(f))
    return Case(tok, "duplicate DrugBank ID", _line(drug_fields(serial - 10, tok)), note=f"dup:{token(serial - 10)}")


def generate_drugbank(folder: Path, n: int, s: ChaosSettings) -> Batch:
    folder.mkdir(parents=True, exist_ok=True)
    pick = Picker(s.seed, "drugbank")
    batch = Batch()
    big_left = [s.big_text_records]
    cases = [drug_case(i, pick, s, big_left) for i in range(n - 1)]
    header = _line(HEADER)
    for k in range(0, len(cases), s.records_per_file):
        path = folder / f"drugbank_{k // s.records_per_file:03d}.csv"
        path.write_bytes(header + b"".join(c.data for c in cases[k:k + s.records_per_file]))
        batch.files.append(str(path))
    batch.cases += cases
    tok = token(len(cases))
    line = _line(drug_fields(len(cases), tok))
    data = header + line[: line.index(tok.encode()) + len(tok)]
    (folder / "truncated.csv").write_bytes(data)
    batch.add_single(str(folder / "truncated.csv"), Case(tok, "truncated file", data))
    return batch
