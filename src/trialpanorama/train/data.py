"""Task tables -> chat template -> tokens (cached) -> packed micro-batches with answer-only labels.

Why each piece is shaped the way it is:
- Tables are read through Ray Data at the Delta version the recipe pins (``ray.data.read_delta``), so the
  run logs exactly what it read and the driver never collects the data set.
- Tokenization is the slow step people redo by accident (LLaMA-Factory #3939). It runs once per
  (table path, Delta version, tokenizer files, chat template, max length) and is written as Parquet under
  ``data.cache_dir``; a later run with the same key reads the Parquet and tokenizes nothing.
- The prompt (system + user + the template's assistant header) and the answer are tokenized separately
  and concatenated, so labels are -100 exactly on the prompt and the model learns the answer and the
  end-of-turn token only; this is also exactly how inference tokenizes the prompt.
- A row longer than ``data.max_seq_len`` is dropped by default. ``data.long_prompts: keep_tail`` keeps it with
  its prompt cut from the left instead (the answer is never cut): every task prompt ends with the question,
  the options and the answer format, and inference cuts over-long prompts from the left the same way, so a
  small-context model still learns each task's answer. A row whose answer alone does not fit is dropped.
- Packing happens in the worker, streaming, with position ids that restart per example: transformers
  builds a block-diagonal causal mask from them, so packed examples do not attend to each other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

IGNORE = -100
CACHE_FORMAT = 2  # bump when the tokenized layout changes, so old caches are not reused

# ChatML, the template the tiny model ships with (Qwen uses the same markers).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TASK_COLUMNS = ["sample_id", "task", "split", "messages", "answer"]
LONG_PROMPTS = ("drop", "keep_tail")  # data.long_prompts: what happens to a row longer than max_seq_len


# ---------------------------------------------------------------- Delta -------------------------------

def delta_version(path: str, version: int | None = None) -> int:
    """The version a run will read: the pinned one (checked to exist) or the table's current one."""
    return delta_identity(path, version)[0]


def delta_identity(path: str, version: int | None = None) -> tuple[int, str]:
    """(version, table id) of what a run will read: the id (Delta's ``metaData.id``, new whenever a table is
    created) tells a rebuilt lake's version 0 from the old lake's version 0."""
    from deltalake import DeltaTable

    table = DeltaTable(path, version=version) if version is not None else DeltaTable(path)
    return int(table.version()), str(table.metadata().id)


def read_task_table(path: str, version: int) -> Any:
    """A lazy Ray Dataset of one task table at one Delta version (no driver-side collect).

    ``ray.data.read_delta`` reads through delta-rs, which handles tables Spark writes with Delta 4.4
    (checked in tests). If a table uses a feature delta-rs cannot read, fall back to the Parquet files
    of that exact version.
    """
    import ray.data

    try:
        return ray.data.read_delta(path, version=version, columns=TASK_COLUMNS)
    except Exception:  # noqa: BLE001 - fall back to the plain Parquet files of that version
        from deltalake import DeltaTable

        files = DeltaTable(path, version=version).file_uris()
        return ray.data.read_parquet(files, columns=TASK_COLUMNS)


# ---------------------------------------------------------------- tokenizer / template ----------------

@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str, chat_template: str | None = None) -> Any:
    """One tokenizer per process (Ray Data workers call this once per batch; the cache makes it once)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if chat_template:
        tok.chat_template = chat_template
    if tok.chat_template is None:
        raise ValueError(f"tokenizer at {path} has no chat_template and the recipe gives none")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def read_template(value: str | None) -> str | None:
    """``model.chat_template``: null (use the tokenizer's), a path to a .jinja file, or the template text."""
    if not value:
        return None
    p = Path(value)
    if len(value) < 4096 and "{%" not in value and p.is_file():
        return p.read_text()
    return value


def tokenizer_fingerprint(path: str) -> str:
    """Hash of the tokenizer's files: a retrained tokenizer with the same folder name is a new key."""
    h = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                 "merges.txt", "tokenizer.model"):
        f = Path(path) / name
        if f.is_file():
            h.update(name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def effective_template(tokenizer_path: str, template: str | None) -> str:
    return load_tokenizer(tokenizer_path, template).chat_template


def encode_example(tok: Any, messages: list[dict[str, str]], answer: str) -> tuple[list[int], list[int]]:
    """Token ids and labels for one chat example; labels are -100 on everything but the answer turn.

    The full conversation rendered by the template must start with the rendered prompt; if a template
    does not (some inject dates or strip turns), masking would be wrong, so it is an error.
    """
    prompt_msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt = tok.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(prompt_msgs + [{"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("chat template renders the prompt differently inside the full conversation; "
                         "answer-only masking would be wrong")
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return p_ids + a_ids, [IGNORE] * len(p_ids) + list(a_ids)


def fit_to_length(ids: list[int], labels: list[int], max_len: int, long_prompts: str = "drop"
                  ) -> tuple[list[int], list[int], int]:
    """(ids, labels, prompt tokens cut) of one encoded example within ``max_len``; ([], [], 0) = drop it.

    Never cuts the answer: a truncated answer teaches the model to stop mid-JSON. ``keep_tail`` cuts the
    prompt from the left, as inference does, and keeps at least a quarter of ``max_len`` of it (a prompt
    cut to a few tokens leaves the answer without its question).
    """
    if len(ids) <= max_len:
        return ids, labels, 0
    n_answer = sum(1 for x in labels if x != IGNORE)
    n_prompt = len(ids) - n_answer
    keep = max_len - n_answer
    if long_prompts != "keep_tail" or keep < max(1, max_len // 4):
        return [], [], 0
    cut = n_prompt - keep
    return ids[cut:], labels[cut:], cut


def tokenize_batch(batch: Any, tokenizer_path: str, chat_template: str | None, max_len: int,
                   long_prompts: str = "drop") -> Any:
    """Ray Data ``map_batches`` function: pyarrow batch of task rows -> tokenized rows (all splits).

    A row longer than ``max_len`` is cut or dropped by :func:`fit_to_length`; a dropped row stays as an
    empty row so the cache's meta.json counts it (read time filters it out), and ``prompt_cut`` counts the
    prompt tokens a kept row lost.
    """
    import pyarrow as pa

    tok = load_tokenizer(tokenizer_path, chat_template)
    cols = batch.to_pydict()
    out: dict[str, list] = {"sample_id": [], "task": [], "split": [], "input_ids": [], "labels": [],
                            "n_tokens": [], "n_answer": [], "prompt_cut": []}
    for sid, task, sp, msgs, ans in zip(cols["sample_id"], cols["task"], cols["split"], cols["messages"],
                                        cols["answer"], strict=True):
        if ans is None:
            continue
        ids, labels, cut = fit_to_length(*encode_example(tok, list(msgs), ans), max_len, long_prompts)
        out["sample_id"].append(sid)
        out["task"].append(task)
        out["split"].append(sp)
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["n_tokens"].append(len(ids))
        out["n_answer"].append(sum(1 for x in labels if x != IGNORE))
        out["prompt_cut"].append(cut)
    schema = pa.schema([("sample_id", pa.string()), ("task", pa.string()), ("split", pa.string()),
                        ("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
                        ("n_tokens", pa.int32()), ("n_answer", pa.int32()), ("prompt_cut", pa.int32())])
    return pa.Table.from_pydict(out, schema=schema)


# ---------------------------------------------------------------- cache -------------------------------

def cache_key(path: str, version: int, tokenizer_path: str, template: str, max_len: int,
              long_prompts: str = "drop") -> str:
    body = {
        "format": CACHE_FORMAT, "table": os.path.realpath(path), "version": version,
        "tokenizer": tokenizer_fingerprint(tokenizer_path),
        "template": hashlib.sha256(template.encode()).hexdigest()[:16], "max_len": max_len,
        "long_prompts": long_prompts,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]


def tokenized_table(cache_dir: Path, task: str, path: str, version: int, tokenizer_path: str,
                    chat_template: str | None, max_len: int, long_prompts: str = "drop") -> dict[str, Any]:
    """Tokenize one task table at one version (every split) into the cache unless it is already there.

    Returns the cache entry's meta (``dir``, ``hit``, per split ``rows``/``tokens``/``dropped_too_long``/
    ``prompt_cut_rows``). The Parquet is
    written by Ray Data tasks into a temp folder that is renamed into place, so a killed run never
    leaves a half cache that a later run would trust.
    """

    template = effective_template(tokenizer_path, chat_template)
    if long_prompts not in LONG_PROMPTS:
        raise ValueError(f"long_prompts must be one of {LONG_PROMPTS}, got {long_prompts!r}")
    key = cache_key(path, version, tokenizer_path, template, max_len, long_prompts)
    final = cache_dir / task / key
    meta_file = final / "meta.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        return {**meta, "dir": str(final / "data"), "hit": True}
    started = time.monotonic()
    tmp = cache_dir / task / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    ds = read_task_table(path, version).map_batches(
        tokenize_batch, batch_format="pyarrow", batch_size=1024,
        fn_kwargs={"tokenizer_path": tokenizer_path, "chat_template": chat_template, "max_len": max_len,
                   "long_prompts": long_prompts})
    ds.write_parquet(str(tmp / "data"), min_rows_per_file=20000)  # few files: fewer, larger blocks
    # Stats from the small int columns only (pyarrow, on the driver): tiny, and no second Ray Data job.
    import pyarrow.dataset as pads

    stats = pads.dataset(str(tmp / "data"), format="parquet").to_table(
        columns=["split", "n_tokens", "n_answer", "prompt_cut"])
    splits = np.asarray(stats.column("split").to_pylist(), dtype=object)
    n_tok = np.asarray(stats.column("n_tokens"))
    n_ans = np.asarray(stats.column("n_answer"))
    n_cut = np.asarray(stats.column("prompt_cut"))
    per_split = {}
    for sp in sorted(set(splits.tolist())):
        sel = splits == sp
        kept = sel & (n_tok > 0)
        per_split[sp] = {"rows": int(kept.sum()), "dropped_too_long": int(sel.sum() - kept.sum()),
                         "tokens": int(n_tok[kept].sum()), "answer_tokens": int(n_ans[kept].sum()),
                         "prompt_cut_rows": int((kept & (n_cut > 0)).sum())}
    meta = {"task": task, "path": path, "version": version, "max_len": max_len, "long_prompts": long_prompts,
            "tokenizer": tokenizer_fingerprint(tokenizer_path), "key": key, "splits": per_split,
            "seconds": round(time.monotonic() - started, 2)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if final.exists():  # another run won the race; theirs is equally valid
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    return {**meta, "dir": str(final / "data"), "hit": False}


def split_stats(entry: dict[str, Any], split: str) -> dict[str, int]:
    return entry["splits"].get(split, {"rows": 0, "dropped_too_long": 0, "tokens": 0, "answer_tokens": 0,
                                       "prompt_cut_rows": 0})


def mixed_dataset(entries: dict[str, dict[str, Any]], weights: dict[str, float], seed: int,
                  split: str = "train") -> Any:
    """Union of the cached tables, each repeated by its mix weight (2.0 = twice, 0.5 = a seeded half).

    Weights apply after the cache, so changing the mix never re-tokenizes.
    """
    import ray.data

    parts = []
    for task, entry in entries.items():
        from ray.data.expressions import col

        ds = ray.data.read_parquet(entry["dir"]).select_columns(
            ["task", "split", "sample_id", "input_ids", "labels", "n_tokens"])
        ds = ds.filter(expr=(col("split") == split) & (col("n_tokens") > 0))
        weight = weights[task]
        whole, frac = int(weight), weight - int(weight)
        parts += [ds] * whole
        if frac > 0:
            parts.append(ds.filter(functools.partial(_keep_fraction, frac=frac, seed=seed)))
    out = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    return out.randomize_block_order(seed=seed)


def _keep_fraction(row: dict[str, Any], frac: float, seed: int) -> bool:
    h = hashlib.blake2b(f"{seed}:{row['sample_id']}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < frac


MIX_COLUMNS = ["task", "split", "sample_id", "input_ids", "labels", "n_tokens"]


def mixed_table(entries: dict[str, dict[str, Any]], weights: dict[str, float], seed: int,
                split: str = "train") -> Any:
    """The same mix as ``mixed_dataset`` (same weights, same rows kept by a fractional weight), built on the
    driver with pyarrow and shuffled row by row with the seed.

    For sets the recipe materializes anyway (``data.materialize: true``, the tiny recipe and tests): there a
    union of one Parquet read per task costs Ray Data 20-45 s of task start-up on a 2-CPU machine for a few
    thousand rows (measured in ``make demo``), more than the training steps. Large sets keep streaming
    through ``mixed_dataset`` and never pass through the driver.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    parts = []
    for task, entry in entries.items():
        table = pads.dataset(entry["dir"], format="parquet").to_table(
            columns=MIX_COLUMNS, filter=(pc.field("split") == split) & (pc.field("n_tokens") > 0))
        weight = weights[task]
        whole, frac = int(weight), weight - int(weight)
        parts += [table] * whole
        if frac > 0:
            keep = [_keep_fraction({"sample_id": s}, frac, seed) for s in table.column("sample_id").to_pylist()]
            parts.append(table.filter(pa.array(keep, pa.bool_())))
    if not parts:
        raise ValueError("mixed_table: no task has a positive weight")
    table = pa.concat_tables(parts)
    return table.take(np.random.default_rng(seed).permutation(table.num_rows))


def expected_sequences(tokens: int, rows: int, max_len: int, packing: bool) -> int:
    """How many training rows an epoch yields: packed rows are ~tokens/max_len (greedy packing wastes a
    little, hence the 0.9 fill factor), unpacked rows are examples."""
    return max(1, int(np.ceil(tokens / (0.9 * max_len)))) if packing else max(1, rows)


# ---------------------------------------------------------------- packing / batching -----------------

def pack_examples(examples: Iterable[tuple[list[int], list[int]]], max_len: int,
                  pad_id: int) -> Iterator[dict[str, np.ndarray]]:
    """Greedy packing: append examples to the current row until the next does not fit.

    Each packed row has ``input_ids``, ``labels`` (-100 on prompts and padding) and ``position_ids``
    restarting at 0 for each example (padding continues as its own pseudo-example, fully masked).
    """
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []

    def flush() -> dict[str, np.ndarray]:
        pad = max_len - len(ids)
        row = {
            "input_ids": np.array(ids + [pad_id] * pad, dtype=np.int64),
            "labels": np.array(labels + [IGNORE] * pad, dtype=np.int64),
            "position_ids": np.array(pos + list(range(pad)), dtype=np.int64),
            "n_tokens": np.int64(len(ids)),
        }
        ids.clear()
        labels.clear()
        pos.clear()
        return row

    for x, y in examples:
        if len(x) > max_len:
            continue
        if ids and len(ids) + len(x) > max_len:
            yield flush()
        ids.extend(x)
        labels.extend(y)
        pos.extend(range(len(x)))
    if ids:
        yield flush()


def pad_examples(examples: Iterable[tuple[list[int], list[int]]], micro: int,
                 pad_id: int) -> Iterator[dict[str, np.ndarray]]:
    """No packing: ``micro`` examples per batch, right-padded to the longest one, with an attention mask."""
    buf: list[tuple[list[int], list[int]]] = []
    for ex in examples:
        buf.append(ex)
        if len(buf) == micro:
            yield _pad(buf, pad_id)
            buf = []
    if buf:
        yield _pad(buf, pad_id)


def _pad(buf: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, np.ndarray]:
    width = max(len(x) for x, _ in buf)
    ids = np.full((len(buf), width), pad_id, dtype=np.int64)
    labels = np.full((len(buf), width), IGNORE, dtype=np.int64)
    mask = np.zeros((len(buf), width), dtype=np.int64)
    for i, (x, y) in enumerate(buf):
        ids[i, : len(x)] = x
        labels[i, : len(y)] = y
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask,
            "n_tokens": np.int64(int(mask.sum()))}


def pack_batch(batch: dict[str, np.ndarray], max_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: a batch of tokenized examples -> packed rows of ``max_len``.

    Packing runs in the Ray Data pipeline, not in the train worker, so every worker's shard holds the
    same number of packed rows (``streaming_split(equal=True)``) and all ranks cross epoch boundaries at
    the same step; per-worker packing would give ranks different epoch lengths and deadlock DDP.
    """
    rows = list(pack_examples(zip(batch["input_ids"], batch["labels"], strict=True), max_len, pad_id))
    if not rows:
        return {"input_ids": np.zeros((0, max_len), np.int64), "labels": np.zeros((0, max_len), np.int64),
                "position_ids": np.zeros((0, max_len), np.int64), "n_tokens": np.zeros((0,), np.int64)}
    return {k: np.stack([r[k] for r in rows]) for k in ("input_ids", "labels", "position_ids", "n_tokens")}


def collate(batch: dict[str, np.ndarray], packing: bool, pad_id: int) -> dict[str, np.ndarray]:
    """A micro-batch from ``iter_batches``: packed rows are already rectangular; examples get padded."""
    if packing:
        return {"input_ids": np.asarray(batch["input_ids"], np.int64),
                "labels": np.asarray(batch["labels"], np.int64),
                "position_ids": np.asarray(batch["position_ids"], np.int64),
                "n_tokens": np.int64(np.asarray(batch["n_tokens"]).sum())}
    return _pad([(list(x), list(y)) for x, y in zip(batch["input_ids"], batch["labels"], strict=True)], pad_id)
