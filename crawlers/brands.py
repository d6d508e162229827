"""Brand matching: which configured brands a post is about.

Keyword expressions (``keywords`` and ``exclude`` in ``brands.yaml``)::

    expr   := or
    or     := and ("OR" and)*
    and    := unary (["AND"] unary)*        # adjacent terms mean AND
    unary  := "NOT" unary | "(" expr ")" | TERM | "QUOTED PHRASE"

Terms and phrases match case-insensitively on word boundaries, so ``delay``
does not match ``delayed`` but ``"lost bag"`` matches ``Lost  bag!``. A term
ending in ``*`` is a prefix (``delay*`` matches ``delayed``). ``#tag`` and
``@handle`` terms match literally.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from moments.config import BrandConfig

Predicate = Callable[[str], bool]

_TOKEN = re.compile(r'"([^"]*)"|(\()|(\))|([^\s()"]+)')


class ExpressionError(ValueError):
    """A keyword expression that cannot be parsed."""


def _term_pattern(term: str) -> re.Pattern[str]:
    prefix = term.endswith("*") and len(term) > 1
    body = term[:-1] if prefix else term
    words = [re.escape(w) for w in body.split()]
    core = r"\s+".join(words)
    # Word boundaries that also work for terms starting with '#' or '@'; a
    # name also matches as a hashtag or mention ("#northwind", "@northwind").
    tail = r"" if prefix else r"(?!\w)"
    return re.compile(rf"(?<!\w){core}{tail}", re.IGNORECASE)


def _term(term: str) -> Predicate:
    pattern = _term_pattern(term)
    return lambda text: pattern.search(text) is not None


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens: list[tuple[str, str]] = []
        for match in _TOKEN.finditer(expression):
            phrase, lpar, rpar, word = match.groups()
            if phrase is not None:
                if phrase.strip():
                    self.tokens.append(("TERM", phrase.strip()))
            elif lpar:
                self.tokens.append(("(", lpar))
            elif rpar:
                self.tokens.append((")", rpar))
            elif word in ("AND", "OR", "NOT"):
                self.tokens.append((word, word))
            else:
                self.tokens.append(("TERM", word))
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Predicate:
        if not self.tokens:
            raise ExpressionError(f"empty expression: {self.expression!r}")
        result = self.parse_or()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.tokens[self.pos][1]!r} in {self.expression!r}")
        return result

    def parse_or(self) -> Predicate:
        parts = [self.parse_and()]
        while self.peek() == "OR":
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else (lambda text: any(p(text) for p in parts))

    def parse_and(self) -> Predicate:
        parts = [self.parse_unary()]
        while self.peek() in ("AND", "NOT", "(", "TERM"):
            if self.peek() == "AND":
                self.take()
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else (lambda text: all(p(text) for p in parts))

    def parse_unary(self) -> Predicate:
        kind = self.peek()
        if kind is None:
            raise ExpressionError(f"expression ends too early: {self.expression!r}")
        if kind == "NOT":
            self.take()
            inner = self.parse_unary()
            return lambda text: not inner(text)
        if kind == "(":
            self.take()
            inner = self.parse_or()
            if self.peek() != ")":
                raise ExpressionError(f"missing ')' in {self.expression!r}")
            self.take()
            return inner
        if kind == "TERM":
            return _term(self.take()[1])
        raise ExpressionError(f"unexpected {self.take()[1]!r} in {self.expression!r}")


def compile_expression(expression: str) -> Predicate:
    """Compile a Boolean keyword expression into a predicate over text.

    Raises:
        ExpressionError: The expression is malformed.
    """
    return _Parser(expression).parse()


@dataclass
class _CompiledBrand:
    name: str
    include: list[Predicate]
    exclude: list[Predicate]


class BrandMatcher:
    """Match posts against every configured brand."""

    def __init__(self, brands: list[BrandConfig]) -> None:
        self.brands: list[_CompiledBrand] = []
        for brand in brands:
            include: list[Predicate] = [_term(n) for n in {brand.name, *brand.names}]
            for handle in brand.handles:
                bare = handle.lstrip("@")
                include.append(_term(bare))
            include.extend(compile_expression(k) for k in brand.keywords)
            exclude = [compile_expression(e) for e in brand.exclude]
            self.brands.append(_CompiledBrand(brand.name, include, exclude))

    def match(self, text: str, *, mentions: list[str] | None = None, author: str | None = None) -> list[str]:
        """Names of the brands a post is about (empty: about none of them).

        Args:
            text: The post's title and text.
            mentions: Accounts it mentions (matched against handles too).
            author: The author's handle (a brand's own posts are about it).
        """
        haystack = " ".join([text, *(mentions or []), author or ""])
        matched = []
        for brand in self.brands:
            if any(p(haystack) for p in brand.include) and not any(p(haystack) for p in brand.exclude):
                matched.append(brand.name)
        return matched
