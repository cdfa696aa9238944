"""WHO ICTRP file shapes, each read into one canonical record frame.

Four shapes circulate (shared/research/formats.md §3), none with a published schema:

* ``export``: the weekly full-export CSV, no header, 63 columns by position, literal ``NULL``;
* ``csv_header``: the header CSV variant (``COVID19-web.csv``), parsed by header name; unknown columns are
  tolerated (kept in the raw record), missing ones are NULL;
* ``portal_xml``: the search portal's ``Trials_downloaded_from_ICTRP/Trial`` export;
* ``feed_xml``: the registry->WHO feed ``trials/trial/main`` with typed ``secondary_ids``.

Each file's first bytes are sniffed on the driver (never its records). CSVs are read by Spark's CSV reader
with an explicit schema (multi-line quoted text, wrong column counts surface as corrupt records); XML files
are parsed with lxml inside executor tasks, one file per row, so an element's text stays whole and a broken
file becomes one reject without stopping the others. Every shape ends as the same columns:
``source_file, source_format, raw, rec, read_error`` where ``rec`` is a STRUCT of the canonical fields.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from trialpanorama.sources.files import decode_utf8, quoted_column

# ------------------------------------------------------------------------------------ canonical fields
# The full export's 63 columns, by position (formats.md §3a), under their canonical names.
EXPORT_COLUMNS: tuple[str, ...] = (
    "trial_id", "last_refreshed_on", "secondary_ids", "public_title", "scientific_title", "url",
    *(f"public_contact_{f}" for f in ("firstname", "lastname", "address", "email", "tel", "affiliation")),
    *(f"scientific_contact_{f}" for f in ("firstname", "lastname", "address", "email", "tel", "affiliation")),
    "study_type", "study_design", "phase", "date_registration", "date_enrollment", "target_size",
    "recruitment_status", "primary_sponsor", "secondary_sponsors", "source_support", "countries", "conditions",
    "interventions", "age_min", "age_max", "gender", "inclusion_criteria", "exclusion_criteria",
    "primary_outcome", "secondary_outcomes", "bridging_flag", "bridged_type", "childs", "type_enrolment",
    "retrospective_flag", "results_actual_enrollment", "results_url_link", "results_summary",
    "results_date_posted", "results_date_first_publication", "results_baseline_char",
    "results_participant_flow", "results_adverse_events", "results_outcome_measures", "results_url_protocol",
    "ipd_plan", "ipd_description", "results_date_completed", "results_yes_no", "ethics_status",
    "ethics_approval_date", "ethics_contact_name", "ethics_contact_address", "ethics_contact_phone",
    "ethics_contact_email",
)
assert len(EXPORT_COLUMNS) == 63

# Fields only the other shapes carry.
EXTRA_FIELDS: tuple[str, ...] = (
    "acronym", "source_register", "utn", "other_records", "export_date", "date_registration3",
    "internal_number", "prospective_registration", "bridging_flag_truefalse",
)
FIELDS: tuple[str, ...] = EXPORT_COLUMNS + EXTRA_FIELDS
SEC_IDS_TYPE = "ARRAY<STRUCT<`id`: STRING, `authority`: STRING>>"
REC_DDL = ", ".join(f"`{f}` STRING" for f in FIELDS) + f", `sec_ids` {SEC_IDS_TYPE}"
REC_TYPE = "STRUCT<" + ", ".join(f"`{f}`: STRING" for f in FIELDS) + f", `sec_ids`: {SEC_IDS_TYPE}>"

_SECONDARY_ID_NAME = re.compile(r"secondary.?id", re.IGNORECASE)


def name_key(name: str) -> str:
    """Header / element names compare on lower-case letters and digits only ("Date_enrollement" ~ "Date enrollement")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


# Header-CSV and portal-XML names -> canonical field (besides each canonical name itself).
_ALIASES = {
    "lastupdated": "last_refreshed_on", "secondaryid": "secondary_ids", "webaddress": "url",
    "inclusionagemin": "age_min", "inclusionagemax": "age_max", "inclusiongender": "gender",
    "dateenrollement": "date_enrollment", "dateenrolment": "date_enrollment", "condition": "conditions",
    "intervention": "interventions", "secondaryoutcome": "secondary_outcomes", "secondarysponsor": "secondary_sponsors",
    "contactfirstname": "public_contact_firstname", "contactlastname": "public_contact_lastname",
    "contactaddress": "public_contact_address", "contactemail": "public_contact_email",
    "contacttel": "public_contact_tel", "contactaffiliation": "public_contact_affiliation",
    "ethicsreviewstatus": "ethics_status", "ethicsreviewapprovaldate": "ethics_approval_date",
    "ethicsreviewcontactname": "ethics_contact_name", "ethicsreviewcontactaddress": "ethics_contact_address",
    "ethicsreviewcontactphone": "ethics_contact_phone", "ethicsreviewcontactemail": "ethics_contact_email",
    "utrn": "utn", "targetsamplesize": "target_size",
}
NAME_TO_FIELD: dict[str, str] = {**{name_key(f): f for f in FIELDS}, **_ALIASES}


def field_for_name(name: str) -> str | None:
    """Canonical field of a header or element name; any name matching /secondary.?id/i is the secondary ids."""
    if _SECONDARY_ID_NAME.search(name):
        return "secondary_ids"
    return NAME_TO_FIELD.get(name_key(name))


# ----------------------------------------------------------------------------------------- sniffing
@dataclass
class InputFiles:
    """Input files grouped by shape; header CSVs are grouped by their exact header line."""

    export: list[str] = field(default_factory=list)
    csv_header: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    xml: list[str] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(self.formats.values())


def sniff(head: bytes) -> tuple[str, tuple[str, ...]]:
    """Shape of a file from its first bytes: (shape, header names). Shapes: export, csv_header, portal_xml,
    feed_xml, xml (unknown root: rejected after parsing)."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("<"):
        body = re.sub(r"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", "", text, flags=re.DOTALL).lstrip()
        root = re.match(r"<([A-Za-z_][\w.\-]*)", body)
        tag = root.group(1) if root else ""
        return {"Trials_downloaded_from_ICTRP": "portal_xml", "trials": "feed_xml"}.get(tag, "xml"), ()
    first_line = text.splitlines()[0] if text else ""
    try:
        header = tuple(next(csv.reader(io.StringIO(first_line))))
    except (csv.Error, StopIteration):
        header = ()
    if header and name_key(header[0]) == "trialid":
        return "csv_header", header
    return "export", ()


def _read_head(spark: SparkSession, uri: str, n_bytes: int) -> bytes:
    """The first bytes of a file through Hadoop's FileSystem (decompressed when a codec matches its name)."""
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    stream = path.getFileSystem(hconf).open(path)
    try:
        codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(hconf).getCodec(path)
        reader = codec.createInputStream(stream) if codec is not None else stream
        return bytes(reader.readNBytes(n_bytes))
    finally:
        stream.close()


def classify_files(spark: SparkSession, files: list[str], head_bytes: int = 16384) -> InputFiles:
    """Sort files by shape, sniffing each file's head (content decides, not the extension)."""
    out = InputFiles()
    for uri in files:
        shape, header = sniff(_read_head(spark, uri, head_bytes))
        out.formats[shape] = out.formats.get(shape, 0) + 1
        if shape == "export":
            out.export.append(uri)
        elif shape == "csv_header":
            out.csv_header.setdefault(header, []).append(uri)
        else:
            out.xml.append(uri)
    return out


# ------------------------------------------------------------------------------------------- CSV
_CSV_OPTIONS = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record", "nullValue": "NULL",
                "escape": '"', "multiLine": "true", "encoding": "UTF-8"}
# A comma outside double quotes: counts the fields of a line the CSV reader found malformed.
_FIELD_SEPARATOR = r',(?=(?:[^"]*"[^"]*")*[^"]*$)'


def _field_count(line: Column) -> Column:
    return F.size(F.split(line, _FIELD_SEPARATOR))


def canonical_struct(values: dict[str, Column], sec_ids: Column | None = None, *,
                     strip_quotes: bool = False) -> Column:
    """The ``rec`` STRUCT: every canonical field (NULL when the shape lacks it), trimmed, blank as NULL.

    ``strip_quotes`` removes the one extra level of quoting the CSV export puts around text (raw rows show
    ``\"\"\"text\"\"\"``, which the CSV reader turns into ``\"text\"``).
    """
    cols = []
    for name in FIELDS:
        v = values.get(name)
        if v is None:
            cols.append(F.lit(None).cast("string").alias(name))
            continue
        if strip_quotes:
            v = F.regexp_replace(v, r'(?s)^\s*"(.*)"\s*$', "$1")
        cols.append(F.nullif(F.trim(v), F.lit("")).alias(name))
    sec = sec_ids if sec_ids is not None else F.lit(None).cast(SEC_IDS_TYPE)
    return F.struct(*cols, sec.alias("sec_ids"))


def read_export(spark: SparkSession, files: list[str]) -> DataFrame:
    """The no-header full export: 63 STRING columns by position; a line with another column count is kept
    whole (as received) with a read_error."""
    schema = ", ".join(f"`{c}` STRING" for c in EXPORT_COLUMNS) + ", `_corrupt_record` STRING"
    df = spark.read.options(**_CSV_OPTIONS).schema(schema).option("header", "false").csv(files)
    bad = F.col("_corrupt_record").isNotNull()
    return df.select(
        F.col("_metadata.file_path").alias("source_file"),
        F.lit("export").alias("source_format"),
        F.when(bad, F.col("_corrupt_record"))
        .otherwise(F.to_json(F.array(*[F.col(f"`{c}`") for c in EXPORT_COLUMNS]))).alias("raw"),
        canonical_struct({c: F.col(f"`{c}`") for c in EXPORT_COLUMNS}, strip_quotes=True).alias("rec"),
        F.when(bad, F.concat(F.lit("wrong column count: "), _field_count(F.col("_corrupt_record")).cast("string"),
                             F.lit(f" (expected {len(EXPORT_COLUMNS)})"))).alias("read_error"),
    )


def read_csv_header(spark: SparkSession, header: tuple[str, ...], files: list[str]) -> DataFrame:
    """Header CSVs sharing one header line: columns are read by position under that header, then mapped to
    canonical fields by name. Unknown columns stay in ``raw`` only; absent fields are NULL."""
    # Schema columns carry the header's own names (so Spark's header check agrees), made unique.
    names: list[str] = []
    for i, name in enumerate(header):
        label = name.lstrip("\ufeff") or f"_c{i}"
        names.append(label if label not in names else f"{label}#{i}")
    schema = StructType([StructField(n, StringType()) for n in names] + [StructField("_corrupt_record", StringType())])
    df = spark.read.options(**_CSV_OPTIONS).schema(schema).option("header", "true").csv(files)
    values: dict[str, Column] = {}
    raw_fields = []
    for name in names:
        col = quoted_column(name)
        target = field_for_name(name)
        if target and target not in values:
            values[target] = col
        raw_fields.append(col.alias(name))
    bad = F.col("_corrupt_record").isNotNull()
    return df.select(
        F.col("_metadata.file_path").alias("source_file"),
        F.lit("csv_header").alias("source_format"),
        F.when(bad, F.col("_corrupt_record")).otherwise(F.to_json(F.struct(*raw_fields))).alias("raw"),
        canonical_struct(values, strip_quotes=True).alias("rec"),
        F.when(bad, F.concat(F.lit("wrong column count: "), _field_count(F.col("_corrupt_record")).cast("string"),
                             F.lit(f" (header has {len(header)})"))).alias("read_error"),
    )


# ------------------------------------------------------------------------------------------- XML
XML_ROWS_DDL = "source_file STRING, source_format STRING, raw STRING, fields STRING, read_error STRING"

# Feed (trials/trial) children whose repeated sub-elements are ";"-joined into one canonical field.
_FEED_LISTS = {
    "countries": "countries", "primary_outcome": "primary_outcome", "secondary_outcome": "secondary_outcomes",
    "secondary_sponsor": "secondary_sponsors", "source_support": "source_support",
}
_FEED_MAIN = {
    "trial_id": "trial_id", "utrn": "utn", "reg_name": "source_register", "date_registration": "date_registration",
    "primary_sponsor": "primary_sponsor", "public_title": "public_title", "acronym": "acronym",
    "scientific_title": "scientific_title", "date_enrolment": "date_enrollment", "type_enrolment": "type_enrolment",
    "target_size": "target_size", "recruitment_status": "recruitment_status", "url": "url",
    "study_type": "study_type", "study_design": "study_design", "phase": "phase", "hc_freetext": "conditions",
    "i_freetext": "interventions", "results_actual_enrollment": "results_actual_enrollment",
    "results_date_completed": "results_date_completed", "results_yes_no": "results_yes_no",
    "results_url_link": "results_url_link", "results_date_posted": "results_date_posted",
}
_FEED_CRITERIA = {"inclusion_criteria": "inclusion_criteria", "exclusion_criteria": "exclusion_criteria",
                  "agemin": "age_min", "agemax": "age_max", "gender": "gender"}
_FEED_CONTACT = {"firstname": "firstname", "lastname": "lastname", "address": "address", "email": "email",
                 "telephone": "tel", "affiliation": "affiliation"}


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def element_text(el) -> str | None:
    """An element's whole text, ``<br/>`` children written back as ``<br>`` (as the CSV export has them)."""
    parts = [el.text or ""]
    for child in el:
        if _local(child.tag).lower() == "br":
            parts.append("<br>")
        elif isinstance(child.tag, str):
            parts.append("".join(child.itertext()))
        parts.append(child.tail or "")
    text = "".join(parts).strip()
    return text or None


def _join(values: list[str | None]) -> str | None:
    kept = [v for v in values if v]
    return ";".join(kept) if kept else None


def portal_fields(trial) -> dict:
    """Canonical fields of one portal ``<Trial>``: children matched by name; every secondary-id-like child
    (``Secondary_ID``, ``SecondaryIDs``, ...) is collected, in document order."""
    out: dict = {}
    secondary: list[str | None] = []
    for child in trial:
        name = _local(child.tag)
        target = field_for_name(name) if name else None
        if target == "secondary_ids":
            secondary.append(element_text(child))
        elif target and target not in out:
            out[target] = element_text(child)
    out["secondary_ids"] = _join(secondary)
    return out


def feed_fields(trial) -> dict:
    """Canonical fields of one feed ``<trial>``; secondary ids keep their issuing authority in ``sec_ids``."""
    out: dict = {}
    children = {_local(c.tag): c for c in trial if isinstance(c.tag, str)}
    main = children.get("main")
    for el in (main if main is not None else []):
        target = _FEED_MAIN.get(_local(el.tag))
        if target:
            out[target] = element_text(el)
    for name, target in _FEED_LISTS.items():
        if name in children:
            out[target] = _join([element_text(c) for c in children[name] if isinstance(c.tag, str)])
    criteria = children.get("criteria")
    for el in (criteria if criteria is not None else []):
        target = _FEED_CRITERIA.get(_local(el.tag))
        if target:
            out[target] = element_text(el)
    if not out.get("conditions"):
        out["conditions"] = _join([element_text(c) for n in ("health_condition_keyword", "health_condition_code")
                                   for c in children.get(n, [])])
    if not out.get("interventions"):
        out["interventions"] = _join([element_text(c) for c in children.get("intervention_keyword", [])])
    for contact in children.get("contacts", []):
        parts = {_local(c.tag): element_text(c) for c in contact if isinstance(c.tag, str)}
        kind = "scientific" if (parts.get("type") or "").lower().startswith("scien") else "public"
        for src, dst in _FEED_CONTACT.items():
            out.setdefault(f"{kind}_contact_{dst}", parts.get(src))
    sec_ids = []
    for sid in children.get("secondary_ids", []):
        parts = {_local(c.tag): element_text(c) for c in sid if isinstance(c.tag, str)}
        if parts.get("sec_id"):
            sec_ids.append({"id": parts["sec_id"], "authority": parts.get("issuing_authority")})
    out["sec_ids"] = sec_ids or None
    return out


_SHAPES = {"Trials_downloaded_from_ICTRP": ("portal_xml", "Trial", portal_fields),
           "trials": ("feed_xml", "trial", feed_fields)}


XmlRow = tuple[str, str, str, str | None, str | None]


def _xml_parser():  # noqa: ANN202 - lxml's parser type
    """Entities are not resolved and nothing is fetched from the network: the files are untrusted input."""
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True,
                           remove_pis=True)


def _record_row(path: str, shape: str, piece: bytes, extract, parser) -> XmlRow:  # noqa: ANN001
    """One record element's text, parsed on its own (record-by-record salvage of a broken file)."""
    from lxml import etree

    text, bad_bytes = decode_utf8(piece)
    if bad_bytes:
        return (path, shape, text, None, bad_bytes)
    try:
        el = etree.fromstring(piece, parser)
    except etree.XMLSyntaxError as exc:
        return (path, shape, text, None, f"unparseable XML record: {exc}")
    return (path, shape, text, json.dumps(extract(el), ensure_ascii=False, sort_keys=True), None)


def salvage_records(path: str, data: bytes, file_error: str) -> list[XmlRow]:
    """The records of an ICTRP XML file that does not parse as a whole, each parsed on its own.

    One deeply nested, undefined-entity or invalid-UTF-8 trial must not take the other trials of its export
    with it: every complete ``<Trial>`` (``<trial>`` in the feed) element is parsed alone and kept or rejected
    alone. Text that is no complete record (a record cut short at the end, junk between records) is one more
    reject, so nothing is dropped. A file whose root is not an ICTRP shape, or that holds no record at all,
    stays one reject for the whole file.
    """
    shape, _ = sniff(data[:65536])
    root_tag = next((root for root, (s, _, _) in _SHAPES.items() if s == shape), None)
    rows: list[XmlRow] = []
    end = None
    if root_tag is not None:
        _, record_tag, extract = _SHAPES[root_tag]
        tag, parser = record_tag.encode(), _xml_parser()
        for m in re.finditer(rb"<%s[\s>].*?</%s\s*>" % (tag, tag), data, re.DOTALL):
            if end is not None and data[end:m.start()].strip():
                rows.append((path, shape, data[end:m.start()].decode("utf-8", errors="replace"), None,
                             f"text between records of a file that does not parse ({file_error})"))
            rows.append(_record_row(path, shape, m.group(0), extract, parser))
            end = m.end()
    if end is None:  # no ICTRP shape, or no complete record: the whole file is one reject
        return [(path, "xml", data.decode("utf-8", errors="replace"), None, f"unparseable XML: {file_error}")]
    rest = re.sub(rb"</%s\s*>" % root_tag.encode(), b"", data[end:]).strip()
    if rest:
        rows.append((path, shape, rest.decode("utf-8", errors="replace"), None,
                     f"not a complete record (file cut short?): {file_error}"))
    return rows


def parse_xml_document(path: str, data: bytes) -> list[XmlRow]:
    """Rows (source_file, source_format, raw, fields JSON, read_error) of one XML file.

    A file that does not parse is read record by record (``salvage_records``); a file whose root is neither
    ICTRP shape is one row with the file's text and the reason, and no records.
    """
    from lxml import etree

    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # cut short or not gzip: one reject, not a failed job
            return [(path, "xml", data.decode("utf-8", errors="replace"), None, f"unreadable gzip file: {exc}")]
    try:
        root = etree.fromstring(data, _xml_parser())
    except etree.XMLSyntaxError as exc:
        return salvage_records(path, data, str(exc))
    tag = _local(root.tag)
    if tag not in _SHAPES:
        return [(path, "xml", data.decode("utf-8", errors="replace"), None,
                 f"unrecognized XML root element <{tag}>")]
    shape, record_tag, extract = _SHAPES[tag]
    rows = []
    for el in root:
        if _local(el.tag) != record_tag:
            continue
        raw = etree.tostring(el, encoding="unicode", with_tail=False)
        rows.append((path, shape, raw, json.dumps(extract(el), ensure_ascii=False, sort_keys=True), None))
    return rows


def _parse_xml_row(row) -> list[tuple[str, str, str, str | None, str | None]]:
    """flatMap body: one binary-file row (path, content) in, its records (or its one reject) out."""
    return parse_xml_document(row["path"], bytes(row["content"]))


def read_xml(spark: SparkSession, files: list[str]) -> DataFrame:
    """XML files as binary rows (any Hadoop file system), parsed by lxml in executor tasks, one file per row;
    the fields JSON is then parsed into ``rec`` by schema."""
    binary = spark.read.format("binaryFile").load(files).select("path", "content")
    rows = spark.createDataFrame(binary.rdd.flatMap(_parse_xml_row), XML_ROWS_DDL)
    parsed = rows.withColumn("_rec", F.from_json("fields", REC_DDL))
    return parsed.select(
        "source_file", "source_format", "raw",
        canonical_struct({f: F.col(f"_rec.{f}") for f in FIELDS}, F.col("_rec.sec_ids")).alias("rec"),
        "read_error",
    )


# ----------------------------------------------------------------------------------------- all shapes
def read_records(spark: SparkSession, files: InputFiles) -> DataFrame:
    """Every record of every input file in one frame: source_file, source_format, raw, rec, read_error."""
    frames: list[DataFrame] = []
    if files.export:
        frames.append(read_export(spark, files.export))
    for header, paths in files.csv_header.items():
        frames.append(read_csv_header(spark, header, paths))
    if files.xml:
        frames.append(read_xml(spark, files.xml))
    if not frames:
        return spark.createDataFrame(
            [], f"source_file STRING, source_format STRING, raw STRING, rec {REC_TYPE}, read_error STRING")
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out
