"""Trial registry identifiers found in free text and in PubMed databank accessions.

The patterns live in ``conf/registry_ids.yaml`` so that every source (PubMed abstracts, ICTRP secondary ids,
cross-registry unification) recognizes and normalizes the same ids the same way. This module is plain
Python (no Spark) because it runs inside executor tasks, next to the parser that has the text in hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from trialpanorama.config import DEFAULT_CONFIG, Config, load_sibling_yaml

CONF_NAME = "registry_ids.yaml"


@dataclass(frozen=True)
class Registry:
    """One registry's id pattern, the template that normalizes a match, and its PubMed databank names."""

    registry: str
    pattern: str
    id_template: str
    databank_names: tuple[str, ...] = ()
    prefilter: str | None = None
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)
    _pre: re.Pattern[str] | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))
        literal = self.prefilter is None or re.escape(self.prefilter) == self.prefilter
        object.__setattr__(self, "_pre", None if literal else re.compile(self.prefilter))

    def may_occur(self, lowered: str) -> bool:
        """The cheap prefilter on the lower-cased text: False means the pattern cannot match."""
        if self.prefilter is None:
            return True
        return self.prefilter in lowered if self._pre is None else self._pre.search(lowered) is not None

    def normalize(self, match: re.Match[str]) -> str:
        return self.id_template.format(match.group(0), *match.groups())


@dataclass(frozen=True)
class TrialIdMatch:
    registry: str
    trial_id: str  # normalized
    raw_id: str  # as written


def registries_from(data: Mapping[str, Any]) -> list[Registry]:
    """Registries from the parsed YAML; a pattern that does not compile fails here, at job start."""
    out = []
    for item in data.get("registries") or []:
        out.append(Registry(str(item["registry"]), str(item["pattern"]), str(item["id"]),
                            tuple(str(n) for n in item.get("databank_names") or ()),
                            str(item["prefilter"]) if item.get("prefilter") else None))
    return out


def load_registries(cfg: Config | None = None) -> list[Registry]:
    """The registries of ``conf/registry_ids.yaml`` (beside the job's config file when it has one)."""
    if cfg is not None:
        return registries_from(load_sibling_yaml(cfg, CONF_NAME))
    with (DEFAULT_CONFIG.parent / CONF_NAME).open(encoding="utf-8") as fh:
        return registries_from(yaml.safe_load(fh) or {})


def find_trial_ids(text: str | None, registries: Iterable[Registry]) -> list[TrialIdMatch]:
    """Every registry id in ``text``, in order of appearance, each normalized id once.

    Where two registries match overlapping text the one listed first in the YAML wins, so a CTIS number
    is not also read as an EudraCT number.
    """
    if not text:
        return []
    found: list[tuple[int, int, TrialIdMatch]] = []
    lowered = text.lower()
    for reg in registries:
        if not reg.may_occur(lowered):
            continue
        for m in reg.regex.finditer(text):
            if any(start < m.end() and m.start() < end for start, end, _ in found):
                continue
            found.append((m.start(), m.end(), TrialIdMatch(reg.registry, reg.normalize(m), m.group(0))))
    seen: set[str] = set()
    out = []
    for _, _, match in sorted(found, key=lambda t: t[0]):
        if match.trial_id not in seen:
            seen.add(match.trial_id)
            out.append(match)
    return out


def databank_index(registries: Iterable[Registry]) -> dict[str, list[Registry]]:
    """Lower-cased PubMed DataBankName -> the registries whose ids it may hold (JPRN holds three)."""
    index: dict[str, list[Registry]] = {}
    for reg in registries:
        for name in reg.databank_names:
            index.setdefault(name.lower(), []).append(reg)
    return index


def normalize_accession(accession: str, candidates: list[Registry]) -> TrialIdMatch:
    """A databank accession as a trial id: normalized by the first candidate pattern that matches it whole,
    else kept as written (trimmed) under the first candidate registry, so no curated link is lost
    (PubMed has ``ISRCTN474042962``, one digit too many)."""
    value = accession.strip()
    for reg in candidates:
        m = reg.regex.fullmatch(value)
        if m:
            return TrialIdMatch(reg.registry, reg.normalize(m), value)
    return TrialIdMatch(candidates[0].registry, value, value)
