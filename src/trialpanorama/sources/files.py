"""Finding input files: paths, folders or globs on any Hadoop-compatible file system.

Listing happens on the driver through Hadoop's FileSystem (file names only, never records), so that the
same ``--input`` works for local folders, ``s3a://`` prefixes and ``hdfs://`` globs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pyspark.sql import SparkSession


def _qualify(path: str) -> str:
    if "://" in path or path.startswith("file:"):
        return path
    local = Path(path).expanduser()
    return str(local if local.is_absolute() else Path.cwd() / local)


def list_files(spark: SparkSession, inputs: Iterable[str]) -> list[str]:
    """Every file under the given paths/folders/globs, as fully qualified URIs, sorted and unique.

    A path that matches nothing raises ``FileNotFoundError``: a misspelt input is a user error, not an
    empty dump. Hidden files and folders (``.``/``_`` prefixes, e.g. ``_SUCCESS``) are skipped inside
    folders.
    """
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    found: set[str] = set()
    for raw in inputs:
        path = jvm.org.apache.hadoop.fs.Path(_qualify(raw))
        fs = path.getFileSystem(hconf)
        statuses = fs.globStatus(path)
        if not statuses:
            raise FileNotFoundError(f"input not found: {raw}")
        for status in statuses:
            if status.isDirectory():
                it = fs.listFiles(status.getPath(), True)
                while it.hasNext():
                    child = it.next().getPath()
                    rel = child.toString()[len(status.getPath().toString()):]
                    if any(part.startswith((".", "_")) for part in rel.split("/") if part):
                        continue
                    found.add(child.toString())
            else:
                found.add(status.getPath().toString())
    return sorted(found)


def local_path(uri: str) -> str | None:
    """The local file system path of a ``file:`` URI or plain path, None for remote URIs."""
    if uri.startswith("file:"):
        return uri[len("file:"):].replace("///", "/", 1) if uri.startswith("file:///") else uri[len("file:"):]
    if "://" in uri:
        return None
    return uri
