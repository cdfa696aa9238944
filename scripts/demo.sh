#!/usr/bin/env bash
# The whole pipeline built so far, end to end, into ./lakehouse: a generated registry world in the real source
# formats (jobs/generate_world.py, deterministic for its seed) -> ingest -> unify -> relations -> linking ->
# task sets -> Ray Train fine-tuning of a tiny model -> Ray Data benchmark and leaderboard.
# Each step is one job as a user would run it; its one-line JSON result is printed after its progress.
# DEMO_TRIALS (default 1000) sizes the world; re-running on the same world changes no table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}"  # absolute: Ray workers run elsewhere
WORLD=.cache/demo-world
TRIALS=${DEMO_TRIALS:-1000}
# The real ratio (8K reviews over 1.6M trials, conf/synth.yaml: 6 per 1,000) gives a 1,000-trial world 6 reviews:
# too few for the three review tasks to have a test set and a training set, so the demo world has 5x more.
REVIEWS=${DEMO_REVIEWS_PER_1000:-30}
RUN_ID="demo-$(date -u +%Y%m%d-%H%M%S)"
STEPS=(
  "generate a registry world: $TRIALS trials (CT.gov bulk zip, ICTRP CSV+XML, PubMed XML.gz, MeSH XML, DrugBank CSV)|jobs/generate_world.py --records $TRIALS --seed 7 --out $WORLD --workers 2 --set publications.reviews_per_1000_trials=$REVIEWS"
  "ingest ClinicalTrials.gov (bulk ctg-studies.json.zip, planted bad records included)|jobs/ingest_ctgov.py --input $WORLD/ctgov"
  "ingest WHO ICTRP exports (63-column CSV, portal XML)|jobs/ingest_ictrp.py --input $WORLD/ictrp"
  "ingest PubMed/MEDLINE XML (trial papers, systematic reviews)|jobs/ingest_pubmed.py --input $WORLD/pubmed"
  "import the published TrialPanorama database (parquet fixtures)|jobs/import_panorama.py --input tests/fixtures/panorama"
  "unify trials across registries|jobs/unify_trials.py"
  "relations: trial -> publication, review -> publication|jobs/build_relations.py"
  "vocabularies: the world's MeSH XML and DrugBank CSV, WHO ICD-10 / ICD-10-CM|jobs/load_vocabularies.py --mesh-xml $WORLD/vocab/desc2025.xml --drugbank-csv $WORLD/vocab/drugbank*.csv --no-mesh-tree"
  "link conditions to MeSH, drugs to DrugBank/MeSH|jobs/link_ontologies.py"
  "linking precision/recall against NLM-style derived MeSH|jobs/evaluate_linking.py --format table"
  "literature index (tantivy) over the publications|jobs/build_search_index.py"
  "the eight task tables: leak-free splits, content hashes, baselines|jobs/build_tasks.py"
  "leakage check: no test trial or paper in any training sample|jobs/check_leakage.py"
  "exports: chat JSONL, the study's layout, LLaMA-Factory alpaca|jobs/export_tasks.py --out exports"
  "tiny Llama model + BPE tokenizer trained on the task corpus|ray_apps/build_tiny_model.py --config conf/train/tiny-cpu.yaml"
  "fine-tune it with Ray Train (2 CPU workers, two SFT stages)|ray_apps/finetune.py --config conf/train/tiny-cpu.yaml --set stages.stage1.max_steps=120 --set stages.stage2.max_steps=40"
  "benchmark untrained vs fine-tuned on the eight test sets (Ray Data, hf backend) + leaderboard|ray_apps/benchmark.py --config conf/bench/tiny-cpu.yaml --set run_id=$RUN_ID --leaderboard"
)
quiet() { grep -v -E '^(WARNING|Using Spark|Setting default log level|To adjust logging level|.* WARN |.* INFO |\s*$)' || true; }

rm -rf "$WORLD"   # the generator writes into an empty folder; the same seed writes byte-identical files
n=${#STEPS[@]}; i=0; t0=$SECONDS
for step in "${STEPS[@]}"; do
  i=$((i + 1))
  printf '\n== %d/%d %s  [%d s]\n' "$i" "$n" "${step%%|*}" "$((SECONDS - t0))"
  # shellcheck disable=SC2086
  $PY ${step#*|} 2>&1 | quiet
done

printf '\n== the lake\n'
$PY jobs/lake_stats.py --format table 2>&1 >/dev/null | quiet

cat <<MSG

Done in $((SECONDS - t0)) s.
  MLflow UI:    make mlflow   then browse http://127.0.0.1:5000  (experiments "pipeline", "finetune",
                "benchmark": every run with the Delta versions it read and wrote)
  Leaderboard:  bench_out/$RUN_ID/leaderboard.md  and  bench_out/$RUN_ID/leaderboard.png
  Lake:         ./lakehouse   (.venv/bin/python jobs/lake_stats.py --format table)
  Exports:      ./exports     (chat JSONL, <task>/{train,test}.jsonl, alpaca JSON)
MSG
