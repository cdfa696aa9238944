"""Fault injection from the outside: start a real job process, watch the files it writes, SIGKILL it.

No hook in product code: a kill point is a state of the filesystem (a Delta table's first new Parquet part
before its commit JSON, the commit of one table before the next one's) that these helpers poll for at a
few milliseconds' interval, then kill the job's whole process group (Python driver and its JVM or Ray
processes together, as an OOM kill or a lost node would), so nothing outlives the kill to finish a write.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
JAVA_17 = "/usr/lib/jvm/java-17-openjdk-amd64"
# Columns stamped with the wall clock of the run that wrote them: excluded when comparing content.
CLOCK_COLUMNS = frozenset({"ingested_at", "updated_at", "created_at", "latency_s"})


def job_env(**extra: str) -> dict[str, str]:
    """The environment of a job subprocess: Java 17 for Spark 4.2, loopback only, no hub, unbuffered."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    if Path(JAVA_17).is_dir():
        env.setdefault("JAVA_HOME", JAVA_17)
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def spawn(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group (so the group can be killed as one)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "w")  # noqa: SIM115 - the child owns it; closed by reap()
    proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env or job_env(),
                            cwd=str(cwd or ROOT), start_new_session=True)
    proc._fault_log = out  # type: ignore[attr-defined]
    return proc


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (from /proc: no psutil needed)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process of the job's group, then reap the leader."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    reap(proc)


def reap(proc: subprocess.Popen, timeout: float = 60) -> int:
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        log = getattr(proc, "_fault_log", None)
        if log is not None:
            log.close()
    return rc


def wait_group_gone(pgid: int, timeout: float) -> list[int]:
    """Wait until no process of the group is left; returns the survivors (empty = all gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = group_pids(pgid)
        if not left:
            return []
        time.sleep(0.2)
    return group_pids(pgid)


@dataclass
class KillReport:
    point: str
    fired: bool
    seconds: float
    detail: str = ""


def kill_when(proc: subprocess.Popen, point: str, condition: Callable[[], str | None], timeout: float,
              poll_s: float = 0.005, group: bool = True) -> KillReport:
    """Poll ``condition`` (returns a description once the kill point is reached, else None); SIGKILL then.

    ``group=False`` kills the leader only (a driver process dying alone).
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        detail = condition()
        if detail is not None:
            if group:
                kill_group(proc)
            else:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
            return KillReport(point, True, round(time.monotonic() - t0, 2), detail)
        if proc.poll() is not None:
            break
        time.sleep(poll_s)
    if proc.poll() is None:
        kill_group(proc)
    else:
        reap(proc)
    return KillReport(point, False, round(time.monotonic() - t0, 2), f"rc={proc.returncode}")


# ----------------------------------------------------------------------------------- Delta on disk
def table_dirs(lake: Path) -> dict[str, Path]:
    """``layer/table`` -> folder, for every folder under the lake that holds a ``_delta_log``."""
    out = {}
    for log in lake.glob("*/*/_delta_log"):
        out[f"{log.parent.parent.name}/{log.parent.name}"] = log.parent
    return out


def commit_versions(table: Path) -> list[int]:
    """Committed versions: the ``NNNNNNNNNNNNNNNNNNNN.json`` files of the log (temp files excluded)."""
    log = table / "_delta_log"
    if not log.is_dir():
        return []
    return sorted(int(p.stem) for p in log.glob("*.json") if p.stem.isdigit())


def data_files(table: Path) -> set[str]:
    """Every Parquet part file under the table (partition folders included), committed or not."""
    if not table.is_dir():
        return set()
    return {str(p.relative_to(table)) for p in table.rglob("*.parquet") if "_delta_log" not in p.parts}


def first_new_part(table: Path, before: set[str], last_version: int | None) -> Callable[[], str | None]:
    """Kill point: a Parquet part the job is writing into ``table`` exists, its commit does not yet."""
    def check() -> str | None:
        new = data_files(table) - before
        if not new:
            return None
        versions = commit_versions(table)
        committed = bool(versions) and (last_version is None or versions[-1] > last_version)
        return None if committed else f"{len(new)} uncommitted part(s) in {table.name}, e.g. {sorted(new)[0]}"
    return check


def committed_after(table: Path, last_version: int | None) -> Callable[[], str | None]:
    """Kill point: ``table`` got a commit beyond ``last_version`` (the next table has not been written)."""
    def check() -> str | None:
        versions = commit_versions(table)
        if versions and (last_version is None or versions[-1] > last_version):
            return f"{table.name} committed v{versions[-1]}"
        return None
    return check


# ----------------------------------------------------------------------------------- content
def row_digest(rows: Iterable[dict[str, Any]]) -> str:
    """Order-free digest of rows: each row as canonical JSON, sorted, hashed."""
    lines = sorted(json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) for r in rows)
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def delta_content(spark: Any, lake: Path, version: dict[str, int] | None = None,
                  skip: frozenset[str] = CLOCK_COLUMNS) -> dict[str, dict[str, Any]]:
    """Rows and digest of every table of the lake (optionally at given versions), clock columns left out.
    A folder whose ``_delta_log`` holds no commit yet (a first write killed before its commit) is no table."""
    from trialpanorama.lake import read_table

    out = {}
    for name, folder in sorted(table_dirs(lake).items()):
        if not commit_versions(folder):
            continue
        v = None if version is None else version.get(name)
        df = read_table(spark, str(folder), v)
        df = df.drop(*[c for c in df.columns if c in skip])
        rows = [r.asDict(recursive=True) for r in df.collect()]
        out[name] = {"rows": len(rows), "digest": row_digest(rows)}
    return out


def delta_history(spark: Any, folder: Path) -> list[int]:
    """Versions in DESCRIBE HISTORY of a table, oldest first."""
    rows = spark.sql(f"DESCRIBE HISTORY delta.`{folder}`").select("version").collect()
    return sorted(int(r[0]) for r in rows)


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""
