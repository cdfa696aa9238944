"""Run several jobs one after the other in one process and one Spark session (one spark-submit application).

    python jobs/run_pipeline.py --lake ./lakehouse --step "ingest_ctgov --input dumps/ctgov" --step unify_trials
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/run_pipeline.py --step ... --step ...

Each --step is a job of this folder with its own flags; --lake, --config and --set go to every step. Every step
is its own MLflow run and prints its own JSON line, as if run alone; the JVM and Delta start (about 15 s a job
on a laptop, a driver allocation on a cluster) is paid once. The first failing step stops the run (exit 1).
"""

import argparse
import json
import time
from pathlib import Path

from trialpanorama.jobrun import main_guard, run_steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="run_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--step", action="append", required=True, metavar='"JOB [FLAGS]"',
                        help="a job of jobs/ and its own flags, in quotes; repeat in run order")
    parser.add_argument("--config", default=None, help="pipeline YAML for every step")
    parser.add_argument("--lake", default=None, help="lake root URI for every step")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every step")
    args = parser.parse_args(argv)
    common = (["--config", args.config] if args.config else []) + (["--lake", args.lake] if args.lake else [])
    for item in args.overrides:
        common += ["--set", item]
    started = time.monotonic()
    results = run_steps(Path(__file__).resolve().parent, args.step, common)
    summary = {"job": "run_pipeline", "steps": [{"job": r.get("job"), "seconds": r.get("seconds"),
                                                 "mlflow_run_id": r.get("mlflow_run_id")} for r in results],
               "seconds": round(time.monotonic() - started, 2)}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main_guard(main)
