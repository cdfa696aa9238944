"""Name normalization: the same function turns registry names and vocabulary terms into match keys.

Three keys per name, strongest first:

- ``exact``: Unicode NFKC, case-folded, whitespace collapsed, surrounding punctuation dropped. Equal exact keys
  are an exact match (against a preferred name) or a synonym match (against an entry term or synonym).
- ``norm``: accents and Greek letters folded, capitalised abbreviations expanded (conditions), possessives,
  punctuation and letter/digit boundaries split, Roman numerals to digits (conditions), registry phrasing
  mapped to MeSH phrasing, stopwords dropped, dose amounts and dosage-form/route words dropped (drugs),
  words singularized, then sorted: case, order, punctuation and plural no longer matter.
- ``relaxed``: the ``norm`` key of a registry name with stage/severity words (conditions) or salt words (drugs)
  also dropped; it is compared with the vocabulary's ``norm`` keys only, so vocabulary terms keep their words.

Pure Python, applied on executors through pandas UDFs; built once from ``conf/linking.yaml``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

KINDS = ("condition", "drug")

_WORD = re.compile(r"[A-Za-z0-9]+")
_TOKEN = re.compile(r"[a-z]+|[0-9]+")
_SPACE = re.compile(r"\s+")
_POSSESSIVE = re.compile(r"(\w)['’]s\b")
_EDGE_PUNCT = " \t\r\n.,;:-_/\\|*\"'()[]{}"


def _fold(text: str, greek: Mapping[str, str]) -> str:
    text = unicodedata.normalize("NFKC", text)
    if greek:
        text = "".join(f" {greek[ch]} " if ch in greek else ch for ch in text)
    text = text.replace("ß", "ss").replace("æ", "ae").replace("œ", "oe").replace("ø", "o")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def exact_key(name: str | None) -> str | None:
    """Case-folded, NFKC, single-spaced, without surrounding punctuation; None for a blank name."""
    if name is None:
        return None
    s = _SPACE.sub(" ", unicodedata.normalize("NFKC", str(name)).casefold()).strip(_EDGE_PUNCT)
    return s or None


@dataclass(frozen=True)
class Keys:
    exact: str | None
    norm: str | None
    relaxed: str | None
    excluded: str | None  # why the name must never link (None: it may)


class Normalizer:
    """Builds the keys of a name for one kind (``condition`` or ``drug``) from the ``normalize`` config."""

    def __init__(self, cfg: Mapping[str, Any], kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
        norm = dict(cfg.get("normalize") or {})
        self.kind = kind
        self.greek = {str(k): str(v) for k, v in (norm.get("greek") or {}).items()}
        self.stopwords = {str(w).lower() for w in norm.get("stopwords") or []}
        self.no_singular = {str(w).lower() for w in norm.get("no_singular") or []}
        self.roman = {str(k).lower(): str(v) for k, v in (norm.get("roman_numerals") or {}).items()}
        self.abbreviations = {str(k): str(v) for k, v in (norm.get("abbreviations") or {}).items()}
        self.modifiers = {str(w).lower() for w in norm.get("condition_modifiers") or []}
        self.modifier_patterns = [re.compile(p, re.I) for p in norm.get("condition_modifier_patterns") or []]
        self.salts = {str(w).lower() for w in norm.get("salt_words") or []}
        units = sorted({str(u).lower() for u in norm.get("dose_units") or []}, key=len, reverse=True)
        self.route_words = {str(w).lower() for w in norm.get("route_words") or []} | set(units)
        unit_alt = "|".join(re.escape(u) for u in units) or "mg"
        number = r"\d+(?:[.,]\d+)?(?:\s*(?:x|\*|×)\s*10\s*\^?\s*\d+)?"
        self.dose = re.compile(
            rf"(?<![a-z0-9])(?:{number})(?:\s*(?:-|–|to|/)\s*{number})*\s*(?:{unit_alt})(?:\s*/\s*[a-z0-9]+)*(?![a-z0-9])",
            re.I)
        # Phrase rules indexed by their first word, longest first.
        self.phrases: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
        if kind == "condition":
            for src, dst in (norm.get("phrase_synonyms") or {}).items():
                a, b = tuple(self._tokens(str(src))), tuple(self._tokens(str(dst)))
                if a:
                    self.phrases.setdefault(a[0], []).append((a, b))
            for rules in self.phrases.values():
                rules.sort(key=lambda p: -len(p[0]))
        self.never = {self._light(str(n)) for n in cfg.get("never_link") or []}
        self.never.discard("")
        self.never_patterns = [re.compile(p, re.I) for p in cfg.get("never_link_patterns") or []]

    # ------------------------------------------------------------------------------------- pieces
    def _tokens(self, text: str, drop: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """Lower-cased words (dropping ``drop`` as whole words), then split at letter/digit boundaries."""
        s = _POSSESSIVE.sub(r"\1", text.lower())
        out: list[str] = []
        for word in _WORD.findall(s):
            if word in drop:
                continue
            for tok in _TOKEN.findall(word):
                if self.kind == "condition" and tok in self.roman:
                    tok = self.roman[tok]
                out.append(tok)
        return out

    def _light(self, text: str) -> str:
        return " ".join(_TOKEN.findall(_fold(text, self.greek).lower()))

    def _expand_abbreviations(self, text: str) -> str:
        if self.kind != "condition" or not self.abbreviations:
            return text

        def repl(m: re.Match[str]) -> str:
            word = m.group(0)
            if len(word) >= 2 and word.upper() == word and word in self.abbreviations:
                return f" {self.abbreviations[word]} "
            return word

        return _WORD.sub(repl, text)

    def _apply_phrases(self, tokens: list[str]) -> list[str]:
        if not self.phrases:
            return tokens
        out: list[str] = []
        i = 0
        while i < len(tokens):
            for src, dst in self.phrases.get(tokens[i], ()):
                n = len(src)
                if tuple(tokens[i:i + n]) == src:
                    out.extend(dst)
                    i += n
                    break
            else:
                out.append(tokens[i])
                i += 1
        return out

    def _singular(self, tok: str) -> str:
        if tok in self.no_singular or not tok.isalpha():
            return tok
        if len(tok) > 4 and tok.endswith("ies"):
            return tok[:-3] + "y"
        if len(tok) > 4 and tok.endswith("uses"):
            return tok[:-2]
        if len(tok) > 3 and tok.endswith("s") and not tok.endswith(("ss", "us", "is")):
            return tok[:-1]
        return tok

    def _finish(self, tokens: Iterable[str]) -> str | None:
        words = sorted({self._singular(t) for t in tokens if t and t not in self.stopwords})
        return " ".join(words) or None

    # ----------------------------------------------------------------------------------- public API
    def excluded(self, name: str | None) -> str | None:
        """Why a name must never link ("never_link: placebo"), or None."""
        if name is None:
            return None
        for pat in self.never_patterns:
            if pat.search(name):
                return f"never_link pattern {pat.pattern}"
        light = self._light(name)
        if light in self.never:
            return f"never_link: {light}"
        if self.kind == "drug":
            stripped = " ".join(t for t in self._light(self.dose.sub(" ", name)).split() if t not in self.route_words)
            if stripped in self.never:
                return f"never_link: {stripped}"
        return None

    def keys(self, name: str | None, check_excluded: bool = True) -> Keys:
        if name is None or not str(name).strip():
            return Keys(None, None, None, None)
        name = str(name)
        exact = exact_key(name)
        text = _fold(self._expand_abbreviations(name), self.greek)
        if self.kind == "drug":
            text = self.dose.sub(" ", text)
        drop = self.route_words if self.kind == "drug" else frozenset()
        tokens = self._apply_phrases(self._tokens(text, drop))
        if self.kind == "drug":
            tokens = [t for t in tokens if t not in self.route_words]
        norm = self._finish(tokens)
        relaxed: str | None = None
        if self.kind == "condition":
            low = text.lower()
            for pat in self.modifier_patterns:
                low = pat.sub(" ", low)
            rtoks = [t for t in self._apply_phrases(self._tokens(low)) if t not in self.modifiers]
        else:
            rtoks = [t for t in tokens if t not in self.salts]
        relaxed = self._finish(rtoks)
        if relaxed == norm:
            relaxed = None
        return Keys(exact, norm, relaxed, self.excluded(name) if check_excluded else None)

    def norm(self, name: str | None) -> str | None:
        return self.keys(name).norm


KEYS_DDL = "exact STRING, norm STRING, relaxed STRING, excluded STRING"


def entity_keys_udf(cfg: Mapping[str, Any], vocabulary_terms: bool = False):
    """A pandas UDF: (entity, name) -> struct(exact, norm, relaxed, excluded), normalized as the entity's kind
    (``condition`` or ``drug``); one pass serves both kinds."""
    from pyspark.sql.functions import pandas_udf

    normalizers = {kind: Normalizer(cfg, kind) for kind in KINDS}
    check = not vocabulary_terms
    empty = Keys(None, None, None, None)

    @pandas_udf(KEYS_DDL)
    def _keys(entities: pd.Series, names: pd.Series) -> pd.DataFrame:
        rows = [normalizers[e].keys(n, check) if isinstance(n, str) and e in normalizers else empty
                for e, n in zip(entities, names, strict=True)]
        return pd.DataFrame({
            "exact": [k.exact for k in rows], "norm": [k.norm for k in rows],
            "relaxed": [k.relaxed for k in rows], "excluded": [k.excluded for k in rows],
        })

    return _keys
