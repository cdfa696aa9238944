"""Crash consistency: ``jobs/ingest_ctgov.py`` SIGKILLed at chosen points of its writes, then re-run.

The job is a real subprocess (its own JVM); the kill points are states of the lake's files, polled every
few milliseconds (tests/fault_helpers.py), and the whole process group is killed at once, so no JVM
survives to finish a commit. After every kill each Delta table must be exactly its state before the run
(same DESCRIBE HISTORY, same rows) or exactly the state an uninterrupted run gives it (a commit that
landed before the kill), never anything in between; and a re-run must give the uninterrupted result.

Inputs: a generated world's ClinicalTrials.gov zip, split into batch A (first ingest) and batch B
(updated versions of part of A, new studies and one truncated record), so the killed run exercises
table creation, MERGE updates of parent rows, delete+insert of child rows, bronze and rejects.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import job_argv, run_named_job
from tests.fault_helpers import (
    PY,
    ROOT,
    commit_versions,
    committed_after,
    data_files,
    delta_content,
    delta_history,
    first_new_part,
    job_env,
    kill_when,
    spawn,
    table_dirs,
    tail,
)

pytestmark = pytest.mark.heavy
JOB = ROOT / "jobs" / "ingest_ctgov.py"
A_MEMBERS = 14          # batch A: the first members of the generated zip
B_FROM, B_TO = 8, 26    # batch B: members 8..25, of which 8..13 are updated versions of A's


def _figures(point: str, detail: str, outcome: dict, killed_s: float, t0: float) -> None:
    """One JSON line per kill point (seen with ``pytest -s``): what was interrupted, what each table was."""
    print("\nKILLPOINT " + json.dumps({"point": point, "detail": detail, "outcome": outcome,
                                       "killed_after_s": killed_s, "test_s": round(time.monotonic() - t0, 1),
                                       "rerun_matched": True}, sort_keys=True))


def _run_in_process(lake: Path, inp: Path) -> dict:
    return run_named_job("ingest_ctgov", lake, "--input", str(inp))


def _amend(raw: bytes) -> bytes:
    """A newer version of a study: new title, newer update date, one condition replaced."""
    rec = json.loads(raw)
    p = rec["protocolSection"]
    p["identificationModule"]["briefTitle"] = p["identificationModule"].get("briefTitle", "") + " (amended)"
    p["statusModule"]["lastUpdatePostDateStruct"] = {"date": "2026-01-15", "type": "ACTUAL"}
    conds = p.setdefault("conditionsModule", {}).get("conditions") or []
    p["conditionsModule"]["conditions"] = conds[:1] + ["Amended condition"]
    return json.dumps(rec).encode()


def _write_zip(folder: Path, members: list[tuple[str, bytes]]) -> Path:
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "ctg-studies.json.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return folder


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("crash-inputs")
    subprocess.run([PY, str(ROOT / "jobs" / "generate_world.py"), "--records", "300", "--seed", "3",
                    "--out", str(base / "world"), "--workers", "1", "--no-progress"],
                   check=True, capture_output=True, timeout=300)
    with zipfile.ZipFile(base / "world" / "ctgov" / "ctg-studies.json.zip") as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    a = members[:A_MEMBERS]
    b = []
    for i, (name, data) in enumerate(members[B_FROM:B_TO], start=B_FROM):
        if i < A_MEMBERS:
            try:
                data = _amend(data)
            except (ValueError, KeyError, TypeError):
                pass  # a malformed member stays malformed (and is a reject again)
        b.append((name, data))
    b.append(("99/NCT99999999.json", b'{"protocolSection": {"identificationModule": {"nctId": "NCT9999'))
    return {"A": _write_zip(base / "A", a), "B": _write_zip(base / "B", b)}


@pytest.fixture(scope="module")
def reference_a(batches, spark, mlflow_server, tmp_path_factory) -> dict:
    """Uninterrupted run of batch A into an empty lake: its folder and per-table state."""
    after_a = tmp_path_factory.mktemp("crash-ref") / "after_a"
    _run_in_process(after_a, batches["A"])
    state_a = _state(spark, after_a)  # a copy of the lake has the same versions, history and rows
    return {"after_a": after_a, "state_a": state_a,
            "A": {n: {"rows": s["rows"], "digest": s["digest"]} for n, s in state_a.items()}}


@pytest.fixture(scope="module")
def reference(reference_a, batches, spark, mlflow_server) -> dict:
    """... and batch B after it, uninterrupted: the content every killed-and-re-run B must reach."""
    after_ab = reference_a["after_a"].parent / "after_ab"
    shutil.copytree(reference_a["after_a"], after_ab)
    _run_in_process(after_ab, batches["B"])
    return {**reference_a, "AB": delta_content(spark, after_ab)}


def _state(spark, lake: Path) -> dict[str, dict]:
    """Committed tables only (a folder with parts but no commit JSON is no table)."""
    dirs = {n: d for n, d in table_dirs(lake).items() if commit_versions(d)}
    content = delta_content(spark, lake) if dirs else {}
    return {n: {"version": commit_versions(d)[-1], "history": delta_history(spark, d), **content[n]}
            for n, d in dirs.items()}


def _kill_run(lake: Path, inp: Path, point: str, table: str, kind: str, mlflow_uri: str):
    folder = lake / table
    before_files = data_files(folder)
    last = commit_versions(folder)[-1] if commit_versions(folder) else None
    cond = first_new_part(folder, before_files, last) if kind == "part" else committed_after(folder, last)
    log = lake.parent / f"{point}.log"
    t0 = time.monotonic()
    proc = spawn([PY, str(JOB), *job_argv(lake, "--input", str(inp))], log,
                 env=job_env(MLFLOW_TRACKING_URI=mlflow_uri))
    report = kill_when(proc, point, cond, timeout=900)
    assert report.fired, f"{point}: the job ended before the kill point ({report.detail}):\n{tail(log)}"
    return report, before_files, round(time.monotonic() - t0, 1)


def _check_all_or_nothing(spark, lake: Path, before: dict[str, dict], after: dict[str, dict],
                          partial_table: str | None, before_files: set[str]) -> dict[str, str]:
    """Every table is its before-state or its after-state; the table killed mid-write is its before-state."""
    now = _state(spark, lake)
    outcome = {}
    for name in sorted(set(before) | set(now)):
        cur = now.get(name)
        old = before.get(name)
        if cur is None:
            assert old is None, f"{name}: a committed table disappeared"
            outcome[name] = "absent (as before)"
            continue
        assert cur["history"] == list(range(cur["version"] + 1)), f"{name}: history {cur['history']}"
        if old is not None and cur["version"] == old["version"]:
            assert (cur["rows"], cur["digest"]) == (old["rows"], old["digest"]), f"{name}: changed without a commit"
            outcome[name] = f"v{cur['version']} unchanged"
        else:
            expected = (old["version"] + 1) if old is not None else 0
            assert cur["version"] == expected, f"{name}: v{cur['version']}, expected v{expected}"
            ref = after[name]
            assert (cur["rows"], cur["digest"]) == (ref["rows"], ref["digest"]), f"{name}: partial commit"
            outcome[name] = f"v{cur['version']} = uninterrupted result"
    if partial_table is None:
        return outcome
    # the table the kill interrupted: an uncommitted part is on disk, and no reader sees it
    folder = lake / partial_table
    orphans = data_files(folder) - before_files
    old = before.get(partial_table)
    if old is None:
        assert partial_table not in now, f"{partial_table}: committed although killed before its commit"
    else:
        assert now[partial_table]["version"] == old["version"], f"{partial_table}: its commit landed"
    assert orphans, f"{partial_table}: no uncommitted part on disk: the kill did not interrupt a write"
    outcome["_orphan_parts"] = f"{partial_table}: {len(orphans)}"
    return outcome


def _rerun_matches(spark, lake: Path, inp: Path, expected: dict) -> dict:
    summary = _run_in_process(lake, inp)
    assert summary["records_in"] == summary["accepted"] + summary["rejected"]
    got = delta_content(spark, lake)
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for name in expected:
        assert got[name] == expected[name], f"{name}: re-run {got[name]} != uninterrupted {expected[name]}"
    return summary


def _assert_killed_run_ended(rerun: dict) -> None:
    """The killed job could not end its MLflow run; the re-run (same host, the killed pid gone) ended it KILLED."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("pipeline")
    ended = client.search_runs([exp.experiment_id], f"tags.ended_by = '{rerun['mlflow_run_id']}'")
    assert [(r.data.tags["job"], r.info.status) for r in ended] == [("ingest_ctgov", "KILLED")], ended
    assert client.search_runs([exp.experiment_id], "tags.job = 'ingest_ctgov' AND attributes.status = 'RUNNING'") == []


def test_kill_while_creating_the_first_table(batches, reference_a, spark, mlflow_server, tmp_path):
    """Empty lake, first ingest killed while silver/studies' first Parquet part is being written."""
    t0 = time.monotonic()
    lake = tmp_path / "lake"
    report, files, killed_s = _kill_run(lake, batches["A"], "create-first-part", "silver/studies", "part",
                                        mlflow_server)
    outcome = _check_all_or_nothing(spark, lake, {}, reference_a["A"], "silver/studies", files)
    assert [k for k in outcome if not k.startswith("_")] == [], outcome  # nothing committed at all
    _assert_killed_run_ended(_rerun_matches(spark, lake, batches["A"], reference_a["A"]))
    _figures(report.point, report.detail, outcome, killed_s, t0)


KILL_POINTS = [
    # (name, table watched, kind): "part" = kill at its first new uncommitted Parquet part; "commit" =
    # kill as soon as its commit JSON lands, before the next table is touched
    ("merge-parent-part", "silver/studies", "part"),
    ("between-studies-and-conditions", "silver/studies", "commit"),
    ("merge-child-part", "silver/endpoints", "part"),
    ("bronze-part-after-all-silver", "bronze/ctgov_raw", "part"),
    ("rejects-part-after-bronze", "bronze/rejects", "part"),
]


@pytest.mark.parametrize(("point", "table", "kind"), KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
def test_kill_during_incremental_ingest(point, table, kind, batches, reference, spark, mlflow_server, tmp_path):
    """Lake after batch A; batch B's ingest killed at one point; re-run of B = uninterrupted A then B."""
    t0 = time.monotonic()
    lake = tmp_path / "lake"
    shutil.copytree(reference["after_a"], lake)
    before = reference["state_a"]
    report, files, killed_s = _kill_run(lake, batches["B"], point, table, kind, mlflow_server)
    outcome = _check_all_or_nothing(spark, lake, before, reference["AB"], table if kind == "part" else None,
                                    files)
    if kind == "commit":  # the watched table's commit landed whole, and nothing after it did
        assert outcome[table] == f"v{before[table]['version'] + 1} = uninterrupted result", outcome
        changed = [n for n, o in outcome.items() if not n.startswith("_") and "unchanged" not in o]
        assert changed == [table], f"tables committed besides {table}: {changed}"
    _assert_killed_run_ended(_rerun_matches(spark, lake, batches["B"], reference["AB"]))
    _figures(point, report.detail, outcome, killed_s, t0)
