"""What every task shares: the sample record, stable hashing, answer parsing, and multiple-choice helpers.

A task module (``tasks/<name>.py``) is small because the mechanics live here: how a sample id is derived
(a hash of task and key, so rebuilding never renumbers), how model text becomes JSON (JSON first, then a
```json fence, then the first JSON object in prose, then a task-specific text fallback), and the explicit
``UNPARSEABLE`` outcome that scorers count and score wrong instead of silently defaulting.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

UNPARSEABLE = "unparseable"  # the prediction of an answer no rule could read; always scored wrong
LETTERS = "ABCDEFGHIJ"

SYSTEM_PROMPT = ("You are a clinical research assistant helping to design clinical trials and conduct "
                 "systematic reviews. Answer with the JSON object the user asks for.")


@dataclass
class Record:
    """One candidate sample before splitting: its key, the trials/papers it is built from, its data."""

    key: str  # trial_uid for trial tasks, review PMID for review tasks
    trial_uids: list[str]
    pmids: list[str]
    data: dict[str, Any]
    group: str = ""  # distractor group (condition MeSH + phase, ...) for multiple-choice tasks
    extra: dict[str, Any] = field(default_factory=dict)


def stable_hash(*parts: Any) -> str:
    """Hex SHA-256 of the parts joined by a separator: identical on every machine and Python run."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the parts (the split and the option order use it)."""
    return int(stable_hash(*parts)[:15], 16) / 16**15


def dumps(obj: Any) -> str:
    """Canonical JSON (sorted keys, no ASCII escaping) so equal content gives equal strings and hashes."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def load_json(value: Any) -> Any:
    """A sample's ``input``/``reference`` as a dict: stored as JSON text in Delta, already a dict in memory."""
    return json.loads(value) if isinstance(value, str) else value


def answer_json(obj: Any) -> str:
    """The reference answer text: readable JSON in the key order the prompt asks for."""
    return json.dumps(obj, ensure_ascii=False)


# --------------------------------------------------------------------------------------- parsing
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def _first_json_object(text: str) -> Any | None:
    """The first balanced ``{...}`` in ``text`` that parses as JSON, scanning each opening brace."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = decoder.raw_decode(text[i:])
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def extract_json(text: str | None) -> dict[str, Any] | None:
    """JSON object from a model answer: the whole text, a fenced block, or the first object in prose."""
    if not text:
        return None
    text = text.strip()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except ValueError:
        pass
    for block in _FENCE.findall(text):
        try:
            obj = json.loads(block.strip())
            if isinstance(obj, dict):
                return obj
        except ValueError:
            obj = _first_json_object(block)
            if obj is not None:
                return obj
    return _first_json_object(text)


def get_key(obj: dict[str, Any], *names: str) -> Any:
    """A value under any of ``names``, ignoring case and spaces/underscores (models vary the key)."""
    norm = {re.sub(r"[\s_\-]", "", k.lower()): v for k, v in obj.items()}
    for name in names:
        key = re.sub(r"[\s_\-]", "", name.lower())
        if key in norm:
            return norm[key]
    return None


# ------------------------------------------------------------------------------- multiple choice
def option_order(sample_key: str, correct: Any, distractors: Sequence[Any]) -> tuple[list[Any], str]:
    """Options with the correct one at a deterministic, evenly spread position; returns (options, letter).

    The correct position is ``hash(key) mod n`` so over many samples every letter is correct equally
    often; distractors keep their (already deterministic) order around it.
    """
    n = len(distractors) + 1
    pos = int(stable_hash("position", sample_key)[:8], 16) % n
    options = list(distractors[:pos]) + [correct] + list(distractors[pos:])
    return options, LETTERS[pos]


def parse_choice(text: str | None, n_options: int = 10) -> str:
    """A letter from ``{"answer_choice": "B"}``, else from 'answer: B' / '(B)' prose, else UNPARSEABLE."""
    allowed = LETTERS[:n_options]
    obj = extract_json(text)
    if obj is not None:
        val = get_key(obj, "answer_choice", "answer", "choice")
        if isinstance(val, str):
            m = re.match(r"\s*\(?([A-Za-z])\)?(?:[\s.:)]|$)", val)
            if m and m.group(1).upper() in allowed:
                return m.group(1).upper()
    if text:
        m = re.search(r"answer(?:_choice)?\W{0,5}(?:is\s+)?(?:option\s+)?\(?([A-J])\b\)?", text, re.I)
        if m and m.group(1).upper() in allowed:
            return m.group(1).upper()
        m = re.fullmatch(r"\s*\(?([A-J])\)?[.]?\s*", text)
        if m and m.group(1).upper() in allowed:
            return m.group(1).upper()
    return UNPARSEABLE


def mc_messages(question: str, options: dict[str, str], instruction: str) -> list[dict[str, str]]:
    """The system + user prompt of a multiple-choice task, with the JSON answer format spelled out."""
    lines = [question, "", "Options:"] + [f"{k}. {v}" for k, v in options.items()]
    lines += ["", instruction,
              'Answer in JSON: {"step_by_step_thinking": "...", "answer_choice": "<letter>"}']
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def truncate(text: str | None, max_chars: int) -> str:
    """Text cut at a word boundary to ``max_chars`` (a cheap, deterministic token budget: ~4 chars/token)."""
    text = (text or "").strip()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0]
    return cut + " ..."


def pick_distractors(key: str, candidates: Iterable[tuple[str, Any]], k: int,
                     same: Callable[[Any], bool] | None = None) -> list[tuple[str, Any]]:
    """Up to ``k`` candidates (id, value) ordered by hash(key, id), skipping those ``same`` rejects."""
    ranked = sorted(candidates, key=lambda c: stable_hash("distractor", key, c[0]))
    out: list[tuple[str, Any]] = []
    for cid, value in ranked:
        if same is not None and same(value):
            continue
        out.append((cid, value))
        if len(out) == k:
            break
    return out
