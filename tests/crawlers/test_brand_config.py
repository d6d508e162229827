"""brands.yaml: the typed config and the Boolean keyword language."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawlers.brands import BrandMatcher, ExpressionError, compile_expression
from moments.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "crawlers" / "brands.example.yaml"


@pytest.mark.parametrize(
    ("expression", "text", "expected"),
    [
        ('"lost bag" AND northwind', "Northwind lost  bag again", True),
        ('"lost bag" AND northwind', "lost my bag with northwind", False),
        ("delay OR cancel*", "flight cancelled", True),
        ("delay", "delayed flight", False),  # whole words unless a * prefix
        ("northwind NOT traders", "northwind traders db", False),
        ("northwind -x OR (refund AND late)", "refund was late", True),
        ("#flynorthwind", "loved it #FlyNorthwind", True),
        ("(a OR b) c", "b then c", True),
        ("(a OR b) c", "b alone", False),
    ],
)
def test_keyword_expressions(expression: str, text: str, expected: bool) -> None:
    assert compile_expression(expression)(text) is expected


@pytest.mark.parametrize("bad", ["", "(a OR b", "a OR", "NOT", ")"])
def test_malformed_expressions_are_rejected(bad: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(bad)


def test_example_config_loads_and_matches() -> None:
    config = load_config(EXAMPLE)
    assert config.contact_url and [b.name for b in config.brands] == ["Northwind Air", "Contoso Rail"]
    northwind = config.brands[0]
    assert {s.source for s in northwind.sources} >= {"mastodon", "appstore", "jsonld", "rss"}
    appstore = next(s for s in northwind.sources if s.source == "appstore")
    assert appstore.country == "gb" and appstore.match_mode == "all"
    matcher = BrandMatcher(config.brands)
    assert matcher.match("My lost bag on flight NW12") == ["Northwind Air"]
    assert matcher.match("Northwind Traders recipe") == []
    assert matcher.match("hi", mentions=["@northwindair"]) == ["Northwind Air"]
    assert matcher.match("Northwind Air and the contoso train") == ["Northwind Air", "Contoso Rail"]


def test_invalid_config_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config: brands\[0\]\.sources\[0\]\.source: unknown source 'myspace'"):
        parse_config({"brands": [{"name": "x", "sources": [{"source": "myspace", "query": "q"}]}]})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("brands: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml:1: not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TOKEN", "s3cret")
    config = parse_config({"credentials": {"mastodon": {"token": "${TEST_TOKEN}"}, "reddit": {"client_id": "${NOPE}"}}})
    assert config.credentials_for("mastodon") == {"token": "s3cret"}
    assert config.credentials_for("reddit") == {}  # unset variables leave nothing behind
