"""Packaging and installation: `make package`, conf/spark-defaults.conf, scripts/setup.sh (the one install
script that `make setup` and the image share)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from trialpanorama import jars
from trialpanorama.config import load_config
from trialpanorama.lake import DELTA_CONF

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"
sys.path.insert(0, str(ROOT / "scripts"))
from render_k8s import read_spark_defaults  # noqa: E402


def _tool(name: str) -> str:
    """A dev-extras binary: beside the venv's python first, else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    assert found, f"{name} not installed: it is in the [dev] extras (make setup)"
    return found


def test_spark_defaults_agree_with_the_code():
    conf = read_spark_defaults()
    assert {k: conf[k] for k in DELTA_CONF} == DELTA_CONF
    # The coordinate the library itself resolves for conf/pipeline.yaml and the installed pyspark/delta-spark.
    assert conf["spark.jars.packages"].split(",") == jars.delta_packages(load_config())
    assert conf["spark.sql.session.timeZone"] == load_config().get("spark.conf")["spark.sql.session.timeZone"]


def test_read_spark_defaults_parses_spark_format(tmp_path):
    f = tmp_path / "spark-defaults.conf"
    f.write_text("# comment\n\nspark.a   1\nspark.b\tx y\n")
    assert read_spark_defaults(f) == {"spark.a": "1", "spark.b": "x y"}


@pytest.mark.heavy
def test_make_package_builds_wheel_and_importable_zip():
    out = subprocess.run(["make", "package"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (ROOT / "dist").glob("trialpanorama-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"trialpanorama/lake.py", "trialpanorama/jobrun.py", "trialpanorama/py.typed"} <= set(names)
    assert not (ROOT / "build").exists(), "make package leaves no build/ folder"
    zpath = ROOT / "dist" / "trialpanorama.zip"
    assert "trialpanorama/sources/ctgov.py" in zipfile.ZipFile(zpath).namelist()
    # What --py-files does: the zip first on sys.path; the code must import from it.
    code = f"import sys; sys.path.insert(0, {str(zpath)!r}); import trialpanorama.jobrun as j; print(j.__file__)"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith(str(zpath))
    # `make dist` stays an alias of `make package`.
    assert "pip wheel" in subprocess.run(["make", "-n", "dist"], cwd=ROOT, capture_output=True, text=True).stdout


def test_setup_script_passes_shellcheck():
    out = subprocess.run([_tool("shellcheck"), str(SETUP)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def _dry(*args: str, env: dict | None = None, cwd: Path = ROOT) -> list[str]:
    out = subprocess.run(["bash", str(cwd / "scripts" / "setup.sh"), "--dry-run", *args], cwd=cwd,
                         capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_setup_dry_run_lists_the_install_steps():
    lines = _dry("--force", env={"VENV": "/tmp/tp-no-such-venv", "PYTHON": "python3"})
    cmds = [line for line in lines if line.startswith("+ ")]
    assert cmds[0] == "+ python3 -m venv /tmp/tp-no-such-venv"
    assert "+ /tmp/tp-no-such-venv/bin/python -m pip install -q -e .[dev]" in cmds
    assert "+ /tmp/tp-no-such-venv/bin/python -m trialpanorama.jars" in cmds
    assert "+ /tmp/tp-no-such-venv/bin/python scripts/fetch_test_data.py" in cmds
    # The image's flavour: no venv, no dev extras, extra packages, no test data.
    image = [c for c in _dry("--force", "--no-venv", "--no-dev", "--no-test-data", "--with", "a==1 b==2",
                             env={"PYTHON": "python3"}) if c.startswith("+ ")]
    assert "+ python3 -m pip install -q -e ." in image and "+ python3 -m pip install -q a==1 b==2" in image
    assert not [c for c in image if "venv" in c or "[dev]" in c or "fetch_test_data" in c]


def test_setup_is_idempotent_by_stamps(tmp_path):
    """In a copy of the files it reads: fresh stamps -> nothing to do; a newer pyproject -> reinstall."""
    for rel in ("scripts/setup.sh", "scripts/find_java17.sh", "scripts/fetch_test_data.py", "pyproject.toml",
                "conf/pipeline.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    now = time.time()
    for i, stamp in enumerate((venv / ".installed", tmp_path / ".cache/ivy/.jars-ok",
                               tmp_path / ".cache/test-data/.ok")):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        os.utime(stamp, (now + 10 + i, now + 10 + i))  # made in this order, each after its sources
    lines = _dry(cwd=tmp_path)
    assert not [line for line in lines if line.startswith("+ ")], lines
    os.utime(tmp_path / "pyproject.toml", (now + 20, now + 20))
    cmds = [line for line in _dry(cwd=tmp_path) if line.startswith("+ ")]
    assert any("pip install -q -e .[dev]" in c for c in cmds)
    assert any("trialpanorama.jars" in c for c in cmds), "jars depend on the install"


def test_make_setup_runs_the_script():
    # -W: pretend pyproject.toml changed; -n: print, run nothing.
    out = subprocess.run(["make", "-n", "-W", "pyproject.toml", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for step in ("install", "jars", "test-data"):
        assert f"scripts/setup.sh --force --step {step}" in out.stdout
    assert "pip install" not in out.stdout, "the install commands live in scripts/setup.sh only"


@pytest.mark.heavy
def test_jars_the_image_links_are_enough_for_delta(tmp_path):
    """setup.sh --link-jars into a copy of Spark's jars folder adds only what Spark lacks; a Spark session
    with exactly those extra jars writes and reads a Delta table."""
    import pyspark

    spark_jars = Path(pyspark.__file__).parent / "jars"
    target = tmp_path / "jars"
    target.mkdir()
    for jar in spark_jars.glob("*.jar"):
        (target / jar.name).symlink_to(jar)
    out = subprocess.run(["bash", str(SETUP), "--step", "jars", "--link-jars", str(target)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    added = sorted(str(p) for p in target.glob("*.jar") if not (spark_jars / p.name).exists())
    assert any("delta-spark_4.2_2.13" in a for a in added), added
    assert not [a for a in added if "jackson-databind" in a or "hadoop-client" in a], added
    code = textwrap.dedent(f"""
        from pyspark.sql import SparkSession
        s = (SparkSession.builder.master("local[1]").config("spark.jars", {",".join(added)!r})
             .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
             .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
             .config("spark.ui.enabled", "false").getOrCreate())
        s.range(5).write.format("delta").save({str(tmp_path / "t")!r})
        print("rows", s.read.format("delta").load({str(tmp_path / "t")!r}).count())
        s.stop()
    """)
    env = {**os.environ, "JAVA_HOME": subprocess.check_output([str(ROOT / "scripts/find_java17.sh")], text=True).strip(),
           "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rows 5" in run.stdout
