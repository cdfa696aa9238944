"""Finding and decoding input files: paths, folders or globs on any Hadoop-compatible file system.

Listing happens on the driver through Hadoop's FileSystem (file names only, never records), so that the
same ``--input`` works for local folders, ``s3a://`` prefixes and ``hdfs://`` globs.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F


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


def quoted_column(name: str) -> Column:
    """A column by its literal name: input files may name columns ``a.b`` or ``x`y``, which ``F.col(name)``
    would read as a struct path or reject as bad syntax."""
    return F.col("`" + name.replace("`", "``") + "`")


def decode_utf8(data: bytes | bytearray | str | None) -> tuple[str, str | None]:
    """(text, None) for valid UTF-8; (text with U+FFFD for the bad bytes, reason) otherwise.

    Spark's text reader hands invalid bytes on as they are, and Arrow refuses them on the way into a pandas
    UDF, so readers with Python parsers take the bytes (``CAST(value AS BINARY)``) and decode here: a
    corrupt record becomes a reject that still shows its readable text, never a failed task.
    """
    if data is None:
        return "", None
    if isinstance(data, str):
        return data, None
    raw = bytes(data)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", errors="replace"), f"invalid UTF-8 at byte {exc.start}"


def salvage_text(data: bytes, limit: int) -> str:
    """The readable start of a file that could not be read, for its reject's ``raw``: whatever a truncated gzip
    stream still decompresses to, else the bytes themselves (a non-gzip or non-zip file), up to ``limit`` bytes.
    A reject must carry the text it came from, even when the file as a whole is unreadable."""
    if data[:2] == b"\x1f\x8b":
        try:
            partial = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, limit)
        except zlib.error:
            partial = b""
        if partial:
            return partial.decode("utf-8", errors="replace")
    return data[:limit].decode("utf-8", errors="replace")


def salvage_file(path: str | None, limit: int) -> str:
    """``salvage_text`` of a local file; "" for a remote one (not read on the driver)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            return salvage_text(fh.read(limit), limit)
    except OSError:
        return ""
