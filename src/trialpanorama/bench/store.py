"""The ``predictions`` Delta table: one row per (run_id, model, task, sample_id), written as answers arrive.

Written with delta-rs (the ``deltalake`` package) from the Ray driver, not with Spark: the benchmark is a
Ray app and starting a JVM to append a few hundred rows per flush would cost more than the inference of a
tiny model. The table is declared in ``schemas.TABLES['predictions']`` like every other table, Spark reads
it like any other (tests check both read the same rows), and ``ARROW_SCHEMA`` below mirrors that DDL.

Every flush is a MERGE that inserts only keys not yet present, so a re-run with the same run id (resume)
or a flush retried after a crash never duplicates a row; the table's keys are what resume skips.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from trialpanorama.lake import table_uri

TABLE = "predictions"
KEYS = ("run_id", "model", "task", "sample_id")
# Mirrors schemas.TABLES["predictions"].ddl (tests/test_bench_e2e.py checks Spark reads it with that schema).
ARROW_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("task", pa.string(), nullable=False),
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("task_version", pa.string()),
    pa.field("dataset_version", pa.int64()),
    pa.field("backend", pa.string()),
    pa.field("model_source", pa.string()),
    pa.field("raw_output", pa.string()),
    pa.field("parsed", pa.string()),
    pa.field("reference", pa.string()),
    pa.field("score", pa.float64()),
    pa.field("correct", pa.bool_()),
    pa.field("unparseable", pa.bool_()),
    pa.field("error", pa.string()),
    pa.field("tokens_in", pa.int64()),
    pa.field("tokens_out", pa.int64()),
    pa.field("latency_s", pa.float64()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
])
COLUMNS = tuple(ARROW_SCHEMA.names)


def uri(lake_root: str) -> str:
    return table_uri(lake_root, TABLE)


def _local(path: str) -> str:
    return path.removeprefix("file://").removeprefix("file:")


def exists(lake_root: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(_local(uri(lake_root)))


def conform(table: pa.Table) -> pa.Table:
    """The columns of ARROW_SCHEMA in order and type (extra columns dropped, missing ones an error)."""
    missing = [n for n in COLUMNS if n not in table.column_names]
    if missing:
        raise ValueError(f"predictions batch lacks columns {missing}")
    arrays = [table.column(f.name).cast(f.type) for f in ARROW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def write(lake_root: str, batch: pa.Table) -> int | None:
    """Insert the rows whose keys are not in the table yet; returns the new Delta version (None: nothing)."""
    from deltalake import DeltaTable, write_deltalake

    if batch.num_rows == 0:
        return None
    batch = conform(batch)
    path = _local(uri(lake_root))
    if not DeltaTable.is_deltatable(path):
        try:
            write_deltalake(path, batch, mode="error")
            return DeltaTable(path).version()
        except Exception:  # noqa: BLE001 - another writer created it first: fall through to MERGE
            if not DeltaTable.is_deltatable(path):
                raise
    dt = DeltaTable(path)
    on = " AND ".join(f"t.{k} = s.{k}" for k in KEYS)
    # A row that failed (error set, e.g. an endpoint outage) is replaced by a retry; a good row never is.
    (dt.merge(source=batch, predicate=on, source_alias="s", target_alias="t")
       .when_matched_update_all(predicate="t.error IS NOT NULL")
       .when_not_matched_insert_all().execute())
    return DeltaTable(path).version()


def _filter(run_id: str, model: str | None, task: str | None) -> list[tuple[str, str, Any]]:
    out = [("run_id", "=", run_id)]
    if model is not None:
        out.append(("model", "=", model))
    if task is not None:
        out.append(("task", "=", task))
    return out


def read(lake_root: str, run_id: str, model: str | None = None, task: str | None = None,
         columns: Iterable[str] | None = None, version: int | None = None) -> pa.Table:
    """Rows of one run (optionally one model / task); an absent table reads as empty."""
    from deltalake import DeltaTable

    path = _local(uri(lake_root))
    cols = list(columns) if columns else list(COLUMNS)
    if not DeltaTable.is_deltatable(path):
        return ARROW_SCHEMA.empty_table().select(cols)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # File by file, cast to ARROW_SCHEMA: delta-rs's MERGE writes strings as string_view, its first write
    # as string, and a pyarrow dataset over both cannot evaluate a filter (no string/string_view kernel).
    types = {f.name: f.type for f in ARROW_SCHEMA}
    conds = _filter(run_id, model, task)
    need = list(dict.fromkeys(cols + [c for c, _, _ in conds]))
    parts = []
    for file_uri in DeltaTable(path, version=version).file_uris():
        t = pq.read_table(_local(file_uri), columns=need)
        t = pa.Table.from_arrays([t.column(c).cast(types[c]) for c in need], names=need)
        mask = None
        for col, _, val in conds:
            term = pc.equal(t.column(col), pa.scalar(val, pa.string()))
            mask = term if mask is None else pc.and_(mask, term)
        parts.append(t.filter(mask) if mask is not None else t)
    if not parts:
        return ARROW_SCHEMA.empty_table().select(cols)
    return pa.concat_tables(parts).select(cols)


def done_ids(lake_root: str, run_id: str, model: str, task: str) -> set[str]:
    """sample_ids of (run, model, task) answered without error: what a resumed run skips."""
    t = read(lake_root, run_id, model, task, columns=["sample_id", "error"])
    return {s for s, e in zip(t.column("sample_id").to_pylist(), t.column("error").to_pylist(), strict=True) if not e}


def version(lake_root: str) -> int | None:
    from deltalake import DeltaTable

    path = _local(uri(lake_root))
    return DeltaTable(path).version() if DeltaTable.is_deltatable(path) else None


def parsed_value(text: str | None) -> Any:
    """The parsed answer back from its JSON column (what ``score`` is re-run on)."""
    return None if text is None else json.loads(text)
