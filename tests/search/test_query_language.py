"""The query language of ``moments search``: one parser, one tree, errors with a column."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from moments.cli import main
from moments.errors import EXIT_USAGE, UsageError
from search.query import (
    FIELDS,
    MAX_DEPTH,
    MAX_TERMS,
    And,
    FieldMatch,
    MatchAll,
    Not,
    Or,
    Phrase,
    Prefix,
    QuerySyntaxError,
    Range,
    Term,
    fold,
    parse,
    text_leaves,
    word_tokens,
)


def t(text: str, field: str | None = None) -> Term:
    return Term(text, field)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# ------------------------------------------------------------------------------ structure


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("delay", t("delay")),
        ("refund late", And((t("refund"), t("late")))),
        ("refund AND late", And((t("refund"), t("late")))),
        ("refund OR late", Or((t("refund"), t("late")))),
        # NOT > AND > OR
        ("a b OR c", Or((And((t("a"), t("b"))), t("c")))),
        ("a OR b c", Or((t("a"), And((t("b"), t("c")))))),
        ("a OR b AND c", Or((t("a"), And((t("b"), t("c")))))),
        ("NOT a b", And((Not(t("a")), t("b")))),
        ("NOT a OR b", Or((Not(t("a")), t("b")))),
        ("a NOT b", And((t("a"), Not(t("b"))))),
        ("a AND NOT b", And((t("a"), Not(t("b"))))),
        ("NOT (a OR b)", Not(Or((t("a"), t("b"))))),
        ("(a OR b) c", And((Or((t("a"), t("b"))), t("c")))),
        ("NOT delay", Not(t("delay"))),
        ("NOT NOT delay", t("delay")),
        ("NOT NOT NOT delay", Not(t("delay"))),
        # Same operators flatten; redundant parentheses vanish.
        ("a (b c) d", And((t("a"), t("b"), t("c"), t("d")))),
        ("a OR (b OR c)", Or((t("a"), t("b"), t("c")))),
        ("((((delay))))", t("delay")),
        ("(a)(b)", And((t("a"), t("b")))),
        # Phrases and prefixes.
        ('"lost bag"', Phrase("lost bag")),
        ('"lost bag" refund', And((Phrase("lost bag"), t("refund")))),
        ('say"hello"', And((t("say"), Phrase("hello")))),
        ("refu*", Prefix("refu")),
        ('"AND"', Phrase("AND")),
        ('"NOT delay"', Phrase("NOT delay")),
        # Operators are case-sensitive: these are words.
        ("and", t("and")),
        ("a or b", And((t("a"), t("or"), t("b")))),
        ("ANDROID NOTE ORBIT", And((t("ANDROID"), t("NOTE"), t("ORBIT")))),
        # Punctuation belongs to the word; the tokenizers drop it.
        ("delay!", t("delay!")),
        ("check-in", t("check-in")),
        ("12:30", t("12:30")),
        (":delay", t(":delay")),
    ],
)
def test_structure(query: str, tree: object) -> None:
    assert parse(query) == tree


def test_whitespace_of_any_kind_separates() -> None:
    assert parse("a\tb\nc\u00a0d\x00e") == And(tuple(t(w) for w in "abcde"))


# ------------------------------------------------------------------------------ fields


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("touchpoint:baggage", FieldMatch("classification.touchpoint", "baggage")),
        ("sentiment:negative", FieldMatch("classification.sentiment", "negative")),
        ("moment:misery", FieldMatch("classification.moment", "misery")),
        ("source:reddit", FieldMatch("source", "reddit")),
        ("lang:en", FieldMatch("lang", "en")),
        ("brand:northwind", FieldMatch("brand", "northwind")),
        ('brand:"Northwind Air"', FieldMatch("brand", "Northwind Air")),
        ("author:@bob@mastodon.social", FieldMatch("author.handle", "@bob@mastodon.social")),
        ("author.handle:@bob", FieldMatch("author.handle", "@bob")),
        ("classification.touchpoint:baggage", FieldMatch("classification.touchpoint", "baggage")),
        ("touchpoint:check-in", FieldMatch("classification.touchpoint", "check-in")),
        ("touchpoint:check*", FieldMatch("classification.touchpoint", "check", prefix=True)),
        ('touchpoint:"check*"', FieldMatch("classification.touchpoint", "check*")),
        ("source:a:b", FieldMatch("source", "a:b")),
        ("text:delay", t("delay", "text")),
        ("title:delay", t("delay", "title")),
        ("author.display_name:harriet", t("harriet", "author.display_name")),
        ('title:"lost bag"', Phrase("lost bag", "title")),
        ("title:refu*", Prefix("refu", "title")),
        (
            'title:(lost OR "bag tag")',
            Or((t("lost", "title"), Phrase("bag tag", "title"))),
        ),
        (
            'touchpoint:(baggage OR "check-in")',
            Or(
                (
                    FieldMatch("classification.touchpoint", "baggage"),
                    FieldMatch("classification.touchpoint", "check-in"),
                )
            ),
        ),
        (
            "touchpoint:baggage OR sentiment:negative delay",
            Or(
                (
                    FieldMatch("classification.touchpoint", "baggage"),
                    And((FieldMatch("classification.sentiment", "negative"), t("delay"))),
                )
            ),
        ),
        ("NOT touchpoint:baggage", Not(FieldMatch("classification.touchpoint", "baggage"))),
        # Inside a field group, a colon is part of the value.
        ("author:(a:b OR c)", Or((FieldMatch("author.handle", "a:b"), FieldMatch("author.handle", "c")))),
    ],
)
def test_fields(query: str, tree: object) -> None:
    assert parse(query) == tree


def test_fields_come_from_the_schema() -> None:
    # The free-text fields are exactly those marked {"index": "text"} on Post.
    assert {name for name, f in FIELDS.items() if f.kind == "text"} == {"text", "title", "author.display_name"}
    assert FIELDS["brand"].kind == "keywords"
    assert FIELDS["created_at"].kind == "datetime"
    assert FIELDS["touchpoint"].path == ("classification", "touchpoint")
    assert FIELDS["author"].column == "author_handle"
    assert "engagement.likes" not in FIELDS  # numbers are not part of the language


# ------------------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("created_at:2026-11-01", Range("created_at", gte=at(2026, 11, 1), lt=at(2026, 11, 2))),
        ("created_at:>=2026-11-01", Range("created_at", gte=at(2026, 11, 1))),
        ("created_at:>2026-11-01", Range("created_at", gte=at(2026, 11, 2))),
        ("created_at:<2026-11-01", Range("created_at", lt=at(2026, 11, 1))),
        ("created_at:<=2026-11-01", Range("created_at", lt=at(2026, 11, 2))),
        ("created_at:<2026-11-02T12:00:00Z", Range("created_at", lt=at(2026, 11, 2, 12))),
        ("created_at:<=2026-11-02T12:00:00Z", Range("created_at", lt=at(2026, 11, 2, 12, 0, 1))),
        ("created_at:<=2026-11-02T12:00Z", Range("created_at", lt=at(2026, 11, 2, 12, 1))),
        ("created_at:2026-11-02T12:00", Range("created_at", gte=at(2026, 11, 2, 12), lt=at(2026, 11, 2, 12, 1))),
        (
            "created_at:>2026-11-02T12:00:00.250Z",
            Range("created_at", gte=at(2026, 11, 2, 12, 0, 0, 251000)),
        ),
        # Finer than a millisecond: dropped, as Elasticsearch stores dates.
        (
            "created_at:>=2026-11-02T12:00:00.123999Z",
            Range("created_at", gte=at(2026, 11, 2, 12, 0, 0, 123000)),
        ),
        ("created_at:>=2026-11-02T12:00:00+02:00", Range("created_at", gte=at(2026, 11, 2, 10))),
        ("created_at:>=2026-11-02T01:30:00-0130", Range("created_at", gte=at(2026, 11, 2, 3))),
        ("crawled_at:2026-11-01", Range("crawled_at", gte=at(2026, 11, 1), lt=at(2026, 11, 2))),
        ('created_at:"2026-11-01"', Range("created_at", gte=at(2026, 11, 1), lt=at(2026, 11, 2))),
        (
            "created_at:(>=2026-11-01 AND <2026-11-03)",
            And((Range("created_at", gte=at(2026, 11, 1)), Range("created_at", lt=at(2026, 11, 3)))),
        ),
        ("created_at:<=9999-12-31", Range("created_at")),  # every post with a date
        ("created_at:>9999-12-31", Not(MatchAll())),
    ],
)
def test_dates(query: str, tree: object) -> None:
    assert parse(query) == tree


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("query", "column", "reason"),
    [
        ("", 1, "the query is empty"),
        ("   ", 1, "the query is empty"),
        ("refund AND )", 12, "unexpected ')' after 'AND'"),
        ("delay)", 6, "unexpected ')'"),
        (")", 1, "unexpected ')'"),
        ("((delay", 2, "unclosed '('"),
        ("(delay", 1, "unclosed '('"),
        ("()", 1, "empty parentheses"),
        ('"lost bag', 1, "unclosed '\"'"),
        ('refund "lost', 8, "unclosed '\"'"),
        ('"', 1, "unclosed '\"'"),
        ('""', 1, "a phrase needs at least one letter or digit"),
        ('"!!"', 1, "a phrase needs at least one letter or digit"),
        ("AND", 1, "'AND' needs a search term before it"),
        ("OR delay", 1, "'OR' needs a search term before it"),
        ("delay AND", 7, "'AND' needs a search term after it"),
        ("delay OR", 7, "'OR' needs a search term after it"),
        ("NOT", 1, "'NOT' needs a search term after it"),
        ("a AND OR b", 7, "'OR' cannot follow 'AND'"),
        ("a NOT AND b", 7, "'AND' cannot follow 'NOT'"),
        ("(OR a)", 2, "'OR' needs a search term before it"),
        ("title:", 6, "'title:' needs a value right after the colon"),
        ("title: delay", 6, "'title:' needs a value right after the colon"),
        ("foo:bar", 1, "unknown field 'foo'"),
        ("delay Touchpoint:x", 7, "unknown field 'Touchpoint'"),
        ("https://example.com", 1, 'quote it: "https://example.com"'),
        ("*", 1, "a prefix search needs letters or digits before '*'"),
        ("de*lay", 3, "'*' only works at the end of a word"),
        ("delay**", 6, "'*' only works at the end of a word"),
        ("-delay", 1, "write NOT delay"),
        ("&&", 1, "did you mean AND?"),
        ("a || b", 3, "did you mean OR?"),
        ("!", 1, "did you mean NOT?"),
        ("...", 1, "'...' has no letters or digits"),
        ("touchpoint:>x", 12, "not a date field"),
        ("touchpoint:*", 12, "a prefix search needs something before '*'"),
        ("touchpoint:a*b", 13, "'*' only works at the end of a value"),
        ('brand:""', 7, "'brand:' needs a value"),
        ("created_at:yesterday", 12, "'yesterday' is not a date"),
        ("created_at:>=", 14, "'created_at:>=' needs a date"),
        ("created_at:2026-13-01", 12, "is not a date"),
        ("created_at:2026-11-01T25:00", 12, "is not a date"),
        ("created_at:>=2026-11-01T12:00+24:00", 14, "is not a date"),
        ("created_at:2026-11", 12, "is not a date"),
        ("title:(", 7, "unclosed '('"),
        ("title:()", 7, "empty parentheses"),
    ],
)
def test_errors_name_the_column(query: str, column: int, reason: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse(query)
    error = caught.value
    assert isinstance(error, UsageError) and error.exit_code == EXIT_USAGE
    assert error.column == column and error.position == column - 1
    assert reason in error.reason
    message = str(error)
    assert message.startswith(f"syntax error at column {column}: ")
    assert "\n" not in message  # one line, for the CLI's one-line errors
    if query.strip():
        assert message.endswith(f" in: {query}")


def test_caret_points_at_the_column() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse("refund AND )")
    assert caught.value.caret == "refund AND )\n           ^"
    # Control characters become spaces, so the caret still lines up and the message stays one line.
    with pytest.raises(QuerySyntaxError) as caught:
        parse("a\tb\n)")
    assert caught.value.caret == "a b )\n    ^"
    assert "\n" not in str(caught.value) and "\t" not in str(caught.value)


def test_nesting_and_size_are_bounded() -> None:
    deep = "(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH
    assert parse(deep) == t("x")
    with pytest.raises(QuerySyntaxError, match="too many nested parentheses"):
        parse("(" + deep + ")")
    with pytest.raises(QuerySyntaxError, match="too many nested parentheses"):
        parse("(" * 10_000)  # never a RecursionError
    assert len(parse(" ".join(["w"] * MAX_TERMS)).children) == MAX_TERMS  # type: ignore[union-attr]
    with pytest.raises(QuerySyntaxError, match="too many search terms") as caught:
        parse(" ".join(["w"] * (MAX_TERMS + 1)))
    assert caught.value.position == 2 * MAX_TERMS
    assert parse("NOT " * 1000 + "x") == t("x")


# ------------------------------------------------------------------------------ hostile input


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        # FTS5 operators and syntax are plain words here (the stores quote every word).
        ("NEAR(a b)", And((t("NEAR"), t("a"), t("b")))),
        ("NEAR", t("NEAR")),
        ("^delay", t("^delay")),
        ("delay^", t("delay^")),
        ("{text}", t("{text}")),
        ("+delay", t("+delay")),
        ("a:b", None),  # an unknown field: an error, see below
        ("'single quotes'", And((t("'single"), t("quotes'")))),
        ("don't", t("don't")),
        ('don"t', None),
        ("\\delay", t("\\delay")),
        ("delay;DROP TABLE posts", And((t("delay;DROP"), t("TABLE"), t("posts")))),
        ("Zürich café", And((t("Zürich"), t("café")))),
        ("東京", t("東京")),
        ("🙂", t("🙂")),
        ("ǅemal", t("ǅemal")),
    ],
)
def test_hostile_input_is_words_or_a_clean_error(query: str, tree: object) -> None:
    if tree is None:
        with pytest.raises(QuerySyntaxError):
            parse(query)
    else:
        assert parse(query) == tree


def test_a_quote_inside_a_word_starts_a_phrase() -> None:
    assert parse('don"t stop"') == And((t("don"), Phrase("t stop")))
    with pytest.raises(QuerySyntaxError) as caught:
        parse('don"t')
    assert caught.value.column == 4


def test_field_syntax_tricks_fail_cleanly() -> None:
    for query in ("text:title:x", "col:umn", "rank:1", "rowid:1", "posts_fts:x", "engagement.likes:3", "doc:x"):
        if query == "text:title:x":
            assert parse(query) == t("title:x", "text")  # a value may hold colons
            continue
        with pytest.raises(QuerySyntaxError, match="unknown field"):
            parse(query)


# ------------------------------------------------------------------------------ helpers


def test_word_tokens_follow_letters_and_digits() -> None:
    assert word_tokens("check-in") == ["check", "in"]
    assert word_tokens("don't") == ["don", "t"]
    assert word_tokens("WiFi???") == ["WiFi"]
    assert word_tokens("Zürich 3.5") == ["Zürich", "3", "5"]
    assert word_tokens("e\u0301") == ["e\u0301"]
    assert word_tokens("--") == []


def test_fold_keeps_length() -> None:
    assert fold("Northwind AIR") == "northwind air"
    assert fold("ZÜRICH") == "zürich"
    assert len(fold("İstanbul")) == len("İstanbul")


def test_text_leaves_know_their_sign() -> None:
    tree = parse("a NOT (b OR NOT c) touchpoint:x")
    assert text_leaves(tree) == [(t("a"), True), (t("b"), False), (t("c"), True)]


# ------------------------------------------------------------------------------ the command


def test_cli_syntax_error_is_one_line_and_exit_2(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_home / "never.db"
    assert main(["search", "refund AND )", "--store", str(db)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["moments search: error: syntax error at column 12: unexpected ')' after 'AND' in: refund AND )"]
    assert not db.exists()  # rejected before any store was opened (or created)

    assert main(["search", "", "--store", str(db)]) == EXIT_USAGE
    assert "the query is empty" in capsys.readouterr().err


def test_cli_migrate_is_still_an_action(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_home / "m.db"
    assert main(["search", "migrate", "--store", str(db)]) == 0
    assert capsys.readouterr().out.startswith(f"migrated {db}:")
    assert main(["search", '"migrate"', "--store", str(db), "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
