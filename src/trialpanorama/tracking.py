"""MLflow: one run per job, with the Delta versions it wrote and read.

Every Spark or Ray job opens a ``JobRun``: inputs and config as params, counts and seconds as metrics,
and ``delta.<table>.version`` tags, so a run in the ``pipeline`` experiment says exactly which table
versions it produced. The tracking URI comes from ``MLFLOW_TRACKING_URI`` or the config.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

import mlflow

from trialpanorama.config import Config

_MAX_PARAM = 6000  # MLflow's param value limit is 6000 characters


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."


SECRET_KEY = re.compile(r"(?i)secret|passw(or)?d|token|access.?key|api.?key|credential|auth")


def redact_override(item: str) -> str:
    """``--set`` items as logged: the value of a secret-looking key (an S3 secret passed as Spark conf,
    say) becomes ``***``, and credentials inside URIs (``scheme://user:pass@host``) are dropped, so a
    run's parameters never carry what its command line did."""
    key, sep, value = item.partition("=")
    if sep and SECRET_KEY.search(key):
        return f"{key}=***"
    return re.sub(r"(?<=://)[^/@\s]+@", "", item)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def close_dead_runs(experiment_id: str, job: str, host: str, by_run: str) -> list[str]:
    """End as KILLED the RUNNING runs of ``job`` that were started on this host by a process now gone.

    A job killed by SIGKILL or the OOM killer cannot end its own run, which would stay RUNNING in the UI for
    ever; the next run of the same job on the same host notices (by the ``host``/``pid`` tags every run
    carries) and ends it, naming itself in the ``ended_by`` tag. Runs of live processes, and runs started on
    other hosts, are left alone (their liveness cannot be seen from here).
    """
    client = mlflow.MlflowClient()
    stale = client.search_runs(
        [experiment_id], f"tags.job = '{job}' AND tags.host = '{host}' AND attributes.status = 'RUNNING'")
    ended = []
    for run in stale:
        pid = run.data.tags.get("pid", "")
        if run.info.run_id == by_run or not pid.isdigit() or _alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "ended_by", by_run)
        client.set_terminated(run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
    if ended:
        print(f"mlflow: ended {len(ended)} run(s) of {job} left RUNNING by a dead process: {ended}",
              file=sys.stderr, flush=True)
    return ended


class JobRun:
    """A started MLflow run with helpers for the things every job records."""

    def __init__(self, cfg: Config, job: str, params: Mapping[str, Any], experiment: str | None = None):
        mlflow.set_tracking_uri(cfg.tracking_uri)
        exp = mlflow.set_experiment(experiment or str(cfg.get("mlflow.experiment", "pipeline")))
        self.started = time.monotonic()
        host = socket.gethostname()
        self.run = mlflow.start_run(run_name=job, tags={"job": job, "host": host, "pid": str(os.getpid())})
        self.run_id = self.run.info.run_id
        close_dead_runs(exp.experiment_id, job, host, self.run_id)
        mlflow.log_params({k: _clip(v) for k, v in {"job": job, **params}.items()})
        if cfg.overrides:
            mlflow.log_param("overrides", _clip([redact_override(o) for o in cfg.overrides]))

    def metrics(self, values: Mapping[str, float | int]) -> None:
        mlflow.log_metrics({k: float(v) for k, v in values.items() if v is not None})

    def table_version(self, table: str, version: int | None, role: str = "written") -> None:
        """Tag ``delta.<table>.version`` (written) or ``delta.input.<table>.version`` (read)."""
        if version is None:
            return
        key = f"delta.{table}.version" if role == "written" else f"delta.input.{table}.version"
        mlflow.set_tag(key, str(version))

    def summary(self, summary: Mapping[str, Any]) -> None:
        mlflow.log_dict(dict(summary), "summary.json")

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def end(self, status: str = "FINISHED") -> None:
        mlflow.log_metric("seconds", self.seconds())
        # MLflow prints "View run ... at: <url>" on stdout; stdout is reserved for the job's JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            mlflow.end_run(status=status)
