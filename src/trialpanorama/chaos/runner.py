"""Run each format's real ingest on its hostile files, in a lake of its own, and check what it left behind.

Per format: the generator writes the files, the source's own ``ingest`` (or the vocabulary loader) reads
them all in one Spark run, and then the lake is read back, not the job's word taken:

- crashes: an exception out of the ingest (it must be 0);
- reconciled: the job's records in = accepted + rejected (+ deleted), every reject row has a reason, the
  rejects table holds as many rows as the job counted, and every generated token is found in the outputs
  or in ``rejects`` (a duplicate key may lose to its twin: it is counted as superseded);
- no XML external entity was expanded or fetched: the marker file's text and the billion-laughs expansion
  appear in no table and no file of the lake, and the local HTTP listener saw no request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from trialpanorama import lake
from trialpanorama.chaos import ctgov as g_ctgov
from trialpanorama.chaos import ictrp as g_ictrp
from trialpanorama.chaos import panorama as g_panorama
from trialpanorama.chaos import pubmed as g_pubmed
from trialpanorama.chaos import vocab as g_vocab
from trialpanorama.chaos.payloads import TOKEN_RE, Batch
from trialpanorama.chaos.settings import ChaosSettings
from trialpanorama.chaos.xml_attacks import EXPANSION_NEEDLE
from trialpanorama.config import Config


@dataclass
class Outcome:
    """What an ingest reported, in the terms every format shares."""

    records_in: int
    accepted: int
    rejected: int
    deleted: int = 0
    superseded: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass
class FormatSpec:
    generate: Callable[[Path, int, ChaosSettings], Batch]
    ingest: Callable[[SparkSession, Config, list[str], Any], Outcome]
    outputs: tuple[str, ...]  # tables (besides rejects) whose rows should hold the accepted tokens
    reject_sources: tuple[str, ...]
    output_filter: str | None = None


def _staged(s: Any) -> Outcome:
    return Outcome(s.records_in, s.accepted, s.rejected, superseded=s.superseded, by_reason=s.rejected_by_reason)


def _ingest_ctgov(spark, cfg, files, at) -> Outcome:  # noqa: ANN001
    from trialpanorama.sources import ctgov

    return _staged(ctgov.ingest(spark, cfg, files, at))


def _ingest_ictrp(spark, cfg, files, at) -> Outcome:  # noqa: ANN001
    from trialpanorama.sources import ictrp

    return _staged(ictrp.ingest(spark, cfg, files, at).staged)


def _ingest_pubmed(spark, cfg, files, at) -> Outcome:  # noqa: ANN001
    from trialpanorama.sources import pubmed

    s = pubmed.ingest(spark, cfg, files, at)
    a = s.articles
    return Outcome(s.records_in, a.accepted, a.rejected, deleted=s.deletes.accepted,
                   superseded=a.superseded + s.deletes.superseded, by_reason=a.rejected_by_reason)


def _ingest_panorama(spark, cfg, files, at) -> Outcome:  # noqa: ANN001
    from trialpanorama.sources import panorama

    return _staged(panorama.ingest(spark, cfg, files, at).studies)


def _vocab(spark, cfg, at, source: str, table: str, **opts) -> Outcome:  # noqa: ANN001
    from trialpanorama.linking import vocab

    options = vocab.LoadOptions(mesh_tree=[], drug_dictionary=False, harvest_lake=False, **opts)
    stats = vocab.load(spark, cfg, options, at)
    by_reason = (stats.get("rejected") or {}).get(source, {})
    accepted = lake.read_named(spark, cfg.lake_root, table).where(F.col("source") == source).count()
    rejected = sum(by_reason.values())
    # the loader reports no records-in figure: the records are what it kept plus what it rejected
    return Outcome(accepted + rejected, accepted, rejected, by_reason=by_reason)


def _ingest_mesh(spark, cfg, files, at) -> Outcome:  # noqa: ANN001
    return _vocab(spark, cfg, at, "mesh_xml", "vocab_mesh_sources", mesh_xml=files, only=("mesh",))


def _ingest_drugbank(spark, cfg, files, at) -> Outcome:  # noqa: ANN001
    return _vocab(spark, cfg, at, "drugbank_csv", "vocab_drugs", drugbank_csv=files, only=("drugs",))


FORMATS: dict[str, FormatSpec] = {
    "ctgov_json": FormatSpec(g_ctgov.generate, _ingest_ctgov, ("ctgov_raw",), ("ctgov",)),
    "ictrp_csv": FormatSpec(g_ictrp.generate_csv, _ingest_ictrp, ("ictrp_raw",), ("ictrp",)),
    "ictrp_xml": FormatSpec(g_ictrp.generate_xml, _ingest_ictrp, ("ictrp_raw",), ("ictrp",)),
    "pubmed_xml": FormatSpec(g_pubmed.generate, _ingest_pubmed, ("pubmed_raw",), ("pubmed", "pubmed deletes")),
    "mesh_xml": FormatSpec(g_vocab.generate_mesh, _ingest_mesh, ("vocab_mesh_sources",), ("mesh_xml",),
                           "source = 'mesh_xml'"),
    "drugbank_csv": FormatSpec(g_vocab.generate_drugbank, _ingest_drugbank, ("vocab_drugs",), ("drugbank_csv",),
                               "source = 'drugbank_csv'"),
    "panorama_parquet": FormatSpec(g_panorama.generate, _ingest_panorama, ("panorama_raw",), ("panorama",)),
}


@dataclass
class FormatResult:
    format: str
    tried: int
    files: int
    crashes: int = 0
    crash: str | None = None
    crash_files: list[str] = field(default_factory=list)
    records_in: int = 0
    accepted: int = 0
    rejected: int = 0
    deleted: int = 0
    superseded: int = 0
    reject_rows: int = 0
    rejects_without_reason: int = 0
    tokens_missing: list[str] = field(default_factory=list)
    marker_hits: dict[str, int] = field(default_factory=dict)
    fetches: int = 0
    seconds: float = 0.0
    by_attack: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def counts_reconcile(self) -> bool:
        return self.records_in == self.accepted + self.rejected + self.deleted and self.reject_rows == self.rejected

    @property
    def reconciled(self) -> bool:
        return (self.crashes == 0 and self.counts_reconcile and self.rejects_without_reason == 0
                and not self.tokens_missing and not self.marker_hits and self.fetches == 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciled": self.reconciled, "counts_reconcile": self.counts_reconcile}


def _tokens(df: DataFrame) -> set[str]:
    text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns]))
    rows = df.select(F.explode(F.regexp_extract_all(text, F.lit(TOKEN_RE.pattern), 0)).alias("t")).distinct()
    return {r["t"] for r in rows.collect()}


def scan_lake(spark: SparkSession, root: str, needles: list[str]) -> dict[str, int]:
    """Rows (per table) and files (per file name) of the lake that contain any needle."""
    hits: dict[str, int] = {}
    for name, uri in lake.list_tables(spark, root):
        df = spark.read.format("delta").load(uri)
        text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns]))
        cond = None
        for n in needles:
            c = F.instr(text, n) > 0
            cond = c if cond is None else cond | c
        found = df.where(cond).count()
        if found:
            hits[f"table:{name}"] = found
    base = Path(root)
    for path in base.rglob("*") if base.exists() else []:
        if path.is_file():
            data = path.read_bytes()
            if any(n.encode() in data for n in needles):
                hits[f"file:{path.relative_to(base)}"] = 1
    return hits


def check(spark: SparkSession, root: str, spec: FormatSpec, batch: Batch, result: FormatResult) -> None:
    """Fill the lake-side figures of ``result``."""
    rejects = lake.read_named(spark, root, "rejects").where(F.col("source").isin(list(spec.reject_sources)))
    result.reject_rows = rejects.count()
    result.rejects_without_reason = rejects.where(F.col("reason").isNull() | (F.trim("reason") == "")).count()
    found = _tokens(rejects)
    rejected_files = {r["source_file"] for r in rejects.select("source_file").distinct().collect()}
    for table in spec.outputs:
        df = lake.read_named(spark, root, table)
        found |= _tokens(df.where(spec.output_filter) if spec.output_filter else df)
    # a duplicate key and the record it duplicates: one may supersede the other, one of them must be kept
    groups = [{c.tok, c.note[4:]} for c in batch.cases if c.note.startswith("dup:")]
    twins = set().union(*groups) if groups else set()
    missing = [c.tok for c in batch.cases if c.tok not in found and c.tok not in twins
               and not (c.note == "unreadable" and rejected_files)]
    missing += [t for g in groups if not g & found for t in g]
    result.tokens_missing = sorted(set(missing))


def run_format(spark: SparkSession, cfg: Config, fmt: str, n: int, settings: ChaosSettings, workdir: Path,
               fetch_count: Callable[[], int]) -> FormatResult:
    """Generate ``n`` hostile records of ``fmt``, ingest them into ``workdir/<fmt>/lake`` and check the lake."""
    spec = FORMATS[fmt]
    folder = workdir / fmt
    root = folder / "lake"
    batch = spec.generate(folder / "input", n, settings)
    result = FormatResult(fmt, len(batch.cases), len(batch.files), by_attack=batch.by_attack())
    fcfg = cfg.with_overrides([f"lake.root={root}"])
    before = fetch_count()
    started = time.monotonic()
    files = list(batch.files)
    out = None
    # A crash is the figure being measured. When the error names an input file, that file is set aside and
    # the rest is ingested again (into a fresh lake), so one crashing file does not hide the other figures.
    for attempt in range(4):
        try:
            out = spec.ingest(spark, fcfg.with_overrides([f"lake.root={root}-{attempt}"]) if attempt else fcfg,
                              files, F.current_timestamp())
            root = Path(f"{root}-{attempt}") if attempt else root
            break
        except Exception as exc:  # noqa: BLE001
            result.crashes += 1
            text = f"{type(exc).__name__}: {exc}"
            culprit = next((f for f in files if Path(f).name in text), None)
            result.crash_files.append(culprit or "")
            note = f"[{Path(culprit).name if culprit else 'no file named'}] {text[:500]}"
            result.crash = note if result.crash is None else result.crash + "\n" + note
            if culprit is None:
                break
            files.remove(culprit)
    if out is None:
        result.seconds = round(time.monotonic() - started, 1)
        return result
    batch = Batch(files, [c for c in batch.cases if c.file is None or c.file in files])
    result.seconds = round(time.monotonic() - started, 1)
    result.records_in, result.accepted, result.rejected = out.records_in, out.accepted, out.rejected
    result.deleted, result.superseded, result.rejected_by_reason = out.deleted, out.superseded, out.by_reason
    check(spark, str(root), spec, batch, result)
    result.marker_hits = scan_lake(spark, str(root), [settings.marker, EXPANSION_NEEDLE])
    result.fetches = fetch_count() - before
    return result
