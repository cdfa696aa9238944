"""Generate a whole world: shards in parallel worker processes, then the vocabulary files, truth and manifest.

Shards are written by a process pool (``imap`` keeps the order, a progress bar on stderr counts trials);
each worker streams its records straight to its own files, so memory is bounded by the shard size and the
world scales to millions of records. Truth parts are concatenated in shard order, so the output is
byte-identical for a seed whatever ``workers`` is.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trialpanorama.synth.settings import load_settings
from trialpanorama.synth.shard import write_shard
from trialpanorama.synth.vocab import build_vocabulary
from trialpanorama.synth.vocab_files import write_drugbank_csv, write_mesh_xml

TRUTH_FILES = ("clusters", "records", "papers", "reviews", "malformed", "grants")


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _sha256(path: Path) -> str:
    """First 16 hex digits of a file's SHA-256, read in 1 MiB blocks (world files can be GBs)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _merge_truth(out: Path, n_shards: int, extra_malformed: list[dict[str, Any]]) -> dict[str, int]:
    parts = out / "truth" / "parts"
    counts = {}
    for name in TRUTH_FILES:
        n = 0
        with open(out / "truth" / f"{name}.jsonl", "wb") as dst:
            for k in range(n_shards):
                part = parts / f"{name}-{k:05d}.jsonl"
                with open(part, "rb") as src:
                    for line in src:
                        dst.write(line)
                        n += 1
            if name == "malformed":
                for r in extra_malformed:
                    dst.write((json.dumps(r, sort_keys=True) + "\n").encode())
                    n += 1
        counts[name] = n
    shutil.rmtree(parts)
    return counts


def generate(
    records: int,
    seed: int,
    out: str | Path,
    workers: int = 1,
    config: str | Path | None = None,
    show_progress: bool = True,
    overrides: Iterable[str] = (),
) -> dict[str, Any]:
    """Write a world of ``records`` trials under ``out``; returns the manifest (also written as manifest.json)."""
    conf = load_settings(config, overrides)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"output folder is not empty: {out}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    vocab = build_vocabulary(conf, seed)
    size = int(conf["shard_size"])
    n_shards = max(1, math.ceil(records / size))
    tasks = [
        (conf, seed, k, k * size, min(size, records - k * size), n_shards, str(out)) for k in range(n_shards)
    ]
    results: list[dict[str, Any]] = []
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=records, unit="trial", file=sys.stderr, desc="generate_world", mininterval=0.5)
    if workers > 1 and n_shards > 1:
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(min(workers, n_shards)) as pool:
            for r in pool.imap(write_shard, tasks):
                results.append(r)
                if bar:
                    bar.update(r["counts"]["trials"])
    else:
        for task in tasks:
            r = write_shard(task)
            results.append(r)
            if bar:
                bar.update(r["counts"]["trials"])
    if bar:
        bar.close()
    (out / "vocab").mkdir(exist_ok=True)
    extra = write_mesh_xml(out / "vocab" / "desc2025.xml", vocab, conf, seed)
    extra += write_drugbank_csv(out / "vocab" / "drugbank vocabulary.csv", vocab, conf, seed)
    for r in extra:
        r["file"] = f"vocab/{r['file']}"
    truth_counts = _merge_truth(out, n_shards, extra)
    seconds = time.monotonic() - started
    counts: dict[str, int] = {}
    for r in results:
        for k, v in r["counts"].items():
            counts[k] = counts.get(k, 0) + v
    sizes = sorted(s for r in results for s in r["ctgov_sizes"])
    files = sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"
    )
    manifest = {
        "seed": seed,
        "records": records,
        "shards": n_shards,
        "config": conf["_source"],
        "config_sha256": conf["_hash"],
        "counts": counts,
        "truth": truth_counts,
        "ctgov_record_bytes": {
            "median": _percentile(sizes, 0.5),
            "p90": _percentile(sizes, 0.9),
            "p99": _percentile(sizes, 0.99),
            "max": sizes[-1] if sizes else 0,
        },
        "bytes": sum((out / f).stat().st_size for f in files),
        "files": {f: _sha256(out / f) for f in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    # Timing is reported, not written: the manifest stays identical for a seed.
    return {
        **manifest,
        "workers": workers,
        "seconds": round(seconds, 2),
        "trials_per_s": round(records / max(seconds, 1e-9), 1),
        "records_per_s": round(
            (
                counts.get("ctgov_records", 0)
                + counts.get("ictrp_csv_records", 0)
                + counts.get("ictrp_xml_records", 0)
                + counts.get("pubmed_articles", 0)
            )
            / max(seconds, 1e-9),
            1,
        ),
    }
