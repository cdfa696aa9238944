#!/usr/bin/env bash
# The whole pipeline built so far, on the fixtures shipped in tests/fixtures, into ./lakehouse.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}"
step() { printf '\n== %s\n' "$*"; }
quiet() { grep -v -E '^(WARNING|Using Spark|Setting default log level|To adjust logging level|.* WARN |.* INFO )' || true; }

step "1/2 ingest ClinicalTrials.gov fixtures (every API v2 envelope, bad records included)"
$PY jobs/ingest_ctgov.py --input tests/fixtures/ctgov 2>&1 | quiet

step "2/2 the lake's tables"
$PY jobs/lake_stats.py --format table 2>&1 >/dev/null | quiet

cat <<MSG

Done. Open the MLflow UI (experiment "pipeline") with:
    make mlflow        # then browse http://127.0.0.1:5000
Lake: ./lakehouse  (python jobs/lake_stats.py --lake ./lakehouse)
MSG
