"""Progress lines on stderr, so a long job shows where it is without mixing into its JSON result on stdout."""

from __future__ import annotations

import sys
import time

_T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)
