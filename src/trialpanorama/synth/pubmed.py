"""PubMed/MEDLINE XML articles (formats.md §4): trial result papers, Cochrane-style systematic reviews and
unrelated papers, in the element order of pubmed_190101.dtd.

A result paper names its trial through ``DataBankList`` and/or the abstract text; a review has publication
type Systematic Review (D000078182), the labelled sections of a Cochrane abstract, MeSH headings with the
world's synthetic UIs, and a ``PubmedData/ReferenceList`` citing its included trials' papers plus others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

HEAD = (
    '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
    '1st January 2019//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">\n<PubmedArticleSet>\n'
)
TAIL = "</PubmedArticleSet>\n"
PUBTYPES = {
    "Journal Article": "D016428",
    "Randomized Controlled Trial": "D016449",
    "Clinical Trial": "D016430",
    "Systematic Review": "D000078182",
    "Meta-Analysis": "D017418",
    "Review": "D016454",
    "Clinical Trial, Phase III": "D017428",
}
HUMANS = ("D006801", "Humans")
_JOURNALS = [
    ("Lancet", "Lancet", "0140-6736"),
    ("N Engl J Med", "The New England journal of medicine", "0028-4793"),
    ("JAMA", "JAMA", "0098-7484"),
    ("BMJ", "BMJ (Clinical research ed.)", "0959-8138"),
    ("Cochrane Database Syst Rev", "The Cochrane database of systematic reviews", "1469-493X"),
    ("J Clin Oncol", "Journal of clinical oncology", "0732-183X"),
    ("Diabetes Care", "Diabetes care", "0149-5992"),
    ("Trials", "Trials", "1745-6215"),
    ("PLoS One", "PloS one", "1932-6203"),
]
_NAMES = [
    ("Smith", "John", "J"),
    ("Wang", "Li", "L"),
    ("Müller", "Anna", "A"),
    ("Garcia", "Maria", "M"),
    ("Kumar", "Ravi", "R"),
    ("Tanaka", "Hiroshi", "H"),
    ("Nguyen", "Thi", "T"),
    ("Rossi", "Marco", "M"),
    ("Johnson", "Emily", "E"),
    ("Kowalski", "Piotr", "P"),
    ("Ahmadi", "Sara", "S"),
    ("Brown", "David", "D"),
]


@dataclass
class Article:
    pmid: str | None  # None or a malformed string for planted rejects
    title: str
    year: int
    sections: list[tuple[str | None, str]]
    pubtypes: list[str]
    mesh: list[tuple[str, str, bool]] = field(default_factory=list)  # (ui, name, major)
    databanks: list[tuple[str, list[str]]] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    journal: int = 0
    authors: list[int] = field(default_factory=lambda: [0])


def _category(label: str | None) -> str:
    if label is None:
        return ""
    return {
        "SELECTION CRITERIA": "METHODS",
        "MAIN RESULTS": "RESULTS",
        "AUTHORS' CONCLUSIONS": "CONCLUSIONS",
        "OBJECTIVES": "OBJECTIVE",
        "SEARCH METHODS": "METHODS",
        "DATA COLLECTION AND ANALYSIS": "METHODS",
    }.get(label, label)


def article_xml(a: Article) -> str:
    iso, journal, issn = _JOURNALS[a.journal % len(_JOURNALS)]
    p = ['<PubmedArticle>\n<MedlineCitation Status="MEDLINE" Owner="NLM">\n']
    if a.pmid is not None:
        p.append(f'<PMID Version="1">{escape(a.pmid)}</PMID>\n')
    p.append(f"<DateRevised><Year>{a.year + 1}</Year><Month>06</Month><Day>07</Day></DateRevised>\n")
    p.append(
        f'<Article PubModel="Print-Electronic">\n<Journal><ISSN IssnType="Electronic">{issn}</ISSN>'
        f'<JournalIssue CitedMedium="Internet"><Volume>{a.year % 50 + 1}</Volume><Issue>{a.journal % 12 + 1}</Issue>'
        f"<PubDate><Year>{a.year}</Year><Month>Mar</Month></PubDate></JournalIssue><Title>{escape(journal)}</Title>"
        f"<ISOAbbreviation>{escape(iso)}</ISOAbbreviation></Journal>\n"
    )
    p.append(
        f"<ArticleTitle>{escape(a.title)}</ArticleTitle>\n<Pagination><MedlinePgn>1-10</MedlinePgn></Pagination>\n"
    )
    if a.sections:
        p.append("<Abstract>\n")
        for label, body in a.sections:
            attrs = f' Label="{escape(label)}" NlmCategory="{_category(label)}"' if label else ""
            p.append(f"<AbstractText{attrs}>{escape(body)}</AbstractText>\n")
        p.append("</Abstract>\n")
    p.append('<AuthorList CompleteYN="Y">\n')
    for k in a.authors:
        last, fore, ini = _NAMES[k % len(_NAMES)]
        p.append(
            f'<Author ValidYN="Y"><LastName>{last}</LastName><ForeName>{fore}</ForeName><Initials>{ini}</Initials>'
            "<AffiliationInfo><Affiliation>Department of Medicine, Example University.</Affiliation>"
            "</AffiliationInfo></Author>\n"
        )
    p.append("</AuthorList>\n<Language>eng</Language>\n")
    if a.databanks:
        p.append('<DataBankList CompleteYN="Y">\n')
        for name, accs in a.databanks:
            acc = "".join(f"<AccessionNumber>{escape(x)}</AccessionNumber>" for x in accs)
            p.append(
                f"<DataBank><DataBankName>{escape(name)}</DataBankName><AccessionNumberList>{acc}"
                "</AccessionNumberList></DataBank>\n"
            )
        p.append("</DataBankList>\n")
    p.append("<PublicationTypeList>\n")
    p += [f'<PublicationType UI="{PUBTYPES[t]}">{t}</PublicationType>\n' for t in a.pubtypes]
    p.append("</PublicationTypeList>\n</Article>\n")
    p.append(
        f"<MedlineJournalInfo><Country>England</Country><MedlineTA>{escape(iso)}</MedlineTA>"
        f"<NlmUniqueID>{7_000_000 + a.journal}</NlmUniqueID><ISSNLinking>{issn}</ISSNLinking></MedlineJournalInfo>\n"
    )
    if a.mesh:
        p.append("<MeshHeadingList>\n")
        for ui, name, major in a.mesh:
            p.append(
                f'<MeshHeading><DescriptorName UI="{ui}" MajorTopicYN="{"Y" if major else "N"}">{escape(name)}'
                "</DescriptorName></MeshHeading>\n"
            )
        p.append("</MeshHeadingList>\n")
    p.append(
        '</MedlineCitation>\n<PubmedData>\n<History><PubMedPubDate PubStatus="pubmed">'
        f"<Year>{a.year}</Year><Month>3</Month><Day>1</Day></PubMedPubDate></History>\n"
        "<PublicationStatus>ppublish</PublicationStatus>\n<ArticleIdList>"
    )
    if a.pmid is not None:
        p.append(f'<ArticleId IdType="pubmed">{escape(a.pmid)}</ArticleId>')
    p.append(f'<ArticleId IdType="doi">10.5555/synth.{escape(a.pmid or "x")}</ArticleId></ArticleIdList>\n')
    if a.references:
        p.append("<ReferenceList>\n")
        for ref in a.references:
            p.append(
                f"<Reference><Citation>Cited article {ref}.</Citation><ArticleIdList>"
                f'<ArticleId IdType="pubmed">{ref}</ArticleId></ArticleIdList></Reference>\n'
            )
        p.append("</ReferenceList>\n")
    p.append("</PubmedData>\n</PubmedArticle>\n")
    return "".join(p)


def databank_name(registry: str) -> str:
    """The DataBankName PubMed uses for a registry."""
    return {
        "ClinicalTrials.gov": "ClinicalTrials.gov",
        "ISRCTN": "ISRCTN",
        "ANZCTR": "ANZCTR",
        "ChiCTR": "ChiCTR",
        "CTRI": "CTRI",
        "DRKS": "DRKS",
        "JPRN": "JPRN",
        "IRCT": "IRCT",
        "EU CTR": "EudraCT",
        "CRiS": "CRiS",
        "PACTR": "PACTR",
        "TCTR": "TCTR",
    }.get(registry, registry)
