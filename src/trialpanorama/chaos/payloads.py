"""Hostile values shared by every format's generator: injections, broken text, impossible numbers and dates.

Each generated record carries a unique *token* (``CHX000123``). After a run the suite looks for every token
in the lake's outputs and in ``rejects.raw``: a token found in neither means a record was silently dropped,
which the row counts alone cannot show (a job may count a record it then loses).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

TOKEN_RE = re.compile(r"CHX\d{6}")

# Values that break a consumer which builds SQL, paths, shell lines or Delta predicates from data.
INJECTIONS: tuple[str, ...] = (
    "NCT00000001'; DROP TABLE studies; --",
    "' OR '1'='1",
    "1 OR 1=1",
    "\" OR \"\"=\"",
    "NCT00000002` = `x` OR `1",  # Spark SQL identifier quoting
    "x' OR study_id IS NOT NULL OR 'a'='a",  # Delta MERGE / DELETE predicate quoting
    "'); DELETE FROM delta.`/tmp/lake/silver/studies` WHERE ('1'='1",
    "${jndi:ldap://127.0.0.1:1/a}",
    "../../../../etc/passwd",
    "..\\..\\..\\windows\\win.ini",
    "/etc/shadow",
    "file:///etc/passwd",
    "hdfs://127.0.0.1:1/x",
    "$(touch /tmp/chaos-pwned)",
    "`touch /tmp/chaos-pwned`",
    "; rm -rf / #",
    "| cat /etc/passwd",
    "=cmd|' /C calc'!A0",  # CSV formula injection
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "<script>alert(1)</script>",
    "%00%2e%2e%2f",
    "NCT\u000012345678",
    "NCT1234567\u202e8",  # right-to-left override
    "{{7*7}}",
    "\\N",
    "NULL",
    "null",
    "",
    " ",
    "\t\r\n",
)

BAD_DATES: tuple[str, ...] = (
    "9999-12-31", "0000-01-01", "0001-01", "-2020-01-01", "2020-13-45", "2020-02-30", "99999-01-01",
    "31/02/2020", "00/00/0000", "99/99/9999", "2020", "20200230", "yesterday", "1e9", "",
    "1900-01-01T00:00:00Z", "+275760-09-13",
)

BAD_NUMBERS: tuple[object, ...] = (
    -1, -2147483649, 2147483648, 9223372036854775808, 1e308, -0.0, 3.5, "NaN", "Infinity", "-5", "abc", "",
    True, None,
)

# Byte sequences that are not UTF-8 (lone continuation, overlong, surrogate, truncated multibyte, 0xFF).
INVALID_UTF8: tuple[bytes, ...] = (
    b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xff\xfe", b"\xf8\x88\x80\x80\x80", b"caf\xe9",
)


def token(serial: int) -> str:
    return f"CHX{serial:06d}"


def big_text(n_bytes: int, tok: str) -> str:
    """A text field of about ``n_bytes`` characters with the token at both ends (truncation shows)."""
    unit = "Lorem ipsum dolor sit amet; "
    return tok + " " + unit * max(1, n_bytes // len(unit)) + tok


@dataclass
class Case:
    """One generated record: its token, the attack it carries, and the bytes that stand for it in a file."""

    tok: str
    attack: str
    data: bytes
    note: str = ""
    file: str | None = None  # set when the case is a file of its own


@dataclass
class Batch:
    """What a generator wrote: the files to ingest and the records they hold."""

    files: list[str] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)

    @property
    def tokens(self) -> set[str]:
        return {c.tok for c in self.cases}

    def add_single(self, path: str, case: Case) -> None:
        case.file = path
        self.files.append(path)
        self.cases.append(case)

    def by_attack(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cases:
            out[c.attack] = out.get(c.attack, 0) + 1
        return dict(sorted(out.items()))


class Picker:
    """Seeded choices, so that the same seed writes the same files byte for byte."""

    def __init__(self, seed: int, salt: str):
        self.rng = random.Random(f"{seed}|{salt}")

    def choice(self, seq):  # noqa: ANN001, ANN201 - any sequence
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def cut(self, data: bytes) -> bytes:
        """Truncate somewhere strictly inside the data."""
        return data[: self.rng.randrange(1, max(2, len(data) - 1))]

    def cut_after(self, data: bytes, needle: bytes) -> bytes:
        """Truncate strictly inside the data but after ``needle``: a file cut short still names its record
        (its token), so the check can find the reject it must become."""
        end = data.index(needle) + len(needle)
        return data[: self.rng.randrange(end, max(end + 1, len(data) - 1))]

    def mangle_utf8(self, data: bytes) -> bytes:
        pos = self.rng.randrange(len(data)) if data else 0
        return data[:pos] + self.choice(INVALID_UTF8) + data[pos:]
