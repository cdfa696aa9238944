"""Registry contact persons (names, e-mails, phone numbers) never reach silver, gold, task tables or exports.

The lake is conftest's session-scoped ``task_lake``, built from the fixtures by the real jobs (ClinicalTrials.gov
fixtures plus the real records in shared/data, the ICTRP fixtures in all four shapes, the PubMed fixtures), up
to build_tasks, and ``task_exports`` (export_tasks over it). Then every Delta table outside bronze and every
exported file is scanned for the contact
details the fixtures carry (ClinicalTrials.gov centralContacts, overallOfficials, location contacts and the
responsible party's investigator; ICTRP public/scientific/ethics contacts and feed contacts).

Bronze keeps the raw records by design (shared/ARCHITECTURE.md: bronze is the replayable copy of what the
registry sent), and so does ``rejects`` (a reject must keep its raw text); both are excluded from the scan,
and a positive control checks that the contact details really are in bronze, so the scan can fail.

PubMed authors are public bibliographic data (the byline of a published paper) and are kept in
``publications.authors``; registry citations (``study_references.citation``) are bibliographic too. Neither
column is scanned: a registry contact who also authored a paper legitimately appears there as an author.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tests.conftest import FIXTURES, SHARED_DATA
from trialpanorama import lake
from trialpanorama.sources.ictrp_formats import EXPORT_COLUMNS

pytestmark = pytest.mark.heavy

BIBLIOGRAPHIC = {"publications": {"authors"}, "study_references": {"citation"}}


# ------------------------------------------------------------------------------------- fixture PII
def _ctgov_records(paths: list[Path]) -> list[dict]:
    out: list[dict] = []
    for path in paths:
        for f in sorted(path.rglob("*.json")) + sorted(path.rglob("*.jsonl")):
            text = f.read_text(errors="replace")
            candidates = text.splitlines() if f.suffix == ".jsonl" else [text]
            for c in candidates:
                try:
                    obj = json.loads(c)
                except ValueError:
                    continue
                items = obj if isinstance(obj, list) else obj.get("studies", [obj]) if isinstance(obj, dict) else []
                out += [i for i in items if isinstance(i, dict)]
    return out


def ctgov_contacts(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for rec in _ctgov_records(paths):
        p = rec.get("protocolSection") or {}
        cl = p.get("contactsLocationsModule") or {}
        people = list(cl.get("centralContacts") or []) + list(cl.get("overallOfficials") or [])
        for loc in cl.get("locations") or []:
            people += list((loc or {}).get("contacts") or [])
        rp = (p.get("sponsorCollaboratorsModule") or {}).get("responsibleParty") or {}
        if rp.get("investigatorFullName"):
            people.append({"name": rp["investigatorFullName"]})
        for person in people:
            for key in ("name", "email", "phone"):
                if isinstance(person, dict) and isinstance(person.get(key), str):
                    found.add(person[key])
    return found


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in re.split(r";|<br>", value or "") if v.strip() and v.strip().upper() != "NULL"]


def ictrp_contacts(folder: Path) -> set[str]:
    """Contact names (first + last), e-mails and phones of the ICTRP fixtures, in every shape."""
    found: set[str] = set()

    def add(first: str | None, last: str | None, *rest: str | None) -> None:
        for f, la in zip(_split(first), _split(last), strict=False):
            found.add(f"{f} {la}")
        for v in rest:
            found.update(_split(v))

    idx = {c: i for i, c in enumerate(EXPORT_COLUMNS)}
    with open(folder / "ictrp_full_export.csv", newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) != len(EXPORT_COLUMNS):
                continue
            for kind in ("public", "scientific"):
                add(row[idx[f"{kind}_contact_firstname"]], row[idx[f"{kind}_contact_lastname"]],
                    row[idx[f"{kind}_contact_email"]], row[idx[f"{kind}_contact_tel"]])
            add(None, None, row[idx["ethics_contact_name"]], row[idx["ethics_contact_phone"]],
                row[idx["ethics_contact_email"]])
    with open(folder / "covid19_web.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            low = {k.lower().replace("_", ""): v for k, v in row.items() if k}
            add(low.get("contactfirstname"), low.get("contactlastname"), low.get("contactemail"), low.get("contacttel"))
    from lxml import etree

    for name in ("ictrp_search_export.xml", "rebec_feed.xml"):
        root = etree.parse(str(folder / name), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
        for trial in root.iter("Trial"):
            add(trial.findtext("Contact_Firstname"), trial.findtext("Contact_Lastname"),
                trial.findtext("Contact_Email"), trial.findtext("Contact_Tel"))
        for contact in root.iter("contact"):
            add(contact.findtext("firstname"), contact.findtext("lastname"), contact.findtext("email"),
                contact.findtext("telephone"))
    return found


def needles() -> set[str]:
    raw = ctgov_contacts([FIXTURES / "ctgov", SHARED_DATA / "ctgov"]) | ictrp_contacts(FIXTURES / "ictrp")
    raw |= {v.split(",")[0].strip() for v in raw if "," in v and "@" not in v}  # "Jane Roe, MD, PhD" -> "Jane Roe"
    # very short values ("Dr", "J") would match anything
    return {v for v in raw if len(v) >= 6}


# -------------------------------------------------------------------------------------------- lake
def _hits(df, values: set[str], skip: set[str]) -> dict[str, int]:  # noqa: ANN001
    cols = [c for c in df.columns if c not in skip]
    if not cols:
        return {}
    # to_json escapes nothing in names, e-mails or phones, so a plain substring test is exact
    text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in cols]))
    aggs = [F.sum((F.instr(text, v) > 0).cast("int")).alias(f"n{i}") for i, v in enumerate(sorted(values))]
    row = df.agg(*aggs).first()
    return {v: row[f"n{i}"] for i, v in enumerate(sorted(values)) if row[f"n{i}"]}


def test_fixture_contacts_are_found_in_bronze(task_lake, spark):
    """Positive control: the needles are real contact details, present where raw records are kept."""
    root = task_lake[0]
    values = needles()
    assert len(values) >= 5 and any("@" in v for v in values)
    found: dict[str, int] = {}
    for table in ("ctgov_raw", "ictrp_raw"):
        found.update(_hits(lake.read_named(spark, root, table), values, set()))
    assert any("@" in v for v in found), f"no fixture e-mail found in bronze: {sorted(values)}"


def test_no_contact_details_in_silver_gold_tasks(task_lake, spark):
    root = task_lake[0]
    values = needles()
    leaks: dict[str, dict[str, int]] = {}
    tables = [(name, uri) for name, uri in lake.list_tables(spark, root) if not name.startswith("bronze/")]
    assert {n.split("/")[0] for n, _ in tables} >= {"silver", "gold"}, tables
    for name, uri in tables:
        table = name.rsplit("/", 1)[-1]
        hits = _hits(spark.read.format("delta").load(uri), values, BIBLIOGRAPHIC.get(table, set()))
        if hits:
            leaks[name] = hits
    assert not leaks, f"registry contact details in {leaks}"


def test_no_contact_details_in_exports(task_exports):
    out, _ = task_exports
    files = [p for p in Path(out).rglob("*") if p.is_file()]
    assert files
    values = needles()
    leaks = {}
    for p in files:
        text = p.read_text(errors="replace")
        hit = [v for v in values if v in text]
        if hit:
            leaks[str(p.relative_to(out))] = hit
    assert not leaks, leaks
