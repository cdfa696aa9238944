"""Hostile MEDLINE/PubMed XML: broken articles inside otherwise good files, and files that attack the parser.

Record-level attacks are ``PubmedArticle`` / ``DeleteCitation`` elements of a few ``PubmedArticleSet`` files,
which the reader salvages article by article when the file stops parsing; entity bombs, external entities,
truncated and fake gzip files are files of their own.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from xml.sax.saxutils import escape

from trialpanorama.chaos.payloads import INJECTIONS, INVALID_UTF8, Batch, Case, Picker, big_text, token
from trialpanorama.chaos.settings import ChaosSettings
from trialpanorama.chaos.xml_attacks import attack_dtds


def pmid(serial: int) -> str:
    return str(90_000_000 + serial)


def article(pid: str, title: str, abstract: str = "", year: str = "2020", version: str = "1", extra: str = "") -> str:
    return (f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="{version}">{pid}</PMID>'
            f"<Article><Journal><JournalIssue><PubDate><Year>{year}</Year></PubDate></JournalIssue>"
            f"<Title>Chaos Journal</Title></Journal><ArticleTitle>{title}</ArticleTitle>"
            f"<Abstract><AbstractText>{abstract}</AbstractText></Abstract>"
            f"<AuthorList><Author><LastName>Roe</LastName><ForeName>Jane</ForeName></Author></AuthorList>{extra}"
            f"</Article></MedlineCitation></PubmedArticle>")


def record_case(serial: int, pick: Picker, s: ChaosSettings, big_left: list[int]) -> Case:
    tok = token(serial)
    pid = pmid(serial)
    kind = serial % 13
    t = escape(f"Chaos article {tok}")
    if kind == 0:
        return Case(tok, "valid", article(pid, t).encode())
    if kind == 1:
        return Case(tok, "injection in id", article(escape(pick.choice(INJECTIONS)) + tok, t).encode())
    if kind == 2:
        return Case(tok, "missing PMID", article("", t).replace('<PMID Version="1"></PMID>', "").encode())
    if kind == 3:
        return Case(tok, "nulls everywhere", f'<PubmedArticle><MedlineCitation><PMID Version="">{pid}</PMID>'
                    f"<Article><ArticleTitle/><Abstract/><AuthorList><Author/></AuthorList><Journal/></Article>"
                    f"<Chaos>{tok}</Chaos></MedlineCitation></PubmedArticle>".encode())
    if kind == 4:
        year = pick.choice(["99999", "-2020", "0000", "abcd", "2020-13"])
        extra = "<DataBankList><DataBank><DataBankName>ClinicalTrials.gov</DataBankName><AccessionNumberList>" \
                f"<AccessionNumber>{escape(pick.choice(INJECTIONS))}</AccessionNumber></AccessionNumberList>" \
                "</DataBank></DataBankList>"
        return Case(tok, "dates out of range", article(pid, t, year=year, version=pick.choice(["-1", "abc", "99999999999"]),
                                                       extra=extra).encode())
    if kind == 5:
        depth = s.deep_nesting
        return Case(tok, "deep nesting", article(pid, t, abstract="<i>" * depth + tok + "</i>" * depth).encode())
    if kind == 6 and big_left[0] > 0:
        big_left[0] -= 1
        return Case(tok, "10 MB text field", article(pid, t, abstract=big_text(s.big_text_bytes, tok)).encode())
    if kind == 7:
        data = article(pid, t).encode()
        at = data.index(tok.encode()) + len(tok)
        return Case(tok, "invalid UTF-8", data[:at] + pick.choice(INVALID_UTF8) + data[at:])
    if kind == 8:
        data = article(pid, t).encode()
        return Case(tok, "truncated record", data[: data.index(tok.encode()) + len(tok) + 5])
    if kind == 9:
        bad = escape(pick.choice(INJECTIONS))
        return Case(tok, "injection in text", article(pid, f"{bad} {t}", abstract=f"{bad} NCT00000000'; --").encode())
    if kind == 10:
        pids = "".join(f'<PMID Version="1">{p}</PMID>' for p in (escape(pick.choice(INJECTIONS)) + tok, pmid(serial)))
        return Case(tok, "hostile DeleteCitation", f"<DeleteCitation>{pids}</DeleteCitation>".encode())
    if kind == 11:
        return Case(tok, "duplicate PMID", article(pmid(serial - 11), t).encode(), note=f"dup:{token(serial - 11)}")
    return Case(tok, "undefined entity", article(pid, f"&undefined; {t}").encode())


def _set(articles: list[bytes], doctype: str = "") -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n' + doctype.encode() + b"\n<PubmedArticleSet>\n"
            + b"\n".join(articles) + b"\n</PubmedArticleSet>\n")


def generate(folder: Path, n: int, s: ChaosSettings) -> Batch:
    folder.mkdir(parents=True, exist_ok=True)
    pick = Picker(s.seed, "pubmed")
    batch = Batch()
    big_left = [s.big_text_records]
    attacks = attack_dtds("PubmedArticleSet", s.marker_file, s.fetch_url)
    n_singles = len(attacks) + 4
    cases = [record_case(i, pick, s, big_left) for i in range(n - n_singles)]
    for k in range(0, len(cases), s.records_per_file):
        path = folder / f"chaos26n{k // s.records_per_file:04d}.xml"
        path.write_bytes(_set([c.data for c in cases[k:k + s.records_per_file]]))
        batch.files.append(str(path))
    batch.cases += cases
    serial = n - n_singles
    for name, doctype, entity in attacks:
        tok = token(serial)
        data = _set([article(pmid(serial), f"&{entity}; {tok}").encode()], doctype)
        path = folder / f"{name.replace(' ', '_')}.xml"
        path.write_bytes(data)
        batch.add_single(str(path), Case(tok, name, data))
        serial += 1
    singles = []
    tok = token(serial)
    gz = gzip.compress(_set([article(pmid(serial), tok, abstract=big_text(200_000, tok)).encode()]))
    singles.append(("truncated.xml.gz", Case(tok, "truncated gzip", gz[: len(gz) * 2 // 3])))
    serial += 1
    tok = token(serial)
    singles.append(("not_gzip.xml.gz", Case(tok, "gzip that is not gzip", _set([article(pmid(serial), tok).encode()]))))
    serial += 1
    tok = token(serial)
    singles.append(("wrong_root.xml", Case(tok, "unknown root element", f"<html><body>{tok}</body></html>".encode())))
    serial += 1
    tok = token(serial)
    doc = _set([article(pmid(serial), tok).encode()])
    singles.append(("truncated_file.xml", Case(tok, "truncated file", doc[: doc.index(tok.encode()) + len(tok)])))
    for name, case in singles:
        (folder / name).write_bytes(case.data)
        batch.add_single(str(folder / name), case)
    return batch
