#!/usr/bin/env bash
# The whole pipeline built so far, end to end, into ./lakehouse: a generated registry world in the real source
# formats (jobs/generate_world.py, deterministic for its seed) -> ingest -> unify -> relations -> linking ->
# task sets -> Ray Train fine-tuning of a tiny model -> Ray Data benchmark and leaderboard.
# Each job runs as a user would run it (the Spark ones as steps of jobs/run_pipeline.py); its one-line JSON result
# is printed after its progress.
# DEMO_TRIALS (default 1000) sizes the world; re-running on the same world changes no table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}"  # absolute: Ray workers run elsewhere
export RAY_DATA_DISABLE_PROGRESS_BARS=1  # a bar per dataset, redrawn into a log, buries the steps' own progress
WORLD=.cache/demo-world
TRIALS=${DEMO_TRIALS:-1000}
# The real ratio (8K reviews over 1.6M trials, conf/synth.yaml: 6 per 1,000) gives a 1,000-trial world 6 reviews:
# too few for the three review tasks to have a test set and a training set, so the demo world has 5x more.
REVIEWS=${DEMO_REVIEWS_PER_1000:-30}
RUN_ID="demo-$(date -u +%Y%m%d-%H%M%S)"
quiet() { grep --line-buffered -v -E '^(WARNING|Using Spark|Setting default log level|To adjust logging level|.* WARN |.* INFO |\s*$)' || true; }

n=5; i=0; t0=$SECONDS
step() {  # step TITLE SCRIPT ARGS...: one numbered step of the demo, its output filtered of Spark/Ray chatter
  local title=$1; shift
  i=$((i + 1))
  printf '\n== %d/%d %s  [%d s]\n' "$i" "$n" "$title" "$((SECONDS - t0))"
  $PY "$@" 2>&1 | quiet
}

rm -rf "$WORLD"   # the generator writes into an empty folder; the same seed writes byte-identical files
step "generate a registry world: $TRIALS trials (CT.gov bulk zip, ICTRP CSV+XML, PubMed XML.gz, MeSH XML, DrugBank CSV)" \
  jobs/generate_world.py --records "$TRIALS" --seed 7 --out "$WORLD" --workers 2 \
  --set "publications.reviews_per_1000_trials=$REVIEWS"
# The Spark jobs run as the steps of one jobs/run_pipeline.py: one JVM and Delta start instead of fourteen (about
# 15 s each here); each step is still its own job, with its own MLflow run and JSON line. Set here, after the
# world exists, because the DrugBank file name is globbed (and shell-quoted: it holds a space, and each step is
# split into words as a shell would).
LAKE_STEPS=(
  "ingest_ctgov --input $WORLD/ctgov"
  "ingest_ictrp --input $WORLD/ictrp"
  "ingest_pubmed --input $WORLD/pubmed"
  "import_panorama --input tests/fixtures/panorama"
  "unify_trials"
  "build_relations"
  "load_vocabularies --mesh-xml $WORLD/vocab/desc2025.xml --drugbank-csv $(printf '%q ' "$WORLD"/vocab/drugbank*.csv) --no-mesh-tree"
  "link_ontologies"
  "evaluate_linking --format table"
  "build_search_index"
  "build_tasks"
  "check_leakage"
  "export_tasks --out exports"
  "lake_stats --format table"
)
pipeline=()
for s in "${LAKE_STEPS[@]}"; do pipeline+=(--step "$s"); done
step "the lake: ingest 4 sources, unify, relations, vocabularies, linking (+ its evaluation), literature index, the eight task tables, leakage check, exports, lake stats (${#LAKE_STEPS[@]} Spark jobs in one session)" \
  jobs/run_pipeline.py "${pipeline[@]}"
step "tiny Llama model + BPE tokenizer trained on the task corpus" ray_apps/build_tiny_model.py --config conf/train/tiny-cpu.yaml
step "fine-tune it with Ray Train (2 CPU workers, two SFT stages)" \
  ray_apps/finetune.py --config conf/train/tiny-cpu.yaml --set stages.stage1.max_steps=120 --set stages.stage2.max_steps=60
step "benchmark untrained vs fine-tuned on the eight test sets (Ray Data, hf backend) + leaderboard" \
  ray_apps/benchmark.py --config conf/bench/tiny-cpu.yaml --set "run_id=$RUN_ID" --leaderboard

cat <<MSG

Done in $((SECONDS - t0)) s.
  MLflow UI:    make mlflow   then browse http://127.0.0.1:5000  (experiments "pipeline", "finetune",
                "benchmark": every run with the Delta versions it read and wrote)
  Leaderboard:  bench_out/$RUN_ID/leaderboard.md  and  bench_out/$RUN_ID/leaderboard.png
  Lake:         ./lakehouse   (.venv/bin/python jobs/lake_stats.py --format table)
  Exports:      ./exports     (chat JSONL, <task>/{train,test}.jsonl, alpaca JSON)
MSG
