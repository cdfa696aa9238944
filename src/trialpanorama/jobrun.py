"""Conventions shared by every job in ``jobs/``: flags, config, Spark, MLflow, and the closing JSON line.

A job file only declares its name and a function ``body(ctx) -> dict``; this module parses the common
flags (``--config``, ``--lake``, ``--input``, ``--set``), builds the session, opens the MLflow run, records
the Delta version of every table written, and prints one line of JSON with counts, versions, seconds and
the run id. The same file works with ``python jobs/X.py`` and ``spark-submit jobs/X.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from trialpanorama.config import Config, load_config
from trialpanorama.tracking import JobRun


@dataclass
class JobContext:
    name: str
    cfg: Config
    args: argparse.Namespace
    spark: Any  # SparkSession; typed loosely so --help works without starting Java
    run: JobRun | None
    started_at: datetime
    inputs: list[str] = field(default_factory=list)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def lake(self) -> str:
        return self.cfg.lake_root

    def record_write(self, result: Any) -> None:
        """Remember a table write (a ``lake.WriteResult``) with Delta's own operation metrics."""
        from trialpanorama.lake import operation_metrics

        info = {"version": result.version, **operation_metrics(self.spark, result.uri, result.version)}
        self.tables[result.table] = info
        if self.run:
            self.run.table_version(result.table, result.version)
            self.run.metrics({f"{result.table}.{k}": v for k, v in info.items() if k != "version"})


def build_parser(name: str, description: str, needs_input: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("--config", default=None, help="pipeline YAML (default: conf/pipeline.yaml)")
    parser.add_argument("--lake", default=None, help="lake root URI; overrides lake.root")
    if needs_input:
        parser.add_argument("--input", nargs="+", default=None,
                            help="input files, folders or globs (any Hadoop-compatible URI)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (dotted), e.g. --set spark.master=local[2]")
    return parser


def run_job(name: str, description: str, body: Callable[[JobContext], dict[str, Any]],
            needs_input: bool = False, default_input_key: str | None = None,
            add_args: Callable[[argparse.ArgumentParser], None] | None = None,
            argv: Sequence[str] | None = None, track: bool = True) -> dict[str, Any]:
    """Run a job and print its one-line JSON summary; exit non-zero (after ending the run FAILED) on error.

    ``track=False`` is for read-only utilities (``lake_stats``) that change nothing worth a pipeline run.
    """
    parser = build_parser(name, description, needs_input)
    if add_args:
        add_args(parser)
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.lake:
        overrides.append(f"lake.root={args.lake}")
    cfg = load_config(args.config, overrides)
    inputs: list[str] = []
    if needs_input:
        inputs = list(args.input or [])
        if not inputs and default_input_key:
            default = cfg.get(default_input_key)
            inputs = [default] if isinstance(default, str) else list(default or [])
        if not inputs:
            parser.error("--input is required")

    from trialpanorama.lake import get_spark

    started = time.monotonic()
    spark = get_spark(cfg, app_name=name)
    params = {"lake": cfg.lake_root, "inputs": inputs, "config": str(cfg.source)}
    run = JobRun(cfg, name, params) if track else None
    ctx = JobContext(name, cfg, args, spark, run, datetime.now(timezone.utc), inputs)
    try:
        result = body(ctx)
    except BaseException:
        if run:
            run.end("FAILED")
        raise
    summary: dict[str, Any] = {"job": name, **result}
    if track:
        summary["tables"] = ctx.tables
    summary["seconds"] = round(time.monotonic() - started, 2)
    if run:
        summary["mlflow_run_id"] = run.run_id
        run.summary(summary)
        run.end()
    print(json.dumps(summary, default=str), flush=True)
    return summary


def main_guard(fn: Callable[[], Any]) -> None:
    """Entry-point wrapper: a clean message and exit code 1 on error instead of a bare traceback dump."""
    try:
        fn()
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


def load_job(folder: Path | str, name: str) -> ModuleType:
    """The job file ``folder/<name>.py`` as a module (not run: its ``main(argv)`` runs it)."""
    path = Path(folder) / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no job {name!r} in {folder}")
    spec = importlib.util.spec_from_file_location(f"trialpanorama_job_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        raise ValueError(f"{path} has no main(argv): not a pipeline job")
    return module


def run_steps(folder: Path | str, steps: Sequence[str], common: Sequence[str]) -> list[dict[str, Any]]:
    """Run job steps one after the other in this process, so they share one Spark session.

    A step is a job name and its own flags (``"ingest_ctgov --input dumps/"``); ``common`` (--lake, --config,
    --set) is added to every step. Each step is exactly the job run alone (its own MLflow run and JSON line);
    what is saved is a JVM and Delta start per job, most of a small job's time. All steps are loaded first,
    so a misspelt name fails before anything is written; the first failing step stops the rest.
    """
    from trialpanorama.progress import progress

    parsed = [shlex.split(step) for step in steps]
    if not parsed or any(not p for p in parsed):
        raise ValueError("every --step needs a job name")
    modules = [load_job(folder, name) for name, *_ in parsed]
    started = time.monotonic()
    results = []
    for i, ((name, *args), module) in enumerate(zip(parsed, modules, strict=True), start=1):
        title = (module.__doc__ or name).strip().splitlines()[0]
        progress(f"== step {i}/{len(parsed)} [{time.monotonic() - started:.0f} s] {name}: {title}")
        results.append(module.main([*args, *common]))
    return results
