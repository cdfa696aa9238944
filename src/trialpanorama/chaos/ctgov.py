"""Hostile ClinicalTrials.gov API v2 JSON: record-level attacks as JSON lines, file-level ones as files.

Record-level attacks are one JSON-lines row each (``.jsonl`` files of ``records_per_file`` rows), so the
reader sees exactly one candidate record per generated case; file-level attacks (a truncated study file,
a broken array, gzip that is not gzip) are single files.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

from trialpanorama.chaos.payloads import (
    BAD_DATES,
    BAD_NUMBERS,
    INJECTIONS,
    INVALID_UTF8,
    Batch,
    Case,
    Picker,
    big_text,
    token,
)
from trialpanorama.chaos.settings import ChaosSettings


def nct(serial: int) -> str:
    return f"NCT9{serial:07d}"


def study(serial: int, tok: str, **fields) -> dict:
    """A minimal valid record; ``fields`` override whole modules."""
    rec = {"protocolSection": {
        "identificationModule": {"nctId": nct(serial), "briefTitle": f"Chaos study {tok}",
                                 "orgStudyIdInfo": {"id": f"ORG-{serial}"}},
        "statusModule": {"overallStatus": "COMPLETED", "startDateStruct": {"date": "2020-01"},
                         "lastUpdatePostDateStruct": {"date": "2021-01-01"}},
        "designModule": {"studyType": "INTERVENTIONAL", "phases": ["PHASE2"],
                         "enrollmentInfo": {"count": 10, "type": "ACTUAL"}},
        "conditionsModule": {"conditions": ["Asthma"]},
    }}
    for path, value in fields.items():
        node = rec
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return rec


def _dumps(obj) -> bytes:  # noqa: ANN001
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _deep(depth: int, leaf: str) -> str:
    return "[" * depth + json.dumps(leaf) + "]" * depth


def record_case(serial: int, pick: Picker, s: ChaosSettings, big_left: list[int]) -> Case:
    """One JSON-lines record carrying one attack (chosen by serial, varied by the seed)."""
    tok = token(serial)
    kind = serial % 16
    p = "protocolSection"
    if kind == 0:
        return Case(tok, "valid", _dumps(study(serial, tok)))
    if kind == 1:
        bad = pick.choice(INJECTIONS)
        return Case(tok, "injection in id", _dumps(study(serial, tok, **{f"{p}.identificationModule.nctId": bad + tok})))
    if kind == 2:
        bad = pick.choice(INJECTIONS)
        return Case(tok, "injection in text", _dumps(study(serial, tok, **{
            f"{p}.identificationModule.briefTitle": f"{bad} {tok}", f"{p}.identificationModule.orgStudyIdInfo":
            {"id": bad}, f"{p}.conditionsModule.conditions": [bad, f"{bad}'); --"]})))
    if kind == 3:
        field = pick.choice([
            (f"{p}.designModule.enrollmentInfo", {"count": pick.choice(["abc", [], {}, "12"]), "type": "ACTUAL"}),
            (f"{p}.designModule.phases", "PHASE2"),
            (f"{p}.conditionsModule.conditions", {"a": 1}),
            ("hasResults", "yes"),
            (f"{p}.identificationModule.briefTitle", ["list", "title"]),
            (f"{p}.statusModule", "COMPLETED"),
            (p, [1, 2, 3]),
        ])
        return Case(tok, "wrong types", _dumps(study(serial, tok, **{field[0]: field[1], "chaosToken": tok})))
    if kind == 4:
        rec = {"protocolSection": None, "derivedSection": None, "resultsSection": None, "hasResults": None,
               "chaosToken": tok}
        return Case(tok, "nulls everywhere (no id)", _dumps(rec))
    if kind == 5:
        rec = study(serial, tok)
        for module in ("statusModule", "designModule", "conditionsModule"):
            rec[p][module] = {k: None for k in rec[p][module]}
        rec[p]["eligibilityModule"] = {"eligibilityCriteria": None, "minimumAge": None, "sex": None}
        rec[p]["armsInterventionsModule"] = {"armGroups": [None, {}], "interventions": None}
        rec[p]["contactsLocationsModule"] = {"locations": [None, {"country": None}]}
        return Case(tok, "nulls in every field", _dumps(rec))
    if kind == 6:
        count = pick.choice([-5, -1, -2147483648, 0])
        return Case(tok, "negative enrollment", _dumps(study(serial, tok, **{
            f"{p}.designModule.enrollmentInfo": {"count": count, "type": "ESTIMATED"}})))
    if kind == 7:
        d = pick.choice(BAD_DATES)
        return Case(tok, "dates out of range", _dumps(study(serial, tok, **{
            f"{p}.statusModule.startDateStruct": {"date": d, "type": "ACTUAL"},
            f"{p}.statusModule.completionDateStruct": {"date": pick.choice(BAD_DATES)},
            f"{p}.statusModule.studyFirstSubmitDate": pick.choice(BAD_DATES),
            f"{p}.statusModule.lastUpdatePostDateStruct": {"date": d}})))
    if kind == 8:
        # duplicate object keys: which one a parser keeps varies; either way the record must be accounted for
        raw = (f'{{"protocolSection":{{"identificationModule":{{"nctId":"{nct(serial)}","nctId":"{nct(serial + 500000)}",'
               f'"briefTitle":"dup {tok}","briefTitle":"second"}},"identificationModule":{{"nctId":"NCT1"}}}},'
               f'"chaosToken":"{tok}","chaosToken":"{tok}"}}')
        return Case(tok, "duplicate keys", raw.encode())
    if kind == 9:
        good = _dumps(study(serial, tok))
        at = good.index(tok.encode()) + len(tok)
        return Case(tok, "invalid UTF-8", good[:at] + b" " + pick.choice(INVALID_UTF8) + good[at:])
    if kind == 10:
        depth = s.deep_nesting
        raw = (_dumps(study(serial, tok))[:-1] + b', "deep": ' + _deep(depth, tok).encode() + b"}")
        return Case(tok, "deep nesting", raw)
    if kind == 11:
        whole = _dumps({"chaosToken": tok, **study(serial, tok)})
        return Case(tok, "truncated record", pick.cut_after(whole, tok.encode()))
    if kind == 12:
        raw = pick.choice([json.dumps([tok]), json.dumps(tok), json.dumps({"studies": tok}),
                           json.dumps({"FullStudiesResponse": {"FullStudies": tok}})])
        return Case(tok, "not a study object", raw.encode())
    if kind == 13 and big_left[0] > 0:
        big_left[0] -= 1
        return Case(tok, "10 MB text field", _dumps(study(serial, tok, **{
            f"{p}.descriptionModule": {"briefSummary": big_text(s.big_text_bytes, tok)}})))
    if kind == 14:
        title = f"nul\u0000 bell\u0007 rtl\u202e {tok} LONE_SURROGATE"
        raw = _dumps(study(serial, tok, **{f"{p}.identificationModule.briefTitle": title,
                                          f"{p}.identificationModule.acronym": "\ufeff\u200b"}))
        return Case(tok, "control characters", raw.replace(b"LONE_SURROGATE", b"\\ud800"))
    if kind == 15:
        n = pick.choice(BAD_NUMBERS)
        return Case(tok, "numbers out of range", _dumps(study(serial, tok, **{
            f"{p}.designModule.enrollmentInfo": {"count": n}, "chaosToken": tok})))
    return Case(tok, "duplicate NCT id", _dumps(study(serial - 13, tok)), note=f"dup:{token(serial - 13)}")


def file_cases(first_serial: int, pick: Picker, s: ChaosSettings) -> list[tuple[str, Case]]:
    """(file name, case) for the attacks that are whole files."""
    out: list[tuple[str, Case]] = []
    serial = first_serial

    def nxt() -> tuple[int, str]:
        nonlocal serial
        serial += 1
        return serial, token(serial)

    i, tok = nxt()
    out.append(("truncated_study.json", Case(tok, "truncated file", pick.cut(_dumps(study(i, tok)))[:60]
                                           + tok.encode())))
    i, tok = nxt()
    arr = b"[" + _dumps(study(i, tok)) + b"," + _dumps(study(i + 1, tok))[:40]
    out.append(("broken_array.json", Case(tok, "truncated array", arr)))
    i, tok = nxt()
    out.append(("page_with_garbage.json", Case(tok, "page with non-object members",
                                               _dumps({"studies": [1, None, tok, [tok]], "nextPageToken": tok}))))
    i, tok = nxt()
    out.append(("binary_garbage.json", Case(tok, "binary garbage", bytes(range(256)) + tok.encode() + b"\x00" * 64)))
    i, tok = nxt()
    out.append(("not_gzip.json.gz", Case(tok, "gzip that is not gzip", b"this is not gzip " + tok.encode())))
    i, tok = nxt()
    gz = gzip.compress(_dumps(study(i, tok)))
    out.append(("truncated.json.gz", Case(tok, "truncated gzip", gz[: len(gz) // 2])))
    i, tok = nxt()
    out.append(("garbage.zip", Case(tok, "zip that is not a zip", b"PK\x03\x04 not really " + tok.encode())))
    i, tok = nxt()
    out.append(("deep_whole.json", Case(tok, "deep nesting (file)", _deep(s.deep_nesting * 4, tok).encode())))
    return out


def _zip_traversal(path: Path, serial: int) -> Case:
    tok = token(serial)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../../../../tmp/chaos-escape.json", _dumps(study(serial, tok)))
    return Case(tok, "zip member path traversal", b"")


def generate(folder: Path, n: int, s: ChaosSettings) -> Batch:
    folder.mkdir(parents=True, exist_ok=True)
    pick = Picker(s.seed, "ctgov")
    batch = Batch()
    big_left = [s.big_text_records]
    files = list(file_cases(n, pick, s))
    n_records = n - len(files) - 1
    lines: list[bytes] = []
    for serial in range(n_records):
        case = record_case(serial, pick, s, big_left)
        batch.cases.append(case)
        lines.append(case.data.replace(b"\n", b" ").replace(b"\r", b" "))
    for k in range(0, len(lines), s.records_per_file):
        path = folder / f"records_{k // s.records_per_file:03d}.jsonl"
        path.write_bytes(b"\n".join(lines[k:k + s.records_per_file]) + b"\n")
        batch.files.append(str(path))
    for name, case in files:
        (folder / name).write_bytes(case.data)
        batch.add_single(str(folder / name), case)
    zpath = folder / "traversal.zip"
    batch.add_single(str(zpath), _zip_traversal(zpath, n + len(files) + 2))
    return batch
