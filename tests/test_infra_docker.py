"""infra/docker: the one image for Spark and Ray. No container engine runs here, so the Dockerfile is linted
(hadolint), checked to install through scripts/setup.sh on Java 17, and its entrypoint's Spark-on-Kubernetes
commands are checked against the installed Spark."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pyspark

from trialpanorama.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
ENTRYPOINT = ROOT / "infra" / "docker" / "entrypoint.sh"


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    assert found, f"{name} not installed: it is in the [dev] extras (make setup)"
    return found


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes():
    out = subprocess.run([_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_bites(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    out = subprocess.run([_tool("hadolint"), str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "DL3007" in out.stdout


def test_installs_through_setup_script_on_java17():
    ins = _instructions()
    runs = [args for word, args in ins if word == "RUN"]
    setup_runs = [r for r in runs if "scripts/setup.sh" in r]
    assert len(setup_runs) == 2
    assert "--no-venv" in setup_runs[0] and "--no-dev" in setup_runs[0]
    assert "--step jars" in setup_runs[1] and '--link-jars "$SPARK_HOME/jars"' in setup_runs[1]
    # No second install path that could drift from make setup.
    assert not [r for r in runs if re.search(r"pip3? install", r)]
    java = load_config().get("spark.java_version")
    assert any(f"openjdk-{java}-jre-headless" in r for r in runs)
    env = " ".join(args for word, args in ins if word == "ENV")
    assert f"JAVA_HOME=/usr/lib/jvm/java-{java}" in env and "SPARK_HOME=/opt/spark" in env
    base = next(args for word, args in ins if word == "FROM")
    assert re.fullmatch(r"python:3\.(1[0-2])-slim-\w+", base), base  # within requires-python
    assert ("USER", "1000") in ins
    assert "--chown=1000:1000 . ." in " ".join(a for w, a in ins if w == "COPY")


def test_dockerignore_keeps_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".cache", ".git", "lakehouse", "mlflow.db", "dist"} <= ignored


def test_entrypoint_shellcheck():
    out = subprocess.run([_tool("shellcheck"), str(ENTRYPOINT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def _entry(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], "ENTRYPOINT_DRY_RUN": "1", **env})


def test_entrypoint_spark_driver_and_executor_commands():
    driver = _entry(["driver", "--properties-file", "/opt/spark/conf/spark.properties", "local:///a.py"],
                    SPARK_DRIVER_BIND_ADDRESS="10.1.2.3")
    assert driver.returncode == 0, driver.stderr
    assert driver.stdout.split() == [
        "/opt/spark/bin/spark-submit", "--conf", "spark.driver.bindAddress=10.1.2.3",
        "--conf", "spark.executorEnv.SPARK_DRIVER_POD_IP=10.1.2.3", "--deploy-mode", "client",
        "--properties-file", "/opt/spark/conf/spark.properties", "local:///a.py"]
    executor = _entry(["executor"], SPARK_EXECUTOR_MEMORY="4g", SPARK_DRIVER_URL="spark://d:7078",
                      SPARK_EXECUTOR_ID="3", SPARK_EXECUTOR_CORES="2", SPARK_APPLICATION_ID="spark-1",
                      SPARK_EXECUTOR_POD_IP="10.0.0.9", SPARK_EXECUTOR_POD_NAME="p-exec-3",
                      SPARK_JAVA_OPT_1="-Dsecond", SPARK_JAVA_OPT_0="-Dfirst")
    assert executor.returncode == 0, executor.stderr
    words = executor.stdout.split()
    assert words[:5] == ["/usr/lib/jvm/java-17/bin/java", "-Dfirst", "-Dsecond", "-Xms4g", "-Xmx4g"]
    backend = "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    assert words[words.index("-cp") + 1] == "/opt/spark/jars/*" and backend in words
    assert words[words.index("--executor-id") + 1] == "3" and words[words.index("--hostname") + 1] == "10.0.0.9"
    # A missing variable the scheduler must set is an error, not an executor started with an empty flag.
    assert _entry(["executor"], SPARK_EXECUTOR_MEMORY="4g").returncode != 0
    # The class exists in the Spark the image installs (pip's pyspark ships the kubernetes module).
    (k8s_jar,) = (Path(pyspark.__file__).parent / "jars").glob("spark-kubernetes_*.jar")
    assert backend.replace(".", "/") + ".class" in zipfile.ZipFile(k8s_jar).namelist()


def test_entrypoint_runs_other_commands_as_given():
    out = _entry(["mlflow", "server", "--app-name", "basic-auth"])
    assert out.returncode == 0 and out.stdout.strip() == "mlflow server --app-name basic-auth"
