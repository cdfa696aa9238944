"""The whole suite: one marker file and one fetch-counting listener shared by every format, then each
format in turn (one Spark run each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from trialpanorama.chaos.runner import FormatResult, run_format
from trialpanorama.chaos.settings import ChaosSettings
from trialpanorama.chaos.xml_attacks import FetchCounter, marker_for, write_marker_file
from trialpanorama.config import Config
from trialpanorama.progress import progress


def run_suite(spark: SparkSession, cfg: Config, conf: dict[str, Any], workdir: Path, records: int | None = None,
              formats: list[str] | None = None, big_text_bytes: int | None = None) -> list[FormatResult]:
    workdir.mkdir(parents=True, exist_ok=True)
    marker = marker_for(f"S{conf['seed']}")
    marker_file = write_marker_file(workdir / "secret", marker)
    n = int(records or conf["records_per_format"])
    results: list[FormatResult] = []
    with FetchCounter(str(conf.get("host", "127.0.0.1")), marker) as listener:
        settings = ChaosSettings.from_conf(conf, marker_file, marker, listener.url, big_text_bytes=big_text_bytes)
        for fmt in formats or conf["formats"]:
            progress(f"chaos: {fmt}, {n} records")
            result = run_format(spark, cfg, fmt, n, settings, workdir, lambda: len(listener.requests))
            progress(f"chaos: {fmt} done in {result.seconds}s, reconciled={result.reconciled}")
            results.append(result)
    return results
