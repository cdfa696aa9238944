"""The per-format table `make chaos` prints."""

from __future__ import annotations

from trialpanorama.chaos.runner import FormatResult

_COLS = ("format", "tried", "files", "crashes", "records_in", "accepted", "rejected", "deleted", "superseded",
         "missing", "marker", "fetches", "reconciled", "seconds")


def row(r: FormatResult) -> tuple:
    return (r.format, r.tried, r.files, r.crashes, r.records_in, r.accepted, r.rejected, r.deleted, r.superseded,
            len(r.tokens_missing), sum(r.marker_hits.values()), r.fetches, "yes" if r.reconciled else "NO",
            r.seconds)


def table(results: list[FormatResult]) -> str:
    rows = [tuple(str(v) for v in row(r)) for r in results]
    widths = [max(len(c), *(len(x[i]) for x in rows)) if rows else len(c) for i, c in enumerate(_COLS)]

    def line(cells) -> str:  # noqa: ANN001
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    out = [line(_COLS), line(["-" * w for w in widths])] + [line(x) for x in rows]
    for r in results:
        if r.crash:
            out.append(f"{r.format} CRASHED: {r.crash.splitlines()[0]}")
        if r.tokens_missing:
            out.append(f"{r.format}: {len(r.tokens_missing)} records neither kept nor rejected, e.g. "
                       f"{r.tokens_missing[:5]}")
        if r.marker_hits:
            out.append(f"{r.format}: entity marker/expansion found in {r.marker_hits}")
    return "\n".join(out)
