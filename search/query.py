"""The one query language of ``moments search``, parsed here into a small tree each store compiles.

Both backends take the tree from :func:`parse` and compile it themselves
(:mod:`search.elastic` to Query DSL, :mod:`search.sqlite` to FTS5 ``MATCH`` plus SQL),
so the same query returns the same posts on either store, and no user text ever
reaches a backend's own query syntax.

Syntax (operators are upper case; precedence ``NOT`` > ``AND`` > ``OR``):

* ``delay``: a word, in any free-text field (post text, title, author's display
  name: the fields marked ``{"index": "text"}``); case-insensitive, whole words.
* ``"lost bag"``: a phrase, its words in this order, inside one field.
* ``refu*``: a word starting with ``refu``.
* ``refund late``, ``refund AND late``: both; ``refund OR late``: either;
  ``NOT late``: every post without it; ``( ... )`` groups.
* ``field:value``: ``touchpoint:baggage``, ``sentiment:negative``, ``moment:misery``,
  ``source:reddit``, ``lang:en``, ``brand:"Northwind Air"``, ``author:@handle``
  (exact value, case-insensitive; ``value*`` for a prefix); ``text:word`` and
  ``title:"a phrase"`` restrict free text to one field; ``field:(a OR b)`` applies
  a field to a group. Any other string or date field of the schema works by its
  dotted path (``classification.model_version:v3``, ``url:...``).
* Dates: ``created_at:2026-11-01`` (that whole UTC day), ``created_at:>=2026-11-01``,
  ``created_at:<2026-11-02T12:00:00Z``, ``>``, ``<=``. A date or time stands for the
  whole day, minute, second or millisecond it names (``<=2026-11-01`` includes all of
  that day; ``>2026-11-01`` starts the next); a time without a zone is UTC. Times
  are compared to the millisecond, as Elasticsearch stores them.

Anything that is not this syntax is a :class:`QuerySyntaxError` naming the column
(1-based) where it went wrong, never a guess.

Matching rules both stores follow: a word is split into *tokens* (runs of letters
and digits); a word of several tokens (``check-in``) matches like a phrase of
them. Known differences, from the two tokenizers (the Elasticsearch ``standard``
analyzer and FTS5 ``unicode61``), not from this language: SQLite folds diacritics
(``cafe`` finds ``café``) and Elasticsearch does not; Elasticsearch splits CJK text
into single characters where FTS5 keeps a run as one token; and Elasticsearch keeps
some punctuated words whole (``don't``, ``3.5``, ``foo_bar``) that FTS5 splits, so
the split form (``don t``) matches only on SQLite.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, NoReturn

from moments.errors import UsageError
from search.mapping import sqlite_columns, text_fields

#: The deepest nesting of parentheses a query may have. Elasticsearch refuses bool
#: queries nested deeper than 30 (``indices.query.bool.max_nested_depth``); each level
#: of parentheses costs at most three.
MAX_DEPTH = 8
#: The most words, phrases and field values in one query.
MAX_TERMS = 256


class QuerySyntaxError(UsageError):
    """A query that is not valid syntax (exit 2), with where it went wrong.

    Attributes:
        query: The query as given.
        position: 0-based index of the offending character in ``query``.
        reason: What is wrong, in a few words.
    """

    def __init__(self, query: str, position: int, reason: str) -> None:
        self.query = query
        self.position = max(0, min(position, len(query)))
        self.reason = reason
        where = f"syntax error at column {self.column}: {reason}"
        super().__init__(f"{where} in: {_printable(query)}" if query.strip() else where)

    @property
    def column(self) -> int:
        """1-based column of the offending character (one past the end for "ends too early")."""
        return self.position + 1

    @property
    def caret(self) -> str:
        """Two lines: the query, and a ``^`` under the offending character."""
        return f"{_printable(self.query)}\n{' ' * self.position}^"


# ------------------------------------------------------------------------------ the tree


@dataclass(frozen=True)
class Term:
    """A word in the free-text fields (``field``: only that one, by dotted path)."""

    text: str
    field: str | None = None


@dataclass(frozen=True)
class Phrase:
    """Words in this order inside one free-text field."""

    text: str
    field: str | None = None


@dataclass(frozen=True)
class Prefix:
    """A word starting with ``text`` (the ``*`` removed)."""

    text: str
    field: str | None = None


@dataclass(frozen=True)
class FieldMatch:
    """A string field (by dotted path) equal to ``value``, or starting with it; case-insensitive."""

    field: str
    value: str
    prefix: bool = False


@dataclass(frozen=True)
class Range:
    """A date field in ``[gte, lt)``; a missing bound is open. Posts without the date never match it."""

    field: str
    gte: datetime | None = None
    lt: datetime | None = None


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class MatchAll:
    """Every post (never produced by :func:`parse`; for callers building trees)."""


Node = Term | Phrase | Prefix | FieldMatch | Range | And | Or | Not | MatchAll
TextLeaf = Term | Phrase | Prefix


# ------------------------------------------------------------------------------ fields

FieldKind = Literal["text", "keyword", "keywords", "datetime"]


@dataclass(frozen=True)
class QueryField:
    """A field a query can name.

    Attributes:
        name: As typed in a query (``touchpoint``).
        path: Where it is in a :class:`~moments.records.Post`.
        kind: ``text`` (full-text), ``keyword`` (a string), ``keywords`` (a list of
            strings) or ``datetime``.
    """

    name: str
    path: tuple[str, ...]
    kind: FieldKind

    @property
    def dotted(self) -> str:
        """The Elasticsearch field (``classification.touchpoint``), also how the tree names it."""
        return ".".join(self.path)

    @property
    def column(self) -> str:
        """The SQLite column: a ``posts`` column, or an FTS5 column for text fields."""
        return "_".join(self.path)


#: Short names for the fields people filter on most.
ALIASES: dict[str, str] = {
    "touchpoint": "classification.touchpoint",
    "sentiment": "classification.sentiment",
    "moment": "classification.moment",
    "author": "author.handle",
}


def _schema_fields() -> dict[str, QueryField]:
    """Every searchable field by dotted path, derived from the schema, plus :data:`ALIASES`."""
    fields: dict[str, QueryField] = {}
    for text in text_fields():
        fields[text.dotted] = QueryField(text.dotted, text.path, "text")
    for column in sqlite_columns():
        dotted = ".".join(column.path)
        kind: FieldKind
        if column.kind == "datetime":
            kind = "datetime"
        elif column.kind == "json":
            kind = "keywords"  # lists of strings (brand, urls, mentions)
        elif column.sql_type == "TEXT":
            kind = "keyword"
        else:
            continue  # numbers and booleans: not part of the language (yet)
        fields[dotted] = QueryField(dotted, column.path, kind)
    for alias, dotted in ALIASES.items():
        if dotted not in fields:
            raise RuntimeError(f"query alias {alias!r} names {dotted!r}, which the schema does not have")
        fields[alias] = replace(fields[dotted], name=alias)
    return fields


#: Field name (as typed) -> field.
FIELDS: dict[str, QueryField] = _schema_fields()
#: Dotted path (as the tree names fields) -> field.
FIELDS_BY_PATH: dict[str, QueryField] = {f.dotted: f for f in FIELDS.values() if f.name == f.dotted}

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_SHOWN_FIELDS = ("text", "title", "author", "brand", "source", "lang", "touchpoint", "sentiment", "moment")


# ------------------------------------------------------------------------------ text helpers


def _is_space(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cc"


def _printable(text: str) -> str:
    # One character for one, so a column still points at the same place.
    return "".join(" " if _is_space(c) else c for c in text)


def is_token_char(char: str) -> bool:
    """Whether ``char`` is part of a word for both tokenizers (letters, digits, marks, emoji)."""
    category = unicodedata.category(char)
    return category[0] in "LN" or category in ("Co", "Mn") or ord(char) > 0xFFFF


def word_tokens(text: str) -> list[str]:
    """The tokens of ``text``: maximal runs of :func:`is_token_char` characters."""
    tokens: list[str] = []
    current: list[str] = []
    for char in text:
        if is_token_char(char):
            current.append(char)
        elif current:
            tokens.append("".join(current))
            current = []
    if current:
        tokens.append("".join(current))
    return tokens


def fold(value: str) -> str:
    """Case-fold a field value the way both stores compare them: per character, to lower case.

    Characters whose lower case is more than one character are kept, so lengths (and
    prefixes) stay aligned with Elasticsearch's ``case_insensitive`` matching.
    """
    return "".join(low if len(low := char.lower()) == 1 else char for char in value)


# ------------------------------------------------------------------------------ dates

_DATE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?)?"
)
_COMPARATOR = re.compile(r">=|<=|>|<")


def _parse_instant(text: str) -> tuple[datetime, timedelta] | None:
    """``(start, unit)`` for a date or time: the instant it names and how long it lasts."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    try:
        day = datetime.strptime(match["date"], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    if match["hour"] is None:
        return day, timedelta(days=1)
    hour, minute = int(match["hour"]), int(match["minute"])
    second = int(match["second"] or 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    start = day.replace(hour=hour, minute=minute, second=second)
    if match["fraction"] is not None:
        # Milliseconds, as Elasticsearch stores dates; finer digits are dropped.
        start = start.replace(microsecond=int(match["fraction"][:3].ljust(3, "0")) * 1000)
        unit = timedelta(milliseconds=1)
    else:
        unit = timedelta(seconds=1) if match["second"] is not None else timedelta(minutes=1)
    zone = match["zone"]
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset >= timedelta(hours=24):
            return None
        start -= sign * offset
    return start, unit


def _shift(value: datetime, by: timedelta) -> datetime | None:
    try:
        return value + by
    except OverflowError:
        return None  # past year 9999: the bound is open


# ------------------------------------------------------------------------------ parser

TokenKind = Literal["(", ")", "AND", "OR", "NOT", "WORD", "PHRASE", "END"]
_OPERATORS: dict[str, TokenKind] = {"AND": "AND", "OR": "OR", "NOT": "NOT"}


@dataclass(frozen=True)
class _Token:
    kind: TokenKind
    text: str
    start: int
    glued: bool  # directly after the previous token, no space between


def _lex(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n, glued = 0, len(query), False
    while i < n:
        char = query[i]
        if _is_space(char):
            i += 1
            glued = False
            continue
        if char in "()":
            tokens.append(_Token("(" if char == "(" else ")", char, i, glued))
            i += 1
        elif char == '"':
            close = query.find('"', i + 1)
            if close < 0:
                raise QuerySyntaxError(query, i, "unclosed '\"' (a phrase needs a closing quote)")
            tokens.append(_Token("PHRASE", _printable(query[i + 1 : close]), i, glued))
            i = close + 1
        else:
            j = i
            while j < n and not _is_space(query[j]) and query[j] not in '()"':
                j += 1
            word = query[i:j]
            tokens.append(_Token(_OPERATORS.get(word, "WORD"), word, i, glued))
            i = j
        glued = True
    tokens.append(_Token("END", "", n, False))
    return tokens


_OPERATOR_LOOKALIKES = {"&&": "AND", "&": "AND", "||": "OR", "|": "OR", "!": "NOT", "-": "NOT", "+": "AND"}


class _Parser:
    """Recursive descent over :func:`_lex` tokens; see the module docstring for the grammar."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _lex(query)
        self.index = 0
        self.depth = 0
        self.terms = 0

    def error(self, position: int, reason: str) -> NoReturn:
        raise QuerySyntaxError(self.query, position, reason)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        if self.peek().kind == "END":
            self.error(0, "the query is empty")
        node = self.parse_or(None)
        token = self.peek()
        if token.kind == ")":
            self.error(token.start, "unexpected ')' (no '(' to close)")
        return node

    def parse_or(self, field: QueryField | None) -> Node:
        children = [self.parse_and(field)]
        while self.peek().kind == "OR":
            self.expect_operand(self.take())
            children.append(self.parse_and(field))
        return _flatten(Or, children)

    def parse_and(self, field: QueryField | None) -> Node:
        children = [self.parse_unary(field)]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.expect_operand(self.take())
            elif kind not in ("NOT", "(", "WORD", "PHRASE"):
                break
            children.append(self.parse_unary(field))
        return _flatten(And, children)

    def parse_unary(self, field: QueryField | None) -> Node:
        negations = 0
        while self.peek().kind == "NOT":
            self.expect_operand(self.take())
            negations += 1
        node = self.parse_primary(field)
        return Not(node) if negations % 2 else node  # NOT NOT x is x

    def expect_operand(self, operator: _Token) -> None:
        token = self.peek()
        if token.kind == "END":
            self.error(operator.start, f"'{operator.text}' needs a search term after it")
        if token.kind in ("AND", "OR"):
            self.error(token.start, f"'{token.text}' cannot follow '{operator.text}'")
        if token.kind == ")":
            self.error(token.start, f"unexpected ')' after '{operator.text}'")

    def parse_primary(self, field: QueryField | None) -> Node:
        token = self.take()
        if token.kind == "(":
            return self.group(token, field)
        if token.kind == "WORD":
            return self.word(token, field)
        if token.kind == "PHRASE":
            return self.value(field, token.text, token.start, quoted=True) if field else self.text(token, None)
        if token.kind == ")":
            self.error(token.start, "unexpected ')'")
        if token.kind in ("AND", "OR"):
            self.error(token.start, f"'{token.text}' needs a search term before it")
        self.error(token.start, "expected a search term")

    def group(self, opening: _Token, field: QueryField | None) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.error(opening.start, f"too many nested parentheses (at most {MAX_DEPTH})")
        if self.peek().kind == ")":
            self.error(opening.start, "empty parentheses")
        if self.peek().kind == "END":
            self.error(opening.start, "unclosed '('")
        node = self.parse_or(field)
        if self.peek().kind != ")":
            self.error(opening.start, "unclosed '('")
        self.take()
        self.depth -= 1
        return node

    def count(self, position: int) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            self.error(position, f"too many search terms (at most {MAX_TERMS})")

    def word(self, token: _Token, field: QueryField | None) -> Node:
        if field is not None:
            # Inside ``field:( ... )`` every word is a value of that field, colons and all.
            return self.value(field, token.text, token.start, quoted=False)
        name, colon, rest = token.text.partition(":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            return self.text(token, None)
        target = FIELDS.get(name)
        if target is None:
            shown = ", ".join((*_SHOWN_FIELDS, "created_at"))
            self.error(
                token.start,
                f"unknown field '{name}' (fields: {shown}, ...); to search for the text, quote it: \"{token.text}\"",
            )
        if rest:
            return self.value(target, rest, token.start + len(name) + 1, quoted=False)
        following = self.peek()
        if following.glued and following.kind == "PHRASE":
            self.take()
            return self.value(target, following.text, following.start, quoted=True)
        if following.glued and following.kind == "(":
            return self.group(self.take(), target)
        self.error(token.start + len(name), f"'{name}:' needs a value right after the colon")

    def value(self, field: QueryField, text: str, position: int, *, quoted: bool) -> Node:
        if field.kind == "text":
            return self.text(_Token("PHRASE" if quoted else "WORD", text, position, False), field)
        self.count(position)
        if field.kind == "datetime":
            return self.range(field, text, position)
        if not text:
            self.error(position, f"'{field.name}:' needs a value")
        if quoted:
            return FieldMatch(field.dotted, text)
        if text[0] in "<>":
            self.error(position, f"'{field.name}' is not a date field: it takes a value, not a comparison")
        stem, star = (text[:-1], True) if text.endswith("*") else (text, False)
        if "*" in stem:
            self.error(position + stem.index("*"), "'*' only works at the end of a value (prefix search)")
        if star and not stem:
            self.error(position, "a prefix search needs something before '*'")
        return FieldMatch(field.dotted, stem, prefix=star)

    def text(self, token: _Token, field: QueryField | None) -> Node:
        self.count(token.start)
        where = field.dotted if field else None
        text = token.text
        if token.kind == "PHRASE":
            if not word_tokens(text):
                self.error(token.start, "a phrase needs at least one letter or digit")
            return Phrase(text, where)
        if len(text) > 1 and text[0] == "-" and is_token_char(text[1]):
            self.error(
                token.start, f"'-' does not exclude here: write NOT {text[1:]}, or quote \"{text}\" to search for it"
            )
        stem, star = (text[:-1], True) if text.endswith("*") else (text, False)
        if "*" in stem:
            self.error(token.start + stem.index("*"), "'*' only works at the end of a word (prefix search)")
        if not word_tokens(stem):
            if star:
                self.error(token.start, "a prefix search needs letters or digits before '*'")
            hint = _OPERATOR_LOOKALIKES.get(text)
            self.error(
                token.start,
                f"'{text}' has no letters or digits to search for" + (f" (did you mean {hint}?)" if hint else ""),
            )
        return Prefix(stem, where) if star else Term(text, where)

    def range(self, field: QueryField, text: str, position: int) -> Node:
        comparator = _COMPARATOR.match(text)
        operator = comparator.group() if comparator else ""
        value = text[len(operator) :]
        parsed = _parse_instant(value)
        if parsed is None:
            at = position + len(operator)
            if not value:
                self.error(at, f"'{field.name}:{operator}' needs a date, like 2026-11-01 or 2026-11-01T12:00:00Z")
            self.error(at, f"'{value}' is not a date like 2026-11-01 or 2026-11-01T12:00:00Z")
        start, unit = parsed
        after = _shift(start, unit)
        if operator == ">=":
            return Range(field.dotted, gte=start)
        if operator == ">":
            # Strictly after all of it; past year 9999 nothing is.
            return Range(field.dotted, gte=after) if after else Not(MatchAll())
        if operator == "<":
            return Range(field.dotted, lt=start)
        if operator == "<=":
            return Range(field.dotted, lt=after)  # past year 9999: every post with a date
        return Range(field.dotted, gte=start, lt=after)


def _flatten(kind: type[And] | type[Or], children: list[Node]) -> Node:
    if len(children) == 1:
        return children[0]
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, kind) else (child,))
    return kind(tuple(flat))


def parse(text: str) -> Node:
    """Parse a query into its tree.

    Args:
        text: What the user typed.

    Returns:
        The tree: nested :class:`And`, :class:`Or` and :class:`Not` over leaves
        (:class:`Term`, :class:`Phrase`, :class:`Prefix`, :class:`FieldMatch`,
        :class:`Range`). ``a AND (b AND c)`` flattens to one :class:`And`, and
        ``NOT NOT x`` is ``x``.

    Raises:
        QuerySyntaxError: ``text`` is empty or not valid syntax; it names the column.
    """
    return _Parser(text).parse()


def text_leaves(node: Node, *, positive: bool = True) -> list[tuple[TextLeaf, bool]]:
    """The free-text leaves of ``node``, each with whether it is positive (under an even number of NOTs)."""
    if isinstance(node, Term | Phrase | Prefix):
        return [(node, positive)]
    if isinstance(node, And | Or):
        return [leaf for child in node.children for leaf in text_leaves(child, positive=positive)]
    if isinstance(node, Not):
        return text_leaves(node.child, positive=not positive)
    return []


# ------------------------------------------------------------------------------ periods and sorting

#: The orders ``moments search --sort`` offers. Every order ends with the post ``id`` (ascending) as a
#: tiebreaker, so it is total, the same on both stores, and a page can start after the last post of the one before.
#:
#: * ``relevance``: best match first (Elasticsearch ``_score``, SQLite bm25 over the query's positive text
#:   leaves); posts that match only through filters or ``NOT`` rank after those, by id.
#: * ``recent``: newest ``created_at`` first (to the millisecond, as Elasticsearch stores it); undated posts last.
#: * ``engagement``: highest :meth:`moments.records.Engagement.total` first: likes (or, on vote-based sources
#:   without likes, a positive net score) + shares + replies + quotes, an unknown counter counting 0.
SORTS: tuple[str, ...] = ("relevance", "recent", "engagement")
SortOrder = Literal["relevance", "recent", "engagement"]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str, *, now: datetime, option: str) -> datetime:
    """A ``--since``/``--until`` value as an aware UTC instant, cut to the millisecond.

    ``7d``, ``24h``, ``30m``, ``2w`` (also decimals: ``1.5h``) mean that long before
    ``now``; anything else must be an ISO date (``2026-11-01``, midnight UTC) or time
    (``2026-11-01T09:00``, UTC unless it names a zone). The same grammar as ``moments report``.

    Raises:
        UsageError: ``value`` is none of these (exit 2), naming the option.
    """
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        amount, unit = float(match.group(1)), _UNITS[match.group(2).lower()]
        try:
            instant = now - timedelta(**{unit: amount})
        except OverflowError:
            raise UsageError(f"{option} {value!r} reaches back further than year 1") from None
        return _utc_millis(instant)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not a time: use a duration before now (30m, 24h, 7d, 2w), "
            "an ISO date (2026-11-01) or an ISO time (2026-11-01T09:00Z)"
        ) from None
    return _utc_millis(parsed)


def _utc_millis(value: datetime) -> datetime:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def filtered(query: str | Node, *, since: datetime | None = None, until: datetime | None = None) -> Node:
    """``query`` (text or a tree; blank text: every post) restricted to ``created_at`` in ``[since, until)``.

    Both stores compile this one tree, so ``--since``/``--until`` select the same posts on
    either. The bounds are cut to the millisecond (a naive datetime is UTC), as Elasticsearch
    stores dates; with a bound, undated posts never match.

    Raises:
        QuerySyntaxError: ``query`` is text that is not valid syntax.
    """
    if isinstance(query, str):
        node: Node = parse(query) if query.strip() else MatchAll()
    else:
        node = query
    if since is None and until is None:
        return node
    window = Range(
        "created_at",
        gte=_utc_millis(since) if since is not None else None,
        lt=_utc_millis(until) if until is not None else None,
    )
    if isinstance(node, MatchAll):
        return window
    children = node.children if isinstance(node, And) else (node,)
    return And((*children, window))


def check_sort(sort: str) -> SortOrder:
    """``sort`` if it is one of :data:`SORTS`.

    Raises:
        UsageError: It is not (exit 2), listing the orders.
    """
    if sort not in SORTS:
        raise UsageError(f"unknown sort {sort!r}; sort by one of: {', '.join(SORTS)}")
    return sort  # type: ignore[return-value]


def query_tree(query: str | None) -> Node:
    """The tree of a search's query: ``None`` is every post; any text, a blank one too, must parse.

    Raises:
        QuerySyntaxError: ``query`` is not valid syntax (blank text asks for nothing: an error).
    """
    return MatchAll() if query is None else parse(query)
