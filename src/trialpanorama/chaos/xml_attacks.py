"""XML documents that attack the parser itself: entity-expansion bombs and external entities.

The XML sources (ICTRP portal/feed, PubMed, MeSH) must neither expand internal entities without bound nor
resolve external ones. Every external entity here points either at a local file holding a marker string
or at a local HTTP listener that counts requests: after a run the marker must appear nowhere in the lake,
the expansion text ("lollollol...") nowhere either, and the listener must have seen no request.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

EXPANSION_NEEDLE = "lol" * 12  # the billion-laughs text; present in the lake only if entities were expanded


def marker_for(tok: str) -> str:
    """The secret text an external entity would pull in (distinct from the record's own token)."""
    return f"XXE-MARKER-{tok}-do-not-load"


def write_marker_file(folder: Path, marker: str) -> Path:
    """The file an external entity points at. Its name must not hold the marker: a reject keeps its record's
    DOCTYPE text (the path included), and only the file's content, loaded, may count as a hit."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "external-entity-target.txt"
    path.write_text(marker + "\n")
    return path


def billion_laughs_dtd(root: str, levels: int = 10) -> str:
    """The classic bomb: 10 levels of 10 references each, 10^10 "lol"s if expanded (~30 GB)."""
    lines = [f"<!DOCTYPE {root} [", ' <!ENTITY lol "lol">']
    prev = "lol"
    for i in range(1, levels):
        lines.append(f' <!ENTITY lol{i} "{("&" + prev + ";") * 10}">')
        prev = f"lol{i}"
    lines.append("]>")
    return "\n".join(lines), prev


def quadratic_blowup_dtd(root: str, size: int = 100_000) -> tuple[str, str]:
    """One big entity referenced many times (evades nesting-depth limits)."""
    return f'<!DOCTYPE {root} [ <!ENTITY big "{"lol" * size}"> ]>', "big"


def external_file_dtd(root: str, path: Path) -> tuple[str, str]:
    return f'<!DOCTYPE {root} [ <!ENTITY xxe SYSTEM "file://{path}"> ]>', "xxe"


def external_http_dtd(root: str, url: str) -> tuple[str, str]:
    return f'<!DOCTYPE {root} [ <!ENTITY xxe SYSTEM "{url}"> ]>', "xxe"


def parameter_entity_dtd(root: str, path: Path, url: str) -> tuple[str, str]:
    """A parameter entity loading an external DTD (the out-of-band exfiltration pattern)."""
    return (f'<!DOCTYPE {root} [ <!ENTITY % file SYSTEM "file://{path}"> <!ENTITY % dtd SYSTEM "{url}/evil.dtd"> '
            f"%dtd; ]>"), "lol"


def external_dtd(root: str, url: str) -> tuple[str, str]:
    """An external DTD subset fetched from the network."""
    return f'<!DOCTYPE {root} SYSTEM "{url}/external.dtd">', "lol"


class FetchCounter:
    """A local HTTP server that answers every GET with the marker and counts the requests it got."""

    def __init__(self, host: str, marker: str):
        counter = self
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                counter.requests.append(self.path)
                body = marker.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FetchCounter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def attack_dtds(root: str, marker_file: Path, url: str) -> list[tuple[str, str, str]]:
    """(attack name, DOCTYPE text, entity to reference in a field) for one document root."""
    laughs, top = billion_laughs_dtd(root)
    quad, big = quadratic_blowup_dtd(root)
    return [
        ("xml billion laughs", laughs, top),
        ("xml quadratic blowup", quad, big),
        ("xml external entity file", *external_file_dtd(root, marker_file)),
        ("xml external entity http", *external_http_dtd(root, f"{url}/xxe")),
        ("xml parameter entity", *parameter_entity_dtd(root, marker_file, url)),
        ("xml external dtd", *external_dtd(root, url)),
    ]
