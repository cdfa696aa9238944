"""Hostile TrialPanorama parquet: studies and conditions parts with wrong types, nulls, injections and
orphans, plus files that are not parquet at all and columns whose names attack SQL identifiers.

A study's unit of change is its ``studies`` row with all its child rows, so every case is one studies row
(or one orphan / id-less child row); the parts are written with pyarrow, one schema per part, which is how
a re-exported or hand-edited release drifts (``actual_accrual`` as text in one part, a number in another).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trialpanorama.chaos.payloads import BAD_NUMBERS, INJECTIONS, Batch, Case, Picker, big_text, token
from trialpanorama.chaos.settings import ChaosSettings

STUDY_COLS = ("study_id", "study_source", "study_type", "title", "abstract", "sponsor", "start_year",
              "recruitment_status", "phase", "actual_accrual", "target_accrual", "min_age", "max_age", "sex",
              "healthy_volunteers")


def sid(serial: int) -> str:
    return f"PANO-{serial:07d}"


def study_row(serial: int, tok: str) -> dict:
    return {"study_id": sid(serial), "study_source": "ClinicalTrials.gov", "study_type": "Interventional",
            "title": f"Chaos {tok}", "abstract": "a", "sponsor": "s", "start_year": 2020,
            "recruitment_status": "Completed", "phase": "Phase 2", "actual_accrual": 10, "target_accrual": 12,
            "min_age": "18 Years", "max_age": "65 Years", "sex": "All", "healthy_volunteers": "No"}


def case_rows(serial: int, pick: Picker, s: ChaosSettings, big_left: list[int]) -> tuple[str, dict, Case]:
    """(part, row, case): the part groups rows that share one parquet schema."""
    tok = token(serial)
    row = study_row(serial, tok)
    kind = serial % 10
    if kind == 0:
        return "typed", row, Case(tok, "valid", b"")
    if kind == 1:
        row["study_id"] = pick.choice(INJECTIONS) + tok
        return "typed", row, Case(tok, "injection in id", b"")
    if kind == 2:
        return "typed", {**dict.fromkeys(STUDY_COLS), "title": tok}, Case(tok, "nulls everywhere (no id)", b"")
    if kind == 3:
        row.update(actual_accrual=str(pick.choice(BAD_NUMBERS)), start_year=pick.choice(["MMXX", "-5", "99999", ""]),
                   target_accrual=pick.choice(["-12", "1e400", "12.5"]), healthy_volunteers=pick.choice(["maybe", "2"]))
        return "text", row, Case(tok, "wrong types", b"")
    if kind == 4:
        row.update(actual_accrual=-5, target_accrual=-(2**62), start_year=-2020)
        return "typed", row, Case(tok, "negative enrollment", b"")
    if kind == 5:
        row.update(start_year=2**31 - 1, min_age="-18 Years", max_age="99999999999 Years")
        return "typed", row, Case(tok, "dates out of range", b"")
    if kind == 6 and big_left[0] > 0:
        big_left[0] -= 1
        row["abstract"] = big_text(s.big_text_bytes, tok)
        return "typed", row, Case(tok, "10 MB text field", b"")
    if kind == 7:
        bad = pick.choice(INJECTIONS)
        row.update(title=f"{bad} {tok}", sponsor=bad, phase=bad, sex=bad, study_type=bad, recruitment_status=bad)
        return "typed", row, Case(tok, "injection in text", b"")
    if kind == 8:
        row["title"] = f"nul\x00 \ud800 rtl\u202e {tok}".encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return "typed", row, Case(tok, "control characters", b"")
    return "typed", study_row(serial - 9, tok), Case(tok, "duplicate study_id", b"", note=f"dup:{token(serial - 9)}")


def _write(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def generate(folder: Path, n: int, s: ChaosSettings) -> Batch:
    folder.mkdir(parents=True, exist_ok=True)
    pick = Picker(s.seed, "panorama")
    batch = Batch()
    big_left = [s.big_text_records]
    n_singles = 5
    parts: dict[str, list[dict]] = {"typed": [], "text": []}
    for i in range(n - n_singles):
        part, row, case = case_rows(i, pick, s, big_left)
        parts[part].append(row)
        batch.cases.append(case)
    typed = pa.schema([(c, pa.int32() if c == "start_year" else pa.int64() if c.endswith("accrual") else pa.string())
                       for c in STUDY_COLS])
    k = 0
    for part, rows in parts.items():
        schema = typed if part == "typed" else pa.schema([(c, pa.string()) for c in STUDY_COLS])
        for j in range(0, len(rows), s.records_per_file):
            path = folder / f"studies_part_{k}.parquet"
            _write(path, rows[j:j + s.records_per_file], schema)
            batch.files.append(str(path))
            k += 1
    serial = n - n_singles
    # child rows: an orphan (no studies row), one without a study_id, and hostile column names
    tok_orphan, tok_noid = token(serial), token(serial + 1)
    _write(folder / "conditions.parquet", [
        {"study_id": sid(serial), "condition_name": tok_orphan, "condition_mesh_id": "D0", "condition_mesh_type": "x"},
        {"study_id": None, "condition_name": tok_noid, "condition_mesh_id": None, "condition_mesh_type": None},
        {"study_id": sid(0), "condition_name": "Asthma", "condition_mesh_id": "D001249", "condition_mesh_type": "d"},
    ])
    batch.files.append(str(folder / "conditions.parquet"))
    batch.cases += [Case(tok_orphan, "orphan child row", b""), Case(tok_noid, "child row without study_id", b"")]
    tok = token(serial + 2)
    _write(folder / "drugs.parquet", [{"study_id": sid(0), "drug_name": tok, "a.b": "dotted", "x`y": "tick",
                                       "study id": "space", "rx_normalized_name": "'); DROP TABLE drugs; --"}])
    batch.add_single(str(folder / "drugs.parquet"), Case(tok, "hostile column names", b""))
    tok = token(serial + 3)
    path = folder / "studies_part_98.parquet"
    _write(path, [study_row(serial + 3, tok)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    batch.add_single(str(path), Case(tok, "truncated file", b"", note="unreadable"))
    tok = token(serial + 4)
    path = folder / "studies_part_99.parquet"
    path.write_bytes(b"PAR1 not really parquet " + tok.encode())
    batch.add_single(str(path), Case(tok, "not parquet", b"", note="unreadable"))
    return batch
