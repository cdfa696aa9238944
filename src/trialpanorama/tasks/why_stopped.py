"""Classify a registry's free-text termination reason (``why_stopped``) into the study's five classes.

Method: ordered keyword rules from ``conf/why_stopped.yaml`` (regexes per class, first matching class in
the configured order wins, so 'DSMB stopped for deaths' is safety even though a committee stopped it),
and a configured fallback class for text no rule matches. Rules beat a learned model here because the
labelled data is small and the classes are defined by vocabulary the registries use; the accuracy is
measured on ``tests/fixtures/tasks/why_stopped_labelled.jsonl`` (hand-labelled texts) by
``tests/test_tasks_unit.py`` and reported by ``jobs/build_tasks.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trialpanorama.config import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf" / "why_stopped.yaml"


@dataclass(frozen=True)
class ReasonClassifier:
    order: tuple[str, ...]
    patterns: dict[str, tuple[re.Pattern[str], ...]]
    fallback: str

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None = None) -> ReasonClassifier:
        cfg = cfg or yaml.safe_load(CONF.read_text())
        rules = cfg["rules"]
        pats = {c: tuple(re.compile(p, re.I) for p in rules[c]) for c in rules}
        return cls(tuple(rules), pats, cfg["fallback"])

    def classify(self, text: str | None) -> str | None:
        """The reason class of a why_stopped text; None for an empty text (no reason given)."""
        if not text or not text.strip():
            return None
        for cls_name in self.order:
            if any(p.search(text) for p in self.patterns[cls_name]):
                return cls_name
        return self.fallback


def labelled_accuracy(path: str | Path, clf: ReasonClassifier | None = None) -> dict[str, float]:
    """Accuracy (and count) of the classifier on a JSONL file of {"text", "label"}."""
    clf = clf or ReasonClassifier.from_config()
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    right = sum(1 for r in rows if clf.classify(r["text"]) == r["label"])
    return {"accuracy": right / len(rows) if rows else 0.0, "n": float(len(rows))}
