"""ClinicalTrials.gov API v2: every envelope the API and the website produce, to bronze and silver.

Accepted shapes: a single study JSON file, a folder of them, a search page (``{"studies": [...]}``), a JSON
array (the website's download), JSON lines, and the bulk ``ctg-studies.json.zip`` (flat or sharded). Files
are read by Spark's text readers and parsed with ``from_json`` against the declared schema; zip members are
read by executors. Nothing loops over records on the driver.

Bad input never stops the job: invalid JSON, a missing or malformed NCT id, wrong field types and the
retired classic-API format each go to ``rejects`` with the raw text and a reason, and
records in = accepted + rejected.
"""

from __future__ import annotations

import functools
import gzip
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama import lake
from trialpanorama.config import Config, load_sibling_yaml
from trialpanorama.normalize.ages import age_in_years
from trialpanorama.normalize.dates import partial_date
from trialpanorama.normalize.identifiers import NCT_PATTERN, mesh_ui
from trialpanorama.progress import progress
from trialpanorama.schemas import SILVER_CHILD_TABLES
from trialpanorama.sources import ctgov_schema, staging
from trialpanorama.sources.files import list_files, local_path, salvage_file, salvage_text
from trialpanorama.sources.staging import IngestSummary

SOURCE = "ctgov"
STUDY_SOURCE = "ClinicalTrials.gov"
LEGACY_REASON = "legacy classic API format"

_WHOLE_SUFFIXES = (".json", ".json.gz")
_LINE_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
_RAW_COLS = ["source_file", "envelope", "raw"]


# ------------------------------------------------------------------------------------ reading files
@dataclass
class InputFiles:
    whole: list[str]
    lines: list[str]
    zips: list[str]
    gzipped: list[str]  # .json.gz / .jsonl.gz: decompressed in Python (_gunzip_partition), whole or by line

    @property
    def count(self) -> int:
        return len(self.whole) + len(self.lines) + len(self.zips) + len(self.gzipped)


def classify_files(files: list[str]) -> InputFiles:
    """Sort files by how they are read. Unknown extensions are read whole (and rejected if not JSON)."""
    out = InputFiles([], [], [], [])
    for f in files:
        low = f.lower()
        if low.endswith(".zip"):
            out.zips.append(f)
        elif low.endswith(".gz"):
            out.gzipped.append(f)
        elif low.endswith(_LINE_SUFFIXES):
            out.lines.append(f)
        else:
            out.whole.append(f)
    return out


def _zip_chunks(zips: list[str], per_task: int) -> tuple[list[tuple[str, str, list[str]]], list[tuple[str, str]]]:
    """List zip members (central directory only) and cut them into tasks; unreadable zips are returned apart.

    Whole-JSON and JSON-lines members go to separate chunks, so each kind is read by its own tasks and no
    member is decompressed twice (one frame read with two filters would run the zip tasks twice).
    """
    chunks: list[tuple[str, str, list[str]]] = []
    broken: list[tuple[str, str]] = []
    for uri in zips:
        path = local_path(uri)
        if path is None:
            broken.append((uri, "zip archives are read from local or mounted paths only"))
            continue
        try:
            with zipfile.ZipFile(path) as zf:
                names = sorted(n for n in zf.namelist() if n.lower().endswith(_WHOLE_SUFFIXES + _LINE_SUFFIXES))
        except (zipfile.BadZipFile, OSError) as exc:
            broken.append((uri, f"unreadable zip archive: {exc}"))
            continue
        for kind_names in ([n for n in names if not _is_lines(n)], [n for n in names if _is_lines(n)]):
            for i in range(0, len(kind_names), per_task):
                chunks.append((uri, path, kind_names[i:i + per_task]))
    return chunks, broken


def _is_lines(name: str) -> bool:
    return name.lower().endswith(_LINE_SUFFIXES)


def _read_zip_chunk(chunk: tuple[str, str, list[str]]) -> Iterator[tuple[str, str, str]]:
    uri, path, names = chunk
    with zipfile.ZipFile(path) as zf:
        for name in names:
            data = zf.read(name)
            kind = "lines" if _is_lines(name) else "whole"
            yield f"{uri}!/{name}", kind, data.decode("utf-8", errors="replace")


def _gunzip_partition(batches: Iterator[pd.DataFrame], raw_limit: int) -> Iterator[pd.DataFrame]:
    """Decompress .gz files in Python: a truncated or non-gzip file becomes one ``broken:`` row with the reason.

    Spark's text reader decompresses by extension and fails the whole read (FAILED_READ_FILE) on one bad
    file, which would abort an ingest over a single broken download.
    """
    for pdf in batches:
        out = []
        for path, content in zip(pdf["path"], pdf["content"], strict=True):
            kind = "line" if _is_lines(path) else "whole"
            try:
                text = gzip.decompress(bytes(content)).decode("utf-8", errors="replace")
            except (OSError, EOFError, zlib.error) as exc:
                out.append((path, f"broken:unreadable gzip file: {exc}", salvage_text(bytes(content), raw_limit)))
                continue
            if kind == "line":  # split here, like a JSON-lines file's lines, so the file is read once
                out.extend((path, kind, ln) for ln in text.splitlines() if ln.strip())
            else:
                out.append((path, kind, text))
        yield pd.DataFrame(out, columns=["source_file", "kind", "text"])


def read_files(spark: SparkSession, inputs: list[str], cfg: Config) -> tuple[DataFrame, int]:
    """One row per file (or per line of a JSON-lines file): source_file, kind (whole|line|broken), text."""
    raw_limit = int(cfg.require("sources.broken_file_raw_bytes"))
    files = classify_files(list_files(spark, inputs))
    schema = "source_file STRING, kind STRING, text STRING"
    frames: list[DataFrame] = []
    if files.whole:
        frames.append(
            spark.read.text(files.whole, wholetext=True)
            .select(F.col("_metadata.file_path").alias("source_file"), F.lit("whole").alias("kind"),
                    F.col("value").alias("text"))
        )
    if files.lines:
        frames.append(
            spark.read.text(files.lines)
            .select(F.col("_metadata.file_path").alias("source_file"), F.lit("line").alias("kind"),
                    F.col("value").alias("text"))
            .where(F.trim("text") != "")
        )
    if files.gzipped:
        gunzip = functools.partial(_gunzip_partition, raw_limit=raw_limit)
        frames.append(spark.read.format("binaryFile").load(files.gzipped).select("path", "content")
                      .mapInPandas(gunzip, schema))
    chunks, broken = _zip_chunks(files.zips, int(cfg.get("sources.ctgov.zip_members_per_task", 2000)))
    whole_chunks = [c for c in chunks if not _is_lines(c[2][0])]
    line_chunks = [c for c in chunks if _is_lines(c[2][0])]
    if whole_chunks:
        members = spark.sparkContext.parallelize(whole_chunks, len(whole_chunks)).flatMap(_read_zip_chunk)
        frames.append(spark.createDataFrame(members, schema))
    if line_chunks:
        # A JSON-lines member is split into its lines like a JSON-lines file.
        members = spark.sparkContext.parallelize(line_chunks, len(line_chunks)).flatMap(_read_zip_chunk)
        frames.append(
            spark.createDataFrame(members, schema)
            .select("source_file", F.lit("line").alias("kind"), F.explode(F.split("text", "\r?\n")).alias("text"))
            .where(F.trim("text") != "")
        )
    if broken:
        frames.append(spark.createDataFrame(
            [(u, "broken:" + why, salvage_file(local_path(u), raw_limit)) for u, why in broken], schema))
    if not frames:
        return spark.createDataFrame([], schema), files.count
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out, files.count


# ------------------------------------------------------------------------------ envelopes → records
# Java's \s: what the envelope and record texts are stripped of at both ends.
_WS = " \t\n\x0b\x0c\r"


def _strip(col: str | Column) -> Column:
    """``col`` without leading/trailing white space: one pass from each end (no regex over the text)."""
    return F.btrim(F.col(col) if isinstance(col, str) else col, F.lit(_WS))


def split_envelopes(texts: DataFrame) -> DataFrame:
    """Turn file texts into one row per candidate record: source_file, envelope, raw.

    A file that is not JSON at all stays one record (raw = its text) so that it is rejected, not lost.

    Cost: the stripped text and the envelope are columns of their own projections, so each is computed once
    per file (Spark does not inline a non-trivial expression that is referenced several times), and the
    JSON-parsing tests (legacy, page) run only on texts that contain their key at all. A bulk-zip member (a
    single study) is thus classified by a few substring checks, never parsed here.
    """
    t = F.col("_t")
    kind = F.col("kind")
    first_line = F.trim(F.regexp_replace(F.substring_index(t, "\n", 1), "\r$", ""))
    # t has no blank ends, so "has a line break" is "has more than one non-blank line".
    is_json_lines = t.contains("\n") & first_line.startswith("{") & first_line.endswith("}")
    lines = F.filter(F.split(t, r"\r?\n"), lambda x: F.trim(x) != "")
    legacy_items = F.transform(
        F.from_json(t, "`FullStudiesResponse` STRUCT<`FullStudies`: ARRAY<STRUCT<`Study`: STRING>>>")
        .getField("FullStudiesResponse").getField("FullStudies"),
        lambda x: x.getField("Study"),
    )
    is_legacy = t.contains("FullStudiesResponse") & F.get_json_object(t, "$.FullStudiesResponse").isNotNull()
    page = F.col("_page")
    envelope = (
        F.when(kind.startswith("broken:"), F.lit("broken"))
        .when(kind == "line", F.lit("jsonl"))
        .when(t.startswith("["), F.lit("array"))
        .when(is_legacy, F.lit("legacy"))
        .when(is_json_lines, F.lit("jsonl"))
        .when(page.isNotNull(), F.lit("page"))
        .otherwise(F.lit("single"))
    )
    env = F.col("envelope")
    records = (
        F.when(env == "array", F.coalesce(F.from_json(t, "ARRAY<STRING>"), F.array(t)))
        .when((env == "legacy") & legacy_items.isNotNull(), legacy_items)
        .when((env == "jsonl") & (kind == "whole"), lines)
        .when(env == "page", page)
        .otherwise(F.array(t))
    )
    return (
        texts.select("source_file", "kind", _strip("text").alias("_t"))
        .withColumn("_page", F.when((kind == "whole") & t.startswith("{") & t.contains('"studies"'),
                                    F.from_json(t, "`studies` ARRAY<STRING>").getField("studies")))
        .withColumn("envelope", envelope)
        .select("source_file", "envelope", F.col("kind").alias("kind_note"), F.explode(records).alias("raw"))
    )


def _module_type_error(raw: Column) -> Column:
    """Name of the first module whose field types do not match the schema (for the reject reason)."""
    reason = F.lit("field types do not match the API v2 schema")
    sections = [("protocolSection", ctgov_schema.MODULES), ("resultsSection", ctgov_schema.RESULTS),
                ("derivedSection", ctgov_schema.DERIVED)]
    for section, modules in reversed(sections):
        for name, spec in reversed(list(modules.items())):
            ddl = ", ".join(f"`{k}` {ctgov_schema.to_ddl(v)}" for k, v in spec.items()) + ", `_c` STRING"
            parsed = F.from_json(F.get_json_object(raw, f"$.{section}.{name}"), ddl,
                                 {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_c"})
            reason = F.when(parsed.getField("_c").isNotNull(),
                            F.lit(f"wrong field types in {section}.{name}")).otherwise(reason)
    return reason


def parse_records(records: DataFrame) -> DataFrame:
    """Parse each candidate record and decide accept/reject with a reason.

    Adds: rec (parsed struct), nct_id, record_hash (of the canonical minified JSON), source_version,
    reason (NULL when accepted).

    Each record is parsed twice, no more: once into a VARIANT (the validity test and the canonical text
    bronze keeps and hashes) and once by ``from_json`` against the declared schema. The VARIANT is a column
    of its own projection, so both of its uses share one parse.
    """
    rec = F.from_json("raw", ctgov_schema.record_ddl(),
                      {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record"})
    df = (records.withColumn("raw", _strip("raw"))
          .withColumn("_variant", F.try_parse_json("raw")))
    df = df.withColumn("_valid", F.col("_variant").isNotNull() & F.col("raw").endswith("}")).withColumn("rec", rec)
    nct = F.upper(F.trim(F.col("rec.protocolSection.identificationModule.nctId")))
    enroll = F.col("rec.protocolSection.designModule.enrollmentInfo.count")
    reason = (
        F.when(F.col("envelope") == "broken", F.regexp_replace("kind_note", "^broken:", ""))
        .when(F.col("envelope") == "legacy", F.lit(LEGACY_REASON))
        .when(~F.col("_valid"), F.lit("invalid JSON"))
        .when(~F.col("raw").startswith("{"), F.lit("record is not a JSON object"))
        .when(F.col("rec._corrupt_record").isNotNull(), _module_type_error(F.col("raw")))
        .when(nct.isNull() | (nct == ""), F.lit("missing NCT id (protocolSection.identificationModule.nctId)"))
        .when(~nct.rlike(NCT_PATTERN), F.concat(F.lit("malformed NCT id: "), nct))
        # A count below zero is no enrollment at all: kept, it would feed sample-size targets and statistics.
        .when(enroll < 0, F.concat(F.lit("negative enrollment count: "), enroll.cast("string")))
    )
    version = F.concat_ws(
        "|",
        F.coalesce(F.col("rec.protocolSection.statusModule.lastUpdatePostDateStruct.date"), F.lit("")),
        F.coalesce(F.col("rec.derivedSection.miscInfoModule.versionHolder"), F.lit("")),
    )
    return (
        df.withColumn("reason", reason)
        .withColumn("nct_id", F.when(F.col("reason").isNull(), nct))
        .withColumn("raw", F.when(F.col("reason").isNull(), F.to_json("_variant")).otherwise(F.col("raw")))
        .withColumn("record_hash", F.sha2(F.col("raw"), 256))
        .withColumn("source_version", version)
        .drop("_valid", "_variant")
    )


# --------------------------------------------------------------------------------------- silver
def _criteria_items(text: Column) -> Column:
    lines = F.split(text, r"\r?\n")
    cleaned = F.transform(lines, lambda x: F.trim(F.regexp_replace(x, r"^\s*(?:[*\-•·]|\d{1,3}[.)])\s+", "")))
    return F.filter(cleaned, lambda x: x != "")


def silver_frames(studies: DataFrame, vocab: dict, updated_at: Column) -> dict[str, DataFrame]:
    """All silver tables for the given accepted, changed records (columns: nct_id, rec, hash, version)."""
    p = "rec.protocolSection"
    units = vocab["age_units_in_years"]
    mesh_bounds = vocab["mesh"]["six_digit_below"]
    base = studies.select(
        F.col("nct_id").alias("study_id"), F.col(f"{p}.*"), F.col("rec.resultsSection").alias("results"),
        F.col("rec.derivedSection").alias("derived"), F.col("rec.hasResults").alias("hasResults"),
        "record_hash", "source_version",
    )
    start = partial_date(F.col("statusModule.startDateStruct.date"))
    pcd = partial_date(F.col("statusModule.primaryCompletionDateStruct.date"))
    comp = partial_date(F.col("statusModule.completionDateStruct.date"))
    enroll = F.col("designModule.enrollmentInfo.count")
    enroll_type = F.upper(F.col("designModule.enrollmentInfo.type"))
    enroll_type = F.when(enroll_type == "ANTICIPATED", F.lit("ESTIMATED")).otherwise(enroll_type)
    elig = "eligibilityModule"
    countries = F.array_sort(F.array_distinct(F.filter(
        F.transform(F.col("contactsLocationsModule.locations"), lambda x: F.trim(x.getField("country"))),
        lambda c: c.isNotNull() & (c != ""))))
    phases = F.col("designModule.phases")
    studies_df = base.select(
        "study_id",
        F.lit(STUDY_SOURCE).alias("study_source"),
        F.col("identificationModule.orgStudyIdInfo.id").alias("org_study_id"),
        F.col("identificationModule.briefTitle").alias("title"),
        F.col("identificationModule.officialTitle").alias("official_title"),
        F.col("identificationModule.acronym").alias("acronym"),
        F.col("descriptionModule.briefSummary").alias("abstract"),
        F.col("descriptionModule.detailedDescription").alias("detailed_description"),
        F.col("designModule.studyType").alias("study_type"),
        F.when(F.size(phases) > 0, F.array_join(F.array_sort(phases), "/")).alias("phase"),
        F.col("statusModule.overallStatus").alias("recruitment_status"),
        F.col("statusModule.lastKnownStatus").alias("last_known_status"),
        F.col("statusModule.whyStopped").alias("why_stopped"),
        start.getField("date").alias("start_date"), start.getField("precision").alias("start_date_precision"),
        F.col("statusModule.startDateStruct.type").alias("start_date_type"),
        F.year(start.getField("date")).alias("start_year"),
        pcd.getField("date").alias("primary_completion_date"),
        pcd.getField("precision").alias("primary_completion_date_precision"),
        comp.getField("date").alias("completion_date"), comp.getField("precision").alias("completion_date_precision"),
        F.col("statusModule.completionDateStruct.type").alias("completion_date_type"),
        partial_date(F.col("statusModule.studyFirstSubmitDate")).getField("date").alias("first_submitted_date"),
        partial_date(F.col("statusModule.lastUpdatePostDateStruct.date")).getField("date").alias("last_update_date"),
        enroll.alias("enrollment"), enroll_type.alias("enrollment_type"),
        F.when(enroll_type == "ACTUAL", enroll).alias("actual_accrual"),
        F.when(enroll_type == "ESTIMATED", enroll).alias("target_accrual"),
        F.col("sponsorCollaboratorsModule.leadSponsor.name").alias("sponsor"),
        F.col("sponsorCollaboratorsModule.leadSponsor.class").alias("sponsor_class"),
        F.col("designModule.designInfo.allocation").alias("allocation"),
        F.col("designModule.designInfo.interventionModel").alias("intervention_model"),
        F.col("designModule.designInfo.primaryPurpose").alias("primary_purpose"),
        F.col("designModule.designInfo.maskingInfo.masking").alias("masking"),
        F.when(F.size("armsInterventionsModule.armGroups") > 0, F.size("armsInterventionsModule.armGroups"))
        .alias("number_of_arms"),
        F.col("hasResults").alias("has_results"),
        countries.alias("countries"),
        F.col("conditionsModule.keywords").alias("keywords"),
        F.col(f"{elig}.sex").alias("sex"),
        age_in_years(F.col(f"{elig}.minimumAge"), units).alias("min_age"),
        age_in_years(F.col(f"{elig}.maximumAge"), units).alias("max_age"),
        F.col(f"{elig}.healthyVolunteers").alias("healthy_volunteers"),
        "source_version", "record_hash", updated_at.alias("updated_at"),
    )

    conditions = base.select("study_id", F.posexplode("conditionsModule.conditions").alias("seq", "name")).select(
        "study_id", F.trim("name").alias("condition_name"), F.lit(None).alias("condition_mesh_id"),
        F.lit(None).alias("condition_mesh_term"), F.lit(None).alias("condition_mesh_type"),
        F.lit("registry").alias("origin"), F.lit(None).alias("link_method"), F.lit(None).alias("link_score"),
    ).unionByName(
        base.select("study_id", F.explode("derived.conditionBrowseModule.meshes").alias("m")).select(
            "study_id", F.col("m.term").alias("condition_name"),
            mesh_ui(F.col("m.id"), mesh_bounds).alias("condition_mesh_id"), F.col("m.term").alias("condition_mesh_term"),
            F.lit("direct").alias("condition_mesh_type"), F.lit("ctgov_derived").alias("origin"),
            F.lit("ctgov_derived").alias("link_method"), F.lit(1.0).alias("link_score"),
        )
    )

    drug_nulls = {c: F.lit(None) for c in ("rx_normalized_name", "drugbank_name", "drugbank_id")}
    drugs = base.select("study_id", F.explode("armsInterventionsModule.interventions").alias("i")).select(
        "study_id", F.trim("i.name").alias("drug_name"), F.col("i.type").alias("intervention_type"),
        F.col("i.description").alias("description"), F.col("i.otherNames").alias("other_names"),
        F.col("i.armGroupLabels").alias("arm_labels"), F.lit("registry").alias("origin"),
        F.lit(None).alias("drug_mesh_id"), *[v.alias(k) for k, v in drug_nulls.items()],
        F.lit(None).alias("link_method"), F.lit(None).alias("link_score"),
    ).unionByName(
        base.select("study_id", F.explode("derived.interventionBrowseModule.meshes").alias("m")).select(
            "study_id", F.col("m.term").alias("drug_name"), F.lit(None).alias("intervention_type"),
            F.lit(None).alias("description"), F.lit(None).alias("other_names"), F.lit(None).alias("arm_labels"),
            F.lit("ctgov_derived").alias("origin"), mesh_ui(F.col("m.id"), mesh_bounds).alias("drug_mesh_id"),
            *[v.alias(k) for k, v in drug_nulls.items()],
            F.lit("ctgov_derived").alias("link_method"), F.lit(1.0).alias("link_score"),
        )
    )

    arms = base.select("study_id", F.explode("armsInterventionsModule.armGroups").alias("a")).select(
        "study_id", F.col("a.label").alias("arm_label"), F.col("a.type").alias("group_type"),
        F.col("a.description").alias("description"), F.col("a.interventionNames").alias("intervention_names"),
    )

    endpoint_parts = []
    for kind, field in (("primary", "primaryOutcomes"), ("secondary", "secondaryOutcomes"), ("other", "otherOutcomes")):
        endpoint_parts.append(
            base.select("study_id", F.posexplode(f"outcomesModule.{field}").alias("seq", "o")).select(
                "study_id", F.lit(kind).alias("endpoint_type"), (F.col("seq") + 1).alias("seq"),
                F.col("o.measure").alias("measure"), F.col("o.description").alias("description"),
                F.col("o.timeFrame").alias("time_frame"),
            )
        )
    endpoints = endpoint_parts[0].unionByName(endpoint_parts[1]).unionByName(endpoint_parts[2])

    criteria = F.col(f"{elig}.eligibilityCriteria")
    has_headers = criteria.rlike(r"(?i)(inclusion|exclusion) criteria")
    incl_text = F.regexp_extract(criteria, r"(?is)inclusion criteria:?(.*?)(?:exclusion criteria|$)", 1)
    excl_text = F.regexp_extract(criteria, r"(?is)exclusion criteria:?(.*)$", 1)
    eligibility = base.where(F.col(elig).isNotNull()).select(
        "study_id", criteria.alias("criteria"),
        F.when(criteria.isNull(), F.lit(None))
        .when(has_headers, _criteria_items(incl_text)).otherwise(_criteria_items(criteria)).alias("inclusion_criteria"),
        F.when(criteria.isNull() | ~has_headers, F.lit(None)).otherwise(_criteria_items(excl_text))
        .alias("exclusion_criteria"),
        F.col(f"{elig}.sex").alias("sex"),
        age_in_years(F.col(f"{elig}.minimumAge"), units).alias("min_age"),
        age_in_years(F.col(f"{elig}.maximumAge"), units).alias("max_age"),
        F.col(f"{elig}.minimumAge").alias("min_age_raw"), F.col(f"{elig}.maximumAge").alias("max_age_raw"),
        F.col(f"{elig}.healthyVolunteers").alias("healthy_volunteers"), F.col(f"{elig}.stdAges").alias("std_ages"),
        F.col(f"{elig}.studyPopulation").alias("study_population"),
        F.col(f"{elig}.samplingMethod").alias("sampling_method"),
    )

    status = F.col("statusModule.overallStatus")
    outcome_type = F.lit(None).cast("string")
    for key, value in vocab["outcome_type_by_status"].items():
        outcome_type = F.when(status == key, F.lit(value)).otherwise(outcome_type)
    outcomes = base.where(status.isNotNull()).select(
        "study_id", status.alias("overall_status"), outcome_type.alias("outcome_type"),
        F.col("statusModule.whyStopped").alias("why_terminated"),
    )

    ident = "identificationModule"
    study_ids = (
        base.where(F.col(f"{ident}.orgStudyIdInfo.id").isNotNull()).select(
            "study_id", F.trim(F.col(f"{ident}.orgStudyIdInfo.id")).alias("id_value"),
            F.lit("org_study_id").alias("id_source"), F.col(f"{ident}.orgStudyIdInfo.type").alias("id_type"),
            F.lit(None).alias("id_domain"), F.col(f"{ident}.orgStudyIdInfo.link").alias("id_link"))
        .unionByName(
            base.select("study_id", F.explode(f"{ident}.secondaryIdInfos").alias("s")).select(
                "study_id", F.trim("s.id").alias("id_value"), F.lit("secondary_id").alias("id_source"),
                F.col("s.type").alias("id_type"), F.col("s.domain").alias("id_domain"), F.col("s.link").alias("id_link")))
        .unionByName(
            base.select("study_id", F.explode(f"{ident}.nctIdAliases").alias("a")).select(
                "study_id", F.upper(F.trim("a")).alias("id_value"), F.lit("nct_alias").alias("id_source"),
                F.lit("NCT_ALIAS").alias("id_type"), F.lit(None).alias("id_domain"), F.lit(None).alias("id_link")))
    )

    references = base.select("study_id", F.explode("referencesModule.references").alias("r")).select(
        "study_id", F.trim("r.pmid").alias("pmid"), F.col("r.type").alias("reference_type"),
        F.col("r.citation").alias("citation"),
    )

    ae_parts = []
    for serious, field in ((True, "seriousEvents"), (False, "otherEvents")):
        ae_parts.append(
            base.select("study_id", F.explode(f"results.adverseEventsModule.{field}").alias("e")).select(
                "study_id", F.col("e.term").alias("adverse_event_name"),
                F.lit(None).alias("adverse_event_description"), F.col("e.organSystem").alias("organ_system"),
                F.lit(serious).alias("is_serious"), F.lit(None).alias("meddra_id"),
                F.col("e.sourceVocabulary").alias("meddra_id_type"),
                F.aggregate("e.stats", F.lit(0), lambda acc, s: acc + F.coalesce(s.getField("numEvents"), F.lit(0)))
                .alias("num_events"),
                F.aggregate("e.stats", F.lit(0), lambda acc, s: acc + F.coalesce(s.getField("numAffected"), F.lit(0)))
                .alias("num_affected"),
                F.aggregate("e.stats", F.lit(0), lambda acc, s: acc + F.coalesce(s.getField("numAtRisk"), F.lit(0)))
                .alias("num_at_risk"),
            )
        )
    adverse_events = ae_parts[0].unionByName(ae_parts[1])

    flow = "results.participantFlowModule"
    started = F.filter(
        F.flatten(F.transform(F.col(f"{flow}.periods"), lambda p_: F.filter(
            p_.getField("milestones"), lambda m: F.upper(m.getField("type")) == "STARTED"))),
        lambda m: F.lit(True),
    )
    first_started = F.element_at(started, 1).getField("achievements")
    disposition = base.select("study_id", F.explode(f"{flow}.groups").alias("g"), first_started.alias("ach")).select(
        "study_id", F.col("g.id").alias("group_id"), F.lit(None).alias("group_type"),
        F.lit(None).alias("intervention_type"), F.col("g.title").alias("intervention_name"),
        F.col("g.description").alias("intervention_description"),
        F.expr("try_cast(element_at(filter(ach, a -> a.groupId = g.id), 1).numSubjects AS INT)")
        .alias("number_of_subjects"),
    )

    frames = {
        "studies": studies_df, "conditions": conditions, "drugs": drugs, "arms": arms, "endpoints": endpoints,
        "eligibility": eligibility, "outcomes": outcomes, "study_ids": study_ids,
        "study_references": references, "adverse_events": adverse_events, "disposition": disposition,
    }
    assert set(frames) == {"studies", *SILVER_CHILD_TABLES}
    return frames


# ----------------------------------------------------------------------------------------- ingest
def ingest(spark: SparkSession, cfg: Config, inputs: list[str], ingested_at: Column,
           on_write: Callable[[lake.WriteResult], None] | None = None) -> IngestSummary:
    """Read, validate and upsert. A record changes the lake only if it is new, or differs from the stored
    one and is at least as recent (``source_version``); re-running the same input writes nothing at all."""
    texts, n_files = read_files(spark, inputs, cfg)
    progress(f"ctgov: {n_files} input files")
    vocab = load_sibling_yaml(cfg, "normalize.yaml")
    return staging.stage(
        spark, cfg.lake_root, source=SOURCE, parsed=parse_records(split_envelopes(texts)), key="nct_id",
        bronze_table="ctgov_raw", bronze_key="nct_id", n_files=n_files, ingested_at=ingested_at,
        silver=lambda changed: silver_frames(changed, vocab, ingested_at),
        bronze=lambda changed: changed.select("nct_id", "raw", "source_file", "envelope", "record_hash",
                                              "source_version", ingested_at.alias("ingested_at")),
        report=on_write, max_reasons=staging.summary_max_reasons(cfg), storage_level=staging.cache_level(cfg),
    )
