"""conf/synth.yaml and the weighted draws every generator module makes from it.

Draws go through ``Rng`` (a seeded ``random.Random``) so a record depends only on the world seed and its
own key: the same seed gives byte-identical files whatever the number of worker processes.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from trialpanorama.config import PROJECT_ROOT, apply_overrides

T = TypeVar("T")
DEFAULT_CONFIG = PROJECT_ROOT / "conf" / "synth.yaml"


def load_settings(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The synth config as a dict, with ``key=value`` overrides applied (``--set`` of jobs/generate_world.py);
    relative paths inside it are resolved against the repository root (as in conf/linking.yaml).
    The overrides enter the config hash, so a world generated with them is told apart."""
    p = Path(path) if path else DEFAULT_CONFIG
    overrides = tuple(overrides)
    conf = apply_overrides(yaml.safe_load(p.read_text()) or {}, overrides)
    tsv = Path(conf["vocabulary"]["mesh_tree_tsv"])
    conf["vocabulary"]["mesh_tree_tsv"] = str(tsv if tsv.is_absolute() else (p.parent.parent / tsv).resolve())
    conf["_source"] = str(p)
    conf["_hash"] = hashlib.sha256(p.read_bytes() + "\n".join(overrides).encode()).hexdigest()[:16]
    return conf


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from the world seed and a key (a shard, a trial): stable across runs and platforms."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Rng(random.Random):
    """``random.Random`` plus the draws the generator needs (weighted keys, log-normal counts, ranges)."""

    # Cumulative weights per mapping (the config's dicts live as long as the process; the mapping itself is
    # kept in the entry so that a reused id() never returns another mapping's table).
    _cache: dict[int, tuple[Mapping[Any, float], list[Any], list[float]]] = {}

    def weighted(self, weights: Mapping[T, float]) -> T:
        hit = Rng._cache.get(id(weights))
        if hit is None or hit[0] is not weights:
            keys = list(weights)
            hit = (weights, keys, list(itertools.accumulate(float(weights[k]) for k in keys)))
            Rng._cache[id(weights)] = hit
        _, keys, cum = hit
        return keys[bisect.bisect_right(cum, self.random() * cum[-1])]

    def lognormal_count(self, median: float, sigma: float, low: int = 1, high: int = 100_000) -> int:
        return max(low, min(high, int(round(math.exp(math.log(median) + sigma * self.gauss(0.0, 1.0))))))

    def span(self, bounds: Sequence[int]) -> int:
        return self.randint(int(bounds[0]), int(bounds[1]))

    def chance(self, p: float) -> bool:
        return self.random() < p
