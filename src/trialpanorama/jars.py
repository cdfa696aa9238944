"""Delta Lake jars: resolved once from Maven Central, then served from a project-local cache.

Spark's own resolver (``spark.jars.packages`` with ``spark.jars.ivy``) downloads the jars on the first run.
The resolved jar paths are then recorded in a manifest beside the Ivy cache, and later sessions pass them
as ``spark.jars`` so that a second run needs no network at all. If Spark's resolver cannot reach Maven
Central, ``fetch_with_maven`` fetches the same artifacts with ``mvn`` and writes the same manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from trialpanorama.config import PROJECT_ROOT, Config, load_config


def delta_packages(cfg: Config) -> list[str]:
    """Maven coordinates of Delta (plus configured extras) matching the installed pyspark/delta-spark."""
    configured = cfg.get("spark.delta_packages", "auto")
    if configured in (None, "auto"):
        from importlib.metadata import version

        import pyspark

        spark_mm = ".".join(pyspark.__version__.split(".")[:2])
        jar_version = cfg.get("spark.delta_jar_version") or version("delta-spark")
        packages = [f"io.delta:delta-spark_{spark_mm}_2.13:{jar_version}"]
    else:
        packages = list(configured)
    return packages + list(cfg.get("spark.extra_packages") or [])


def ivy_dir(cfg: Config) -> Path:
    """The jar cache folder. A relative path is taken from the project root, not from the current
    directory: a job started from any folder (a test's temp dir, a scheduler's scratch dir) must find the
    cache that ``make setup`` filled instead of resolving from Maven Central again."""
    path = Path(cfg.get("spark.ivy_dir", "./.cache/ivy")).expanduser()
    return (path if path.is_absolute() else PROJECT_ROOT / path).resolve()


def _manifest_path(cfg: Config, packages: list[str]) -> Path:
    digest = hashlib.sha256(",".join(sorted(packages)).encode()).hexdigest()[:16]
    return ivy_dir(cfg) / f"jars-manifest-{digest}.json"


def cached_jars(cfg: Config) -> list[str] | None:
    """The cached jar paths for the configured packages, or None if any is missing."""
    packages = delta_packages(cfg)
    manifest = _manifest_path(cfg, packages)
    if not manifest.is_file():
        return None
    jars = json.loads(manifest.read_text())["jars"]
    if not jars or not all(Path(j).is_file() for j in jars):
        return None
    return jars


def record_resolved_jars(cfg: Config, spark_jars: str) -> None:
    """Remember the jars Spark's resolver produced (``spark.jars`` after resolution) for offline reuse."""
    jars = [str(Path(j.strip().removeprefix("file:"))) for j in spark_jars.split(",") if j.strip().endswith(".jar")]
    jars = [j for j in jars if Path(j).is_file()]
    if not jars:
        return
    packages = delta_packages(cfg)
    manifest = _manifest_path(cfg, packages)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"packages": packages, "jars": sorted(jars)}, indent=1))


def fetch_with_maven(cfg: Config) -> list[str]:
    """Fallback: fetch the same artifacts with Maven into the cache and record them."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise RuntimeError("Spark could not resolve the Delta jars and `mvn` is not installed")
    packages = delta_packages(cfg)
    out_dir = ivy_dir(cfg) / "maven-jars"
    out_dir.mkdir(parents=True, exist_ok=True)
    deps = "".join(
        "<dependency><groupId>{}</groupId><artifactId>{}</artifactId><version>{}</version></dependency>".format(
            *p.split(":")
        )
        for p in packages
    )
    pom = (
        "<project xmlns='http://maven.apache.org/POM/4.0.0'><modelVersion>4.0.0</modelVersion>"
        "<groupId>local</groupId><artifactId>tp-jars</artifactId><version>0</version>"
        f"<dependencies>{deps}</dependencies></project>"
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pom.xml").write_text(pom)
        subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={out_dir}",
             "-DincludeScope=runtime", "-DexcludeGroupIds=org.scala-lang"],
            cwd=tmp, check=True,
        )
    jars = sorted(str(p) for p in out_dir.glob("*.jar"))
    _manifest_path(cfg, packages).write_text(json.dumps({"packages": packages, "jars": jars}, indent=1))
    return jars


def ensure_jars(cfg: Config) -> list[str]:
    """Make sure the jar cache is filled: Spark's resolver first, Maven as the fallback."""
    jars = cached_jars(cfg)
    if jars:
        return jars
    from trialpanorama.lake import get_spark

    # get_spark resolves through Spark (falling back to Maven itself) and records what it resolved.
    get_spark(cfg, app_name="trialpanorama-fetch-jars").stop()
    return cached_jars(cfg) or fetch_with_maven(cfg)


if __name__ == "__main__":
    found = ensure_jars(load_config(sys.argv[1] if len(sys.argv) > 1 else None))
    print(f"Delta jars cached ({len(found)} files) under {Path(found[0]).parent}")
