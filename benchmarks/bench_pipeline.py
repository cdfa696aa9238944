"""End-to-end pipeline benchmark on generated worlds: generation, ingest, unify, vocabularies, linking; plus a
DuckDB baseline for the ClinicalTrials.gov ingest on the same files.

    python benchmarks/bench_pipeline.py                       # sizes 16000 and 160000
    python benchmarks/bench_pipeline.py --sizes 16000 --set spark.master=local[2]
    python benchmarks/bench_pipeline.py --sizes 160000 1600000 --workers 16 --workdir /data/bench   # by hand
    # 1.6M on a small machine, a few stages per sitting, on the same world and lake:
    python benchmarks/bench_pipeline.py --sizes 1600000 --workdir /data/bench --keep --reuse-world \\
        --stages generate ingest_ctgov duckdb --out /data/bench/n1600000-a.json
    python benchmarks/bench_pipeline.py --sizes 1600000 --workdir /data/bench --keep --reuse-world \\
        --stages ingest_ictrp ingest_pubmed --out /data/bench/n1600000-b.json

Every stage is the real job run as a subprocess (``python jobs/X.py``), timed by wall clock, with the peak
RSS and the CPU seconds of its whole process tree (the Python driver and its JVM) sampled with psutil every
0.2 s; each finished stage is also written to WORKDIR/nN/partial.json. Records/s is the stage's input
records over its wall time (JVM start-up included, as a user sees it). With several sizes the table adds
time(largest)/time(previous size) per stage: ~10 for a 10x size step means linear.

The DuckDB baseline (run right after the Spark ctgov ingest) unpacks the bulk zip(s) to a folder (timed
apart: DuckDB has no zip reader built in), reads every member with ``read_json`` (``newline_delimited``
with ``ignore_errors``: each generated member is one line, and that is the only mode in which DuckDB skips
the planted truncated records instead of failing) and builds a ``studies`` table with the same core columns
as the Spark silver ``studies`` (id, titles, type, phase, status, why_stopped, dates, enrollment, sponsor,
results flag, countries). Spark's ingest does more (bronze, eleven silver tables, rejects, Delta commits,
MLflow), so the ratio is an upper bound of what the extra work costs, not a like-for-like engine race.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


class Sampler:
    """Peak RSS (bytes) of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self.peak = pid, interval, 0
        self.cpu: dict[int, float] = {}  # pid -> last seen user+system seconds (the tree's CPU time)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_stage(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run one job; returns wall seconds, peak RSS and the job's JSON line (its last stdout line)."""
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        sampler = Sampler(proc.pid)
        out, _ = proc.communicate()
        peak = sampler.stop()
    seconds = time.monotonic() - t0
    cpu = sum(sampler.cpu.values())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc={proc.returncode}); see {log}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mb": round(peak / 2**20),
        # The 1-minute load average around the stage: on a shared machine wall time is only comparable
        # between runs at similar load (CPU seconds much less depend on it).
        "load_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "result": json.loads(lines[-1]),
    }


def duckdb_studies(zips: list[Path], work: Path, threads: int) -> dict[str, Any]:
    """Unpack the bulk zips, then build a DuckDB ``studies`` table from the JSON members."""
    import duckdb

    unpacked = work / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    t0 = time.monotonic()
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            zf.extractall(unpacked)
    unpack_s = time.monotonic() - t0
    db = work / "studies.duckdb"
    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    con.execute(f"SET threads = {threads}")
    con.execute("SET enable_progress_bar = false")
    t1, c1 = time.monotonic(), time.process_time()
    p = "protocolSection"
    con.execute(f"""
        CREATE TABLE studies AS
        WITH raw AS (
            SELECT * FROM read_json('{unpacked}/*/*.json', format = 'newline_delimited', ignore_errors = true,
                                    columns = {{'{p}': 'JSON', 'derivedSection': 'JSON', 'hasResults': 'BOOLEAN'}},
                                    maximum_object_size = 268435456)
        )
        SELECT
            upper(trim({p}->>'$.identificationModule.nctId')) AS study_id,
            {p}->>'$.identificationModule.orgStudyIdInfo.id' AS org_study_id,
            {p}->>'$.identificationModule.briefTitle' AS title,
            {p}->>'$.identificationModule.officialTitle' AS official_title,
            {p}->>'$.identificationModule.acronym' AS acronym,
            {p}->>'$.designModule.studyType' AS study_type,
            array_to_string(list_sort(CAST({p}->'$.designModule.phases' AS VARCHAR[])), '/') AS phase,
            {p}->>'$.statusModule.overallStatus' AS recruitment_status,
            {p}->>'$.statusModule.whyStopped' AS why_stopped,
            TRY_CAST(CASE WHEN length({p}->>'$.statusModule.startDateStruct.date') = 7
                          THEN ({p}->>'$.statusModule.startDateStruct.date') || '-01'
                          ELSE {p}->>'$.statusModule.startDateStruct.date' END AS DATE) AS start_date,
            TRY_CAST(({p}->>'$.statusModule.completionDateStruct.date') || '-01' AS DATE) AS completion_date,
            TRY_CAST({p}->>'$.designModule.enrollmentInfo.count' AS INTEGER) AS enrollment,
            {p}->>'$.designModule.enrollmentInfo.type' AS enrollment_type,
            {p}->>'$.sponsorCollaboratorsModule.leadSponsor.name' AS sponsor,
            {p}->>'$.sponsorCollaboratorsModule.leadSponsor.class' AS sponsor_class,
            hasResults AS has_results,
            list_sort(list_distinct(CAST({p}->'$.contactsLocationsModule.locations[*].country' AS VARCHAR[])))
                AS countries
        FROM raw
        WHERE regexp_matches(upper(trim({p}->>'$.identificationModule.nctId')), '^NCT\\d{{8}}$')
    """)
    rows = con.execute("SELECT count(*) FROM studies").fetchone()[0]
    build_s, build_cpu = time.monotonic() - t1, time.process_time() - c1
    con.close()
    shutil.rmtree(unpacked, ignore_errors=True)
    return {
        "unpack_seconds": round(unpack_s, 2),
        "build_seconds": round(build_s, 2),
        "build_cpu_seconds": round(build_cpu, 1),
        "studies": rows,
    }


STAGES = ("generate", "ingest_ctgov", "duckdb", "ingest_ictrp", "ingest_pubmed", "unify_trials",
          "load_vocabularies", "link_ontologies")


def bench_size(n: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    work = Path(args.workdir) / f"n{n}"
    world, lake_dir, logs = work / "world", work / "lake", work / "logs"
    reuse = args.reuse_world and (world / "manifest.json").exists()
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    wanted = set(args.stages)
    sets = [x for s in args.set for x in ("--set", s)]
    stages: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}  # the DuckDB baseline, kept in partial.json too (a long run may be stopped)

    def stage(name: str, cmd: list[str], records: int | None = None) -> None:
        if name not in wanted:
            return
        print(f"[{n}] {name} ...", file=sys.stderr, flush=True)
        r = run_stage(cmd, env, logs / f"{name}.log")
        res = r.pop("result")
        recs = records if records is not None else res.get("records_in")
        if recs is None and isinstance(res.get("vocab_rows"), dict):
            recs = sum(v for v in res["vocab_rows"].values() if isinstance(v, int))
        r["records"] = recs or None
        r["records_per_s"] = round(recs / r["seconds"], 1) if recs else None
        r["summary"] = {
            k: res[k] for k in ("records_in", "accepted", "rejected", "rejected_by_reason") if k in res
        }
        stages[name] = r
        (work / "partial.json").write_text(json.dumps({"trials": n, "stages": stages, **extra}, indent=2) + "\n")
        print(
            f"[{n}] {name}: {r['seconds']} s, {r['records_per_s']} rec/s, peak {r['peak_rss_mb']} MB",
            file=sys.stderr,
            flush=True,
        )

    gen = [
        PY,
        "jobs/generate_world.py",
        "--records",
        str(n),
        "--seed",
        str(args.seed),
        "--out",
        str(world),
        "--workers",
        str(args.workers),
        "--no-progress",
    ]
    if reuse:  # a world generated by an earlier run (a 1.6M run may be done stage by stage)
        print(f"[{n}] reusing {world}", file=sys.stderr, flush=True)
        manifest = json.loads((world / "manifest.json").read_text())
    else:
        print(f"[{n}] generate ...", file=sys.stderr, flush=True)
        g = run_stage(gen, env, logs / "generate.log")
        manifest = g.pop("result")
    c = manifest["counts"]
    if not reuse:
        total = c["ctgov_records"] + c["ictrp_csv_records"] + c["ictrp_xml_records"] + c["pubmed_articles"]
        stages["generate"] = {
            **g,
            "records": total,
            "records_per_s": round(total / g["seconds"], 1),
            "trials_per_s": round(n / g["seconds"], 1),
            "bytes": manifest["bytes"],
        }
    job = [PY]
    stage(
        "ingest_ctgov",
        job + ["jobs/ingest_ctgov.py", "--lake", str(lake_dir), "--input", str(world / "ctgov"), *sets],
    )
    # The DuckDB baseline right after the Spark ctgov ingest it is compared with.
    zips = sorted((world / "ctgov").glob("*.zip"))
    duck = None
    if not args.no_duckdb and "duckdb" in wanted:
        print(f"[{n}] duckdb ...", file=sys.stderr, flush=True)
        duck = duckdb_studies(zips, work, args.duckdb_threads)
        if "ingest_ctgov" in stages:  # the ratio needs the Spark ingest of the same run
            spark_s = stages["ingest_ctgov"]["seconds"]
            duck["spark_over_duckdb"] = round(spark_s / max(duck["build_seconds"], 1e-9), 1)
            duck["spark_over_duckdb_cpu"] = round(
                stages["ingest_ctgov"]["cpu_seconds"] / max(duck["build_cpu_seconds"], 1e-9), 1
            )
            duck["spark_over_duckdb_with_unpack"] = round(
                spark_s / max(duck["build_seconds"] + duck["unpack_seconds"], 1e-9), 1
            )
        extra["duckdb"] = duck
        (work / "partial.json").write_text(json.dumps({"trials": n, "stages": stages, **extra}, indent=2) + "\n")
    stage(
        "ingest_ictrp",
        job + ["jobs/ingest_ictrp.py", "--lake", str(lake_dir), "--input", str(world / "ictrp"), *sets],
    )
    stage(
        "ingest_pubmed",
        job + ["jobs/ingest_pubmed.py", "--lake", str(lake_dir), "--input", str(world / "pubmed"), *sets],
    )
    # unify and linking rates count the registry studies; unknown when their ingests ran in an earlier run
    studies = (
        stages["ingest_ctgov"]["summary"].get("accepted", 0) + stages["ingest_ictrp"]["summary"].get("accepted", 0)
        if {"ingest_ctgov", "ingest_ictrp"} <= stages.keys()
        else 0
    )
    stage("unify_trials", job + ["jobs/unify_trials.py", "--lake", str(lake_dir), *sets], records=studies)
    stage(
        "load_vocabularies",
        job
        + [
            "jobs/load_vocabularies.py",
            "--lake",
            str(lake_dir),
            "--mesh-xml",
            str(world / "vocab" / "desc2025.xml"),
            "--drugbank-csv",
            str(world / "vocab" / "drugbank vocabulary.csv"),
            "--no-mesh-tree",
            *sets,
        ],
    )
    stage(
        "link_ontologies", job + ["jobs/link_ontologies.py", "--lake", str(lake_dir), *sets], records=studies
    )
    if not args.keep:
        shutil.rmtree(world, ignore_errors=True)
        shutil.rmtree(lake_dir, ignore_errors=True)
    return {
        "trials": n,
        "counts": c,
        "ctgov_record_bytes": manifest["ctgov_record_bytes"],
        "stages": stages,
        "duckdb": duck,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    names = [s for s in STAGES if any(s in r["stages"] for r in results)]  # sizes may have run other stages
    head = f"{'stage':<18}" + "".join(f"{'n=' + str(r['trials']):>50}" for r in results)
    if len(results) > 1:
        head += f"{'t(last)/t(prev)':>17}"
    print(head)
    print(f"{'':<18}" + "".join(f"{'seconds   rec/s   cpu_s  peakMB  load1m':>50}" for _ in results))
    for s in names:
        row = f"{s:<18}"
        for r in results:
            st = r["stages"].get(s)
            if st is None:
                row += f"{'not run':>50}"
                continue
            rate = st.get("records_per_s") or 0
            load = st.get("load_1m") or [0, 0]
            row += (
                f"{st['seconds']:>17.1f}{rate:>8.0f}{st.get('cpu_seconds', 0):>8.1f}{st['peak_rss_mb']:>9d}"
                f"{max(load):>8.1f}"
            )
        last, prev = (results[-1]["stages"].get(s), results[-2]["stages"].get(s)) if len(results) > 1 else (None, None)
        if last and prev:
            row += f"{last['seconds'] / max(prev['seconds'], 1e-9):>17.2f}"
        print(row)
    for r in results:
        d = r["duckdb"]
        if d:
            ratio = (
                f"; Spark ingest_ctgov / DuckDB = {d['spark_over_duckdb']}x ({d['spark_over_duckdb_with_unpack']}x "
                f"counting the unpack; CPU-time ratio {d.get('spark_over_duckdb_cpu')}x)"
                if "spark_over_duckdb" in d
                else " (no Spark ingest_ctgov in this run to compare with)"
            )
            print(
                f"n={r['trials']}: DuckDB studies {d['studies']} rows in {d['build_seconds']} s (+ unpack "
                f"{d['unpack_seconds']} s){ratio}"
            )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[16000, 160000], help="world sizes (trials)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="generator processes")
    p.add_argument("--workdir", default="/tmp/trialpanorama-bench")
    p.add_argument("--out", default=None, help="JSON results (default: WORKDIR/bench_pipeline.json)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every Spark job"
    )
    p.add_argument("--duckdb-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--no-duckdb", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep each size's world and lake")
    p.add_argument(
        "--stages", nargs="+", default=list(STAGES), choices=STAGES, metavar="STAGE",
        help=f"run only these ({' '.join(STAGES)}); a stage needs the lake its predecessors wrote",
    )
    p.add_argument(
        "--reuse-world", action="store_true",
        help="keep WORKDIR/nN (world and lake) when its world is complete, instead of starting afresh",
    )
    args = p.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(args.workdir).resolve() / 'mlflow.db'}")
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    results = []
    for n in args.sizes:
        results.append(bench_size(n, args, env))
        out = Path(args.out or Path(args.workdir) / "bench_pipeline.json")
        out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"results: {out}")
    return results


if __name__ == "__main__":
    main()
