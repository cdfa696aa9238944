"""MEDLINE/PubMed XML to plain records with lxml: the part of the PubMed ingest that runs inside a task.

Spark's XML reader splits titles with inline markup (``<i>``, ``<sup>``, MathML) into separate fields
(formats.md §4); lxml's ``iterparse`` with ``itertext()`` keeps the text whole, in reading order, and reads
a 40 MB baseline file in seconds. So each file is parsed here, by one Spark task, streaming: gzip is
decompressed on the fly and every finished top-level element is cleared.

A syntax error stops an XML parser for good, so one broken article would lose the rest of its file. When
``iterparse`` fails, the file is parsed again record by record (``_salvage``): the text is cut at the
top-level start tags, the records ``iterparse`` already yielded are skipped, and each remaining record is
parsed alone, so only the broken one is rejected. A truncated or corrupt gzip keeps what decompressed.

Every record is a dict with the fields of ``PARSED_DDL`` (pubmed.py); ``reason`` is None when accepted.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

from lxml import etree

from trialpanorama.normalize.registry_ids import (
    Registry,
    TrialIdMatch,
    databank_index,
    find_trial_ids,
    normalize_accession,
)

TOP_TAGS = ("PubmedArticle", "PubmedBookArticle", "DeleteCitation")
_START = re.compile(rb"<(PubmedArticle|PubmedBookArticle|DeleteCitation)[\s>]")
_PMID = re.compile(r"^\d{1,9}$")
_YEAR = re.compile(r"(\d{4})")
_MAX_VERSION = 999  # PMID/@Version: NLM numbers versions 1, 2, ...; anything else in it is corrupt input
_GZIP_MAGIC = b"\x1f\x8b"
_STREAM_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError
_RAW_LIMIT = 200_000  # characters of a rejected record kept in `rejects.raw`

Record = dict[str, Any]
# The files are untrusted: entities are never expanded (a DOCTYPE's internal entities would otherwise be, the
# quadratic-blowup bomb included), no DTD or entity is loaded, nothing is fetched. MEDLINE text uses only the
# predefined XML entities and numeric character references, which every parser resolves regardless.
_SAFE: dict[str, Any] = {"huge_tree": True, "resolve_entities": False, "no_network": True, "load_dtd": False}


# ------------------------------------------------------------------------------------------ helpers
def file_key(source_file: str) -> str:
    """The file's name without .gz/.xml: PubMed names (pubmed21n1298) sort in publication order."""
    name = PurePosixPath(source_file).name
    for suffix in (".gz", ".xml"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def source_version(pmid_version: int, key: str, seq: int) -> str:
    """Sortable version of a record: PMID version first, then file order, then position in the file.

    A higher PMID@Version wins over a lower one whichever file it came from (PubMed shows the latest
    version); among equal versions the later file, and within a file the later record, wins. So a
    DeleteCitation (at the end of its file) beats the same file's article, and an older file re-ingested
    later cannot bring a deleted or revised article back.
    """
    return f"{pmid_version:05d}|{key}|{seq:09d}"


def _text(el: etree._Element | None) -> str | None:
    """All text under ``el`` in reading order (inline markup and MathML included), whitespace collapsed."""
    if el is None:
        return None
    text = " ".join("".join(el.itertext()).split())
    return text or None


def _yn(value: str | None) -> bool | None:
    return None if value is None else value.upper() == "Y"


def _raw(el: etree._Element) -> str:
    return etree.tostring(el, encoding="unicode", with_tail=False)


def _version(el: etree._Element | None) -> int | None:
    """PMID/@Version (1 when absent); None when it is no small positive integer (NLM's run 1, 2, ...): it
    orders the versions of an article, so a garbled one must not pass as version 1."""
    text = ((el.get("Version") if el is not None else None) or "1").strip()
    return int(text) if text.isdigit() and 0 < int(text) <= _MAX_VERSION else None


def _version_reason(pmid: str, el: etree._Element) -> str:
    return f"PMID {pmid}: Version out of range: {el.get('Version')[:40]!r}"


# ---------------------------------------------------------------------------------------- extraction
def _abstract(art: etree._Element) -> tuple[list[dict[str, Any]], str | None]:
    """Labelled sections kept apart, plus the whole abstract ("LABEL: text" lines, as PubMed shows it)."""
    sections = [{"label": t.get("Label"), "nlm_category": t.get("NlmCategory"), "text": _text(t)}
                for t in art.findall("Abstract/AbstractText")]
    sections = [s for s in sections if s["text"]]
    whole = "\n".join(f"{s['label']}: {s['text']}" if s["label"] else s["text"] for s in sections)
    return sections, whole or None


def _year(pub_date: etree._Element | None) -> int | None:
    """PubDate/Year, else the first four digits of MedlineDate ("1998 Dec-1999 Jan")."""
    if pub_date is None:
        return None
    text = pub_date.findtext("Year") or pub_date.findtext("MedlineDate") or ""
    m = _YEAR.search(text)
    return int(m.group(1)) if m else None


_AUTHOR_FIELDS = {"LastName": "last_name", "ForeName": "fore_name", "Initials": "initials"}


def _authors(art: etree._Element) -> list[dict[str, Any]]:
    """One pass over each Author's children (author lists are the bulk of an article's elements)."""
    out = []
    for a in art.iterfind("AuthorList/Author"):
        author: dict[str, Any] = {"last_name": None, "fore_name": None, "initials": None, "collective_name": None,
                                  "affiliations": []}
        for child in a:
            if child.tag in _AUTHOR_FIELDS:
                author[_AUTHOR_FIELDS[child.tag]] = child.text
            elif child.tag == "CollectiveName":
                author["collective_name"] = _text(child)
            elif child.tag == "AffiliationInfo":
                author["affiliations"].extend(t for t in (_text(x) for x in child.iterfind("Affiliation")) if t)
        out.append(author)
    return out


def _mesh(citation: etree._Element) -> list[dict[str, Any]]:
    out = []
    for h in citation.findall("MeshHeadingList/MeshHeading"):
        d = h.find("DescriptorName")
        if d is None:
            continue
        out.append({"descriptor_ui": d.get("UI"), "descriptor_name": _text(d), "major_topic": _yn(d.get("MajorTopicYN")),
                    "qualifiers": [{"ui": q.get("UI"), "name": _text(q), "major_topic": _yn(q.get("MajorTopicYN"))}
                                   for q in h.findall("QualifierName")]})
    return out


def _databanks(art: etree._Element) -> list[dict[str, Any]]:
    return [{"databank_name": (b.findtext("DataBankName") or "").strip() or None,
             "accession_numbers": [a.text.strip() for a in b.findall("AccessionNumberList/AccessionNumber")
                                   if a.text and a.text.strip()]}
            for b in art.findall("DataBankList/DataBank")]


def _article_ids(id_list: etree._Element | None, id_type: str) -> list[str]:
    if id_list is None:
        return []
    return [a.text.strip() for a in id_list.findall("ArticleId") if a.get("IdType") == id_type and a.text]


def _doi(art: etree._Element, id_list: etree._Element | None) -> str | None:
    for e in art.findall("ELocationID"):
        if e.get("EIdType") == "doi" and e.get("ValidYN", "Y") == "Y" and e.text and e.text.strip():
            return e.text.strip()
    dois = _article_ids(id_list, "doi")
    return dois[0] if dois else None


def _cited_pmids(pubmed_data: etree._Element | None) -> list[str]:
    """PMIDs of the reference list (nested ReferenceLists included), first mention order, each once."""
    if pubmed_data is None:
        return []
    ids = (a.text.strip() for a in pubmed_data.iterfind(".//ReferenceList/Reference/ArticleIdList/ArticleId")
           if a.get("IdType") == "pubmed" and a.text)
    return list(dict.fromkeys(i for i in ids if i))


def _trial_ids(title: str | None, abstract: str | None, databanks: list[dict[str, Any]],
               registries: list[Registry], index: dict[str, list[Registry]]) -> list[dict[str, Any]]:
    """Registry ids from the curated DataBankList first, then any others found in the title or abstract."""
    out: list[dict[str, Any]] = []

    def add(m: TrialIdMatch, origin: str, databank: str | None) -> None:
        out.append({"registry": m.registry, "trial_id": m.trial_id, "raw_id": m.raw_id, "origin": origin,
                    "databank_name": databank})

    for bank in databanks:
        candidates = index.get((bank["databank_name"] or "").lower())
        for acc in bank["accession_numbers"] if candidates else ():
            add(normalize_accession(acc, candidates), "databank", bank["databank_name"])
    for origin, text in (("title", title), ("abstract", abstract)):
        for m in find_trial_ids(text, registries):
            add(m, origin, None)
    return out


def _date_revised(citation: etree._Element) -> str | None:
    d = citation.find("DateRevised")
    if d is None:
        return None
    try:
        return f"{int(d.findtext('Year')):04d}-{int(d.findtext('Month')):02d}-{int(d.findtext('Day')):02d}"
    except (TypeError, ValueError):
        return None


def article_fields(el: etree._Element, registries: list[Registry],
                   index: dict[str, list[Registry]]) -> Record:
    """The silver fields of one PubmedArticle (or PubmedBookArticle, whose BookDocument plays both roles)."""
    book = el.tag == "PubmedBookArticle"
    citation = el.find("BookDocument" if book else "MedlineCitation")
    if citation is None:
        raise ValueError("no MedlineCitation/BookDocument")
    art = citation if book else citation.find("Article")
    if art is None:
        raise ValueError("no MedlineCitation/Article")
    pubmed_data = el.find("PubmedBookData" if book else "PubmedData")
    id_list = pubmed_data.find("ArticleIdList") if pubmed_data is not None else None
    title = _text(art.find("ArticleTitle")) or (_text(art.find("Book/BookTitle")) if book else None)
    sections, abstract = _abstract(art)
    databanks = _databanks(art)
    trial_ids = _trial_ids(title, abstract, databanks, registries, index)
    return {
        "record_type": "book_article" if book else "journal_article",
        "title": title, "abstract": abstract, "abstract_sections": sections,
        "journal": _text(art.find("Journal/Title")), "journal_iso": _text(art.find("Journal/ISOAbbreviation")),
        "issn": _text(art.find("Journal/ISSN")),
        "year": _year(art.find("Book/PubDate" if book else "Journal/JournalIssue/PubDate")),
        "languages": [t for t in (_text(x) for x in art.findall("Language")) if t],
        "authors": _authors(art),
        "publication_types": [{"ui": p.get("UI"), "name": _text(p)}
                              for p in art.findall("PublicationTypeList/PublicationType") + art.findall("PublicationType")],
        "mesh_headings": _mesh(citation),
        "keywords": [t for t in (_text(k) for k in citation.findall("KeywordList/Keyword")) if t],
        "databanks": databanks, "trial_ids": trial_ids,
        "registry_ids": list(dict.fromkeys(t["trial_id"] for t in trial_ids)),
        "doi": _doi(art, id_list), "pmcid": next(iter(_article_ids(id_list, "pmc")), None),
        "cited_pmids": _cited_pmids(pubmed_data),
        "medline_status": citation.get("Status"), "date_revised": _date_revised(citation),
    }


# ------------------------------------------------------------------------------------------- records
class FileParser:
    """Turns the top-level elements of one file into records, numbering them in file order."""

    def __init__(self, source_file: str, registries: list[Registry]):
        self.source_file = source_file
        self.key = file_key(source_file)
        self.registries = registries
        self.index = databank_index(registries)
        self.seq = 0

    def _record(self, kind: str, pmid: str | None, version: int, raw: str, reason: str | None,
                fields: Record | None = None) -> Record:
        rec = {"source_file": self.source_file, "seq": self.seq, "kind": kind, "pmid": pmid,
               "pmid_version": version, "raw": raw if reason is None else raw[:_RAW_LIMIT], "reason": reason,
               "source_version": source_version(version, self.key, self.seq), **(fields or {})}
        self.seq += 1
        return rec

    def reject(self, raw: str, reason: str, pmid: str | None = None) -> Record:
        return self._record("error", pmid, 1, raw, reason)

    def records(self, el: etree._Element) -> Iterator[Record]:
        """One record per article, one per PMID of a DeleteCitation; a reject when the element is unusable."""
        raw = _raw(el)
        if el.tag == "DeleteCitation":
            for p in el.findall("PMID"):
                pmid, version = (p.text or "").strip(), _version(p)
                if not _PMID.match(pmid):
                    yield self.reject(raw, f"malformed PMID in DeleteCitation: {pmid[:40]!r}")
                elif version is None:
                    yield self.reject(raw, _version_reason(pmid, p))
                else:
                    yield self._record("delete", pmid, version, f"<DeleteCitation>{_raw(p)}</DeleteCitation>", None)
            return
        pmid_el = el.find("BookDocument/PMID" if el.tag == "PubmedBookArticle" else "MedlineCitation/PMID")
        pmid = (pmid_el.text or "").strip() if pmid_el is not None else ""
        if not pmid:
            yield self.reject(raw, "missing PMID (MedlineCitation/PMID)")
            return
        if not _PMID.match(pmid):
            yield self.reject(raw, f"malformed PMID: {pmid[:40]!r}", pmid=None)
            return
        version = _version(pmid_el)
        if version is None:
            yield self.reject(raw, _version_reason(pmid, pmid_el), pmid=pmid)
            return
        try:
            fields = article_fields(el, self.registries, self.index)
        except (ValueError, TypeError, AttributeError) as exc:
            yield self.reject(raw, f"unusable article: {exc}")
            return
        kind = "book_article" if el.tag == "PubmedBookArticle" else "article"
        yield self._record(kind, pmid, version, raw, None, fields)


def _open(content: bytes) -> io.BufferedIOBase:
    stream = io.BytesIO(content)
    return gzip.GzipFile(fileobj=stream) if content[:2] == _GZIP_MAGIC else stream


def _is_gzip(source_file: str, content: bytes) -> bool:
    return content[:2] == _GZIP_MAGIC or source_file.lower().endswith(".gz")


def parse_file(source_file: str, content: bytes, registries: list[Registry]) -> Iterator[Record]:
    """Every record of one PubMed XML file (gzipped or not), rejects included; never raises on bad input."""
    parser = FileParser(source_file, registries)
    done = 0  # top-level elements fully handled by iterparse
    try:
        if source_file.lower().endswith(".gz") and content[:2] != _GZIP_MAGIC:
            raise gzip.BadGzipFile(f"not a gzipped file (starts with {content[:4]!r})")
        context = etree.iterparse(_open(content), events=("end",), tag=TOP_TAGS, **_SAFE)
        for _, el in context:
            yield from parser.records(el)
            done += 1
            el.clear()
            while el.getprevious() is not None:
                del el.getparent()[0]
        root = context.root
        if root is not None and root.tag != "PubmedArticleSet" and done == 0:
            yield parser.reject(_raw(root)[:2000], f"not a PubMed XML file (root element <{root.tag}>)")
    except (etree.XMLSyntaxError, *_STREAM_ERRORS) as exc:
        yield from _salvage(parser, content, done, exc)


def _decompress(content: bytes, source_file: str) -> tuple[bytes, str | None]:
    """As much of the file as can be read, and why reading stopped early (None if it did not).

    zlib is fed 64 KiB at a time so that what decompressed before a corrupt or missing tail is kept
    (``GzipFile.read`` drops it when it raises). Concatenated gzip members are followed.
    """
    if not _is_gzip(source_file, content):
        return content, None
    out: list[bytes] = []
    d = zlib.decompressobj(31)
    try:
        for pos in range(0, len(content), 1 << 16):
            out.append(d.decompress(content[pos:pos + (1 << 16)]))
            while d.eof and d.unused_data:
                rest, d = d.unused_data, zlib.decompressobj(31)
                out.append(d.decompress(rest))
    except zlib.error as exc:
        return b"".join(out), f"unreadable gzip: {exc}"
    if not d.eof:
        return b"".join(out), "unreadable gzip: compressed file ended before the end-of-stream marker was reached"
    return b"".join(out), None


def split_records(data: bytes) -> list[tuple[bytes, bool]]:
    """The file's top-level records as (bytes, complete), cut at each top-level start tag."""
    starts = [m.start() for m in _START.finditer(data)]
    chunks = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        chunk = data[start:end]
        tag = _START.match(chunk).group(1)
        close = chunk.rfind(b"</" + tag + b">")
        chunks.append((chunk[: close + len(tag) + 3], True) if close >= 0 else (chunk.rstrip(), False))
    return chunks


def _salvage(parser: FileParser, content: bytes, done: int, error: Exception) -> Iterator[Record]:
    """Parse what ``iterparse`` could not, one record at a time (see the module docstring)."""
    data, stream_error = _decompress(content, parser.source_file)
    chunks = split_records(data)
    xml_parser = etree.XMLParser(**_SAFE)
    for i, (chunk, complete) in enumerate(chunks):
        if i < done:
            continue
        text = chunk.decode("utf-8", errors="replace")
        if not complete and stream_error and i == len(chunks) - 1:
            yield parser.reject(text, f"{stream_error} (record cut short)")
            stream_error = None
            continue
        try:
            el = etree.fromstring(chunk, xml_parser)
        except etree.XMLSyntaxError as exc:
            yield parser.reject(text, f"invalid XML: {exc}")
            continue
        yield from parser.records(el)
    if stream_error or not chunks:
        if isinstance(error, _STREAM_ERRORS):
            reason = f"unreadable gzip: {error}"
        else:
            reason = stream_error or f"invalid XML: {error}"
        # the reject keeps the file's first bytes as text: decompressed if anything decompressed, else as stored
        head = (data or content)[:2000].decode("utf-8", errors="replace")
        yield parser.reject(head, reason)


def parse_files(items: Iterable[tuple[str, bytes]], registries: list[Registry]) -> Iterator[Record]:
    for source_file, content in items:
        yield from parse_file(source_file, content, registries)
