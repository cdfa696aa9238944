"""What one chaos run needs besides the record count: sizes, seed, and the external-entity targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ChaosSettings:
    seed: int
    records_per_file: int
    big_text_bytes: int
    big_text_records: int
    deep_nesting: int
    marker_file: Path  # a local file holding the XXE marker: its text must never reach the lake
    marker: str
    fetch_url: str  # a local HTTP listener counting requests: external entities must never reach it

    @classmethod
    def from_conf(cls, conf: dict[str, Any], marker_file: Path, marker: str, fetch_url: str,
                  **overrides: Any) -> ChaosSettings:
        values = {k: conf[k] for k in ("seed", "records_per_file", "big_text_bytes", "big_text_records",
                                       "deep_nesting")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(marker_file=marker_file, marker=marker, fetch_url=fetch_url,
                   **{k: int(v) for k, v in values.items()})
