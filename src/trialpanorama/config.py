"""Configuration loading in one place.

Jobs read one YAML file (``conf/pipeline.yaml`` by default) and apply ``--set key=value`` overrides with
dotted keys. Values given on the command line are parsed as YAML scalars so that ``--set a.b=3`` is an int
and ``--set a.b=[x,y]`` a list, the same as if they had been written in the file.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _project_root() -> Path:
    """Where ``conf/`` and ``.cache/`` live: ``TRIALPANORAMA_HOME``, else the checkout holding this package.

    Under ``spark-submit --py-files trialpanorama.zip`` (or an installed wheel) the package's grandparent is
    the zip's folder or site-packages, which hold no ``conf/``; the run's working directory, when it is a
    checkout, is then the root (a cluster image sets TRIALPANORAMA_HOME instead).
    """
    env = os.environ.get("TRIALPANORAMA_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "conf" / "pipeline.yaml").is_file():
        return here
    cwd = Path.cwd()
    return cwd if (cwd / "conf" / "pipeline.yaml").is_file() else here


PROJECT_ROOT = _project_root()
DEFAULT_CONFIG = PROJECT_ROOT / "conf" / "pipeline.yaml"


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` override set, creating maps as needed.

    ``--set spark.conf.spark.sql.shuffle.partitions=4`` sets the key ``spark.sql.shuffle.partitions``
    inside ``spark.conf``, because that map's keys contain dots.
    """
    out = copy.deepcopy(data)
    for item in overrides:
        path, value = _parse_override(item)
        node = out
        while len(path) > 1 and not any("." in str(k) for k in node):
            part = path.pop(0)
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a mapping")
            node = child
        # Maps whose keys are themselves dotted (spark.conf) take the rest of the key whole.
        node[".".join(path)] = value
    return out


@dataclass(frozen=True)
class Config:
    """The loaded configuration: the raw tree plus typed accessors for what every job needs."""

    data: dict[str, Any]
    source: Path | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def require(self, dotted: str) -> Any:
        value = self.get(dotted)
        if value is None:
            raise ConfigError(f"config key {dotted!r} is required (file: {self.source})")
        return value

    @property
    def lake_root(self) -> str:
        return str(self.require("lake.root"))

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or str(self.require("mlflow.tracking_uri"))

    def with_overrides(self, overrides: Iterable[str]) -> Config:
        overrides = tuple(overrides)
        return Config(apply_overrides(self.data, overrides), self.source, self.overrides + overrides)


def load_config(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (default ``conf/pipeline.yaml``) and apply ``key=value`` overrides."""
    source = Path(path) if path else DEFAULT_CONFIG
    if not source.is_file():
        raise ConfigError(f"config file not found: {source}")
    with source.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {source} must hold a mapping at the top level")
    return Config(data, source).with_overrides(overrides)


def load_sibling_yaml(cfg: Config, name: str) -> dict[str, Any]:
    """Load a vocabulary file that sits beside the main config (``conf/<name>``)."""
    base = cfg.source.parent if cfg.source else DEFAULT_CONFIG.parent
    path = base / name
    if not path.is_file():
        path = DEFAULT_CONFIG.parent / name
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}
