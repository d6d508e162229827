"""moments.settings: one place decides the data directory, the store and the config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from moments import settings
from search.elastic import ElasticStore


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_moments_home_is_unset_everywhere(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMENTS_HOME", value)
    monkeypatch.delenv("MOMENTS_STORE", raising=False)
    assert settings.home() == Path("var")
    assert settings.store_url() == str(Path("var") / "moments.db")
    assert settings.spool_dir() == Path("var") / "spool"
    # The crawler's cursors and the store's spool agree on the same directory.
    from crawlers.state import default_state_dir

    assert default_state_dir() == Path("var") / "crawl-state"


def test_store_url_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path))
    monkeypatch.delenv("MOMENTS_STORE", raising=False)
    assert settings.store_url() == str(tmp_path / "moments.db")
    monkeypatch.setenv("MOMENTS_STORE", "http://127.0.0.1:9200")
    assert settings.store_url() == "http://127.0.0.1:9200"
    assert settings.store_url("/data/other.db") == "/data/other.db"  # --store wins
    assert settings.is_elasticsearch("https://es.example:9200") and not settings.is_elasticsearch("x.db")
    assert settings.sqlite_path("sqlite:///abs/m.db") == Path("/abs/m.db")
    assert settings.sqlite_path("rel.db") == Path("rel.db")


def test_config_and_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOMENTS_CONFIG", raising=False)
    monkeypatch.delenv("MOMENTS_ES_PREFIX", raising=False)
    assert settings.config_path() == Path("brands.yaml")
    assert settings.config_path("x.yaml") == Path("x.yaml")
    monkeypatch.setenv("MOMENTS_CONFIG", "/etc/moments/brands.yaml")
    assert settings.config_path() == Path("/etc/moments/brands.yaml")
    assert settings.es_prefix() == "moments"
    monkeypatch.setenv("MOMENTS_ES_PREFIX", "")
    assert settings.es_prefix() == "moments"
    monkeypatch.setenv("MOMENTS_ES_PREFIX", "acme")
    assert settings.es_prefix() == "acme" and settings.es_prefix("given") == "given"


def test_elasticsearch_spool_follows_moments_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOMENTS_HOME", str(tmp_path / "h"))
    # spool_dir is a property that needs no server: read it off an instance built without __init__.
    store = ElasticStore.__new__(ElasticStore)
    store._spool_dir = None
    assert store.spool_dir == tmp_path / "h" / "spool"
