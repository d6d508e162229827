"""``moments index`` and ``moments search`` end to end, on both stores."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from moments.cli import main
from moments.records import Post
from search import open_store

MakePost = Callable[..., Post]


@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def store_arg(request: pytest.FixtureRequest, tmp_home: Path) -> str:
    """The ``--store`` value for each backend (ES under a unique index prefix)."""
    if request.param == "sqlite":
        return str(tmp_home / "cli.db")
    # es_url sets a unique $MOMENTS_ES_PREFIX, which the CLI's store picks up.
    return str(request.getfixturevalue("es_url"))


@pytest.fixture
def posts_file(tmp_home: Path, make_post: MakePost) -> Path:
    """Four good posts with a malformed line 3 and an invalid post on line 6."""
    good = [
        make_post(native_id="1", text="Two hour delay and no announcement."),
        make_post(native_id="2", text="They lost my bag again."),
        make_post(native_id="3", text="Refund arrived late but it arrived."),
        make_post(native_id="4", text="Lovely crew on the way home.", brand=["contoso"]),
    ]
    lines = [good[0].to_json(), good[1].to_json(), "{not json", good[2].to_json(), "", '{"id": "x"}', good[3].to_json()]
    path = tmp_home / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_index_twice_same_count_and_reports_bad_lines(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moments.records")
    for _ in range(2):
        assert main(["index", str(posts_file), "--store", store_arg]) == 0
        out = capsys.readouterr().out.strip()
        assert out == f"indexed 4 posts into {store_arg} (0 spooled, 2 lines dropped)"

    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert any("line 3 dropped: not valid JSON" in m for m in dropped)
    assert any("line 6 dropped" in m for m in dropped)
    with open_store(store_arg) as store:
        assert store.count() == 4
        assert store.get("test:4") is not None


def test_search_table_and_json(
    store_arg: str, posts_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the table to the terminal width
    assert main(["index", str(posts_file), "--store", store_arg]) == 0
    capsys.readouterr()

    assert main(["search", "delay", "--store", store_arg, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [Post.model_validate(p).id for p in found] == ["test:1"]

    assert main(["search", "crew", "--store", store_arg, "--json", "--brand", "northwind"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["search", "lost bag", "--store", store_arg]) == 0
    table = capsys.readouterr().out
    assert "1 post matching 'lost bag'" in table and "They lost my bag again." in table

    assert main(["search", "pizza", "--store", store_arg]) == 0
    assert "no posts match 'pizza'" in capsys.readouterr().out


def test_default_store_is_under_moments_home(
    tmp_home: Path, posts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", str(posts_file)]) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"indexed 4 posts into {tmp_home / 'moments.db'} (0 spooled, 2 lines dropped)"
    )
    assert (tmp_home / "moments.db").is_file()


@pytest.mark.parametrize("command", ["index", "search"])
def test_help_teaches_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"moments {command} " in text and "--store" in text


def test_missing_input_is_a_one_line_error(tmp_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_home / "nope.jsonl")]) == 2  # bad input
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("moments index: error:") and "nope.jsonl" in err[0]


def test_index_of_records_that_are_not_posts_says_how_to_make_posts(
    tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_home / "export.jsonl"
    export.write_text(
        '{"id": "1", "text": "my flight was late"}\n{"id": "2", "text": "great crew"}\n', encoding="utf-8"
    )
    assert main(["index", str(export)]) == 2  # nothing in it was a post
    captured = capsys.readouterr()
    assert "indexed 0 posts" in captured.out and "2 lines dropped" in captured.out
    assert f"moments crawl import --query {export} --config brands.yaml" in captured.err
