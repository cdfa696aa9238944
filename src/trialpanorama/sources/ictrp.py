"""WHO ICTRP: the four export shapes of every non-US registry, to bronze ``ictrp_raw`` and the shared silver tables.

Reading is in ``ictrp_formats``; this module decides what a record means. Every rule that depends on a
registry (id patterns, phase/status/study-type/sex vocabularies, age units, date formats, grant patterns)
is in ``conf/ictrp.yaml`` and becomes a Spark column expression here, so normalization runs on the
executors in the same query as parsing.

Keys. Bronze is keyed by the TrialID as received (``EUCTR2015-004321-12-DE``), silver by ``study_id``, the
register's primary id as ICTRP writes it without EU CTR's member-state suffix (``EUCTR2015-004321-12``).
EU CTR publishes one record per member state; silver has one study built from *all* member-state rows of
that EudraCT number: those in the batch plus those already in bronze. So a later batch that brings only
the German record rebuilds the study from the new German row and the stored French and Dutch rows, and
keeps all three countries. The newest member (``source_version`` = Last_Refreshed_on, then TrialID) gives
the study's fields; countries, secondary ids and member TrialIDs are the union over members.

Rejects (``rejects``, source ``ictrp``): a CSV line with the wrong column count, a TrialID no register
pattern matches, an impossible date (``31/02/2020``) in a date field, and an XML file that does not parse
(one reject holding the file's text). Vocabulary values found in no table are kept verbatim in silver and
counted in the job summary (``unmapped_values``: studies written in the run with that value).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama import lake
from trialpanorama.config import Config, load_sibling_yaml
from trialpanorama.progress import progress
from trialpanorama.sources import staging
from trialpanorama.sources.ctgov import _criteria_items
from trialpanorama.sources.files import list_files
from trialpanorama.sources.ictrp_formats import REC_DDL, classify_files, read_records
from trialpanorama.sources.staging import IngestSummary

SOURCE = "ictrp"
BRONZE = "ictrp_raw"
_SEP = "\u0001"
_BR = r"(?i)<br\s*/?>"
_LIST_SPLIT = r";|\r?\n"


def rec(name: str) -> Column:
    return F.col(f"rec.{name}")


def text(col: Column, br: str = "\n") -> Column:
    """Display text: ``<br>`` as ``br``, trimmed, blank as NULL."""
    t = F.trim(F.regexp_replace(col, _BR, br))
    return F.when(t != "", t)


def items(col: Column, sep: str = _LIST_SPLIT) -> Column:
    """A ``;``-joined (or ``<br>``/line-separated) list as a trimmed array without blanks; never NULL."""
    parts = F.split(F.coalesce(F.regexp_replace(col, _BR, "\n"), F.lit("")), sep)
    return F.filter(F.transform(parts, lambda x: F.trim(x)), lambda x: x != "")


def _map_literal(mapping: Mapping[str, Any], key_prefix: str = "") -> Column | None:
    """A Spark map literal; a null value in YAML (a known "no value") becomes ``""``."""
    pairs: list[Column] = []
    for key, value in mapping.items():
        pairs += [F.lit(f"{key_prefix}{key}"), F.lit("" if value is None else value)]
    return F.create_map(*pairs) if pairs else None


def _first_match(col: Column, rules: Sequence[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], Column],
                 pattern_key: str = "pattern", flags: str = "") -> Column:
    """``value(rule)`` of the first rule whose pattern matches ``col``; NULL when none does."""
    out: Column | None = None
    for rule in rules:
        hit = col.rlike(flags + rule[pattern_key])
        out = F.when(hit, value(rule)) if out is None else out.when(hit, value(rule))
    return out if out is not None else F.lit(None).cast("string")


# ------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rules:
    """conf/ictrp.yaml plus the shared vocabularies of conf/normalize.yaml this source needs."""

    conf: dict[str, Any]
    age_units: dict[str, float]
    outcome_type_by_status: dict[str, str]

    @classmethod
    def load(cls, cfg: Config) -> Rules:
        shared = load_sibling_yaml(cfg, "normalize.yaml")
        return cls(load_sibling_yaml(cfg, "ictrp.yaml"), shared["age_units_in_years"],
                   shared["outcome_type_by_status"])

    @property
    def registries(self) -> list[dict[str, Any]]:
        return self.conf["registries"]

    @property
    def bronze_only(self) -> list[str]:
        return list(self.conf.get("bronze_only_registries") or [])


# ------------------------------------------------------------------------------------- identifiers
def registry_of(value: Column, registries: Sequence[Mapping[str, Any]], *, bare: bool = False) -> Column:
    """The register whose pattern matches an id (case-insensitive); with ``bare`` also its unprefixed form."""
    rules = [dict(r, _p=r["pattern"]) for r in registries]
    if bare:
        rules += [dict(r, _p=r["bare"]) for r in registries if r.get("bare")]
    return _first_match(value, rules, lambda r: F.lit(r["name"]), pattern_key="_p", flags="(?i)")


def trial_key(trial_id: Column, registries: Sequence[Mapping[str, Any]]) -> Column:
    """STRUCT<registry, study_id, member_state> of a TrialID; NULL when no register pattern matches.

    study_id is the register's primary id as ICTRP writes it (prefix + group 1, upper-cased where the
    register's casing varies), without EU CTR's member-state suffix, which goes to member_state.
    """
    def build(r: Mapping[str, Any]) -> Column:
        pattern = "(?i)" + r["pattern"]
        body = F.regexp_extract(trial_id, pattern, 1)
        member = F.lit(None).cast("string")
        if r.get("member_group"):
            found = F.upper(F.regexp_extract(trial_id, pattern, int(r["member_group"])))
            member = F.when(found != "", found)
        return F.struct(F.lit(r["name"]).alias("registry"),
                        F.concat(F.lit(r.get("prefix", "")), F.upper(body) if r.get("upper") else body).alias("study_id"),
                        member.alias("member_state"))
    return _first_match(trial_id, registries, build, flags="(?i)")


# -------------------------------------------------------------------------------------------- dates
def ictrp_date(col: Column, formats: Sequence[Mapping[str, str]]) -> Column:
    """STRUCT<date, precision, impossible, unknown> from any registry date form.

    The first format whose ``shape`` matches decides; ``impossible`` = the shape matched but no such day
    exists (31/02/2020), ``unknown`` = no shape matched (then date is NULL).
    """
    s = F.regexp_replace(F.trim(col), r"\s+", " ")
    date = _first_match(s, formats, lambda f: F.try_to_date(s, f["format"]), pattern_key="shape")
    precision = _first_match(s, formats, lambda f: F.lit(f["precision"]), pattern_key="shape")
    shaped = F.lit(False)
    for f in formats:
        shaped = shaped | s.rlike(f["shape"])
    present = s.isNotNull() & (s != "")
    return F.struct(
        date.alias("date"), F.when(date.isNotNull(), precision).alias("precision"),
        (present & shaped & date.isNull()).alias("impossible"), (present & ~shaped).alias("unknown"),
    )


def with_dates(df: DataFrame, fields: Sequence[str], formats: Sequence[Mapping[str, str]]) -> DataFrame:
    """Adds ``dates``: STRUCT of ``ictrp_date`` per ``rec`` field. The format chain is written once, inside a
    higher-order function over the fields: one chain per field would exceed the 64 KB limit of a generated
    Java method and drop the whole query to interpreted mode."""
    parsed = F.transform(F.array(*[rec(f) for f in fields]), lambda s: ictrp_date(s, formats))
    return (df.withColumn("_dates", parsed)
            .withColumn("dates", F.struct(*[F.col("_dates")[i].alias(f) for i, f in enumerate(fields)]))
            .drop("_dates"))


# --------------------------------------------------------------------------------------- vocabularies
def vocab_key(col: Column) -> Column:
    """Lookup key: lower case, ``<br>`` and white space runs as one space, no spaces around ``/``."""
    s = F.regexp_replace(F.lower(F.regexp_replace(col, _BR, " ")), r"\s+", " ")
    return F.trim(F.regexp_replace(s, r"\s*/\s*", "/"))


def _flags(col: Column, spec: Mapping[str, Any]) -> Column:
    """Checklist fields (EU CTR "Female: yes<br>Male: yes"): the ticked items joined with "/", "" if none
    is ticked, NULL if the combination is not a canonical value."""
    ticked = F.array_compact(F.array(*[F.when(col.rlike(i["pattern"]), F.lit(i["value"])) for i in spec["items"]]))
    joined = F.array_join(ticked, "/")
    combine = _map_literal(spec.get("combine") or {})
    if combine is not None:
        joined = F.coalesce(F.try_element_at(combine, joined), joined)
    return F.when(F.size(ticked) == 0, F.lit("")).when(joined.isin(list(spec["allowed"])), joined)


def map_vocab(col: Column, registry: Column, spec: Mapping[str, Any]) -> Column:
    """Canonical value of a registry term: the registry's own table first, then the default table, then the
    checklist form. ``""`` = a known "no value"; NULL = not in any table (unmapped)."""
    key = vocab_key(col)
    default = _map_literal(spec.get("default") or {})
    out = F.try_element_at(default, key) if default is not None else F.lit(None).cast("string")
    per_registry = {f"{reg}{_SEP}{k}": v for reg, table in (spec.get("by_registry") or {}).items()
                    for k, v in table.items()}
    reg_map = _map_literal(per_registry)
    if reg_map is not None:
        out = F.coalesce(F.try_element_at(reg_map, F.concat(registry, F.lit(_SEP), key)), out)
    if spec.get("flags"):
        out = F.when(col.rlike(spec["flags"]["detect"]), _flags(col, spec["flags"])).otherwise(out)
    return out


def vocab_value(col: Column, registry: Column, spec: Mapping[str, Any]) -> tuple[Column, Column]:
    """(silver value, unmapped value): the canonical value, or the term verbatim (trimmed) when unmapped."""
    mapped = map_vocab(col, registry, spec)
    verbatim = F.trim(col)
    value = F.when(col.isNull(), F.lit(None)).when(mapped.isNull(), verbatim).when(mapped == "", F.lit(None)) \
        .otherwise(mapped)
    return value, F.when(col.isNotNull() & mapped.isNull(), verbatim)


def age_years(col: Column, spec: Mapping[str, Any], units: Mapping[str, float]) -> tuple[Column, Column]:
    """(age in years, unparsed value): "18 Years", "18Y", "18.00 Year(s)", "20years-old", "6 months", "65"."""
    s = F.lower(F.trim(F.regexp_replace(col, _BR, " ")))
    pattern = r"^(?:[<>]=?\s*)?(\d+(?:\.\d+)?)\s*([^\d]*)$"
    number = F.regexp_extract(s, pattern, 1)
    unit_key = F.regexp_replace(F.regexp_extract(s, pattern, 2), "[^a-z]", "")
    unit = F.try_element_at(_map_literal(spec["units"]), unit_key)
    factors = F.create_map(*[x for k, v in units.items() for x in (F.lit(k), F.lit(float(v)))])
    years = F.when(number != "", number.try_cast("double") * F.try_element_at(factors, unit))
    known_none = s.isin(list(spec["null_values"])) | (s == "")
    return years, F.when(col.isNotNull() & ~known_none & years.isNull(), F.trim(col))


def target_size(col: Column, rules: Sequence[Mapping[str, str]]) -> tuple[Column, Column]:
    """(planned sample size, unparsed value) by the first matching rule of conf ``target_size.rules``."""
    s = F.trim(F.regexp_replace(col, _BR, "\n"))

    def value(rule: Mapping[str, str]) -> Column:
        if rule.get("how") == "sum":
            found = F.regexp_extract_all(s, F.lit(rule["extract"]), 1)
            return F.aggregate(found, F.lit(0), lambda acc, x: acc + x.try_cast("int"))
        return F.regexp_extract(s, rule["pattern"], 1).try_cast("int")

    size = _first_match(s, rules, value).cast("int")
    return size, F.when(col.isNotNull() & size.isNull(), F.trim(col))


def _rule_value(col: Column, rules: Sequence[Mapping[str, str]]) -> Column:
    return _first_match(col, rules, lambda r: F.lit(r["value"]))


# Silver date fields: name in ``norm`` -> canonical field.
SILVER_DATES = {"start": "date_enrollment", "registration": "date_registration",
                "registration3": "date_registration3", "last_update": "last_refreshed_on",
                "completion": "results_date_completed"}
# ``norm`` field -> the vocabulary its unmapped values are counted under.
UNMAPPED = {"phase": "phase", "recruitment_status": "recruitment_status", "study_type": "study_type",
            "sex": "sex", "min_age": "age", "max_age": "age", "target_size": "target_size",
            **{name: "date" for name in SILVER_DATES}}


def with_norm(df: DataFrame, rules: Rules) -> DataFrame:
    """Adds ``norm``: every normalized study field from ``rec`` and ``registry``, each beside its unmapped
    value (``<name>_unmapped``, NULL when the value was recognised). One definition serves the silver frames
    and the unmapped-value counts, and is computed once per record."""
    conf = rules.conf
    vocab = conf["vocab"]
    reg = F.col("registry")
    pairs: dict[str, tuple[Column, Column]] = {
        "phase": vocab_value(rec("phase"), reg, vocab["phase"]),
        "recruitment_status": vocab_value(rec("recruitment_status"), reg, vocab["recruitment_status"]),
        "study_type": vocab_value(rec("study_type"), reg, vocab["study_type"]),
        "sex": vocab_value(rec("gender"), reg, vocab["sex"]),
        "min_age": age_years(rec("age_min"), conf["ages"], rules.age_units),
        "max_age": age_years(rec("age_max"), conf["ages"], rules.age_units),
        "target_size": target_size(rec("target_size"), conf["target_size"]["rules"]),
    }
    dated = with_dates(df, list(SILVER_DATES.values()), conf["dates"]["formats"])
    for name, source in SILVER_DATES.items():
        d = F.col(f"dates.{source}")
        pairs[name] = (d, F.when(d.getField("unknown"), F.trim(rec(source))))
    fields = [c for name, (value, unmapped) in pairs.items()
              for c in (value.alias(name), unmapped.alias(f"{name}_unmapped"))]
    return dated.withColumn("norm", F.struct(*fields)).drop("dates")


def _unmapped_items() -> Column:
    """ARRAY<STRUCT<vocab, value>> of a row's unrecognised values (needs ``norm``)."""
    return F.array_compact(F.array(*[
        F.when(F.col(f"norm.{name}_unmapped").isNotNull(),
               F.struct(F.lit(group).alias("vocab"), F.col(f"norm.{name}_unmapped").alias("value")))
        for name, group in UNMAPPED.items()]))


def batch_counts(merged: DataFrame, skipped: DataFrame) -> dict[str, dict[str, int]]:
    """In one Spark job: {vocabulary: {verbatim value: studies}} of the values no table or parser recognised in
    the studies about to be written, plus {"bronze_only": {registry: records}} for the changed records kept in
    bronze only."""
    items = merged.select(F.explode(_unmapped_items()).alias("u")).select("u.vocab", "u.value").unionByName(
        skipped.select(F.lit("bronze_only").alias("vocab"), F.col("registry").alias("value")))
    out: dict[str, dict[str, int]] = {}
    rows = items.groupBy("vocab", "value").count().collect()
    for r in sorted(rows, key=lambda r: (r["vocab"], -r["count"], r["value"])):
        out.setdefault(r["vocab"], {})[r["value"]] = r["count"]
    return out


# ------------------------------------------------------------------------------------------- parsing
def parse_records(records: DataFrame, rules: Rules) -> DataFrame:
    """Accept or reject each record, and key it.

    Adds: trial_id (as received, trimmed), study_id, registry, member_state, fields (the canonical record as
    JSON, what bronze keeps beside the raw text), record_hash, source_version (Last_Refreshed_on as ISO date,
    "" if absent), reason (NULL = accepted).
    """
    checked = list(dict.fromkeys(["last_refreshed_on", *rules.conf["dates"]["reject_impossible_in"]]))
    df = with_dates(records, checked, rules.conf["dates"]["formats"])
    df = df.withColumn("_id", F.trim(rec("trial_id"))).withColumn("_key", trial_key(F.col("_id"), rules.registries))
    trial_id = F.col("_id")
    reason = (
        F.when(F.col("read_error").isNotNull(), F.col("read_error"))
        .when(trial_id.isNull() | (trial_id == ""), F.lit("missing TrialID"))
        .when(F.col("_key").isNull(), F.concat(F.lit("unknown registry id: "), trial_id))
    )
    for name in rules.conf["dates"]["reject_impossible_in"]:
        reason = reason.when(F.col(f"dates.{name}.impossible"),
                             F.concat(F.lit(f"impossible date in {name}: "), F.trim(rec(name))))
    accepted = F.col("reason").isNull()
    return (
        df.withColumn("reason", reason)
        .withColumn("trial_id", F.when(accepted, trial_id))
        .withColumn("registry", F.when(accepted, F.col("_key.registry")))
        .withColumn("study_id", F.when(accepted, F.col("_key.study_id")))
        .withColumn("member_state", F.when(accepted, F.col("_key.member_state")))
        .withColumn("fields", F.to_json("rec"))
        .withColumn("record_hash", F.sha2(F.coalesce(F.col("fields"), F.col("raw")), 256))
        .withColumn("source_version", F.coalesce(F.col("dates.last_refreshed_on.date").cast("string"), F.lit("")))
        .drop("_id", "_key", "dates")
    )


# ------------------------------------------------------------------------------------------ identifiers
def _secondary_ids(conf: Mapping[str, Any]) -> Column:
    """ARRAY<STRUCT<id, authority>>: the feed's typed ids and the ``;``-joined column, without null words and
    without the record's own id."""
    nulls = [v.lower() for v in conf["secondary_ids"]["null_values"]]
    untyped = F.transform(F.filter(items(rec("secondary_ids")), lambda x: ~F.lower(x).isin(nulls)),
                          lambda x: F.struct(x.alias("id"), F.lit(None).cast("string").alias("authority")))
    typed = F.transform(F.coalesce(rec("sec_ids"), F.array()),
                        lambda s: F.struct(F.trim(s.getField("id")).alias("id"), F.trim(s.getField("authority")).alias("authority")))
    own = [F.upper(F.col("trial_id")), F.upper(F.col("study_id"))]
    return F.filter(F.concat(typed, untyped), lambda s: (s.getField("id") != "") & ~F.upper(s.getField("id")).isin(*own))


def id_type(value: Column, authority: Column, conf: Mapping[str, Any],
            registries: Sequence[Mapping[str, Any]]) -> tuple[Column, Column]:
    """(id_type, id_domain) of a secondary id: its pattern first (UTN, EudraCT, CTIS, NIH grant), then any
    register's id (REGISTRY), then a grant-giving issuing authority (OTHER_GRANT), else OTHER."""
    spec = conf["secondary_ids"]
    reg = registry_of(value, registries, bare=True)
    by_pattern = _first_match(value, spec["types"], lambda t: F.lit(t["id_type"]), flags="(?i)")
    kind = (F.when(by_pattern.isNotNull(), by_pattern)
            .when(reg.isNotNull(), F.lit(spec["registry_type"]))
            .when(F.coalesce(authority.rlike(spec["grant_authority"]), F.lit(False)), F.lit(spec["grant_type"]))
            .otherwise(F.lit(spec["other_type"])))
    return kind, F.coalesce(reg, authority)


def study_ids_frame(members: DataFrame, rules: Rules) -> DataFrame:
    """study_ids: secondary ids (typed), the UTN, ICTRP's bridging parent/child ids, and the member TrialIDs
    of a study (EU CTR's per-country ids), from every member of each study."""
    conf, regs = rules.conf, rules.registries
    sec = members.select("study_id", F.explode(_secondary_ids(conf)).alias("s"))
    sec_type, sec_domain = id_type(F.col("s.id"), F.col("s.authority"), conf, regs)
    secondary = sec.select("study_id", F.col("s.id").alias("id_value"), F.lit("secondary_id").alias("id_source"),
                           sec_type.alias("id_type"), sec_domain.alias("id_domain"))
    utn = members.where(rec("utn").isNotNull()).select(
        "study_id", F.trim(rec("utn")).alias("id_value"), F.lit("utn").alias("id_source"), F.lit("UTN").alias("id_type"),
        F.lit("WHO UTN").alias("id_domain"))
    bridged = F.lower(F.trim(rec("bridged_type")))
    parent = members.where((bridged == "child") & rec("bridging_flag").isNotNull()).select(
        "study_id", F.trim(rec("bridging_flag")).alias("id_value"), F.lit("BRIDGE_PARENT").alias("id_type"))
    children = members.select("study_id", F.explode(items(rec("childs"), r"[;,]|\r?\n")).alias("id_value")) \
        .select("study_id", "id_value", F.lit("BRIDGE_CHILD").alias("id_type"))
    bridge = parent.unionByName(children).where(
        F.upper("id_value") != F.upper("study_id")).select(
        "study_id", "id_value", F.lit("ictrp_bridge").alias("id_source"), "id_type",
        registry_of(F.col("id_value"), regs).alias("id_domain"))
    own = members.where(F.col("trial_id") != F.col("study_id")).select(
        "study_id", F.col("trial_id").alias("id_value"), F.lit("ictrp_trial_id").alias("id_source"),
        F.when(F.col("member_state").isNotNull(), F.lit("EUCTR_MEMBER_STATE")).otherwise(F.lit("TRIAL_ID_VARIANT"))
        .alias("id_type"), F.col("registry").alias("id_domain"))
    frame = secondary.unionByName(utn).unionByName(bridge).unionByName(own).withColumn("id_link", F.lit(None))
    return _dedupe(frame, ["study_id", "id_value", "id_source"])


def _dedupe(df: DataFrame, keys: list[str]) -> DataFrame:
    """One row per key, the smallest of the other columns: deterministic, unlike dropDuplicates."""
    others = [c for c in df.columns if c not in keys]
    return df.groupBy(*keys).agg(F.min(F.struct(*others)).alias("_v")).select(*keys, "_v.*")


# ------------------------------------------------------------------------------------------ merging
def _members(spark: SparkSession, root: str, changed: DataFrame) -> DataFrame:
    """Changed records plus the stored bronze rows of the same studies that this batch does not replace."""
    cols = ["trial_id", "study_id", "registry", "member_state", "rec", "record_hash", "source_version"]
    fresh = changed.select(*cols)
    stored = lake.read_named(spark, root, BRONZE)
    siblings = (
        stored.join(fresh.select("study_id").distinct(), "study_id", "left_semi")
        .join(fresh.select("trial_id"), "trial_id", "left_anti")
        .select("trial_id", "study_id", "registry", "member_state", F.from_json("fields", REC_DDL).alias("rec"),
                "record_hash", "source_version")
    )
    return fresh.unionByName(siblings)


def merge_members(members: DataFrame) -> DataFrame:
    """One row per study, in one aggregation over its members (which need ``norm``).

    The newest member (``source_version``, then the smallest TrialID) gives the study's fields; countries are
    the union over members, ``first_registered`` the earliest registration, ``record_hash`` a hash over all
    member hashes (so any member's change updates the study) and ``source_version`` the newest.
    """
    version_day = F.unix_date(F.to_date(F.nullif(F.col("source_version"), F.lit(""))))
    newest_first = F.struct(F.coalesce(-version_day, F.lit(2**31 - 1)).alias("age"), F.col("trial_id"))
    registered = F.coalesce(F.col("norm.registration.date"), F.col("norm.registration3.date"))
    return members.groupBy("study_id").agg(
        F.min_by(F.struct("trial_id", "registry", "member_state", "rec", "norm"), newest_first).alias("_m"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list(items(rec("countries"))))))
        .alias("all_countries"),
        F.min(registered).alias("first_registered"),
        F.sha2(F.concat_ws(",", F.array_sort(F.collect_list("record_hash"))), 256).alias("record_hash"),
        F.max("source_version").alias("source_version"),
    ).select("study_id", "_m.*", "all_countries", "first_registered", "record_hash", "source_version")


# ------------------------------------------------------------------------------------------- silver
def _norm_fields() -> dict[str, Column]:
    return {name: F.col(f"norm.{name}") for name in UNMAPPED}


def studies_frame(merged: DataFrame, rules: Rules, updated_at: Column) -> DataFrame:
    """The studies rows, in the columns ingest_ctgov writes."""
    n = _norm_fields()
    design = rules.conf["design"]
    start, completion = n["start"], n["completion"]
    actual = F.regexp_extract(F.coalesce(rec("results_actual_enrollment"), F.lit("")), r"^\s*(\d+)\s*$", 1) \
        .try_cast("int")
    enrollment = F.coalesce(actual, n["target_size"])
    has_results = F.try_element_at(
        F.create_map(*[x for k, v in rules.conf["has_results"].items() for x in (F.lit(k), F.lit(bool(v)))]),
        F.lower(F.trim(rec("results_yes_no"))))
    countries = F.col("all_countries")
    null = F.lit(None)
    return merged.select(
        "study_id", F.col("registry").alias("study_source"), null.alias("org_study_id"),
        text(rec("public_title"), " ").alias("title"), text(rec("scientific_title"), " ").alias("official_title"),
        text(rec("acronym"), " ").alias("acronym"), null.alias("abstract"), null.alias("detailed_description"),
        n["study_type"].alias("study_type"), n["phase"].alias("phase"),
        n["recruitment_status"].alias("recruitment_status"), null.alias("last_known_status"),
        null.alias("why_stopped"),
        start.getField("date").alias("start_date"), start.getField("precision").alias("start_date_precision"),
        F.try_element_at(_map_literal(rules.conf["start_date_type"]), F.lower(F.trim(rec("type_enrolment"))))
        .alias("start_date_type"),
        F.year(start.getField("date")).alias("start_year"),
        null.alias("primary_completion_date"), null.alias("primary_completion_date_precision"),
        completion.getField("date").alias("completion_date"),
        completion.getField("precision").alias("completion_date_precision"),
        F.when(completion.getField("date").isNotNull(), F.lit("ACTUAL")).alias("completion_date_type"),
        F.col("first_registered").alias("first_submitted_date"),
        n["last_update"].getField("date").alias("last_update_date"),
        enrollment.alias("enrollment"),
        F.when(actual.isNotNull(), F.lit("ACTUAL")).when(enrollment.isNotNull(), F.lit("ESTIMATED"))
        .alias("enrollment_type"),
        actual.alias("actual_accrual"), n["target_size"].alias("target_accrual"),
        text(rec("primary_sponsor"), " ").alias("sponsor"), null.alias("sponsor_class"),
        *[_rule_value(rec("study_design"), design[k]).alias(k)
          for k in ("allocation", "intervention_model", "primary_purpose", "masking")],
        null.alias("number_of_arms"), has_results.alias("has_results"),
        F.when(F.size(countries) > 0, countries).alias("countries"), null.alias("keywords"),
        n["sex"].alias("sex"), n["min_age"].alias("min_age"), n["max_age"].alias("max_age"),
        null.alias("healthy_volunteers"), "source_version", "record_hash", updated_at.alias("updated_at"),
    )


def conditions_frame(merged: DataFrame, rules: Rules) -> DataFrame:
    """Registry condition names; EU CTR's MedDRA codings give their term (origin registry_meddra)."""
    spec = rules.conf["conditions"]
    meddra = spec["meddra_term"]
    skip = F.lit(False)
    names = merged.select("study_id", F.explode(items(rec("conditions"))).alias("c"))
    for pattern in spec["skip"]:
        skip = skip | F.col("c").rlike(pattern)
    term = F.regexp_extract("c", meddra, 1)
    out = names.select(
        "study_id",
        F.when(F.col("c").rlike(meddra), term).when(~skip, F.col("c")).alias("condition_name"),
        F.when(F.col("c").rlike(meddra), F.lit("registry_meddra")).otherwise(F.lit("registry")).alias("origin"),
    ).where(F.col("condition_name").isNotNull() & (F.col("condition_name") != ""))
    nulls = {c: F.lit(None) for c in ("condition_mesh_id", "condition_mesh_term", "condition_mesh_type",
                                      "link_method", "link_score")}
    return _dedupe(out.select("study_id", "condition_name", "origin", *[v.alias(k) for k, v in nulls.items()]),
                   ["study_id", "condition_name", "origin"])


def drugs_frame(merged: DataFrame, rules: Rules) -> DataFrame:
    """Interventions: EU CTR product blocks give one DRUG per product name (trade names and INNs as
    other_names); other registers' ``;``-lists give one row per item, typed by a "Drug:"-like prefix or
    labelled by an arm prefix ("Case series: ...")."""
    spec = rules.conf["interventions"]
    t = F.regexp_replace(F.coalesce(rec("interventions"), F.lit("")), _BR, "\n")
    products = F.regexp_extract_all(t, F.lit(spec["eu_product"]), 1)
    inns = F.regexp_extract_all(t, F.lit(spec["eu_inn"]), 1)
    trades = F.regexp_extract_all(t, F.lit(spec["eu_trade"]), 1)
    eu_names = F.when(F.size(products) > 0, products).otherwise(inns)
    eu = merged.where(F.size(eu_names) > 0).select(
        "study_id", F.explode(eu_names).alias("drug_name"), F.lit("DRUG").alias("intervention_type"),
        F.lit(None).cast("string").alias("description"),
        F.array_distinct(F.concat(trades, inns)).alias("other_names"),
        F.lit(None).cast("array<string>").alias("arm_labels"))
    item = F.col("i")
    prefix = F.regexp_extract(item, r"^([^:]{1,40}?)\s*:\s*(.+)$", 1)
    rest = F.regexp_extract(item, r"^([^:]{1,40}?)\s*:\s*(.+)$", 2)
    kind = F.try_element_at(_map_literal(spec["types"]), F.lower(F.trim(prefix)))
    is_arm = kind.isNull() & prefix.rlike(spec["arm_label"])
    listed = merged.where(F.size(eu_names) == 0).select("study_id", F.explode(items(rec("interventions"))).alias("i")) \
        .select(
            "study_id",
            F.when(kind.isNotNull() | is_arm, F.trim(rest)).otherwise(item).alias("drug_name"),
            kind.alias("intervention_type"), item.alias("description"),
            F.lit(None).cast("array<string>").alias("other_names"),
            F.when(is_arm, F.array(F.trim(prefix))).alias("arm_labels"))
    nulls = {c: F.lit(None) for c in ("drug_mesh_id", "rx_normalized_name", "drugbank_name", "drugbank_id",
                                      "link_method", "link_score")}
    frame = eu.unionByName(listed).select("*", F.lit("registry").alias("origin"), *[v.alias(k) for k, v in nulls.items()])
    return _dedupe(frame, ["study_id", "drug_name", "origin"])


def endpoints_frame(merged: DataFrame, rules: Rules) -> DataFrame:
    """Primary and secondary outcomes, one row per ``;``-separated measure; EU CTR's objectives are dropped
    and its time point becomes the measures' time_frame."""
    spec = rules.conf["endpoints"]
    parts = []
    for kind, source in (("primary", "primary_outcome"), ("secondary", "secondary_outcomes")):
        measures = F.filter(F.transform(items(rec(source), ";"), lambda m: F.trim(F.regexp_replace(m, spec["strip"], ""))),
                            lambda m: ~m.rlike(spec["skip"]) & (m != ""))
        time_frame = F.regexp_extract(F.coalesce(rec(source), F.lit("")), spec["time_frame"], 1)
        parts.append(merged.select("study_id", F.posexplode(measures).alias("seq", "m"),
                                   F.trim(time_frame).alias("tf")).select(
            "study_id", F.lit(kind).alias("endpoint_type"), (F.col("seq") + 1).alias("seq"),
            F.col("m").alias("measure"), F.lit(None).alias("description"),
            F.when(F.col("tf") != "", F.col("tf")).alias("time_frame")))
    return parts[0].unionByName(parts[1])


def eligibility_frame(merged: DataFrame, rules: Rules) -> DataFrame:
    """Inclusion / exclusion text split into items, with sex and ages as on studies and as received."""
    n = _norm_fields()

    def body(field_name: str, label: str) -> Column:
        return text(F.regexp_replace(rec(field_name), rf"(?i)^\s*{label} criteria\s*:?\s*(<br\s*/?>)?", ""))
    inc, exc = body("inclusion_criteria", "inclusion"), body("exclusion_criteria", "exclusion")
    criteria = F.concat_ws("\n\n", F.when(inc.isNotNull(), F.concat(F.lit("Inclusion Criteria:\n"), inc)),
                           F.when(exc.isNotNull(), F.concat(F.lit("Exclusion Criteria:\n"), exc)))
    present = inc.isNotNull() | exc.isNotNull() | rec("age_min").isNotNull() | rec("age_max").isNotNull() \
        | rec("gender").isNotNull()
    null = F.lit(None)
    return merged.where(present).select(
        "study_id", F.when(criteria != "", criteria).alias("criteria"),
        F.when(inc.isNotNull(), _criteria_items(inc)).alias("inclusion_criteria"),
        F.when(exc.isNotNull(), _criteria_items(exc)).alias("exclusion_criteria"),
        n["sex"].alias("sex"), n["min_age"].alias("min_age"), n["max_age"].alias("max_age"),
        F.trim(rec("age_min")).alias("min_age_raw"), F.trim(rec("age_max")).alias("max_age_raw"),
        null.alias("healthy_volunteers"), null.alias("std_ages"), null.alias("study_population"),
        null.alias("sampling_method"),
    )


def outcomes_frame(merged: DataFrame, rules: Rules) -> DataFrame:
    """overall_status (canonical or verbatim) and its outcome_type from conf/normalize.yaml."""
    status = F.col("norm.recruitment_status")
    outcome_type = F.try_element_at(_map_literal(rules.outcome_type_by_status), status)
    return merged.where(status.isNotNull()).select(
        "study_id", status.alias("overall_status"), outcome_type.alias("outcome_type"),
        F.lit(None).alias("why_terminated"))


def silver_frames(members: DataFrame, merged: DataFrame, rules: Rules, updated_at: Column) -> dict[str, DataFrame]:
    """The silver tables ICTRP has data for (the parent ``studies`` first)."""
    return {
        "studies": studies_frame(merged, rules, updated_at),
        "conditions": conditions_frame(merged, rules),
        "drugs": drugs_frame(merged, rules),
        "endpoints": endpoints_frame(merged, rules),
        "eligibility": eligibility_frame(merged, rules),
        "outcomes": outcomes_frame(merged, rules),
        "study_ids": study_ids_frame(members, rules),
    }


# ------------------------------------------------------------------------------------------- ingest
@dataclass
class IctrpSummary:
    staged: IngestSummary
    formats: dict[str, int]
    ignored_files: int = 0
    unmapped: dict[str, dict[str, int]] = field(default_factory=dict)
    bronze_only: dict[str, int] = field(default_factory=dict)

    def as_result(self) -> dict[str, Any]:
        return {**self.staged.as_result(), "formats": self.formats, "ignored_files": self.ignored_files,
                "bronze_only": self.bronze_only,
                "unmapped_values": self.unmapped}

    def metrics(self) -> dict[str, int]:
        """Staging counts plus ``unmapped.<vocab>`` totals and ``unmapped.<vocab>.<value>`` counts."""
        out = dict(self.staged.metrics())
        out["bronze_only"] = sum(self.bronze_only.values())
        for vocab, values in self.unmapped.items():
            out[f"unmapped.{vocab}"] = sum(values.values())
            for value, n in values.items():
                out[_metric_name(f"unmapped.{vocab}.{value}")] = n
        return out


def _metric_name(name: str) -> str:
    """MLflow accepts letters, digits, ``_-. /`` in metric names, up to 250 characters."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)[:250]


class _SilverBuilder:
    """The ``silver`` callback of ``staging.stage``: builds the frames from the changed members plus their
    stored siblings, and counts for the summary the studies it writes with unmapped values (so a rerun that
    writes nothing reports none) and the changed records kept in bronze only."""

    def __init__(self, spark: SparkSession, root: str, rules: Rules, updated_at: Column,
                 storage_level: StorageLevel):
        self.spark, self.root, self.rules, self.updated_at = spark, root, rules, updated_at
        self.storage_level = storage_level
        self.unmapped: dict[str, dict[str, int]] = {}
        self.bronze_only: dict[str, int] = {}
        self._cached: list[DataFrame] = []

    def __call__(self, changed: DataFrame) -> dict[str, DataFrame]:
        skipped = F.col("registry").isin(self.rules.bronze_only)
        members = with_norm(_members(self.spark, self.root, changed.where(~skipped)), self.rules) \
            .persist(self.storage_level)
        merged = merge_members(members).persist(self.storage_level)
        self._cached += [members, merged]
        counts = batch_counts(merged, changed.where(skipped))
        self.bronze_only = counts.pop("bronze_only", {})
        self.unmapped = counts
        return silver_frames(members, merged, self.rules, self.updated_at)

    def release(self) -> None:
        for frame in self._cached:
            frame.unpersist()


def _bronze_rows(changed: DataFrame, ingested_at: Column) -> DataFrame:
    return changed.select("trial_id", "study_id", "registry", "member_state", "source_format", "raw", "fields",
                          "source_file", "record_hash", "source_version", ingested_at.alias("ingested_at"))


def ingest(spark: SparkSession, cfg: Config, inputs: list[str], ingested_at: Column,
           on_write: Callable[[lake.WriteResult], None] | None = None) -> IctrpSummary:
    """Read every ICTRP shape, validate, and write through ``staging.stage`` (bronze keyed by TrialID).
    Re-running the same input writes nothing; a newer member-state record rebuilds its whole study."""
    rules = Rules.load(cfg)
    listed = list_files(spark, inputs)
    ignored = [f for f in listed if any(re.search(p, f) for p in rules.conf.get("ignore_files") or [])]
    files = classify_files(spark, [f for f in listed if f not in ignored])
    progress(f"ictrp: {files.count} input files {files.formats}, {len(ignored)} ignored")
    parsed = parse_records(read_records(spark, files), rules)
    cache_level = staging.cache_level(cfg)
    builder = _SilverBuilder(spark, cfg.lake_root, rules, ingested_at, cache_level)
    try:
        staged = staging.stage(
            spark, cfg.lake_root, source=SOURCE, parsed=parsed, key="trial_id", bronze_table=BRONZE,
            bronze_key="trial_id", n_files=files.count, ingested_at=ingested_at, silver=builder,
            bronze=lambda changed: _bronze_rows(changed, ingested_at), report=on_write,
            max_reasons=staging.summary_max_reasons(cfg), storage_level=cache_level,
        )
    finally:
        builder.release()
    if builder.unmapped:
        progress(f"ictrp: unmapped values {builder.unmapped}")
    return IctrpSummary(staged, dict(sorted(files.formats.items())), len(ignored), builder.unmapped,
                        builder.bronze_only)
