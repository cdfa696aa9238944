#!/usr/bin/env bash
# The whole pipeline built so far, on the fixtures shipped in tests/fixtures, into ./lakehouse.
# Each step is one job as a user would run it; its one-line JSON result is printed after its progress.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}"
STEPS=(
  "ingest ClinicalTrials.gov (every API v2 envelope, bad records included)|jobs/ingest_ctgov.py --input tests/fixtures/ctgov"
  "ingest WHO ICTRP exports (63-column CSV, header CSV, portal XML, registry feed XML)|jobs/ingest_ictrp.py --input tests/fixtures/ictrp"
  "ingest PubMed/MEDLINE XML (trial papers, systematic reviews, deletions)|jobs/ingest_pubmed.py --input tests/fixtures/pubmed"
  "import the published TrialPanorama database (parquet)|jobs/import_panorama.py --input tests/fixtures/panorama"
  "unify trials across registries|jobs/unify_trials.py"
  "relations: trial -> publication, review -> publication|jobs/build_relations.py"
  "vocabularies: MeSH, drugs, ICD-10 (packaged real data)|jobs/load_vocabularies.py"
  "link conditions to MeSH, drugs to DrugBank/MeSH|jobs/link_ontologies.py"
  "linking precision/recall against NLM's own MeSH mapping|jobs/evaluate_linking.py --format table"
)
quiet() { grep -v -E '^(WARNING|Using Spark|Setting default log level|To adjust logging level|.* WARN |.* INFO |\s*$)' || true; }

n=${#STEPS[@]}; i=0; t0=$SECONDS
for step in "${STEPS[@]}"; do
  i=$((i + 1))
  printf '\n== %d/%d %s\n' "$i" "$n" "${step%%|*}"
  # shellcheck disable=SC2086
  $PY ${step#*|} 2>&1 | quiet
done

printf '\n== the lake\n'
$PY jobs/lake_stats.py --format table 2>&1 >/dev/null | quiet

cat <<MSG

Done in $((SECONDS - t0)) s. Open the MLflow UI (experiment "pipeline": one run per job, with the Delta
version of every table it wrote) with:
    make mlflow        # then browse http://127.0.0.1:5000
Lake: ./lakehouse      (.venv/bin/python jobs/lake_stats.py --format table)
MSG
