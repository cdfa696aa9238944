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

.PHONY: setup demo test test-fast test-reliability lint mlflow serve bench-ingest bench-ingest-ictrp bench-ingest-pubmed bench-panorama \
	bench-linking bench-pipeline bench-train bench-infer package dist chaos mlflow-auth clean help

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
	@echo "make package    dist/trialpanorama-*.whl and dist/trialpanorama.zip (spark-submit --py-files); make dist = same"

setup: $(VENV)/.installed .cache/ivy/.jars-ok .cache/test-data/.ok

# The install steps live in scripts/setup.sh (infra/docker/Dockerfile runs the same script); the stamps
# below keep `make setup` a no-op once installed. Make decides staleness, so the script runs with --force.
$(VENV)/.installed: pyproject.toml
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/setup.sh --force --step install

.cache/ivy/.jars-ok: $(VENV)/.installed conf/pipeline.yaml
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/setup.sh --force --step jars

.cache/test-data/.ok: $(VENV)/.installed scripts/fetch_test_data.py
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/setup.sh --force --step test-data

demo: setup
	@scripts/demo.sh

# Two pytest workers (pytest-xdist), one test module per worker at a time (--dist loadfile keeps a module's
# fixtures in one process; tests/conftest.py makes the modules sharing one session lake count as one file, and
# collects the slowest modules first). On the 2-core box much of the suite's wall time is JVM, Ray and server
# start-up and subprocess waits, which a second worker overlaps. TEST_WORKERS=0 runs it in one process. The 30
# slowest tests are listed at the end (where the suite's time goes).
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=30

# the reliability suite alone (issue 10: hostile input, SIGKILL crash points, concurrent writers, training and
# benchmark kills, secrets, personal data); make test runs it too
RELIABILITY_TESTS := tests/test_chaos.py tests/test_crash_consistency.py tests/test_concurrent_writers.py \
	tests/test_train_faults.py tests/test_bench_kill.py tests/test_secrets.py tests/test_pii.py
test-reliability: setup
	$(PY) -m pytest -q -s -n $(TEST_WORKERS) --dist loadfile $(RELIABILITY_TESTS)

test-fast: setup
	$(PY) -m pytest -q -m "not heavy" -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(VENV)/bin/ruff check .

mlflow: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts \
		--host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

mlflow-auth: setup  # the shared server: MLflow basic auth; first start needs MLFLOW_AUTH_ADMIN_PASSWORD, every start MLFLOW_FLASK_SERVER_SECRET_KEY (CSRF)
	@test -n "$$MLFLOW_AUTH_ADMIN_PASSWORD" || test -f basic_auth.db || { echo "set MLFLOW_AUTH_ADMIN_PASSWORD"; exit 1; }
	@test -n "$$MLFLOW_FLASK_SERVER_SECRET_KEY" || { echo "set MLFLOW_FLASK_SERVER_SECRET_KEY (the same on every server)"; exit 1; }
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server --app-name basic-auth --backend-store-uri sqlite:///mlflow.db \
		--default-artifact-root ./mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

chaos: setup  # hostile input per source format (conf/chaos.yaml); N=records per format
	nice -n 10 $(PY) jobs/chaos.py --records $${N:-1000} --out $${OUT:-chaos_report.json}

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

# The wheel (pip install on a cluster's nodes or into an image) and the zip that spark-submit --py-files takes
# (--py-files does not take wheels). conf/ is not inside either: jobs get it with --config or the image.
package: setup
	@mkdir -p dist && rm -f dist/trialpanorama.zip dist/trialpanorama-*.whl
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist . && rm -rf build
	cd src && ../$(PY) -c "import shutil; shutil.make_archive('../dist/trialpanorama', 'zip', '.', 'trialpanorama')"
	@ls dist/trialpanorama-*.whl dist/trialpanorama.zip
	@echo "spark-submit --properties-file conf/spark-defaults.conf --py-files dist/trialpanorama.zip jobs/<job>.py (docs/deploy.md)"

dist: package

clean:
	rm -rf dist lakehouse mlflow.db mlartifacts mlruns spark-warehouse .pytest_cache
