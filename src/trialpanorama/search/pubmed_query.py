"""PubMed Boolean query syntax -> an AST -> a tantivy query, so study-search answers are scored offline.

Supported, as PubMed documents it: AND / OR / NOT (upper case) evaluated strictly left to right (PubMed
has no operator precedence: ``a OR b AND c`` is ``(a OR b) AND c``), parentheses, quoted phrases,
``*`` truncation (``diabet*``, becomes a regex prefix query per token), adjacent terms joined by an
implicit AND, and field tags ``[tiab] [ti] [ab] [mh] [mesh] [majr] [pt] [tw] [all]`` (also long forms
like ``[Title/Abstract]``, ``[MeSH Terms]``, ``[Publication Type]``). Project decisions where PubMed's
behaviour cannot be reproduced offline: an untagged term searches title, abstract, MeSH headings and
keywords (PubMed's automatic term mapping is not reproduced); a tag after several bare words applies to
all of them (``heart attack[tiab]`` = both words in title/abstract; with ``[mh]``/``[pt]`` the run is
one controlled name, a phrase: ``randomized controlled trial[pt]``); ``[mh]`` does not explode to narrower
descriptors (the index holds no tree); an unknown tag searches all fields; a lower-case ``and``/``or`` is
a plain word, as in PubMed. A query that cannot be parsed raises ``QuerySyntaxError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

FIELDS_ALL = ("title", "abstract", "mesh", "keywords")
TAGS: dict[str, tuple[str, ...]] = {
    "tiab": ("title", "abstract"), "title/abstract": ("title", "abstract"),
    "ti": ("title",), "title": ("title",), "ab": ("abstract",), "abstract": ("abstract",),
    "mh": ("mesh",), "mesh": ("mesh",), "mesh terms": ("mesh",), "majr": ("mesh",),
    "mesh major topic": ("mesh",), "mh:noexp": ("mesh",),
    "pt": ("pubtype",), "publication type": ("pubtype",),
    "tw": ("title", "abstract", "mesh", "keywords"), "text word": ("title", "abstract", "mesh", "keywords"),
    "all": FIELDS_ALL, "all fields": FIELDS_ALL, "ot": ("keywords",), "kw": ("keywords",),
}


class QuerySyntaxError(ValueError):
    """The text is not a PubMed query this translator can read (unbalanced parentheses, dangling operator)."""


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]  # lower-cased tokens; more than one = a phrase
    fields: tuple[str, ...]
    prefix: bool = False  # the last word was truncated with *


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR | NOT
    left: Node
    right: Node


Node = Union[Term, BoolOp]  # noqa: UP007 - a runtime alias used before 3.10-only syntax would evaluate

_TOKEN = re.compile(r'\s*(?:(\()|(\))|"([^"]*)"(\s*\[[^\]]*\])?|([^\s()"\[]+)(\s*\[[^\]]*\])?|(\[[^\]]*\]))')
_WORD = re.compile(r"[0-9a-z]+")


def tokenize_text(text: str) -> list[str]:
    """Lower-case alphanumeric runs: the same split tantivy's default tokenizer makes at index time."""
    return [w for w in _WORD.findall(text.lower()) if len(w) <= 40]


def _fields(tag: str | None) -> tuple[str, ...]:
    if not tag:
        return FIELDS_ALL
    key = tag.strip().strip("[]").strip().lower()
    return TAGS.get(key, FIELDS_ALL)


def _lex(query: str) -> list[tuple[str, object]]:
    """Tokens: ('(',), (')',), ('OP', 'AND'), ('WORDS', (text, tag, quoted))."""
    out: list[tuple[str, object]] = []
    pos = 0
    query = query.strip()
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m or m.end() == pos:
            if query[pos:].strip() == "":
                break
            raise QuerySyntaxError(f"cannot read query at: {query[pos:pos + 30]!r}")
        pos = m.end()
        lpar, rpar, phrase, ptag, word, wtag, lone_tag = m.groups()
        if lpar:
            out.append(("(", None))
        elif rpar:
            out.append((")", None))
        elif phrase is not None:
            out.append(("WORDS", (phrase, ptag, True)))
        elif word is not None:
            if word in ("AND", "OR", "NOT") and not wtag:
                out.append(("OP", word))
            else:
                out.append(("WORDS", (word, wtag, False)))
        elif lone_tag:  # a tag separated from its term by a space: attach to the previous term
            if not out or out[-1][0] != "WORDS":
                raise QuerySyntaxError(f"field tag {lone_tag} without a term")
            text, _, quoted = out[-1][1]  # type: ignore[misc]
            out[-1] = ("WORDS", (text, lone_tag, quoted))
    return out


def _term(text: str, tag: str | None) -> Term | None:
    prefix = text.rstrip().endswith("*")
    words = tokenize_text(text)
    if not words:
        return None
    return Term(tuple(words), _fields(tag), prefix)


class _Parser:
    def __init__(self, tokens: list[tuple[str, object]]):
        self.toks = tokens
        self.i = 0

    def peek(self) -> tuple[str, object] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise QuerySyntaxError("unbalanced ')'")
        if node is None:
            raise QuerySyntaxError("empty query")
        return node

    def expr(self) -> Node | None:
        """Operands joined left to right by explicit or implicit (AND) operators."""
        node = self.operand()
        while True:
            tok = self.peek()
            if tok is None or tok[0] == ")":
                return node
            op = "AND"
            if tok[0] == "OP":
                op = str(tok[1])
                self.i += 1
            right = self.operand()
            if right is None:
                raise QuerySyntaxError(f"operator {op} without a right operand")
            if node is None:
                if op == "NOT":
                    raise QuerySyntaxError("NOT without a left operand")
                node = right
                continue
            node = BoolOp(op, node, right)

    def operand(self) -> Node | None:
        tok = self.peek()
        if tok is None:
            return None
        if tok[0] == "(":
            self.i += 1
            node = self.expr()
            if self.peek() is None or self.peek()[0] != ")":
                raise QuerySyntaxError("unbalanced '('")
            self.i += 1
            return node
        if tok[0] == "WORDS":
            # a run of bare words ending in a tagged word: the tag applies to the whole run
            run: list[tuple[str, str | None, bool]] = []
            while self.peek() is not None and self.peek()[0] == "WORDS":
                text, tag, quoted = self.peek()[1]  # type: ignore[misc]
                run.append((text, tag, quoted))
                self.i += 1
                if tag or quoted:
                    break
            last_tag = run[-1][1]
            if not run[-1][2] and last_tag:
                if _fields(last_tag) in (("mesh",), ("pubtype",)):  # controlled names: one phrase
                    run = [(" ".join(t for t, _, _ in run), last_tag, True)]
                else:
                    run = [(t, tg or last_tag, q) for t, tg, q in run]
            terms: list[Node] = [t for t in (_term(text, tag) for text, tag, _ in run) if t]
            if not terms:
                return self.operand() if self.peek() and self.peek()[0] == "WORDS" else None
            node = terms[0]
            for t in terms[1:]:
                node = BoolOp("AND", node, t)
            return node
        if tok[0] == ")":
            return None
        if tok[0] == "OP":
            raise QuerySyntaxError(f"operator {tok[1]} without a left operand")
        return None


def parse_pubmed(query: str) -> Node:
    """The AST of a PubMed query (raises ``QuerySyntaxError``)."""
    return _Parser(_lex(query)).parse()


def to_string(node: Node) -> str:
    """A canonical, fully parenthesized rendering of the AST (tests and logs read this)."""
    if isinstance(node, Term):
        w = " ".join(node.words) + ("*" if node.prefix else "")
        body = f'"{w}"' if len(node.words) > 1 else w
        return f"{body}[{','.join(node.fields)}]"
    return f"({to_string(node.left)} {node.op} {to_string(node.right)})"
